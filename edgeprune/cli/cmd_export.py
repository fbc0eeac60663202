"""``edgeprune export``, ``edgeprune build`` and ``edgeprune bundle`` (host side; build needs TensorRT)."""

from __future__ import annotations

import sys

from .args import add_data, add_model, add_out, add_runtime, check_range, comma_list
from .main import add_code, add_json, add_seed, emit

ORDER = 60


def _targets_dir(p):
    p.add_argument("--targets-dir", action="append", default=None, metavar="DIR",
                   help="extra folder of target .toml files (also EDGEPRUNE_TARGETS)")


def _no_simplify(p):
    p.add_argument("--no-simplify", dest="simplify", action="store_false",
                   help="keep torch's graph as exported (no onnxsim); the simplified graph is also left out, with a "
                        "note, when it does not match PyTorch at batch 1 and a larger batch")


def register(sub, common):
    p = sub.add_parser("export", parents=[common], help="export a checkpoint to ONNX (fp32/fp16/int8), verified",
                       description="Export a checkpoint to ONNX: input 'iq' (N, 2, L) (or the layout the model "
                                   "was imported with), output 'logits', dynamic batch, simplified, checked, and "
                                   "verified against PyTorch in ONNX Runtime at batch 1 and a larger batch.")
    add_model(p)
    add_out(p, help="output .onnx file")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the target's, else 17)")
    p.add_argument("--target", default=None, help="device profile (see `edgeprune targets`)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                   help="fp32, fp16 (float32 I/O) or int8 Q/DQ (default: the target's, else fp32)")
    p.add_argument("--exporter", choices=("auto", "legacy", "dynamo"), default=None,
                   help="torch exporter (default auto: legacy for opset <= 17, dynamo above)")
    p.add_argument("--calib-data", default=None, help="dataset whose training split calibrates int8")
    p.add_argument("--calib-frames", type=int, default=512, help="calibration frames (default 512)")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="minmax")
    add_data(p, help="dataset for the parity frames and test-split accuracy", required=False)
    p.add_argument("--verify-frames", type=int, default=256, help="frames for the PyTorch parity check")
    _no_simplify(p)
    _targets_dir(p)
    add_seed(p)
    add_runtime(p)
    add_json(p)
    add_code(p)
    p.set_defaults(func=run_export, torch_threads=True)

    b = sub.add_parser("build", parents=[common], help="build a TensorRT engine from ONNX for a target",
                       description="Build and serialize a TensorRT engine (8.5 to 11) with the target's batch "
                                   "profile, precision, DLA and workspace; writes <out>.json beside it.")
    b.add_argument("--onnx", required=True, help="input .onnx file (from edgeprune export)")
    b.add_argument("--target", required=True, help="a TensorRT target (see `edgeprune targets`)")
    add_out(b, help="output engine file (.engine)")
    b.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                   help="default: the ONNX file's precision, else the target's")
    b.add_argument("--timing-cache", default=None, help="timing cache file (read if present, updated)")
    b.add_argument("--dla-core", type=int, default=0, help="DLA core on targets with DLA (default 0)")
    b.add_argument("--no-dla", action="store_true", help="build for the GPU even where the target has DLA")
    b.add_argument("--workspace-mib", type=int, default=None, help="workspace limit (default: the target's)")
    b.add_argument("--print-trtexec", action="store_true",
                   help="print the equivalent trtexec command line and exit (needs no TensorRT)")
    _targets_dir(b)
    add_json(b)
    b.set_defaults(func=run_build)

    u = sub.add_parser("bundle", parents=[common], help="pack ONNX variants (+ engine) and a manifest for a target",
                       description="Export the checkpoint's variants for the target's precisions and write a bundle "
                                   "folder or .tar.gz with manifest.json (sha256 of every file).")
    add_model(u)
    u.add_argument("--target", required=True, help="device profile")
    add_out(u, help="bundle folder or FILE.tar.gz")
    u.add_argument("--precision", default=None,
                   help="comma-separated precisions (default: the target's; int8 needs --data or --calib-data)")
    u.add_argument("--engine", default=None, help="a TensorRT engine to include (its .json is taken along)")
    add_data(u, help="dataset for accuracy (test split) and int8 calibration", required=False)
    u.add_argument("--calib-data", default=None, help="dataset for int8 calibration (default: --data)")
    u.add_argument("--calib-frames", type=int, default=512)
    u.add_argument("--force", action="store_true", help="replace an existing bundle")
    _no_simplify(u)
    _targets_dir(u)
    add_seed(u)
    add_runtime(u)
    add_json(u)
    add_code(u)
    u.set_defaults(func=run_bundle, torch_threads=True)


