"""Published AMR networks through every stage, the way a new user runs them (issue 24).

For each network of a manifest (benchmarks/real_networks.json: file, class, kwargs), with its model file taken
from a folder outside the project (the copies are not ours to ship): ``edgeprune import`` -> ``units`` ->
``prune`` with layer, dbp and channel-l1 at ``--target-macs 0.5`` -> ``finetune`` (1 epoch) -> ``export``
(parity at batch 1 and a larger batch) -> ``bundle`` (fp32, x86-cpu) -> the bundle's ``run.py predict``.
Every stage is the CLI in a fresh process; per stage it records pass/fail, the seconds and the error line.
Also: the MACs fraction reached, run.py's agreement with torch's predictions, and the ONNX Runtime speed-up at
batch 1 (one thread) of each pruned model over the unpruned one. Data: a tiny synthetic RML2016.10a-style set
(the point is whether the stages run, not accuracy).

    python benchmarks/bench_real_networks.py --models /work/ext/amr-nets [--manifest benchmarks/real_networks.json]
        [--per-key 8] [--only LABEL,...] [--target-macs 0.5] [--timeout 900] [--out bench-out/bench_real_networks.json]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeprune.atomic import write_json  # noqa: E402

METHODS = ("layer", "dbp", "channel-l1")
STAGES = ("import", "units") + tuple(f"{m}:{s}" for m in METHODS
                                     for s in ("prune", "finetune", "export", "bundle", "run.py"))


def run(cmd, timeout, env) -> dict:
    """One stage: ok, seconds, the error line (the last ``edgeprune: error:`` line, else the last stderr line),
    stdout. ``edgeprune ...`` runs the CLI's own entry point in this process (what the console script runs, without
    a new interpreter and torch import per stage, which on a shared 2-core machine cost more than the stages);
    anything else (the bundle's run.py) in a fresh process with ``timeout``."""
    t0 = time.time()
    if cmd[0] == "edgeprune":
        rc, stdout, stderr = _in_process([str(c) for c in cmd[1:]])
    else:
        try:
            p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=env,
                               cwd=ROOT)
        except subprocess.TimeoutExpired:
            return {"ok": False, "seconds": round(time.time() - t0, 1), "error": f"timed out after {timeout} s"}
        rc, stdout, stderr = p.returncode, p.stdout, p.stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("edgeprune: error:") or ln.startswith("error:")]
    out = {"ok": rc == 0, "seconds": round(time.time() - t0, 1), "stdout": stdout}
    if rc != 0:
        out["error"] = (errs or lines or [f"exit {rc}"])[-1][:400]
    return out


def _in_process(argv):
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from edgeprune.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:   # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
        except BaseException as exc:  # noqa: BLE001 - recorded as the stage's failure
            rc = 1
            err.write(f"crashed: {type(exc).__name__}: {exc}\n")
    return rc, out.getvalue(), err.getvalue()


def edgeprune(*args):
    return ["edgeprune", *args, "--quiet"]


def ort_batch1_ms(paths, iters: int) -> dict[str, float]:
    from edgeprune.profiling.harness import profile

    res = profile([str(p) for p in paths], backends=["onnxruntime"], batches=[1], threads=[1], warmup_iters=20,
                  warmup_ms=None, duration_ms=None, iters=iters, show_progress=False)
    return {Path(r["path"]).name: r["median_ms"] for r in res["records"]}


def torch_labels(ckpt, code, frames):
    """Labels of the checkpoint's torch model for ``frames`` (the reference run.py is compared with)."""
    import io
    from contextlib import redirect_stdout

    import torch

    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.usercode import allow

    allow(code)
    with redirect_stdout(io.StringIO()), torch.no_grad():
        model = load_checkpoint(ckpt).build().eval()
        return model(torch.from_numpy(frames)).argmax(1).tolist()


