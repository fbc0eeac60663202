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
import json
import time
from pathlib import Path
from typing import Any, Callable

from ..atomic import write_json


@functools.lru_cache(maxsize=None)
def code_fingerprint(*packages: str) -> str:
    """sha256 (16 hex digits) of the Python sources of ``packages`` (importable names), e.g. "edgeprune.pruning"."""
    import importlib

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


class StageCache:
    def __init__(self, root: Path, log: Callable[[str], None] = print):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "state.json"
        self.log = log
        self.state: dict[str, Any] = {"stages": {}}
        if self.path.exists():
            try:
                state = json.loads(self.path.read_text())
            except (json.JSONDecodeError, OSError, UnicodeDecodeError, RecursionError):
                state = None
            if isinstance(state, dict) and isinstance(state.get("stages"), dict) \
                    and all(isinstance(r, dict) for r in state["stages"].values()):
                self.state = state
            else:
                self.log(f"note: {self.path} is unreadable; starting the study afresh")
        self.reused: list[str] = []
        self.ran: list[str] = []
        self._clear_stale_temps()

    def _clear_stale_temps(self) -> None:
        """Remove temporary files (``.NAME.XXXXXXXX[.ext]``, from atomic writes) a killed run left behind."""
        import re

        pattern = re.compile(r"^\..+\.[a-z0-9_]{8}(\.[A-Za-z0-9]+)?$")
        for p in self.root.rglob(".*"):
            if p.is_file() and pattern.match(p.name):
                try:
                    p.unlink()
                except OSError:
                    pass

    def run(self, name: str, key: str, fn: Callable[[], dict[str, Any]], outputs: list[Path] | None = None) -> dict[str, Any]:
        """Run ``fn`` unless stage ``name`` already finished with this ``key`` and its outputs exist."""
        rec = self.state["stages"].get(name)
        if rec and rec.get("key") == key and all(Path(p).exists() for p in rec.get("outputs", [])):
            self.reused.append(name)
            self.log(f"[reuse] {name}")
            return rec["result"]
        self.log(f"[run]   {name}")
        t0 = time.perf_counter()
        result = fn()
        self.state["stages"][name] = {
            "key": key,
            "result": result,
            "outputs": [str(p) for p in (outputs or [])],
            "seconds": round(time.perf_counter() - t0, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        write_json(self.path, self.state)
        self.ran.append(name)
        return result
