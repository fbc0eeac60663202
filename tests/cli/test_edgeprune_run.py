"""run_edgeprune (tests/edgeprune_run.py), which many tests use instead of `python -m edgeprune` in a fresh
interpreter, answers as the fresh interpreter does: exit status, standard output and error, files written relative
to the folder it ran in, the environment it was given."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from edgeprune_run import run_edgeprune, with_repo_path


def _fresh(args, cwd, env):
    return subprocess.run([sys.executable, "-m", "edgeprune", *args], capture_output=True, text=True, cwd=cwd,
                          env=with_repo_path(env), timeout=300)


def test_a_forked_command_answers_as_a_fresh_interpreter(tmp_path):
    for name in ("fresh", "forked"):
        (tmp_path / name).mkdir()
    env = dict(os.environ, EDGEPRUNE_QUIET="1")
    args = ["data", "synth", "--per-key", "2", "--snr", "0", "--out", "rel.npz", "--json"]
    fresh = _fresh(args, tmp_path / "fresh", env)
    forked = run_edgeprune(*args, cwd=tmp_path / "forked", env=env)
    assert fresh.returncode == forked.returncode == 0, (fresh.stderr, forked.stderr)
    a, b = json.loads(fresh.stdout), json.loads(forked.stdout)
    for doc in (a, b):
        doc.pop("seconds"), doc.pop("examples_per_s"), doc.pop("out")
    assert a == b and fresh.stderr == forked.stderr == ""
    with np.load(tmp_path / "fresh" / "rel.npz") as x, np.load(tmp_path / "forked" / "rel.npz") as y:
        assert sorted(x.files) == sorted(y.files) and all(np.array_equal(x[k], y[k]) for k in x.files)

    # an error, from a variable of the environment given (a plugin that is not there): the same one line and status
    env = dict(os.environ, EDGEPRUNE_PLUGINS=str(tmp_path / "nope.py"))
    fresh = _fresh(["inspect", tmp_path / "x.pt"], tmp_path, env)
    forked = run_edgeprune("inspect", tmp_path / "x.pt", cwd=tmp_path, env=env)
    assert fresh.returncode == forked.returncode == 2
    assert fresh.stdout == forked.stdout == "" and fresh.stderr == forked.stderr
    assert fresh.stderr.startswith("edgeprune: error: plugin ") and fresh.stderr.count("\n") == 1
    # without the variable the forked child does not see it (its environment is the one given, not the server's)
    assert "plugin" not in run_edgeprune("inspect", tmp_path / "x.pt", cwd=tmp_path).stderr
