"""Resumable stages: each stage's outputs are reused when re-run with the same inputs.

A stage is identified by a key: the sha256 of its configuration and the keys
of the stages it depends on. ``state.json`` in the study folder records the
finished stages (written atomically after each one), so a killed study
resumes where it stopped, and a changed setting reruns exactly the stages
that depend on it. The keys also hold a fingerprint of the code each stage
runs (:func:`code_fingerprint`), so an upgraded edgeprune does not reuse
results its older code made: a changed pruning module reruns the pruning
stages and everything after them, not the data or the baseline training.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

from ..atomic import write_json
from ..errors import EdgepruneError
from edgeprune.export.runtime.safeio import read_bytes
from edgeprune.export.runtime.schema import anything, mapping, number, obj, opt, parse_json, seq, text, validate

# A finished stage: its key, what it returned, the files it wrote, and the sha256 of its result (a result that
# no longer matches its digest was edited or damaged, and the stage runs again).
STAGE_SCHEMA = obj(key=text(), result=anything(), outputs=seq(text()), digest=opt(text(pattern="[0-9a-f]{64}")),
                   seconds=opt(number(lo=0)), finished=opt(text()), executor=opt(text()))
# pending: the outputs of stages that started but have not finished (recorded before they run, so the temporary
# files a killed run left beside them can be told from the user's own files)
STATE_SCHEMA = obj(stages=mapping(STAGE_SCHEMA), pending=opt(mapping(seq(text()))), format=opt(number()))
# The layout of state.json. A folder without "format" was written before it was recorded (same stage records):
# it is read and upgraded. Any other format is refused: its stage records cannot be trusted to mean the same.
STATE_FORMAT = 2
LOCK_NAME = ".lock"


def result_digest(result: Any) -> str:
    return hashlib.sha256(json.dumps(result, sort_keys=True, default=str).encode()).hexdigest()


@functools.lru_cache(maxsize=None)
def code_fingerprint(*packages: str) -> str:
    """sha256 (16 hex digits) of the Python sources of ``packages`` (importable names), e.g. "edgeprune.pruning"."""
    h = hashlib.sha256()
    for name in sorted(packages):
        mod = importlib.import_module(name)
        root = Path(mod.__file__).parent
        files = sorted(root.rglob("*.py")) if mod.__file__.endswith("__init__.py") else [Path(mod.__file__)]
        for f in files:
            h.update(f"{name}/{f.relative_to(root).as_posix()}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def stage_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


_HELD: dict = {}  # (pid, resolved folder) -> [open lock file, handles]; the lock is per process, reentrant


class _FolderLock:
    """One handle on a study folder's lock; the process holds the OS lock until its last handle closes."""

    def __init__(self, key):
        self.key = key

    def close(self) -> None:
        if self.key is None:
            return
        entry = _HELD.get(self.key)
        self.key = None
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del _HELD[self.key_of(entry)]
                entry[0].close()

    @staticmethod
    def key_of(entry):
        return entry[2]


def lock_folder(root: Path) -> _FolderLock:
    """Hold an exclusive lock on ``root/.lock`` until the returned handle is closed (or the process ends).

    A second edgeprune process on the same study folder gets one clear error
    instead of both overwriting each other's stages; within one process the
    lock is reentrant (the Python API may open a study's cache more than once).
    The kernel releases the lock when the process ends, however it ends.
    """
    import fcntl

    key = (os.getpid(), str(Path(root).resolve()))
    entry = _HELD.get(key)
    if entry is not None:
        entry[1] += 1
        return _FolderLock(key)
    path = Path(root) / LOCK_NAME
    try:
        fh = open(path, "a+")
    except OSError as exc:
        raise EdgepruneError(f"cannot lock the study folder {root}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        raise EdgepruneError(f"another edgeprune run is using the study folder {root} ({path} is locked); "
                             f"wait for it to finish or give another --out") from exc
    _HELD[key] = [fh, 1, key]
    return _FolderLock(key)


class _FormatError(EdgepruneError):
    """state.json of another format: refused, never silently started afresh."""


