"""Shared helpers for the export/deploy tests: a small trained checkpoint, its dataset, a bundle.

Built once per test session (cached under pytest's base temp folder) so the
export test files do not each train a model.
"""

from __future__ import annotations

import os
import warnings
import sys
from pathlib import Path

CLASSES = 4
LENGTH = 64
REPO = Path(__file__).resolve().parents[1]


def export_onnx(name: str, path: Path, length: int = LENGTH, classes: int = CLASSES, seed: int = 0) -> Path:
    """A zoo model (untrained) exported the legacy way: input iq (N, 2, L), dynamic batch."""
    import torch

    from edgeprune.models import build_model, make_spec

    torch.manual_seed(seed)
    model = build_model(make_spec(name, length, classes)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 2, length), str(path), dynamo=False, opset_version=17,
                          input_names=["iq"], output_names=["logits"],
                          dynamic_axes={"iq": {0: "batch"}, "logits": {0: "batch"}})
    return path


def make_trained(tmp: Path, model: str = "resnet20-1d", epochs: int = 4, seed: int = 0,
                 normalization: str = "none"):
    """Write toy.npz and a briefly trained checkpoint into ``tmp``; return (ckpt, data).

    With ``normalization="l1"`` the data is L1-normalised per frame and says so in its meta.
    """
    import torch

    from conftest import make_toy_dataset
    from edgeprune.checkpoint import make_meta
    from edgeprune.data.dataset import save_npz
    from edgeprune.data.split import split_dataset
    from edgeprune.models import build_model, make_spec
    from edgeprune.training.trainer import TrainConfig, fit
    from edgeprune.export.runtime.frames import normalize

    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    ds = make_toy_dataset(n_per_key=24, classes=CLASSES, length=LENGTH, seed=seed)
    if normalization != "none":
        ds.x = normalize(ds.x, normalization) * 1.0
        ds.meta["normalization"] = normalization
    data = tmp / f"toy-{normalization}.npz"
    save_npz(data, ds)
    train, val, _ = split_dataset(ds, seed=0)
    torch.manual_seed(seed)
    spec = make_spec(model, LENGTH, CLASSES)
    net = build_model(spec)
    meta = make_meta(spec, ds.classes, normalization=normalization,
                     dataset={"path": str(data), "split": {"fractions": [0.6, 0.2, 0.2], "seed": 0}})
    ckpt = tmp / f"{model}-{normalization}.pt"
    lr = 3e-3 if normalization == "none" else 1e-2
    fit(net, spec, train, val, TrainConfig(epochs=epochs, batch_size=32, lr=lr, seed=seed, threads=1), ckpt, meta)
    return ckpt, data


def shared_trained(tmp_path_factory, normalization: str = "none"):
    """The session's trained resnet20-1d checkpoint and dataset (built on first use)."""
    base = tmp_path_factory.getbasetemp() / "export-shared"
    ckpt = base / f"resnet20-1d-{normalization}.pt"
    data = base / f"toy-{normalization}.npz"
    if ckpt.exists() and data.exists():
        return ckpt, data
    return make_trained(base, normalization=normalization)


def shared_bundle(tmp_path_factory):
    """A directory bundle (x86-cpu: fp32 + int8) of the shared checkpoint."""
    from edgeprune.export.bundle import make_bundle

    ckpt, data = shared_trained(tmp_path_factory)
    out = tmp_path_factory.getbasetemp() / "export-shared" / "bundle-x86"
    if not (out / "manifest.json").exists():
        make_bundle(ckpt, "x86-cpu", out, data=data, calib_frames=64)
    return out, ckpt, data


BLOCK_TORCH = '''
import sys

class _BlockTorch:
    """A meta-path finder that makes `import torch` fail, as on a board without torch."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked for this test ({name})")
        return None

sys.meta_path.insert(0, _BlockTorch())
'''


def no_torch_env(tmp: Path) -> dict[str, str]:
    """Environment whose Python cannot import torch (a sitecustomize on PYTHONPATH)."""
    site = Path(tmp) / "block-torch"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["EDGEPRUNE_QUIET"] = "1"
    return env


def edgeprune_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "edgeprune", *map(str, args)]


def embedded_module(name: str, run_py: str | None = None):
    """A module of the device core as a bundle's run.py serves it: run.py's text (``run_py``, else what
    ``make_bundle`` writes) executed not as ``__main__``, its own import hook installed, and the module imported
    from the embedded sources under run.py's package name (so it raises run.py's own ``EdgepruneError``)."""
    import importlib

    from edgeprune.export.runner_file import PACKAGE, render

    if PACKAGE not in sys.modules:
        ns = {"__name__": "edgeprune_bundle_run_py"}
        exec(compile(run_py or render(), "run.py", "exec"), ns)
        ns["_install"]()
    mod = importlib.import_module(f"{PACKAGE}.{name}")
    assert getattr(mod, "__file__", None) is None, "not the embedded copy"
    return mod
