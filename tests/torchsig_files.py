"""TorchSig 2.x DatasetCreator folders written with h5py in TorchSig's exact layouts (torchsig 2.2.0,
``torchsig/utils/file_handlers/{hdf5,packed_hdf5,homogeneous_hdf5,metadata_codec}.py``), for the reader tests.

Each frame is a narrowband sample: a top-level signal (its IQ frame) whose parent is the dataset's metadata
(``sample_rate``, ``class_names`` ...) and one component signal carrying ``class_name`` and ``snr_db`` (a
numpy float64, as TorchSig's generator stores it), whose parent is its generator's metadata.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np

CLASS_NAMES = ["bpsk", "qpsk", "16qam", "2fsk"]


def frames(n: int = 40, length: int = 64, seed: int = 0, continuous: bool = True):
    """(complex64 frames, class names, float64 SNRs in TorchSig's 0.1 dB steps)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, length)) + 1j * rng.standard_normal((n, length))).astype(np.complex64)
    names = [CLASS_NAMES[i] for i in rng.integers(0, len(CLASS_NAMES), n)]
    snr = np.round(rng.uniform(-10, 20, n), 1) if continuous else rng.choice([0.0, 10.0], n)
    return x, names, snr.astype(np.float64)


def _pack(v):
    """TorchSig's metadata codec, version 1 (``metadata_codec._pack_value``)."""
    if isinstance(v, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, v, allow_pickle=False)
        return {"__torchsig_type__": "ndarray", "data": base64.b64encode(buf.getvalue()).decode("ascii")}
    if isinstance(v, np.generic):
        return _pack(np.asarray(v)) | {"scalar": True}
    if isinstance(v, list):
        return [_pack(i) for i in v]
    if isinstance(v, dict):
        return {"__torchsig_type__": "dict", "items": {k: _pack(i) for k, i in v.items()}}
    return v


def encode(meta: dict) -> str:
    return json.dumps(_pack(meta), separators=(",", ":"), sort_keys=True, allow_nan=True)


def _dataset_meta(sample_rate):
    return {"sample_rate": sample_rate, "num_signals_max": 1, "num_signals_min": 1, "class_names": list(CLASS_NAMES),
            "snr_db_min": -10.0, "snr_db_max": 20.0, "num_iq_samples_dataset": 64}


def _yamls(root, writer: str, n: int, sample_rate):
    (root / "dataset_info.yaml").write_text(
        f"dataset_length: {n}\nseed: 7\ntarget_labels: null\ndataset_metadata:\n  sample_rate: {sample_rate}\n"
        f"  class_names: [{', '.join(CLASS_NAMES)}]\n")
    (root / "writer_info.yaml").write_text(
        f"root: {root}\noverwrite: true\nbatch_size: 32\nfile_handler: {writer}\nfile_handler_kwargs: {{}}\n"
        f"items_written: {n}\ncomplete: true\n")


def write_legacy(root, x, names, snr, sample_rate=1_000_000, sample_level=False, components=1):
    """HDF5Writer: groups data/index/metadata/component_signals, one object per record."""
    import h5py

    root.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "data.h5", "w") as f:
        f.attrs["created_by"] = "TorchSig HDF5FileHandler"
        f.attrs["torchsig_version"] = "2.2.0"
        for g in ("data", "index", "metadata", "component_signals"):
            f.create_group(g)
        ds_key, gen_key = "140002905792912", "140002912370128"
        dsm = f["metadata"].create_group(ds_key)
        for k, v in _dataset_meta(sample_rate).items():
            dsm.create_dataset(k, data=v)
        gen = f["metadata"].create_group(gen_key)
        gen.create_dataset("class_index", data=np.int64(0))
        gen.create_dataset("parent_metadata_id", data=ds_key)
        counter = 0
        for i in range(len(x)):
            key = str(counter)
            counter += 1
            f["data"].create_dataset(key, data=x[i], compression="lzf", shuffle=True, fletcher32=True)
            m = f["metadata"].create_group(key)
            m.create_dataset("duration_in_samples", data=np.int64(x.shape[1]))
            m.create_dataset("parent_metadata_id", data=ds_key)
            ckeys = [str(counter + j) for j in range(components)]
            counter += components
            for ckey in ckeys:
                f["data"].create_dataset(ckey, data=x[i][: x.shape[1] // 2])
                c = f["metadata"].create_group(ckey)
                c.create_dataset("parent_metadata_id", data=gen_key)
                c.create_dataset("duration_in_samples", data=np.int64(x.shape[1] // 2))
                if not sample_level:
                    c.create_dataset("class_name", data=names[i])
                    c.create_dataset("snr_db", data=np.float64(snr[i]))
            if sample_level:
                m.create_dataset("class_name", data=names[i])
                m.create_dataset("snr_db", data=np.float64(snr[i]))
            f["component_signals"].create_dataset(key, data=ckeys)
            f["index"].create_dataset(str(i), data=key)
    _yamls(root, "HDF5Writer", len(x), sample_rate)
    return root


SCHEMA = {"datasets": {"components": {"dtype": "uint64", "encoding": None, "fields": None, "path": "/components",
                                      "role": "flattened_component_record_ids"},
                       "data": {"dtype": None, "encoding": None, "fields": None, "path": "/data",
                                "role": "dtype_stream_group"},
                       "dtypes": {"dtype": "utf8", "encoding": None, "fields": None, "path": "/dtypes",
                                  "role": "numpy_dtype_descriptors"},
                       "index": {"dtype": "uint64", "encoding": None, "fields": None, "path": "/index",
                                 "role": "top_level_record_ids"},
                       "metadata": {"dtype": "utf8", "encoding": {"name": "torchsig-json", "version": 1},
                                    "fields": None, "path": "/metadata", "role": "record_metadata"},
                       "parent_metadata": {"dtype": "utf8", "encoding": {"name": "torchsig-json", "version": 1},
                                           "fields": None, "path": "/parent_metadata", "role": "parent_metadata"},
                       "parent_records": {"dtype": None, "encoding": None, "fields": {"parent_id": "parent_id"},
                                          "path": "/parent_records", "role": "parent_relationship_table"},
                       "records": {"dtype": None, "encoding": None, "path": "/records", "role": "signal_record_table",
                                   "fields": {k: k for k in ("data_offset", "data_length", "dtype_id", "shape_offset",
                                                             "shape_count", "component_offset", "component_count",
                                                             "parent_id")}},
                       "shapes": {"dtype": "uint64", "encoding": None, "fields": None, "path": "/shapes",
                                  "role": "flattened_record_shapes"}},
          "format": "torchsig-packed", "required_features": ["mixed_dtypes", "variable_shapes", "component_signals",
                                                             "hierarchical_metadata"],
          "schema_major": 1, "schema_minor": 0, "sentinels": {"no_parent": (1 << 64) - 1}}
RECORD = np.dtype([("data_offset", np.uint64), ("data_length", np.uint64), ("dtype_id", np.uint32),
                   ("shape_offset", np.uint64), ("shape_count", np.uint16), ("component_offset", np.uint64),
                   ("component_count", np.uint32), ("parent_id", np.uint64)])


def write_packed(root, x, names, snr, sample_rate=1_000_000):
    """PackedHDF5Writer: record table + flat dtype streams + JSON metadata; components follow their sample."""
    import h5py

    root.mkdir(parents=True, exist_ok=True)
    s = h5py.string_dtype(encoding="utf-8")
    records, metas, shapes, comps, stream, index = [], [], [], [], [], []
    for i in range(len(x)):
        top = len(records)
        index.append(top)
        half = x[i][: x.shape[1] // 2]
        records.append((sum(len(a) for a in stream), x.shape[1], 0, len(shapes), 1, len(comps), 1, 0))
        stream.append(x[i])
        shapes.append(x.shape[1])
        metas.append(encode({"duration_in_samples": x.shape[1], "center_freq": 0}))
        comps.append(top + 1)
        records.append((sum(len(a) for a in stream), len(half), 0, len(shapes), 1, len(comps), 0, 1))
        stream.append(half)
        shapes.append(len(half))
        metas.append(encode({"class_name": names[i], "snr_db": np.float64(snr[i]),
                             "duration_in_samples": len(half)}))
    with h5py.File(root / "data.h5", "w") as f:
        f.attrs.update({"torchsig_version": "2.2.0", "format": "torchsig-packed", "compression": "lzf",
                        "complete": True})
        f.create_dataset("schema", data=json.dumps(SCHEMA, separators=(",", ":"), sort_keys=True), dtype=s)
        f.create_group("data").create_dataset("0", data=np.concatenate(stream), chunks=True, compression="lzf")
        f.create_dataset("dtypes", data=["<c8"], dtype=s)
        f.create_dataset("records", data=np.array(records, RECORD))
        f.create_dataset("metadata", data=metas, dtype=s)
        f.create_dataset("components", data=np.array(comps, np.uint64))
        f.create_dataset("shapes", data=np.array(shapes, np.uint64))
        f.create_dataset("index", data=np.array(index, np.uint64))
        f.create_dataset("parent_records", data=np.array([((1 << 64) - 1,), (0,)], [("parent_id", np.uint64)]))
        f.create_dataset("parent_metadata", data=[encode(_dataset_meta(sample_rate)), encode({"class_index": 0})],
                         dtype=s)
    _yamls(root, "PackedHDF5Writer", len(x), sample_rate)
    return root


COMPONENT = np.dtype([("data_offset", np.uint64), ("data_length", np.uint64), ("dtype_id", np.uint32),
                      ("shape_offset", np.uint64), ("shape_count", np.uint16)])


def write_homogeneous(root, x, names, snr, sample_rate=1_000_000, fmt="torchsig-homogeneous"):
    """HomogeneousHDF5Writer: (N, L) frames, flattened JSON metadata, ragged component records."""
    import h5py

    root.mkdir(parents=True, exist_ok=True)
    s = h5py.string_dtype(encoding="utf-8")
    half = x.shape[1] // 2
    top = [encode(dict(_dataset_meta(sample_rate), duration_in_samples=x.shape[1], center_freq=0)) for _ in x]
    comp = [encode(dict(_dataset_meta(sample_rate), class_index=0, class_name=n, snr_db=np.float64(v),
                        duration_in_samples=half)) for n, v in zip(names, snr)]
    with h5py.File(root / "data.h5", "w") as f:
        f.attrs.update({"format": fmt, "schema_version": 1, "complete": True, "compression": "lzf"})
        f.create_dataset("data", data=x, chunks=(min(32, len(x)), x.shape[1]), compression="lzf")
        f.create_dataset("metadata", data=top, dtype=s)
        f.create_dataset("component_offsets", data=np.arange(len(x) + 1, dtype=np.uint64))
        f.create_dataset("components", data=np.array([(i * half, half, 0, i, 1) for i in range(len(x))], COMPONENT))
        f.create_dataset("component_metadata", data=comp, dtype=s)
        f.create_dataset("component_shapes", data=np.full(len(x), half, np.uint64))
        f.create_dataset("component_dtypes", data=["<c8"], dtype=s)
        f.create_group("component_data").create_dataset("0", data=x[:, :half].reshape(-1))
    _yamls(root, "HomogeneousHDF5Writer", len(x), sample_rate)
    return root


WRITERS = {"HDF5Writer": write_legacy, "PackedHDF5Writer": write_packed, "HomogeneousHDF5Writer": write_homogeneous}
