"""``edgeprune train`` and ``edgeprune eval``."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import EdgepruneError
from ..training import DEBUG_ENV
from .args import add_data, add_model, add_out, add_runtime, check_range
from .main import add_code, add_json, add_seed, emit

ORDER = 30



def register(sub, common):
    p = sub.add_parser(
        "train", parents=[common], help="train a zoo model on a dataset",
        description="Train a zoo model (Adam, StepLR) on the train split of a dataset, select the epoch with the best "
                    "validation accuracy, and write a checkpoint. The training state is saved atomically after every "
                    "epoch to <out>.state, so --resume continues an interrupted run. Under torchrun the same command "
                    "trains data-parallel (DistributedDataParallel; gloo on CPU, nccl on CUDA) and only rank 0 writes: "
                    "torchrun --nproc_per_node 2 -m edgeprune train ...")
    add_data(p, help="dataset file (.npz or a supported real format)")
    add_model(p, help="zoo model name (see `edgeprune models`) or your own network as FILE.py:NAME "
                        "(an nn.Module class or a function returning one)")
    p.add_argument("--kwargs", default=None, help="JSON keyword arguments for FILE.py:NAME")
    p.add_argument("--epochs", type=int, required=True, help="number of epochs")
    add_out(p, help="output checkpoint (.pt)")
    add_runtime(p, device=True, batch_size=128, batch_help="global batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--step-size", type=int, default=10, help="StepLR step in epochs (default 10)")
    p.add_argument("--gamma", type=float, default=0.8, help="StepLR factor (default 0.8)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay (default 0)")
    p.add_argument("--patience", type=int, default=0,
                   help="stop when the validation loss has not improved for N epochs (default 0: train all epochs)")
    add_seed(p)
    p.add_argument("--split", default="0.6,0.2,0.2", help="train,val,test fractions (default 0.6,0.2,0.2)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the stratified split (default 0)")
    p.add_argument("--min-snr", type=float, default=None, help="keep frames with SNR >= this (dB)")
    p.add_argument("--max-snr", type=float, default=None, help="keep frames with SNR <= this (dB)")
    p.add_argument("--resume", action="store_true", help="continue from <out>.state if an interrupted run left one")
    p.add_argument("--log", default=None, help="JSON-lines log, one record per epoch (default <out>.log.jsonl)")
    p.add_argument("--ddp-debug-dir", default=None,
                   help=f"write rank<N>.json with a digest of each rank's final weights here (or set {DEBUG_ENV})")
    add_json(p)
    p.set_defaults(func=run_train)

    q = sub.add_parser(
        "eval", parents=[common], help="evaluate a checkpoint: accuracy, accuracy per SNR, confusion matrix",
        description="Evaluate a checkpoint on a dataset. On the file it was trained on, the recorded test split "
                    "(fractions, seed, SNR filter) is reproduced; on another file all frames are used unless --split "
                    "is given. Classes are matched by name.")
    add_model(q)
    add_data(q)
    q.add_argument("--split", choices=["test", "val", "train", "all"], default=None,
                   help="which frames (default: test on the training file, all on another file)")
    q.add_argument("--min-snr", type=float, default=None, help="also drop frames with SNR below this (dB)")
    q.add_argument("--max-snr", type=float, default=None, help="also drop frames with SNR above this (dB)")
    add_runtime(q, device=True, batch_size=512, batch_help="inference batch size")
    q.add_argument("--plot", default=None, metavar="DIR", help="write accuracy_vs_snr.png and confusion.png here")
    add_json(q)
    add_code(q)
    q.set_defaults(func=run_eval)


def run_train(args):
    from ..training.train import train_model

    result = train_model(args.data, args.model, args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         step_size=args.step_size, gamma=args.gamma, weight_decay=args.weight_decay, seed=args.seed,
                         split=args.split, split_seed=args.split_seed, min_snr=args.min_snr, max_snr=args.max_snr,
                         threads=args.threads, device=args.device, resume=args.resume, log=args.log,
                         patience=args.patience,
                         ddp_debug_dir=args.ddp_debug_dir, kwargs=args.kwargs,
                         notify=lambda msg: print(f"edgeprune: {msg}", file=sys.stderr, flush=True))
    if "checkpoint" in result:  # rank 0 (the other ranks of a torchrun job print nothing)
        emit(args, result, train_text(result))
    return 0


def train_text(r) -> str:
    """The human-readable lines for a :func:`edgeprune.training.train.train_model` result."""
    procs = r["processes"]
    return (f"trained {r['model']} for {r['epochs']} epochs on {r['frames']['train']} frames "
            f"({procs} process{'es' if procs > 1 else ''}, {r['device']}); "
            f"best epoch {r['best_epoch']}: val acc {r['val_acc']:.4f}"
            + (f", test acc {r['test_acc']:.4f}" if "test_acc" in r else "")
            + f"\nwrote {r['checkpoint']} (log {r['log']})")


def run_eval(args):
    check_range(args, "batch_size", "threads", lo=1)
    from ..checkpoint import load_checkpoint
    from ..training.distributed import resolve_device
    from ..training.evaluate import eval_data, evaluate
    from ..training.trainer import set_threads

    set_threads(args.threads)
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.model)
    if not Path(args.data).exists():
        raise EdgepruneError(f"dataset {args.data} does not exist")
    ds, info = eval_data(ckpt, args.data, args.split, args.min_snr, args.max_snr)
    res = evaluate(ckpt, ds, batch_size=args.batch_size, device=device)
    out = {"checkpoint": str(args.model), "model": ckpt.spec["name"], "data": info, **res}
    if args.plot:
        from ..training.plots import plot_evaluation

        out["plots"] = plot_evaluation(res, args.plot)
    emit(args, out, _eval_text(out))
    return 0


def _eval_text(r) -> str:
    d = r["data"]
    lines = [f"{r['model']} on {d['path']} ({d['split']} split, {r['frames']} frames): "
             f"accuracy {100 * r['accuracy']:.2f}%",
             "", f"{'SNR dB':>7} {'frames':>7} {'accuracy':>9}"]
    from ..data.snr import snr_text

    if r["per_snr"] and r["per_snr"][0].get("bin_db"):
        lines[-1] += f"   ({r['per_snr'][0]['bin_db']:g} dB bins, labelled by their centre)"
    for row in r["per_snr"]:
        lines.append(f"{snr_text(row['snr']):>7} {row['frames']:>7} {100 * row['accuracy']:>8.2f}%")
    lines += ["", f"{'class':<12} {'frames':>7} {'recall':>8}"]
    for c in r["per_class"]:
        rec = "-" if c["recall"] is None else f"{100 * c['recall']:.2f}%"
        lines.append(f"{c['name']:<12} {c['frames']:>7} {rec:>8}")
    n = len(r["classes"])
    if n <= 12:
        w = max(6, max(len(c) for c in r["classes"]) + 1)
        lines += ["", "confusion (rows true, columns predicted)", " " * w + "".join(f"{c[:w - 1]:>{w}}" for c in r["classes"])]
        for name, row in zip(r["classes"], r["confusion"]):
            lines.append(f"{name[:w - 1]:<{w}}" + "".join(f"{v:>{w}}" for v in row))
    if r.get("plots"):
        lines += ["", "plots: " + ", ".join(r["plots"].values())]
    return "\n".join(lines)

