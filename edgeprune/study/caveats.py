"""Warnings for results that cannot be trusted as they stand, each naming its evidence.

``caveats(results, verdict)`` returns a list of ``{"kind", "title",
"evidence": [sentences]}``:

- ``baseline``: pruned models beat the baseline, or its validation accuracy
  was still rising at its last epoch: it has probably not converged, and
  accuracy deltas against it flatter pruning;
- ``noisy-timing``: interleaved rounds disagree by more than the differences
  the verdict ranks (or by more than 20% of the median);
- ``missed-target``: a model's MACs are outside the promised 2% of its target,
  so it is not compared at equal MACs;
- ``eval-split``: accuracy measured on frames that include (or may include)
  training frames: not the test split, or a file other than the one the
  weights were trained on;
- ``merged-machines``: latency records from more than one machine, board or
  power mode, so speed-ups mix hardware;
- ``few-frames``: the test set is too small for the precision the tables
  show, or for the accuracy differences the verdict ranks.

Torch-free.
"""

from __future__ import annotations

from typing import Any

from .verdict import (TOLERANCE, binomial_halfwidth, compare_accuracy, frames_for_halfwidth, key_label, latency_key,
                      latency_table, macs_fraction, missed_target, rounds_of, spread)

NOISY_SPREAD = 0.20          # rounds spread over the median above which a figure is called noisy
MACHINE_FIELDS = ("hostname_sha256", "cpu", "board", "power_mode", "nvpmodel", "jetpack")


def _ms_range(rec: dict[str, Any]) -> str:
    r = rounds_of(rec)
    return f"{min(r):.3f}-{max(r):.3f} ms over {len(r)} rounds" if r else f"{rec['median_ms']:.3f} ms, one round"


def _baseline(results, base) -> dict[str, Any] | None:
    if not base or base.get("accuracy") is None:
        return None
    pruned = [m for m in results.get("models", []) if m.get("method") != "baseline" and m.get("accuracy") is not None]
    beaten = sorted((m for m in pruned if m["accuracy"] > base["accuracy"]), key=lambda m: -m["accuracy"])
    ev = []
    frames = f" on {base['frames']:,} test frames" if base.get("frames") else ""
    if beaten:
        ev.append(f"The baseline scored {100 * base['accuracy']:.1f}%{frames}; {len(beaten)} of {len(pruned)} "
                  f"pruned models scored higher:")
        for m in beaten:
            c = compare_accuracy(m, base)
            sig = ("" if c["significant"] is None else
                   ", beyond noise" if c["significant"] else ", within noise")
            ev.append(f"{m['id']}: {100 * m['accuracy']:.1f}% ({c['diff']:+.1f} points{sig}; {c['how']})")
    tr = base.get("training") or {}
    hist = [h for h in tr.get("val_acc") or [] if isinstance(h, (int, float))]
    rising = False
    if hist and tr.get("best_epoch") and tr.get("epochs") and tr["best_epoch"] >= len(hist) and len(hist) >= 2:
        rising = hist[-1] > hist[max(0, len(hist) - 3)]
        if rising:
            tail = " -> ".join(f"{100 * v:.1f}%" for v in hist[-3:])
            ev.append(f"Its validation accuracy was still rising when training stopped: the best epoch was the last "
                      f"({tr['best_epoch']} of {tr['epochs']}); last epochs {tail}.")
    n_classes = results.get("dataset", {}).get("n_classes")
    if isinstance(n_classes, int) and n_classes > 1:
        chance = 1 / n_classes
        if base["accuracy"] < 1.5 * chance:
            ev.append(f"Its accuracy is close to chance ({100 * chance:.1f}% for {n_classes} classes).")
    if not ev:
        return None
    if beaten:
        title = (f"The baseline was beaten by {len(beaten)} pruned model{'s' if len(beaten) > 1 else ''}: it has "
                 "probably not converged, and accuracy deltas against it flatter pruning. Train it longer "
                 "(more [train] epochs) before reading accuracy losses.")
    else:
        title = ("The baseline may not have converged: accuracy deltas against it may flatter pruning. "
                 "Train it longer before reading accuracy losses.")
    return {"kind": "baseline", "title": title, "evidence": ev}


def _noisy_timing(results, verdict, base) -> dict[str, Any] | None:
    table = latency_table(results)
    ev = []
    for entry in verdict.get("targets", []):
        for f in entry.get("fastest", []):
            if f.get("resolved") is False:
                k = next(k for k in table if key_label(k) == f["key"])
                a, b = table[k][f["id"]], table[k][f["runner_up"]]
                ev.append(f"{f['key']}: {f['id']} ({_ms_range(a)}) and {f['runner_up']} ({_ms_range(b)}) overlap, so "
                          f"the {100 * (f['over_runner_up'] - 1):.1f}% gap that ranks them is inside the "
                          "round-to-round spread.")
    for k in sorted(table):
        recs = table[k]
        b = recs.get(base["id"]) if base else None
        for mid, rec in sorted(recs.items()):
            s = spread(rec)
            if s is not None and s > NOISY_SPREAD:
                ev.append(f"{key_label(k)}: {mid}'s rounds differ by {100 * s:.0f}% of its median ({_ms_range(rec)}).")
            if b is not None and mid != base["id"] and len(rounds_of(rec)) >= 2 and len(rounds_of(b)) >= 2:
                r, rb = rounds_of(rec), rounds_of(b)
                if not (max(r) < min(rb) or min(r) > max(rb)):
                    ev.append(f"{key_label(k)}: {mid} ({_ms_range(rec)}) and the baseline ({_ms_range(b)}) overlap: "
                              f"its speed-up of {b['median_ms'] / rec['median_ms']:.2f}x is not resolved.")
    if not ev:
        return None
    return {"kind": "noisy-timing", "title": "Noisy timing: rounds disagree by more than some differences they rank. "
            "Raise [profile] rounds or min_time_ms, or measure on an idle machine.", "evidence": ev}


