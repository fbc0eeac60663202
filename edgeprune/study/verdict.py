"""The study's answer in words, computed from its results.

For each MACs target: which method ran fastest at those MACs, by how much (over
the baseline and over the next fastest method) on every measured backend
setting, which was most accurate, and which models are Pareto-optimal in
accuracy against latency. Every ranking says whether it is resolved:

- latency: a model is faster than another beyond noise when all of its
  interleaved rounds (``rounds`` of the profile records) were faster than all
  of the other's; with one round the noise is not measured and the verdict
  says so;
- accuracy: with error bars from several seeds (see below) by their interval;
  otherwise by a two-proportion test on the number of test frames, which
  ignores that both models were scored on the same frames and that training
  seeds vary, so it speaks only for the frame-sampling part of the noise.

Error bars. A model entry may carry, besides ``accuracy`` (then the mean):

- ``accuracy_runs``: the accuracy of each seed, with ``seeds`` naming them;
  two models with the same seeds are compared by the paired difference
  (Student t, 95%);
- ``accuracy_ci``: ``[low, high]``, a 95% interval of the mean accuracy;
  without runs, two models differ significantly when their intervals do not
  overlap (a conservative check).

Torch-free; used by :mod:`edgeprune.study.report`.
"""

from __future__ import annotations

import math
from typing import Any

Z95 = 1.959963984540054
TOLERANCE = 0.02  # the MACs match every method promises (relative to the target)


# -- latency lookups -----------------------------------------------------------------------------
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


def latency_table(results: dict[str, Any]) -> dict[tuple, dict[str, dict[str, Any]]]:
    """key -> model id -> the profile record."""
    out: dict[tuple, dict[str, dict[str, Any]]] = {}
    for rec in results.get("latency", []):
        if rec.get("model_id") is None or rec.get("median_ms") is None:
            continue
        out.setdefault(latency_key(rec), {})[rec["model_id"]] = rec
    return out


def primary_key(results: dict[str, Any], keys: list[tuple]) -> tuple | None:
    """The setting the headline uses: the study's first backend, fp32, its smallest batch and thread count."""
    if not keys:
        return None
    backends = list(results.get("study", {}).get("profile", {}).get("backends") or [])
    for b in backends + sorted({k[0] for k in keys}):
        cands = [k for k in keys if k[0] == b]
        if cands:
            return min(cands, key=lambda k: (k[1] != "fp32", k[2], k[3]))
    return keys[0]


def rounds_of(rec: dict[str, Any]) -> list[float]:
    r = rec.get("rounds") or []
    return [float(x) for x in r if isinstance(x, (int, float))]


def spread(rec: dict[str, Any]) -> float | None:
    """(slowest round - fastest round) / median, or None with fewer than two rounds."""
    r = rounds_of(rec)
    if len(r) < 2 or not rec.get("median_ms"):
        return None
    return (max(r) - min(r)) / float(rec["median_ms"])


def faster_resolved(fast: dict[str, Any], slow: dict[str, Any]) -> bool | None:
    """True when every round of ``fast`` beat every round of ``slow``; None when either has one round."""
    a, b = rounds_of(fast), rounds_of(slow)
    if len(a) < 2 or len(b) < 2:
        return None
    return max(a) < min(b)


# -- accuracy statistics --------------------------------------------------------------------------
def binomial_halfwidth(p: float, n: int) -> float:
    """95% half-width of an accuracy ``p`` measured on ``n`` frames (normal approximation, p kept off 0/1)."""
    p = min(max(p, 0.5 / n), 1 - 0.5 / n)
    return Z95 * math.sqrt(p * (1 - p) / n)


def frames_for_halfwidth(p: float, halfwidth: float) -> int:
    p = min(max(p, 0.01), 0.99)
    return int(math.ceil(p * (1 - p) * (Z95 / halfwidth) ** 2))


