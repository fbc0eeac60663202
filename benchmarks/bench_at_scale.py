"""Issue 28's at-scale benchmark: layer pruning against random, DBP and channel pruning at matched MACs,
on converged baselines, over 3 seeds, with the reference arm and the iterative criterion beside them.

Runs, in DIR (resumable: every stage of every study is recorded in its state.json, and the extra fine-tuning
runs are skipped when their output exists; re-run the same command to continue):

1. ``DIR/main``: the study of configs/at-scale.toml (``[study] seeds``: one folder per seed): data, the
   baseline trained with early stopping, ``layer`` (default criterion), ``dbp``, ``random``, ``channel-l1`` at
   each MACs target, the same fine-tuning for all.
2. ``DIR/reference/seed-<s>``: ``[prune] reference = true`` on that seed's baseline (its own budget: the MACs it
   reaches are reported, the row is labelled with the lowest target).
3. ``DIR/iterative/seed-<s>``: the layer method with ``importance = "iterative-ablation"`` on that seed's
   baseline, at every target.
4. ``DIR/extra-epochs``: every pruned model fine-tuned for 5 more epochs (same recipe and seed), to check that
   no method's mean accuracy moves by more than 0.5 points.

Prints and writes (``DIR/at_scale.json``, ``DIR/at_scale.md``): mean +- 95% CI of the test accuracy per method
and target, the paired difference to ``random`` (same seed, data and baseline), the loss against the baseline
(paired, mean +- 95% CI), the epochs each baseline used, and the extra-epochs check.

    python benchmarks/bench_at_scale.py --out bench-out/at-scale            # the full run (hours)
    python benchmarks/bench_at_scale.py --smoke --out bench-out/at-scale-smoke
    python benchmarks/bench_at_scale.py --estimate                          # time the full run would take
    ... --executor ray                                                       # compute stages on a Ray cluster
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("EDGEPRUNE_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
EXTRA_EPOCHS, EXTRA_LIMIT = 5, 0.005


def load(args) -> dict:
    from edgeprune.study.config import load_config, normalise

    cfg = load_config(args.config)
    if args.smoke:   # the same pipeline, tiny: proves the benchmark runs end to end
        cfg["study"]["seeds"] = [0, 1]
        cfg["data"].update(per_key=4, snrs=[10, 18], length=32)
        cfg["train"].update(epochs=2, patience=1)
        cfg["finetune"]["epochs"] = 1
        cfg["profile"].update(iters=3, warmup=1)
        cfg["prune"]["methods"] = ["layer", "dbp", "random", "channel-l1"]
    if args.executor:
        cfg["study"]["executor"] = args.executor
    return normalise(cfg)


def arm_config(cfg: dict, seed: int, baseline: Path, **prune) -> dict:
    """One seed's study on the main study's trained baseline, with other ``[prune]`` settings."""
    sub = copy.deepcopy(cfg)
    sub["study"].update(seed=int(seed), seeds=[], name=f"{cfg['study']['name']}-arm")
    sub["model"]["checkpoint"] = str(baseline)
    sub["prune"].update(prune)
    return sub


def models_of(folder: Path) -> list[dict]:
    return json.loads((folder / "results.json").read_text())["models"]


def run_all(cfg: dict, out: Path, log) -> dict:
    """Every study; returns {arm: {seed: study folder}} and the baselines' epochs."""
    from edgeprune.study.runner import run_study

    seeds = [int(s) for s in cfg["study"]["seeds"]]
    t0 = time.perf_counter()
    main = run_study(cfg, out / "main", log)
    log(f"main study done ({time.perf_counter() - t0:.0f} s)")
    folders = {"main": {s: out / "main" / f"seed-{s}" for s in seeds}, "reference": {}, "iterative": {}}
    low = min(float(t) for t in cfg["prune"]["targets"])
    for s in seeds:
        base = folders["main"][s] / "models" / "baseline.pt"
        arms = {"reference": dict(methods=["layer"], targets=[low], reference=True),
                "iterative": dict(methods=["layer"], importance="iterative-ablation")}
        for arm, prune in arms.items():
            folder = out / arm / f"seed-{s}"
            run_study(arm_config(cfg, s, base, **prune), folder, log)
            folders[arm][s] = folder
            log(f"{arm} seed {s} done ({time.perf_counter() - t0:.0f} s)")
    return {"folders": folders, "baseline_epochs": main["summary"].get("baseline_epochs", {})}


ARM_NAMES = {"main": None, "reference": "reference", "iterative": "layer-iterative"}


