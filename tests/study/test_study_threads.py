"""``--threads`` on the study commands (``compare``, ``demo``), with the meaning it has on every command that
computes: torch's intra-op threads of this process and ``[study] threads`` (the compute stages' threads)."""

from __future__ import annotations

import json

import pytest

from edgeprune.cli.main import build_parser, main
from study_configs import tiny_study

TINY = tiny_study(study={"name": "threads", "threads": 0}, data={"per_key": 4, "snrs": [18], "length": 32},
                  prune={"methods": ["channel-l1"]})


def test_every_computing_command_takes_threads():
    """The commands that train, evaluate, analyse, prune, export, profile or run a study all take --threads."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    lacking = []
    for name in ("train", "eval", "finetune", "analyze", "prune", "export", "bundle", "predict", "profile",
                 "compare", "demo"):
        if not any("--threads" in a.option_strings for a in sub.choices[name]._actions):
            lacking.append(name)
    assert lacking == []
    args = parser.parse_args(["compare", "--config", "c.toml", "--out", "o", "--threads", "2"])
    assert args.threads == 2 and args.torch_threads
    args = parser.parse_args(["demo", "--threads", "3"])
    assert args.threads == 3 and args.torch_threads


def test_threads_takes_effect_on_a_study(tmp_path, capsys):
    import torch

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "study"
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["compare", "--config", str(cfg), "--out", str(out), "--threads", "1", "--json", "-q"]) == 0
        capsys.readouterr()
        assert torch.get_num_threads() == 1
        res = json.loads((out / "results.json").read_text())
        assert res["study"]["study"]["threads"] == 1  # the compute stages were given one thread
        # demo with another config: the same study again, every stage reused, now recorded with two threads
        assert main(["demo", "--config", str(cfg), "--out", str(out), "--threads", "2", "--json", "-q"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["stages"]["ran"] == [] and torch.get_num_threads() == 2
        assert json.loads((out / "results.json").read_text())["study"]["study"]["threads"] == 2
        # without --threads the config's value holds
        assert main(["compare", "--config", str(cfg), "--out", str(out), "--json", "-q"]) == 0
        capsys.readouterr()
        assert json.loads((out / "results.json").read_text())["study"]["study"]["threads"] == 0
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("cmd", ["compare", "demo"])
def test_bad_threads_is_one_line_and_writes_nothing(tmp_path, capsys, cmd):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "study"
    rc = main([cmd, "--config", str(cfg), "--out", str(out), "--threads", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and err == ["edgeprune: error: --threads must be >= 1"] and not out.exists()
