"""``edgeprune prune``: prune a checkpoint with any registered method, optionally fine-tune."""

from __future__ import annotations

import json

from .main import add_json, add_seed, emit

ORDER = 41


def register(sub, common):
    from ..pruning.registry import methods

    avail = methods()
    p = sub.add_parser("prune", parents=[common], help="prune a checkpoint (layer pruning or a baseline method)",
                       description="Prune a trained checkpoint with a registered method and write the pruned "
                                   "checkpoint (its lineage records the method, the parent and the plan). "
                                   "Methods: " + "; ".join(f"{k}: {v}" for k, v in avail.items()))
    p.add_argument("--method", choices=sorted(avail) or None, default="layer", help="pruning method (default layer)")
    p.add_argument("--model", required=True, help="trained checkpoint")
    p.add_argument("--data", default=None, help="dataset file (needed unless a --plan is given)")
    p.add_argument("--out", required=True, help="output checkpoint")
    p.add_argument("--plan", default=None, help="plan.json from 'edgeprune analyze' (layer method)")
    from .cmd_analyze import add_analysis_options, add_budget_options

    add_budget_options(p, "keep at most this fraction of the baseline MACs (e.g. 0.15 = 85%% reduction)")
    p.add_argument("--transition", choices=["keep", "reinit"], default=None,
                   help="stage transitions: keep the trained block (default) or re-initialise it (reference)")
    add_analysis_options(p)
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra method option (VALUE parsed as JSON when possible); repeatable")
    p.add_argument("--finetune-epochs", type=int, default=0, help="fine-tune for this many epochs afterwards")
    p.add_argument("--distill", action="store_true", help="fine-tune with distillation from the unpruned model")
    add_seed(p)
    add_json(p)
    p.set_defaults(func=run_prune)


_LAYER_ONLY = ("plan", "keep", "keep_units", "transition", "similarity", "segments", "max_segments",
               "importance", "search", "batches", "batch_size")
_LAYER_DEFAULTS = {"similarity": "cka-unbiased", "segments": "auto", "importance": "synflow", "search": "per-unit",
                   "batches": 5, "batch_size": 128}


def _options(args) -> dict:
    from ..errors import EdgepruneError

    opts = {}
    for name in _LAYER_ONLY:
        v = getattr(args, name)
        if v is None:
            continue
        if args.method != "layer" and _LAYER_DEFAULTS.get(name) == v:
            continue
        opts[name] = v
    for item in args.opt:
        if "=" not in item:
            raise EdgepruneError(f"--opt takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            opts[k.strip().replace("-", "_")] = json.loads(v)
        except json.JSONDecodeError:
            opts[k.strip().replace("-", "_")] = v
    return opts


def run_prune(args):
    from pathlib import Path

    from ..checkpoint import load_checkpoint, make_meta, save_checkpoint
    from ..data.readers import load_dataset
    from ..errors import EdgepruneError
    from ..models.macs import model_stats
    from ..pruning.registry import get_method

    out = Path(args.out)
    if out.is_dir():
        raise EdgepruneError(f"--out {out} is a folder; give a checkpoint file name")
    if args.finetune_epochs < 0:
        raise EdgepruneError("--finetune-epochs must be >= 0")
    if (args.finetune_epochs or args.distill) and not args.data:
        raise EdgepruneError("fine-tuning needs --data")
    if args.distill and not args.finetune_epochs:
        raise EdgepruneError("--distill needs --finetune-epochs > 0")
    method = get_method(args.method)
    ckpt = load_checkpoint(args.model)
    data = load_dataset(args.data) if args.data else None
    res = method(ckpt, data, target_macs=args.target_macs, seed=args.seed, **_options(args))
    before, after = model_stats(ckpt.spec), model_stats(res.spec)
    meta = make_meta(res.spec, ckpt.classes, normalization=ckpt.meta.get("normalization", "none"))
    for key in ("dataset", "split"):
        if key in ckpt.meta:
            meta[key] = ckpt.meta[key]
    lineage = dict(res.lineage)
    lineage.setdefault("op", "prune")
    lineage.setdefault("method", args.method)
    lineage.setdefault("parent_sha256", ckpt.sha256())
    lineage.setdefault("macs_before", before["macs"])
    lineage.setdefault("macs_after", after["macs"])
    meta["lineage"] = list(ckpt.meta.get("lineage", [])) + [lineage]
    save_checkpoint(out, res.spec, res.state_dict, meta)
    doc = {"checkpoint": str(out), "method": args.method, "model_before": ckpt.spec["name"],
           "model_after": res.spec["name"], "before": before, "after": after,
           "macs_reduction": 1 - after["macs"] / before["macs"],
           "params_reduction": 1 - after["params"] / before["params"],
           "kept_units": res.lineage.get("kept_units"), "finetune": None}
    if args.finetune_epochs:
        from ..training.finetune import finetune

        doc["finetune"] = finetune(out, data, args.finetune_epochs, out, seed=args.seed,
                                   distill_from=ckpt if args.distill else None)
    lines = [f"pruned {ckpt.spec['name']} with {args.method} -> {res.spec['name']}",
             f"MACs   {before['macs']:>12,} -> {after['macs']:>12,} (-{100 * doc['macs_reduction']:.1f}%)",
             f"params {before['params']:>12,} -> {after['params']:>12,} (-{100 * doc['params_reduction']:.1f}%)",
             f"units  {before['units']:>12} -> {after['units']:>12}   weight layers {before['weight_layers']} -> "
             f"{after['weight_layers']}"]
    if doc["kept_units"] is not None:
        lines.append(f"kept units {doc['kept_units']}")
    if doc["finetune"]:
        f = doc["finetune"]
        lines.append(f"fine-tuned {args.finetune_epochs} epochs: val acc {f['val_acc']:.4f}"
                     + (f", test acc {f['test_acc']:.4f}" if f["test_acc"] is not None else ""))
    lines.append(f"wrote {out}")
    emit(args, doc, "\n".join(lines))
    return 0
