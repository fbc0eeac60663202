"""Hostile inputs, round 2 (issue 25, part b), as a user meets them: ``python -m edgeprune`` in forked children.

The same driver and limits as tests/robustness/test_subprocess.py (one interpreter start for every case,
RLIMIT_AS, RLIMIT_FSIZE, a timeout, descriptors 1 and 2 captured). Clean means exactly one
``edgeprune: error:`` line (or, for an intended success, exit 0 and an empty stderr), and each case's own
check of what is on disk afterwards: nothing written through a link, an existing recording kept, a
planted ``.pyc`` never run, no stage output of a study whose config has a typo.

- ``--annotate`` writes a new recording whole or not at all (existing recordings, links, folders, a data
  file left by an interrupted run, malformed input metadata) and, on a full disk (a 1 MiB tmpfs mounted in
  a user and mount namespace made by ``unshare -rm``; no root needed), names the output and leaves nothing;
- ``predict --input -`` with standard input closed;
- user code runs from the bytes that were hashed: a planted unchecked-hash ``__pycache__`` file never runs
  and no ``.pyc`` is written;
- plugins (``EDGEPRUNE_PLUGINS``): every failure is one line naming the plugin; files named ``random.py`` or
  ``json.py`` never shadow the standard modules;
- study configs: an unknown method, device profile or a hostile ``[profile] remote`` fail before the first
  stage (no stage output written);
- the ray executor under an address-space limit too small for a local Ray: one line saying so, at once.
"""

from __future__ import annotations

import json
import os
import py_compile
import shutil
import subprocess
from importlib.util import cache_from_source
from pathlib import Path

import numpy as np
import pytest

from .tally import record
from .test_subprocess import _run_driver, _sigmf, driver_command, judge

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------- builders

def _recording(d: Path, name: str, n: int) -> Path:
    z = (np.random.default_rng(n).standard_normal(n) + 1j * np.random.default_rng(n + 1).standard_normal(n))
    return _sigmf(d, name, samples=z.astype(np.complex64))


def _data(meta: Path) -> Path:
    return meta.with_suffix(".sigmf-data")


def _annotations(meta: Path) -> int:
    return len(json.loads(meta.read_text())["annotations"])


def _study_config(d: Path, name: str, extra: str) -> Path:
    p = d / f"{name}.toml"
    p.write_text('[data]\nsynth = "rml2016.10a"\nper_key = 2\nlength = 64\nsnrs = [10]\n'
                 '[model]\nname = "resnet20-1d"\n[train]\nepochs = 1\n[finetune]\nepochs = 1\n' + extra)
    return p


USER_NET = '''
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        self.c1 = nn.Conv1d(2, 8, 3, padding=1)
        self.c2 = nn.Conv1d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.c2(self.c1(x).relu()).relu()
        return self.fc(self.pool(x).flatten(1))
'''