def run_export(args):
    from edgeprune.export.onnx_export import export_checkpoint


    check_range(args, "calib_frames", "verify_frames", lo=1)
    r = export_checkpoint(args.model, args.out, opset=args.opset, precision=args.precision, target=args.target,
                          calib_data=args.calib_data, verify_data=args.data, calib_frames=args.calib_frames,
                          verify_frames=args.verify_frames, exporter=args.exporter, calib_method=args.calib_method,
                          seed=args.seed, targets_dir=args.targets_dir, simplify=args.simplify)
    par = r["parity"]
    lines = [
        f"wrote {r['path']} ({r['size']:,} bytes, sha256 {r['sha256'][:16]}...)",
        f"model {r['model']}, {r['precision']}, opset {r['opset']} ({r['exporter']} exporter)"
        + (f", target {r['target']}" if r["target"] else ""),
        f"input iq ({', '.join(str(v) for v in r['input']['shape'])}) float32 -> logits (batch, {len(r['classes'])}); "
        f"normalisation {r['normalization']}",
        f"MACs {r['macs']:,}  params {r['params']:,}  nodes {r['nodes']} "
        f"({r['layer_named_nodes']:.0%} of Conv/Gemm nodes carry their layers.<i> name)",
        f"parity vs PyTorch on {par['frames']} frames ({par['frames_source']}): max |diff| {par['max_abs_diff']:.3g}, "
        f"argmax agreement {par['argmax_agreement']:.4f}"
        + (f" (tolerance {par['tolerance']:.3g})" if par.get("tolerance") is not None else ""),
    ]
    if r["accuracy"]:
        a = r["accuracy"]
        lines.append(f"accuracy on the test split ({a['frames']} frames): onnxruntime {a['onnxruntime']:.4f}, "
                     f"torch fp32 {a['torch']:.4f}")
    emit(args, r, "\n".join(lines))
    for note in r.get("notes") or []:
        print(f"edgeprune: note: {note}", file=sys.stderr)


def run_build(args):
    from edgeprune.export.tensorrt_build import build_engine, trtexec_command

    dla = None if args.no_dla else args.dla_core
    if args.print_trtexec:
        cmd = trtexec_command(args.onnx, args.target, args.out, args.precision, args.timing_cache, dla,
                              args.targets_dir)
        emit(args, {"trtexec": cmd}, cmd)
        return 0
    meta = build_engine(args.onnx, args.target, args.out, args.precision, args.timing_cache, dla,
                        args.workspace_mib, args.targets_dir)
    text = (f"wrote {args.out} (TensorRT {meta['tensorrt_version']}, {meta['precision']}, device {meta['device']}, "
            f"profile min/opt/max batch {meta['profile']['min'][0]}/{meta['profile']['opt'][0]}/"
            f"{meta['profile']['max'][0]}, built in {meta['build_seconds']:.1f} s) and {args.out}.json")
    emit(args, meta, text)
    return 0


def run_bundle(args):
    from edgeprune.export.bundle import make_bundle

    precisions = comma_list(args.precision) if args.precision else None
    m = make_bundle(args.model, args.target, args.out, precisions=precisions, engine=args.engine, data=args.data,
                    calib_data=args.calib_data, calib_frames=args.calib_frames, seed=args.seed,
                    overwrite=args.force, targets_dir=args.targets_dir, simplify=args.simplify)
    lines = [f"wrote bundle {args.out} for {m['target']['name']} ({m['model']}, {len(m['classes'])} classes, "
             f"length {m['input']['length']}, normalisation {m['preprocessing']['normalization']})"]
    for v in m["variants"]:
        acc = f"accuracy {v['accuracy']:.4f}" if v.get("accuracy") is not None else "accuracy not measured"
        lines.append(f"  {v['file']:<20} {v['format']:<9} {v['precision']:<5} {acc}  "
                     f"sha256 {m['files'][v['file']]['sha256'][:16]}...")
    for p, why in m.get("skipped", {}).items():
        lines.append(f"  skipped {p}: {why}")
    emit(args, m, "\n".join(lines))
    for note in dict.fromkeys(n for v in m["variants"] for n in v.get("notes") or []):
        print(f"edgeprune: note: {note}", file=sys.stderr)
    if m.get("skipped"):
        print(f"edgeprune: note: skipped {', '.join(m['skipped'])}", file=sys.stderr)
