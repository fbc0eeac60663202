"""The catalogue of pruning methods: name, help, where the implementation lives, and its options.

Torch-free and import-light: listing the methods (``edgeprune methods``, ``edgeprune prune --help``,
building the CLI parser, validating a study config) reads this module only; a method's implementation
module is imported when the method runs (:func:`edgeprune.pruning.registry.get_method`).

Each method declares its options as a dataclass whose fields carry a default and a help text
(:func:`option`). From that one declaration:

- ``edgeprune prune --opt KEY=VALUE`` and the prune command's option flags are checked
  (:func:`check_options`: an unknown key names the valid ones, a wrong type says which type);
- a study config's ``[prune]`` section is checked and each method's options are picked from it
  (:func:`study_options`);
- docs/method.md's method table is generated (:func:`markdown_table`, ``edgeprune methods --markdown``).

The implementation of a built-in method (``layer.py``: the layer method; ``modular.py``: dbp and random;
``channel_traced.py``: the channel methods) takes these option names
(``tests/pruning/test_method_options.py`` compares its signature with the dataclass). The defaults here are the
ones the implementations apply when an option is not given; only given options are passed on.

A plugin declares its own dataclass with ``register_method(name, help, options=MyOptions)``; without one its
``--opt`` values pass through unchecked.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from ..errors import EdgepruneError

TRANSITIONS = ("keep", "reinit", "replace")


def option(default: Any, help: str, choices: tuple | None = None):
    """A field of an options dataclass: its default, one line of help, and the values it may take."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class MatchedOptions:
    """Options of every built-in method (each meets ``--target-macs`` within a tolerance)."""

    tolerance: float = option(0.02, "relative window around --target-macs (0.02: within 2%)")

    def with_plan(self, given: dict[str, Any], plan: str) -> dict[str, Any]:
        """The options to run with an analysis ``plan`` made from ``given`` (study); methods without one
        never receive it."""
        return given


@dataclass(frozen=True)
class DepthOptions(MatchedOptions):
    """Options of the methods that remove whole units."""

    transition: str | None = option(None, "stage transitions: keep the trained block (default), add a re-initialised "
                                          "one (reinit), or the reference's replace (layer method)",
                                    TRANSITIONS)


# the layer options a plan fixes (it was made with them): dropped when a plan is given
_PLANNED = ("similarity", "segments", "max_segments", "importance", "search", "batches", "batch_size", "reference",
            "keep")


@dataclass(frozen=True)
class LayerOptions(DepthOptions):
    """The paper's layer pruning (``--method layer``)."""

    plan: str | None = option(None, "plan.json from 'edgeprune analyze' (else the analysis runs first)")
    keep: str | list | None = option(None, "units kept per block, like 1,1,1,1")
    keep_units: int | None = option(None, "units kept in all, spread over the blocks")
    similarity: str = option("cka-unbiased", "similarity between unit outputs", ("cka-unbiased", "cka", "cosine"))
    segments: int | str = option("auto", "number of blocks K, or auto (the 5% rule)")
    max_segments: int | None = option(None, "largest K tried by auto (default from the depth)")
    importance: str | None = option(None, "importance criterion (default ablation; see edgeprune analyze --help)")
    search: str = option("per-unit", "score units one by one, or every combination per block",
                         ("per-unit", "exhaustive"))
    batches: int = option(5, "batches of training frames for the representations")
    batch_size: int = option(128, "frames per batch")
    reference: bool = option(False, "the reference code's procedure (zoo ResNet56/110, VGG16); budget: keep")

    def with_plan(self, given: dict[str, Any], plan: str) -> dict[str, Any]:
        """The plan fixes the analysis options; a reference plan also fixes its budget and transitions."""
        if given.get("reference"):
            return {"plan": plan}
        out = {k: v for k, v in given.items() if k not in _PLANNED}
        out["plan"] = plan
        return out


@dataclass(frozen=True)
class DbpOptions(DepthOptions):
    """DBP (``--method dbp``): linear probes on every unit's output."""

    probe_train: int = option(2048, "training frames for the probes (at most)")
    probe_val: int = option(1024, "validation frames that score the probes (at most)")
    probe_steps: int = option(150, "Adam steps per probe")
    feature: str = option("pool", "probe features: pooled to bins per channel, global average, or flattened",
                          ("pool", "gap", "flatten"))
    bins: int = option(8, "bins per channel of the pool feature")
    gain_threshold: float | None = option(None, "without --target-macs: remove units whose probe gain is below "
                                                "this")