def _user_code(d: Path, shared) -> tuple[Path, Path, Path]:
    """(checkpoint, allowed code file with a planted unchecked-hash .pyc beside it, where the .pyc would write)."""
    from edgeprune.importing import import_model

    code_dir = d / "usercode"
    code_dir.mkdir()
    code = code_dir / "nets.py"
    code.write_text(USER_NET)
    ckpt = d / "user.pt"
    import_model(f"{code}:Net", shared["data"], ckpt)
    marker = d / "planted-pyc-ran.txt"
    evil = d / "evil_src" / "nets.py"
    evil.parent.mkdir()
    evil.write_text(USER_NET + f"\nopen({str(marker)!r}, 'w').write('the planted .pyc ran')\n")
    py_compile.compile(str(evil), cfile=cache_from_source(str(code)), doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return ckpt, code, marker


# ----------------------------------------------------------------------------------------- the cases

def _annotate_cases(d: Path, shared, add) -> None:
    A = "annotate: whole or not at all"
    bundle = shared["bundle"]
    src = _recording(d, "capture", 1024)
    frames = 1024 // shared["length"]
    out = d / "ann"
    out.mkdir()
    kept = _recording(out, "kept", 192)  # the user's other recording
    add(A, "onto an existing recording", ["predict", bundle, "--input", src, "--annotate", kept],
        match=r"exists.*--force", same=[kept, _data(kept)])
    os.symlink(d / "nowhere" / "made-by-link.sigmf-data", out / "dangling.sigmf-data")
    add(A, "OUT.sigmf-data a dangling symlink", ["predict", bundle, "--input", src, "--annotate",
                                                 out / "dangling.sigmf-meta"],
        match="symbolic link", absent=[d / "nowhere", out / "dangling.sigmf-meta"])
    (d / "secret.txt").write_text("the user's")
    os.symlink(d / "secret.txt", out / "linked.sigmf-meta")
    add(A, "OUT.sigmf-meta a symlink to a file", ["predict", bundle, "--input", src, "--annotate",
                                                  out / "linked.sigmf-meta", "--force"],
        match="symbolic link", same=[d / "secret.txt"], absent=[out / "linked.sigmf-data"])
    (out / "folder.sigmf-meta").mkdir()
    add(A, "OUT.sigmf-meta a folder", ["predict", bundle, "--input", src, "--annotate", out / "folder.sigmf-meta",
                                       "--force"], match="folder", absent=[out / "folder.sigmf-data"])
    (out / "half.sigmf-data").write_bytes(_data(src).read_bytes()[:1000])  # an interrupted run's leftover
    add(A, "a half-written pair (data only, truncated) is not reused", ["predict", bundle, "--input", src,
                                                                        "--annotate", out / "half.sigmf-meta"],
        match=r"exists.*--force", absent=[out / "half.sigmf-meta"])
    redo = _recording(out, "redo", 192)
    (out / "redo.sigmf-data").write_bytes(_data(src).read_bytes()[:1000])
    add(A, "--force replaces a recording (truncated data) whole (intended success)",
        ["--quiet", "predict", bundle, "--input", src, "--annotate", redo, "--force", "--json"], expect="ok",
        whole=(redo, _data(src), frames))
    ext = _sigmf(d, "ext-string", extra_global={"core:extensions": "edgeprune"})
    add(A, "input core:extensions is a string", ["predict", bundle, "--input", ext, "--annotate",
                                                 out / "from-ext.sigmf-meta"],
        match="core:extensions", absent=[out / "from-ext.sigmf-meta", out / "from-ext.sigmf-data"])
    add(A, "predict --input - with standard input closed", ["predict", bundle, "--input", "-", "--format", "cf32"],
        match="standard input is closed", stdin="closed")


def _code_cases(d: Path, shared, add) -> None:
    C = "code trust"
    ckpt, code, marker = _user_code(d, shared)
    add(C, "planted unchecked-hash __pycache__ beside the allowed file (intended success, the .pyc never runs)",
        ["--quiet", "units", ckpt, "--code", code, "--json"], expect="ok", absent=[marker])
    clean = d / "usercode-clean"
    clean.mkdir()
    shutil.copy(code, clean / "nets.py")
    add(C, "no .pyc written for user code (intended success)",
        ["--quiet", "units", ckpt, "--code", clean / "nets.py", "--json"], expect="ok",
        absent=[clean / "__pycache__"])


def _plugin_cases(d: Path, shared, add) -> None:
    P = "plugins"
    pl = d / "plugins"
    pl.mkdir()
    (pl / "syntax.py").write_text("def broken(:\n")
    (pl / "raises.py").write_text("raise RuntimeError('plugin refuses')\n")
    (pl / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (pl / "blob.bin").write_bytes(bytes(range(256)) * 4)
    os.symlink(pl / "blob.bin", pl / "binary.py")
    os.symlink("/etc/hostname", pl / "textfile.py")
    for name, ref in (("syntax error", pl / "syntax.py"), ("module raising", pl / "raises.py"),
                      ("module calling sys.exit", pl / "exits.py"), ("symlink to a binary file", pl / "binary.py"),
                      ("symlink to a non-Python file", pl / "textfile.py")):
        add(P, name, ["models"], match=f"plugin {ref}", env={"EDGEPRUNE_PLUGINS": str(ref)})
    for ref in ("..", ".relmod", "os..path"):
        add(P, f"module name {ref!r}", ["models"], match=f"plugin {ref!r}".replace(".", r"\."),
            env={"EDGEPRUNE_PLUGINS": ref})
    (pl / "json.py").write_text("MARK = 'my plugin'\n")
    (pl / "random.py").write_text("MARK = 'my plugin'\n")
    add(P, "a plugin file named json.py (intended success)", ["--quiet", "models"], expect="ok",
        env={"EDGEPRUNE_PLUGINS": str(pl / "json.py")})
    add(P, "a plugin file named random.py (intended success)",
        ["--quiet", "data", "synth", "--preset", "rml2016.10a", "--per-key", "1", "--out", d / "o" / "synth.npz"],
        expect="ok", env={"EDGEPRUNE_PLUGINS": str(pl / "random.py")})


def _config_cases(d: Path, shared, add) -> None:
    S = "study config before the first stage"
    for name, extra, match in (
            ("a typo in [prune] methods", '[prune]\nmethods = ["layer", "chanel-l1"]\n', "unknown method 'chanel-l1'"),
            ("an unknown [profile] target", '[profile]\ntarget = "jetson-orin-nxx"\n', "unknown target"),
            ("[profile] remote with a leading -", '[profile]\ntarget = "x86-cpu"\nremote = "-oProxyCommand=id"\n',
             "remote"),
            ("[profile] remote with ;", '[profile]\ntarget = "x86-cpu"\nremote = "pi@board;id"\n', "remote"),
            ("[profile] remote with $()", '[profile]\ntarget = "x86-cpu"\nremote = "pi@$(id)"\n', "remote"),
            ("[profile] remote with backticks", '[profile]\ntarget = "x86-cpu"\nremote = "pi@`id`"\n', "remote"),
            ("[profile] ssh_config missing", '[profile]\ntarget = "x86-cpu"\nremote = "pi@board"\n'
                                             'ssh_config = "no-such-ssh-config"\n', "ssh_config")):
        cfg = _study_config(d, "cfg-" + "".join(c if c.isalnum() else "-" for c in name), extra)
        out = d / "o" / cfg.stem
        add(S, name, ["compare", "--config", cfg, "--out", out], match=match, absent=[out], timeout=120)


def _ray_cases(d: Path, shared, add) -> None:
    R = "ray executor"
    cfg = _study_config(d, "cfg-ray", "")
    out = d / "o" / "ray-under-limit"
    add(R, "a local Ray under the address-space limit (driver + 2 GiB)", ["compare", "--config", cfg, "--out", out,
                                                                          "--executor", "ray"],
        match="address-space limit", absent=[out])


def build_cases(d: Path, shared) -> list[dict]:
    cases: list[dict] = []

    def add(cls, name, argv, expect="error", match=None, **kw):
        cases.append({"class": cls, "name": f"{cls}: {name}", "argv": [str(a) for a in argv], "expect": expect,
                      "match": match, "cwd": str(d), **kw})

    (d / "o").mkdir()
    _annotate_cases(d, shared, add)
    _code_cases(d, shared, add)
    _plugin_cases(d, shared, add)
    _config_cases(d, shared, add)
    _ray_cases(d, shared, add)
    return cases


def _snapshot(case) -> dict:
    return {str(p): Path(p).read_bytes() for p in case.get("same", [])}


def after(case, before: dict) -> list[str]:
    """What the case's own checks find on disk afterwards (empty: as it should be)."""
    problems = []
    for p, data in before.items():
        if not Path(p).is_file() or Path(p).read_bytes() != data:
            problems.append(f"{p} changed")
    for p in case.get("absent", []):
        if os.path.lexists(p):
            problems.append(f"{p} exists")
    if case.get("whole"):
        meta, data, frames = case["whole"]
        if _data(meta).read_bytes() != data.read_bytes():
            problems.append(f"{_data(meta)} is not the input's samples, whole")
        if _annotations(meta) != frames:
            problems.append(f"{meta} holds {_annotations(meta)} annotations, not {frames}")
    return problems


def _judged(cases, results) -> dict:
    by_name = {r["name"]: r for r in results["results"]}
    out = {}
    for c in cases:
        res = by_name.get(c["name"])
        problems = (judge(c, res) + after(c, c.pop("_before"))) if res else ["the driver never ran it"]
        out[c["name"]] = (c, res, problems)
        detail = "; ".join(problems) or (res["stderr"].strip() or "success")
        record("subprocess", c["name"], not problems, detail, cls=c["class"],
               peak_rss=res["peak_rss"] if res else None, start_rss=res["start_rss"] if res else None,
               seconds=res["seconds"] if res else None)
    return out


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, shared):
    d = tmp_path_factory.mktemp("hostile2b")
    cases = build_cases(d, shared)
    for c in cases:
        c["_before"] = _snapshot(c)
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as a user runs it
    return _judged(cases, _run_driver(cases, d, environ=environ))


CLASSES = ("annotate: whole or not at all", "code trust", "plugins", "study config before the first stage",
           "ray executor")


@pytest.mark.parametrize("cls", CLASSES)
def test_every_case_clean(outcomes, cls):
    mine = {n: v for n, v in outcomes.items() if v[0]["class"] == cls}
    assert mine, f"no cases in class {cls}"
    bad = {n: p for n, (_, _, p) in mine.items() if p}
    assert not bad, "\n".join(f"{n}: {'; '.join(p)}" for n, p in bad.items())


# ----------------------------------------------------------------------------------------- a full disk

def _can_unshare() -> str | None:
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    r = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"unshare -rm is not permitted here: {r.stderr.strip()[:200]}"
    return None


def test_annotate_onto_a_full_disk(tmp_path, shared):
    """A 1 MiB tmpfs (made in a user and mount namespace) for a 2 MiB recording: one line naming the output, no
    file left on the tmpfs; a second run fails the same way (nothing half-written is reused)."""
    why = _can_unshare()
    if why:
        pytest.skip(why)
    src = _recording(tmp_path, "big", 1 << 18)  # 2 MiB of cf32 samples
    full = tmp_path / "full"
    full.mkdir()
    out = full / "labelled.sigmf-meta"
    cases = [{"class": "a full disk", "name": f"a full disk: --annotate onto a 1 MiB tmpfs ({i})", "cwd": str(tmp_path),
              "argv": ["predict", str(shared["bundle"]), "--input", str(src), "--annotate", str(out)],
              "expect": "error", "match": f"cannot write {full}/labelled.sigmf-(data|meta): No space left"}
             for i in ("first run", "second run")]
    cmd, env, results_path = driver_command(cases, tmp_path)
    listing = tmp_path / "listing.txt"
    script = (f"mount -t tmpfs -o size=1m tmpfs {full} && \"$@\"; rc=$?; ls -A {full} > {listing}; "
              f"df -k {full} | tail -1 >> {listing}; exit $rc")
    subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", *cmd], env=env, check=True, timeout=600)
    results = json.loads(results_path.read_text())["results"]
    left = listing.read_text().splitlines()
    assert len(results) == 2 and "tmpfs" in left[-1], (results, left)
    for c, res in zip(cases, results):
        problems = judge(c, res)
        record("subprocess", c["name"], not problems, "; ".join(problems) or res["stderr"].strip(), cls=c["class"],
               peak_rss=res["peak_rss"], start_rss=res["start_rss"], seconds=res["seconds"])
        assert not problems, (c["name"], problems, res["stderr"])
    assert left[:-1] == [], f"left on the full disk: {left[:-1]}"
