"""Device profiles (``targets/*.toml``): backend, precisions, opset, DLA, batch sizes.

Torch-free. Search path, first match wins:

1. folders passed as ``targets_dir`` (the CLI's ``--targets-dir``),
2. folders in ``EDGEPRUNE_TARGETS`` (``os.pathsep``-separated),
3. the shipped profiles: the repository's ``targets/`` folder, or in an
   installed package ``export/targets_data/`` or ``<prefix>/share/edgeprune/targets``.

A user adds a device by dropping another ``NAME.toml`` into one of them.
Every file is validated on load: unknown keys, missing keys and wrong types
are errors that name the file and the key.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.errors import EdgepruneError
from edgeprune.export.runtime.safeio import read_bytes
from edgeprune.export.runtime.schema import check_depth

from .runtime.jetpack import JETPACK_STACK, trt_max_opset
from .runtime.manifest import PRECISIONS

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

TARGET_BACKENDS = ("onnxruntime", "tensorrt")
EXPORTERS = ("auto", "legacy", "dynamo")

# key: (type, required)
_TOP = {
    "name": (str, True),
    "description": (str, False),
    "backend": (str, True),
    "precisions": (list, True),
    "default_precision": (str, False),
    "opset": (int, True),
    "exporter": (str, False),
    "tensorrt": (str, False),
    "jetpack": (str, False),
    "python": (str, False),
    "dla_cores": (int, False),
    "workspace_mib": (int, False),
    "providers": (list, False),
    "batch": (dict, False),
}
_BATCH = {"min": int, "opt": int, "max": int, "profile": list}
MAX_WORKSPACE_MIB = 1 << 20  # 1 TiB: TensorRT's builder workspace, in MiB
MAX_BATCH = 1 << 16


@dataclass(frozen=True)
class Target:
    """One device profile."""

    name: str
    backend: str
    precisions: tuple[str, ...]
    opset: int
    description: str = ""
    default_precision: str = ""
    exporter: str = "auto"
    tensorrt: str | None = None
    jetpack: str | None = None
    python: str | None = None
    dla_cores: int = 0
    workspace_mib: int = 1024
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    batch_min: int = 1
    batch_opt: int = 1
    batch_max: int = 64
    batch_profile: tuple[int, ...] = (1,)
    source: str = field(default="", compare=False)

    @property
    def resolved_exporter(self) -> str:
        """'legacy' (TorchScript, opset <= 17) or 'dynamo' (opset >= 18)."""
        if self.exporter != "auto":
            return self.exporter
        return "legacy" if self.opset <= 17 else "dynamo"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["precisions"] = list(self.precisions)
        d["providers"] = list(self.providers)
        d["batch"] = {"min": self.batch_min, "opt": self.batch_opt, "max": self.batch_max,
                      "profile": list(self.batch_profile)}
        for k in ("batch_min", "batch_opt", "batch_max", "batch_profile"):
            d.pop(k)
        return d


def _type_name(t) -> str:
    return {str: "a string", int: "an integer", list: "a list", dict: "a table"}[t]


def _check_type(where: str, key: str, value, typ) -> None:
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if not ok:
        raise EdgepruneError(f"{where}: '{key}' must be {_type_name(typ)}, got {type(value).__name__} {value!r}")


def parse_target(data: dict[str, Any], where: str = "<target>") -> Target:
    """Validate a parsed TOML table and build a :class:`Target`."""
    if not isinstance(data, dict):
        raise EdgepruneError(f"{where}: a target must be a TOML table")
    for key in data:
        if key not in _TOP:
            raise EdgepruneError(f"{where}: unknown key {str(key)[:40]!r} (known: {', '.join(_TOP)})")
    for key, (typ, required) in _TOP.items():
        if key not in data:
            if required:
                raise EdgepruneError(f"{where}: missing key '{key}'")
            continue
        _check_type(where, key, data[key], typ)
    backend = data["backend"]
    if backend not in TARGET_BACKENDS:
        raise EdgepruneError(f"{where}: 'backend' must be one of {', '.join(TARGET_BACKENDS)}, got {backend!r}")
    precisions = data["precisions"]
    if not precisions:
        raise EdgepruneError(f"{where}: 'precisions' must not be empty")
    for p in precisions:
        if p not in PRECISIONS:
            raise EdgepruneError(f"{where}: 'precisions' holds {p!r}; known precisions: {', '.join(PRECISIONS)}")
    default = data.get("default_precision", precisions[0])
    if default not in precisions:
        raise EdgepruneError(f"{where}: 'default_precision' {default!r} is not among 'precisions' {precisions}")
    opset = data["opset"]
    if not 7 <= opset <= 30:
        raise EdgepruneError(f"{where}: 'opset' {opset} is outside 7..30")
    exporter = data.get("exporter", "auto")
    if exporter not in EXPORTERS:
        raise EdgepruneError(f"{where}: 'exporter' must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if exporter == "legacy" and opset > 20:
        raise EdgepruneError(f"{where}: the legacy exporter cannot emit opset {opset}")
    dla = data.get("dla_cores", 0)
    if not 0 <= dla <= 16:
        raise EdgepruneError(f"{where}: 'dla_cores' must be in 0..16, got {dla}")
    if dla and backend != "tensorrt":
        raise EdgepruneError(f"{where}: 'dla_cores' needs backend = \"tensorrt\"")
    if backend == "tensorrt" and "tensorrt" not in data:
        raise EdgepruneError(f"{where}: missing key 'tensorrt' (the TensorRT version, e.g. \"8.5\")")
    _check_stack(where, data, opset)
    ws = data.get("workspace_mib", 1024)
    if not 0 <= ws <= MAX_WORKSPACE_MIB:
        raise EdgepruneError(f"{where}: 'workspace_mib' must be in 0..{MAX_WORKSPACE_MIB} (1 TiB), got {ws}")
    providers = data.get("providers", ["CPUExecutionProvider"])
    for p in providers:
        if not isinstance(p, str):
            raise EdgepruneError(f"{where}: 'providers' must be a list of strings")
    batch = data.get("batch", {})
    for key in batch:
        if key not in _BATCH:
            raise EdgepruneError(f"{where}: unknown key {('batch.' + str(key))[:46]!r} (known: {', '.join(_BATCH)})")
    for key, typ in _BATCH.items():
        if key in batch:
            _check_type(where, f"batch.{key}", batch[key], typ)
    bmin, bopt, bmax = batch.get("min", 1), batch.get("opt", 1), batch.get("max", 64)
    if not 1 <= bmin <= bopt <= bmax <= MAX_BATCH:
        raise EdgepruneError(f"{where}: batch sizes must satisfy 1 <= min <= opt <= max <= {MAX_BATCH}, got {bmin}/{bopt}/{bmax}")
    profile = batch.get("profile", sorted({bmin, bopt, bmax}))
    if not profile:
        raise EdgepruneError(f"{where}: 'batch.profile' must not be empty (the batch sizes engines and bundles are "
                             f"built and profiled for)")
    for b in profile:
        if isinstance(b, bool) or not isinstance(b, int) or not bmin <= b <= bmax:
            raise EdgepruneError(f"{where}: 'batch.profile' entries must be integers in {bmin}..{bmax}, got {b!r}")
    if any(a >= b for a, b in zip(profile, profile[1:])):
        raise EdgepruneError(f"{where}: 'batch.profile' must be increasing, got {profile}"[:300])
    return Target(
        name=data["name"], backend=backend, precisions=tuple(precisions), opset=opset,
        description=data.get("description", ""), default_precision=default, exporter=exporter,
        tensorrt=data.get("tensorrt"), jetpack=data.get("jetpack"), python=data.get("python"), dla_cores=dla,
        workspace_mib=ws,
        providers=tuple(providers), batch_min=bmin, batch_opt=bopt, batch_max=bmax,
        batch_profile=tuple(profile), source=where,
    )


def _check_stack(where: str, data: dict[str, Any], opset: int) -> None:
    """A JetPack's TensorRT and Python are what NVIDIA ships with it; the opset is one its TensorRT parses."""
    trt, jp, py = data.get("tensorrt"), data.get("jetpack"), data.get("python")
    if jp in JETPACK_STACK:
        want_py, want_trt, _ = JETPACK_STACK[jp]
        if trt is not None and str(trt).split(".")[:2] != want_trt.split(".")[:2]:
            raise EdgepruneError(f"{where}: JetPack {jp} ships TensorRT {want_trt}, not {trt}")
        if py is not None and py != want_py:
            raise EdgepruneError(f"{where}: JetPack {jp} ships Python {want_py}, not {py}")
    if data.get("backend") == "tensorrt" and trt:
        ceiling = trt_max_opset(trt)
        if ceiling is not None and opset > ceiling:
            raise EdgepruneError(f"{where}: 'opset' {opset} is above what TensorRT {trt}'s ONNX parser takes "
                                 f"({ceiling})")


