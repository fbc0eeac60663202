"""edgeprune's TorchSig reader against TorchSig itself: every frame, label, SNR and sample rate.

TorchSig's own ``DatasetCreator`` writes a small narrowband dataset in each layout TorchSig 2.x ships
(HDF5Writer, PackedHDF5Writer, HomogeneousHDF5Writer); ``edgeprune data convert FOLDER --out X.npz`` converts it;
TorchSig's own ``StaticTorchSigDataset`` (with the layout's reader) reads it back. Compared exactly:
the frames (I and Q of each complex64 sample), ``class_name`` (by TorchSig's ``apply_label_to_signal``),
``snr_db`` (float64, against the converted file's ``snr_exact``) and ``sample_rate``.

TorchSig needs its own environment (it does not import beside this project's CPU torch unless the CUDA
torchaudio's libraries are moved aside), so it runs in ``--torchsig-python`` (default: this Python if it imports
torchsig). Prints a table and writes JSON.

    python benchmarks/bench_torchsig.py --torchsig-python VENV/bin/python [--frames 300] \
        [--out bench-out/torchsig.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ("HDF5Writer", "PackedHDF5Writer", "HomogeneousHDF5Writer")

GENERATE = r'''
import sys
from torchsig.datasets.datasets import TorchSigIterableDataset
from torchsig.utils.data_loading import WorkerSeedingDataLoader
from torchsig.utils.defaults import TorchSigDefaults
from torchsig.utils.signal_building import lookup_signal_generator_by_string
from torchsig.utils.writer import DatasetCreator, identity_collate_fn
from torchsig.utils.file_handlers import HDF5Writer, PackedHDF5Writer, HomogeneousHDF5Writer
root, writer, n, length, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
md = TorchSigDefaults().default_dataset_metadata
md.update({"num_iq_samples_dataset": length, "fft_size": 32, "fft_stride": 32, "num_signals_min": 1,
           "num_signals_max": 1, "signal_duration_in_samples_min": length * 3 // 4,
           "signal_duration_in_samples_max": length, "sample_rate": 1_000_000, "bandwidth_min": 100_000,
           "bandwidth_max": 200_000, "signal_center_freq_min": -200_000, "signal_center_freq_max": 200_000,
           "frequency_min": -500_000, "frequency_max": 499_999, "snr_db_min": -10.0, "snr_db_max": 20.0})
gens = [lookup_signal_generator_by_string(c) for c in ("bpsk", "qpsk", "16qam", "2fsk", "am-dsb")]
ds = TorchSigIterableDataset(signal_generators=gens, metadata=md, target_labels=None, seed=seed)
loader = WorkerSeedingDataLoader(ds, batch_size=32, num_workers=0, collate_fn=identity_collate_fn, seed=seed)
W = {"HDF5Writer": HDF5Writer, "PackedHDF5Writer": PackedHDF5Writer,
     "HomogeneousHDF5Writer": HomogeneousHDF5Writer}[writer]
DatasetCreator(dataloader=loader, dataset_length=n, root=root, overwrite=True, file_handler=W).create()
'''

DUMP = r'''
import sys
import numpy as np
from torchsig.datasets.datasets import StaticTorchSigDataset, apply_label_to_signal
from torchsig.utils.file_handlers import HDF5Reader, PackedHDF5Reader, HomogeneousHDF5Reader
root, writer, out = sys.argv[1], sys.argv[2], sys.argv[3]
R = {"HDF5Writer": HDF5Reader, "PackedHDF5Writer": PackedHDF5Reader, "HomogeneousHDF5Writer": HomogeneousHDF5Reader}
ds = StaticTorchSigDataset(root, file_handler_class=R[writer], target_labels=None)
data, names, snrs, rates = [], [], [], []
for i in range(len(ds)):
    s = ds[i]
    data.append(np.asarray(s.data))
    (name,) = apply_label_to_signal(s, "class_name")
    (snr,) = apply_label_to_signal(s, "snr_db")
    names.append(str(name)); snrs.append(float(snr)); rates.append(float(s["sample_rate"]))
np.savez(out, data=np.stack(data), names=np.array(names), snr=np.array(snrs, np.float64),
         rate=np.array(rates, np.float64), class_names=np.array([str(c) for c in ds[0]["class_names"]]))
'''


def _run(cmd, env=None) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd[:4]))} failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def compare(npz: Path, truth: Path) -> dict:
    with np.load(npz, allow_pickle=False) as z:
        x, y, classes, exact = z["x"], z["y"], [str(c) for c in z["classes"]], z["snr_exact"]
        meta = json.loads(str(z["meta"]))
    with np.load(truth, allow_pickle=False) as t:
        data, names, snr, rate, tnames = t["data"], t["names"], t["snr"], t["rate"], list(t["class_names"])
    same_x = x.shape == (len(data), 2, data.shape[1]) and np.array_equal(x[:, 0], data.real.astype(np.float32)) \
        and np.array_equal(x[:, 1], data.imag.astype(np.float32)) and data.dtype == np.complex64
    return {"frames": int(len(data)), "length": int(data.shape[1]),
            "frames_equal": bool(same_x),
            "labels_equal": bool(len(y) == len(names) and all(classes[int(a)] == b for a, b in zip(y, names))),
            "class_order_equal": classes == tnames,
            "snr_equal": bool(np.array_equal(exact, snr)),
            "sample_rate_equal": bool(np.all(rate == meta.get("sample_rate"))),
            "distinct_snr": int(len(np.unique(snr))), "snr_bin_db": meta.get("snr_bin_db")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torchsig-python", default=sys.executable)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", dest="json", default="bench-out/torchsig.json")
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), EDGEPRUNE_QUIET="1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for writer in LAYOUTS:
            folder, npz, truth = Path(tmp) / writer, Path(tmp) / f"{writer}.npz", Path(tmp) / f"{writer}.truth.npz"
            gen_s = _run([args.torchsig_python, "-c", GENERATE, str(folder), writer, str(args.frames),
                          str(args.length), str(args.seed)])
            conv_s = _run([sys.executable, "-m", "edgeprune", "data", "convert", str(folder), "--out", str(npz)],
                          env)
            _run([args.torchsig_python, "-c", DUMP, str(folder), writer, str(truth)])
            row = {"layout": writer, **compare(npz, truth), "generate_s": round(gen_s, 2),
                   "convert_s": round(conv_s, 2)}
            rows.append(row)
    keys = ("layout", "frames", "length", "frames_equal", "labels_equal", "class_order_equal", "snr_equal",
            "sample_rate_equal", "distinct_snr", "snr_bin_db", "convert_s")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"rows": rows, "torchsig_python": args.torchsig_python, "frames": args.frames, "length": args.length,
           "seed": args.seed, "all_equal": all(r[k] for r in rows for k in keys[3:8])}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"all equal: {doc['all_equal']}; wrote {out}")
    return 0 if doc["all_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