def one_method(net, method, base, file, work, data, frames_npy, frames, timeout, env, row, target="0.5"):
    """prune -> finetune -> export -> bundle -> run.py for one method; fills ``row`` and returns the ONNX path."""
    import numpy as np

    code = ["--code", str(file)]
    tag = work / f"{method}"
    st = row["stages"]
    r = st[f"{method}:prune"] = run(edgeprune("prune", "--model", base, "--method", method, "--target-macs", target,
                                              "--data", data, "--out", f"{tag}.pt", "--json", *code), timeout, env)
    if not r["ok"]:
        return None
    from edgeprune.checkpoint import load_checkpoint

    row["macs_fraction"][method] = round(load_checkpoint(f"{tag}.pt").meta["macs"] / row["macs"], 4)
    r = st[f"{method}:finetune"] = run(edgeprune("finetune", "--model", f"{tag}.pt", "--data", data, "--epochs",
                                                 "1", "--out", f"{tag}-ft.pt", "--threads", "1", *code), timeout, env)
    if not r["ok"]:
        return None
    r = st[f"{method}:export"] = run(edgeprune("export", "--model", f"{tag}-ft.pt", "--out", f"{tag}.onnx",
                                               "--json", *code), timeout, env)
    onnx = Path(f"{tag}.onnx") if r["ok"] else None
    r = st[f"{method}:bundle"] = run(edgeprune("bundle", "--model", f"{tag}-ft.pt", "--target", "x86-cpu", "--out",
                                               f"{tag}-bundle", "--precision", "fp32", "--force", *code), timeout, env)
    if not r["ok"]:
        return onnx
    r = st[f"{method}:run.py"] = run([sys.executable, f"{tag}-bundle/run.py", "predict", "--input", frames_npy,
                                      "--json"], timeout, env)
    if r["ok"]:
        got = [p["label"] for p in json.loads(r["stdout"])["predictions"]]
        want = torch_labels(f"{tag}-ft.pt", file, frames)
        row["runpy_agreement"][method] = float(np.mean(np.array(got) == np.array(want)))
        one = Path(frames_npy).with_name("one-frame.npy")   # a single frame: run.py and torch at batch 1
        np.save(one, frames[:1])
        r1 = run([sys.executable, f"{tag}-bundle/run.py", "predict", "--input", one, "--json"], timeout, env)
        row["runpy_one_frame"][method] = (r1["ok"] and json.loads(r1["stdout"])["predictions"][0]["label"] == want[0]
                                          ) or r1.get("error", False)
    return onnx


def one_network(net, models: Path, work: Path, data, frames_npy, frames, args, env) -> dict:
    file = models / net["file"]
    row = {"label": net["label"], "kind": net["kind"], "stages": {}, "macs_fraction": {}, "runpy_agreement": {},
           "runpy_one_frame": {}, "speedup_b1": {}}
    st = row["stages"]
    if not file.is_file():
        st["import"] = {"ok": False, "error": f"{file} is missing (copy it there; see the manifest)"}
        return row
    base = work / "base.pt"
    r = st["import"] = run(edgeprune("import", f"{file}:{net['object']}", "--data", data, "--out", base, "--kwargs",
                                     json.dumps(net.get("kwargs") or {}), "--json"), args.timeout, env)
    if not r["ok"]:
        return row
    doc = json.loads(r["stdout"])
    row.update(macs=doc["macs"], params=doc["params"], units=doc["units"], layout=doc.get("input_layout"))
    r = st["units"] = run(edgeprune("units", base, "--json", "--code", str(file)), args.timeout, env)
    if r["ok"]:
        row["removable"] = len(json.loads(r["stdout"]).get("removable", []))
    r = st["base:export"] = run(edgeprune("export", "--model", base, "--out", work / "base.onnx", "--code", str(file)),
                                args.timeout, env)
    onnx = {}
    for method in METHODS:
        onnx[method] = one_method(net, method, base, file, work, data, frames_npy, frames, args.timeout, env, row,
                                  str(args.target_macs))
    if st["base:export"]["ok"]:
        paths = [work / "base.onnx"] + [p for p in onnx.values() if p is not None]
        ms = ort_batch1_ms(paths, args.iters)
        row["ort_ms_b1"] = {"base": ms.get("base.onnx"), **{m: ms.get(p.name) for m, p in onnx.items() if p}}
        for m, p in onnx.items():
            if p is not None and ms.get(p.name) and ms.get("base.onnx"):
                row["speedup_b1"][m] = round(ms["base.onnx"] / ms[p.name], 3)
    for s in row["stages"].values():
        s.pop("stdout", None)
    return row


