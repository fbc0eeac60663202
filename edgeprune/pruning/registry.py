"""The pruning-method registry behind ``edgeprune prune --method NAME``.

A method is a function

    method(ckpt: Checkpoint, data: SignalDataset | None, *, target_macs: float | None,
           seed: int, **options) -> PruneResult

that returns the pruned network (a module recipe), its weights and a lineage
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

from ..checkpoint import checkpoint_as_recipe
from ..errors import EdgepruneError
from . import catalogue
from .catalogue import GONE_TRACED


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


def get_method(name: str) -> Callable[..., PruneResult]:
    """The method ``name``: it prunes the traced units (or channels) of the checkpoint's network, a zoo spec model
    made a module recipe on entry (:func:`edgeprune.checkpoint.checkpoint_as_recipe`) like any other."""
    fn = _implementation(name)

    def method(ckpt, data=None, **kwargs):
        if "traced" in kwargs:
            raise EdgepruneError(GONE_TRACED)
        return fn(checkpoint_as_recipe(ckpt), data, **kwargs)

    method.__name__ = getattr(fn, "__name__", name)
    method.__doc__ = fn.__doc__
    return method
