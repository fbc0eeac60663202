"""``edgeprune predict``, ``edgeprune targets`` and ``edgeprune doctor``: device side, no torch needed."""

from __future__ import annotations

import json
import os
import sys

from ..errors import EdgepruneError
from .args import add_runtime, check_range
from .main import add_json, emit, stdout

ORDER = 65


def register(sub, common):
    p = sub.add_parser("predict", parents=[common], help="classify I/Q frames or a SigMF recording with a bundle",
                       description="Classify frames (.npy of shape (N, 2, L) or (2, L), or complex (N, L)) or a "
                                   "SigMF recording (windowed, streamed) with a bundle, ONNX file or engine; "
                                   "applies the bundle's preprocessing. Needs no torch.")
    p.add_argument("model", help="bundle (folder or .tar.gz), .onnx or .engine")
    p.add_argument("--input", required=True,
                   help="FILE.npy, RECORDING.sigmf-meta, or - (raw interleaved I/Q on stdin, needs --format)")
    p.add_argument("--batch-size", dest="batch", type=int, default=None,
                   help="frames per inference call (default 256; 1 for a stream)")
    p.add_argument("--hop", type=int, default=None,
                   help="window hop in samples for SigMF and streams (default: the frame length)")
    p.add_argument("--format", choices=("cf32", "ci16", "cu8", "ci8"), default=None,
                   help="raw I/Q sample format of --input - or a raw file: cf32 (GNU Radio file sink), ci16, "
                        "cu8 (rtl_sdr), ci8 (hackrf_transfer); prints one JSON line per window")
    p.add_argument("--rate", type=float, default=None, help="sample rate in Hz of a stream (gives each window's time)")
    p.add_argument("--annotate", default=None, metavar="OUT.sigmf-meta",
                   help="with a SigMF input: write the recording (its metadata with one annotation per window, "
                        "and its samples) as this new recording; both files are written whole or not at all")
    p.add_argument("--force", action="store_true", help="let --annotate replace an existing recording")
    p.add_argument("--backend", choices=("auto", "onnxruntime", "tensorrt"), default="auto")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                   help="which bundle variant (default: the bundle's default)")
    add_runtime(p)
    p.add_argument("--providers", default=None,
                   help="ONNX Runtime providers, comma list (each must be present here), or 'auto' (the bundle "
                        "target's providers that are present here); default: the CPU")
    add_json(p)
    p.set_defaults(func=run_predict)

    t = sub.add_parser("targets", parents=[common], help="list device profiles (targets/*.toml)",
                       description="List the device profiles on the search path: --targets-dir, "
                                   "EDGEPRUNE_TARGETS, then the shipped targets/ folder.")
    t.add_argument("--targets-dir", action="append", default=None, metavar="DIR", help="extra folder of .toml files")
    add_json(t)
    t.set_defaults(func=run_targets)

    d = sub.add_parser("doctor", parents=[common], help="report the installed stack and what is usable here",
                       description="Versions of torch, onnx, onnxruntime, onnxsim, TensorRT, pycuda/cuda-python; "
                                   "opsets; Jetson release; GPU; which commands and precisions work here and why not.")
    add_json(d)
    d.set_defaults(func=run_doctor)


def _npy_chunks(path, batch):
    import numpy as np

    from edgeprune.export.runtime.safeio import check_input

    check_input(path, "input", "dataset")  # a regular file (np.load would block on a FIFO)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as exc:
        raise EdgepruneError(f"input {path} does not exist") from exc
    except (ValueError, OSError, EOFError) as exc:
        raise EdgepruneError(f"{path} is not a readable .npy array of numbers: {exc}") from exc
    if np.iscomplexobj(arr):
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2:
            raise EdgepruneError(f"complex input must have shape (N, L), got {arr.shape}")
        for i in range(0, len(arr), batch):
            c = np.asarray(arr[i:i + batch])
            yield i, np.stack([c.real, c.imag], 1).astype(np.float32)
        return
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise EdgepruneError(f"{path}: frames must have shape (N, 2, L) or (2, L), got {arr.shape}")
    for i in range(0, len(arr), batch):
        yield i, np.asarray(arr[i:i + batch])


def _sigmf_chunks(path, length, hop, batch, normalization):
    try:
        from ..data.sigmf_io import iter_sigmf_frames
    except ImportError as exc:
        raise EdgepruneError("reading SigMF recordings needs edgeprune.data.sigmf_io, which this install lacks") from exc
    hop = hop or length
    # the predictor normalises as the bundle says, so the reader passes frames through unchanged
    start = 0
    for chunk in iter_sigmf_frames(path, length, hop=hop, normalize="none", batch=batch):
        for i in range(0, len(chunk), batch):
            part = chunk[i:i + batch]
            yield start, part
            start += len(part)


