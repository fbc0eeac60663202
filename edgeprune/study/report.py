"""The study report: report.md, report.html, results.json and PNG plots.

Input is the ``results`` dict the runner assembles:
``models`` (one entry per model: id, method, target, macs, params, layers,
accuracy, frames, per_snr, eval, training, pruning ...), ``latency`` (profiler
records tagged with the model id) and, for layer pruning, ``plan`` (units,
blocks and kept units of the analysis). The report opens with the verdict
(:mod:`.verdict`) and the warnings (:mod:`.caveats`), then a compact headline
table, a detail table per backend, and the plots with one-line explanations.
Torch-free; matplotlib is imported lazily.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, read_json, write_json, write_text
from ..errors import EdgepruneError
from .caveats import caveats
from .report_html import read_study_file, render_html
from .verdict import (compute_verdict, key_label, latency_key, latency_table, pareto_front, primary_key,  # noqa: F401
                      spread)

MARKERS = {"baseline": "*", "layer": "o", "layer+kd": "P", "dbp": "s", "random": "x", "channel-l1": "^", "channel-l2": "v",
           "channel-fpgm": "<", "channel-bn": ">"}


def headline(results: dict[str, Any]) -> tuple[list[tuple], list[dict[str, Any]]]:
    """Rows: method, MACs, params, layers, accuracy, latency per key, speed-up, speed-up / MACs ratio."""
    models = results["models"]
    lat: dict[str, dict[tuple, float]] = {}
    for rec in results.get("latency", []):
        lat.setdefault(rec["model_id"], {})[latency_key(rec)] = rec["median_ms"]
    keys = sorted({k for d in lat.values() for k in d})
    base = next((m for m in models if m["method"] == "baseline"), None)
    rows = []
    for m in models:
        row = {k: m.get(k) for k in ("id", "method", "target", "macs", "params", "layers", "accuracy",
                                     "accuracy_before_finetune")}
        row["macs_ratio"] = (base["macs"] / m["macs"]) if base and m.get("macs") else None
        row["latency_ms"] = {}
        row["speedup"] = {}
        row["speedup_per_macs_ratio"] = {}
        for k in keys:
            v = lat.get(m["id"], {}).get(k)
            if v is None:
                continue
            row["latency_ms"][key_label(k)] = v
            b = lat.get(base["id"], {}).get(k) if base else None
            if b:
                sp = b / v
                row["speedup"][key_label(k)] = sp
                if row["macs_ratio"]:
                    row["speedup_per_macs_ratio"][key_label(k)] = sp / row["macs_ratio"]
        rows.append(row)
    return keys, rows


def _fmt(v, nd=2):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def text_table(keys, rows) -> list[str]:
    """A compact terminal table: one line per model, latency with speed-up per measured setting."""
    labels = [key_label(k) for k in keys]
    head = f"{'model':<18} {'MMACs':>7} {'params':>9} {'layers':>6} {'acc %':>6}"
    for lb in labels:
        head += f"  {lb:>24}"
    lines = [head]
    for r in rows:
        acc = f"{100 * r['accuracy']:.2f}" if r.get("accuracy") is not None else "-"
        line = f"{r['id']:<18} {r['macs'] / 1e6:>7.2f} {r['params']:>9,} {_fmt(r['layers']):>6} {acc:>6}"
        for lb in labels:
            ms, sp = r["latency_ms"].get(lb), r["speedup"].get(lb)
            cell = "-" if ms is None else f"{ms:.3f} ms ({sp:.2f}x)" if sp else f"{ms:.3f} ms"
            line += f"  {cell:>24}"
        lines.append(line)
    return lines


# -- tables: one structure, rendered to markdown and HTML ------------------------------------------
def _cell(v, text: str | None = None) -> tuple[str, Any]:
    """(shown text, sort value); None sorts last."""
    return (text if text is not None else _fmt(v), v)


def headline_table(results: dict[str, Any], prim: tuple | None) -> dict[str, Any]:
    models = results["models"]
    base = next((m for m in models if m["method"] == "baseline"), None)
    table = latency_table(results)
    plab = key_label(prim) if prim else None
    cols = ["model", "method", "MACs (M)", "MACs (% of baseline)", "params (k)", "weight layers", "accuracy (%)"]
    if plab:
        cols += ["latency (ms)", "speed-up (x)"]
    rows = []
    for m in models:
        frac = (m["macs"] / base["macs"]) if base and m.get("macs") and base.get("macs") else None
        acc = m.get("accuracy")
        ci = m.get("accuracy_ci")
        acc_txt = "-" if acc is None else (f"{100 * acc:.1f} ({100 * ci[0]:.1f}-{100 * ci[1]:.1f})"
                                           if isinstance(ci, (list, tuple)) and len(ci) == 2 else f"{100 * acc:.1f}")
        row = [_cell(m["id"]), _cell(m["method"]),
               _cell(m["macs"] / 1e6 if m.get("macs") else None, f"{m['macs'] / 1e6:.3f}" if m.get("macs") else "-"),
               _cell(100 * frac if frac else None, f"{100 * frac:.1f}" if frac else "-"),
               _cell(m["params"] / 1e3 if m.get("params") else None,
                     f"{m['params'] / 1e3:.1f}" if m.get("params") else "-"),
               _cell(m.get("layers")), _cell(100 * acc if acc is not None else None, acc_txt)]
        if plab:
            rec = table.get(prim, {}).get(m["id"])
            b = table.get(prim, {}).get(base["id"]) if base else None
            ms = rec["median_ms"] if rec else None
            sp = (b["median_ms"] / ms) if (rec and b) else None
            row += [_cell(ms, f"{ms:.3f}" if ms else "-"), _cell(sp, f"{sp:.2f}" if sp else "-")]
        rows.append(row)
    cap = ("Headline: every model of the study. MACs are per frame (conv + linear multiply-accumulates); "
           "accuracy is on the test split" + (", with its 95% interval over seeds" if any(
               m.get("accuracy_ci") for m in models) else "") +
           (f"; latency is the median over interleaved rounds on {plab}, speed-up is the baseline's latency over "
            "the model's." if plab else "."))
    return {"id": "headline", "caption": cap, "columns": cols, "rows": rows}


def backend_tables(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One table per (backend, precision): latency, speed-up, speed-up over the MACs cut and round spread per batch."""
    models = results["models"]
    base = next((m for m in models if m["method"] == "baseline"), None)
    table = latency_table(results)
    groups: dict[tuple, list[tuple]] = {}
    for k in sorted(table):
        groups.setdefault(k[:2], []).append(k)
    out = []
    for (backend, prec), keys in groups.items():
        cols = ["model"]
        for k in keys:
            s = f"b{k[2]}" + (f", {k[3]} thr" if k[3] else "")
            cols += [f"{s} latency (ms)", f"{s} speed-up (x)", f"{s} speed-up / MACs cut", f"{s} round spread (%)"]
        rows = []
        for m in models:
            if not any(m["id"] in table[k] for k in keys):
                continue
            row = [_cell(m["id"])]
            cut = (base["macs"] / m["macs"]) if base and m.get("macs") else None
            for k in keys:
                rec = table[k].get(m["id"])
                b = table[k].get(base["id"]) if base else None
                ms = rec["median_ms"] if rec else None
                sp = (b["median_ms"] / ms) if (rec and b) else None
                spm = sp / cut if (sp and cut) else None
                sd = spread(rec) if rec else None
                row += [_cell(ms, f"{ms:.3f}" if ms else "-"), _cell(sp, f"{sp:.2f}" if sp else "-"),
                        _cell(spm, f"{spm:.2f}" if spm else "-"),
                        _cell(100 * sd if sd is not None else None, f"{100 * sd:.1f}" if sd is not None else "-")]
            rows.append(row)
        ver = next((table[k][i].get("backend_version") for k in keys for i in table[k]), None)
        out.append({"id": f"detail-{backend}-{prec}",
                    "caption": f"{backend}{' ' + ver if ver else ''}, {prec}: median latency per call of one batch "
                               "(ms), speed-up over the baseline, speed-up divided by the MACs cut (above 1: more "
                               "real speed than the MACs cut promises) and the spread of the interleaved rounds "
                               "((slowest - fastest) / median).",
                    "columns": cols, "rows": rows})
    return out


