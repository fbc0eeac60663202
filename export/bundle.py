"""Deploy bundles: a folder or ``.tar.gz`` with ONNX variants, an optional engine and manifest.json.

Making a bundle needs torch (it exports the checkpoint); opening one does not.
``open_bundle`` verifies every file's sha256 before anything uses it, refuses
unknown schema versions, missing or unlisted files, links, and archive
members that would land outside the extraction folder.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import platform
import shutil
import tarfile
import tempfile
import time
import weakref
import zlib
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeprune import __version__
from edgeprune.atomic import atomic_path, file_mode, read_json, write_json
from edgeprune.errors import EdgepruneError, require
from edgeprune.export.runtime.safeio import check_input, human, limit, open_input
from edgeprune.export.runtime.schema import parse_json
from edgeprune.models.modular import network_stats

from .runner_file import write_runner
from .runtime.manifest import (
    BUNDLE_KIND, MANIFEST, SCHEMA_VERSION, check_class_names, check_file_name, check_manifest, file_entry,
    verify_files as _verify)
from .targets import load_target

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
MAX_MEMBER_BYTES = 4 << 30


def _is_archive(path: Path) -> bool:
    return str(path).endswith(ARCHIVE_SUFFIXES)


def tool_versions() -> dict[str, str | None]:
    """Versions of the packages a bundle was made with (None when absent)."""
    out: dict[str, str | None] = {"edgeprune": __version__, "python": platform.python_version()}
    for dist in ("numpy", "torch", "onnx", "onnxruntime", "onnxsim", "onnxscript", "tensorrt"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# ------------------------------------------------------------------- make

def make_bundle(ckpt, target, out, precisions=None, engine=None, data=None, calib_data=None,
                calib_frames: int = 512, seed: int = 0, overwrite: bool = False, targets_dir=None,
                simplify: bool = True) -> dict[str, Any]:
    """Export ``ckpt`` for ``target`` and write a bundle folder or ``.tar.gz`` at ``out``.

    ``precisions`` defaults to the target's ONNX-exportable precisions (int8
    only when ``data``/``calib_data`` is given); ``engine`` adds a TensorRT
    engine (and its ``.json`` metadata when beside it); ``data`` measures
    each variant's accuracy on the checkpoint's test split; ``simplify=False``
    skips onnxsim. Returns the manifest.

    The steps: :func:`bundle_precisions`, then in a staging folder beside
    ``out`` :func:`export_variants`, :func:`add_engine`, the runner,
    :func:`bundle_manifest`, and last :func:`publish` (an atomic rename, or
    the archive written atomically).
    """
    require("torch", "making a bundle from a checkpoint (edgeprune bundle)", "pip install torch")
    from .onnx_export import _load_ckpt

    tgt = load_target(target, targets_dir)
    ck = _load_ckpt(ckpt, data)
    out = Path(out)
    if out.exists() and not overwrite and (out.is_file() or any(out.iterdir())):
        raise EdgepruneError(f"{out} already exists (remove it or pass --force)")
    precisions, skipped = bundle_precisions(tgt, precisions, data, calib_data)
    engine = Path(engine) if engine else None
    if engine is not None and not engine.is_file():
        raise EdgepruneError(f"engine file {engine} does not exist")

    from .runtime.frames import check_normalization

    check_normalization(ck.meta.get("normalization", "none"))

    check_class_names(ck.classes, f"checkpoint {ckpt}" if isinstance(ckpt, (str, os.PathLike)) else "the model")
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        variants = export_variants(ck, tgt, precisions, stage, data, calib_data, calib_frames, seed, simplify)
        if engine is not None:
            variants.append(add_engine(engine, stage, tgt))

        write_runner(stage)  # the bundle's own runner (Python 3.6+, numpy + ONNX Runtime or TensorRT)
        manifest = bundle_manifest(ck, tgt, precisions, variants, skipped, stage, data)
        check_manifest(manifest)
        write_json(stage / MANIFEST, manifest)
        publish(stage, out)
        return manifest
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def bundle_precisions(tgt, precisions, data, calib_data) -> tuple[list[str], dict[str, str]]:
    """The precisions to export (the target's by default, int8 only with data) and the skipped ones with why."""
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
    return precisions, skipped


def export_variants(ck, tgt, precisions, stage: Path, data, calib_data, calib_frames: int,
                    seed: int, simplify: bool = True) -> list[dict[str, Any]]:
    """Export ``model-<precision>.onnx`` into ``stage`` for each precision; their manifest entries."""
    from .onnx_export import export_checkpoint

    variants = []
    for prec in precisions:
        fname = f"model-{prec}.onnx"
        rep = export_checkpoint(ck, stage / fname, precision=prec, target=tgt, calib_data=calib_data,
                                verify_data=data, calib_frames=calib_frames, seed=seed, simplify=simplify)
        variants.append({"file": fname, "format": "onnx", "precision": prec, "opset": rep["opset"],
                         "exporter": rep["exporter"], "simplified": rep["simplified"], "notes": rep["notes"],
                         "accuracy": (rep["accuracy"] or {}).get("onnxruntime"),
                         "parity": {k: rep["parity"].get(k) for k in ("max_abs_diff", "argmax_agreement", "frames")},
                         "calibration": rep.get("calibration"),
                         **({"min_batch": rep["input"]["min_batch"]} if rep["input"].get("min_batch") else {})})
    return variants


def add_engine(engine: Path, stage: Path, tgt) -> dict[str, Any]:
    """Copy a prebuilt TensorRT engine (and its ``.json`` metadata beside it) into ``stage``; its manifest entry."""
    emeta_path = engine.with_name(engine.name + ".json")
    emeta = {}
    if emeta_path.is_file():
        from .runtime.backend_tensorrt import read_engine_metadata

        emeta = read_engine_metadata(engine)
        shutil.copyfile(emeta_path, stage / "model.engine.json")
    shutil.copyfile(engine, stage / "model.engine")
    prec = emeta.get("precision", tgt.default_precision)
    return {"file": "model.engine", "format": "tensorrt", "precision": prec,
            "metadata_file": "model.engine.json" if emeta else None,
            "tensorrt": emeta.get("tensorrt_version"), "device": emeta.get("device"),
            "profile": emeta.get("profile"), "accuracy": None}


def bundle_manifest(ck, tgt, precisions, variants, skipped, stage: Path, data) -> dict[str, Any]:
    """``manifest.json`` for the files now in ``stage`` (hashed here), the checkpoint's facts and the target."""
    from edgeprune.models.macs import MAC_DEFINITION

    from .runtime.frames import check_normalization, describe_normalization

    norm = check_normalization(ck.meta.get("normalization", "none"))
    onnx_variants = [v for v in variants if v["format"] == "onnx"]
    files = {p.name: file_entry(p) for p in sorted(stage.iterdir()) if p.is_file()}
    layers, units = _layer_counts(ck)
    default = tgt.default_precision if tgt.default_precision in precisions else precisions[0]
    min_batch = max([int(v.get("min_batch") or 1) for v in onnx_variants] + [1])   # the graphs' (run.py pads)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": BUNDLE_KIND,
        "model": ck.spec.get("name"),
        "classes": ck.classes,
        "input": {"name": "iq", "layout": ck.spec.get("layout") or "NCL", "channels": 2, "length": ck.length,
                  "dtype": "float32", **({"min_batch": min_batch} if min_batch > 1 else {})},
        "output": {"name": "logits", "classes": len(ck.classes)},
        "preprocessing": {"normalization": norm, "description": describe_normalization(norm)},
        "default_precision": default,
        "opset": onnx_variants[-1]["opset"] if onnx_variants else None,
        "macs": int(ck.meta.get("macs") or 0),
        "params": int(ck.meta.get("params") or 0),
        "weight_layers": layers,
        "units": units,
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


def publish(stage: Path, out: Path) -> None:
    """Move the finished ``stage`` folder to ``out`` (replacing an old bundle), or pack it into the archive ``out``.

    The bundle gets the modes of the user's umask (folders 0755, files 0644 under umask 022), not the 0700 of
    the temporary stage folder: it is copied to boards and read by other users."""
    with contextlib.suppress(OSError):  # a file system without modes (vfat) keeps what it has
        for p in stage.iterdir():
            if p.is_file() and not p.is_symlink():
                p.chmod(file_mode())
        stage.chmod(file_mode(folder=True))
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


def _layer_counts(ck) -> tuple[int | None, int | None]:
    """Weight layers (conv + linear) and prunable units of a checkpoint, as the profiler counts them."""
    try:
        st = network_stats(ck.spec)
        layers = ck.meta.get("weight_layers")
        return int(st["weight_layers"] if layers is None else layers), int(st["units"])
    except Exception:  # noqa: BLE001 - a user model without a zoo spec: the profiler counts from the ONNX graph
        return None, None


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


MAX_MEMBERS = 256


def _member_name(archive: Path, m) -> str | None:
    """The flat file name of a tar member after every structural check; None for the root folder entry."""
    name = m.name
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise EdgepruneError(f"refusing bundle {archive}: member {name[:80]!r} has an absolute path")
    parts = Path(name).parts
    if ".." in parts or "\\" in name:
        raise EdgepruneError(f"refusing bundle {archive}: member {name[:80]!r} would land outside the bundle folder")
    if m.issym() or m.islnk():
        raise EdgepruneError(f"refusing bundle {archive}: member {name[:80]!r} is a link "
                             f"(to {m.linkname[:80]!r}); bundles hold plain files only")
    if m.isdir():
        if name.strip("./"):
            raise EdgepruneError(f"refusing bundle {archive}: member {name[:80]!r} is a folder; bundles are flat")
        return None
    if not m.isfile():
        raise EdgepruneError(f"refusing bundle {archive}: member {name[:80]!r} is a device, FIFO or other special file")
    if m.sparse is not None:
        raise EdgepruneError(f"refusing bundle {archive}: member {name[:80]!r} is a sparse file")
    flat = name[2:] if name.startswith("./") else name
    check_file_name(flat, f"bundle {archive}")
    return flat


def _safe_extract(archive: Path, dest: Path) -> dict[str, Any]:
    """Check every member of ``archive`` against its manifest, then extract only the listed files.

    Nothing is written until the whole archive is checked: the manifest member
    is read (into memory, within the document size limit) and validated; every
    other member must be a plain file the manifest lists, with exactly the
    listed size, at most once; the declared sizes must add up within
    EDGEPRUNE_MAX_BUNDLE_BYTES. Then the listed members are copied out, each
    cut at its listed size. Returns the validated manifest.
    """
    cap, doc_cap = limit("bundle"), limit("doc")
    fh = open_input(archive, "bundle", "bundle")
    try:
        _prescan(fh, archive, cap)
        fh.seek(0)
    except BaseException:
        fh.close()
        raise
    try:
        tar = tarfile.open(fileobj=fh, mode="r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        fh.close()
        raise EdgepruneError(f"{archive} is not a readable tar.gz bundle: {_first_line(exc)}") from exc
    with fh, tar:
        manifest = None
        members: dict[str, tarfile.TarInfo] = {}
        total = 0
        try:
            while True:
                m = tar.next()
                if m is None:
                    break
                flat = _member_name(archive, m)
                if flat is None:
                    continue
                if flat in members:
                    raise EdgepruneError(f"refusing bundle {archive}: member {flat!r} appears twice")
                if len(members) >= MAX_MEMBERS:
                    raise EdgepruneError(f"refusing bundle {archive}: more than {MAX_MEMBERS} members")
                total += m.size
                if m.size > MAX_MEMBER_BYTES or total > cap:
                    raise EdgepruneError(f"refusing bundle {archive}: its members declare {human(total)}, over the "
                                         f"{human(min(cap, MAX_MEMBER_BYTES) if m.size > MAX_MEMBER_BYTES else cap)} "
                                         f"limit (EDGEPRUNE_MAX_BUNDLE_BYTES)")
                members[flat] = m
                if flat == MANIFEST:
                    if m.size > doc_cap:
                        raise EdgepruneError(f"refusing bundle {archive}: {MANIFEST} declares {human(m.size)}")
                    manifest_raw = tar.extractfile(m).read(m.size)
                    manifest = _parse_manifest(manifest_raw, archive)
                if manifest is not None:
                    for name, info in members.items():
                        _check_listed(archive, manifest, name, info)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise EdgepruneError(f"{archive} is not a readable tar.gz bundle (truncated or corrupt?): "
                                 f"{_first_line(exc)}") from exc
        if manifest is None:
            raise EdgepruneError(f"{archive} is not a bundle: it has no {MANIFEST}")
        missing = sorted(set(manifest["files"]) - set(members))
        if missing:
            raise EdgepruneError(f"bundle {archive} is incomplete: {missing[0]!r} is missing")
        with open(dest / MANIFEST, "xb") as out:
            out.write(manifest_raw)
        for flat, m in members.items():
            if flat == MANIFEST:
                continue
            target = dest / flat
            if target.resolve().parent != dest.resolve():
                raise EdgepruneError(f"refusing bundle {archive}: member {m.name!r} would land outside the bundle folder")
            try:
                src = tar.extractfile(m)
                with src, open(target, "xb") as out:
                    left = m.size
                    while left > 0:
                        chunk = src.read(min(left, 1 << 20))
                        if not chunk:
                            raise EOFError("unexpected end of data")
                        out.write(chunk)
                        left -= len(chunk)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                raise EdgepruneError(f"{archive}: cannot extract {flat!r} (truncated or corrupt?): "
                                     f"{_first_line(exc)}") from exc
    return manifest


_META_TYPES = (b"x", b"g", b"L", b"K")  # pax and GNU long-name headers: tarfile reads them whole into memory
MAX_META_HEADER = 1 << 20


def _prescan(fh, archive: Path, cap: int) -> None:
    """Walk the raw tar headers (through gzip if compressed) before tarfile does, refusing a pax or long-name
    header over 1 MiB (tarfile would read it into memory whole) and declared sizes over ``cap``."""
    head = fh.read(2)
    fh.seek(0)
    stream = gzip.GzipFile(fileobj=fh, mode="rb") if head == b"\x1f\x8b" else fh
    total = 0
    listed = None  # the manifest's files, once its member has gone by: later members are checked at their header
    doc_cap = min(limit_doc(), MAX_META_HEADER * 16)
    try:
        while True:
            block = stream.read(512)
            if len(block) < 512 or block == bytes(512):
                return
            raw_size = block[124:136]
            try:
                if raw_size[:1] in (b"\x80", b"\xff"):  # base-256 size
                    size = int.from_bytes(raw_size[1:], "big") if raw_size[:1] == b"\x80" else 1 << 96
                else:
                    size = int(raw_size.split(b"\0", 1)[0].strip() or b"0", 8)
            except ValueError:
                return  # not a tar header: tarfile reports it
            kind = block[156:157]
            if kind in _META_TYPES and size > MAX_META_HEADER:
                raise EdgepruneError(f"refusing bundle {archive}: a tar extended header declares {size} bytes")
            name = block[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
            name = name[2:] if name.startswith("./") else name
            if kind in (b"0", b"\0") and listed is not None and name != MANIFEST and "/" not in name:
                entry = listed.get(name)
                if not isinstance(entry, dict):
                    raise EdgepruneError(f"bundle {archive} holds a file the manifest does not list: {name[:80]!r}")
                if entry.get("size") != size:
                    raise EdgepruneError(f"bundle {archive}: {name!r} has {size} bytes, the manifest says "
                                         f"{entry.get('size')} (damaged or tampered with)")
            total += size
            if total > cap:
                raise EdgepruneError(f"refusing bundle {archive}: its members declare more than {human(cap)} "
                                     f"(EDGEPRUNE_MAX_BUNDLE_BYTES)")
            left = (size + 511) // 512 * 512
            if kind in (b"0", b"\0") and name == MANIFEST and size <= doc_cap:
                raw = stream.read(left)[:size]
                left = 0
                try:
                    doc = parse_json(raw, f"{archive}: {MANIFEST}")
                    listed = doc.get("files") if isinstance(doc, dict) and isinstance(doc.get("files"), dict) else None
                except EdgepruneError:
                    listed = None  # the full check after this one reports it
            while left > 0:
                got = len(stream.read(min(left, 1 << 20)))
                if not got:
                    return
                left -= got
    except (OSError, EOFError, zlib.error):
        return  # damaged compression: tarfile reports it in one line


def limit_doc() -> int:
    return limit("doc")


def _parse_manifest(raw: bytes, archive: Path) -> dict[str, Any]:
    doc = parse_json(raw, f"{archive}: {MANIFEST}")
    return check_manifest(doc, f"{archive}/{MANIFEST}")


def _check_listed(archive: Path, manifest: dict[str, Any], name: str, info) -> None:
    if name == MANIFEST:
        return
    entry = manifest["files"].get(name)
    if entry is None:
        raise EdgepruneError(f"bundle {archive} holds a file the manifest does not list: {name!r}")
    if info.size != entry["size"]:
        raise EdgepruneError(f"bundle {archive}: {name!r} has {info.size} bytes, the manifest says "
                             f"{entry['size']} (damaged or tampered with)")


def _first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (tarfile lists every method it tried, one per line)."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(":") if text else type(exc).__name__


def _read_manifest(root: Path, source: Path) -> dict[str, Any]:
    mpath = root / MANIFEST
    if not mpath.is_file() or mpath.is_symlink():
        raise EdgepruneError(f"{source} is not a bundle: it has no {MANIFEST}")
    manifest = read_json(mpath, f"{source}: {MANIFEST}")
    return check_manifest(manifest, f"{source}/{MANIFEST}")


def verify_bundle_files(root: Path, manifest: dict[str, Any], source: Path) -> None:
    """Check every listed file exists, is a plain file and matches its size and sha256; nothing unlisted
    (except the engine, its record and the timing cache that ``run.py build`` writes on the board).

    The one check, shared with the bundle's run.py (``edgeprune.export.runtime.manifest.verify_files``).
    """
    _verify(root, manifest, source)


def open_bundle(path: str | os.PathLike) -> Bundle:
    """Open a bundle folder or ``.tar.gz`` and verify it; archives extract into a fresh temporary folder."""
    source = Path(path)
    if not source.exists():
        raise EdgepruneError(f"bundle {source} does not exist")
    if source.is_dir():
        manifest = _read_manifest(source, source)
        verify_bundle_files(source, manifest, source)
        return Bundle(source, manifest, source)

    check_input(source, "bundle", "bundle")  # a regular file (tarfile.is_tarfile would block on a FIFO)
    if not (_is_archive(source) or tarfile.is_tarfile(source)):
        raise EdgepruneError(f"{source} is not a bundle (a folder with {MANIFEST} or a .tar.gz)")
    tmp = Path(tempfile.mkdtemp(prefix="edgeprune-bundle-"))
    try:
        manifest = _safe_extract(source, tmp)  # every member checked against the manifest before a byte is written
        verify_bundle_files(tmp, manifest, source)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(tmp, manifest, source, tempdir=tmp)
