"""What a MODEL argument is: a checkpoint, an ONNX file, a TensorRT engine or a bundle.

``resolve_model(path)`` reads just enough to know the model's name, sha256,
MACs, params and layer count and which runnable files it offers (ONNX per
precision, engines per precision). Torch is imported only for checkpoints.

``layers`` is the number of weight layers (convolutions + linear layers),
the same count as a checkpoint's ``weight_layers`` and the ``layers`` term of
the latency model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from edgeprune.checkpoint import load_checkpoint
from edgeprune.errors import EdgepruneError, require
from edgeprune.export.runtime.manifest import PRECISIONS, decode_metadata
from edgeprune.export.runtime.onnx_external import check_model_file
from edgeprune.export.runtime.safeio import check_input, file_sha256
from edgeprune.models import build_model
from edgeprune.models.modular import network_stats

from .onnx_macs import count_onnx_macs

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass
class ModelSource:
    """A model to profile and what is known about it."""

    path: Path
    kind: str  # checkpoint | onnx | engine | bundle
    name: str
    sha256: str
    macs: int | None = None
    params: int | None = None
    layers: int | None = None
    units: int | None = None
    macs_source: str | None = None
    spec: dict | None = None
    onnx: dict = field(default_factory=dict)     # precision -> Path
    engines: dict = field(default_factory=dict)  # precision -> Path
    checkpoint: Path | None = None
    frame_shape: tuple | None = None             # per-frame input shape, e.g. (2, 128)
    manifest: dict | None = None
    _tmp: str | None = None
    _cache: dict = field(default_factory=dict)
    _bundle: object = None

    def onnx_path(self, precision: str | None = None) -> Path:
        """The ONNX file for ``precision`` (exporting a checkpoint to a temporary fp32 ONNX on first use)."""
        if self.kind == "checkpoint" and (precision or "fp32") not in self.onnx:
            prec = precision or "fp32"
            self.onnx[prec] = _export_checkpoint(self.checkpoint, self._tempdir(), prec)
        if not self.onnx:
            raise EdgepruneError(f"{self.path} holds no ONNX model")
        if precision is None:
            return self.onnx.get("fp32") or next(iter(self.onnx.values()))
        if precision not in self.onnx:
            raise EdgepruneError(f"{self.path} has no {precision} ONNX model (it has: {', '.join(self.onnx) or 'none'})")
        return self.onnx[precision]

    def _tempdir(self) -> str:
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="edgeprune-profile-")
        return self._tmp

    def layer_macs(self) -> dict[int, int] | None:
        """MACs per top-level layer index, from the checkpoint spec (torch) or the ONNX graph."""
        if "layer_macs" not in self._cache:
            self._cache["layer_macs"] = self._layer_macs()
        return self._cache["layer_macs"]

    def _layer_macs(self) -> dict[int, int] | None:
        if self.spec is not None and self.kind == "checkpoint" and self.spec.get("kind") != "module":
            from edgeprune.models.macs import count_macs

            _, per = count_macs(build_model(self.spec), per_layer=True)
            return dict(sorted(per.items()))
        try:
            return count_onnx_macs(self.onnx_path()).get("per_layer")
        except EdgepruneError:
            return None

    def info(self) -> dict:
        return {"model": self.name, "path": str(self.path), "sha256": self.sha256, "kind": self.kind,
                "macs": self.macs, "params": self.params, "layers": self.layers, "units": self.units,
                "macs_source": self.macs_source}

    def close(self) -> None:
        if self._bundle is not None:
            _close(self._bundle)
            self._bundle = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def detect_kind(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir() or name.endswith((".tar.gz", ".tgz", ".tar")):
        return "bundle"
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith(ENGINE_SUFFIXES):
        return "engine"
    if name.endswith(CHECKPOINT_SUFFIXES):
        return "checkpoint"
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] == b"PK":
        return "checkpoint"  # torch.save writes a zip archive
    return "onnx"  # ONNX has no magic number: the ONNX reader decides


def resolve_model(path: str | Path) -> ModelSource:
    """Inspect a MODEL argument; raises EdgepruneError (one line) for a missing or unreadable file."""
    path = Path(path)
    if not path.exists():
        raise EdgepruneError(f"model {path} does not exist")
    if not path.is_dir():
        if check_input(path, "model", "checkpoint").st_size == 0:  # a regular file, never a FIFO or device
            raise EdgepruneError(f"model {path} is an empty file")
    kind = detect_kind(path)
    if kind == "checkpoint":
        return _from_checkpoint(path)
    if kind == "onnx":
        src = ModelSource(path, "onnx", path.stem, file_sha256(path))
        info = describe_onnx(path)
        src.onnx[info["precision"]] = path
        _apply_onnx_info(src, info)
        return src
    if kind == "engine":
        src = ModelSource(path, "engine", path.stem, file_sha256(path))
        src.engines[_precision_from_name(path.name) or "fp32"] = path
        return src
    return _from_bundle(path)


def _precision_from_name(name: str) -> str | None:
    low = name.lower()
    for p in PRECISIONS:
        if p in low:
            return p
    return None


def _apply_onnx_info(src: ModelSource, info: dict) -> None:
    for k in ("macs", "params", "layers", "units", "macs_source"):
        if getattr(src, k) is None and info.get(k) is not None:
            setattr(src, k, info[k])
    if src.spec is None and info.get("spec") is not None:
        src.spec = info["spec"]
    if src.frame_shape is None and info.get("frame_shape"):
        src.frame_shape = tuple(info["frame_shape"])


def _from_checkpoint(path: Path) -> ModelSource:
    require("torch", "profiling a checkpoint (.pt; without torch, profile its ONNX file or bundle)")

    ck = load_checkpoint(path)
    meta = ck.meta
    src = ModelSource(path, "checkpoint", path.stem, file_sha256(path), checkpoint=path, spec=ck.spec)
    if meta.get("macs") is not None and meta.get("params") is not None and meta.get("weight_layers") is not None:
        src.macs, src.params, src.layers = int(meta["macs"]), int(meta["params"]), int(meta["weight_layers"])
    else:
        st = network_stats(ck.spec)
        src.macs, src.params, src.layers = st["macs"], st["params"], st["weight_layers"]
    src.units = network_stats(ck.spec)["units"]
    src.macs_source = "checkpoint"
    src.frame_shape = (2, int(ck.spec["input"][-1]))
    return src


def _ort_dtype_precision(type_str: str) -> str:
    return "fp16" if "float16" in type_str else "fp32"


def describe_onnx(path: str | Path) -> dict:
    """Precision, input shape, MACs/params/layers (metadata first, then the graph) of an ONNX file."""
    path = Path(path)
    try:
        import onnx
    except ImportError:
        onnx = None

    check_model_file(path)  # external data: only files a bundle manifest beside it lists
    if onnx is None:
        return _describe_with_ort(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise EdgepruneError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from exc
    if not model.graph.node:
        raise EdgepruneError(f"{path} is not a readable ONNX model (no graph nodes)")
    meta = {p.key: p.value for p in model.metadata_props}

    decode_metadata(meta, f"{path} (its metadata)")  # the one JSON guard: size, depth, declared field types
    info: dict = {"metadata": meta}
    declared = meta.get("edgeprune.precision") or meta.get("precision")
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if not inputs:
        raise EdgepruneError(f"{path}: the ONNX graph has no inputs")
    inp = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    info["input_name"] = inp.name
    info["frame_shape"] = dims[1:] if len(dims) > 1 and all(d for d in dims[1:]) else None
    ops = {n.op_type for n in model.graph.node}
    fp16 = inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 or any(
        i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    if declared in PRECISIONS:
        info["precision"] = declared
    elif ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                "MatMulInteger", "DynamicQuantizeLinear"}:
        info["precision"] = "int8"
    else:
        info["precision"] = "fp16" if fp16 else "fp32"
    _metadata_stats(meta, info)
    if info.get("macs") is None or info.get("layers") is None:
        try:
            counted = count_onnx_macs(model)
        except EdgepruneError as exc:
            warnings.warn(f"{path}: MACs unknown ({exc})", stacklevel=2)
        else:
            if info.get("macs") is None:
                info["macs"] = counted["macs"]
                info["macs_source"] = "onnx-graph"
            if info.get("layers") is None:
                info["layers"] = counted["weight_layers"]
    if info.get("params") is None:
        # folded BatchNorm makes this differ slightly from the torch count; labelled as such
        import numpy as np

        info["params"] = int(sum(int(np.prod(i.dims)) for i in model.graph.initializer if len(i.dims) >= 1
                                 and i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                                                     onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
                                 and int(np.prod(i.dims)) > 1))
        info["params_source"] = "onnx-initializers"
    return info


def _metadata_stats(meta: dict, info: dict) -> None:
    # the exporter writes its keys as "edgeprune.<key>"; bare keys are accepted too
    meta = {**meta, **{k[len("edgeprune."):]: v for k, v in meta.items() if k.startswith("edgeprune.")}}
    if meta.get("precision") in PRECISIONS:
        info["precision"] = meta["precision"]

    def as_int(key):
        try:
            return int(float(meta[key]))
        except (KeyError, TypeError, ValueError):
            return None

    if as_int("macs") is not None:
        info["macs"] = as_int("macs")
        info["macs_source"] = "onnx-metadata"
    info["params"] = as_int("params")
    info["layers"] = as_int("weight_layers") if as_int("weight_layers") is not None else as_int("layers")
    info["units"] = as_int("units")
    if meta.get("spec"):
        try:
            spec = json.loads(meta["spec"])
            info["spec"] = spec if isinstance(spec, dict) and "layers" in spec else None
        except json.JSONDecodeError:
            pass
    if meta.get("model") or meta.get("name"):
        info["name"] = meta.get("model") or meta.get("name")


def _describe_with_ort(path: Path) -> dict:
    """The same, on a device with ONNX Runtime but without the onnx package (MACs from metadata only)."""
    ort = require("onnxruntime", "profiling an ONNX model")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # ORT's native warnings would reach the user's terminal as raw lines
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise EdgepruneError(f"{path} is not a readable ONNX model ({str(exc).splitlines()[0][:200]})") from exc
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    inp = sess.get_inputs()[0]
    info = {"metadata": meta, "input_name": inp.name,
            "frame_shape": [d for d in inp.shape[1:]] if all(isinstance(d, int) for d in inp.shape[1:]) else None,
            "precision": _ort_dtype_precision(inp.type)}
    _metadata_stats(meta, info)
    return info


def _export_checkpoint(checkpoint: Path, folder: str, precision: str = "fp32") -> Path:
    """A checkpoint as an ONNX file in ``folder``, by the export package's exporter when present.

    fp32 and fp16 only: int8 needs calibration frames (export it with ``edgeprune export``).
    """
    if precision == "int8":
        raise EdgepruneError("int8 needs calibration data: export the checkpoint with `edgeprune export "
                             "--precision int8 --calib-data FILE` and profile that ONNX file")
    out = Path(folder) / f"{Path(checkpoint).stem}-{precision}.onnx"
    try:
        from edgeprune.export.onnx_export import export_checkpoint
    except ImportError:
        export_checkpoint = None
    if export_checkpoint is not None:
        report = export_checkpoint(checkpoint, out, precision=precision)
        path = Path(report["path"]) if isinstance(report, dict) and report.get("path") else out
        if path.exists():
            return path
    if precision != "fp32":
        raise EdgepruneError(f"{precision} export needs the export package (edgeprune.export.onnx_export)")
    return _legacy_export(checkpoint, out)


def _legacy_export(checkpoint: Path, out: Path) -> Path:
    import torch

    ck = load_checkpoint(checkpoint)
    model = ck.build()
    x = torch.zeros(1, 2, ck.length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, x, str(out), dynamo=False, opset_version=17, input_names=["iq"],
                          output_names=["logits"], dynamic_axes={"iq": {0: "batch"}, "logits": {0: "batch"}})
    return out


def _from_bundle(path: Path) -> ModelSource:
    try:
        from edgeprune.export.bundle import open_bundle
    except ImportError as exc:
        raise EdgepruneError(f"{path} looks like a bundle, but bundle support (edgeprune.export.bundle) is not available "
                             f"in this installation") from exc
    bundle = open_bundle(path)  # verifies every file's sha256; archives extract to a temporary folder
    try:
        return _bundle_source(path, bundle)
    except BaseException:
        _close(bundle)
        raise


def _close(obj) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        close()


def _bundle_source(path: Path, bundle) -> ModelSource:
    manifest, files = _split_bundle(bundle)
    name = manifest.get("model") or manifest.get("name") or path.name.split(".")[0]
    sha = file_sha256(path) if path.is_file() else _manifest_hash(manifest)
    src = ModelSource(path, "bundle", f"{name} ({path.name})", sha, manifest=manifest)
    src._bundle = bundle
    by_name = {Path(f).name: Path(f) for f in files}
    variants = manifest.get("variants") if isinstance(manifest.get("variants"), list) else []
    for v in variants:
        f = by_name.get(str(v.get("file")))
        if f is None:
            continue
        fmt = v.get("format") or ("onnx" if f.name.endswith(".onnx") else "tensorrt")
        prec = v.get("precision") or _precision_from_name(f.name) or "fp32"
        (src.onnx if fmt == "onnx" else src.engines).setdefault(prec, f)
    root = getattr(bundle, "root", None)
    if root is not None and variants:  # engines `run.py build` made on the board come first, as for predict
        from edgeprune.export.runtime.model import engine_candidates

        for prec, f in engine_candidates(str(root), manifest).items():
            src.engines[prec] = Path(f)
    if not variants:  # a manifest without variants: go by file names
        for f in by_name.values():
            if f.name.lower().endswith(".onnx"):
                src.onnx.setdefault(_precision_from_name(f.name) or describe_onnx(f)["precision"], f)
            elif f.name.lower().endswith(ENGINE_SUFFIXES):
                src.engines.setdefault(_precision_from_name(f.name) or "fp32", f)
    for key, attr in (("macs", "macs"), ("params", "params"), ("weight_layers", "layers"), ("units", "units")):
        v = manifest.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            setattr(src, attr, int(v))
    if src.macs is not None:
        src.macs_source = "bundle-manifest"
    if src.onnx:
        _apply_onnx_info(src, describe_onnx(src.onnx.get("fp32") or next(iter(src.onnx.values()))))
    if not src.onnx and not src.engines:
        raise EdgepruneError(f"bundle {path} holds neither an ONNX model nor a TensorRT engine")
    return src


def _split_bundle(opened) -> tuple[dict, list]:
    """Accept the shapes open_bundle may return: (manifest, files), or an object/dict with both."""
    manifest = files = None
    if isinstance(opened, tuple) and len(opened) >= 2:
        manifest, files = opened[0], opened[1]
    elif isinstance(opened, dict) and "manifest" in opened:
        manifest, files = opened["manifest"], opened.get("files") or opened.get("paths")
    else:
        manifest = getattr(opened, "manifest", None)
        files = getattr(opened, "files", None) or getattr(opened, "paths", None)
    if isinstance(files, dict):
        files = list(files.values())
    if not isinstance(manifest, dict) or files is None:
        raise EdgepruneError("the bundle reader returned something this profiler does not understand")
    return manifest, [Path(f) for f in files]


def _manifest_hash(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode("utf-8")).hexdigest()
