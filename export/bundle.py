"""Deploy bundles: a folder or ``.tar.gz`` with ONNX variants, an optional engine and manifest.json.

Making a bundle needs torch (it exports the checkpoint); opening one does not.
``open_bundle`` verifies every file's sha256 before anything uses it, refuses
unknown schema versions, missing or unlisted files, links, and archive
members that would land outside the extraction folder.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tarfile
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from edgeprune import __version__
from edgeprune.atomic import atomic_path, read_json, write_json
from edgeprune.errors import EdgepruneError

from .manifest import (KIND, MANIFEST, SCHEMA_VERSION, check_file_name, file_entry,
                       sha256_file, validate_manifest)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
MAX_MEMBER_BYTES = 4 << 30


def _is_archive(path: Path) -> bool:
    return str(path).endswith(ARCHIVE_SUFFIXES)


def tool_versions() -> dict[str, str | None]:
    """Versions of the packages a bundle was made with (None when absent)."""
    from importlib import metadata

    out: dict[str, str | None] = {"edgeprune": __version__, "python": platform.python_version()}
    for dist in ("numpy", "torch", "onnx", "onnxruntime", "onnxsim", "onnxscript", "tensorrt"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# ------------------------------------------------------------------- make

def make_bundle(ckpt, target, out, precisions=None, engine=None, data=None, calib_data=None,
                calib_frames: int = 512, seed: int = 0, overwrite: bool = False, targets_dir=None) -> dict[str, Any]:
    """Export ``ckpt`` for ``target`` and write a bundle folder or ``.tar.gz`` at ``out``.

    ``precisions`` defaults to the target's ONNX-exportable precisions (int8
    only when ``data``/``calib_data`` is given); ``engine`` adds a TensorRT
    engine (and its ``.json`` metadata when beside it); ``data`` measures
    each variant's accuracy on the checkpoint's test split. Returns the manifest.
    """
    from edgeprune.errors import require

    require("torch", "making a bundle from a checkpoint (edgeprune bundle)", "pip install torch")
    from edgeprune.checkpoint import load_checkpoint
    from edgeprune.models.macs import MAC_DEFINITION

    from .onnx_export import export_checkpoint
    from .preprocess import check_normalization, describe
    from .targets import load_target

    tgt = load_target(target, targets_dir)
    from edgeprune.checkpoint import Checkpoint

    if isinstance(ckpt, Checkpoint):
        ck = ckpt
    elif isinstance(ckpt, (str, os.PathLike)):
        ck = load_checkpoint(ckpt)
    else:  # a live nn.Module: classes and length from the data
        from edgeprune.models.own import as_checkpoint

        ck = as_checkpoint(ckpt, data)
    out = Path(out)
    if out.exists() and not overwrite and (out.is_file() or any(out.iterdir())):
        raise EdgepruneError(f"{out} already exists (remove it or pass --force)")
    skipped: dict[str, str] = {}
    if precisions is None:
        precisions = list(tgt.precisions)
        if "int8" in precisions and data is None and calib_data is None:
            precisions.remove("int8")
            skipped["int8"] = "no calibration data (give --data or --calib-data)"
    else:
        precisions = list(dict.fromkeys(precisions))
        bad = [p for p in precisions if p not in tgt.precisions]
        if bad:
            raise EdgepruneError(f"target {tgt.name} does not support {', '.join(bad)} "
                                 f"(it supports {', '.join(tgt.precisions)})")
    if not precisions:
        raise EdgepruneError("no precision left to bundle")
    engine = Path(engine) if engine else None
    if engine is not None and not engine.is_file():
        raise EdgepruneError(f"engine file {engine} does not exist")

    norm = check_normalization(ck.meta.get("normalization", "none"))
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        variants = []
        opset = None
        for prec in precisions:
            fname = f"model-{prec}.onnx"
            rep = export_checkpoint(ck, stage / fname, precision=prec, target=tgt, calib_data=calib_data,
                                    verify_data=data, calib_frames=calib_frames, seed=seed)
            opset = rep["opset"]
            variants.append({"file": fname, "format": "onnx", "precision": prec, "opset": rep["opset"],
                             "exporter": rep["exporter"],
                             "accuracy": (rep["accuracy"] or {}).get("onnxruntime"),
                             "parity": {k: rep["parity"].get(k) for k in ("max_abs_diff", "argmax_agreement", "frames")},
                             "calibration": rep.get("calibration")})
        if engine is not None:
            emeta_path = engine.with_name(engine.name + ".json")
            emeta = {}
            if emeta_path.is_file():
                try:
                    emeta = json.loads(emeta_path.read_text())
                except (OSError, UnicodeDecodeError, RecursionError, json.JSONDecodeError) as exc:
                    raise EdgepruneError(f"engine metadata {emeta_path} is not readable JSON: {_first_line(exc)}") from exc
                shutil.copyfile(emeta_path, stage / "model.engine.json")
            shutil.copyfile(engine, stage / "model.engine")
            prec = emeta.get("precision", tgt.default_precision)
            variants.append({"file": "model.engine", "format": "tensorrt", "precision": prec,
                             "metadata_file": "model.engine.json" if emeta else None,
                             "tensorrt": emeta.get("tensorrt_version"), "device": emeta.get("device"),
                             "profile": emeta.get("profile"), "accuracy": None})
        files = {p.name: file_entry(p) for p in sorted(stage.iterdir()) if p.is_file()}
        default = tgt.default_precision if tgt.default_precision in precisions else precisions[0]
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "model": ck.spec.get("name"),
            "classes": ck.classes,
            "input": {"name": "iq", "layout": "NCL", "channels": 2, "length": ck.length, "dtype": "float32"},
            "output": {"name": "logits", "classes": len(ck.classes)},
            "preprocessing": {"normalization": norm, "description": describe(norm)},
            "default_precision": default,
            "opset": opset,
            "macs": int(ck.meta.get("macs") or 0),
            "params": int(ck.meta.get("params") or 0),
            "mac_definition": MAC_DEFINITION,
            "accuracy": {v["precision"] + ("-engine" if v["format"] == "tensorrt" else ""): v["accuracy"]
                         for v in variants},
            "accuracy_data": str(data) if data else None,
            "skipped": skipped,
            "target": tgt.to_dict() | {"source": None},
            "variants": variants,
            "files": files,
            "source": {"checkpoint": str(ck.path), "sha256": ck.sha256(), "lineage": ck.meta.get("lineage", [])},
            "tools": tool_versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        validate_manifest(manifest)
        write_json(stage / MANIFEST, manifest)
        if _is_archive(out):
            with atomic_path(out, suffix=".tmp") as tmp:
                with tarfile.open(tmp, "w:gz") as tar:
                    for p in sorted(stage.iterdir()):
                        tar.add(p, arcname=p.name, recursive=False)
            shutil.rmtree(stage, ignore_errors=True)
        else:
            old = None
            if out.exists():
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                os.replace(out, old)
            os.replace(stage, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return manifest
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


# ------------------------------------------------------------------- open

class Bundle:
    """An opened, verified bundle: ``manifest``, ``root`` and ``path(name)`` for each verified file."""

    def __init__(self, root: Path, manifest: dict[str, Any], source: Path, tempdir: Path | None = None):
        self.root = root
        self.manifest = manifest
        self.source = source
        self._tempdir = tempdir
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(tempdir), True) if tempdir else None

    @property
    def files(self) -> dict[str, Path]:
        return {name: self.root / name for name in self.manifest["files"]}

    def path(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise EdgepruneError(f"bundle {self.source} has no file {name!r}")
        return self.root / name

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def normalization(self) -> str:
        return self.manifest["preprocessing"]["normalization"]

    @property
    def length(self) -> int:
        return int(self.manifest["input"]["length"])

    def variants(self, fmt: str | None = None) -> list[dict[str, Any]]:
        return [v for v in self.manifest["variants"] if fmt is None or v["format"] == fmt]

    def variant(self, precision: str | None = None, fmt: str = "onnx") -> dict[str, Any]:
        """The variant of ``precision`` (default: the bundle's default precision, else the first) in ``fmt``."""
        cands = self.variants(fmt)
        if not cands:
            raise EdgepruneError(f"bundle {self.source} has no {fmt} model")
        if precision is None:
            for v in cands:
                if v["precision"] == self.manifest.get("default_precision"):
                    return v
            return cands[0]
        for v in cands:
            if v["precision"] == precision:
                return v
        raise EdgepruneError(f"bundle {self.source} has no {precision} {fmt} model "
                             f"(it has {', '.join(v['precision'] for v in cands)})")

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _safe_extract(archive: Path, dest: Path) -> None:
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise EdgepruneError(f"{archive} is not a readable tar.gz bundle: {_first_line(exc)}") from exc
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError, zlib_error()) as exc:
            raise EdgepruneError(f"{archive} is not a readable tar.gz bundle (truncated or corrupt?): "
                                 f"{_first_line(exc)}") from exc
        seen = set()
        for m in members:
            name = m.name
            if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
                raise EdgepruneError(f"refusing bundle {archive}: member {name!r} has an absolute path")
            parts = Path(name).parts
            if ".." in parts or "\\" in name:
                raise EdgepruneError(f"refusing bundle {archive}: member {name!r} would land outside the bundle folder")
            if m.issym() or m.islnk():
                raise EdgepruneError(f"refusing bundle {archive}: member {name!r} is a link "
                                     f"(to {m.linkname!r}); bundles hold plain files only")
            if m.isdir():
                if name.strip("./"):
                    raise EdgepruneError(f"refusing bundle {archive}: member {name!r} is a folder; bundles are flat")
                continue
            if not m.isfile():
                raise EdgepruneError(f"refusing bundle {archive}: member {name!r} is a device, FIFO or other special file")
            flat = name[2:] if name.startswith("./") else name
            check_file_name(flat, f"bundle {archive}")
            if flat in seen:
                raise EdgepruneError(f"refusing bundle {archive}: member {flat!r} appears twice")
            seen.add(flat)
            if m.size > MAX_MEMBER_BYTES:
                raise EdgepruneError(f"refusing bundle {archive}: member {flat!r} is larger than 4 GiB")
        for m in members:
            if not m.isfile():
                continue
            flat = m.name[2:] if m.name.startswith("./") else m.name
            target = dest / flat
            if target.resolve().parent != dest.resolve():
                raise EdgepruneError(f"refusing bundle {archive}: member {m.name!r} would land outside the bundle folder")
            try:
                src = tar.extractfile(m)
                with src, open(target, "xb") as fh:
                    shutil.copyfileobj(src, fh)
            except (tarfile.TarError, OSError, EOFError, zlib_error()) as exc:
                raise EdgepruneError(f"{archive}: cannot extract {flat!r} (truncated or corrupt?): "
                                     f"{_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (tarfile lists every method it tried, one per line)."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(":") if text else type(exc).__name__


def zlib_error():
    import zlib

    return zlib.error


def _read_manifest(root: Path, source: Path) -> dict[str, Any]:
    mpath = root / MANIFEST
    if not mpath.is_file() or mpath.is_symlink():
        raise EdgepruneError(f"{source} is not a bundle: it has no {MANIFEST}")
    manifest = read_json(mpath, f"{source}: {MANIFEST}")
    return validate_manifest(manifest, f"{source}/{MANIFEST}")


def verify_files(root: Path, manifest: dict[str, Any], source: Path) -> None:
    """Check every listed file exists, is a plain file and matches its size and sha256; nothing unlisted."""
    listed = set(manifest["files"])
    for p in root.iterdir():
        if p.name == MANIFEST:
            continue
        if p.name not in listed:
            raise EdgepruneError(f"bundle {source} holds a file the manifest does not list: {p.name!r}")
    for name, entry in manifest["files"].items():
        p = root / name
        if p.is_symlink():
            raise EdgepruneError(f"bundle {source}: {name!r} is a symbolic link; bundles hold plain files only")
        if not p.is_file():
            raise EdgepruneError(f"bundle {source} is incomplete: {name!r} is missing")
        if p.stat().st_size != entry["size"]:
            raise EdgepruneError(f"bundle {source}: {name!r} has {p.stat().st_size} bytes, the manifest says "
                                 f"{entry['size']} (damaged or tampered with)")
        if sha256_file(p) != entry["sha256"]:
            raise EdgepruneError(f"bundle {source}: {name!r} does not match its sha256 in the manifest "
                                 f"(damaged or tampered with)")


def open_bundle(path: str | os.PathLike) -> Bundle:
    """Open a bundle folder or ``.tar.gz`` and verify it; archives extract into a fresh temporary folder."""
    source = Path(path)
    if not source.exists():
        raise EdgepruneError(f"bundle {source} does not exist")
    if source.is_dir():
        manifest = _read_manifest(source, source)
        verify_files(source, manifest, source)
        return Bundle(source, manifest, source)
    if not (_is_archive(source) or tarfile.is_tarfile(source)):
        raise EdgepruneError(f"{source} is not a bundle (a folder with {MANIFEST} or a .tar.gz)")
    tmp = Path(tempfile.mkdtemp(prefix="edgeprune-bundle-"))
    try:
        _safe_extract(source, tmp)
        manifest = _read_manifest(tmp, source)
        verify_files(tmp, manifest, source)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(tmp, manifest, source, tempdir=tmp)
