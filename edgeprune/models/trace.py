"""Unit discovery for any ``nn.Module`` by tracing its forward pass (module hooks).

One forward pass of a frame records every module call in order, with the
shapes it received and returned. The modules are then walked from the root:

- containers (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``,
  ``nn.TransformerEncoder``, the root, and a custom module whose body is one
  container) are looked into;
- inside them, consecutive calls Conv-(BN)-(activation/dropout) and
  Linear-(BN)-(activation/dropout) form one *group*;
- a custom module with weights (a residual block, an SE or attention block, a
  ``nn.TransformerEncoderLayer``, an MLP block) is one *block* when its output
  shape equals its input shape; a shape-changing one is looked into when it
  holds a recurrent layer or further blocks (a custom module holding an LSTM),
  and is otherwise one block;
- an LSTM/GRU/RNN contributes one unit per layer of its stack.

An entry is a removable *unit* when its output shape equals its input shape,
it runs exactly once, it returns one tensor (or is an LSTM/GRU), and it is
neither the stem (the first layer that runs), nor the classifier (the last
Linear that runs), nor in the head (entries that run on pooled feature vectors,
per-sample shape ``[F]``), whatever its layer types. A block that only shortens
the sequence (same channels, shorter length: a residual stack that pools) is a
removable *stack*: it is replaced by a parameter-free adaptive average pool to
its output shape. Removing a unit replaces it with identity, so branches
(dual-branch models such as MCLDNN) keep their structure. Other weighted
entries are listed with the reason they are not units, and weighted modules
that never ran in the forward are listed as not traced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import EdgepruneError

_ACTS = ("ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "GELU", "SiLU", "Tanh", "Sigmoid", "Hardswish", "Mish",
         "PReLU", "Softplus", "Dropout", "Dropout1d", "Dropout2d", "AlphaDropout", "Identity")


@dataclass
class ModuleUnit:
    name: str                      # display name ("body.3", "features.0+features.1+features.2", "lstm[1]")
    kind: str                      # block | conv-group | linear-group | rnn-layer | module
    members: list[str]             # module names replaced by identity when removed
    role: str                      # unit | stem | classifier | transition | other
    removable: bool
    reason: str
    in_shape: tuple
    out_shape: tuple
    params: int = 0
    macs: int = 0
    position: int = 0
    rnn: str | None = None         # for rnn-layer: the LSTM/GRU module name
    rnn_layer: int | None = None
    bypass: str = "identity"       # identity | pool (a stack) | rnn (a whole LSTM/GRU): what stands in when removed

    @property
    def output_module(self) -> str:
        return self.rnn or self.members[-1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["in_shape"] = list(self.in_shape)
        d["out_shape"] = list(self.out_shape)
        return d


@dataclass
class TraceResult:
    units: list[ModuleUnit]                       # every weighted entry, in forward order
    not_traced: list[dict[str, str]] = field(default_factory=list)

    @property
    def removable(self) -> list[ModuleUnit]:
        return [u for u in self.units if u.removable]

    def to_dict(self) -> dict[str, Any]:
        return {"units": [u.to_dict() for u in self.units], "removable": [u.name for u in self.removable],
                "not_traced": self.not_traced}


def _shape(t) -> tuple | None:
    import torch

    if isinstance(t, torch.Tensor):
        return tuple(int(v) for v in t.shape[1:])
    if isinstance(t, (tuple, list)) and t and isinstance(t[0], torch.Tensor):
        return tuple(int(v) for v in t[0].shape[1:])
    return None


def _own_params(mod) -> int:
    return sum(p.numel() for p in mod.parameters(recurse=False))


def _params(mod) -> int:
    return sum(p.numel() for p in mod.parameters())


def hooked_forward(model, x, handles, failure: str, seed: int | None = None):
    """``model(x)`` in eval mode without gradients (under ``seed`` when given, the global RNG untouched); then the
    hook ``handles`` are removed and the train/eval mode restored. A forward that raises is one EdgepruneError,
    ``failure`` followed by the exception's type and first line."""
    import torch

    was = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            if seed is not None:
                torch.manual_seed(int(seed))
            return model(x)
    except EdgepruneError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's forward failed
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EdgepruneError(f"{failure} ({type(exc).__name__}: {first})") from exc
    finally:
        for h in handles:
            h.remove()
        model.train(was)


