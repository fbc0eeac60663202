"""Atomic file writes: a temporary file in the same folder, fsync, then rename.

A crash or a full disk leaves either the old file or the new one, never a
half-written artifact. Torch-free (used on the device side too).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import tempfile
from pathlib import Path

from edgeprune.export.runtime.compat import json_default
from edgeprune.export.runtime.safeio import read_bytes
from edgeprune.export.runtime.schema import parse_json

from .errors import EdgepruneError


def _check_parent(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgepruneError(f"cannot create folder {parent}: {exc.strerror or exc}") from exc
    if not os.access(parent, os.W_OK):
        raise EdgepruneError(f"cannot write to {parent}: permission denied")


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode(folder: bool = False) -> int:
    """The mode a plain ``open()``/``mkdir()`` gives under the user's umask: 0644/0755 under umask 022 (the
    temporary files and folders edgeprune renames into place are 0600/0700 until set to this)."""
    return (0o777 if folder else 0o666) & ~umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    ``suffix`` keeps an extension on the temporary name for writers that
    dispatch on it (np.savez adds ``.npz`` if missing, for instance).
    """
    path = Path(path)
    _check_parent(path)
    sfx = suffix if suffix is not None else "".join(path.suffixes) or ".tmp"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=sfx, dir=path.parent)
    except OSError as exc:
        raise EdgepruneError(f"cannot write {path}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
            with contextlib.suppress(OSError):  # a file system without modes (vfat) keeps what it has
                os.fchmod(fh.fileno(), file_mode())  # mkstemp made it 0600; a written file follows the umask
        os.replace(tmp_path, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        # a write that failed part-way (no space, file too large, I/O error): one clear line
        raise EdgepruneError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files a killed writer of ``path`` left beside it.

    Only names atomic_path makes are removed: ``.NAME.`` followed by the eight
    characters tempfile picks and an optional extension (``.model.pt.k2x9q0ab.pt``);
    a user's ``.model.pt.backup`` or ``.model.pt.orig`` is left alone. Call it only
    where no other process is writing ``path`` (e.g. when resuming a run that was
    killed). Returns the removed paths.
    """
    path = Path(path)
    removed = []
    pattern = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}(\.[A-Za-z0-9.]+)?")
    if path.parent.is_dir():
        for p in path.parent.glob(f".{glob_escape(path.name)}.*"):
            if pattern.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
    return removed


def glob_escape(name: str) -> str:
    return glob.escape(name)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=json_default) + "\n")


def read_json(path: str | os.PathLike, what: str, field=None):
    """Parse a JSON file; any failure is one EdgepruneError naming ``what`` (e.g. "plan x.json").

    Anything but a regular file within the document size limit
    (:mod:`edgeprune.export.runtime.safeio`) is refused, and so is a document nested deeper
    than the depth limit or, with ``field`` (a :mod:`edgeprune.export.runtime.schema`
    declaration), one whose declared fields have the wrong type: the one JSON
    guard, :func:`edgeprune.export.runtime.schema.parse_json`.
    """
    data = read_bytes(path, what, "doc")  # a regular file within EDGEPRUNE_MAX_DOC_BYTES (never a FIFO)
    return parse_json(data, what, field)
