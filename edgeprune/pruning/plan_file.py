"""The plan file (``plan.json``): its format, reading, writing and checking; apart from the analysis that
makes a plan (:mod:`edgeprune.pruning.plan`) and the layer method that applies one.

A plan records the model name and the hash of the network's recipe it was made for, so it cannot be applied
to another model. Every plan is made on the traced units of a network (``"kind": "module"``); a plan without
that mark was made by an older edgeprune for the zoo's spec path, which is gone: it is refused with one line
saying to re-run ``edgeprune analyze``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import read_json, write_json
from ..errors import EdgepruneError
from edgeprune.export.runtime.schema import anything, boolean, integer, mapping, number, obj, opt, seq, text, validate

PLAN_FORMAT = "edgeprune-plan"
PLAN_VERSION = 1

_INDEX = integer(lo=0, hi=1 << 20)
# Every field that pruning, plots, summaries and the latency ladder read from a plan, with its type.
PLAN_SCHEMA = obj(
    format=text(choices=(PLAN_FORMAT,)),
    version=opt(integer()),
    kind=text(choices=("module",)),         # a plan of traced units (older spec-path plans lack it)
    model=text(), spec_sha256=text(pattern="[0-9a-f]{64}"),
    seed=integer(),
    units=seq(obj(layer=_INDEX, position=_INDEX, name=text(), removable=boolean(), role=text(),
                  transition=opt(boolean())), nonempty=True, hi=1 << 16),
    similarity=obj(metric=text(), matrix=seq(seq(number())), batches=opt(integer(lo=0)),
                   batch_size=opt(integer(lo=0))),
    segments=obj(k=integer(lo=1), bounds=seq(seq(_INDEX, lo=2, hi=2), nonempty=True), auto=boolean()),
    importance=obj(proxy=text(), criterion=opt(text()), rule=opt(text()),
                   scores=mapping(number(), keys=lambda k: k.lstrip("-").isdigit())),
    keep=obj(counts=seq(integer(lo=0)), mode=text(), search=text()),
    kept_units=seq(_INDEX),
    transition=text(choices=("keep", "reinit", "replace")),   # replace: a --reference plan (resnet56)
    expected=obj(name=opt(text()), macs_before=number(lo=0), macs_after=number(lo=0),
                 params_before=number(lo=0), params_after=number(lo=0),
                 macs_reduction=number(), params_reduction=number()),
    timings=mapping(number()),
    checkpoint=opt(anything()), created=opt(text()),
    reference=opt(obj(mode=boolean(), chosen=seq(seq(_INDEX)), reference_shortcut=boolean(),
                      differences=seq(text()))),   # a --reference plan: the reference's chosen units
)


def spec_hash(spec: dict[str, Any]) -> str:
    """sha256 of the recipe's (or spec's) canonical JSON."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def save_plan(path, plan: dict[str, Any]) -> None:
    write_json(path, plan)


def load_plan(path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise EdgepruneError(f"plan {path} does not exist")
    plan = read_json(path, f"plan {path}")
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise EdgepruneError(f"{path} is not an edgeprune plan")
    return validate_plan(plan, f"plan {path}")


def validate_plan(plan: Any, where: str = "plan") -> dict[str, Any]:
    """Check ``plan`` against PLAN_SCHEMA and its cross-references (segments cover the units in order,
    kept units are units, at least one, each once); raise EdgepruneError naming the first problem."""
    if isinstance(plan, dict) and plan.get("format") == PLAN_FORMAT and plan.get("kind") != "module":
        raise EdgepruneError(f"{where} has no 'kind': it was made by an older edgeprune for the zoo's spec path, "
                             f"which is gone; make a new one with 'edgeprune analyze'")
    validate(plan, PLAN_SCHEMA, where)
    n = len(plan["units"])
    pos = 0
    for a, b in plan["segments"]["bounds"]:
        if a != pos or b <= a or b > n:
            raise EdgepruneError(f"{where}: 'segments.bounds' must cover the {n} units in order with non-empty "
                                 f"blocks (got {plan['segments']['bounds']})")
        pos = b
    if pos != n:
        raise EdgepruneError(f"{where}: 'segments.bounds' end at {pos}, not at the last unit ({n})")
    if not plan["kept_units"]:
        # edgeprune never writes such a plan (--keep refuses to keep no unit): it would prune every removable
        # unit, a network no budget asked for
        raise EdgepruneError(f"{where}: 'kept_units' is empty: a plan keeps at least one unit (edgeprune plans "
                             f"never keep none; re-run edgeprune analyze)")
    if len(set(plan["kept_units"])) != len(plan["kept_units"]):
        raise EdgepruneError(f"{where}: 'kept_units' names a unit twice")
    layers = {u["layer"] for u in plan["units"]}
    stray = [u for u in plan["kept_units"] if u not in layers]
    if stray:
        raise EdgepruneError(f"{where}: 'kept_units' names layers that are not units: {stray[:5]}")
    return plan


def check_plan(plan: dict[str, Any], spec: dict[str, Any], where: str = "plan") -> None:
    """A clear error when ``plan`` is damaged or was made for another model."""
    validate_plan(plan, where)
    if plan["model"] != spec["name"] or plan["spec_sha256"] != spec_hash(spec):
        raise EdgepruneError(f"the plan was made for model {plan['model']!r} (spec {plan['spec_sha256'][:12]}), "
                             f"not for this checkpoint's {spec['name']!r} (spec {spec_hash(spec)[:12]})")


def plan_summary(plan: dict[str, Any]) -> str:
    e = plan["expected"]
    lines = [f"plan for {plan['model']}: {len(plan['units'])} units, similarity {plan['similarity']['metric']}, "
             f"importance {plan['importance']['proxy']} ({plan['keep']['search']})",
             f"segments (K={plan['segments']['k']}{', auto' if plan['segments']['auto'] else ''}): "
             + " ".join(f"[{a}-{b - 1}]" for a, b in plan["segments"]["bounds"]),
             f"keep {plan['keep']['counts']} ({plan['keep']['mode']}) -> units {plan['kept_units']} "
             f"(transition {plan['transition']})",
             f"MACs {e['macs_before']:,} -> {e['macs_after']:,} (-{100 * e['macs_reduction']:.1f}%), "
             f"params {e['params_before']:,} -> {e['params_after']:,} (-{100 * e['params_reduction']:.1f}%)",
             "time " + ", ".join(f"{k[:-2]} {v:.2f}s" for k, v in plan["timings"].items())]
    return "\n".join(lines)


def as_array(matrix) -> np.ndarray:
    return np.asarray(matrix, dtype=np.float64)