def run_predict(args):

    from edgeprune.export.predictor import Predictor
    from edgeprune.export.runtime.frames import prediction_rows, table_text

    check_range(args, "batch", "hop", lo=1)
    src = str(args.input)
    sigmf = src.endswith((".sigmf-meta", ".sigmf-data", ".sigmf"))
    if src == "-" or args.format:
        return run_stream(args)
    if args.annotate and not sigmf:
        raise EdgepruneError("--annotate needs a SigMF recording as --input")
    if args.rate is not None:
        raise EdgepruneError("--rate is for raw streams (--format); a SigMF recording carries its own")
    args.batch = args.batch or 256
    plan = None
    if args.annotate:
        from edgeprune.export.sigmf_annotate import check_annotate

        plan = check_annotate(src, args.annotate, args.force)  # before any window is classified
    pred = Predictor(args.model, backend=args.backend, precision=args.precision, threads=args.threads,
                     providers=getattr(args, "providers", None))
    hop = args.hop or pred.length
    chunks = _sigmf_chunks(src, pred.length, hop, args.batch, pred.normalization) if sigmf else _npy_chunks(src, args.batch)
    rows = []
    counts: dict[str, int] = {}
    json_mode = getattr(args, "json", False)
    if not json_mode:
        print(f"# {pred.info()['backend']} {pred.precision} {pred.model_path.name}; "
              f"normalisation {pred.normalization}; {'window offset' if sigmf else 'frame'}  class  confidence", file=stdout())
    with pred:
        for start, frames in chunks:
            for row in prediction_rows(start, pred.predict(frames), hop if sigmf else None):
                counts[row["class"]] = counts.get(row["class"], 0) + 1
                if json_mode or args.annotate:
                    rows.append(row)
                if not json_mode:
                    print(f"{row.get('offset', row['frame'])}\t{table_text(row['class'])}\t{row['confidence']:.4f}", file=stdout())
    if args.annotate:
        from edgeprune.export.sigmf_annotate import write_annotations

        write_annotations(src, args.annotate, rows, pred.length, pred.info(), force=args.force, plan=plan)
    if json_mode:
        emit(args, {"model": pred.info(), "input": src, "windowed": sigmf, "hop": hop if sigmf else None,
                    "annotated": args.annotate, "frames": len(rows), "counts": counts, "predictions": rows})
    else:
        total = sum(counts.values())
        print(f"# {total} frame(s): " + ", ".join(f"{table_text(c)} {n}" for c, n in sorted(counts.items(),
                                                                                  key=lambda kv: -kv[1])),
              file=stdout())
    return 0


def run_stream(args):
    """Raw interleaved I/Q (stdin or a file) -> one JSON line per window on stdout; a summary line on stderr."""
    from edgeprune.export.predictor import Predictor
    from edgeprune.export.runtime.stream import ByteSamples, open_stdin

    if not args.format:
        raise EdgepruneError("--input - reads raw I/Q: give its --format (cf32, ci16, cu8 or ci8)")
    if args.annotate:
        raise EdgepruneError("--annotate needs a SigMF recording as --input, not a raw stream")
    if args.input != "-" and not os.path.isfile(args.input):
        raise EdgepruneError(f"input {args.input} does not exist")
    if args.input == "-":
        open_stdin()  # a closed stdin is one error before the model loads
    pred = Predictor(args.model, backend=args.backend, precision=args.precision, threads=args.threads,
                     providers=getattr(args, "providers", None))
    fh = open_stdin() if args.input == "-" else open(args.input, "rb")
    out = stdout()
    try:
        with pred:
            stream = pred.stream(ByteSamples(fh, args.format), hop=args.hop, batch=args.batch or 1, rate=args.rate)
            for row in stream:
                out.write(json.dumps(row) + "\n")
                out.flush()  # a reader downstream sees each window as it is classified
    finally:
        if args.input != "-":
            fh.close()
    st = stream.stats
    msg = (f"{st['windows']} window(s) of {st['length']} samples (hop {st['hop']}) from {st['samples']} samples; "
           f"partial last window dropped: {st['partial_windows_dropped']} ({st['partial_window_samples']} samples)"
           + (f"; {st['trailing_bytes']} trailing byte(s) not a whole sample" if st["trailing_bytes"] else ""))
    lat = st.get("latency_ms_per_call")
    if lat:
        msg += f"; latency per call (batch {st['batch']}) median {lat['median_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms"
    sys.stderr.write("# " + msg + "\n# " + json.dumps(st) + "\n")
    return 0


def run_targets(args):
    from edgeprune.export.targets import list_targets

    ts = list_targets(args.targets_dir)
    lines = [f"{'target':<14}{'backend':<13}{'precisions':<17}{'opset':>5}  {'TensorRT':<9}{'JetPack':<8}{'Python':<7}"
             f"{'DLA':>3}  {'batch min/opt/max':<18} source"]
    for t in ts:
        lines.append(f"{t.name:<14}{t.backend:<13}{','.join(t.precisions):<17}{t.opset:>5}  {t.tensorrt or '-':<9}"
                     f"{t.jetpack or '-':<8}{t.python or '-':<7}{t.dla_cores:>3}  "
                     f"{f'{t.batch_min}/{t.batch_opt}/{t.batch_max}':<18} {t.source}")
    emit(args, {"targets": [t.to_dict() for t in ts]}, "\n".join(lines))


def run_doctor(args):
    from edgeprune.export.doctor import format_report, report

    r = report()
    emit(args, r, format_report(r))
