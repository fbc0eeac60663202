"""Data-parallel training: ``edgeprune train`` under torchrun with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from edgeprune.checkpoint import load_checkpoint
from edgeprune.data.dataset import save_npz
from edgeprune.training.distributed import init_from_env, launched_by_torchrun, state_dict_digest

from conftest import make_toy_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_torchrun_two_cpu_processes_give_one_checkpoint_with_matching_weights(tmp_path):
    save_npz(tmp_path / "d.npz", make_toy_dataset(n_per_key=20))
    out, dbg = tmp_path / "ddp.pt", tmp_path / "ranks"
    env = dict(os.environ, EDGEPRUNE_QUIET="1", OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "edgeprune", "train", "--data", str(tmp_path / "d.npz"),
           "--model", "resnet20-1d", "--epochs", "2", "--batch-size", "31", "--seed", "1", "--device", "cpu",
           "--out", str(out), "--ddp-debug-dir", str(dbg), "--json"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout[r.stdout.index("{"):])  # only rank 0 reports
    assert res["processes"] == 2 and r.stdout.count('"checkpoint"') == 1

    ck = load_checkpoint(out)
    ck.build()  # a valid checkpoint whose weights fit its spec
    assert ck.meta["lineage"][0]["processes"] == 2
    ranks = [json.loads((dbg / f"rank{i}.json").read_text()) for i in range(2)]
    assert [x["rank"] for x in ranks] == [0, 1] and all(x["backend"] == "gloo" and x["world_size"] == 2 for x in ranks)
    assert ranks[0]["digest"] == ranks[1]["digest"] == state_dict_digest(ck.state_dict)
    assert ranks[0]["val_acc"] == ranks[1]["val_acc"] == ck.meta["metrics"]["val_acc"]
    log = [json.loads(l) for l in (tmp_path / "ddp.pt.log.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in log] == [1, 2] and all(x["processes"] == 2 for x in log)
    assert not (tmp_path / "ddp.pt.state").exists()


def test_plain_run_is_single_process(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert not launched_by_torchrun()
    ctx = init_from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.backend, ctx.device, ctx.is_main) == (0, 1, None, "cpu", True)


def test_state_dict_digest_sees_every_bit():
    sd = {"a": torch.zeros(3), "b": torch.ones(2, dtype=torch.int64)}
    d = state_dict_digest(sd)
    assert d == state_dict_digest({k: v.clone() for k, v in sd.items()})
    sd2 = {"a": torch.tensor([0.0, 0.0, 1e-30]), "b": sd["b"]}
    assert state_dict_digest(sd2) != d
    assert state_dict_digest({"a": sd["a"], "c": sd["b"]}) != d