def _t975(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def compare_accuracy(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Is model ``a`` more accurate than ``b``? Difference in points with a 95% interval and how it was got."""
    diff = 100 * (a["accuracy"] - b["accuracy"])
    ra, rb = a.get("accuracy_runs"), b.get("accuracy_runs")
    if (isinstance(ra, list) and isinstance(rb, list) and len(ra) == len(rb) >= 2
            and a.get("seeds") == b.get("seeds")):
        d = [100 * (x - y) for x, y in zip(ra, rb)]
        n = len(d)
        mean = sum(d) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
        h = _t975(n - 1) * sd / math.sqrt(n)
        return {"diff": mean, "ci": [mean - h, mean + h], "significant": (mean - h > 0) or (mean + h < 0),
                "how": f"paired over {n} seeds, 95% t interval"}
    ca, cb = a.get("accuracy_ci"), b.get("accuracy_ci")
    if isinstance(ca, (list, tuple)) and isinstance(cb, (list, tuple)) and len(ca) == len(cb) == 2:
        overlap = not (ca[0] > cb[1] or cb[0] > ca[1])
        return {"diff": diff, "ci": None, "significant": not overlap,
                "how": "95% intervals over seeds " + ("overlap" if overlap else "do not overlap")}
    na, nb = a.get("frames"), b.get("frames")
    if na and nb:
        pa, pb = a["accuracy"], b["accuracy"]
        se = math.sqrt(max(pa * (1 - pa), 0.25 / na) / na + max(pb * (1 - pb), 0.25 / nb) / nb)
        h = 100 * Z95 * se
        return {"diff": diff, "ci": [diff - h, diff + h], "significant": abs(diff) > h,
                "how": f"two-proportion test on {na:,} test frames, one seed"}
    return {"diff": diff, "ci": None, "significant": None, "how": "no frame count or error bars"}


def _pct(a: float | None) -> str:
    return "-" if a is None else f"{100 * a:.1f}%"


def acc_text(m: dict[str, Any]) -> str:
    ci = m.get("accuracy_ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f"{100 * m['accuracy']:.1f}% (95% CI {100 * ci[0]:.1f}-{100 * ci[1]:.1f})"
    return _pct(m.get("accuracy"))


def significance_text(c: dict[str, Any]) -> str:
    ci = f", 95% interval of the difference {c['ci'][0]:+.1f} to {c['ci'][1]:+.1f} points" if c.get("ci") else ""
    if c["significant"] is None:
        return f"significance unknown ({c['how']})"
    return ("significant" if c["significant"] else "not significant") + f" ({c['how']}{ci})"


# -- the verdict ----------------------------------------------------------------------------------------
def pareto_front(points: list[tuple[float, float, str]]) -> list[str]:
    """Ids on the (lower latency, higher accuracy) Pareto front."""
    front = []
    for lat, acc, mid in points:
        dominated = any((l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc) for l2, a2, _ in points)
        if not dominated:
            front.append(mid)
    return front


def macs_fraction(m: dict[str, Any], base: dict[str, Any] | None) -> float | None:
    if not base or not base.get("macs") or not m.get("macs"):
        return None
    return m["macs"] / base["macs"]


def missed_target(m: dict[str, Any], base: dict[str, Any] | None, tol: float = TOLERANCE) -> bool:
    f = macs_fraction(m, base)
    t = m.get("target")
    if f is None or not t or m.get("method") == "baseline":
        return False
    return abs(f - t) > tol * t + 1e-12


def compute_verdict(results: dict[str, Any]) -> dict[str, Any]:
    """The structured verdict (per target) and its sentences (``lines``, markdown)."""
    models = results.get("models", [])
    base = next((m for m in models if m.get("method") == "baseline"), None)
    table = latency_table(results)
    keys = sorted(table)
    prim = primary_key(results, keys)
    targets = sorted({m["target"] for m in models if m.get("method") != "baseline" and m.get("target")},
                     reverse=True)
    out: dict[str, Any] = {"primary": key_label(prim) if prim else None, "targets": [], "lines": []}
    lines = out["lines"]
    if base is None:
        lines.append("No baseline in these results: speed-ups and accuracy deltas cannot be given.")
    for t in targets:
        group = [m for m in models if m.get("target") == t and m.get("method") != "baseline"]
        entry: dict[str, Any] = {"target": t, "models": [m["id"] for m in group], "fastest": [],
                                 "missed_target": [m["id"] for m in group if missed_target(m, base)]}
        pct = f"{100 * t:g}%"
        if lines:
            lines.append("")
        lines.append(f"**At {pct} of the baseline MACs** ({', '.join(m['id'] for m in group)}):")
        # one summary sentence on the primary setting: every method by speed, with its accuracy
        if prim is not None:
            timed = sorted((m for m in group if m["id"] in table[prim]), key=lambda m: table[prim][m["id"]]["median_ms"])
            b = table[prim].get(base["id"]) if base else None
            if timed:
                parts = []
                for m in timed:
                    sp = f"{b['median_ms'] / table[prim][m['id']]['median_ms']:.2f}x the baseline's speed, " if b else ""
                    parts.append(f"{m['id']} {sp}{acc_text(m)} accuracy")
                tail = f" (baseline {acc_text(base)})" if base else ""
                lines.append(f"- On {key_label(prim)}: " + "; ".join(parts) + tail + ".")
        # fastest per measured setting
        for k in keys:
            timed = sorted((m for m in group if m["id"] in table[k]), key=lambda m: table[k][m["id"]]["median_ms"])
            if not timed:
                continue
            w = timed[0]
            wr = table[k][w["id"]]
            b = table[k].get(base["id"]) if base else None
            f: dict[str, Any] = {"key": key_label(k), "id": w["id"], "ms": wr["median_ms"],
                                 "speedup": (b["median_ms"] / wr["median_ms"]) if b else None,
                                 "runner_up": None, "over_runner_up": None, "resolved": None}
            text = f"{w['id']} ({wr['median_ms']:.3f} ms"
            text += f", {f['speedup']:.2f}x the baseline" if b else ""
            if len(timed) > 1:
                r = timed[1]
                rr = table[k][r["id"]]
                f.update(runner_up=r["id"], over_runner_up=rr["median_ms"] / wr["median_ms"],
                         resolved=faster_resolved(wr, rr))
                text += f"; {f['over_runner_up']:.2f}x {r['id']}, the next fastest"
                if f["resolved"] is None:
                    text += ", rounds not repeated: noise unknown"
                elif not f["resolved"]:
                    text += ", within round-to-round noise"
            text += ")"
            entry["fastest"].append(f)
            lines.append(f"- Fastest on {key_label(k)}: {text}.")
        # most accurate
        rated = sorted((m for m in group if m.get("accuracy") is not None), key=lambda m: -m["accuracy"])
        if rated:
            w = rated[0]
            ma: dict[str, Any] = {"id": w["id"], "accuracy": w["accuracy"], "runner_up": None, "comparison": None}
            text = f"- Most accurate: {w['id']}, {acc_text(w)}"
            if len(rated) > 1:
                r = rated[1]
                c = compare_accuracy(w, r)
                ma.update(runner_up=r["id"], comparison=c)
                text += f", {c['diff']:+.1f} points over {r['id']} ({acc_text(r)}); {significance_text(c)}"
            if base and base.get("accuracy") is not None:
                c = compare_accuracy(w, base)
                ma["vs_baseline"] = c
                if abs(c["diff"]) < 0.05:
                    text += f". Level with the baseline ({acc_text(base)})"
                else:
                    word = "above" if c["diff"] > 0 else "below"
                    text += (f". {abs(c['diff']):.1f} points {word} the baseline ({acc_text(base)}); "
                             f"{significance_text(c)}")
            entry["most_accurate"] = ma
            lines.append(text + ".")
        # Pareto front on the primary setting, this target's models and the baseline
        if prim is not None:
            pool = group + ([base] if base else [])
            pts = [(table[prim][m["id"]]["median_ms"], m["accuracy"], m["id"]) for m in pool
                   if m["id"] in table[prim] and m.get("accuracy") is not None]
            front = pareto_front(pts)
            entry["pareto"] = {"key": key_label(prim), "ids": front}
            if front:
                lines.append(f"- Pareto-optimal in accuracy against latency on {key_label(prim)}: {', '.join(front)} "
                             "(no other model here is both faster and more accurate).")
        if entry["missed_target"]:
            lines.append(f"- Not at equal MACs: {', '.join(entry['missed_target'])} missed the target "
                         "(see the warnings).")
        out["targets"].append(entry)
    if not targets:
        lines.append("No pruned models in these results.")
    return out
