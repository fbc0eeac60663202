"""Hostile inputs, round 2 (issue 29 and part of issue 25), as a user meets them: ``python -m edgeprune`` in
forked children with limits (tests/robustness/forkrun.py, the driver and the judge of test_subprocess.py).

Covered here: the one JSON guard (ONNX metadata given as a list or nested 100,000 deep, an empty or
unordered batch profile, a plan that keeps no unit, results files nested too deeply), hostile boards
answering ``profile --remote`` (a fake ``ssh`` on PATH runs the "board" locally: a JSON list, ill-typed
records, an endless flood, hosts with shell metacharacters), manifests that ``run.py`` and ``predict`` must
refuse (the target as a string, the class order edited, class names with control characters), input edge
cases (``--kwargs`` nested 50,000 deep, ``seeds = [-1]``, 0 ms and ``machine`` as a list in ``--results``)
and reports (an image symlinked out of the study, raw HTML from results files, NaN). Each hostile case must
be exactly one ``edgeprune: error:`` line; cases that must succeed are checked by what they wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .tally import check_error_output, record
from .test_subprocess import VALID_TARGET, _config, _onnx_with_meta, _rewrite_manifest, _run_driver, _target, judge

DEEP = 100_000


def _deep(n: int) -> str:
    return "[" * n + "]" * n


def _nested(n: int):
    v: list = []
    for _ in range(n - 1):
        v = [v]
    return v


# ----------------------------------------------------------------------------------------- builders

def _ckpt_with_meta(src: Path, out: Path, change) -> Path:
    import torch

    obj = torch.load(src, map_location="cpu", weights_only=True)
    meta = json.loads(obj["meta"])
    change(meta)
    obj["meta"] = json.dumps(meta)
    torch.save(obj, out)
    return out


def _results(path: Path, **rec_changes) -> Path:
    rec = {"model": "m.onnx", "backend": "onnxruntime", "precision": "fp32", "batch": 1, "median_ms": 1.5,
           "sha256": "0" * 64}
    rec.update(rec_changes)
    path.write_text(json.dumps({"schema": 1, "kind": "edgeprune-latency-results", "machine": {},
                               "records": [rec], "skipped": []}))
    return path


def _fake_board(d: Path) -> tuple[dict, Path]:
    """A fake ``ssh`` (first on PATH) that runs the remote command here, logging every call, and a board
    python that answers ``run.py bench`` as $BOARD_MODE says (anything else: the real python)."""
    fakebin = d / "fakebin"
    fakebin.mkdir()
    ssh = fakebin / "ssh"
    ssh.write_text('#!/bin/sh\necho "$@" >> "$FAKE_SSH_LOG"\n'
                   'while [ $# -gt 0 ]; do if [ "$1" = "--" ]; then shift; shift; break; fi; shift; done\n'
                   'exec /bin/sh -c "$1"\n')
    board_py = d / "board-python3"
    junk = json.dumps({"records": [{"model": 5, "backend": "onnxruntime", "batch": "1"}]})
    board_list = json.dumps({"records": [{"model": "m", "backend": "onnxruntime", "precision": "fp32", "batch": 1,
                                         "median_ms": 1.0, "board": [1, 2]}]})
    board_py.write_text("#!/bin/sh\n"
                        'if [ "$1" = "run.py" ] && [ "$2" = "bench" ]; then\n'
                        '  case "$BOARD_MODE" in\n'
                        "    list) echo '[1, 2]'; exit 0;;\n"
                        f"    junk) echo '{junk}'; exit 0;;\n"
                        f"    boardlist) echo '{board_list}'; exit 0;;\n"
                        "    flood) exec yes;;\n"
                        "  esac\n"
                        "fi\n"
                        f'exec {sys.executable} "$@"\n')
    for p in (ssh, board_py):
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{fakebin}{os.pathsep}{os.environ.get('PATH', '')}", "FAKE_SSH_LOG": str(d / "ssh.log")}
    return env, board_py


def _report_study(d: Path, name: str, **changes) -> Path:
    """A study folder with a results.json ``report`` renders (two models, their latencies)."""
    folder = d / name
    folder.mkdir()
    res = {"study": {"study": {"name": "round2"}}, "models": [
        {"id": "baseline", "method": "baseline", "macs": 1_000_000, "params": 1000, "accuracy": 0.9},
        {"id": "layer-50", "method": "layer", "macs": 500_000, "params": 500, "accuracy": 0.85, "target": 0.5}],
        "latency": [{"model_id": "baseline", "backend": "onnxruntime", "batch": 1, "median_ms": 2.0,
                     "precision": "fp32", "threads": 1},
                    {"model_id": "layer-50", "backend": "onnxruntime", "batch": 1, "median_ms": 1.0,
                     "precision": "fp32", "threads": 1}], "notes": []}
    for key, value in changes.items():
        if key == "accuracy":
            res["models"][1]["accuracy"] = value
        else:
            res[key] = value
    (folder / "results.json").write_text(json.dumps(res))
    return folder


SECRET = "TOPSECRET-round2-a"


# ----------------------------------------------------------------------------------------- the cases

def _json_guard_cases(add, d: Path, shared, plan: Path, frames: Path):
    J = "JSON guard"
    meta_list = d / "meta-list.onnx"
    _onnx_with_meta(shared["onnx"], meta_list, **{"edgeprune.input": "[1, 2]"})
    add(J, "ONNX metadata edgeprune.input as a JSON list: predict", ["predict", meta_list, "--input", frames],
        match="edgeprune.input.*must be an object")
    meta_deep = d / "meta-deep.onnx"
    _onnx_with_meta(shared["onnx"], meta_deep, **{"edgeprune.input": _deep(DEEP)})
    add(J, "ONNX metadata nested 100,000 deep: predict", ["predict", meta_deep, "--input", frames], match="nested")
    add(J, "ONNX metadata nested 100,000 deep: profile", ["profile", meta_deep, "--iters", "2", "--warmup", "1"],
        match="nested")
    for name, profile in (("empty", "[]"), ("decreasing", "[8, 1]"), ("repeated", "[1, 1]")):
        folder = _target(d, f"profile-{name}", VALID_TARGET.format(name=f"profile-{name}")
                         + f"[batch]\nmax = 64\nprofile = {profile}\n")
        add(J, f"target batch.profile = {profile}: targets", ["targets", "--targets-dir", folder],
            match="batch.profile")
    doc = json.loads(plan.read_text())
    doc["kept_units"] = []
    empty_plan = d / "plan-empty.json"
    empty_plan.write_text(json.dumps(doc))
    add(J, "plan with kept_units = []: prune --plan", ["prune", "--model", shared["ckpt"], "--plan", empty_plan,
                                                      "--out", d / "o" / "empty.pt"], match="kept_units",
        absent=[str(d / "o" / "empty.pt")])
    deep_ck = _ckpt_with_meta(shared["ckpt"], d / "deep-meta.pt", lambda m: m.__setitem__("lineage", _nested(100)))
    add(J, "checkpoint metadata nested 100 deep: inspect", ["inspect", deep_ck], match="nested more than 64")
    cfg = _config(d, "cfg-results")
    deep_res = _results(d / "results-deep.json", machine={"a": _nested(100)})
    add(J, "--results nested 100 deep: compare", ["compare", "--config", cfg, "--out", d / "o" / "s-deep",
                                                  "--results", deep_res], match="nested more than 64",
        absent=[str(d / "o" / "s-deep")])


def _remote_cases(add, d: Path, bundle: Path):
    R = "hostile boards"
    env, board_py = _fake_board(d)
    base = ["profile", bundle, "--remote-python", board_py, "--remote-dir", d / "board-home", "--iters", "2",
            "--warmup", "1"]
    add(R, "honest board through the fake ssh (control)", [*base, "--remote", "board1", "--out",
                                                          d / "o" / "remote-ok.json", "-q"],
        expect="ok", env=dict(env, BOARD_MODE="honest"), written=[str(d / "o" / "remote-ok.json")])
    for mode, match in (("list", "must be an object"), ("junk", "records\\[0\\].model"),
                        ("boardlist", "board.*must be an object"), ("flood", "printed more than")):
        out = d / "o" / f"remote-{mode}.json"
        add(R, f"board answers bench with {mode}", [*base, "--remote", "board1", "--out", out],
            env=dict(env, BOARD_MODE=mode), match=match, absent=[str(out)])
    log = d / "ssh.log"
    for i, host in enumerate(("-oProxyCommand=id", "a;id", "$(id)", "`id`", "a|id", "a&&id", "user@-host",
                              "a b")):
        add(R, f"host {host!r} refused by edgeprune itself", [*base, f"--remote={host}"],
            env=dict(env, BOARD_MODE="honest", FAKE_SSH_LOG=str(d / f"ssh-host{i}.log")),
            match="expected user@host", absent=[str(d / f"ssh-host{i}.log")])
    return log


def _manifest_cases(add, d: Path, shared, frames: Path):
    M = "bundles and manifests"
    bundle = shared["bundle"]
    swapped = d / "bundle-swapped"
    shutil.copytree(bundle, swapped)
    _rewrite_manifest(swapped, lambda m: m["classes"].reverse())
    add(M, "manifest class order edited: predict", ["predict", swapped, "--input", frames], match="classes")
    tstr = d / "bundle-target-str"
    shutil.copytree(bundle, tstr)
    _rewrite_manifest(tstr, lambda m: m.__setitem__("target", "orin-nano"))
    add(M, "manifest target as a string: predict", ["predict", tstr, "--input", frames], match="target")
    ctrl = d / "bundle-ctrl"
    shutil.copytree(bundle, ctrl)
    _rewrite_manifest(ctrl, lambda m: m["classes"].__setitem__(0, "QPSK\n0\tforged\t1.0000"))
    add(M, "manifest class name with a newline and tabs: predict", ["predict", ctrl, "--input", frames],
        match="control characters")
    ck = _ckpt_with_meta(shared["ckpt"], d / "ctrl-classes.pt",
                         lambda m: m["classes"].__setitem__(1, "BPSK\n3\tforged\t0.9999"))
    out = d / "o" / "ctrl-bundle"
    add(M, "checkpoint class name with control characters: bundle", ["bundle", "--model", ck, "--target",
                                                                     "x86-cpu", "--out", out],
        match="control characters", absent=[str(out)])


def _edge_cases(add, d: Path, shared):
    E = "input edge cases"
    net = d / "net.py"
    net.write_text("import torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self, num_classes=4):\n"
                   "        super().__init__()\n        self.f = nn.Sequential(nn.Conv1d(2, 4, 3), "
                   "nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, num_classes))\n\n"
                   "    def forward(self, x):\n        return self.f(x)\n")
    add(E, "--kwargs nested 50,000 deep: train", ["train", "--model", f"{net}:Net", "--data", shared["data"],
                                                  "--epochs", "1", "--kwargs", '{"a": ' + _deep(50_000) + "}",
                                                  "--out", d / "o" / "kw.pt"], match="kwargs.*nested")
    cfg = _config(d, "cfg-seeds", "[study]\nseeds = [-1]")
    add(E, "[study] seeds = [-1]: compare", ["compare", "--config", cfg, "--out", d / "o" / "s-seeds"],
        match="seeds", absent=[str(d / "o" / "s-seeds")])
    ok_cfg = _config(d, "cfg-ok-r2")
    for name, res, match in (("0 ms latency", _results(d / "results-0ms.json", median_ms=0), "median_ms"),
                             ("machine as a list", _results(d / "results-mlist.json", machine=[1, 2]), "machine")):
        out = d / "o" / f"s-{res.stem}"
        add(E, f"--results with {name}: compare", ["compare", "--config", ok_cfg, "--out", out, "--results", res],
            match=match, absent=[str(out)])


def _report_cases(add, d: Path):
    P = "reports"
    secret = d / "secret.txt"
    secret.write_text(SECRET)
    leak = _report_study(d, "study-leak", images=["leak.png"])
    os.symlink(secret, leak / "leak.png")
    import base64

    b64 = base64.b64encode(SECRET.encode()).decode()[:16]
    add(P, "image symlinked out of the study: report", ["--quiet", "report", leak / "results.json"], expect="ok",
        lacks=[(str(leak / "report.html"), b64)])
    out = d / "o" / "report-copy"
    add(P, "image symlinked out of the study: report --out", ["--quiet", "report", leak, "--out", out],
        expect="ok", lacks=[(str(out / "report.html"), b64)], absent=[str(out / "leak.png")])
    html_study = _report_study(d, "study-html", notes=["<img src=x onerror=alert(1)>"],
                               study={"study": {"name": "<script>alert(1)</script>"}})
    add(P, "raw HTML in results.json: report.md escapes it", ["--quiet", "report", html_study], expect="ok",
        lacks=[(str(html_study / "report.md"), "<script>"), (str(html_study / "report.md"), "<img ")])
    nan = _report_study(d, "study-nan", accuracy=float("nan"))
    add(P, "NaN accuracy in results.json: report", ["report", nan], match="finite")


def build_round2_cases(d: Path, shared, plan: Path) -> list[dict]:
    cases: list[dict] = []

    def add(cls, name, argv, expect="error", match=None, **kw):
        cases.append({"class": cls, "name": f"{cls}: {name}", "argv": [str(a) for a in argv], "expect": expect,
                      "match": match, "cwd": str(d), **kw})

    frames = d / "frames.npy"
    np.save(frames, np.random.default_rng(0).standard_normal((6, 2, shared["length"])).astype(np.float32))
    _json_guard_cases(add, d, shared, plan, frames)
    _remote_cases(add, d, shared["bundle"])
    _manifest_cases(add, d, shared, frames)
    _edge_cases(add, d, shared)
    _report_cases(add, d)
    return cases


def more_problems(case: dict, res: dict) -> list[str]:
    """What a case wrote or must not have written: ``absent`` paths, ``written`` paths, ``lacks`` (file, text)."""
    problems = []
    for p in case.get("absent", []):
        if os.path.lexists(p):
            problems.append(f"{p} exists (written although refused, or a command ran)")
    for p in case.get("written", []):
        if not Path(p).is_file():
            problems.append(f"{p} was not written")
    for p, text in case.get("lacks", []):
        if not Path(p).is_file():
            problems.append(f"{p} was not written")
        elif text in Path(p).read_text(errors="replace"):
            problems.append(f"{p} holds {text!r}")
    return problems


@pytest.fixture(scope="module")
def plan(tmp_path_factory, shared):
    """A real plan of the shared checkpoint (edgeprune analyze)."""
    from edgeprune.cli.main import main

    out = tmp_path_factory.mktemp("round2-plan")
    assert main(["--quiet", "analyze", "--model", str(shared["ckpt"]), "--data", str(shared["data"]), "--out",
                 str(out), "--batches", "1", "--batch-size", "8", "--no-plots"]) == 0
    return out / "plan.json"


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, shared, plan):
    d = tmp_path_factory.mktemp("hostile-round2-a")
    (d / "o").mkdir()
    cases = build_round2_cases(d, shared, plan)
    results = _run_driver(cases, d)
    by_name = {r["name"]: r for r in results["results"]}
    out = {}
    for c in cases:
        res = by_name.get(c["name"])
        problems = (judge(c, res) + more_problems(c, res)) if res else ["the driver never ran it"]
        out[c["name"]] = (c, res, problems)
        record("subprocess", c["name"], not problems, "; ".join(problems) or (res["stderr"].strip() or "success"),
               cls=c["class"], peak_rss=res["peak_rss"] if res else None,
               start_rss=res["start_rss"] if res else None, seconds=res["seconds"] if res else None)
    return out


CLASSES = ("JSON guard", "hostile boards", "bundles and manifests", "input edge cases", "reports")


@pytest.mark.parametrize("cls", CLASSES)
def test_every_round2_case_clean(outcomes, cls):
    mine = {n: v for n, v in outcomes.items() if v[0]["class"] == cls}
    assert mine, f"no cases in class {cls}"
    bad = {n: p for n, (_, _, p) in mine.items() if p}
    assert not bad, "\n".join(f"{n}: {'; '.join(p)}" for n, p in bad.items())


def test_flooding_board_is_cut_at_the_cap(outcomes):
    """The flood is refused after about the document limit (64 MiB), not at the memory cap."""
    _, res, _ = outcomes["hostile boards: board answers bench with flood"]
    assert res["rc"] != 0 and not res["timed_out"]
    assert res["peak_rss"] - res["start_rss"] < 512 << 20


# ----------------------------------------------------------------------------------------- run.py on the board

def _run_py(folder: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(folder / "run.py"), *map(str, args)], cwd=folder,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=""))


def _trt_target(m: dict, **changes) -> None:
    target = {"name": "orin-nano", "backend": "tensorrt", "precisions": ["fp16", "fp32", "int8"], "tensorrt": "8.5",
              "workspace_mib": 1024, "batch": {"min": 1, "opt": 8, "max": 64, "profile": [1, 8, 64]}}
    for k, v in changes.items():
        if k.startswith("batch_"):
            target["batch"][k[6:]] = v
        else:
            target[k] = v
    m["target"] = target


RUNPY_CASES = {
    "target as a string: build": (lambda m: m.__setitem__("target", "orin-nano"), ["build", "--print"],
                                  "'target' must be an object"),
    "workspace_mib as a string: build": (lambda m: _trt_target(m, workspace_mib="1 GiB"), ["build", "--print"],
                                         "workspace_mib"),
    "batch.max as a string: build": (lambda m: _trt_target(m, batch_max="64"), ["build", "--print"],
                                     "batch.max"),
    "class order edited: check": (lambda m: m["classes"].reverse(), ["check"], "classes"),
    "class order edited: predict": (lambda m: m["classes"].reverse(), ["predict", "--input", "FRAMES"], "classes"),
}


@pytest.mark.parametrize("name", sorted(RUNPY_CASES))
def test_run_py_refuses_bad_manifests(shared, tmp_path, name):
    change, args, match = RUNPY_CASES[name]
    folder = tmp_path / "b"
    shutil.copytree(shared["bundle"], folder)
    _rewrite_manifest(folder, change)
    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((3, 2, shared["length"]), np.float32))
    r = _run_py(folder, *[str(frames) if a == "FRAMES" else a for a in args])
    problems = check_error_output(r.returncode, r.stderr, match)
    if "forged" in r.stdout or (args[0] == "predict" and r.stdout.strip()):
        problems.append("rows were printed")
    record("subprocess", f"bundles and manifests: run.py {name}", not problems, "; ".join(problems) or r.stderr,
           cls="bundles and manifests")
    assert not problems, (name, r.stderr, r.stdout[-500:])


def test_run_py_accepts_the_honest_manifest_and_a_valid_trt_target(shared, tmp_path):
    """Controls: the checks refuse only what is wrong (an unmodified bundle checks; a well-typed TensorRT target
    prints its trtexec line)."""
    folder = tmp_path / "b"
    shutil.copytree(shared["bundle"], folder)
    r = _run_py(folder, "check")
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    _rewrite_manifest(folder, _trt_target)
    r = _run_py(folder, "build", "--print", "--precision", "fp16")
    assert r.returncode == 0 and "--saveEngine=" in r.stdout, (r.stdout, r.stderr)


# ----------------------------------------------------------------------------------------- API level

def test_json_guard_depth_and_size_limits(monkeypatch):
    """The one guard: 64 levels pass, 65 do not (the limit raised: they do); a document over the size limit and
    a value of the wrong declared type are one line naming the document and the field."""
    from edgeprune.errors import EdgepruneError
    from edgeprune.export.runtime.schema import integer, obj, parse_json

    assert parse_json(json.dumps(_nested(64)), "doc") == _nested(64)
    with pytest.raises(EdgepruneError, match="doc is nested more than 64 levels"):
        parse_json(json.dumps(_nested(65)), "doc")
    monkeypatch.setenv("EDGEPRUNE_MAX_JSON_DEPTH", "100")
    assert parse_json(json.dumps(_nested(65)), "doc") == _nested(65)
    monkeypatch.setenv("EDGEPRUNE_MAX_DOC_BYTES", "100")
    with pytest.raises(EdgepruneError, match="over the 100 bytes limit.*EDGEPRUNE_MAX_DOC_BYTES"):
        parse_json(" " * 101 + "1", "doc")
    with pytest.raises(EdgepruneError, match=r"^f\.json: 'a\.b' must be an integer, not a string$"):
        parse_json('{"a": {"b": "1"}}', "f.json", obj(a=obj(b=integer())))


def test_onnx_metadata_read_without_onnx_matches_onnx(shared):
    """run.py's own protobuf reader of metadata_props gives what the onnx package gives, and the exporter's
    metadata passes the declared types (the guard refuses no honest file)."""
    import onnx

    from edgeprune.export.runtime.manifest import decode_metadata
    from edgeprune.export.runtime.onnx_external import read_metadata_props

    m = onnx.load(str(shared["onnx"]))
    mine = read_metadata_props(shared["onnx"])
    assert mine == {p.key: p.value for p in m.metadata_props} and "edgeprune.classes" in mine
    meta = decode_metadata(mine)
    assert meta["edgeprune.classes"] == json.loads((shared["bundle"] / "manifest.json").read_text())["classes"]


def test_table_text_escapes_what_could_forge_rows():
    from edgeprune.export.runtime.frames import table_text

    names = ["QPSK", "a\nb", "a\tb", "a\\nb", "x\u2028y", "\x1b[2J", "π/4-QPSK"]
    cells = [table_text(n) for n in names]
    assert all("\n" not in c and "\t" not in c and "\x1b" not in c and "\u2028" not in c for c in cells)
    assert len(set(cells)) == len(names)  # distinct names stay distinct ("a\nb" vs the text a\nb)
    assert cells[0] == "QPSK" and cells[-1] == "π/4-QPSK"


def test_remote_host_check():
    from edgeprune.errors import EdgepruneError
    from edgeprune.profiling.remote import parse_remote

    assert parse_remote("board") == (None, "board", None)
    assert parse_remote("nvidia@jetson-nano.local:2222") == ("nvidia", "jetson-nano.local", 2222)
    assert parse_remote("root@127.0.0.1") == ("root", "127.0.0.1", None)
    for bad in ("-oProxyCommand=x", "a;b", "$(id)", "`id`", "a b", "u@-h", "a|b", "a&b", "a>b", "u@h:0",
                "u@h:99999", "", "@h", "a'b", 'a"b', "a\nb"):
        with pytest.raises(EdgepruneError, match="--remote"):
            parse_remote(bad)


def _modes(root: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in [root, *root.iterdir()]}


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_bundle_modes_follow_the_umask(shared, tmp_path, mask):
    """A bundle folder, its files and a bundle archive get what a plain mkdir/open gives under the umask
    (0755/0644 under 022), not the 0700/0600 of temporary files."""
    import tarfile

    from edgeprune.export.bundle import publish

    old = os.umask(mask)
    try:
        for out in (tmp_path / "b", tmp_path / "b.tar.gz"):
            import tempfile

            stage = Path(tempfile.mkdtemp(dir=tmp_path))
            for p in shared["bundle"].iterdir():
                shutil.copyfile(p, stage / p.name)
                os.chmod(stage / p.name, 0o600)
            publish(stage, out)
            if out.is_dir():
                assert _modes(out) == {("dir", 0o777 & ~mask), ("file", 0o666 & ~mask)}
            else:
                assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
                with tarfile.open(out) as tar:
                    assert {m.mode for m in tar.getmembers()} == {0o666 & ~mask}
    finally:
        os.umask(old)


def test_shared_bundle_made_by_make_bundle_is_readable_by_others(shared):
    mask = os.umask(0)
    os.umask(mask)
    assert _modes(shared["bundle"]) == {("dir", 0o777 & ~mask), ("file", 0o666 & ~mask)}


def test_report_read_study_file_never_follows_links(tmp_path):
    from edgeprune.study.report_html import read_study_file

    (tmp_path / "a.png").write_bytes(b"png")
    (tmp_path / "out.txt").write_text(SECRET)
    os.symlink(tmp_path / "out.txt", tmp_path / "link.png")
    os.mkfifo(tmp_path / "fifo.png")
    assert read_study_file(tmp_path, "a.png") == b"png"
    for name in ("link.png", "fifo.png", "../a.png", "sub/a.png", "", "..", "missing.png"):
        assert read_study_file(tmp_path, name) is None, name
