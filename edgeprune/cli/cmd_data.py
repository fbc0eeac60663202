"""``edgeprune data synth | info | convert``."""

from __future__ import annotations

import re
import time

from ..errors import EdgepruneError
from .args import add_out, comma_list, list_of
from .main import add_json, add_seed, emit

ORDER = 10


_snr_list = list_of(float, "comma-separated numbers like -10,0,10")
LENGTH_HELP = ("SigMF frame length (default: the labelled annotations' core:sample_count when they share one, "
               "else 128 for unlabelled recordings)")


_NEGATIVE_LIST = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d[\d.,\-]*$")


def _allow_negative_lists(parser) -> None:
    """Let values such as ``--snr -10,0,10`` through (argparse would take them for options)."""
    if hasattr(parser, "_negative_number_matcher"):
        parser._negative_number_matcher = _NEGATIVE_LIST


def _classes(text):
    return comma_list(text) if text else None


def register(sub, common):
    p = sub.add_parser("data", parents=[common], help="synthesise, inspect and convert datasets",
                       description="Synthesise RML-faithful datasets, summarise dataset files and convert the "
                                   "real formats (RML2016 pickles, RML2018 HDF5, HisarMod CSV, SigMF) to .npz.")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    s = dsub.add_parser("synth", parents=[common], help="generate a synthetic dataset (.npz)",
                        description="Generate an RML-faithful synthetic dataset (numpy, vectorised) and write it "
                                    "as the project's .npz.")
    s.add_argument("--preset", default="rml2016.10a", help="rml2016.10a (default), rml2016.10b or rml2018.01a")
    s.add_argument("--per-key", type=int, default=1000, help="frames per (class, SNR) (default 1000)")
    add_out(s, help="output .npz file")
    s.add_argument("--snr-mode", default="rml", choices=["rml", "true"],
                   help="rml: the published noise-amplitude quirk 10^(-snr/10) (default); true: real SNR")
    s.add_argument("--snr", type=_snr_list, default=None, help="SNR levels, e.g. -10,0,10 (default: the preset's)")
    s.add_argument("--min-snr", type=float, default=None, help="lowest preset SNR level to keep")
    s.add_argument("--max-snr", type=float, default=None, help="highest preset SNR level to keep")
    s.add_argument("--length", type=int, default=None, help="frame length (default: the preset's)")
    s.add_argument("--classes", default=None, help="comma-separated subset of the preset's classes")
    s.add_argument("--am-ssb", default=None, choices=["noise", "hilbert"],
                   help="AM-SSB frames: noise (as in the published RML2016 data, default there) or hilbert "
                        "(a real upper-sideband signal)")
    add_seed(s)
    add_json(s)
    s.set_defaults(func=run_synth)
    for parser in (sub._name_parser_map.get("data"), s):
        _allow_negative_lists(parser)

    i = dsub.add_parser("info", parents=[common], help="summarise a dataset file",
                        description="Format, classes, SNR levels, counts per class and SNR, frame shape, "
                                    "normalisation and metadata of a dataset file or folder, or of several "
                                    "SigMF recordings (files, or a folder of them) taken as one dataset.")
    i.add_argument("files", nargs="+", metavar="FILE",
                   help="a dataset: .npz, .pkl/.dat, .hdf5/.h5, a HisarMod folder, a TorchSig folder (or its "
                        "data.h5), .sigmf-meta recordings or a folder of them")
    i.add_argument("--format", dest="fmt", default=None, help="override the detected format")
    i.add_argument("--split", default=None, help="HisarMod split: train or test")
    i.add_argument("--length", type=int, default=None, help=LENGTH_HELP)
    i.add_argument("--hop", type=int, default=None, help="SigMF frame hop (default: the frame length)")
    add_json(i)
    i.set_defaults(func=run_info)

    c = dsub.add_parser("convert", parents=[common], help="convert a real-format dataset to .npz",
                        description="Read a dataset in any supported format, optionally filter it (e.g. the "
                                    "paper's '-high' subset: --min-snr 10) and write the project's .npz.")
    c.add_argument("files", nargs="+", metavar="FILE",
                   help="input dataset, or several SigMF recordings (files, or a folder of them) as one")
    add_out(c, help="output .npz file")
    c.add_argument("--format", dest="fmt", default=None, help="override the detected input format")
    c.add_argument("--min-snr", type=float, default=None, help="keep frames with SNR >= this")
    c.add_argument("--max-snr", type=float, default=None, help="keep frames with SNR <= this")
    c.add_argument("--classes", default=None, help="comma-separated subset of classes")
    c.add_argument("--per-key", type=int, default=None, help="at most this many frames per (class, SNR)")
    c.add_argument("--split", default=None, help="HisarMod split: train (default) or test")
    c.add_argument("--length", type=int, default=None, help=LENGTH_HELP)
    c.add_argument("--hop", type=int, default=None, help="SigMF frame hop (default: the frame length)")
    c.add_argument("--snr-bin", type=float, default=None, metavar="DB",
                   help="bin the SNRs DB dB wide (the exact values are kept beside them as snr_exact); 0: keep "
                        "them as they are (default: 2 dB when more than 50 distinct SNRs are present)")
    c.add_argument("--normalize", default=None, choices=["l1", "l2", "max", "none"],
                   help="rescale every frame (default: keep the stored scale; SigMF: l1)")
    add_json(c)
    c.set_defaults(func=run_convert)

    def _no_sub(args):
        p.print_help()
        return 2

    p.set_defaults(func=_no_sub)