def _missed(results, base) -> dict[str, Any] | None:
    ev = []
    for m in results.get("models", []):
        if missed_target(m, base):
            f = macs_fraction(m, base)
            ev.append(f"{m['id']}: {f:.3f} of the baseline MACs for a target of {m['target']:g} "
                      f"({100 * (f / m['target'] - 1):+.1f}%, outside the {100 * TOLERANCE:g}% every method promises).")
    if not ev:
        return None
    return {"kind": "missed-target", "title": "A method missed its MACs target: it is not compared at equal MACs.",
            "evidence": ev}


def _eval_split(results, base) -> dict[str, Any] | None:
    ev = []
    flagged_base = False
    for m in results.get("models", []):
        e = m.get("eval") or {}
        if not e:
            continue
        split, same = e.get("split"), e.get("same_as_training")
        why = None
        if split in ("train", "all"):
            why = f"scored on the {split!r} split, which holds its training frames"
        elif same is False:
            why = (f"scored on the {split!r} split of a file other than the one its weights were trained on "
                   f"(trained on sha256 {str(e.get('trained_on'))[:12]}, scored on {str(e.get('sha256'))[:12]}): "
                   "that split cannot be shown to exclude its training frames")
        if why:
            ev.append(f"{m['id']}: {why}.")
            flagged_base = flagged_base or m.get("method") == "baseline"
    if flagged_base:
        ev.append("Every pruned model inherits the baseline's weights, so its accuracy may include frames the "
                  "baseline was trained on.")
    if not ev:
        return None
    return {"kind": "eval-split", "title": "Accuracy was measured on frames that include, or may include, training "
            "frames: it overstates what the models do on unseen signals.", "evidence": ev}


def machine_identity(rec: dict[str, Any]) -> tuple:
    """Where a record was timed: its ``measured_on`` (board, power mode, clock state) when it has one,
    else the machine fields (a ``board`` dict counts by its model, not its changing frequencies)."""
    if rec.get("measured_on"):
        return (("measured_on", str(rec["measured_on"])),)
    m = rec.get("machine") or {}
    out = []
    for f in MACHINE_FIELDS:
        v = m.get(f, rec.get(f))
        if isinstance(v, dict):
            v = v.get("model") or v.get("state")
        if v is not None:
            out.append((f, str(v)))
    return tuple(out)


def _describe_machine(ident: tuple) -> str:
    d = dict(ident)
    if "measured_on" in d:
        return d["measured_on"]
    parts = [d.get("board") or d.get("cpu") or "unknown machine"]
    if "power_mode" in d or "nvpmodel" in d:
        parts.append(f"power mode {d.get('power_mode') or d.get('nvpmodel')}")
    if "hostname_sha256" in d:
        parts.append(f"host {d['hostname_sha256'][:8]}")
    return ", ".join(parts)


def _merged(results) -> dict[str, Any] | None:
    groups: dict[tuple, list[str]] = {}
    for rec in results.get("latency", []):
        ident = machine_identity(rec)
        if ident:
            groups.setdefault(ident, []).append(f"{rec.get('model_id')} {key_label(latency_key(rec)[:4])}")
    if len(groups) < 2:
        return None
    ev = []
    for ident, recs in groups.items():
        shown = ", ".join(recs[:4]) + (f" and {len(recs) - 4} more" if len(recs) > 4 else "")
        ev.append(f"{_describe_machine(ident)}: {len(recs)} records ({shown}).")
    return {"kind": "merged-machines", "title": f"Latency from {len(groups)} different machines, boards or power "
            "modes is mixed: a speed-up between records of different machines measures the hardware, not the "
            "pruning.", "evidence": ev}


def _few_frames(results, verdict, base) -> dict[str, Any] | None:
    models = [m for m in results.get("models", []) if m.get("accuracy") is not None and m.get("frames")]
    if not models or any(m.get("accuracy_ci") or m.get("accuracy_runs") for m in models):
        return None
    n = min(m["frames"] for m in models)
    p = base["accuracy"] if base and base.get("accuracy") is not None else models[0]["accuracy"]
    h = 100 * binomial_halfwidth(p, n)
    ev = []
    if h > 1.0:
        ev.append(f"{n:,} test frames measure an accuracy near {100 * p:.0f}% to about +/-{h:.1f} points (95%), "
                  f"while the tables show 0.1 points; about {frames_for_halfwidth(p, 0.01):,} frames would give "
                  "+/-1 point.")
    for entry in verdict.get("targets", []):
        ma = entry.get("most_accurate") or {}
        c = ma.get("comparison")
        if c and c.get("significant") is False:
            ev.append(f"At {100 * entry['target']:g}% MACs the lead of {ma['id']} over {ma['runner_up']} "
                      f"({c['diff']:+.1f} points) is within the noise of {n:,} frames.")
    if not ev:
        return None
    return {"kind": "few-frames", "title": "Too few test frames for the precision shown: small accuracy differences "
            "are not resolved. Use more frames ([data] per_key) or several seeds.", "evidence": ev}


def caveats(results: dict[str, Any], verdict: dict[str, Any]) -> list[dict[str, Any]]:
    base = next((m for m in results.get("models", []) if m.get("method") == "baseline"), None)
    found = [_baseline(results, base), _missed(results, base), _eval_split(results, base),
             _merged(results), _noisy_timing(results, verdict, base), _few_frames(results, verdict, base)]
    return [w for w in found if w]
