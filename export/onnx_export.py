"""Checkpoint -> ONNX: export, simplify, check, verify against PyTorch, fp16/int8 variants.

The exported graph has one input ``iq`` (N, 2, L) float32 with a dynamic batch
axis (or (N, 1, 2, L) / (N, L, 2): the layout the network takes, recorded at
import and written into the metadata) and one output ``logits`` (N, classes),
weights inside the file, node
names that keep the model's layer path (``/layers.3/conv1/Conv``) so per-node
profiles map back to the spec's layers, and edgeprune metadata in
``metadata_props``. torch is imported inside the functions only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune import __version__
from edgeprune.atomic import atomic_path
from edgeprune.checkpoint import Checkpoint, load_checkpoint
from edgeprune.errors import EdgepruneError, require
from edgeprune.importing import as_checkpoint
from edgeprune.models.layout import layout_of, min_batch_of, native
from edgeprune.training.evaluate import eval_data

from .quantize import quantize_int8, to_fp16
from .runtime.frames import check_normalization, layout_shape, normalize, to_layout
from .runtime.manifest import PRECISIONS, decode_metadata
from .targets import load_target
from .verify import INPUT_NAME, OUTPUT_NAME, check_parity, compare_logits, make_session, onnx_accuracy, run_logits

TRACED_BATCH = 2   # the batch torch.onnx.export traces with (a batch size turned into a constant shows as this)

DEFAULT_OPSET = 17
LEGACY_MAX_OPSET = 17  # above this the dynamo exporter is used (TensorRT 8.5 needs <= 17)
DYNAMO_MIN_OPSET = 18  # the dynamo exporter's lowest; a lower asked opset is reached with onnx's version converter
METADATA_PREFIX = "edgeprune."


def _load_ckpt(ckpt, data=None):
    if isinstance(ckpt, Checkpoint):
        return ckpt
    if isinstance(ckpt, (str, os.PathLike)):
        return load_checkpoint(ckpt)
    return as_checkpoint(ckpt, data)   # a live nn.Module: classes and length from the data


# ----------------------------------------------------------------- export

class ExportWriteError(EdgepruneError):
    """The exporter could not write its graph (a full disk, a file-size limit): an I/O failure, not something the
    other exporter could get round, so :func:`convert` does not try it."""


def torch_to_onnx(model, length: int, path: str | Path, opset: int = DEFAULT_OPSET, exporter: str = "auto"):
    """Run torch.onnx.export (legacy TorchScript for opset <= 17, dynamo above) and return the onnx.ModelProto.

    The graph takes the network's own input layout (its layout hook, :mod:`edgeprune.models.layout`, is taken
    off while it is traced). A network that needs ``min_batch`` > 1 frames is traced on that many (at least
    TRACED_BATCH) without its padding, with the axes of each axis-less ``squeeze()`` fixed to those it squeezes
    there (:func:`squeeze_axes_fixed`), so the graph keeps its batch axis at batch 1."""
    min_batch = min_batch_of(model)
    with native(model.eval()) as layout, squeeze_axes_fixed(min_batch > 1):
        return _torch_to_onnx(model, length, path, opset, exporter, layout, max(TRACED_BATCH, min_batch))


@contextmanager
def squeeze_axes_fixed(active: bool = True):
    """While active, ``torch.squeeze(x)`` / ``x.squeeze()`` without an axis squeeze the axes that are 1 at that
    call (given explicitly). Traced on a batch of 2 or more frames, that is what the forward computes at every
    batch of 2 or more; at batch 1 it keeps the batch axis, which the axis-less squeeze drops. The graph's logits
    at batch 1 are checked against the network's on a padded batch."""
    if not active:
        yield
        return
    import torch
    from torch.overrides import TorchFunctionMode

    class _FixedSqueeze(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in (torch.squeeze, torch.Tensor.squeeze) and len(args) == 1 and not kwargs \
                    and isinstance(args[0], torch.Tensor):
                axes = tuple(i for i, n in enumerate(args[0].shape) if n == 1)
                return func(args[0], axes) if axes else args[0]
            return func(*args, **kwargs)

    with _FixedSqueeze():
        yield


def _torch_to_onnx(model, length, path, opset, exporter, layout, batch=TRACED_BATCH):
    import torch

    onnx = require("onnx", "ONNX export")
    if exporter == "auto":
        exporter = "legacy" if opset <= LEGACY_MAX_OPSET else "dynamo"
    x = torch.zeros(layout_shape(layout, batch, length), dtype=torch.float32)
    if exporter == "dynamo":
        opset = max(opset, DYNAMO_MIN_OPSET)
    with warnings.catch_warnings(), _native_output_silenced():
        warnings.simplefilter("ignore")
        try:
            if exporter == "legacy":
                torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                                  do_constant_folding=True)
            elif exporter == "dynamo":
                require("onnxscript", "the dynamo ONNX exporter (opset >= 18)")

                logging.getLogger("torch.onnx").setLevel(logging.ERROR)
                torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=opset,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                                  external_data=False, verbose=False)
            else:
                raise EdgepruneError(f"unknown exporter {exporter!r}; choose auto, legacy or dynamo")
        except EdgepruneError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch raises many types here
            if isinstance(exc, OSError) and exc.errno is not None:   # torch writes the graph itself: EFBIG, ENOSPC
                raise ExportWriteError(f"cannot write the exported graph to {path}: {exc.strerror or exc}") from exc
            first = _export_failure_line(exc)   # an OSError without errno is not I/O (inspect: no source code)
            raise EdgepruneError(f"torch.onnx.export ({exporter}, opset {opset}) failed: {first}") from exc
    m = onnx.load(str(path))
    if exporter == "dynamo":
        name_nodes_by_scope(m)
    return m, exporter


