"""The pruning-method registry behind ``edgeprune prune --method NAME``.

A method is a function

    method(ckpt: Checkpoint, data: SignalDataset | None, *, target_macs: float | None,
           seed: int, **options) -> PruneResult

that returns the pruned architecture (a spec), its weights and a lineage
record; it does not fine-tune (fine-tuning is the same for every method and
is done by the caller). What methods exist, their help and their options are
declared in :mod:`edgeprune.pruning.catalogue` (read without importing any
method); a method's implementation module registers the function on import and
is imported when the method is first asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import EdgepruneError
from . import catalogue


@dataclass
class PruneResult:
    spec: dict[str, Any]
    state_dict: dict[str, Any]
    lineage: dict[str, Any]              # method, options, kept units / widths, MACs before/after ...
    info: dict[str, Any] = field(default_factory=dict)   # anything to print (plan path, search steps ...)


_METHODS: dict[str, tuple[Callable[..., PruneResult], str]] = {}


def builtin_method(name: str, help: str | None = None, options: type | None = None):
    """Decorator: make ``fn`` the pruning method ``name`` (``edgeprune prune --method NAME``, study ``[prune]``).

    Built-in methods are declared in :mod:`edgeprune.pruning.catalogue` (help and options) and register
    their function by name alone; ``help`` and ``options`` (its options dataclass) declare a new one.
    """
    if help is None:
        help = catalogue.entry(name).help
    else:
        catalogue.declare(name, help, options=options)

    def deco(fn):
        _METHODS[name] = (fn, help)
        return fn
    return deco


def register_method(name: str, help: str, options: type | None = None):
    """The public name of :func:`builtin_method`, for methods written outside the package.

    A module of your own registers on import::

        from edgeprune.pruning.registry import PruneResult, register_method

        @dataclass(frozen=True)
        class MyOptions:
            depth: int = option(2, "how many units to look at")   # option: edgeprune.pruning.catalogue.option

        @register_method("my-method", "what it removes", options=MyOptions)
        def my_method(ckpt, data, *, target_macs=None, seed=0, depth=2) -> PruneResult: ...

    and the CLI imports it when named in ``EDGEPRUNE_PLUGINS`` (see ``edgeprune.plugins``). With ``options``
    the CLI's ``--opt`` and a study's ``[prune.my-method]`` are checked against it; without, they pass
    through unchecked.
    """
    if not isinstance(name, str) or not name.strip():
        raise EdgepruneError(f"a pruning method needs a name, got {name!r}")
    if name in catalogue.entries() and catalogue.entry(name).module is not None:
        raise EdgepruneError(f"{name!r} is a built-in pruning method; choose another name")
    return builtin_method(name, help, options)


def methods() -> dict[str, str]:
    """Method name -> help, from the catalogue (imports no method module)."""
    return {k: e.help for k, e in catalogue.entries().items()}


def _implementation(name: str) -> Callable[..., PruneResult]:
    e = catalogue.entry(name)   # an unknown name: one error naming the known ones
    if name not in _METHODS and e.module is not None:
        importlib.import_module(e.module)
    if name not in _METHODS:
        raise EdgepruneError(f"pruning method {name!r} is declared but {e.module or 'no module'} registers no "
                             f"implementation")
    return _METHODS[name][0]


def spec_only_options(options: dict[str, Any]) -> list[str]:
    """The options that only the zoo specs' own implementation takes (the reference's procedure)."""
    from ..analysis.importance import PROXIES

    out = []
    if options.get("reference"):
        out.append("--reference")
    if options.get("search") == "exhaustive":
        out.append("--search exhaustive")
    if options.get("importance") in PROXIES:
        out.append(f"--importance {options['importance']}")
    if options.get("transition") == "replace":
        out.append("--transition replace")
    plan = options.get("plan")
    if plan is not None:
        if not isinstance(plan, dict):
            from .plan import load_plan

            plan = load_plan(plan)
        if plan.get("kind") != "module":
            out.append("a plan made on the spec path")
    return out


def route(name: str, spec, traced: bool | None, options: dict[str, Any]) -> bool:
    """Whether method ``name`` runs on the traced-module path (True) or the zoo spec's own path (False).

    Networks written as ``nn.Module`` code always take the traced path. A zoo spec model takes it too (the same
    code path as the user's models) unless ``traced=False``, unless it needs a spec-only option (the reference's
    transplant proxies, ``--reference``, the exhaustive search, ``replace`` transitions, a spec-path plan).
    """
    if not isinstance(spec, dict):
        return False
    if spec.get("kind") == "module":
        if traced is False:
            raise EdgepruneError("traced=false: this network is a module recipe and has no spec path")
        return True
    if traced is False:
        return False
    from .modular import MODULE_METHODS

    reasons = spec_only_options(options)
    if name not in MODULE_METHODS:
        reasons.append(f"method {name!r} (no traced implementation)")
    if traced and reasons:
        raise EdgepruneError(f"traced=true does not take {', '.join(reasons)}")
    return not reasons


def get_method(name: str) -> Callable[..., PruneResult]:
    fn = _implementation(name)

    def dispatch(ckpt, data=None, **kwargs):
        traced = route(name, getattr(ckpt, "spec", None), kwargs.pop("traced", None), kwargs)
        if traced:
            # one code path for zoo and user models: the traced-module implementation of the method
            from ..checkpoint import checkpoint_as_recipe
            from .modular import module_method

            return module_method(name)(checkpoint_as_recipe(ckpt), data, **kwargs)
        return fn(ckpt, data, **kwargs)

    dispatch.__name__ = getattr(fn, "__name__", name)
    dispatch.__doc__ = fn.__doc__
    return dispatch
