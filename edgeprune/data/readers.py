"""Dataset readers: one entry point, :func:`load_dataset`, dispatching on format.

Formats (``fmt=``): ``npz`` (the project's own), ``rml-pickle`` (RML2016.10a/b
dict pickles), ``rml2018-hdf5``, ``hisarmod`` (a HisarMod2019.1 CSV folder),
``sigmf``, ``torchsig`` (a TorchSig 2.x DatasetCreator folder or its
data.h5). Without ``fmt`` the format is told from the extension, a folder's
structure, or the file's first bytes. Several files, or a folder of SigMF
recordings, load as one dataset (:func:`load_many`).

Options (all readers unless noted): ``classes``, ``min_snr``, ``max_snr``,
``per_key``; ``split`` (hisarmod: train|test); ``length``, ``hop``,
``backend`` (sigmf); ``normalize`` (l1|l2|max|none: rescale every frame after
loading; sigmf frames are L1-normalised by default).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from edgeprune.export.runtime.frames import normalize as normalize_frames
from edgeprune.export.runtime.safeio import open_input

from ..errors import EdgepruneError
from .dataset import SignalDataset, load_npz
from .hdf5 import read_rml2018_hdf5
from .hisar import is_hisar_folder, read_hisar
from .rml_pickle import read_rml_pickle
from .sigmf_io import read_sigmf
from .torchsig import is_torchsig_folder, read_torchsig, sniff

FORMATS = ("npz", "rml-pickle", "rml2018-hdf5", "hisarmod", "sigmf", "torchsig")
_SELECTED_AFTER = ("npz", "torchsig")  # formats whose reader loads everything: the selection is applied after
_ALIASES = {"pkl": "rml-pickle", "pickle": "rml-pickle", "rml": "rml-pickle", "rml2016": "rml-pickle",
            "hdf5": "rml2018-hdf5", "h5": "rml2018-hdf5", "rml2018": "rml2018-hdf5", "hisar": "hisarmod",
            "hisarmod2019": "hisarmod", "csv": "hisarmod", "torchsig2": "torchsig"}
_EXT = {".npz": "npz", ".pkl": "rml-pickle", ".pickle": "rml-pickle", ".dat": "rml-pickle",
        ".hdf5": "rml2018-hdf5", ".h5": "rml2018-hdf5", ".sigmf-meta": "sigmf", ".sigmf-data": "sigmf",
        ".sigmf": "sigmf"}


def detect_format(path: str | Path) -> str:
    """The format name of ``path`` (see :data:`FORMATS`), or an EdgepruneError."""
    p = Path(path)
    name = p.name.lower()
    if p.is_dir():
        if is_torchsig_folder(p):
            return "torchsig"
        if is_hisar_folder(p):
            return "hisarmod"
        raise EdgepruneError(f"{p} is a folder but not a dataset: no TorchSig data.h5 with dataset_info.yaml, "
                             "no HisarMod2019.1 Train/ or Test/ CSV files")
    for sfx, fmt in _EXT.items():
        if name.endswith(sfx):
            if fmt == "rml2018-hdf5" and p.is_file() and (is_torchsig_folder(p.parent) or sniff(p)):
                return "torchsig"
            return fmt
    if name.endswith(".csv") and is_hisar_folder(p.parent.parent if p.parent.name.lower() in ("train", "test")
                                                 else p.parent):
        return "hisarmod"
    if not p.exists():
        if Path(str(p) + ".sigmf-meta").exists():
            return "sigmf"
        raise EdgepruneError(f"dataset {p} does not exist")

    with open_input(p, "dataset", "dataset") as fh:
        head = fh.read(8)
    if not head:
        raise EdgepruneError(f"dataset {p} is empty")
    if head.startswith(b"PK"):
        return "npz"
    if head.startswith(b"\x89HDF"):
        return "rml2018-hdf5"
    if head[:1] == b"\x80" or head[:1] in (b"(", b"}"):
        return "rml-pickle"
    raise EdgepruneError(f"cannot tell the format of {p} (use --format: {', '.join(FORMATS)})")


def _resolve(path: Path, fmt: str | None) -> tuple[str, Path]:
    if fmt is None:
        fmt = detect_format(path)
    fmt = _ALIASES.get(fmt.lower(), fmt.lower())
    if fmt not in FORMATS:
        raise EdgepruneError(f"unknown dataset format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "hisarmod" and not path.is_dir():
        path = path.parent.parent if path.parent.name.lower() in ("train", "test") else path.parent
    return fmt, path


def _reader(fmt: str):
    if fmt == "npz":
        return lambda path, **_: load_npz(path)
    if fmt == "rml-pickle":
        return read_rml_pickle
    if fmt == "rml2018-hdf5":
        return read_rml2018_hdf5
    if fmt == "hisarmod":
        return read_hisar
    if fmt == "torchsig":
        return read_torchsig
    return read_sigmf


_RECORDING: dict = {}


def set_recording_options(length: int | None = None, hop: int | None = None) -> None:
    """The frame ``length``/``hop`` every later SigMF read uses when its caller gives none (the commands'
    ``--length``/``--hop``)."""
    _RECORDING.clear()
    _RECORDING.update({k: int(v) for k, v in {"length": length, "hop": hop}.items() if v is not None})


def expand_inputs(paths) -> list[Path]:
    """The dataset files of ``paths``: a folder that is no dataset itself stands for its .sigmf-meta recordings."""
    out: list[Path] = []
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        p = Path(p)
        if p.is_dir() and not (is_torchsig_folder(p) or is_hisar_folder(p)):
            recs = sorted(q for q in p.glob("*.sigmf-meta") if q.is_file())
            if not recs:
                raise EdgepruneError(f"{p} is a folder but not a dataset: no TorchSig data.h5 with "
                                     "dataset_info.yaml, no HisarMod2019.1 Train/ or Test/ CSV files, no "
                                     ".sigmf-meta recordings")
            out += recs
        else:
            out.append(p)
    return out


def load_many(paths, fmt: str | None = None, **options) -> SignalDataset:
    """One dataset from several files or folders of recordings (see :func:`expand_inputs`); the selection
    (classes, SNR range, per_key) applies to the whole."""
    files = expand_inputs(paths)
    if len(files) == 1:
        return load_dataset(files[0], fmt, **options)
    sel = {k: options.pop(k) for k in ("classes", "min_snr", "max_snr", "per_key") if options.get(k) is not None}
    ds = concat_datasets([load_dataset(f, fmt, **options) for f in files])
    return _select(ds, **sel) if sel else ds


def concat_datasets(parts: list) -> SignalDataset:
    """The frames of ``parts`` one after the other; classes by name (their union, sorted, unless all agree)."""
    lengths = sorted({p.length for p in parts})
    if len(lengths) > 1:
        raise EdgepruneError(f"the inputs' frames have different lengths ({', '.join(map(str, lengths))} samples); "
                             "give --length")
    same = all(p.classes == parts[0].classes for p in parts)
    classes = list(parts[0].classes) if same else sorted({c for p in parts for c in p.classes})
    y = np.concatenate([np.array([classes.index(c) for c in p.classes], np.int64)[p.y] for p in parts])
    exact = None
    if any(p.snr_exact is not None for p in parts):
        exact = np.concatenate([p.snr.astype(np.float64) if p.snr_exact is None else p.snr_exact for p in parts])
    meta = dict(parts[0].meta)
    meta["sources"] = [p.meta.get("source") for p in parts]
    meta["source"] = f"{len(parts)} files"
    for key in ("sample_rate", "normalization", "format"):
        if len({repr(p.meta.get(key)) for p in parts}) > 1:
            meta[key] = sorted({str(p.meta.get(key)) for p in parts})
    return SignalDataset(np.concatenate([p.x for p in parts]), y, np.concatenate([p.snr for p in parts]), classes,
                         meta, exact)


def load_dataset(path: str | Path, fmt: str | None = None, **options) -> SignalDataset:
    """Load a dataset in any supported format as a :class:`SignalDataset`.

    ``options`` with value None are ignored; an option the format does not
    take is an error. For npz and torchsig, ``classes``/``min_snr``/
    ``max_snr``/``per_key`` are applied after loading. A folder of SigMF
    recordings loads as one dataset (:func:`load_many`).
    """
    path = Path(path)
    options = {k: v for k, v in options.items() if v is not None}
    if path.is_dir() and fmt is None:
        files = expand_inputs([path])
        if files != [path]:
            return load_many(files, fmt, **options)
    normalize = options.pop("normalize", None)
    fmt, path = _resolve(path, fmt)
    if fmt == "sigmf":
        for key, value in _RECORDING.items():
            options.setdefault(key, value)
    reader = _reader(fmt)
    if fmt in _SELECTED_AFTER:
        ds = reader(path)
        ds = _select(ds, **_only(options, ("classes", "min_snr", "max_snr", "per_key"), fmt))
    else:
        if fmt == "sigmf" and normalize is not None:
            options["normalize"] = normalize
            normalize = None
        accepted = tuple(inspect.signature(reader).parameters)[1:]
        ds = reader(path, **_only(options, accepted, fmt))
    if normalize is not None:
        ds = SignalDataset(normalize_frames(ds.x, normalize), ds.y, ds.snr, ds.classes,
                           dict(ds.meta, normalization=normalize), ds.snr_exact)
    ds.meta.setdefault("format", fmt)
    sel = {k: options[k] for k in ("classes", "min_snr", "max_snr", "per_key") if k in options}
    if sel:
        ds.meta["selection"] = sel
    return ds


def _only(options: dict, accepted, fmt: str) -> dict:
    extra = sorted(set(options) - set(accepted))
    if extra:
        raise EdgepruneError(f"the {fmt} reader does not take the option(s) {', '.join(extra)} "
                             f"(it takes {', '.join(accepted) or 'none'})")
    return options


def _select(ds: SignalDataset, classes=None, min_snr=None, max_snr=None, per_key=None) -> SignalDataset:
    keep = np.ones(len(ds), bool)
    names = list(ds.classes)
    if classes is not None:
        wanted = [classes] if isinstance(classes, str) else list(classes)
        bad = [c for c in wanted if c not in names]
        if bad:
            raise EdgepruneError(f"class(es) {bad} not in the dataset (it has {', '.join(names)})")
        names = [c for c in ds.classes if c in set(wanted)]
        keep &= np.isin(ds.y, [ds.classes.index(c) for c in names])
    if min_snr is not None:
        keep &= ds.snr >= min_snr
    if max_snr is not None:
        keep &= ds.snr <= max_snr
    if per_key:
        idx = np.flatnonzero(keep)
        keys = ds.y[idx] * 1_000_000 + np.round(ds.snr[idx] * 100).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        rank = np.arange(len(sk)) - np.searchsorted(sk, sk, side="left")
        keep[:] = False
        keep[idx[order][rank < per_key]] = True
    if keep.all() and names == ds.classes:
        return ds
    if not keep.any():
        raise EdgepruneError("no frames match the selection")
    idx = np.flatnonzero(keep)
    lut = np.full(len(ds.classes), -1, np.int64)
    lut[[ds.classes.index(c) for c in names]] = np.arange(len(names))
    exact = None if ds.snr_exact is None else ds.snr_exact[idx]
    return SignalDataset(ds.x[idx], lut[ds.y[idx]], ds.snr[idx], names, dict(ds.meta), exact)