class StageCache:
    def __init__(self, root: Path, log: Callable[[str], None] = print):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = lock_folder(self.root)
        self.path = self.root / "state.json"
        self.log = log
        self.state: dict[str, Any] = {"stages": {}, "format": STATE_FORMAT}
        if self.path.exists():
            try:
                state = parse_json(read_bytes(self.path, "study state", "doc"), str(self.path))
                fmt = state.get("format", STATE_FORMAT) if isinstance(state, dict) else STATE_FORMAT
                if fmt != STATE_FORMAT:
                    self.close()
                    raise _FormatError(
                        f"{self.path} has state format {str(fmt)[:20]}, this edgeprune reads format {STATE_FORMAT}: "
                        f"the study folder was written by another edgeprune version; give another --out "
                        f"(or remove the folder to start afresh)")
                self.state = validate(state, STATE_SCHEMA, str(self.path))
            except (json.JSONDecodeError, OSError, UnicodeDecodeError, RecursionError) as exc:
                self.log(f"note: {self.path} is unreadable ({type(exc).__name__}); starting the study afresh")
            except _FormatError:
                raise
            except EdgepruneError as exc:
                self.log(f"note: {exc}; starting the study afresh")
            self.state["format"] = STATE_FORMAT
        self.reused: list[str] = []
        self.ran: list[str] = []
        self._ran_elsewhere: set[str] = set()  # recorded in this run by another executor (Ray): not reuses
        self._clear_stale_temps()

    def close(self) -> None:
        """Release the study folder's lock."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def recorded_files(self) -> list[Path]:
        """The files this study's state says edgeprune writes: state.json and every finished or pending output."""
        paths = [self.path]
        for rec in self.state["stages"].values():
            paths += [Path(p) for p in rec["outputs"]]
        for outs in self.state.get("pending", {}).values():
            paths += [Path(p) for p in outs]
        return paths

    def _clear_stale_temps(self) -> list[Path]:
        """Remove the temporary files a killed run left beside the files edgeprune records writing.

        Only ``.NAME.XXXXXXXX[.ext]`` (the names atomic writes use) beside a file
        that state.json lists as a finished or pending output, inside the study
        folder, is removed: any other file, dotfile or not, is the user's.
        """
        root = self.root.resolve()
        removed = []
        for target in self.recorded_files():
            try:
                folder = target.parent.resolve()
            except OSError:
                continue
            if folder != root and root not in folder.parents:
                continue
            pattern = re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}(\.[A-Za-z0-9.]+)?")
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if pattern.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                    try:
                        p.unlink()
                        removed.append(p)
                    except OSError:
                        pass
        return removed

    def lookup(self, name: str, key: str) -> dict[str, Any] | None:
        """The recorded result of stage ``name`` if it finished with ``key``, its outputs exist and its digest holds."""
        rec = self.state["stages"].get(name)
        if rec and rec["key"] == key and all(Path(p).exists() for p in rec["outputs"]) \
                and rec.get("digest") == result_digest(rec["result"]):
            return rec
        return None

    def begin(self, name: str, outputs: list[Path] | None = None) -> None:
        """Record ``name``'s outputs as pending before they are written (a killed run's temporary files are then known)."""
        self.state.setdefault("pending", {})[name] = [str(p) for p in (outputs or [])]
        write_json(self.path, self.state)

    def record(self, name: str, key: str, result: dict[str, Any], outputs: list[Path] | None = None,
               seconds: float = 0.0, executor: str = "local") -> None:
        """Record stage ``name`` as finished (its outputs already written), whichever executor computed it."""
        self.state.setdefault("pending", {}).pop(name, None)
        self.state["stages"][name] = {
            "key": key,
            "result": result,
            "digest": result_digest(result),
            "outputs": [str(p) for p in (outputs or [])],
            "seconds": round(seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "executor": executor,
        }
        write_json(self.path, self.state)
        self.ran.append(name)
        if executor != "local":
            self._ran_elsewhere.add(name)

    def run(self, name: str, key: str, fn: Callable[[], dict[str, Any]], outputs: list[Path] | None = None) -> dict[str, Any]:
        """Run ``fn`` unless stage ``name`` already finished with this ``key`` and its outputs exist."""
        rec = self.lookup(name, key)
        if rec is not None:
            if name not in self._ran_elsewhere:  # computed earlier in this run by another executor: not a reuse
                self.reused.append(name)
                self.log(f"[reuse] {name}")
            return rec["result"]
        self.log(f"[run]   {name}")
        self.begin(name, outputs)
        t0 = time.perf_counter()
        result = fn()
        self.record(name, key, result, outputs, time.perf_counter() - t0)
        return result