def _export_failure_line(exc: BaseException) -> str:
    """The cause of a failed torch.onnx.export in one line: the first line of the legacy exporter's message; the
    dynamo exporter's message opens with generic advice, its cause is the first ``<class ...>: ...`` line of its
    exception summary (cut at the end of its first sentence)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    m = re.search(r"^<class '(?:[\w.]*\.)?(\w+)'>: (.+)$", text, re.M)
    if m is None:
        return text.splitlines()[0]
    cause = re.split(r"(?<=[a-z0-9)'])\. ", m.group(2).strip(), maxsplit=1)[0].rstrip(".")
    where = re.search(r"model attribute: ([\w.]+)", text)   # torch.export names the module it could not trace
    return f"{m.group(1)}: {cause[:300]}" + (f" (at {where.group(1).rstrip('.')})" if where else "")


@contextmanager
def _native_output_silenced():
    """File descriptors 1 and 2 to /dev/null: the TorchScript exporter's C++ side prints the whole Torch IR graph
    when it fails (its failure is raised as an exception, which says what went wrong in one line)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:   # no such descriptors (a daemon): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def name_nodes_by_scope(model) -> None:
    """Give dynamo-exported nodes legacy-style names (``/layers.3/conv1/Conv``) from their module scope.

    The dynamo exporter names nodes ``node_Conv_12`` and keeps the module path
    in the node metadata ``pkg.torch.onnx.name_scopes``, which onnxsim drops;
    the name survives simplification.
    """
    used: set[str] = set()
    for node in model.graph.node:
        scopes = None
        for p in node.metadata_props:
            if p.key == "pkg.torch.onnx.name_scopes":
                try:
                    scopes = json.loads(p.value.replace("'", '"'))
                except json.JSONDecodeError:
                    scopes = None
        module_path = ""
        if scopes:
            mods = [s for s in scopes[:-1] if s]  # the last entry is the op itself
            module_path = mods[-1] if mods else ""
        parts = re.sub(r"\.(\d+)(?=\.|$)", r"#\1", module_path).split(".") if module_path else []
        prefix = "/" + "/".join(p.replace("#", ".") for p in parts) + "/" if parts else "/"
        base = f"{prefix}{node.op_type}"
        name, k = base, 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        node.name = name


def simplify(model):
    """onnxsim.simplify with a clear error when it fails."""
    onnxsim = require("onnxsim", "ONNX simplification", "pip install onnxsim")
    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception as exc:  # noqa: BLE001
        raise EdgepruneError(f"onnxsim could not simplify the model: {str(exc).strip().splitlines()[0]}") from exc
    if not ok:
        raise EdgepruneError("onnxsim could not validate the simplified model")
    return simplified