def load_target_file(path: str | os.PathLike) -> Target:
    """Load and validate one ``.toml`` profile."""
    path = Path(path)
    raw = read_bytes(path, "target file", "doc")  # a regular file within the size limit (never a FIFO)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except RecursionError as exc:
        raise EdgepruneError(f"{path}: not valid TOML (nested too deeply)") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EdgepruneError(f"{path}: not valid TOML ({exc})") from exc

    check_depth(data, str(path))  # the JSON guard's depth limit holds for TOML too
    target = parse_target(data, str(path))
    if target.name != path.stem:
        raise EdgepruneError(f"{path}: 'name' is {target.name!r} but the file is named {path.stem!r}.toml")
    return target


def builtin_dirs() -> list[Path]:
    """Where the shipped profiles live (repository checkout or installed package)."""
    here = Path(__file__).resolve().parent
    dirs = [here.parent / "targets", here / "targets_data", Path(sys.prefix) / "share" / "edgeprune" / "targets"]
    return [d for d in dirs if d.is_dir()]


def search_dirs(targets_dir=None) -> list[Path]:
    dirs: list[Path] = []
    extra = [targets_dir] if isinstance(targets_dir, (str, os.PathLike)) else list(targets_dir or [])
    for d in extra:
        p = Path(d)
        if not p.is_dir():
            raise EdgepruneError(f"targets folder {p} does not exist")
        dirs.append(p)
    env = os.environ.get("EDGEPRUNE_TARGETS", "")
    dirs += [Path(d) for d in env.split(os.pathsep) if d and Path(d).is_dir()]
    dirs += builtin_dirs()
    return dirs


def list_targets(targets_dir=None) -> list[Target]:
    """Every profile on the search path (a name found twice: the first wins)."""
    found: dict[str, Target] = {}
    for d in search_dirs(targets_dir):
        for f in sorted(d.glob("*.toml")):
            if f.stem not in found:
                found[f.stem] = load_target_file(f)
    return sorted(found.values(), key=lambda t: t.name)


def load_target(name_or_path, targets_dir=None) -> Target:
    """A profile by name (searched) or by path to a ``.toml`` file."""
    if isinstance(name_or_path, Target):
        return name_or_path
    s = str(name_or_path)
    if s.endswith(".toml") or os.sep in s:
        return load_target_file(s)
    for d in search_dirs(targets_dir):
        f = d / f"{s}.toml"
        if f.is_file():
            return load_target_file(f)
    names = [t.name for t in list_targets(targets_dir)]
    raise EdgepruneError(f"unknown target {s!r}; known targets: {', '.join(names) or '(none found)'}")
