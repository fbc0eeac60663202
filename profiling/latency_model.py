"""A latency model per (device, backend, batch, precision, threads):

    latency_ms ~ a * MACs + b * layers + c

fitted by least squares (numpy) on measured records of several models.
``MACs`` are per frame (edgeprune's definition), ``layers`` the number of
weight layers (convolutions + linear layers, ``weight_layers`` in checkpoint
metadata): the per-layer overhead a MAC count misses. It predicts a
candidate's latency before it is built (latency-targeted pruning uses it).

    from edgeprune.profiling.latency_model import LatencyModel
    lm = LatencyModel.fit(records, key={"backend": "onnxruntime", "batch": 1, "threads": 1})
    lm.predict(macs=5_440_000, layers=38)  # ms
    lm.save("lm.json"); LatencyModel.load("lm.json", backend="onnxruntime", batch=1)

Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeprune.atomic import read_json, write_json
from edgeprune.errors import EdgepruneError
from edgeprune.export.runtime.schema import anything, integer, number, obj, opt, seq, text, validate

MODEL_FILE_VERSION = 1
MODEL_FILE_KIND = "edgeprune-latency-model"
GROUP_KEYS = ("device", "backend", "batch", "precision", "threads")
_QNUM = opt(number(nullable=True))
# Every field that predictions, descriptions and the latency-targeted pruning read, with its type.
MODEL_SCHEMA = obj(
    coefficients=obj(a_ms_per_mac=number(), b_ms_per_layer=number(), c_ms=number()),
    key=opt(obj({k: opt(anything()) for k in GROUP_KEYS}, nullable=True)),
    stat=opt(text(choices=("median_ms", "mean_ms", "p90_ms", "p99_ms", "min_ms", "max_ms"))),
    quality=opt(obj(r2=_QNUM, mean_abs_pct_err=_QNUM, max_abs_pct_err=_QNUM, loo_mean_abs_pct_err=_QNUM,
                    n=_QNUM, nullable=True)),
    points=opt(seq(anything(), nullable=True)),
)
FILE_SCHEMA = obj(schema=integer(choices=(MODEL_FILE_VERSION,)), kind=text(choices=(MODEL_FILE_KIND,)), models=seq(MODEL_SCHEMA))
FORMULA = "latency_ms = a * MACs + b * layers + c (MACs per frame; layers = conv + linear weight layers)"
MIN_POINTS = 3


def _matches(rec: dict, key: dict | None) -> bool:
    return all(v is None or rec.get(k) == v for k, v in (key or {}).items())


def group_of(rec: dict) -> tuple:
    return tuple(rec.get(k) for k in GROUP_KEYS)


def _solve(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    coef, _, rank, _ = np.linalg.lstsq(X, y, rcond=None)
    return coef, int(rank)


def _design(macs, layers) -> np.ndarray:
    macs = np.asarray(macs, dtype=float)
    layers = np.asarray(layers, dtype=float)
    # MACs in millions keeps the columns on comparable scales (better conditioned)
    return np.column_stack([macs / 1e6, layers, np.ones_like(macs)])


@dataclass
class LatencyModel:
    """``latency_ms = a * macs + b * layers + c`` for one (device, backend, batch, precision, threads)."""

    a: float  # ms per MAC
    b: float  # ms per weight layer
    c: float  # ms
    key: dict = field(default_factory=dict)
    stat: str = "median_ms"
    quality: dict = field(default_factory=dict)
    points: list = field(default_factory=list)

    @classmethod
    def fit(cls, records: list[dict], key: dict | None = None, stat: str = "median_ms",
            min_points: int = MIN_POINTS) -> "LatencyModel":
        """Fit on the records matching ``key`` (a dict of GROUP_KEYS values; None = any).

        The matching records must form one group (one device, backend, batch,
        precision, threads); a model measured twice counts once (the last record).
        """
        chosen = [r for r in records if _matches(r, key)]
        if not chosen:
            raise EdgepruneError(f"no records match {key or {}} to fit a latency model on")
        groups = sorted({group_of(r) for r in chosen}, key=str)
        if len(groups) > 1:
            shown = ", ".join(str(dict(zip(GROUP_KEYS, g))) for g in groups[:4])
            raise EdgepruneError(f"the records span {len(groups)} (device, backend, batch, precision, threads) "
                                 f"groups; choose one with key=... (e.g. {shown})")
        uniq: dict[str, dict] = {}
        for r in chosen:
            for f in ("macs", "layers", stat):
                if not isinstance(r.get(f), (int, float)) or isinstance(r.get(f), bool):
                    raise EdgepruneError(f"record of {r.get('model')!r} lacks a numeric {f!r}; cannot fit on it")
            uniq[str(r.get("sha256") or r.get("model"))] = r
        pts = list(uniq.values())
        if len(pts) < min_points:
            raise EdgepruneError(f"a latency model needs at least {min_points} measured models, got {len(pts)} "
                                 f"for {dict(zip(GROUP_KEYS, groups[0]))}")
        macs = [float(r["macs"]) for r in pts]
        layers = [float(r["layers"]) for r in pts]
        y = np.array([float(r[stat]) for r in pts])
        X = _design(macs, layers)
        coef, rank = _solve(X, y)
        model = cls(a=float(coef[0]) / 1e6, b=float(coef[1]), c=float(coef[2]),
                    key=dict(zip(GROUP_KEYS, groups[0])), stat=stat)
        pred = X @ coef
        model.points = [{"model": r.get("model"), "sha256": r.get("sha256"), "macs": int(r["macs"]),
                         "layers": int(r["layers"]), "measured_ms": float(yi), "predicted_ms": float(pi)}
                        for r, yi, pi in zip(pts, y, pred)]
        model.quality = _quality(X, y, pred, rank)
        return model

    def predict(self, macs: float, layers: float) -> float:
        """Predicted latency in ms of a model with ``macs`` MACs per frame and ``layers`` weight layers."""
        if macs is None or layers is None or macs < 0 or layers < 0:
            raise EdgepruneError(f"predict needs non-negative MACs and layers, got macs={macs!r} layers={layers!r}")
        return float(self.a * macs + self.b * layers + self.c)

    def to_dict(self) -> dict:
        return {"key": self.key, "formula": FORMULA, "stat": self.stat,
                "coefficients": {"a_ms_per_mac": self.a, "a_ms_per_mmac": self.a * 1e6, "b_ms_per_layer": self.b,
                                 "c_ms": self.c},
                "quality": self.quality, "points": self.points}

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyModel":
        try:
            co = d["coefficients"]
            return cls(a=float(co["a_ms_per_mac"]), b=float(co["b_ms_per_layer"]), c=float(co["c_ms"]),
                       key=dict(d.get("key") or {}), stat=d.get("stat", "median_ms"),
                       quality=dict(d.get("quality") or {}), points=list(d.get("points") or []))
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgepruneError(f"latency model entry is damaged ({exc})") from exc

    def save(self, path: str | Path) -> None:
        save_models(path, [self])

    @classmethod
    def load(cls, path: str | Path, key: dict | None = None, **kw) -> "LatencyModel":
        """The model in ``path`` matching ``key`` / keyword filters (e.g. backend="onnxruntime", batch=1)."""
        key = {**(key or {}), **kw}
        models = load_models(path)
        hits = [m for m in models if _matches(m.key, key)]
        if not hits:
            have = "; ".join(str(m.key) for m in models)
            raise EdgepruneError(f"no latency model in {path} matches {key} (it has: {have})")
        if len(hits) > 1:
            raise EdgepruneError(f"{len(hits)} latency models in {path} match {key}; name the device/backend/"
                                 f"batch/precision/threads to choose one")
        return hits[0]

    def describe(self) -> str:
        q = self.quality
        k = self.key
        loo = q.get("loo_mean_abs_pct_err")
        return (f"{k.get('backend')} batch {k.get('batch')} {k.get('precision')} {k.get('threads')} thr "
                f"[{k.get('device')}]: {self.a * 1e6:.4f} ms/MMAC, {self.b:.4f} ms/layer, {self.c:.4f} ms; "
                f"R^2 {q.get('r2', float('nan')):.3f}, mean |err| {q.get('mean_abs_pct_err', float('nan')):.1f}%, "
                f"max |err| {q.get('max_abs_pct_err', float('nan')):.1f}%, "
                f"LOO mean |err| {'-' if loo is None else f'{loo:.1f}%'} (n={q.get('n')})")


def _quality(X: np.ndarray, y: np.ndarray, pred: np.ndarray, rank: int) -> dict:
    resid = y - pred
    ss_res = float(np.sum(resid ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    pct = np.abs(resid) / np.maximum(np.abs(y), 1e-12) * 100
    n = len(y)
    q = {"n": n, "rank": rank, "r2": r2, "rmse_ms": float(np.sqrt(ss_res / n)),
         "mean_abs_pct_err": float(pct.mean()), "max_abs_pct_err": float(pct.max()),
         "loo_mean_abs_pct_err": None, "loo_max_abs_pct_err": None}
    if rank < X.shape[1]:
        q["note"] = "MACs and layers do not vary independently in these models: coefficients are not unique"
    if n > X.shape[1]:
        errs = []
        for i in range(n):
            keep = np.arange(n) != i
            coef, _ = _solve(X[keep], y[keep])
            errs.append(abs(float(X[i] @ coef) - y[i]) / max(abs(y[i]), 1e-12) * 100)
        q["loo_mean_abs_pct_err"] = float(np.mean(errs))
        q["loo_max_abs_pct_err"] = float(np.max(errs))
    return q


def fit_groups(records: list[dict], key: dict | None = None, stat: str = "median_ms",
               min_points: int = MIN_POINTS) -> tuple[list[LatencyModel], list[dict]]:
    """One model per (device, backend, batch, precision, threads) group among ``records`` matching ``key``.

    Returns (models, skipped) where skipped lists the groups with too few models and why.
    """
    chosen = [r for r in records if _matches(r, key)]
    groups: dict[tuple, list[dict]] = {}
    for r in chosen:
        groups.setdefault(group_of(r), []).append(r)
    models, skipped = [], []
    for g, recs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        try:
            models.append(LatencyModel.fit(recs, dict(zip(GROUP_KEYS, g)), stat, min_points))
        except EdgepruneError as exc:
            skipped.append({**dict(zip(GROUP_KEYS, g)), "reason": str(exc)})
    return models, skipped


def save_models(path: str | Path, models: list[LatencyModel]) -> None:
    write_json(path, {"schema": MODEL_FILE_VERSION, "kind": MODEL_FILE_KIND, "formula": FORMULA, "models": [m.to_dict() for m in models]})


def load_models(path: str | Path) -> list[LatencyModel]:
    path = Path(path)
    if not path.exists():
        raise EdgepruneError(f"latency model file {path} does not exist")
    obj = read_json(path, f"latency model file {path}")
    if not isinstance(obj, dict) or obj.get("kind") != MODEL_FILE_KIND or not isinstance(obj.get("models"), list):
        raise EdgepruneError(f"{path} is not an edgeprune latency model file")
    if obj.get("schema") != MODEL_FILE_VERSION:
        raise EdgepruneError(f"latency model file {path} has schema {obj.get('schema')!r}; this edgeprune reads {MODEL_FILE_VERSION}")
    validate(obj, FILE_SCHEMA, f"latency model file {path}")
    return [LatencyModel.from_dict(d) for d in obj["models"]]