def layer_named_fraction(model) -> float:
    """Share of Conv/Gemm/MatMul nodes whose name carries ``layers.<i>`` (what the profiler maps by)."""
    weighted = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    if not weighted:
        return 0.0
    return sum(1 for n in weighted if re.search(r"layers\.\d+", n.name)) / len(weighted)


def opset_of(model) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def set_metadata(model, values: dict[str, Any]) -> None:
    """Write ``values`` into metadata_props (strings; lists/dicts as JSON), replacing existing keys."""
    keep = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    for k, v in values.items():
        if v is None:
            continue
        model.metadata_props.add(key=k, value=v if isinstance(v, str) else json.dumps(v))


def read_metadata(path_or_model) -> dict[str, Any]:
    """The metadata_props of an ONNX file (torch-free; JSON values decoded)."""
    onnx = require("onnx", "reading ONNX metadata")
    m = path_or_model if not isinstance(path_or_model, (str, Path)) else onnx.load(str(path_or_model), load_external_data=False)

    where = f"{path_or_model} (its metadata)" if isinstance(path_or_model, (str, Path)) else "the ONNX metadata"
    return decode_metadata({p.key: p.value for p in m.metadata_props}, where)


# ------------------------------------------------------------------ frames

def dataset_splits(ckpt, data_path) -> tuple[Any, Any, dict[str, Any]]:
    """(train, test) SignalDatasets of ``data_path`` split as the checkpoint was trained, and a description.

    The split (fractions + seed, and the SNR filter on the training file) is
    the one recorded in the checkpoint (``edgeprune.training.evaluate``), else
    the default 6:2:2 with seed 0. Frames are normalised as the checkpoint
    expects unless the dataset says they already are.
    """
    test, info = eval_data(ckpt, data_path, split="test")
    train, _ = eval_data(ckpt, data_path, split="train")
    norm = check_normalization(ckpt.meta.get("normalization", "none"))
    data_norm = str(test.meta.get("normalization", "none") or "none").lower()
    if norm != data_norm:
        train.x = normalize(train.x, norm)
        test.x = normalize(test.x, norm)
    info = {"data": str(data_path), "split": "test", "fractions": info.get("fractions"),
            "split_seed": info.get("split_seed"), "same_as_training": info.get("same_as_training"),
            "test_frames": len(test), "normalization": norm, "normalized_here": norm != data_norm}
    return train, test, info


def calibration_frames(train, n: int, seed: int = 0) -> np.ndarray:
    """``n`` frames drawn (seeded, stratified by random order) from the training split."""
    if len(train) == 0:
        raise EdgepruneError("the calibration data has no training frames")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(train))[:max(1, int(n))])
    return np.ascontiguousarray(train.x[idx])


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------- steps

@dataclass
class ExportOptions:
    """Export settings from :func:`resolve_export_options`: the arguments, else the target's, else edgeprune's."""

    out: Path
    precision: str                # fp32, fp16 or int8
    opset: int
    exporter: str                 # legacy or dynamo ("auto" resolved by the opset)
    target: Any = None            # an edgeprune.export.targets.Target, or None
    calib_data: Any = None
    verify_data: Any = None
    calib_frames: int = 512
    verify_frames: int = 256
    calib_method: str = "minmax"
    seed: int = 0
    simplify: bool = True         # onnxsim (the unsimplified graph is used when the simplified one fails parity)


@dataclass
class VerifyFrames:
    """Frames for the parity check (``x``, described by ``source``) and, with data, the splits for accuracy and int8."""

    x: np.ndarray
    source: str
    train: Any = None
    test: Any = None
    info: dict[str, Any] = field(default_factory=dict)


