"""Statistics over the seeds of a study: mean +- 95% confidence interval, paired differences to ``random``.

A study with ``[study] seeds = [s1, s2, ...]`` runs the whole pipeline once per
seed (data, baseline, pruning, fine-tuning: each seed in its own folder
``seed-<s>/``) and this module summarises the test accuracies:

- per (method, target): mean accuracy and the half-width of its 95%
  confidence interval, ``t(0.975, n - 1) * sd / sqrt(n)`` (Student t; no
  interval from a single seed);
- per (method, target): the paired difference to ``random`` at the same target
  and seed, with its 95% interval (pairs share the data and the baseline, so
  the seed-to-seed variation largely cancels);
- per seed: the baseline's accuracy and the epochs its training used.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..atomic import write_json, write_text


def mean_ci(values, level: float = 0.95) -> dict[str, Any]:
    """``{"n", "mean", "sd", "ci"}``: the mean and the half-width of its ``level`` t-interval (None for n < 2)."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "ci": None}
    mean = sum(vals) / n
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "ci": None}
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    from scipy.stats import t

    return {"n": n, "mean": mean, "sd": sd, "ci": float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)}


def summarise(per_seed: dict[int, list[dict[str, Any]]], baseline_epochs: dict[int, Any] | None = None) -> dict[str, Any]:
    """Summary over seeds of each seed's ``models`` (dicts with ``method``, ``target``, ``accuracy``)."""
    acc: dict[tuple[str, float], dict[int, float]] = {}
    for seed, models in per_seed.items():
        for m in models:
            acc.setdefault((m["method"], float(m["target"])), {})[seed] = float(m["accuracy"])
    rows = []
    for (method, target), by_seed in acc.items():
        row = {"method": method, "target": target, "seeds": sorted(by_seed),
               "accuracy": mean_ci(by_seed.values())}
        rnd = acc.get(("random", target))
        if method not in ("random", "baseline") and rnd:
            common = sorted(set(by_seed) & set(rnd))
            diff = mean_ci([by_seed[s] - rnd[s] for s in common])
            diff["excludes_zero"] = (diff["ci"] is not None and abs(diff["mean"]) > diff["ci"])
            row["vs_random"] = diff
        rows.append(row)
    rows.sort(key=lambda r: (r["method"] != "baseline", -r["target"], r["method"]))
    return {"seeds": sorted(per_seed), "rows": rows, "baseline_epochs": baseline_epochs or {}}


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def markdown(summary: dict[str, Any]) -> str:
    lines = [f"# Results over {len(summary['seeds'])} seeds ({', '.join(map(str, summary['seeds']))})", "",
             "Test accuracy in %, mean +- half-width of the 95% t-interval over seeds; `vs random`: the paired "
             "difference to `random` at the same target and seed (same data and baseline), mean +- 95% CI; "
             "`*` when that interval excludes zero.", "",
             "| method | MACs target | seeds | accuracy (%) | vs random (points) |", "|---|---|---|---|---|"]
    for r in summary["rows"]:
        a = r["accuracy"]
        acc = _pct(a["mean"]) + ("" if a["ci"] is None else f" +- {_pct(a['ci'])}")
        vr = r.get("vs_random")
        vs = "-" if vr is None or vr["mean"] is None else (
            f"{100 * vr['mean']:+.2f}" + ("" if vr["ci"] is None else f" +- {100 * vr['ci']:.2f}")
            + (" *" if vr.get("excludes_zero") else ""))
        lines.append(f"| {r['method']} | {r['target']:g} | {len(r['seeds'])} | {acc} | {vs} |")
    if summary.get("baseline_epochs"):
        lines += ["", "Baseline training: " + "; ".join(
            f"seed {s}: {e.get('epochs_run')} of {e.get('epochs')} epochs"
            + (" (early stopping)" if e.get("stopped_early") else "") + f", best epoch {e.get('best_epoch')}"
            for s, e in sorted(summary["baseline_epochs"].items()))]
    lines += ["", "Each seed's full report (latency, per-SNR accuracy, plots) is in `seed-<s>/report.md`.", ""]
    return "\n".join(lines)


def write_summary(summary: dict[str, Any], out) -> dict[str, str]:
    out = Path(out)
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", markdown(summary))
    return {"summary_json": str(out / "summary.json"), "summary_md": str(out / "summary.md")}