def md_text(text: Any, cell: bool = False) -> str:
    """Text that came from files (model ids, study names, notes), safe in report.md: HTML escaped (no raw
    tags reach a Markdown viewer), on one line, and in a table cell without '|' breaking the columns."""
    out = html.escape(re.sub(r"[\x00-\x1f\x7f\u2028\u2029]+", " ", str(text)), quote=False)
    return out.replace("|", "\\|") if cell else out


def table_lines(t: dict[str, Any]) -> list[str]:
    lines = [f"*{md_text(t['caption'])}*", "", "| " + " | ".join(md_text(c, True) for c in t["columns"]) + " |",
             "|" + "---|" * len(t["columns"])]
    for row in t["rows"]:
        lines.append("| " + " | ".join(md_text(text, True) for text, _ in row) + " |")
    return lines


# -- plots -----------------------------------------------------------------------------------------
def make_plots(results: dict[str, Any], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    models = {m["id"]: m for m in results["models"]}
    table = latency_table(results)
    keys = sorted(table)
    prim = primary_key(results, keys)

    if keys:
        n = len(keys)
        cols = min(n, 3)
        nrows = math.ceil(n / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 4 * nrows), squeeze=False)
        for ax, k in zip(axes.flat, keys):
            for mid, rec in table[k].items():
                m = models.get(mid)
                if not m:
                    continue
                ax.scatter(m["macs"] / 1e6, rec["median_ms"], marker=MARKERS.get(m["method"], "o"), s=60,
                           label=m["method"])
            _label_axes(ax, "MACs per frame (millions)", "median latency (ms)",
                        f"Latency (ms) vs MACs (M): {key_label(k)}")
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        written.append(_finish(fig, out / "latency_vs_macs.png"))

        pts = []
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for mid, rec in table[prim].items():
            m = models.get(mid)
            if m and m.get("accuracy") is not None:
                pts.append((rec["median_ms"], m["accuracy"], m["id"]))
                ax.scatter(rec["median_ms"], 100 * m["accuracy"], marker=MARKERS.get(m["method"], "o"), s=60,
                           label=m["method"])
                ax.annotate(m["id"], (rec["median_ms"], 100 * m["accuracy"]), fontsize=6)
        front = sorted((p for p in pts if p[2] in pareto_front(pts)), key=lambda p: p[0])
        if front:
            ax.plot([p[0] for p in front], [100 * p[1] for p in front], "k--", lw=1, label="Pareto front")
        _label_axes(ax, "median latency (ms)", "test accuracy (%)", f"Accuracy (%) vs latency (ms): {key_label(prim)}")
        written.append(_finish(fig, out / "accuracy_vs_latency.png"))

    if any(m.get("per_snr") for m in results["models"]):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for m in results["models"]:
            ps = m.get("per_snr") or {}
            if ps:
                xs = sorted(ps, key=float)
                ax.plot([float(x) for x in xs], [100 * ps[x] for x in xs], marker=MARKERS.get(m["method"], "o"),
                        ms=3, lw=1, label=m["id"])
        ax.set_xlabel("SNR (dB)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("Accuracy (%) per SNR (dB)", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
        ax.grid(alpha=0.3)
        written.append(_finish(fig, out / "accuracy_vs_snr.png"))

    p = _plot_units_kept(plt, results, out)
    if p:
        written.append(p)
    return written


KEEP_COLORS = {"plan": "tab:red", "target": "tab:orange", "transition": "tab:purple", "kept": "tab:blue",
               "removed": "white", "fixed": "0.75"}
KEEP_LABELS = {"plan": "kept: the plan's unit of its block",
               "target": "kept: added to reach the MACs target", "transition": "kept: stage transition",
               "kept": "kept by the method's own rule (DBP probe, random order)", "removed": "removed",
               "fixed": "not removable (stem)"}


def unit_reasons(results: dict[str, Any]) -> tuple[list[int], dict[str, dict[int, str]]]:
    """Unit layers (in order) and, per depth-pruned model, why each unit is kept or removed."""
    plan = results.get("plan") or {}
    units = plan.get("units") or []
    layers = [u["layer"] for u in units]
    fixed = {u["layer"]: ("transition" if u.get("transition") and u.get("role") != "stem" else "fixed")
             for u in units if not u.get("removable")}
    out: dict[str, dict[int, str]] = {}
    if plan.get("kept_units") is not None and units:
        out["plan (layer)"] = {u: fixed.get(u) or ("plan" if u in plan["kept_units"] else "removed") for u in layers}
    for m in results.get("models", []):
        pr = m.get("pruning") or {}
        kept = pr.get("kept_units")
        if kept is None or not layers:
            continue
        kept = set(kept)
        forced = {f["layer"] if isinstance(f, dict) else f for f in pr.get("forced") or []}
        plan_kept = set(pr.get("plan_kept") or [])
        reasons = {}
        for u in layers:
            if u in fixed or u in forced:
                reasons[u] = fixed.get(u, "transition")
            elif u in kept:
                reasons[u] = ("plan" if u in plan_kept else "target") if pr.get("method") == "layer" else "kept"
            else:
                reasons[u] = "removed"
        out[m["id"]] = reasons
    return layers, out


def _plot_units_kept(plt, results, out: Path) -> str | None:
    layers, reasons = unit_reasons(results)
    if len(reasons) < 2:  # the plan alone is already in similarity.png
        return None
    from matplotlib.patches import Patch

    pos = {u["layer"]: u["position"] for u in results["plan"]["units"]}
    names = list(reasons)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(layers) + 2.5), 0.45 * len(names) + 1.6))
    used = set()
    for i, name in enumerate(names):
        for u, why in reasons[name].items():
            used.add(why)
            ax.add_patch(plt.Rectangle((pos[u] - 0.45, i - 0.4), 0.9, 0.8, facecolor=KEEP_COLORS[why],
                                       edgecolor="0.3", lw=0.5))
    for a, _ in (results["plan"].get("segments") or [])[1:]:
        ax.axvline(a - 0.5, color="k", lw=1, ls=":")
    ax.set_xlim(-0.7, max(pos.values()) + 0.7)
    ax.set_ylim(len(names) - 0.4, -0.6)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("unit position (0 = stem); dotted lines: block boundaries of the plan")
    ax.set_title("Units kept by each depth-pruned model (coloured = kept, white = removed)", fontsize=9)
    order = [k for k in KEEP_LABELS if k in used]
    ax.legend(handles=[Patch(facecolor=KEEP_COLORS[k], edgecolor="0.3", label=KEEP_LABELS[k]) for k in order],
              fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, frameon=False)
    return _finish(fig, out / "units_kept.png")


