"""The device core (``export/runtime``) is the one implementation of what host and board both compute (issue 27).

Host and board are fed the same extreme frames (values near the float32 limit, their negatives, denormals, zeros,
a mixture) and must give bit-identical normalised frames, and refuse NaN/Inf with the same message:

- host paths: a SigMF capture read as a dataset (``edgeprune.data.sigmf_io.read_sigmf``) and an ``.npz`` loaded
  with ``load_dataset(normalize=...)``, the way training, evaluation and calibration frames are made;
- board path: a bundle's run.py (the text ``make_bundle`` writes), its embedded modules imported through its own
  import hook, cutting the same capture with its SigMF reader and preprocessing frames as ``Model.logits`` does
  (``check_frames`` then ``normalize``), in this Python and, when the venv exists, under Python 3.6 with
  numpy 1.19.5 (JetPack 4.6).

The expected values of the extreme frames are computed here independently (float64 arithmetic on the known
inputs): before the core held the one normaliser, the board computed scales in float32 and turned frames near
1e38 into zeros while the host did not.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from export_fixtures import embedded_module

L = 16
MODES = ("l1", "l2", "max", "none")
F32_MAX = float(np.finfo(np.float32).max)


def extreme_frames() -> np.ndarray:
    """(N, 2, L) float32 frames that stress the normaliser, each row's purpose named below."""
    rng = np.random.default_rng(27)
    x = np.zeros((9, 2, L), np.float32)
    x[0] = 1e38                                          # constant near the limit: the L1 sum overflows float32
    x[1] = -1e38
    x[2, 0] = F32_MAX                                    # the largest float32, I only
    x[3] = np.float32(1e-45)                             # the smallest denormal
    x[4] = (rng.standard_normal((2, L)) * 1e-40).astype(np.float32)   # random denormals
    # x[5] stays all zeros
    x[6] = rng.standard_normal((2, L)).astype(np.float32)              # an ordinary frame
    x[7] = rng.standard_normal((2, L)).astype(np.float32) * np.float32(1e-3)
    x[7, 0, 3] = 3e38                                    # one huge sample among small ones
    x[8] = (rng.standard_normal((2, L)) * 1e37).astype(np.float32)   # random, scale just above 1e37
    return x


def write_capture(path, x: np.ndarray):
    """``x``'s frames end to end as a cf32_le SigMF recording (one L-sample window per frame)."""
    from edgeprune.data.sigmf_io import write_sigmf

    z = np.empty(x.shape[0] * x.shape[2], np.complex64)
    z.real, z.imag = x[:, 0, :].reshape(-1), x[:, 1, :].reshape(-1)
    return write_sigmf(path, z, "cf32_le")


def host_frames(tmp_path, x: np.ndarray, mode: str) -> dict[str, np.ndarray]:
    from edgeprune.data.dataset import SignalDataset, save_npz
    from edgeprune.data.readers import load_dataset
    from edgeprune.data.sigmf_io import read_sigmf

    meta, _ = write_capture(tmp_path / f"cap-{mode}", x)
    npz = tmp_path / f"frames-{mode}.npz"
    save_npz(npz, SignalDataset(x, np.zeros(len(x), np.int64), np.zeros(len(x), np.float32), ["a"]))
    return {"sigmf": read_sigmf(meta, length=L, normalize=mode).x,
            "npz": load_dataset(npz, normalize=mode).x}


def board_frames(meta_path, mode: str) -> np.ndarray:
    """The capture as a bundle's run.py preprocesses it (its embedded modules, in this Python)."""
    frames, sigmf = embedded_module("frames"), embedded_module("sigmf")
    chunks = [c for _, c in sigmf.frame_chunks(str(meta_path), L, L, 4)]
    return frames.normalize(frames.check_frames(np.concatenate(chunks), L), mode)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype == np.float32 and a.shape == b.shape and np.array_equal(a.view(np.uint32),
                                                                                       b.view(np.uint32))


