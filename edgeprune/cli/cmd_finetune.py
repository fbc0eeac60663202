"""``edgeprune finetune``: fine-tune a (pruned) checkpoint with the reference recipe."""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgepruneError
from .args import add_data, add_model, add_out, add_runtime, check_range
from .main import add_code, add_json, add_seed, emit

ORDER = 42


def register(sub, common):
    p = sub.add_parser("finetune", parents=[common], help="fine-tune a pruned checkpoint (optionally with distillation)",
                       description="Fine-tune with the reference recipe (Adam 1e-3, StepLR(10, 0.8), batch 128, "
                                   "+1e-4 sum|theta|), selecting the epoch on the validation split of the "
                                   "checkpoint's recorded split. --distill adds knowledge distillation from a "
                                   "teacher checkpoint (usually the unpruned model).")
    add_model(p, help="checkpoint to fine-tune")
    add_data(p)
    p.add_argument("--epochs", type=int, required=True, help="epochs")
    add_out(p, help="output checkpoint")
    p.add_argument("--distill", default=None, metavar="TEACHER_CKPT", help="distil from this checkpoint")
    p.add_argument("--distill-alpha", type=float, default=0.5, help="weight of the distillation term (default 0.5)")
    p.add_argument("--temperature", type=float, default=4.0, help="distillation temperature (default 4)")
    p.add_argument("--l1", type=float, default=1e-4, help="L1 weight on all parameters (default 1e-4)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    add_runtime(p, batch_size=128, batch_help="batch size")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from OUT.state")
    p.add_argument("--log", default=None, help="per-epoch JSON lines log (default OUT.log.jsonl)")
    add_seed(p)
    add_json(p)
    add_code(p)
    p.set_defaults(func=run_finetune)


def run_finetune(args):
    from ..training.finetune import finetune

    out = Path(args.out)
    if out.is_dir():
        raise EdgepruneError(f"--out {out} is a folder; give a checkpoint file name")
    check_range(args, "epochs", lo=0)
    log = Path(args.log) if args.log else out.with_name(out.name + ".log.jsonl")
    if not args.resume:
        log.unlink(missing_ok=True)
    res = finetune(args.model, args.data, args.epochs, out, distill_from=args.distill,
                   distill_alpha=args.distill_alpha, temperature=args.temperature, l1=args.l1, lr=args.lr,
                   batch_size=args.batch_size, seed=args.seed, resume=args.resume, log_path=log,
                   threads=args.threads)
    text = (f"fine-tuned {res['model']} for {res['epochs']} epochs"
            + (f" (distilled from {res['distill']['model']})" if res["distill"] else "")
            + f"; best epoch {res['best_epoch']}: val acc {res['val_acc']:.4f}"
            + (f", test acc {res['test_acc']:.4f}" if res["test_acc"] is not None else "")
            + f"\nwrote {out}")
    emit(args, res, text)
    return 0
