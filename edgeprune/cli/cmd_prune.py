"""``edgeprune prune``: prune a checkpoint with any registered method, optionally fine-tune."""

from __future__ import annotations

from ..errors import EdgepruneError
from ..pruning.catalogue import check_options, entries, option_fields, parse_opts
from .args import _group, add_data, add_model, add_out, add_runtime
from .cmd_analyze import add_analysis_options, add_budget_options
from .main import add_code, add_json, add_seed, emit

ORDER = 41


def register(sub, common):
    avail = entries()
    p = sub.add_parser("prune", parents=[common], help="prune a checkpoint (layer pruning or a baseline method)",
                       description="Prune a trained checkpoint with a registered method and write the pruned "
                                   "checkpoint (its lineage records the method, the parent and the plan). "
                                   "Methods: " + "; ".join(f"{k}: {e.help}" for k, e in avail.items())
                                   + ". Each method's options: `edgeprune methods`. The options come in groups: "
                                     "the method and its budget; the layer method's analysis; a latency target "
                                     "instead of a MACs one; fine-tuning afterwards (or run `edgeprune finetune`, "
                                     "or `edgeprune compare` for the whole prune-fine-tune-profile chain).")
    add_model(p, help="trained checkpoint")
    add_data(p, help="dataset file (needed unless a --plan is given)", required=False)
    add_out(p, help="output checkpoint")
    method = _group(p, "method and budget")
    analysis = _group(p, "layer method: analysis and transitions")
    latency = _group(p, "layer method: a latency target instead of --target-macs")
    tune = _group(p, "fine-tuning afterwards")
    method.add_argument("--method", choices=sorted(avail) or None, default="layer", help="pruning method (default layer)")

    add_budget_options(p, "this fraction of the baseline MACs, met within 2%% by every method (e.g. 0.15 = 85%% fewer)",
                       method)
    first = len(p._actions)   # the flags from here to `--opt` are method options (edgeprune.pruning.catalogue)
    method.add_argument("--plan", default=None, help="plan.json from 'edgeprune analyze' (layer method)")
    analysis.add_argument("--transition", choices=["keep", "reinit", "replace"], default=None,
                   help="stage transitions: keep the trained block (default), let shape-changing units go too and "
                        "re-initialise what follows (reinit), or keep the stage's transition re-initialised in place "
                        "of its first kept unit (replace, the reference's)")
    add_analysis_options(p, analysis)
    option_flags = [a.dest for a in p._actions[first:]] + ["keep", "keep_units"]
    # not given = None: a method gets only the options the user gave, its own defaults apply otherwise
    p.set_defaults(**{d: None for d in option_flags}, _option_flags=tuple(option_flags))
    method.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option (VALUE parsed as JSON when possible; `edgeprune methods` lists each "
                        "method's options); repeatable")
    latency.add_argument("--target-latency", type=float, default=None, metavar="MS",
                   help="layer pruning to meet this median latency per batch (ms) on --target")
    latency.add_argument("--target", default=None, help="device profile for --target-latency (see `edgeprune targets`)")
    latency.add_argument("--latency-margin", type=float, default=None, metavar="F",
                   help="with --target-latency: aim this fraction under the budget (default 0.03)")
    latency.add_argument("--latency-model", default=None,
                   help="a fitted latency model (edgeprune latency-model fit); default: calibrate on this machine")
    tune.add_argument("--finetune-epochs", type=int, default=0, help="fine-tune for this many epochs afterwards")
    tune.add_argument("--distill", action="store_true", help="fine-tune with distillation from the unpruned model")
    add_runtime(p)
    add_seed(p)
    add_json(p)
    add_code(p)
    p.set_defaults(func=run_prune, torch_threads=True)


def _options(args) -> dict:
    """The method's options: the option flags given, then ``--opt``, checked against what the method declares."""
    declared = option_fields(args.method)
    opts = {}
    for name in args._option_flags:
        v = getattr(args, name)
        if v is None:
            continue
        if declared is not None and name not in declared:
            raise EdgepruneError(f"--{name.replace('_', '-')} is not an option of method {args.method}; "
                                 f"its options: {', '.join(declared) or 'none'}")
        opts[name] = v
    opts.update(parse_opts(args.opt))
    return check_options(args.method, opts, "--opt")


def _channel_lines(channels) -> list[str]:
    """What a channel-pruned checkpoint records: each narrowed layer's widths, each layer left alone and why."""
    if not channels:
        return []
    lines = [f"narrowed {len(channels['narrowed'])} layer(s) (checked: equals the original with the removed "
             f"channels masked to zero)"]
    lines += [f"  {c}" for c in channels["narrowed"]]
    if channels["left_alone"]:
        lines.append(f"left alone {len(channels['left_alone'])} layer(s) (output widths kept):")
        lines += [f"  {name}: {why}" for name, why in channels["left_alone"].items()]
    return lines


def run_prune(args):
    from ..pruning.prune_file import prune_checkpoint

    extra = {}
    if args.latency_margin is not None:
        if args.target_latency is None:
            raise EdgepruneError("--latency-margin works with --target-latency")
        extra["margin"] = args.latency_margin

    doc = prune_checkpoint(args.model, args.out, method=args.method, data=args.data, target_macs=args.target_macs,
                           target_latency=args.target_latency, target=args.target,
                           latency_model=args.latency_model, seed=args.seed, finetune_epochs=args.finetune_epochs,
                           distill=args.distill, **_options(args), **extra)
    before, after, out = doc["before"], doc["after"], doc["checkpoint"]
    ckpt_name, method = doc["model_before"], args.method
    lines = [f"pruned {ckpt_name} with {method} -> {doc['model_after']}",
             f"MACs   {before['macs']:>12,} -> {after['macs']:>12,} (-{100 * doc['macs_reduction']:.1f}%)",
             f"params {before['params']:>12,} -> {after['params']:>12,} (-{100 * doc['params_reduction']:.1f}%)",
             f"units  {before['units']:>12} -> {after['units']:>12}   weight layers {before['weight_layers']} -> "
             f"{after['weight_layers']}"]
    if doc["kept_units"] is not None:
        lines.append(f"kept units {doc['kept_units']}")
    lines += _channel_lines(doc.get("channels"))
    lines += [f"note: {n}" for n in doc.get("notes") or []]
    lat = doc.get("latency")
    if lat:
        lines.append(f"latency budget {lat['budget_ms']:.3f} ms on {lat['target']} ({lat['backend']}, batch {lat['batch']}, "
                     f"{lat['threads']} thread(s)): predicted {lat['predicted_ms']:.3f} ms, measured {lat['measured_ms']:.3f} ms "
                     f"({lat['error_vs_budget_pct']:+.1f}% vs budget; {'meets' if lat['meets_budget'] else 'MISSES'} it)")
    if doc["finetune"]:
        f = doc["finetune"]
        lines.append(f"fine-tuned {args.finetune_epochs} epochs: val acc {f['val_acc']:.4f}"
                     + (f", test acc {f['test_acc']:.4f}" if f["test_acc"] is not None else ""))
    lines.append(f"wrote {out}")
    emit(args, doc, "\n".join(lines))
    return 0
