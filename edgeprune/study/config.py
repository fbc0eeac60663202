"""Study configuration (TOML), validated on load: unknown keys and wrong types are errors."""

from __future__ import annotations

import copy
import math
import os
import tomllib
from pathlib import Path
from typing import Any

from edgeprune.export.runtime.safeio import read_bytes
from edgeprune.export.runtime.schema import check_depth
from edgeprune.profiling.remote import parse_remote

from ..errors import EdgepruneError
from ..models.usercode import CODE_ENV, allow, parse_ref
from ..pruning.catalogue import entries, study_options
import edgeprune.profiling  # noqa: F401 - registers its torch backend
from edgeprune.export.runtime.registry import names as backend_names

EXECUTORS = ("local", "ray")

# section -> key -> (type(s), default). A default of REQUIRED_VALUE must be given.
REQUIRED_VALUE = object()
CONFIG_KEYS: dict[str, dict[str, tuple[Any, Any]]] = {
    "study": {
        "name": (str, "study"),
        "seed": (int, 0),
        "seeds": (list, []),            # several seeds: the whole study once per seed, mean +- 95% CI
        "threads": (int, 0),            # torch threads for training (0 = torch default)
        "executor": (str, "local"),     # where compute stages run: local (this process) or ray (a Ray cluster)
        "address": (str, ""),           # ray: auto, HOST:6379 or ray://HOST:10001 ("" = a Ray started here)
    },
    "resources": {                      # what each Ray task reserves (executor = "ray")
        "cpus_per_task": (int, 1),      # also the torch threads of each task
        "gpus_per_task": ((int, float), 0),
    },
    "data": {
        "synth": (str, ""),             # a generator preset (rml2016.10a, rml2018.01a) ...
        "file": (str, ""),              # ... or a dataset file in any supported format
        "per_key": (int, 100),
        "snr_mode": (str, "rml"),
        "snrs": (list, []),             # SNR levels to generate/keep ([] = all)
        "min_snr": ((int, float), None),
        "max_snr": ((int, float), None),
        "length": (int, 0),             # 0 = the preset's / file's frame length
        "split": (list, [0.6, 0.2, 0.2]),
    },
    "model": {
        "name": (str, "resnet56-1d"),
        "checkpoint": (str, ""),        # start from a trained checkpoint instead of training
        "code": (str, ""),              # your own network: "FILE.py:NAME" (relative to the config); allows FILE.py
        "kwargs": (dict, {}),           # keyword arguments for FILE.py:NAME
    },
    "train": {
        "epochs": (int, 10),
        "batch_size": (int, 128),
        "lr": (float, 1e-3),
        "step_size": (int, 10),
        "gamma": (float, 0.8),
        "patience": (int, None),        # early stopping: epochs without a better validation loss
    },
    "prune": {
        "methods": (list, ["layer", "channel-l1"]),
        "targets": (list, [0.5]),       # fractions of the baseline MACs
        "similarity": (str, "cka-unbiased"),
        "importance": (str, "ablation"),
        "transition": (str, "keep"),
        "reference": (bool, False),     # the layer method runs the reference code's procedure
        "keep": (list, []),             # with reference: units kept per block (default one per block)
    },
    "finetune": {
        "epochs": (int, 5),
        "lr": (float, 1e-3),
        "l1": (float, 1e-4),
        "distill": (bool, False),
    },
    "export": {
        "precisions": (list, ["fp32"]),
        "opset": (int, 17),
        "simplify": (bool, True),      # false: keep torch's graph (no onnxsim), as `export --no-simplify`
    },
    "profile": {
        "backends": (list, ["onnxruntime"]),
        "batch": (list, [1, 64]),
        "threads": (list, [1]),
        "warmup": (int, 20),
        "iters": (int, 200),
        "min_time_ms": (int, 0),       # time every model for at least this long per round (0: just `iters`)
        "rounds": (int, 1),            # interleaved rounds; a model's figure is its median round
        "stop_spread": (float, 0.0),   # end the rounds early (after 2) once every figure's rounds agree within this
                                       # fraction of its median (0: always run `rounds`)
        "target": (str, ""),            # a device profile: bundle every model for it (study/bundles/)
        "remote": (str, ""),            # user@host[:port]: also time every bundle on that board over SSH
        "remote_dir": (str, ""),        # folder on the board (default ~/edgeprune-bundles)
        "remote_python": (str, "python3"),
        "ssh_config": (str, ""),        # ssh -F FILE (relative to the config file)
        "energy": (bool, False),        # Jetson: tegrastats power during the board's timed loop
        "node": (str, ""),              # executor ray: time the models in one task pinned to this Ray node (id or IP)
    },
}


