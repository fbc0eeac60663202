"""``edgeprune import`` (your own network in) and ``edgeprune units`` (what layer pruning may remove)."""

from __future__ import annotations

from ..errors import EdgepruneError
from .args import add_data, add_out
from .main import add_code, add_json, emit

ORDER = 25


def register(sub, common):
    p = sub.add_parser(
        "import", parents=[common], help="turn your own PyTorch network (FILE.py:NAME) into an edgeprune checkpoint",
        description="Import a network written as PyTorch code: NAME in FILE.py is an nn.Module class or a function "
                    "returning one; it must map I/Q frames, as (N, 2, L), (N, 1, 2, L) or (N, L, 2), to (N, classes) "
                    "logits (the layout it runs on is recorded). The checkpoint records "
                    "the file, object, kwargs and the file's sha256 (never the code itself); later commands load it "
                    "only when the file is allowed with --code FILE.py or EDGEPRUNE_CODE=FILE.py.")
    p.add_argument("ref", metavar="FILE.py:NAME", help="the code file and the class or factory in it")
    add_data(p, help="dataset (.npz or a real format): class names and frame length", recordings=False)
    add_out(p, help="output checkpoint (.pt)")
    p.add_argument("--weights", default=None, help="trained weights: a plain state_dict file (loaded weights_only)")
    p.add_argument("--kwargs", default=None, help='JSON keyword arguments for NAME, e.g. \'{"num_classes": 11}\'')
    p.add_argument("--length", type=int, default=None, help="frame length (default: the data's)")
    p.add_argument("--input-layout", default=None, type=str.upper, choices=("NCL", "N1CL", "NLC"),
                   help="how NAME takes its frames: NCL (N, 2, L), N1CL (N, 1, 2, L) or NLC (N, L, 2) (default: "
                        "the first of these its forward runs on; recorded in the checkpoint)")
    add_json(p)
    p.set_defaults(func=run_import)

    q = sub.add_parser(
        "units", parents=[common], help="show the units layer pruning may remove, found by tracing the forward",
        description="Trace a checkpoint's forward pass and list its units (residual blocks, Conv-(BN)-(act) groups, "
                    "stacked LSTM/GRU layers), which are removable and why, and any weighted module not traced.")
    q.add_argument("checkpoint", help="an edgeprune checkpoint (.pt)")
    add_json(q)
    add_code(q)
    q.set_defaults(func=run_units)


def run_import(args):
    from ..importing import import_model

    res = import_model(args.ref, args.data, args.out, weights=args.weights, kwargs=args.kwargs, length=args.length,
                       input_layout=args.input_layout)
    text = (f"imported {args.ref}: {res['params']:,} params, {res['macs']:,} MACs, {res['units']} removable units, "
            f"frames {res['input_layout']}\n"
            f"wrote {res['checkpoint']} (later commands need --code {res['source'].get('file')})")
    if res.get("note"):
        text += f"\nnote: {res['note']}"
    emit(args, res, text)
    return 0


def checkpoint_units(path):
    """The traced units of a checkpoint (spec or module), as a TraceResult."""
    from ..models.trace import discover_module_units
    from ..checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    model = ck.build()
    return discover_module_units(model, (2, ck.length)), ck


def run_units(args):
    from ..models.trace import format_units

    res, ck = checkpoint_units(args.checkpoint)
    doc = {"checkpoint": str(args.checkpoint), "model": ck.spec["name"], **res.to_dict()}
    emit(args, doc, format_units(res))
    if not res.units:
        raise EdgepruneError(f"no weighted layer of {args.checkpoint} was traced")
    return 0