def per_seed_rows(folders: dict) -> dict[int, list[dict]]:
    """Each seed's models of every arm, the arms' layer rows renamed (their baselines are the main one's)."""
    rows: dict[int, list[dict]] = {}
    for arm, by_seed in folders.items():
        for s, folder in by_seed.items():
            for m in models_of(folder):
                if arm != "main" and m["method"] == "baseline":
                    continue
                r = dict(m)
                if ARM_NAMES[arm]:
                    r["method"] = ARM_NAMES[arm]
                r["arm"], r["folder"] = arm, str(folder)
                rows.setdefault(int(s), []).append(r)
    return rows


def extra_epochs(cfg: dict, out: Path, rows: dict[int, list[dict]], log) -> list[dict]:
    """Every pruned model fine-tuned EXTRA_EPOCHS more epochs; its test accuracy beside the study's."""
    from edgeprune.study.runner import _file_id, work_evaluate, work_finetune

    ft = cfg["finetune"]
    threads = cfg["study"]["threads"] or None
    done = []
    for s, models in sorted(rows.items()):
        for m in models:
            if m["method"] == "baseline" or m.get("accuracy") is None:
                continue
            folder = Path(m["folder"])
            fid = _file_id(m["id"])
            pruned = folder / "models" / f"{fid}.pruned.pt"
            data = folder / "data" / "dataset.npz"
            dest = out / "extra-epochs" / m["arm"] / f"seed-{s}" / f"{fid}.pt"
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                work_finetune(pruned, data, dest, ft["epochs"] + EXTRA_EPOCHS, ft["lr"], ft["l1"], s, None, threads)
                log(f"extra epochs: {m['arm']} {m['id']} seed {s}")
            acc = work_evaluate(dest, data, None)["accuracy"]
            done.append({"seed": s, "method": m["method"], "target": m["target"], "accuracy": m["accuracy"],
                         "accuracy_extra": acc})
    return done


def paired(rows: dict[int, list[dict]], key_a, key_b) -> dict:
    from edgeprune.study.stats import mean_ci

    return mean_ci([key_a(s) - key_b(s) for s in sorted(rows)])


def report(cfg: dict, rows: dict[int, list[dict]], extra: list[dict], epochs: dict) -> dict:
    """The summary: mean +- CI and paired differences to random (edgeprune.study.stats), the loss against each
    seed's baseline, and the extra-epochs check per (method, target)."""
    from edgeprune.study.stats import mean_ci, summarise

    summ = summarise(rows, epochs)
    base = {s: next(m["accuracy"] for m in ms if m["method"] == "baseline") for s, ms in rows.items()}
    for r in summ["rows"]:
        if r["method"] == "baseline":
            continue
        acc = {s: next(m["accuracy"] for m in rows[s] if m["method"] == r["method"]
                       and float(m["target"]) == r["target"]) for s in r["seeds"]}
        r["loss_vs_baseline"] = mean_ci([base[s] - acc[s] for s in r["seeds"]])
        macs = [m.get("macs") for s in r["seeds"] for m in rows[s]
                if m["method"] == r["method"] and float(m["target"]) == r["target"]]
        bm = [m.get("macs") for s in r["seeds"] for m in rows[s] if m["method"] == "baseline"]
        if all(macs) and all(bm):
            r["macs_fraction"] = [a / b for a, b in zip(macs, bm)]
        ex = [e for e in extra if e["method"] == r["method"] and float(e["target"]) == r["target"]]
        if ex:
            change = mean_ci([e["accuracy_extra"] - e["accuracy"] for e in ex])
            r["extra_epochs"] = {"epochs": EXTRA_EPOCHS, "mean_change": change["mean"], "ci": change["ci"],
                                 "max_abs_change_one_seed": max(abs(e["accuracy_extra"] - e["accuracy"]) for e in ex),
                                 "converged": abs(change["mean"]) <= EXTRA_LIMIT}
    summ["extra_epochs_all_converged"] = all(r.get("extra_epochs", {}).get("converged", True) for r in summ["rows"])
    return summ


def _macs_cell(mf) -> str:
    return "-" if not mf else f"{min(mf):.3f}..{max(mf):.3f}"


def _extra_cell(ex) -> str:
    if not ex:
        return "-"
    return f"{100 * ex['mean_change']:+.2f}" + ("" if ex["converged"] else " (!)")