def _check_type(section: str, key: str, value: Any, typ: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise EdgepruneError(f"config [{section}] {key}: must be a finite number, got {value}")
    if isinstance(value, int) and not isinstance(value, bool) and not -2 ** 63 <= value < 2 ** 63:
        raise EdgepruneError(f"config [{section}] {key}: {value} is out of range")
    types = typ if isinstance(typ, tuple) else (typ,)
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and bool not in types:
        raise EdgepruneError(f"config [{section}] {key}: expected {'/'.join(t.__name__ for t in types)}, got a boolean")
    if not isinstance(value, types):
        raise EdgepruneError(f"config [{section}] {key}: expected {'/'.join(t.__name__ for t in types)}, "
                             f"got {type(value).__name__} ({value!r})")
    return value


def normalise(raw: dict[str, Any], where: str = "config") -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise EdgepruneError(f"{where}: a study config must be a table of sections")
    cfg: dict[str, dict[str, Any]] = {}
    for section in raw:
        if section not in CONFIG_KEYS:
            raise EdgepruneError(f"{where}: unknown section {str(section)[:40]!r} (known: {', '.join(CONFIG_KEYS)})")
    for section, keys in CONFIG_KEYS.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise EdgepruneError(f"{where}: [{section}] must be a table")
        for key in given:
            if key not in keys and not (section == "prune" and _method_table(where, key, given[key])):
                raise EdgepruneError(f"{where}: unknown key {str(key)[:40]!r} in [{section}] (known: {', '.join(keys)})")
        out = {}
        for key, (typ, default) in keys.items():
            if key in given:
                v = given[key]
                if v is None and default is not None:
                    raise EdgepruneError(f"{where}: [{section}] {key} must not be empty (null)")
                out[key] = v if v is None else _check_type(section, key, v, typ)
            else:
                out[key] = copy.deepcopy(default)
        if section == "prune":   # [prune.METHOD] tables, checked by _check_method_options
            out.update({k: dict(v) for k, v in given.items() if k not in keys})
        cfg[section] = out
    if cfg["study"]["executor"] not in EXECUTORS:
        raise EdgepruneError(f"{where}: [study] unknown executor {cfg['study']['executor'][:40]!r} "
                             f"(choose from: {', '.join(EXECUTORS)})")
    if not 1 <= cfg["resources"]["cpus_per_task"] <= 4096:
        raise EdgepruneError(f"{where}: [resources] cpus_per_task must be in 1..4096, got {cfg['resources']['cpus_per_task']}")
    if not 0 <= cfg["resources"]["gpus_per_task"] <= 64:
        raise EdgepruneError(f"{where}: [resources] gpus_per_task must be in 0..64, got {cfg['resources']['gpus_per_task']}")
    d = cfg["data"]
    if bool(d["synth"]) == bool(d["file"]):
        raise EdgepruneError(f"{where}: [data] needs exactly one of synth = PRESET or file = PATH")
    for t in cfg["prune"]["targets"]:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
            raise EdgepruneError(f"{where}: [prune] targets must be MACs fractions in (0, 1], got {t!r}")
    seeds = cfg["study"]["seeds"]
    for v in seeds:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 2 ** 32 - 1:
            raise EdgepruneError(f"{where}: [study] seeds must list integers in 0..4294967295 (as seed), "
                                 f"got {v!r}"[:300])
    if len(set(seeds)) != len(seeds):
        raise EdgepruneError(f"{where}: [study] seeds must not repeat, got {seeds!r}"[:300])
    pat = cfg["train"]["patience"]
    if pat is not None and pat <= 0:
        raise EdgepruneError(f"{where}: [train] patience must be a positive number of epochs, got {pat}")
    _check_items(where, "prune", "keep", cfg["prune"]["keep"], int, "units kept per block")
    if cfg["prune"]["keep"] and not cfg["prune"]["reference"]:
        raise EdgepruneError(f"{where}: [prune] keep is the budget of reference = true (other methods use targets)")
    if cfg["prune"]["importance"] not in _criteria():
        raise EdgepruneError(f"{where}: [prune] unknown importance criterion {cfg['prune']['importance']!r}; "
                             f"choose one of: {', '.join(_criteria())}")
    for b in cfg["profile"]["batch"]:
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 1 << 16:
            raise EdgepruneError(f"{where}: [profile] batch sizes must be positive integers, got {b!r}")
    for p in cfg["export"]["precisions"]:
        if p not in ("fp32", "fp16", "int8"):
            raise EdgepruneError(f"{where}: [export] unknown precision {p!r} (fp32, fp16, int8)")
    if "fp32" not in cfg["export"]["precisions"]:
        cfg["export"]["precisions"].insert(0, "fp32")

    for b in cfg["profile"]["backends"]:
        if b not in backend_names():
            raise EdgepruneError(f"{where}: [profile] unknown backend {b!r} ({', '.join(backend_names())})")
    if cfg["profile"]["remote"]:
        parse_remote(cfg["profile"]["remote"], f"{where}: [profile] remote")  # edgeprune's own check, before ssh
    if cfg["profile"]["remote"] and not cfg["profile"]["target"]:
        raise EdgepruneError(f"{where}: [profile] remote needs target = a device profile for the board "
                             f"(see edgeprune targets), e.g. target = \"jetson-orin-nx\"")
    if not cfg["prune"]["methods"]:
        raise EdgepruneError(f"{where}: [prune] methods is empty")
    _check_items(where, "prune", "methods", cfg["prune"]["methods"], str, "method names")
    _check_method_options(where, cfg["prune"])
    _check_items(where, "data", "snrs", cfg["data"]["snrs"], (int, float), "SNR levels in dB")
    _check_items(where, "profile", "threads", cfg["profile"]["threads"], int, "thread counts")
    if any(not 1 <= t <= 4096 for t in cfg["profile"]["threads"]):
        raise EdgepruneError(f"{where}: [profile] threads must be positive integers")
    split = cfg["data"]["split"]
    _check_items(where, "data", "split", split, (int, float), "fractions")
    if len(split) != 3 or any(f < 0 for f in split) or abs(sum(split) - 1) > 1e-6:
        raise EdgepruneError(f"{where}: [data] split must be three fractions (train, val, test) summing to 1, "
                             f"got {split!r}")
    for sec, key, low in (("data", "per_key", 1), ("train", "epochs", 0), ("train", "batch_size", 1),
                          ("finetune", "epochs", 0), ("profile", "iters", 1), ("profile", "warmup", 0)):
        if cfg[sec][key] < low:
            raise EdgepruneError(f"{where}: [{sec}] {key} must be at least {low}, got {cfg[sec][key]}")
    for sec, key, lo, hi in (("study", "seed", 0, 2 ** 32 - 1), ("train", "lr", 1e-12, 10.0),
                             ("finetune", "lr", 1e-12, 10.0), ("train", "gamma", 1e-12, 10.0),
                             ("finetune", "l1", 0.0, 1e6), ("study", "threads", 0, 4096),
                             ("data", "per_key", 1, 10 ** 7), ("data", "length", 0, 1 << 20),
                             ("train", "epochs", 0, 10 ** 6), ("finetune", "epochs", 0, 10 ** 6),
                             ("train", "batch_size", 1, 1 << 20), ("train", "step_size", 1, 10 ** 6),
                             ("profile", "iters", 1, 10 ** 8), ("profile", "warmup", 0, 10 ** 8),
                             ("profile", "rounds", 1, 10 ** 4), ("profile", "min_time_ms", 0, 10 ** 8),
                             ("profile", "stop_spread", 0.0, 1.0),
                             ("export", "opset", 7, 30)):
        if not lo <= cfg[sec][key] <= hi:
            raise EdgepruneError(f"{where}: [{sec}] {key} must be in {lo:g}..{hi:g}, got {cfg[sec][key]}")
    return cfg


def _method_table(where: str, key: str, value: Any) -> bool:
    """Whether ``key`` of [prune] is a method's own table ``[prune.METHOD]`` (a known method, a table)."""
    if key not in entries():
        return False
    if not isinstance(value, dict):
        raise EdgepruneError(f"{where}: [prune] {key} must be a table of that method's options ([prune.{key}])")
    return True


def _check_method_options(where: str, prune: dict[str, Any]) -> None:
    """Each listed method's options (the [prune] keys it declares, its own [prune.METHOD] table) against the
    options it declares (:mod:`edgeprune.pruning.catalogue`); a table for a method not listed is an error."""
    listed = {str(m).split("+")[0] for m in prune["methods"]}
    for key in prune:
        if key in entries() and key not in listed:
            raise EdgepruneError(f"{where}: [prune.{key}] is given but {key!r} is not in [prune] methods")
    for method in sorted(listed):
        if method in entries():   # an unknown method is reported when the study starts (plugins load first)
            study_options(method, prune, where)


def _criteria() -> list[str]:
    from ..analysis.importance import CRITERIA

    return list(CRITERIA)


def _check_items(where: str, section: str, key: str, values: list, typ, what: str) -> None:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, typ):
            raise EdgepruneError(f"{where}: [{section}] {key} must list {what}, got {v!r}"[:300])


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    data = read_bytes(path, "study config", "doc")  # a regular file within the size limit (never a FIFO)
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise EdgepruneError(f"study config {path} is not valid TOML: {exc}") from exc

    check_depth(raw, f"study config {path}")  # the JSON guard's depth limit holds for TOML too
    cfg = normalise(raw, str(path))
    if cfg["data"]["file"]:
        f = Path(cfg["data"]["file"]).expanduser()
        if not f.is_absolute():
            f = (path.parent / f).resolve()
        cfg["data"]["file"] = str(f)
        if not f.exists():
            raise EdgepruneError(f"{path}: [data] file {f} does not exist")
    if cfg["profile"]["ssh_config"]:
        c = Path(cfg["profile"]["ssh_config"]).expanduser()
        cfg["profile"]["ssh_config"] = str(c if c.is_absolute() else (path.parent / c).resolve())
    if cfg["model"]["code"]:
        file, _, obj = cfg["model"]["code"].rpartition(":")
        f = Path(file).expanduser()
        f = f if f.is_absolute() else (path.parent / f)
        code_path, obj = parse_ref(f"{f}:{obj}")
        allow(code_path)
        # studies may run stages in other processes: they inherit the permission through the environment
        os.environ[CODE_ENV] = os.pathsep.join(p for p in [os.environ.get(CODE_ENV, ""), str(code_path)] if p)
        cfg["model"]["name"] = f"{code_path}:{obj}"
    if cfg["model"]["checkpoint"]:
        c = Path(cfg["model"]["checkpoint"]).expanduser()
        cfg["model"]["checkpoint"] = str(c if c.is_absolute() else (path.parent / c).resolve())
        if not Path(cfg["model"]["checkpoint"]).is_file():
            raise EdgepruneError(f"{path}: [model] checkpoint {cfg['model']['checkpoint']} does not exist")
    return cfg


def model_id(method: str, target: float) -> str:
    """A study model's id: ``METHOD@TARGET`` (``layer+kd@0.5``)."""
    return f"{method}@{target:g}"


def split_method(method: str) -> tuple[str, bool]:
    """``"layer+kd"`` -> ("layer", True): the method, fine-tuned with distillation from the baseline."""
    base, _, suffix = method.partition("+")
    if suffix not in ("", "kd"):
        raise EdgepruneError(f"unknown method variant {method!r} (only '+kd', distillation, is known)")
    return base, suffix == "kd"
