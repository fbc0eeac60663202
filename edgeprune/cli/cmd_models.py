"""``edgeprune models`` and ``edgeprune inspect``."""

from __future__ import annotations

from .main import add_json, emit

ORDER = 20


def register(sub, common):
    p = sub.add_parser("models", parents=[common], help="list the model zoo with params and MACs",
                       description="List every zoo model with its parameters and MACs for a frame length and class count.")
    p.add_argument("--length", type=int, default=128, help="frame length L (default 128)")
    p.add_argument("--classes", type=int, default=11, help="number of classes (default 11)")
    add_json(p)
    p.set_defaults(func=run_models)

    q = sub.add_parser("inspect", parents=[common], help="show a checkpoint's spec, size, metrics and lineage",
                       description="Show a checkpoint's architecture, params, MACs, layers, classes, input spec, "
                                   "normalisation, metrics and lineage.")
    q.add_argument("checkpoint", help="an edgeprune checkpoint (.pt)")
    add_json(q)
    q.set_defaults(func=run_inspect)


def run_models(args):
    from ..models import ZOO, make_spec
    from ..models.macs import MAC_DEFINITION, model_stats

    rows = []
    for name, (desc, _) in ZOO.items():
        st = model_stats(make_spec(name, args.length, args.classes))
        rows.append({"name": name, "description": desc, **st})
    from ..models.modular import model_stats_of
    from ..models.own import recipe_for

    for name in __import__("edgeprune.models.amr", fromlist=["AMR_ZOO"]).AMR_ZOO:
        recipe, model = recipe_for(name, args.length, args.classes)
        desc = __import__("edgeprune.models.amr", fromlist=["AMR_ZOO"]).AMR_ZOO[name][0]
        rows.append({"name": name, "description": desc + " [plain module]", **model_stats_of(model, recipe)})
    lines = [f"{'model':<14} {'params':>11} {'MACs':>13} {'units':>6}  description"]
    for r in rows:
        lines.append(f"{r['name']:<14} {r['params']:>11,} {r['macs']:>13,} {r['units']:>6}  {r['description']}")
    lines.append(f"(input 2 x {args.length}, {args.classes} classes; {MAC_DEFINITION})")
    emit(args, {"length": args.length, "classes": args.classes, "mac_definition": MAC_DEFINITION, "models": rows},
         "\n".join(lines))


def run_inspect(args):
    from ..checkpoint import describe, load_checkpoint

    info = describe(load_checkpoint(args.checkpoint))
    m = info["metrics"] or {}
    lines = [
        f"checkpoint  {info['path']}",
        f"sha256      {info['sha256']}",
        f"model       {info['model']} ({info['family']}, {info['dim']}-D)",
        f"input       {info['input']}  normalisation: {info['normalization']}",
        f"classes     {len(info['classes'])}: {', '.join(info['classes'])}",
        f"params      {info['params']:,}",
        f"MACs        {info['macs']:,}",
        f"layers      {info['weight_layers']} weight layers, {info['units']} prunable units",
    ]
    shown = {k: v for k, v in m.items() if k not in ("history", "train_config", "per_snr", "confusion")}
    if shown:
        lines.append("metrics     " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))
    for i, step in enumerate(info["lineage"]):
        lines.append(f"lineage[{i}]  " + ", ".join(f"{k}={v}" for k, v in step.items() if not isinstance(v, (dict, list))))
    emit(args, {k: v for k, v in info.items()}, "\n".join(lines))
