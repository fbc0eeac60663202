"""The bundle runner (run.py) on Python 3.6, 3.8 and this Python: per-call overhead against plain
ONNX Runtime on bound buffers (batch 1 and 64), cold start to the first prediction, and bundle size.

    python benchmarks/bench_runner.py [--calls1 2000] [--calls64 150] [--out bench-out/runner.json]

Model: ResNet20-1d, 11 classes, 2 x 128 I/Q frames (RML2016.10a's shape), untrained weights (latency does
not depend on them), bundled for jetson-nano (ONNX opset 13, which onnxruntime 1.10 on Python 3.6 loads);
its fp32 ONNX variant, 1 intra-op thread. Per Python (the cached venvs of tests/venvs.py for 3.6 / 3.8):

- ``plain``: ``session.run_with_iobinding`` on inputs and outputs bound once (the profiler's timed call);
- ``bench``: the runner's timed call (the backend's ``bind`` once, then ``timed()``, its own clock reads
  included), what ``run.py bench`` records; its overhead is ``bench - plain``;
- ``predict``: the runner's ``Model.predict`` on a numpy batch (checks, normalisation, ``session.run``
  with a numpy feed, softmax, argmax), what ``run.py predict`` does per batch; overhead ``predict - plain``.

The three alternate call by call (the order rotating; the machine may be shared); each figure is the
median of single calls, and each overhead the median of the call-by-call differences with ``plain``. Cold start: wall time of
``python run.py predict --input one-frame.npy`` (interpreter start, sha256 of every file, imports,
session, one prediction), median of 5 runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

# Runs inside each interpreter (Python 3.6+ syntax): loads the runtime from the bundle's own run.py.
WORKER = r'''
import importlib.util, json, sys, time
import numpy as np
bundle, calls1, calls64 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
spec = importlib.util.spec_from_file_location("bundle_run", bundle + "/run.py")
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)
run._install()
rt = __import__(run.PACKAGE + ".model", fromlist=["x"])
bench = __import__(run.PACKAGE + ".bench", fromlist=["x"])
manifest = __import__(run.PACKAGE + ".cli", fromlist=["x"]).open_verified(bundle)
import onnxruntime as ort
pc = getattr(time, "perf_counter_ns", None) or (lambda: int(time.perf_counter() * 1e9))
out = {"python": sys.version.split()[0], "numpy": np.__version__, "onnxruntime": ort.__version__, "batches": {}}
for batch, calls in ((1, calls1), (64, calls64)):
    model = rt.open_model(bundle, manifest, "onnxruntime", "fp32", 1, None)
    x = bench.input_array([batch, 2, model.length], np.float32, 0)
    # plain ONNX Runtime, bound buffers, the same session options
    so = __import__(run.PACKAGE + ".backend_onnxruntime", fromlist=["x"]).session_options(ort, 1)
    sess = ort.InferenceSession(model.model_path, sess_options=so, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"iq": x})
    b = sess.io_binding()
    vi = ort.OrtValue.ortvalue_from_numpy(x)
    vo = ort.OrtValue.ortvalue_from_shape_and_type(list(ref[0].shape), ref[0].dtype)
    b.bind_ortvalue_input("iq", vi)
    b.bind_ortvalue_output("logits", vo)
    runner = model.backend
    runner.bind(x)
    def plain():
        t0 = pc(); sess.run_with_iobinding(b); return pc() - t0
    def timed():  # timed from outside: the runner's whole per-call path, not only its inner interval
        t0 = pc(); runner.timed(); return pc() - t0
    def predict():
        t0 = pc(); model.predict(x, preprocess=True); return pc() - t0
    fns = [("plain", plain), ("bench", timed), ("predict", predict)]
    for _, f in fns:
        for _ in range(max(3, calls // 20)):
            f()
    res = {k: [] for k, _ in fns}
    for i in range(calls):  # the three alternate call by call; the order rotates
        for j in range(3):
            k, f = fns[(i + j) % 3]
            res[k].append(f())
    np.testing.assert_allclose(np.asarray(model.predict(x, preprocess=False)["probs"]).argmax(1),
                               np.asarray(ref[0]).argmax(1))
    med = lambda v: float(np.median(v)) / 1e3  # noqa: E731
    # the runner's own work alone, no model: input checks, softmax + argmax, and predict() on a stub backend
    frames = __import__(run.PACKAGE + ".frames", fromlist=["x"])
    z = model.backend.infer(x)
    class Stub(object):
        name = "stub"
        def infer(self, a):
            return z
        def describe(self):
            return {}
        def close(self):
            pass
    stub = rt.Model(Stub(), "stub", model.classes, model.normalization, model.length, "fp32")
    parts = {"checks": lambda: frames.check_frames(x, model.length),
             "softmax_argmax": lambda: frames.classify(z, model.classes),
             "predict_without_model": lambda: stub.predict(x),
             "numpy_feed_run": lambda: model.backend.infer(x)}
    alone = {}
    for k, f in parts.items():
        for _ in range(50):
            f()
        ts = []
        for _ in range(max(200, calls // 2)):
            t0 = pc(); f(); ts.append(pc() - t0)
        alone[k] = med(ts)
    out["batches"][str(batch)] = {
        "plain": med(res["plain"]), "bench": med(res["bench"]), "predict": med(res["predict"]),
        "bench_overhead": med(np.subtract(res["bench"], res["plain"])),
        "predict_overhead": med(np.subtract(res["predict"], res["plain"])), "calls": calls, "alone": alone}
    model.close()
print(json.dumps(out))
'''


def make_bundle_for_bench(folder: Path) -> Path:
    import torch

    from edgeprune.checkpoint import make_meta, save_checkpoint
    from edgeprune.models import build_model, make_spec
    from edgeprune.export.bundle import make_bundle

    spec = make_spec("resnet20-1d", 128, 11)
    torch.manual_seed(0)
    ck = folder / "resnet20-1d.pt"
    save_checkpoint(ck, spec, build_model(spec).state_dict(), make_meta(spec, [f"c{i}" for i in range(11)]))
    out = folder / "bundle"
    make_bundle(ck, "jetson-nano", out)
    import numpy as np

    np.save(folder / "one.npy", np.random.default_rng(0).standard_normal((1, 2, 128)).astype(np.float32))
    return out


def pythons() -> list[tuple[str, str]]:
    from venvs import device_venv

    out = []
    for v in ("3.6.15", "3.8.18"):
        try:
            out.append((v, str(device_venv(v))))
        except BaseException as exc:  # noqa: BLE001 - pytest.skip outside pytest: report and go on
            print(f"# Python {v}: no venv ({exc})", file=sys.stderr)
    out.append((sys.version.split()[0], sys.executable))
    return out


def env() -> dict:
    from venvs import clean_env

    return clean_env(OMP_NUM_THREADS="1")


def cold_start(py: str, bundle: Path, frames: Path, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run([py, str(bundle / "run.py"), "predict", "--input", str(frames)], capture_output=True,
                           text=True, env=env(), cwd="/")
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"run.py failed on {py}: {r.stderr.strip()}")
    return statistics.median(times)


def import_time(py: str) -> float:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([py, "-c", "import numpy, onnxruntime"], capture_output=True, env=env(), cwd="/", check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls1", type=int, default=2000, help="timed calls of each kind at batch 1")
    ap.add_argument("--calls64", type=int, default=150, help="timed calls of each kind at batch 64")
    ap.add_argument("--out", default=str(REPO / "bench-out" / "runner.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        bundle = make_bundle_for_bench(Path(tmp))
        sizes = {p.name: p.stat().st_size for p in sorted(bundle.iterdir())}
        rows = []
        for version, py in pythons():
            r = subprocess.run([py, "-c", WORKER, str(bundle), str(args.calls1), str(args.calls64)], capture_output=True, text=True, env=env(), cwd="/")
            if r.returncode != 0:
                raise SystemExit(f"worker failed on Python {version}: {r.stderr.strip()[-800:]}")
            res = json.loads(r.stdout)
            res["cold_start_s"] = cold_start(py, bundle, Path(tmp) / "one.npy")
            res["import_numpy_onnxruntime_s"] = import_time(py)
            rows.append(res)
    print(f"{'python':<8} {'numpy':<7} {'ORT':<7} {'batch':>5} {'plain us':>9} {'bench us':>9} {'+bench':>7} "
          f"{'predict us':>10} {'+predict':>9}")
    for res in rows:
        for batch, t in res["batches"].items():
            print(f"{res['python']:<8} {res['numpy']:<7} {res['onnxruntime']:<7} {batch:>5} {t['plain']:>9.1f} "
                  f"{t['bench']:>9.1f} {t['bench_overhead']:>7.1f} {t['predict']:>10.1f} "
                  f"{t['predict_overhead']:>9.1f}")
    print("\nthe runner's own work timed alone (us per call): input checks, softmax+argmax, predict() on a stub "
          "backend (no model), and session.run with a numpy feed (the model included):")
    for res in rows:
        for batch, t in res["batches"].items():
            a = t["alone"]
            print(f"  Python {res['python']:<8} batch {batch:>3}: checks {a['checks']:.1f}, softmax+argmax "
                  f"{a['softmax_argmax']:.1f}, predict without model {a['predict_without_model']:.1f}, "
                  f"numpy-feed run {a['numpy_feed_run']:.1f} (bound: {t['plain']:.1f})")
    print("\ncold start of `python run.py predict --input one-frame.npy` (s), and of `import numpy, onnxruntime` alone:")
    for res in rows:
        print(f"  Python {res['python']:<8} {res['cold_start_s']:.2f} s   (imports alone {res['import_numpy_onnxruntime_s']:.2f} s)")
    total = sum(sizes.values())
    print("\nbundle (jetson-nano, ResNet20-1d 2x128, 11 classes): " +
          ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sizes.items()) + f"; total {total / 1024:.1f} KiB")
    doc = {"model": "resnet20-1d 2x128, 11 classes, jetson-nano bundle, fp32 ONNX, 1 thread",
           "units": "microseconds per call: medians of single calls; overheads are medians of call-by-call differences",
           "calls": {"1": args.calls1, "64": args.calls64},
           "pythons": rows, "bundle_bytes": sizes, "bundle_total_bytes": total,
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    from edgeprune.atomic import write_json

    write_json(Path(args.out), doc)
    print(f"# wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