@pytest.mark.parametrize("mode", MODES)
def test_host_and_board_give_bit_identical_frames(tmp_path, mode):
    x = extreme_frames()
    host = host_frames(tmp_path, x, mode)
    board = board_frames(tmp_path / f"cap-{mode}.sigmf-meta", mode)
    assert same_bits(host["sigmf"], board) and same_bits(host["npz"], board)
    assert np.isfinite(board).all()
    # independent ground truth for the frames the float32 scales used to zero on the board
    mag = np.hypot(x[:, 0].astype(np.float64), x[:, 1].astype(np.float64))
    scale = {"l1": mag.sum(1), "l2": np.sqrt((mag ** 2).sum(1)), "max": mag.max(1), "none": np.ones(len(x))}[mode]
    for i in (0, 1, 2, 7, 8):
        want = x[i].astype(np.float64) / scale[i]
        # results below float32's smallest normal (frame 7's small samples) keep only a few bits: absolute there
        np.testing.assert_allclose(board[i], want, rtol=1e-6, atol=float(np.finfo(np.float32).tiny))
        assert np.abs(board[i]).max() > 0
    assert not board[5].any()                               # all-zero frames stay zero
    if mode == "l1":                                        # ~1 / (L sqrt 2), not 0
        assert board[0, 0, 0] == pytest.approx(1 / (L * np.sqrt(2)), rel=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_host_and_board_refuse_nan_and_inf_the_same_way(tmp_path, bad):
    from edgeprune.data.sigmf_io import read_sigmf
    from edgeprune.errors import EdgepruneError

    x = extreme_frames()
    x[6, 1, 5] = bad
    meta, _ = write_capture(tmp_path / "cap", x)
    with pytest.raises(EdgepruneError) as host:
        read_sigmf(meta, length=L, normalize="l1")
    board_error = embedded_module("errors").EdgepruneError
    assert board_error is not EdgepruneError                # run.py's own class: a real second path
    with pytest.raises(board_error) as board:
        board_frames(meta, "l1")
    assert str(host.value) == str(board.value) == "1 frame(s) contain NaN or Inf samples"


_BOARD_SCRIPT = r"""
import json, sys
import numpy as np
ns = {"__name__": "run_py"}
exec(compile(open(sys.argv[1]).read(), "run.py", "exec"), ns)
ns["_install"]()
from _edgeprune_runtime import frames, sigmf
out = {}
for mode in json.loads(sys.argv[3]):
    chunks = [c for _, c in sigmf.frame_chunks(sys.argv[2], int(sys.argv[4]), int(sys.argv[4]), 4)]
    x = frames.normalize(frames.check_frames(np.concatenate(chunks), int(sys.argv[4])), mode)
    out[mode] = x.view(np.uint32).ravel().tolist()
print(json.dumps({"numpy": np.__version__, "python": sys.version.split()[0], "bits": out}))
"""


def test_board_python36_gives_the_hosts_bits(tmp_path):
    """The same comparison with run.py under the board's own Python 3.6 and numpy 1.19.5 (skipped without the
    cached venv)."""
    from venvs import clean_env, device_venv, pyenv_python

    from edgeprune.export.runner_file import write_runner

    if pyenv_python("3.6.15") is None:
        pytest.skip("Python 3.6.15 is not installed (pyenv)")
    py = device_venv("3.6.15")
    x = extreme_frames()
    meta, _ = write_capture(tmp_path / "cap", x)
    run_py = write_runner(tmp_path)
    r = subprocess.run([str(py), "-c", _BOARD_SCRIPT, str(run_py), str(meta), json.dumps(MODES), str(L)],
                       capture_output=True, text=True, timeout=300, env=clean_env(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["python"].startswith("3.6.")
    for mode in MODES:
        (tmp_path / mode).mkdir()
        host = host_frames(tmp_path / mode, x, mode)
        board = np.asarray(doc["bits"][mode], np.uint32).view(np.float32).reshape(x.shape)
        assert same_bits(host["sigmf"], board), (mode, doc["numpy"])
        assert same_bits(host["npz"], board), (mode, doc["numpy"])


def test_file_sha256_refuses_what_the_host_refuses(tmp_path):
    """One ``file_sha256`` (the device core's): a FIFO is refused on the board as on the host, never opened."""
    import os

    from edgeprune.errors import EdgepruneError
    from edgeprune.export.runtime.safeio import file_sha256

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    board = embedded_module("safeio")
    with pytest.raises(EdgepruneError, match="FIFO"):
        file_sha256(fifo)
    with pytest.raises(embedded_module("errors").EdgepruneError, match="FIFO"):
        board.file_sha256(str(fifo))
    with pytest.raises(EdgepruneError, match="folder"):
        file_sha256(tmp_path)
    f = tmp_path / "f.bin"
    f.write_bytes(b"edgeprune")
    import hashlib

    assert file_sha256(f) == board.file_sha256(str(f)) == hashlib.sha256(b"edgeprune").hexdigest()