@dataclass(frozen=True)
class RandomOptions(DepthOptions):
    """Random units (``--method random``)."""


@dataclass(frozen=True)
class ChannelOptions(MatchedOptions):
    """Torch-Pruning filter pruning (``--method channel-l1/l2/fpgm``)."""


@dataclass(frozen=True)
class SlimmingOptions(ChannelOptions):
    """Network slimming (``--method channel-bn``)."""

    sparsity: float = option(1e-4, "L1 weight on the BatchNorm scales during the sparsity training")
    sparsity_epochs: int = option(3, "epochs of sparsity training before pruning")


# the option that chose between the zoo's spec path and the traced network; refused since the spec path is gone
GONE_TRACED = ("the option 'traced' is gone: every network, the zoo's included, is pruned on its traced units "
               "(the zoo's spec path was removed); leave it out")


@dataclass(frozen=True)
class MethodEntry:
    """One pruning method: ``module`` is imported to register it (None: registered already, a plugin)."""

    name: str
    help: str
    module: str | None = None
    options: type | None = None


_BUILTIN = [
    MethodEntry("layer", "the paper's layer pruning: similarity + Fisher segmentation + importance, then reassembly",
                "edgeprune.pruning.layer", LayerOptions),
    MethodEntry("dbp", "DBP (Wang et al.): remove the units whose linear-probe accuracy gains least; matched MACs",
                "edgeprune.pruning.modular", DbpOptions),
    MethodEntry("random", "random removable units (seeded) to the same MACs budget",
                "edgeprune.pruning.modular", RandomOptions),
    MethodEntry("channel-l1", "L1-norm filter pruning (Li et al.) via Torch-Pruning, matched MACs",
                "edgeprune.pruning.channel_traced", ChannelOptions),
    MethodEntry("channel-l2", "L2-norm filter pruning via Torch-Pruning, matched MACs",
                "edgeprune.pruning.channel_traced", ChannelOptions),
    MethodEntry("channel-fpgm", "FPGM (geometric-median) filter pruning via Torch-Pruning, matched MACs",
                "edgeprune.pruning.channel_traced", ChannelOptions),
    MethodEntry("channel-bn", "network slimming: BN-sparsity training, then BN-scale channel pruning",
                "edgeprune.pruning.channel_traced", SlimmingOptions),
]
_ENTRIES: dict[str, MethodEntry] = {e.name: e for e in _BUILTIN}


def declare(name: str, help: str, module: str | None = None, options: type | None = None) -> MethodEntry:
    """Add (or replace) a catalogue entry; ``options`` must be a dataclass whose fields have defaults."""
    if options is not None:
        if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
            raise EdgepruneError(f"the options of pruning method {name!r} must be a dataclass, got {options!r}")
        for f in dataclasses.fields(options):
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise EdgepruneError(f"option {f.name!r} of pruning method {name!r} needs a default")
    old = _ENTRIES.get(name)
    if old is not None and old.module is not None and options is None and module is None:
        return old   # a built-in module registering its implementation: keep the declared entry
    e = MethodEntry(name, help, module, options)
    _ENTRIES[name] = e
    return e


def entries() -> dict[str, MethodEntry]:
    """Every declared method (built-in and plugins), in declaration order; imports no method module."""
    return dict(_ENTRIES)


def entry(name: str) -> MethodEntry:
    if name not in _ENTRIES:
        raise EdgepruneError(f"unknown pruning method {name!r}; choose one of: {', '.join(sorted(_ENTRIES))}")
    return _ENTRIES[name]


def option_fields(name: str) -> dict[str, dataclasses.Field] | None:
    """The declared options of method ``name`` by name (None: the method declares none)."""
    opts = entry(name).options
    return None if opts is None else {f.name: f for f in dataclasses.fields(opts)}