def resolve_export_options(out, opset: int | None = None, precision: str | None = None, target=None,
                           exporter: str | None = None, calib_data=None, verify_data=None, calib_frames: int = 512,
                           verify_frames: int = 256, calib_method: str = "minmax", seed: int = 0,
                           targets_dir=None, simplify: bool = True) -> ExportOptions:
    """Fill the unset options from the target (else fp32, opset 17, by-opset exporter) and check they fit together."""
    tgt = load_target(target, targets_dir) if target is not None else None
    if precision is None:
        precision = tgt.default_precision if tgt else "fp32"
    if precision not in PRECISIONS:
        raise EdgepruneError(f"unknown precision {precision!r}; choose fp32, fp16 or int8")
    if tgt is not None and precision not in tgt.precisions:
        raise EdgepruneError(f"target {tgt.name} does not support {precision} (it supports {', '.join(tgt.precisions)})")
    if opset is None:
        opset = tgt.opset if tgt else DEFAULT_OPSET
    if not isinstance(opset, int) or not 11 <= opset <= 23:
        raise EdgepruneError(f"opset must be an integer in 11..23, got {opset!r}")
    if tgt is not None and opset > tgt.opset:
        raise EdgepruneError(f"target {tgt.name} (TensorRT {tgt.tensorrt or '-'}) takes ONNX opset <= {tgt.opset}, "
                             f"not {opset}")
    if exporter is None:
        exporter = tgt.exporter if tgt else "auto"
    if exporter == "auto":
        exporter = "legacy" if opset <= LEGACY_MAX_OPSET else "dynamo"
    if exporter == "legacy" and opset > 20:
        raise EdgepruneError(f"the legacy exporter cannot emit opset {opset}; use the dynamo exporter")
    if precision == "int8" and calib_data is None and verify_data is None:
        raise EdgepruneError("int8 export needs frames to calibrate on: give --calib-data FILE (or --data FILE)")
    out = Path(out)
    if out.suffix != ".onnx":
        raise EdgepruneError(f"the output file must end in .onnx, got {out}")
    return ExportOptions(out, precision, opset, exporter, tgt, calib_data, verify_data, calib_frames, verify_frames,
                         calib_method, seed, bool(simplify))


def convert(model, length: int, opts: ExportOptions, frames: "VerifyFrames"):
    """The fp32 ONNX model: torch export, conversion to the asked opset when the exporter emitted another, onnxsim
    (unless ``opts.simplify`` is off), each candidate checked against torch at batch 1 and a larger batch.

    Returns (model, the opset it has, the exporter used, notes, the fewest frames the graph runs on): when the
    simplified graph fails the check the unsimplified one is used, with a note. A network that needs a few frames
    (its ``min_batch``) is checked against its padded logits; a graph that fails at batch 1 but passes from
    ``min_batch`` frames on is used with that ``min_batch`` (the runtime pads), with a note. When the legacy (TorchScript) exporter fails or its graph fails the
    check, torch's dynamo exporter is tried (it needs onnxscript) and, when its graph passes, used, with a note;
    not when the graph could not be written (:class:`ExportWriteError`: a full disk is not the exporter's limit).
    When nothing passes, one EdgepruneError says why.
    """
    try:
        return _convert_with(model, length, opts, frames, opts.exporter)
    except ExportWriteError:
        raise
    except EdgepruneError as exc:
        if opts.exporter != "legacy":
            raise
        legacy_problem = str(exc)
    try:
        require("onnxscript", "the dynamo ONNX exporter")
    except EdgepruneError:
        raise EdgepruneError(f"{legacy_problem}; the dynamo exporter, which may export it, was not tried: it needs "
                             f"onnxscript (pip install onnxscript)") from None
    try:
        fp32, opset, exporter, notes, graph_batch = _convert_with(model, length, opts, frames, "dynamo")
    except EdgepruneError as exc:
        raise EdgepruneError(f"{legacy_problem}; the dynamo exporter failed too: {exc}") from exc
    notes.insert(0, f"the legacy exporter failed ({legacy_problem}); the dynamo exporter's graph (opset {opset}) is "
                    f"used: it gives torch's logits at batch 1 and a larger batch")
    return fp32, opset, exporter, notes, graph_batch