def _label_axes(ax, xlabel: str, ylabel: str, title: str) -> None:
    """One legend entry per label, the axis labels, a small title and a light grid."""
    h, lb = ax.get_legend_handles_labels()
    uniq = dict(zip(lb, h))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)


def _finish(fig, path) -> str:
    """Lay out, write and close ``fig``; its file name."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path.name


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def figure_notes(results: dict[str, Any]) -> dict[str, str]:
    """One line per plot: what it shows and how to read it."""
    table = latency_table(results)
    prim = primary_key(results, sorted(table))
    plan = results.get("plan") or {}
    notes = {
        "latency_vs_macs.png": "Each point is one model on one backend setting: at equal MACs a lower point is a "
                               "faster model, so the spread within a MACs column is what the MACs count misses.",
        "accuracy_vs_latency.png": f"Accuracy against median latency on {key_label(prim) if prim else 'the primary setting'}: "
                                   "up and left is better; the dashed line joins the Pareto-optimal models.",
        "accuracy_vs_snr.png": "Test accuracy at each SNR level: where the pruned models lose (or gain) accuracy "
                               "against the baseline as the noise grows.",
        "units_kept.png": "Which units each depth-pruned model kept, and why: the layer method starts from the plan's "
                          "unit of each block and adds units until it reaches the MACs target; stage transitions "
                          "stay by default; DBP and random keep what their own rule picks.",
    }
    if plan:
        seg = plan.get("segments") or []
        metric = plan.get("similarity_metric", "similarity")
        proxy = plan.get("importance_proxy", "importance")
        rule = plan.get("importance_rule", "")
        kept = plan.get("kept_units")
        notes["similarity.png"] = (f"{metric} between the outputs of every pair of the baseline's units (1 = same "
                                   f"representation); white lines are the {len(seg)} blocks found by Fisher "
                                   f"segmentation, red stars the units the plan keeps ({kept}): one per block, "
                                   f"chosen by {proxy} ({rule}).")
        notes["units_kept.png"] = notes["units_kept.png"].replace(
            "the plan's unit of each block", f"the plan's unit of each block (by {proxy}, {rule})")
        notes["importance.png"] = (f"{proxy} score of each unit (unitless); shaded bands are the blocks, red bars "
                                   f"the units kept ({rule} in each block).")
    return notes


# -- the report ------------------------------------------------------------------------------------
def _setup_lines(results: dict[str, Any]) -> list[str]:
    out = []
    mach = results.get("machine", {})
    if mach:
        out.append("Machine: " + ", ".join(f"{k} {v}" for k, v in mach.items() if not isinstance(v, (dict, list))))
    ds = results.get("dataset", {})
    if ds:
        out.append("Data: " + ", ".join(f"{k} {v}" for k, v in ds.items() if not isinstance(v, (dict, list))))
    if results.get("mac_definition"):
        out.append(results["mac_definition"])
    ex = results.get("executor")
    if ex:
        by = results.get("computed_by") or {}
        kinds = sorted(set(by.values())) or [ex.get("name", "local")]
        detail = ", ".join(f"{k} {v}" for k, v in ex.items() if k != "name" and not isinstance(v, (dict, list)))
        out.append(f"Models computed by: {', '.join(kinds)} executor" + (f" (this run: {ex.get('name')}"
                   + (f", {detail}" if detail else "") + ")" if ex.get("name") else ""))
    if results.get("latency_measured_on"):
        out.append(f"Latency measured on: {results['latency_measured_on']}")
    return out


def build_report(results: dict[str, Any]) -> dict[str, Any]:
    """Everything the md and html renderings show: verdict, warnings, tables."""
    table = latency_table(results)
    prim = primary_key(results, sorted(table))
    verdict = compute_verdict(results)
    return {"title": f"edgeprune study: {results.get('study', {}).get('study', {}).get('name', 'study')}",
            "verdict": verdict, "warnings": caveats(results, verdict),
            "tables": [headline_table(results, prim)] + backend_tables(results),
            "notes": list(results.get("notes", [])), "setup": _setup_lines(results),
            "figure_notes": figure_notes(results)}


def render_markdown(rep: dict[str, Any], images: list[str]) -> str:
    md = [f"# {md_text(rep['title'])}", "", "## Verdict", ""]
    md += [md_text(line) for line in rep["verdict"]["lines"]]
    md.append("")
    if rep["warnings"]:
        md += [f"## Warnings ({len(rep['warnings'])})", ""]
        for w in rep["warnings"]:
            md.append(f"- **{md_text(w['kind'])}**: {md_text(w['title'])}")
            md += [f"  - {md_text(e)}" for e in w["evidence"]]
        md.append("")
    md += ["## Headline", ""] + table_lines(rep["tables"][0]) + [""]
    if len(rep["tables"]) > 1:
        md += ["## Per backend", ""]
        for t in rep["tables"][1:]:
            md += table_lines(t) + [""]
    if images:
        md += ["## Plots", ""]
        for img in images:
            md += [f"![{md_text(img)}]({md_text(img)})", "", f"*{md_text(rep['figure_notes'].get(img, img))}*", ""]
    if rep["notes"]:
        md += ["## Notes", ""] + [f"- {md_text(n)}" for n in rep["notes"]] + [""]
    md += ["## Setup", ""] + [f"{md_text(s)}  " for s in rep["setup"]] + [""]
    return "\n".join(md)


PLOTS = ("latency_vs_macs.png", "accuracy_vs_latency.png", "accuracy_vs_snr.png", "units_kept.png")


def load_study_results(path: str | Path) -> tuple[dict[str, Any], Path]:
    """A study's results.json (or its folder), checked enough to render: (results, the folder it is in)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise EdgepruneError(f"{path} does not exist (give a study's results.json or its folder)")
    res = read_json(path, f"study results {path}")
    if not isinstance(res, dict) or not isinstance(res.get("models"), list) or not res["models"]:
        raise EdgepruneError(f"{path} is not a study's results.json (no 'models' list)")
    for m in res["models"]:
        if not isinstance(m, dict) or not isinstance(m.get("id"), str) or not isinstance(m.get("method"), str):
            raise EdgepruneError(f"{path}: every model needs a string 'id' and 'method'")
        for k in ("macs", "params", "accuracy", "target", "frames"):
            if m.get(k) is not None and (isinstance(m[k], bool) or not isinstance(m[k], (int, float))):
                raise EdgepruneError(f"{path}: model {m['id']!r} has a non-numeric {k!r}")
    lat = res.get("latency", [])
    if not isinstance(lat, list):
        raise EdgepruneError(f"{path}: 'latency' must be a list of profile records")
    _check_finite(path, res["models"], "models")
    _check_finite(path, lat, "latency")
    for r in lat:
        if (not isinstance(r, dict) or not isinstance(r.get("backend"), str) or isinstance(r.get("batch"), bool)
                or not isinstance(r.get("batch"), int) or isinstance(r.get("median_ms"), bool)
                or not isinstance(r.get("median_ms"), (int, float)) or r["median_ms"] <= 0):
            raise EdgepruneError(f"{path}: every latency record needs 'backend', an integer 'batch' and a positive "
                                 "'median_ms'")
    for k in ("study", "dataset", "machine", "plan"):
        if res.get(k) is not None and not isinstance(res[k], dict):
            raise EdgepruneError(f"{path}: {k!r} must be an object")
    return res, path.parent


