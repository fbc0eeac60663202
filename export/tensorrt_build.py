"""Build TensorRT engines from ONNX for a target (TensorRT 8.0 to 11), and the trtexec equivalent.

- before 10: the network needs the EXPLICIT_BATCH flag; from 10 networks are explicit-batch anyway;
- the workspace limit is ``set_memory_pool_limit`` from 8.4, ``max_workspace_size`` before (JetPack 4.6);
- FP16/INT8 builder flags exist up to 10.x; TensorRT 11 networks are strongly
  typed: precision comes from the ONNX itself (an fp16 model, Q/DQ for int8);
- INT8 always comes from the Q/DQ nodes of an int8 ONNX (no implicit calibrator);
- DLA with GPU fallback where the target has DLA cores (needs fp16 or int8).

tensorrt is imported only inside ``build_engine``; ``trtexec_command`` needs nothing. Never run here
(no TensorRT); a bundle's ``run.py build`` is the trtexec route on the board.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from edgeprune import __version__
from edgeprune.atomic import atomic_path, write_json
from edgeprune.errors import EdgepruneError

from .runtime.cuda import cuda_api
from .runtime.onnx_external import check_model_file
from .runtime.safeio import file_sha256
from .runtime.frames import check_layout, layout_of_shape, layout_shape
from .runtime.manifest import decode_metadata
from .runtime.trtexec import command_line, profile_shapes, trtexec_args
from .targets import load_target
from .runtime.backend_tensorrt import import_tensorrt, version_tuple


def _onnx_info(onnx_path: Path) -> dict[str, Any]:
    """Frame length, precision, classes, normalisation from the ONNX metadata (onnx package or ORT)."""
    meta: dict[str, Any] = {}
    length = None
    shape_layout = None
    try:
        import onnx

        m = onnx.load(str(onnx_path), load_external_data=False)
        meta = decode_metadata({p.key: p.value for p in m.metadata_props}, f"{onnx_path} (its metadata)")
        dims = [d.dim_value or None for d in m.graph.input[0].type.tensor_type.shape.dim]
        shape_layout = layout_of_shape(dims)
        if shape_layout:
            length = dims[layout_shape(shape_layout, None, None).index(None, 1)]
    except ImportError:
        pass
    except EdgepruneError:
        raise
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors
        raise EdgepruneError(f"{onnx_path} is not a readable ONNX file: {str(exc).strip().splitlines()[0]}") from exc
    inp = meta.get("edgeprune.input") or {}
    return {"length": int(inp.get("length") or length or 0) or None,
            "layout": check_layout(inp.get("layout") or shape_layout), "precision": meta.get("edgeprune.precision"),
            "classes": meta.get("edgeprune.classes"), "normalization": meta.get("edgeprune.normalization", "none"),
            "opset": meta.get("edgeprune.opset"), "macs": meta.get("edgeprune.macs"), "params": meta.get("edgeprune.params")}


def _resolve(onnx_path, target, precision, targets_dir):
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise EdgepruneError(f"ONNX file {onnx_path} does not exist")
    tgt = load_target(target, targets_dir)
    if tgt.backend != "tensorrt":
        raise EdgepruneError(f"target {tgt.name} runs {tgt.backend}, not TensorRT; choose a Jetson target")
    info = _onnx_info(onnx_path)
    onnx_prec = info["precision"]
    precision = precision or onnx_prec or tgt.default_precision
    if precision not in tgt.precisions:
        raise EdgepruneError(f"target {tgt.name} does not support {precision} (it supports {', '.join(tgt.precisions)})")
    if precision == "int8" and onnx_prec not in (None, "int8"):
        raise EdgepruneError(f"int8 engines are built from an int8 (Q/DQ) ONNX; {onnx_path} is {onnx_prec} "
                             f"(export it with --precision int8 --calib-data FILE)")
    if tgt.dla_cores and precision == "fp32":
        pass  # DLA needs fp16/int8: fp32 layers fall back to the GPU
    length = info["length"]
    if not length:
        raise EdgepruneError(f"cannot tell the frame length of {onnx_path}")
    return onnx_path, tgt, precision, info


def trtexec_command(onnx_path, target, out, precision: str | None = None, timing_cache=None,
                    dla_core: int | None = 0, targets_dir=None, trt_version: str | None = None) -> str:
    """The trtexec command line that builds the same engine by hand on the board (no tensorrt needed).

    Flags follow the TensorRT that runs it (``trt_version``, default the target's): the same function
    writes the command a bundle's ``run.py build`` runs (``edgeprune.export.runtime.trtexec``).
    """
    onnx_path, tgt, precision, info = _resolve(onnx_path, target, precision, targets_dir)
    args = trtexec_args(onnx_path, out, tgt.to_dict(), precision, info["length"], trt_version=trt_version,
                        timing_cache=timing_cache, dla_core=dla_core, trtexec="trtexec", layout=info["layout"])
    return command_line(args)


def build_engine(onnx_path, target, out, precision: str | None = None, timing_cache=None,
                 dla_core: int | None = 0, workspace_mib: int | None = None, targets_dir=None) -> dict[str, Any]:
    """Parse ``onnx_path``, build and serialize an engine for ``target`` to ``out``; return its metadata.

    The metadata is also written beside the engine as ``<out>.json``.
    """

    onnx_path, tgt, precision, info = _resolve(onnx_path, target, precision, targets_dir)
    trt = import_tensorrt()
    major = version_tuple(trt.__version__)[0]
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if major >= 11:  # strongly typed only: precision comes from the ONNX types and Q/DQ nodes
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)

    check_model_file(onnx_path)  # external data: only files a bundle manifest beside it lists
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EdgepruneError(f"TensorRT {trt.__version__} could not parse {onnx_path}:\n" + "\n".join(errors))
    config = builder.create_builder_config()
    ws = (workspace_mib if workspace_mib is not None else tgt.workspace_mib) << 20
    if ws:
        if hasattr(config, "set_memory_pool_limit"):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, ws)
        else:  # TensorRT 8.2 (Jetson Nano)
            config.max_workspace_size = ws
    if major < 11:
        if precision in ("fp16", "int8"):
            if not builder.platform_has_fast_fp16 and precision == "fp16":
                raise EdgepruneError(f"this GPU has no fast fp16; build {tgt.name} engines on the board itself")
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # scales come from the Q/DQ nodes
    use_dla = bool(tgt.dla_cores) and precision in ("fp16", "int8") and dla_core is not None
    if use_dla:
        if builder.num_DLA_cores == 0:
            raise EdgepruneError(f"target {tgt.name} uses DLA but this device has no DLA cores "
                                 f"(build on the board, or pass dla_core=None / --no-dla)")
        if not 0 <= dla_core < builder.num_DLA_cores:
            raise EdgepruneError(f"DLA core {dla_core} does not exist (this device has {builder.num_DLA_cores})")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    batches = {"min": tgt.batch_min, "opt": tgt.batch_opt, "max": tgt.batch_max}
    shapes = profile_shapes(batches, info["length"], layout=info["layout"])
    profile = builder.create_optimization_profile()
    profile.set_shape("iq", shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    cache = None
    if timing_cache:
        tc = Path(timing_cache)
        cache = config.create_timing_cache(tc.read_bytes() if tc.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if serialized is None:
        raise EdgepruneError(f"TensorRT {trt.__version__} could not build an engine from {onnx_path} for {tgt.name} "
                             f"({precision}); see the TensorRT log above")
    out = Path(out)
    with atomic_path(out, suffix=".tmp") as tmp:
        with open(tmp, "wb") as fh:
            fh.write(memoryview(serialized))
    if cache is not None:
        with atomic_path(timing_cache, suffix=".tmp") as tmp:
            with open(tmp, "wb") as fh:
                fh.write(memoryview(config.get_timing_cache().serialize()))
    meta = {
        "format": "edgeprune-engine", "edgeprune": __version__,
        "tensorrt_version": str(trt.__version__), "device": _device_name(), "host": platform.node(),
        "target": tgt.name, "precision": precision, "strongly_typed": bool(major >= 11),
        "dla_core": int(dla_core) if use_dla else None,
        "profile": {"input": "iq", **shapes}, "workspace_mib": ws >> 20,
        "source_onnx": str(onnx_path), "source_onnx_sha256": file_sha256(onnx_path),
        "engine_sha256": file_sha256(out), "build_seconds": seconds,
        "classes": info["classes"], "normalization": info["normalization"], "input_length": info["length"],
        "input_layout": info["layout"], "macs": info["macs"], "params": info["params"],
        "timing_cache": str(timing_cache) if timing_cache else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(Path(str(out) + ".json"), meta)
    return meta


def _device_name() -> str | None:
    """The GPU name via cuda-python/pycuda when importable (None otherwise)."""
    try:
        api = cuda_api()
        if api.name == "pycuda":
            return api.cuda.Device(0).name()
        prop = api._ok(api.rt.cudaGetDeviceProperties(0))
        name = prop.name
        return name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 - the name is informative only
        return None