def option_default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _types(tp) -> tuple:
    """The plain types an annotation allows (``int | None`` -> (int, NoneType)); strings (postponed
    annotations) are resolved among the builtins."""
    if isinstance(tp, str):
        parts = [t.strip() for t in tp.split("|")]
        names = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict, "None": type(None)}
        return tuple(names.get(p.split("[")[0], object) for p in parts)
    if isinstance(tp, getattr(types, "UnionType", ())) or typing.get_origin(tp) is typing.Union:
        return tuple(t for a in typing.get_args(tp) for t in _types(a))
    origin = typing.get_origin(tp)
    return (origin,) if origin is not None else (tp,)


def _type_name(allowed: tuple) -> str:
    names = ["null" if t is type(None) else getattr(t, "__name__", str(t)) for t in allowed]
    return " or ".join(dict.fromkeys(names))


def check_value(method: str, f: dataclasses.Field, value: Any, where: str) -> Any:
    """``value`` for option ``f`` of ``method``, checked against its type and choices (ints become floats)."""
    allowed = _types(f.type)
    if object in allowed:
        return value
    if isinstance(value, bool) and bool not in allowed:
        ok = False
    elif isinstance(value, int) and not isinstance(value, bool) and float in allowed and int not in allowed:
        value, ok = float(value), True
    else:
        ok = isinstance(value, allowed)
    if not ok:
        raise EdgepruneError(f"{where} {f.name} of method {method} must be {_type_name(allowed)}, "
                             f"got {type(value).__name__} {str(value)[:40]!r}")
    choices = f.metadata.get("choices")
    if choices and value is not None and value not in choices:
        raise EdgepruneError(f"{where} {f.name} of method {method} must be one of {', '.join(choices)}, "
                             f"got {str(value)[:40]!r}")
    return value


def check_options(method: str, given: dict[str, Any], where: str = "--opt") -> dict[str, Any]:
    """``given`` checked against the options ``method`` declares; returns them with types normalised.

    An unknown key gives one error line naming the method's options; a method that declares none (a
    plugin without an options dataclass) gets ``given`` unchecked.
    """
    fields = option_fields(method)
    if fields is None:
        return dict(given)
    out = {}
    for key, value in given.items():
        if key == "traced":
            raise EdgepruneError(GONE_TRACED)
        if key not in fields:
            raise EdgepruneError(f"{where} {key} is not an option of method {method}; its options: "
                                 f"{', '.join(fields)}")
        else:
            out[key] = check_value(method, fields[key], value, where)
    return out


def parse_opts(items: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` (``--opt``) -> ``{k: v}``, each value read as JSON when it parses, else a string."""
    out = {}
    for item in items:
        if "=" not in item:
            raise EdgepruneError(f"--opt takes KEY=VALUE, got {item[:60]!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip().replace("-", "_")] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip().replace("-", "_")] = v
    return out


def study_options(method: str, section: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """The options of ``method`` from a study's ``[prune]`` section.

    A top-level key of the section that ``method`` declares applies to it (``transition``, ``similarity`` ...);
    a table ``[prune.METHOD]`` holds options for that method alone and wins over the top level.
    """
    fields = option_fields(method) or {}
    given = {k: v for k, v in section.items() if k in fields and v is not None and v != []}   # [] / None: not set
    own = section.get(method)
    if own is not None:
        given.update(own)
    return check_options(method, given, f"{where}: [prune.{method}]")


def options_doc(name: str) -> list[dict[str, Any]]:
    """Each declared option of ``name``: name, type, default, help, choices (for listings and JSON)."""
    fields = option_fields(name) or {}
    return [{"name": n, "type": _type_name(_types(f.type)), "default": option_default(f),
             "help": f.metadata.get("help", ""), "choices": list(f.metadata.get("choices") or []) or None}
            for n, f in fields.items()]


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def markdown_table() -> str:
    """docs/method.md's method table: one row per method, its options with their defaults."""
    rows = ["| method | what it does | options (`--opt KEY=VALUE`; `=` the default) |", "|---|---|---|"]
    for name, e in entries().items():
        if e.options is None:
            opts = "(not declared)"
        else:
            opts = ", ".join(f"`{o['name']}`" if o["default"] is None else f"`{o['name']}={json.dumps(o['default'])}`"
                             for o in options_doc(name)) or "none"
        rows.append(f"| `{name}` | {_md(e.help)} | {_md(opts)} |")
    return "\n".join(rows) + "\n"


TABLE_BEGIN = "<!-- methods table: generated by `edgeprune methods --markdown`; do not edit -->"
TABLE_END = "<!-- end of methods table -->"