def _check_finite(path: Path, records: list, what: str) -> None:
    """Every number of each model / latency record is finite, as ``--results`` demands (a NaN would print as
    "nanx the baseline's speed")."""
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            continue
        for k, v in rec.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise EdgepruneError(f"{path}: '{what}[{i}].{str(k)[:40]}' must be a finite number, not {v!r}")


def rerender(path: str | Path, out: str | Path | None = None) -> dict[str, str]:
    """Write the report of a finished study again from its results.json (into ``out``, default its folder).
    Extra images are taken only as regular files inside the study folder (never through a symbolic link)."""
    res, folder = load_study_results(path)
    out = Path(out) if out else folder
    out.mkdir(parents=True, exist_ok=True)
    extra = []
    for img in res.get("images") or []:
        if not isinstance(img, str) or img in PLOTS:
            continue
        data = read_study_file(folder, img)
        if data is not None:
            if out.resolve() != folder.resolve():
                with atomic_path(out / img, suffix=".png") as tmp:
                    tmp.write_bytes(data)
            extra.append(img)
    clean = {k: v for k, v in res.items() if k not in ("headline", "images", "verdict", "warnings")}
    return write_report(clean, out, extra_images=extra)


def write_report(results: dict[str, Any], out: str | Path, extra_images: list[str] | None = None) -> dict[str, str]:
    """Write results.json, report.md, report.html and the plots into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = make_plots(results, out) + list(extra_images or [])
    _, rows = headline(results)
    rep = build_report(results)
    results = dict(results, headline=rows, images=images, verdict=rep["verdict"], warnings=rep["warnings"])
    write_json(out / "results.json", results)
    write_text(out / "report.md", render_markdown(rep, images))
    write_text(out / "report.html", render_html(rep, images, out))
    return {"report_md": str(out / "report.md"), "report_html": str(out / "report.html"),
            "results_json": str(out / "results.json")}