def discover_module_units(model, frame_shape, batch: int = 2) -> TraceResult:
    """Trace ``model`` on zero frames of ``frame_shape`` (per sample) and return its units."""
    import torch
    from torch import nn

    from .macs import count_macs, rnn_layer_macs

    if not isinstance(model, nn.Module):
        raise EdgepruneError("unit discovery needs a torch.nn.Module")
    calls: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    handles = []
    clock = [0]

    def pre(name):
        def fn(mod, args):
            clock[0] += 1
            rec = calls.get(name)
            if rec is None:
                calls[name] = {"start": clock[0], "in": _shape(args[0]) if args else None, "count": 0,
                               "rnn_batch_first": getattr(mod, "batch_first", False)}
                order.append(name)
                if isinstance(mod, nn.RNNBase) and args and isinstance(args[0], torch.Tensor):
                    x = args[0]
                    calls[name]["steps"] = int(x.shape[1] if mod.batch_first else x.shape[0]) if x.dim() == 3 else int(x.shape[0])
        return fn

    def post(name):
        def fn(mod, args, out):
            clock[0] += 1
            rec = calls[name]
            rec["count"] += 1
            if rec["count"] == 1:
                rec["out"] = _shape(out)
                rec["tuple_out"] = not isinstance(out, torch.Tensor)
                rec["end"] = clock[0]
                if isinstance(mod, nn.RNNBase) and isinstance(out, tuple) and isinstance(out[0], torch.Tensor):
                    rec["out"] = tuple(int(v) for v in out[0].shape[1:]) if mod.batch_first else (
                        (int(out[0].shape[0]),) + tuple(int(v) for v in out[0].shape[2:]))
                    x = args[0]
                    rec["in"] = tuple(int(v) for v in x.shape[1:]) if mod.batch_first else (
                        (int(x.shape[0]),) + tuple(int(v) for v in x.shape[2:]))
        return fn

    for name, mod in model.named_modules():
        if name:
            handles.append(mod.register_forward_pre_hook(pre(name)))
            handles.append(mod.register_forward_hook(post(name)))
    y = hooked_forward(model, torch.zeros((batch,) + tuple(frame_shape)), handles,
                       f"cannot trace the model: its forward fails on frames of shape {[batch] + list(frame_shape)}")
    if not isinstance(y, torch.Tensor):
        raise EdgepruneError(f"cannot trace the model: its forward returns {type(y).__name__}, not a tensor of logits")
    try:
        _, per_module = count_macs(model, tuple(frame_shape), per_module=True)
    except Exception:  # noqa: BLE001 - MACs are informative here
        per_module = {}

    modules = dict(model.named_modules())
    weighted_leaves = [n for n in order if _own_params(modules[n]) > 0]
    stem = weighted_leaves[0] if weighted_leaves else None
    linears = [n for n in order if isinstance(modules[n], nn.Linear)]
    classifier = max(linears, key=lambda n: calls[n].get("end", 0)) if linears else None

    def macs_of(names):
        return int(sum(v for k, v in per_module.items() for n in names if k == n or k.startswith(n + ".")))

    entries: list[ModuleUnit] = []

    def called_children(name):
        mod = modules[name] if name else model
        kids = [(f"{name}.{c}" if name else c) for c, _ in mod.named_children()]
        out = []
        for k in kids:
            if k in calls:
                out.append(k)
            elif isinstance(modules[k], (nn.ModuleList, nn.ModuleDict)):
                out += called_children(k)     # a list of layers is never called itself: its members are
        return sorted(out, key=lambda k: calls[k]["start"])

    def is_container(mod):
        return isinstance(mod, (nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.TransformerEncoder))

    def body_container(name):
        mod = modules[name]
        total = _params(mod) or 1
        for c, child in mod.named_children():
            if is_container(child) and _params(child) >= 0.5 * total:
                return True
        return False

    def holds_units(name):
        """Whether a custom module holds a recurrent layer or further custom modules with weights (then a
        shape-changing one is looked into)."""
        for c, child in modules[name].named_children():
            full = f"{name}.{c}"
            if isinstance(child, (nn.RNNBase, nn.TransformerEncoderLayer, nn.TransformerEncoder)) and (
                    full in calls or any(k.startswith(full + ".") for k in calls)):
                return True
            if (list(child.children()) and _params(child) > 0 and not is_container(child)
                    and type(child).__module__.split(".")[0] != "torch" and full in calls):
                return True
        return False

    def stack_shapes(in_shape, out_shape) -> bool:
        """Same channels, every later dimension no longer (a stack that pools): a pool can stand in for it."""
        return (in_shape is not None and out_shape is not None and len(in_shape) == len(out_shape) >= 2
                and len(in_shape) <= 4 and in_shape[0] == out_shape[0] and in_shape != out_shape
                and all(0 < o <= i for i, o in zip(in_shape[1:], out_shape[1:])))

    def add(name, kind, members, in_shape, out_shape, **kw):
        count = max(calls[m]["count"] for m in members)
        params = sum(_params(modules[m]) for m in members)
        if kw.get("rnn"):
            params = sum(p.numel() for pn, p in modules[kw["rnn"]].named_parameters()
                         if pn.split("_l")[-1].split("_")[0] == str(kw["rnn_layer"]))
        role, removable, bypass = "unit", True, "identity"
        same = in_shape is not None and in_shape == out_shape
        is_rnn = kw.get("rnn") is not None or isinstance(modules[members[0]], nn.RNNBase)

        def holds(leaf):
            return leaf is not None and any(leaf == m or leaf.startswith(m + ".") for m in members)

        if holds(stem) and (kw.get("rnn") is None or kw.get("rnn_layer") == 0):
            role, removable, reason = "stem", False, "stem: the first layer that runs is never removed"
        elif holds(classifier):
            role, removable, reason = "classifier", False, "classifier: the last Linear is never removed"
        elif in_shape is not None and len(in_shape) <= 1:
            role, removable = "head", False
            reason = f"head: runs on the pooled feature vector {list(in_shape)} (units lie between stem and head)"
        elif count > 1:
            role, removable, reason = "other", False, f"runs {count} times in one forward (shared weights)"
        elif not is_rnn and calls[members[-1]].get("tuple_out"):
            role, removable, reason = "other", False, "returns a tuple, not one tensor (no identity can stand in)"
        elif not same and kind == "block" and stack_shapes(in_shape, out_shape):
            role, bypass = "stack", "pool"
            reason = (kw.pop("why", "") + f"; shortens {list(in_shape)} -> {list(out_shape)}, removed with a "
                      f"parameter-free adaptive average pool in its place")
        elif not same:
            role, removable = "transition", False
            reason = f"changes the shape {list(in_shape or [])} -> {list(out_shape or [])}"
        else:
            reason = kw.pop("why", "") + f"; output shape {list(out_shape)} equals its input"
        kw.pop("why", None)
        macs = kw.pop("macs", None)
        entries.append(ModuleUnit(name=name, kind=kind, members=list(members), role=role, removable=removable,
                                  reason=reason, in_shape=tuple(in_shape or ()), out_shape=tuple(out_shape or ()),
                                  params=int(params), macs=int(macs_of(members) if macs is None else macs),
                                  bypass=bypass, **kw))

    def visit(name):
        kids = called_children(name)
        i = 0
        while i < len(kids):
            k = kids[i]
            mod = modules[k]
            cls = type(mod).__name__
            if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                group = [k]
                j = i + 1
                if j < len(kids) and isinstance(modules[kids[j]], nn.modules.batchnorm._BatchNorm):
                    group.append(kids[j])
                    j += 1
                while j < len(kids) and type(modules[kids[j]]).__name__ in _ACTS:
                    group.append(kids[j])
                    j += 1
                kind = "linear-group" if isinstance(mod, nn.Linear) else "conv-group"
                label = "+".join(type(modules[g]).__name__ for g in group)
                add("+".join(group) if len(group) > 1 else k, kind, group, calls[k]["in"],
                    calls[group[-1]].get("out"), why=f"{label} group")
                i = j
                continue
            if isinstance(mod, nn.RNNBase):
                steps = calls[k].get("steps", 0)
                dirs = 2 if mod.bidirectional else 1
                out_w = (getattr(mod, "proj_size", 0) or mod.hidden_size) * dirs
                seq = calls[k]["in"][0] if calls[k]["in"] else steps
                for layer in range(mod.num_layers):
                    fin = mod.input_size if layer == 0 else out_w
                    add(f"{k}[{layer}]", "rnn-layer", [k], (seq, fin), (seq, out_w), rnn=k, rnn_layer=layer,
                        macs=rnn_layer_macs(mod, steps, layer),
                        why=f"layer {layer} of a {mod.num_layers}-layer {cls}")
                    if mod.num_layers == 1 and entries[-1].removable:
                        # a single-layer LSTM/GRU is removed whole (identity keeping its output structure)
                        entries[-1].rnn, entries[-1].rnn_layer, entries[-1].kind = None, None, "module"
                        entries[-1].name, entries[-1].bypass = k, "rnn"
                i += 1
                continue
            if is_container(mod):
                visit(k)
                i += 1
                continue
            if _params(mod) == 0:
                i += 1
                continue
            if _own_params(mod) > 0 and not list(mod.children()):
                add(k, "module", [k], calls[k]["in"], calls[k].get("out"), why=f"{cls}")
                if entries[-1].role == "unit":
                    entries[-1].role, entries[-1].removable = "other", False
                    entries[-1].reason = f"{cls} alone is not a unit type (conv/linear groups, blocks, RNN layers)"
                i += 1
                continue
            # a custom module with weights: a block, unless it changes shape and wraps one container body or
            # holds recurrent layers / further blocks (then its parts are looked at)
            same = calls[k]["in"] is not None and calls[k]["in"] == calls[k].get("out")
            if not same and (body_container(k) or holds_units(k)):
                visit(k)
            else:
                add(k, "block", [k], calls[k]["in"], calls[k].get("out"), why=f"block ({cls})")
            i += 1

    visit("")
    # stacked RNN layers: layer 0 of a stack takes the input width and is the stem's job only if it is first
    for pos, e in enumerate(entries):
        e.position = pos
    covered = set()
    for e in entries:
        for m in e.members:
            covered.add(m)
    not_traced = []
    for name, mod in modules.items():
        if not name or _own_params(mod) == 0:
            continue
        if any(name == c or name.startswith(c + ".") for c in covered):
            continue
        if name not in calls:
            not_traced.append({"module": name, "type": type(mod).__name__,
                               "reason": "never ran in the forward pass (unused, or called outside module hooks)"})
        else:
            not_traced.append({"module": name, "type": type(mod).__name__,
                               "reason": "ran inside a module that is not looked into"})
    return TraceResult(entries, not_traced)


def format_units(res: TraceResult) -> str:
    lines = [f"{len(res.removable)} removable unit(s) of {len(res.units)} traced entries"]
    for u in res.units:
        mark = (u.role if u.role == "stack" else "unit ") if u.removable else u.role
        lines.append(f"  [{u.position:>2}] {mark:<10} {u.name:<40} {u.kind:<12} {str(list(u.in_shape)):>12} -> "
                     f"{str(list(u.out_shape)):<12} MACs {u.macs:>10,}  {u.reason}")
    for n in res.not_traced:
        lines.append(f"  not traced: {n['module']} ({n['type']}): {n['reason']}")
    return "\n".join(lines)