def _convert_with(model, length: int, opts: ExportOptions, frames: "VerifyFrames", exporter: str):
    """:func:`convert` with one exporter."""
    with tempfile.TemporaryDirectory(prefix="edgeprune-export-") as tmp:
        raw, exporter = torch_to_onnx(model, length, Path(tmp) / "raw.onnx", opts.opset, exporter)
    actual_opset = opset_of(raw)
    if actual_opset != opts.opset:
        try:
            from onnx import version_converter

            raw = _drop_opset18_reduce_attribute(version_converter.convert_version(raw, opts.opset))
            actual_opset = opset_of(raw)
        except Exception:  # noqa: BLE001 - keep what the exporter emitted and say so
            pass
    tgt = opts.target
    if tgt is not None and actual_opset > tgt.opset:
        raise EdgepruneError(f"the {exporter} exporter emitted opset {actual_opset}, above what target {tgt.name} takes "
                             f"({tgt.opset})")

    layout, notes, problem = layout_of(model), [], None
    if min_batch_of(model) > 1:
        notes.append(f"the model runs on {min_batch_of(model)} frames or more, not on one: it was traced on "
                     f"{max(TRACED_BATCH, min_batch_of(model))} with the axes of any axis-less squeeze() fixed, and "
                     f"the graph is checked against its logits on padded batches")
    if opts.simplify:
        try:
            simplified = simplify(raw)
            problem, batch = graph_fit(simplified, model, frames.x, layout)
            if problem is None:
                return simplified, actual_opset, exporter, notes + _padding_note(batch), batch
        except EdgepruneError as exc:
            problem = str(exc)
    raw_problem, batch = graph_fit(raw, model, frames.x, layout)
    if raw_problem is not None:
        raise EdgepruneError(diagnose(raw, raw_problem, model, frames.x, layout) if exporter == "legacy"
                             else f"the {exporter} exporter's graph does not match torch: {raw_problem}")
    if problem is not None:
        notes.append(f"the onnxsim-simplified graph was not used ({problem}); the unsimplified graph is")
    return raw, actual_opset, exporter, notes + _padding_note(batch), batch


def graph_fit(graph, model, x: np.ndarray, layout: str) -> tuple[str | None, int]:
    """(None, 1) when ``graph`` gives torch's logits at batch 1 and a larger batch; for a network that needs
    ``min_batch`` frames, (None, min_batch) when it fails at batch 1 but passes on ``min_batch`` frames and a larger
    batch (the runtime then pads); else (what goes wrong at batch 1 and the larger batch, 1)."""
    problem = graph_problem(graph, model, x, layout)
    need = min_batch_of(model)
    if problem is None or need == 1:
        return problem, 1
    fewest = np.resize(x, (need,) + tuple(x.shape[1:]))
    if graph_problem(graph, model, x, layout, batches=[fewest, parity_batches(x)[1]]) is None:
        return None, need
    return problem, 1


def _padding_note(batch: int) -> list[str]:
    return [f"the graph does not run on one frame but on {batch} or more: the metadata records input.min_batch "
            f"{batch}, and run.py and Predictor pad smaller batches"] if batch > 1 else []


def _drop_opset18_reduce_attribute(model):
    """onnx's version converter, going below opset 18, turns a Reduce op's ``axes`` input into an attribute but keeps
    ``noop_with_empty_axes``, which those ops gained only at 18 (ReduceSum at 13): ONNX Runtime then refuses the
    graph. The attribute only matters when ``axes`` is empty, so it is dropped where the axes are given or it is
    0 (its default); any other node is left for the parity check to judge."""
    if opset_of(model) >= 18:
        return model
    for node in model.graph.node:
        if not node.op_type.startswith("Reduce") or (node.op_type == "ReduceSum" and opset_of(model) >= 13):
            continue
        axes = any(a.name == "axes" and len(a.ints) for a in node.attribute)
        keep = [a for a in node.attribute if not (a.name == "noop_with_empty_axes" and (axes or a.i == 0))]
        if len(keep) != len(node.attribute):
            del node.attribute[:]
            node.attribute.extend(keep)
    return model


def parity_batches(x: np.ndarray) -> list[np.ndarray]:
    """The frames of the two parity checks: batch 1, and a larger batch that is not the traced one."""
    many = x if len(x) > TRACED_BATCH else np.concatenate([x] * (TRACED_BATCH + 1))[:TRACED_BATCH + 1]
    return [x[:1], many]


