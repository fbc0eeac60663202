"""The pruning-method registry behind ``edgeprune prune --method NAME``.

A method is a function

    method(ckpt: Checkpoint, data: SignalDataset | None, *, target_macs: float | None,
           seed: int, **options) -> PruneResult

that returns the pruned architecture (a spec), its weights and a lineage
record; it does not fine-tune (fine-tuning is the same for every method and
is done by the caller). Modules register their methods on import; the
modules listed in METHOD_MODULES are imported lazily on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import EdgepruneError

METHOD_MODULES = [
    "edgeprune.pruning.layer",
    "edgeprune.pruning.dbp",
    "edgeprune.pruning.random_units",
    "edgeprune.pruning.channel",
]


@dataclass
class PruneResult:
    spec: dict[str, Any]
    state_dict: dict[str, Any]
    lineage: dict[str, Any]              # method, options, kept units / widths, MACs before/after ...
    info: dict[str, Any] = field(default_factory=dict)   # anything to print (plan path, search steps ...)


_METHODS: dict[str, tuple[Callable[..., PruneResult], str]] = {}
_loaded = False


def register(name: str, help: str):
    """Decorator: make ``fn`` the pruning method ``name`` (``edgeprune prune --method NAME``, study ``[prune]``)."""
    def deco(fn):
        _METHODS[name] = (fn, help)
        return fn
    return deco


def register_method(name: str, help: str):
    """The public name of :func:`register`, for methods written outside the package.

    A module of your own registers on import::

        from edgeprune.pruning.registry import PruneResult, register_method

        @register_method("my-method", "what it removes")
        def my_method(ckpt, data, *, target_macs=None, seed=0, **options) -> PruneResult: ...

    and the CLI imports it when named in ``EDGEPRUNE_PLUGINS`` (see ``edgeprune.plugins``).
    """
    if not isinstance(name, str) or not name.strip():
        raise EdgepruneError(f"a pruning method needs a name, got {name!r}")
    return register(name, help)


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for mod in METHOD_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # a real missing dependency inside the module
                raise
    _loaded = True


def methods() -> dict[str, str]:
    _load_all()
    return {k: v[1] for k, v in _METHODS.items()}


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
            from ..analysis.plan import load_plan

            plan = load_plan(plan)
        if plan.get("kind") != "module":
            out.append("a plan made on the spec path")
    return out


def route(name: str, spec, traced: bool | None, options: dict[str, Any]) -> bool:
    """Whether method ``name`` runs on the traced-module path (True) or the zoo spec's own path (False).

    Networks written as ``nn.Module`` code always take the traced path. A zoo spec model takes it too (the same
    code path as the user's models) unless ``traced=False``, unless it needs a spec-only option (the reference's
    transplant proxies, ``--reference``, the exhaustive search, ``replace`` transitions, a spec-path plan), or
    unless it is a 2-D (``[1, 2, L]``-input) spec, which the traced path does not take.
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
    if len(spec.get("input") or []) != 2:
        reasons.append("a 2-D spec model")
    if traced and reasons:
        raise EdgepruneError(f"traced=true does not take {', '.join(reasons)}")
    return not reasons


def get_method(name: str) -> Callable[..., PruneResult]:
    _load_all()
    if name not in _METHODS:
        raise EdgepruneError(f"unknown pruning method {name!r}; choose one of: {', '.join(sorted(_METHODS))}")
    fn = _METHODS[name][0]

    def dispatch(ckpt, data=None, **kwargs):
        traced = route(name, getattr(ckpt, "spec", None), kwargs.pop("traced", None), kwargs)
        if traced:
            # one code path for zoo and user models: the traced-module implementation of the method
            from ..models.modular import checkpoint_as_recipe
            from .modular import module_method

            return module_method(name)(checkpoint_as_recipe(ckpt), data, **kwargs)
        return fn(ckpt, data, **kwargs)

    dispatch.__name__ = getattr(fn, "__name__", name)
    dispatch.__doc__ = fn.__doc__
    return dispatch