def markdown(summ: dict) -> str:
    lines = ["| method | MACs target | MACs reached | seeds | accuracy (%) | vs random (points) | "
             "loss vs baseline (points) | +5 epochs (points) |", "|---|---|---|---|---|---|---|---|"]

    def ci(d, scale=100.0, sign=False):
        if not d or d.get("mean") is None:
            return "-"
        fmt = "+.2f" if sign else ".2f"
        return f"{scale * d['mean']:{fmt}}" + ("" if d.get("ci") is None else f" +- {scale * d['ci']:.2f}")

    for r in summ["rows"]:
        vr = r.get("vs_random")
        mf = r.get("macs_fraction")
        ex = r.get("extra_epochs")
        lines.append(f"| {r['method']} | {r['target']:g} | {_macs_cell(mf)} | "
                     f"{len(r['seeds'])} | {ci(r['accuracy'])} | "
                     f"{ci(vr, sign=True) + (' *' if vr and vr.get('excludes_zero') else '')} | "
                     f"{ci(r.get('loss_vs_baseline'), sign=True)} | "
                     f"{_extra_cell(ex)} |")
    lines.append("")
    lines.append("Baseline training: " + "; ".join(
        f"seed {s}: {e.get('epochs_run')} of {e.get('epochs')} epochs, best epoch {e.get('best_epoch')}"
        + (" (early stopping)" if e.get("stopped_early") else "") for s, e in sorted(summ["baseline_epochs"].items())))
    lines.append(f"+5 epochs check: every method's mean accuracy moved by at most 0.5 points: "
                 f"{'yes' if summ['extra_epochs_all_converged'] else 'NO (rows marked (!))'}")
    return "\n".join(lines)


def step_rates(model: str, length: int, threads: int, steps: int = 4) -> dict:
    """Measured training and inference frames/s of ``model`` (batch 128, this machine, now)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from edgeprune.models import build_model, make_spec

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build_model(make_spec(model, length, 11))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(128, 2, length)).astype(np.float32) * 0.01)
    y = torch.arange(128) % 11
    out = {}
    for phase in ("train", "infer"):
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            if phase == "train":
                net.train()
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            else:
                net.eval()
                with torch.no_grad():
                    net(x)
            if i:
                times.append(time.perf_counter() - t0)
        out[phase] = 128 / sorted(times)[len(times) // 2]
    return out


def estimate(cfg: dict, rates: dict) -> dict:
    """Hours the full run takes at the measured rates (upper bound: every baseline runs all its epochs)."""
    frames = 11 * 20 * cfg["data"]["per_key"]
    train_f, val_f = frames * cfg["data"]["split"][0], frames * cfg["data"]["split"][1]
    epoch_s = train_f / rates["train"] + val_f / rates["infer"]
    base_s = cfg["train"]["epochs"] * epoch_s
    targets = [float(t) for t in cfg["prune"]["targets"]]
    # pruned models: time per frame taken as proportional to the MACs kept, at least a quarter of the full model's
    fts = [max(t, 0.25) for t in targets] * (len(cfg["prune"]["methods"]) + 1) + [max(min(targets), 0.25)]
    ft_epochs = 2 * cfg["finetune"]["epochs"] + EXTRA_EPOCHS          # the study's run and the +5 run
    ft_s = sum(fts) * ft_epochs * epoch_s
    iter_s = (27 * 28 // 2 - 1) * 1024 / rates["infer"]               # iterative-ablation: 377 passes of 1024 frames
    seeds = len(cfg["study"]["seeds"]) or 1
    total = seeds * (base_s + ft_s + iter_s)
    return {"rates_frames_per_s": rates, "epoch_s_full_model": epoch_s, "per_seed_s": {
        "baseline_max": base_s, "finetune": ft_s, "iterative_analysis": iter_s}, "seeds": seeds,
        "total_hours_upper": total / 3600, "note": "one process; seeds run one after another (Ray: in parallel)"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "at-scale.toml"))
    ap.add_argument("--out", default="bench-out/at-scale")
    ap.add_argument("--smoke", action="store_true", help="a tiny version of the same pipeline (minutes)")
    ap.add_argument("--estimate", action="store_true", help="measure step rates here and print the full run's time")
    ap.add_argument("--executor", choices=["local", "ray"], default=None)
    args = ap.parse_args(argv)
    cfg = load(args)
    out = Path(args.out)
    from edgeprune.atomic import write_json, write_text

    if args.estimate:
        rates = step_rates(cfg["model"]["name"], cfg["data"]["length"] or 128, cfg["study"]["threads"] or 1)
        est = estimate(cfg, rates)
        print(json.dumps(est, indent=1))
        write_json(out / "estimate.json", est)
        return 0
    t0 = time.perf_counter()
    log = (lambda m: print(m, flush=True))
    res = run_all(cfg, out, log)
    rows = per_seed_rows(res["folders"])
    extra = extra_epochs(cfg, out, rows, log)
    summ = report(cfg, rows, extra, res["baseline_epochs"])
    summ.update(config=cfg, seconds=time.perf_counter() - t0, extra_runs=extra, smoke=bool(args.smoke))
    md = markdown(summ)
    print(md)
    write_json(out / "at_scale.json", summ)
    write_text(out / "at_scale.md", md + "\n")
    print(f"wrote {out / 'at_scale.json'}, {out / 'at_scale.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
