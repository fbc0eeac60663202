"""The study report: report.md, report.html, results.json and PNG plots.

Input is the ``results`` dict the runner assembles:
``models`` (one entry per model: id, method, target, macs, params, layers,
accuracy, per_snr ...) and ``latency`` (profiler records tagged with the
model id). Torch-free; matplotlib is imported lazily.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, write_json, write_text

MARKERS = {"baseline": "*", "layer": "o", "layer+kd": "P", "dbp": "s", "random": "x", "channel-l1": "^", "channel-l2": "v",
           "channel-fpgm": "<", "channel-bn": ">"}


def latency_key(rec: dict[str, Any]) -> tuple:
    # measured_on: set on records timed elsewhere (a board over SSH, merged --results), so timings of different
    # boards, power modes or clock states get their own columns and never share a speed-up ratio
    return (rec["backend"], rec.get("precision", "fp32"), int(rec["batch"]), int(rec.get("threads") or 0),
            rec.get("measured_on") or "")


def key_label(key: tuple) -> str:
    backend, prec, batch, threads = key[:4]
    t = f", {threads} thr" if threads else ""
    where = f" @ {key[4]}" if len(key) > 4 and key[4] else ""
    return f"{backend} {prec} b{batch}{t}{where}"


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


def markdown_table(keys, rows) -> list[str]:
    labels = [key_label(k) for k in keys]
    head = ["method", "target", "MACs", "params", "layers", "acc %"]
    for lb in labels:
        head += [f"{lb} ms", f"{lb} speed-up", f"{lb} speed-up/MACs-ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], _fmt(r.get("target")), _fmt(r["macs"]), _fmt(r["params"]), _fmt(r["layers"]),
                 _fmt(100 * r["accuracy"] if r.get("accuracy") is not None else None)]
        for lb in labels:
            cells += [_fmt(r["latency_ms"].get(lb), 3), _fmt(r["speedup"].get(lb)),
                      _fmt(r["speedup_per_macs_ratio"].get(lb))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


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


def pareto_front(points: list[tuple[float, float, str]]) -> list[str]:
    """Ids on the (lower latency, higher accuracy) Pareto front."""
    front = []
    for lat, acc, mid in points:
        dominated = any((l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc) for l2, a2, _ in points)
        if not dominated:
            front.append(mid)
    return front


def make_plots(results: dict[str, Any], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    models = {m["id"]: m for m in results["models"]}
    keys, rows = headline(results)
    by_key: dict[tuple, list[dict]] = {}
    for rec in results.get("latency", []):
        by_key.setdefault(latency_key(rec), []).append(rec)

    if keys:
        n = len(keys)
        cols = min(n, 3)
        nrows = math.ceil(n / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 4 * nrows), squeeze=False)
        for ax, k in zip(axes.flat, keys):
            for rec in by_key[k]:
                m = models.get(rec["model_id"])
                if not m:
                    continue
                ax.scatter(m["macs"] / 1e6, rec["median_ms"], marker=MARKERS.get(m["method"], "o"), s=60,
                           label=m["method"])
            h, lb = ax.get_legend_handles_labels()
            uniq = dict(zip(lb, h))
            ax.legend(uniq.values(), uniq.keys(), fontsize=7)
            ax.set_xlabel("MMACs")
            ax.set_ylabel("median latency (ms)")
            ax.set_title(key_label(k), fontsize=9)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.tight_layout()
        p = out / "latency_vs_macs.png"
        _save(fig, p)
        plt.close(fig)
        written.append(p.name)

        k = keys[0]
        pts = []
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for rec in by_key[k]:
            m = models.get(rec["model_id"])
            if m and m.get("accuracy") is not None:
                pts.append((rec["median_ms"], m["accuracy"], m["id"]))
                ax.scatter(rec["median_ms"], 100 * m["accuracy"], marker=MARKERS.get(m["method"], "o"), s=60,
                           label=m["method"])
                ax.annotate(m["id"], (rec["median_ms"], 100 * m["accuracy"]), fontsize=6)
        front = sorted((p for p in pts if p[2] in pareto_front(pts)), key=lambda p: p[0])
        if front:
            ax.plot([p[0] for p in front], [100 * p[1] for p in front], "k--", lw=1, label="Pareto front")
        h, lb = ax.get_legend_handles_labels()
        uniq = dict(zip(lb, h))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7)
        ax.set_xlabel(f"median latency (ms), {key_label(k)}")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        p = out / "accuracy_vs_latency.png"
        _save(fig, p)
        plt.close(fig)
        written.append(p.name)

    if any(m.get("per_snr") for m in results["models"]):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for m in results["models"]:
            ps = m.get("per_snr") or {}
            if ps:
                xs = sorted(ps, key=float)
                ax.plot([float(x) for x in xs], [100 * ps[x] for x in xs], marker=MARKERS.get(m["method"], "o"),
                        ms=3, lw=1, label=m["id"])
        ax.set_xlabel("SNR (dB)")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize=6, ncol=2)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        p = out / "accuracy_vs_snr.png"
        _save(fig, p)
        plt.close(fig)
        written.append(p.name)
    return written


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def write_report(results: dict[str, Any], out: str | Path, extra_images: list[str] | None = None) -> dict[str, str]:
    """Write results.json, report.md, report.html and the plots into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = make_plots(results, out) + list(extra_images or [])
    keys, rows = headline(results)
    results = dict(results, headline=rows, images=images)
    write_json(out / "results.json", results)

    st = results.get("study", {})
    md = [f"# edgeprune study: {st.get('study', {}).get('name', 'study')}", ""]
    mach = results.get("machine", {})
    if mach:
        md.append("Machine: " + ", ".join(f"{k} {v}" for k, v in mach.items() if not isinstance(v, (dict, list))))
        md.append("")
    md.append(results.get("mac_definition", ""))
    md.append("")
    ds = results.get("dataset", {})
    if ds:
        md.append("Data: " + ", ".join(f"{k} {v}" for k, v in ds.items() if not isinstance(v, (dict, list))))
        md.append("")
    md.append("## Headline")
    md.append("")
    md += markdown_table(keys, rows)
    md.append("")
    md.append("Speed-up is the baseline's median latency over the model's, measured in this run; "
              "speed-up/MACs-ratio above 1 means the model gained more real speed than its MACs cut promises.")
    md.append("")
    notes = results.get("notes", [])
    if notes:
        md.append("## Notes")
        md += [f"- {n}" for n in notes]
        md.append("")
    for img in images:
        md.append(f"![{img}]({img})")
        md.append("")
    write_text(out / "report.md", "\n".join(md))

    h = ["<!doctype html><html><head><meta charset='utf-8'><title>edgeprune study</title>",
         "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;"
         "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}</style>",
         "</head><body>", f"<h1>edgeprune study: {html.escape(str(st.get('study', {}).get('name', 'study')))}</h1>",
         f"<p>{html.escape(results.get('mac_definition', ''))}</p>", "<h2>Headline</h2>"]
    table = markdown_table(keys, rows)
    head_cells = [c.strip() for c in table[0].strip("|").split("|")]
    h.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head_cells) + "</tr>")
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        h.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    h.append("</table>")
    if notes:
        h.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    for img in images:
        h.append(f"<p><img src='{html.escape(img)}' style='max-width:100%'></p>")
    h.append("</body></html>")
    write_text(out / "report.html", "\n".join(h))
    return {"report_md": str(out / "report.md"), "report_html": str(out / "report.html"),
            "results_json": str(out / "results.json")}
