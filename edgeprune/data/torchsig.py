"""TorchSig 2.x ``DatasetCreator`` folders: ``data.h5`` beside ``dataset_info.yaml`` and ``writer_info.yaml``.

The three layouts TorchSig 2.x writes (``torchsig/utils/file_handlers`` of torchsig 2.2.0; 2.1.x has only the
first):

- ``HDF5Writer`` (the default, "legacy"): groups ``data``, ``index``, ``metadata`` and ``component_signals``.
  ``index/<i>`` holds the key of the i-th top-level signal; ``data/<key>`` its samples; ``metadata/<key>`` one
  dataset per metadata field plus ``parent_metadata_id`` (the key of the parent's metadata group);
  ``component_signals/<key>`` the keys of its component signals.
- ``PackedHDF5Writer``: file attribute ``format = "torchsig-packed"`` and a JSON ``/schema``; the record table
  ``/records``, ``/index`` (top-level record ids), ``/data/<dtype id>`` flat sample streams, ``/shapes``,
  ``/components``, and JSON metadata (``/metadata``, ``/parent_records``, ``/parent_metadata``).
- ``HomogeneousHDF5Writer``: file attribute ``format = "torchsig-homogeneous"``; ``/data`` (N, ...) frames,
  ``/metadata`` flattened JSON per frame, components in ``/component_offsets``, ``/components`` and
  ``/component_metadata``.

Labels follow TorchSig's own rule (``apply_label_to_signal``): a field stored on the sample and on none of its
components is the sample's; otherwise it is read from the components (or from the signal itself when it has none).
edgeprune classifies one signal per frame, so a frame must give exactly one ``class_name`` and one ``snr_db``.
A metadata field is looked up in the signal's own metadata, then up its parents' chain, as TorchSig does.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from pathlib import Path

import numpy as np

from edgeprune.export.runtime.safeio import check_array, check_input, read_bytes

from ..errors import EdgepruneError, require
from .dataset import SignalDataset
from .hdf5 import _H5_ERRORS, _damaged

YAMLS = ("dataset_info.yaml", "writer_info.yaml")
TORCHSIG_LAYOUTS = {"legacy": "HDF5Writer", "packed": "PackedHDF5Writer", "homogeneous": "HomogeneousHDF5Writer"}
_LEGACY_GROUPS = {"data", "index", "metadata", "component_signals"}
_NO_PARENT = (1 << 64) - 1
BLOCK = 4096


def is_torchsig_folder(folder: Path) -> bool:
    """A folder holding ``data.h5`` and one of TorchSig's two YAML files."""
    folder = Path(folder)
    return folder.is_dir() and (folder / "data.h5").is_file() and any((folder / y).is_file() for y in YAMLS)


def paths(path: str | Path) -> tuple[Path, Path]:
    """(folder, data.h5) of a TorchSig folder, or of its data.h5."""
    p = Path(path)
    return (p, p / "data.h5") if p.is_dir() else (p.parent, p)


def torchsig_layout(f) -> str | None:
    """``legacy``, ``packed``, ``homogeneous``, ``unknown`` (a TorchSig format attribute edgeprune does not
    know) or None (not a TorchSig file)."""
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode("utf-8", "replace")
    if fmt == "torchsig-packed":
        return "packed"
    if fmt == "torchsig-homogeneous":
        return "homogeneous"
    if isinstance(fmt, str) and fmt.startswith("torchsig"):
        return "unknown"
    if _LEGACY_GROUPS <= set(f.keys()):
        return "legacy"
    return None


def sniff(path: Path) -> str | None:
    """The layout of an HDF5 file if it is TorchSig's (see :func:`torchsig_layout`), else None."""
    try:
        import h5py
    except ImportError:
        return None
    try:
        with h5py.File(path, "r") as f:
            return torchsig_layout(f)
    except Exception:  # noqa: BLE001 - only a sniff: a damaged file is refused by the reader it goes to
        return None


def _writer_name(folder: Path) -> str | None:
    """``file_handler`` of writer_info.yaml (a one-line ``key: value`` read: no YAML parser needed)."""
    p = folder / "writer_info.yaml"
    if not p.is_file():
        return None

    for line in read_bytes(p, "TorchSig writer_info.yaml", "doc").decode("utf-8", "replace").splitlines():
        if line.startswith("file_handler:"):
            return line.split(":", 1)[1].strip().strip("'\"") or None
    return None