def graph_problem(graph, model, x: np.ndarray, layout: str = "NCL", batches=None) -> str | None:
    """None when ``graph`` (fp32) gives torch's logits at batch 1 and a larger batch, else what goes wrong."""
    from edgeprune.training.trainer import predict_logits

    session = make_session(graph.SerializeToString(), threads=None)
    for xb in batches or parity_batches(x):
        try:
            got = run_logits(session, xb, batch_size=len(xb), layout=layout)
            check_parity(compare_logits(predict_logits(model, xb), got), "fp32", f"at batch {len(xb)} it")
        except EdgepruneError as exc:
            return str(exc)
    return None


def batch_constant_nodes(graph, batch: int = TRACED_BATCH) -> list[str]:
    """Nodes whose shape input is a constant starting with the traced batch (``'/Reshape' (Reshape)``)."""
    from onnx import numpy_helper

    consts = {t.name: t for t in graph.graph.initializer}
    for node in graph.graph.node:
        if node.op_type == "Constant":
            for at in node.attribute:
                if at.name == "value":
                    consts[node.output[0]] = at.t
    shape_input = {"Reshape": 1, "Expand": 1, "Tile": 1, "ConstantOfShape": 0}
    out = []
    for node in graph.graph.node:
        k = shape_input.get(node.op_type)
        if node.op_type == "Concat" and next((a.i for a in node.attribute if a.name == "axis"), 0) not in (0, -99):
            # a constant tensor of the traced batch joined to the data along another axis (zero padding)
            if any(i in consts and len(consts[i].dims) > 1 and consts[i].dims[0] == batch for i in node.input):
                out.append(f"'{node.name}' (Concat)")
            continue
        if k is None or len(node.input) <= k or node.input[k] not in consts:
            continue
        value = numpy_helper.to_array(consts[node.input[k]]).reshape(-1)
        if value.size and int(value[0]) == batch:
            out.append(f"'{node.name}' ({node.op_type})")
    return out


def diagnose(raw, problem: str, model, x: np.ndarray, layout: str) -> str:
    """One line on why the exported graph fails: a batch size traced as a constant, or a plain mismatch."""
    traced = np.concatenate([x] * TRACED_BATCH)[:TRACED_BATCH]
    at_traced = graph_problem(raw, model, x, layout, batches=[traced])
    # at batch 1 the graph still returns the traced batch of logits: a batch size became a constant
    fixed = re.search(rf"vs \({TRACED_BATCH}, ", problem) is not None
    if at_traced is None or fixed:
        ops = batch_constant_nodes(raw)
        where = f"; the constant batch {TRACED_BATCH} is in {', '.join(ops[:3])}" if ops else ""
        also = (f"; even at batch {TRACED_BATCH} it differs from torch, so a value is also taken out of the graph "
                f"(.data, .item(), .numpy()) and recorded as the traced one: {at_traced}") if at_traced else ""
        return (f"the exported ONNX graph works only at batch {TRACED_BATCH}, the batch torch.onnx traced it with "
                f"({problem}{where}{also}): the model's forward turns a batch size (x.size(0), x.shape[0]) into a "
                f"Python number, which the export records as a constant; build such tensors from x itself "
                f"(x.new_zeros, torch.zeros_like, expand_as) or use -1 in reshape/view")
    return f"the exported ONNX graph does not match torch: {problem}"


def verification_frames(ckpt, opts: ExportOptions, norm: str) -> VerifyFrames:
    """The test split of ``verify_data`` (split as the checkpoint records), else seeded random frames, normalised."""
    if opts.verify_data is not None:
        train, test, info = dataset_splits(ckpt, opts.verify_data)
        if len(test) == 0:
            raise EdgepruneError(f"the test split of {opts.verify_data} is empty (too few frames)")
        return VerifyFrames(test.x[:opts.verify_frames], f"test split of {opts.verify_data}", train, test, info)
    rng = np.random.default_rng(opts.seed)
    x = normalize(rng.standard_normal((max(3, min(opts.verify_frames, 64)), 2, ckpt.length)).astype(np.float32), norm)
    return VerifyFrames(x, f"random normal frames (seed {opts.seed}, normalised '{norm}')")