def table(rows) -> str:
    head = (f"{'network':<28} {'layout':<6} {'MMACs':>8} {'units':>5}  " + "  ".join(f"{m:<22}" for m in METHODS))
    lines = [head, f"{'':<28} {'':<6} {'':>8} {'':>5}  " + "  ".join(f"{'stages  MACs  speedup':<22}" for _ in METHODS),
             "-" * len(head)]
    for r in rows:
        cells = []
        for m in METHODS:
            mine = [v for k, v in r["stages"].items() if k.startswith(m + ":")]
            passed = sum(1 for v in mine if v["ok"])
            frac = r["macs_fraction"].get(m)
            sp = r["speedup_b1"].get(m)
            cells.append(f"{passed}/5  {frac if frac is not None else '-':<5} "
                         f"{(format(sp, '.2f') + 'x') if sp else '-':<6}")
        macs = f"{r['macs'] / 1e6:.2f}" if r.get("macs") else "-"
        lines.append(f"{r['label'][:28]:<28} {r.get('layout') or '-':<6} {macs:>8} {r.get('units', '-'):>5}  "
                     + "  ".join(f"{c:<22}" for c in cells))
    lines.append("(stages: prune, finetune, export, bundle, run.py predict passed of 5; MACs: fraction of the "
                 "unpruned; speedup: ONNX Runtime median at batch 1, one thread)")
    return "\n".join(lines)


def failures(rows) -> str:
    out = []
    for r in rows:
        for k, v in r["stages"].items():
            if not v["ok"]:
                out.append(f"{r['label'][:28]:<28} {k:<20} {v.get('error', '')[:300]}")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="/work/ext/amr-nets", help="folder holding the copied model files")
    ap.add_argument("--manifest", default=str(ROOT / "benchmarks" / "real_networks.json"))
    ap.add_argument("--per-key", type=int, default=8, help="frames per (class, SNR) of the synthetic data")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per run.py stage")
    ap.add_argument("--iters", type=int, default=200, help="ORT timed calls per model")
    ap.add_argument("--only", default=None, help="comma-separated labels (or files) to run")
    ap.add_argument("--target-macs", type=float, default=0.5, help="the MACs target of every prune (default 0.5)")
    ap.add_argument("--out", default="bench-out/bench_real_networks.json")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from edgeprune.data.dataset import save_npz
    from edgeprune.data.synth import generate

    torch.set_num_threads(1)
    git = [subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT).stdout.strip()
           for a in (["rev-parse", "--short", "HEAD"], ["rev-parse", "--abbrev-ref", "HEAD"], ["status", "--porcelain"])]
    commit, branch = git[0] + (" (with uncommitted changes)" if git[2] else ""), git[1]
    man = json.loads(Path(args.manifest).read_text())
    work = Path(tempfile.mkdtemp(prefix="bench-real-"))
    ds = generate("rml2016.10a", per_key=args.per_key, snrs=[10, 18], seed=0, progress=False, normalize="max",
                  length=int(man.get("length", 128)))
    data = work / "data.npz"
    save_npz(data, ds)
    frames = np.ascontiguousarray(ds.x[:: max(1, len(ds) // 32)][:32])
    frames_npy = work / "frames.npy"
    np.save(frames_npy, frames)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               EDGEPRUNE_QUIET="1", OMP_NUM_THREADS="1")
    wanted = set(args.only.split(",")) if args.only else None
    rows = []
    for i, net in enumerate(man["networks"]):
        if wanted and net["label"] not in wanted and net["file"] not in wanted:
            continue
        t0 = time.time()
        nwork = work / f"net{i}"
        nwork.mkdir()
        rows.append(one_network(net, Path(args.models), nwork, data, frames_npy, frames, args, env))
        rows[-1]["seconds"] = round(time.time() - t0, 1)
        print(f"done {net['label']} in {rows[-1]['seconds']} s", file=sys.stderr, flush=True)
        write_json(Path(args.out), {"benchmark": "bench_real_networks", "rows": rows, "partial": True})
    print(table(rows))
    print("\nrun.py predict on a single frame gives torch's class (per method; an error line where it failed):")
    for r in rows:
        print(f"{r['label'][:28]:<28} {r['runpy_one_frame'] or '-'}")
    print("\nfailed stages (the error line):")
    print(failures(rows) or "(none)")
    write_json(Path(args.out), {"benchmark": "bench_real_networks", "branch": branch, "commit": commit,
                                "manifest": str(args.manifest), "per_key": args.per_key, "frames": len(ds),
                                "methods": list(METHODS), "target_macs": args.target_macs, "rows": rows})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
