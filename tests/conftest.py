"""Shared fixtures: small datasets and checkpoints built in the real formats."""

from __future__ import annotations

import os

# One thread for every numeric library, in this process and its children, set before numpy is imported (OpenBLAS
# reads the variables when it loads; pytest and its plugins load no numpy before this file). The tests' networks and
# matrices are tiny, where a second thread only adds overhead and, with two pytest workers on two cores, spins
# waiting for a busy core: the reference tests' hand-written CKA (128 x 128 Gram products) took 14 times the CPU
# time with OpenBLAS's default of one thread per core, and each CLI child's second OpenMP thread only spun (the
# plugin and remote tests took 158 CPU-s with torch's default, 85 with one thread). Children (the CLI run as a user
# runs it, Ray's workers, torchrun) inherit the variables. The same reduction order on every machine, whatever its
# core count. Tests of --threads set their own count, which overrides them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("EDGEPRUNE_QUIET", "1")

import numpy as np  # noqa: E402 - after the thread counts above
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

try:
    import torch as _torch

    _torch.set_num_threads(1)
except ImportError:  # the device-side tests run without torch
    pass

# Property tests are deterministic in the README's test command: the "ci" profile derandomises hypothesis
# (examples derived from each test alone, no example database) and constraints.txt pins the hypothesis
# version, so every machine runs the same examples. `make fuzz` selects the "fuzz" profile: fresh random
# examples on every run, EDGEPRUNE_FUZZ_SCALE (default 10) times as many, failures printed with the
# falsifying example and a @reproduce_failure blob.
_QUIET_CHECKS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=_QUIET_CHECKS)
settings.register_profile("fuzz", derandomize=False, database=None, deadline=None, print_blob=True,
                          suppress_health_check=_QUIET_CHECKS)
HYPOTHESIS_PROFILE = os.environ.get("EDGEPRUNE_HYPOTHESIS", "ci")
settings.load_profile(HYPOTHESIS_PROFILE)


def fuzz_examples(n: int) -> int:
    """``n`` examples in the deterministic suite; EDGEPRUNE_FUZZ_SCALE x ``n`` under `make fuzz`."""
    if HYPOTHESIS_PROFILE != "fuzz":
        return n
    return n * max(1, int(os.environ.get("EDGEPRUNE_FUZZ_SCALE", "10")))


def make_toy_dataset(n_per_key: int = 24, classes: int = 4, length: int = 64, snrs=(0.0, 10.0), seed: int = 0):
    """A small, learnable dataset: class k is a tone at frequency (k+1)/16 plus noise.

    Unit amplitude (not L1-normalised) so that BatchNorm running statistics
    settle within the few optimiser steps a unit test can afford.
    """
    from edgeprune.data.dataset import SignalDataset

    rng = np.random.default_rng(seed)
    xs, ys, ss = [], [], []
    t = np.arange(length)
    for k in range(classes):
        for snr in snrs:
            phase = rng.uniform(0, 2 * np.pi, (n_per_key, 1))
            sig = np.exp(1j * (2 * np.pi * (k + 1) / 16 * t + phase))
            noise = (rng.normal(size=sig.shape) + 1j * rng.normal(size=sig.shape)) * 10 ** (-snr / 20) / np.sqrt(2)
            z = sig + noise
            frame = np.stack([z.real, z.imag], 1).astype(np.float32)
            xs.append(frame)
            ys.append(np.full(n_per_key, k))
            ss.append(np.full(n_per_key, snr))
    return SignalDataset(np.concatenate(xs), np.concatenate(ys), np.concatenate(ss),
                         [f"tone{k}" for k in range(classes)], {"source": "toy", "normalization": "none"})


@pytest.fixture
def toy_dataset():
    return make_toy_dataset()


@pytest.fixture
def toy_npz(tmp_path):
    from edgeprune.data.dataset import save_npz

    path = tmp_path / "toy.npz"
    save_npz(path, make_toy_dataset())
    return path


@pytest.fixture
def toy_checkpoint(tmp_path):
    """An untrained resnet20-1d checkpoint for the toy dataset (4 classes, L=64)."""
    import torch

    from edgeprune.checkpoint import make_meta, save_checkpoint
    from edgeprune.models import build_model, make_spec

    torch.manual_seed(0)
    spec = make_spec("resnet20-1d", 64, 4)
    model = build_model(spec)
    path = tmp_path / "toy.pt"
    save_checkpoint(path, spec, model.state_dict(), make_meta(spec, [f"tone{k}" for k in range(4)]))
    return path


# The files that take longest (docs/benchmarks.md, "The test suite"), collected first: pytest-xdist hands out whole
# files in collection order (--dist loadfile), so a long file started last would leave one worker running it alone
# at the end. Only the order of files changes; the tests within a file keep theirs.
SLOW_FILES_FIRST = [
    "study/test_ray_executor.py", "pruning/test_reference.py", "robustness/test_faults.py", "device/test_runner.py",
    "pruning/test_own_models_layer.py", "profiling/test_remote.py", "models/test_own_models.py",
    "pruning/test_channel_equivalence.py", "core/test_plugins.py", "robustness/test_subprocess.py",
    "pruning/test_matched_macs.py", "models/test_input_layout.py", "robustness/test_hostile_round2_b.py",
    "study/test_study.py", "robustness/test_hostile_round2_a.py", "study/test_stats.py",
    "training/test_train_cli.py", "study/test_study_coarse_targets.py",
]


def pytest_collection_modifyitems(session, config, items):
    here = os.path.dirname(os.path.abspath(__file__))
    rank = {os.path.join(here, name): i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(str(item.path), len(rank)))   # stable: the rest keep their order


class CliResult:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys):
    """``edgeprune ARGS`` in this process (as the console script runs it): exit code, stdout, stderr."""
    from edgeprune.cli.main import main

    def run(*args):
        capsys.readouterr()
        rc = main([*map(str, args), "--quiet"])
        out, err = capsys.readouterr()
        return CliResult(rc, out, err)
    return run


def own_models_folder(tmp_path_factory, prefix: str):
    """A folder holding the tests' own networks as ``nets.py`` (tests/user_models.py) and the toy dataset
    ``toy.npz``."""
    import shutil
    from pathlib import Path

    from edgeprune.data.dataset import save_npz

    tmp = tmp_path_factory.mktemp(prefix)
    shutil.copy(Path(__file__).parent / "user_models.py", tmp / "nets.py")
    save_npz(tmp / "toy.npz", make_toy_dataset())
    return tmp