def to_precision(fp32, ckpt, opts: ExportOptions, frames: VerifyFrames, model=None):
    """The model at ``opts.precision``: fp32 as is, fp16 converted, int8 calibrated on training-split frames.

    Returns (model, calibration record or None).
    """
    if opts.precision == "fp32":
        return fp32, None
    if opts.precision == "fp16":
        return to_fp16(fp32), None

    ctrain = frames.train
    if opts.calib_data is not None and str(opts.calib_data) != str(opts.verify_data):
        ctrain, _, _ = dataset_splits(ckpt, opts.calib_data)
    cx = calibration_frames(ctrain, opts.calib_frames, opts.seed)

    variant = quantize_int8(fp32, to_layout(cx, layout_of(model)), per_channel=True, method=opts.calib_method)
    return variant, {"data": str(opts.calib_data or opts.verify_data), "frames": int(len(cx)),
                     "method": opts.calib_method, "split": "train"}


def verify(model, variant, precision: str, frames: VerifyFrames,
           min_batch: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """onnx.checker, then parity of ONNX Runtime with PyTorch on ``frames``, and both accuracies on the test split
    (batches smaller than the graph's ``min_batch`` padded).

    Returns (parity report, accuracy record; empty without data). Parity out
    of tolerance for ``precision`` raises.
    """
    onnx = require("onnx", "ONNX export")
    from edgeprune.training.trainer import accuracy as torch_accuracy
    from edgeprune.training.trainer import predict_logits

    try:
        onnx.checker.check_model(variant, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise EdgepruneError(f"onnx.checker rejected the exported model: {str(exc).strip().splitlines()[0]}") from exc
    session = make_session(variant.SerializeToString(), threads=None)
    layout = layout_of(model)
    ref = predict_logits(model, frames.x)
    got = run_logits(session, frames.x, layout=layout, min_batch=min_batch)
    parity = check_parity(compare_logits(ref, got), precision, "the exported ONNX model")
    parity["frames_source"] = frames.source
    acc: dict[str, Any] = {}
    if frames.test is not None:
        test = frames.test
        acc = {"onnxruntime": onnx_accuracy(session, test.x, test.y, layout=layout, min_batch=min_batch),
               "torch": torch_accuracy(model, test),
               "frames": len(test), **frames.info}
    return parity, acc


def onnx_metadata(ckpt, opts: ExportOptions, norm: str, opset: int, exporter: str, acc: dict[str, Any],
                  source_sha256: str | None, layout: str | None = None, min_batch: int = 1) -> dict[str, Any]:
    """The ``edgeprune.*`` metadata_props of the exported file (what a bundle and the profiler read back)."""
    from edgeprune.models.macs import MAC_DEFINITION

    tgt = opts.target
    return {
        METADATA_PREFIX + "version": __version__,
        METADATA_PREFIX + "model": ckpt.spec.get("name"),
        METADATA_PREFIX + "classes": ckpt.classes,
        METADATA_PREFIX + "input": {"name": INPUT_NAME, "layout": layout or "NCL", "channels": 2,
                                    "length": ckpt.length, "dtype": "float32",
                                    **({"min_batch": int(min_batch)} if min_batch > 1 else {})},
        METADATA_PREFIX + "normalization": norm,
        METADATA_PREFIX + "macs": int(ckpt.meta.get("macs") or 0),
        METADATA_PREFIX + "params": int(ckpt.meta.get("params") or 0),
        METADATA_PREFIX + "mac_definition": MAC_DEFINITION,
        METADATA_PREFIX + "precision": opts.precision,
        METADATA_PREFIX + "opset": opset,
        METADATA_PREFIX + "exporter": exporter,
        METADATA_PREFIX + "target": tgt.name if tgt else None,
        METADATA_PREFIX + "source_sha256": source_sha256,
        METADATA_PREFIX + "accuracy": acc.get("onnxruntime"),
        METADATA_PREFIX + "accuracy_data": {k: acc[k] for k in ("data", "split", "fractions", "split_seed", "frames")} if acc else None,
    }


def write_onnx(variant, metadata: dict[str, Any], out: Path) -> bytes:
    """Stamp ``metadata`` and the producer into ``variant`` and write it atomically to ``out``; the bytes written."""
    set_metadata(variant, metadata)
    variant.producer_name = "edgeprune"
    variant.producer_version = __version__
    data = variant.SerializeToString()
    if len(data) >= 2 ** 31 - 1:
        raise EdgepruneError("the model is larger than 2 GB, which ONNX cannot hold in one file")
    with atomic_path(out, suffix=".onnx") as tmp_out:
        tmp_out.write_bytes(data)
    return data


# ------------------------------------------------------------------- main

def export_checkpoint(ckpt, out, opset: int | None = None, precision: str | None = None, target=None,
                      calib_data=None, verify_data=None, calib_frames: int = 512, verify_frames: int = 256,
                      exporter: str | None = None, calib_method: str = "minmax", seed: int = 0,
                      targets_dir=None, simplify: bool = True) -> dict[str, Any]:
    """Export a checkpoint to ONNX at ``out`` and return a report (dict).

    ``precision`` fp32/fp16/int8 (default: the target's default, else fp32);
    ``opset``/``exporter`` default from the target (else 17, legacy);
    ``calib_data`` a dataset file whose training split calibrates int8
    (defaults to ``verify_data``); ``verify_data`` a dataset file whose test
    split (as recorded in the checkpoint) gives the parity frames and the
    accuracy written into the metadata. Without data the parity check runs
    on seeded random frames and no accuracy is recorded. The fp32 graph is
    checked against torch at batch 1 and a larger batch; ``simplify=False``
    skips onnxsim (it is also skipped, with a note, when its graph fails).

    The steps: :func:`resolve_export_options`, :func:`convert`,
    :func:`verification_frames`, :func:`to_precision`, :func:`verify`,
    :func:`onnx_metadata` and :func:`write_onnx`.
    """
    require("torch", "exporting a checkpoint (edgeprune export)", "pip install torch")
    require("onnx", "ONNX export")

    ckpt = _load_ckpt(ckpt, verify_data or calib_data)
    opts = resolve_export_options(out, opset, precision, target, exporter, calib_data, verify_data, calib_frames,
                                  verify_frames, calib_method, seed, targets_dir, simplify)
    norm = check_normalization(ckpt.meta.get("normalization", "none"))
    model = ckpt.build()
    frames = verification_frames(ckpt, opts, norm)
    fp32, actual_opset, exporter, notes, graph_batch = convert(model, ckpt.length, opts, frames)
    names_fraction = layer_named_fraction(fp32)
    variant, calibration = to_precision(fp32, ckpt, opts, frames, model)
    parity, acc = verify(model, variant, opts.precision, frames, graph_batch)
    src_sha = ckpt.sha256()
    layout = layout_of(model)
    data = write_onnx(variant, onnx_metadata(ckpt, opts, norm, actual_opset, exporter, acc, src_sha, layout,
                                             graph_batch), opts.out)
    return {
        "path": str(opts.out),
        "sha256": _sha256_bytes(data),
        "size": len(data),
        "model": ckpt.spec.get("name"),
        "source": str(ckpt.path) if ckpt.path else None,
        "source_sha256": src_sha,
        "precision": opts.precision,
        "opset": actual_opset,
        "exporter": exporter,
        "target": opts.target.name if opts.target else None,
        "input": {"name": INPUT_NAME, "shape": layout_shape(layout, "batch", ckpt.length), "layout": layout,
                  "dtype": "float32", **({"min_batch": graph_batch} if graph_batch > 1 else {})},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(ckpt.classes)]},
        "classes": ckpt.classes,
        "normalization": norm,
        "macs": int(ckpt.meta.get("macs") or 0),
        "params": int(ckpt.meta.get("params") or 0),
        "nodes": len(variant.graph.node),
        "layer_named_nodes": names_fraction,
        "parity": parity,
        "accuracy": acc or None,
        "calibration": calibration,
        "simplified": opts.simplify and not notes,
        "notes": notes,
    }