def _unknown(h5: Path, f, writer: str | None) -> EdgepruneError:
    fmt = f.attrs.get("format")
    found = f"format attribute {fmt!r}, " if fmt is not None else ""
    return EdgepruneError(f"{h5} is a TorchSig dataset in a layout edgeprune does not know ({found}writer "
                          f"{writer or 'unnamed'}, top-level entries {sorted(f.keys())[:12]}); it reads "
                          f"{', '.join(TORCHSIG_LAYOUTS.values())}")


# ----------------------------------------------------------------- metadata values


def _text(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.dtype.kind in "OS":
        return v.astype(np.str_)
    return v


def _unpack(value):
    """TorchSig's JSON metadata codec (version 1), read back; arrays through ``np.load(allow_pickle=False)``."""
    if isinstance(value, list):
        return [_unpack(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("__torchsig_type__")
    if kind == "ndarray":
        arr = np.load(io.BytesIO(base64.b64decode(value["data"])), allow_pickle=False)
        return arr[()] if value.get("scalar", False) else arr
    if kind == "tuple":
        return tuple(_unpack(v) for v in value["items"])
    if kind == "bytes":
        return base64.b64decode(value["data"])
    if kind == "complex":
        return complex(value["real"], value["imag"])
    if kind == "dict":
        return {k: _unpack(v) for k, v in value["items"].items()}
    return {k: _unpack(v) for k, v in value.items()}


def decode_json(raw) -> dict:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    out = _unpack(json.loads(raw))
    if not isinstance(out, dict):
        raise ValueError("a metadata record is not an object")
    return out


class Meta:
    """One signal's metadata: its own fields and its parents' chain (TorchSig's lookup order). ``parent`` may be
    a function giving it, called when a field is not the signal's own (so it is read only when needed)."""

    __slots__ = ("own", "_parent")

    def __init__(self, own, parent=None):
        self.own, self._parent = own, parent

    @property
    def parent(self) -> "Meta | None":
        if callable(self._parent):
            self._parent = self._parent()
        return self._parent

    def _find(self, key: str) -> "Meta | None":
        m, depth = self, 0
        while m is not None:
            if key in m.own:
                return m
            m, depth = m.parent, depth + 1
            if depth > 64:
                raise ValueError("a metadata parent chain is longer than 64 (a cycle?)")
        return None

    def has(self, key: str) -> bool:
        return self._find(key) is not None

    def get(self, key: str):
        m = self._find(key)
        if m is None:
            raise KeyError(key)
        return m.own[key]


class _H5Fields:
    """A legacy metadata group read field by field (only the fields asked for are read)."""

    __slots__ = ("group", "values")

    def __init__(self, group):
        self.group, self.values = group, {}

    def __contains__(self, key):
        return key != "parent_metadata_id" and key in self.group

    def __getitem__(self, key):
        if key not in self.values:
            self.values[key] = _text(self.group[key][()])
        return self.values[key]


# ----------------------------------------------------------------- the three layouts: (frame, sample, components)


def _legacy_count(f) -> int:
    return len(f["index"])


def _legacy_meta(group, key: str, parents: dict, depth: int = 0) -> Meta:
    """The metadata of signal ``key``; its parents (the dataset's metadata, shared) are cached in ``parents``."""
    if depth > 64:
        raise ValueError("the parent_metadata_id chain is longer than 64 (a cycle?)")
    g = group[key]

    def parent():
        if "parent_metadata_id" not in g:
            return None
        pkey = str(_text(g["parent_metadata_id"][()]))
        if pkey not in parents:
            parents[pkey] = _legacy_meta(group, pkey, parents, depth + 1)
        return parents[pkey]

    return Meta(_H5Fields(g), parent)


def _legacy_block(f, start: int, stop: int, state: dict):
    index, data, meta, comps = f["index"], f["data"], f["metadata"], f["component_signals"]
    parents = state.setdefault("parents", {})
    out = []
    for i in range(start, stop):
        key = str(_text(index[str(i)][()]))
        ckeys = [str(k) for k in np.atleast_1d(_text(comps[key][()]))] if key in comps else []
        out.append((np.asarray(data[key][()]), _legacy_meta(meta, key, parents),
                    [_legacy_meta(meta, k, parents) for k in ckeys]))
    return out


def _packed_count(f) -> int:
    return len(f["index"])


def _packed_parent(f, pid: int, cache: dict, depth: int = 0) -> Meta | None:
    if pid == _NO_PARENT:
        return None
    if depth > 64:
        raise ValueError("the parent_records chain is longer than 64 (a cycle?)")
    if pid not in cache:
        ancestor = int(f["parent_records"][pid]["parent_id"])
        cache[pid] = Meta(decode_json(f["parent_metadata"][pid]), _packed_parent(f, ancestor, cache, depth + 1))
    return cache[pid]


def _packed_block(f, start: int, stop: int, state: dict):
    if "records" not in state:
        state["records"] = f["records"][()]
        state["index"] = f["index"][()].astype(np.int64)
        state["components"] = f["components"][()].astype(np.int64)
        state["shapes"] = f["shapes"][()].astype(np.int64)
        state["parents"] = {}
    rec, comps, shapes = state["records"], state["components"], state["shapes"]
    top = state["index"][start:stop]
    kids = [comps[int(rec[t]["component_offset"]):int(rec[t]["component_offset"]) + int(rec[t]["component_count"])]
            for t in top]
    ids = np.concatenate([top] + kids) if len(top) else top
    lo, hi = int(ids.min()), int(ids.max()) + 1
    metas = f["metadata"][lo:hi]
    streams: dict = {}
    for t in top:
        r = rec[t]
        d = int(r["dtype_id"])
        a, b = int(r["data_offset"]), int(r["data_offset"]) + int(r["data_length"])
        s = streams.get(d)
        streams[d] = (min(a, s[0]), max(b, s[1])) if s else (a, b)
    chunks = {d: (a, f["data"][str(d)][a:b]) for d, (a, b) in streams.items()}

    def meta(rid):
        return Meta(decode_json(metas[rid - lo]), _packed_parent(f, int(rec[rid]["parent_id"]), state["parents"]))

    out = []
    for t, k in zip(top, kids):
        r = rec[t]
        base, chunk = chunks[int(r["dtype_id"])]
        a = int(r["data_offset"]) - base
        shape = tuple(int(v) for v in shapes[int(r["shape_offset"]):int(r["shape_offset"]) + int(r["shape_count"])])
        frame = chunk[a:a + int(r["data_length"])].reshape(shape)
        out.append((frame, meta(int(t)), [meta(int(c)) for c in k]))
    return out


def _homogeneous_count(f) -> int:
    return len(f["metadata"])


def _homogeneous_block(f, start: int, stop: int, state: dict):
    data = f["data"][start:stop]
    metas = f["metadata"][start:stop]
    offsets = f["component_offsets"][start:stop + 1].astype(np.int64)
    cmeta = f["component_metadata"][int(offsets[0]):int(offsets[-1])] if len(offsets) else []
    out = []
    for j in range(stop - start):
        a, b = int(offsets[j] - offsets[0]), int(offsets[j + 1] - offsets[0])
        out.append((data[j], Meta(decode_json(metas[j])), [Meta(decode_json(m)) for m in cmeta[a:b]]))
    return out


_LAYOUT_IO = {"legacy": (_legacy_count, _legacy_block), "packed": (_packed_count, _packed_block),
              "homogeneous": (_homogeneous_count, _homogeneous_block)}


# ----------------------------------------------------------------- labels, as TorchSig's apply_label_to_signal


def label_of(sample: Meta, components: list, key: str, where: str):
    """The one value of ``key`` for a frame (TorchSig's rule), or an EdgepruneError naming the frame."""
    if key in sample.own and not any(key in c.own for c in components):
        return sample.get(key)
    values = [s.get(key) for s in (components or [sample]) if s.has(key)]
    if len(values) != 1:
        what = "no" if not values else f"{len(values)}"
        raise EdgepruneError(f"{where} has {what} '{key}' value(s) ({len(components)} component signal(s)); "
                             "edgeprune classifies one signal per frame (a narrowband TorchSig dataset)")
    return values[0]


def _frame_iq(frame, where: str) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 1 or frame.dtype.kind not in "cf":
        raise EdgepruneError(f"{where} is not a 1-d IQ frame (shape {frame.shape}, dtype {frame.dtype}); "
                             "edgeprune reads TorchSig's IQ datasets, not spectrograms")
    return frame



# ----------------------------------------------------------------- reading


def _open(h5: Path):
    h5py = require("h5py", "reading TorchSig datasets")
    if check_input(h5, "dataset", "dataset").st_size == 0:
        raise EdgepruneError(f"dataset {h5} is empty")
    try:
        f = h5py.File(h5, "r")
    except OSError as exc:
        raise EdgepruneError(f"{h5} is not a readable HDF5 file (truncated or corrupt?): {exc}") from exc

    try:
        soft = [name for name in f.keys() if not isinstance(f.get(name, getlink=True), h5py.HardLink)]
    except _H5_ERRORS as exc:  # a damaged file can fail anywhere inside h5py
        f.close()
        raise _damaged(h5, exc) from exc
    if soft:
        f.close()
        raise EdgepruneError(f"refusing {h5}: {soft[0]} is a link to elsewhere; edgeprune reads only data stored "
                             "in the file itself")
    return f


def read_torchsig(path: str | Path) -> SignalDataset:
    """Every frame of a TorchSig folder (or its data.h5) with its ``class_name``, ``snr_db`` and ``sample_rate``.

    Frames are TorchSig's complex samples as (2, L) float32 rows (I, Q); the class names keep TorchSig's spelling
    and the order of the dataset's ``class_names`` (so a label is TorchSig's ``class_index``); the SNRs are kept
    in float64 as ``snr_exact`` beside the float32 ``snr``.
    """
    folder, h5 = paths(path)
    f = _open(h5)
    try:
        layout = torchsig_layout(f)
        if layout in (None, "unknown"):
            raise _unknown(h5, f, _writer_name(folder))
        count, block = _LAYOUT_IO[layout]
        n = int(count(f))
        if n == 0:
            raise EdgepruneError(f"{h5} holds no frames")
        ds = _assemble(f, h5, n, block)
    except EdgepruneError:
        raise
    except _H5_ERRORS + (IndexError, binascii.Error, RecursionError) as exc:
        raise _damaged(h5, exc) from exc
    finally:
        f.close()
    ds.meta.update({"source": str(folder), "format": "torchsig", "layout": TORCHSIG_LAYOUTS[layout],
                    "dataset": "torchsig", "normalization": "none", "snr_source": "snr_db"})
    return ds


def _assemble(f, h5: Path, n: int, block) -> SignalDataset:
    state: dict = {}
    x = None
    y = np.empty(n, np.int64)
    snr = np.empty(n, np.float64)
    names: dict = {}
    rates: set = set()
    order = None
    for lo in range(0, n, BLOCK):
        for j, (frame, sample, comps) in enumerate(block(f, lo, min(n, lo + BLOCK), state)):
            i = lo + j
            where = f"{h5} frame {i}"
            frame = _frame_iq(frame, where)
            if x is None:
                check_array(f"{h5}: {n} frames of {len(frame)} samples", n * 2 * len(frame) * 4)
                x = np.empty((n, 2, len(frame)), np.float32)
                order = sample.get("class_names") if sample.has("class_names") else None
            if len(frame) != x.shape[2]:
                raise EdgepruneError(f"{where} has {len(frame)} samples, the first has {x.shape[2]}")
            x[i, 0] = frame.real
            x[i, 1] = frame.imag
            y[i] = names.setdefault(str(label_of(sample, comps, "class_name", where)), len(names))
            snr[i] = float(label_of(sample, comps, "snr_db", where))
            rates.add(float(sample.get("sample_rate")) if sample.has("sample_rate") else None)
    found = list(names)
    order = [str(c) for c in np.atleast_1d(order)] if order is not None else []
    classes = order if order and set(found) <= set(order) and len(set(order)) == len(order) else sorted(found)
    lut = np.array([classes.index(c) for c in found], np.int64)
    meta = {"sample_rate": rates.pop() if len(rates) == 1 else sorted(r for r in rates if r is not None) or None}
    return SignalDataset(x, lut[y], snr.astype(np.float32), classes, meta, snr_exact=snr)