def run_synth(args):
    from ..data.dataset import save_npz
    from ..data.synth import PRESETS, generate

    snrs = args.snr
    if args.min_snr is not None or args.max_snr is not None:
        if args.preset not in PRESETS:
            raise EdgepruneError(f"unknown preset {args.preset!r} (choose from {', '.join(PRESETS)})")
        base = snrs if snrs is not None else PRESETS[args.preset]["snrs"]
        snrs = [s for s in base if (args.min_snr is None or s >= args.min_snr)
                and (args.max_snr is None or s <= args.max_snr)]
        if not snrs:
            raise EdgepruneError("no SNR levels left after --min-snr/--max-snr")
    t0 = time.perf_counter()
    ds = generate(args.preset, per_key=args.per_key, seed=args.seed, snrs=snrs, snr_mode=args.snr_mode,
                  length=args.length, classes=_classes(args.classes), am_ssb=args.am_ssb)
    dt = time.perf_counter() - t0
    save_npz(args.out, ds)
    out = {"out": str(args.out), "frames": len(ds), "frame_shape": [2, ds.length], "classes": ds.classes,
           "snr_levels": ds.snr_levels(), "seconds": round(dt, 3), "examples_per_s": round(len(ds) / max(dt, 1e-9)),
           "meta": ds.meta}
    text = (f"wrote {args.out}: {len(ds):,} frames (2 x {ds.length}), {len(ds.classes)} classes, "
            f"{len(ds.snr_levels())} SNR levels ({min(ds.snr_levels()):g}..{max(ds.snr_levels()):g} dB, "
            f"{args.snr_mode} mode), {dt:.1f} s ({len(ds) / max(dt, 1e-9):,.0f} examples/s)")
    emit(args, out, text)


def run_info(args):
    from ..data.info import describe_file, format_summary, summarize
    from ..data.readers import expand_inputs, load_many

    options = {k: v for k, v in {"split": args.split, "length": args.length, "hop": args.hop}.items()
               if v is not None}
    files = expand_inputs(args.files)
    if len(files) == 1:
        info = describe_file(files[0], args.fmt, **options)
    else:
        info = summarize(load_many(files, args.fmt, **options), args.fmt, ", ".join(map(str, args.files)))
    emit(args, info, format_summary(info))


def run_convert(args):
    from ..data.dataset import save_npz
    from ..data.info import summarize
    from ..data.readers import load_many
    from ..data.snr import apply_bins, snr_text

    if args.snr_bin is not None and args.snr_bin < 0:
        raise EdgepruneError("--snr-bin must be >= 0 dB (0 keeps the SNRs as they are)")
    ds = load_many(args.files, args.fmt, min_snr=args.min_snr, max_snr=args.max_snr,
                   classes=_classes(args.classes), per_key=args.per_key, split=args.split, length=args.length,
                   hop=args.hop, normalize=args.normalize)
    ds = apply_bins(ds, args.snr_bin)
    source = ", ".join(map(str, args.files))
    ds.meta.setdefault("converted_from", source)
    save_npz(args.out, ds)
    info = summarize(ds, "npz", args.out)
    info["converted_from"] = source
    levels = ds.snr_levels()
    shown = ", ".join(snr_text(s) for s in levels) if len(levels) <= 30 else \
        f"{len(levels)} levels {snr_text(levels[0])}..{snr_text(levels[-1])}"
    binned = f" (binned {ds.meta['snr_bin_db']:g} dB; exact values kept)" if ds.meta.get("snr_bin_db") else ""
    text = (f"wrote {args.out}: {len(ds):,} frames (2 x {ds.length}), {len(ds.classes)} classes, SNR {shown}{binned}")
    emit(args, info, text)
