"""Every test file the project names exists (issue 27: tests mirror the package layout, docs stay honest).

- A path ``tests/…/NAME.py`` named in docs/*.md, README.md, the Makefile, .ci/run or any Python file of the
  repository (the packages' docstrings point at the tests that check them) must be a file.
- A test file named without ``tests/`` in docs/*.md or README.md (docs/benchmarks.md's timing tables name
  ``study/test_ray_executor.py``, relative to tests/) must be that file under tests/; a bare ``test_x.py`` must be
  the basename of exactly one test file.
- The slowest files that tests/conftest.py collects first (``SLOW_FILES_FIRST``) must exist: a stale entry would
  silently stop ordering that file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"

FULL = re.compile(r"(?<![\w./-])(tests/[\w./-]+?\.py)\b")
RELATIVE = re.compile(r"(?<![\w./-])((?:[a-z_]+/)*test_\w+\.py)\b")


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
        return [REPO / p for p in out.splitlines()]
    except (OSError, subprocess.CalledProcessError):   # not a git checkout (an sdist): walk the tree
        return [p for p in REPO.rglob("*") if p.is_file() and ".git" not in p.parts]


def documents() -> list[Path]:
    return sorted(p for p in tracked_files() if p.is_file() and (
        (p.parent == REPO / "docs" and p.suffix == ".md") or p in (REPO / "README.md", REPO / "Makefile",
                                                                     REPO / ".ci" / "run")))


def missing_full_paths(text: str, root: Path) -> list[str]:
    """The ``tests/….py`` paths in ``text`` that are not files under ``root``."""
    return sorted({m for m in FULL.findall(text) if not (root / m).is_file()})


def missing_relative_names(text: str, tests: Path) -> list[str]:
    """The test files named in ``text`` without ``tests/`` that are not there: ``a/test_b.py`` must be
    ``tests/a/test_b.py``, a bare ``test_b.py`` the basename of exactly one file under ``tests``."""
    bad = set()
    for m in RELATIVE.findall(text):
        if "/" in m:
            if not (tests / m).is_file():
                bad.add(m)
        elif len(list(tests.rglob(m))) != 1:
            bad.add(m)
    return sorted(bad)


def test_the_checks_find_a_missing_file(tmp_path):
    (tmp_path / "tests" / "pkg").mkdir(parents=True)
    (tmp_path / "tests" / "pkg" / "test_here.py").write_text("")
    text = ("see tests/pkg/test_here.py and tests/test_here.py, pkg/test_here.py, other/test_here.py, "
            "test_here.py and test_gone.py")
    assert missing_full_paths(text, tmp_path) == ["tests/test_here.py"]
    assert missing_relative_names(FULL.sub("", text), tmp_path / "tests") == ["other/test_here.py", "test_gone.py"]


def test_every_named_tests_path_exists():
    bad = {}
    for p in documents() + [p for p in tracked_files() if p.suffix == ".py" and p.is_file()]:
        if p == Path(__file__).resolve():
            continue
        missing = missing_full_paths(p.read_text(encoding="utf-8", errors="replace"), REPO)
        if missing:
            bad[p.relative_to(REPO).as_posix()] = missing
    assert not bad, f"these name test files that do not exist (tests/ mirrors the package layout): {bad}"


def test_test_files_named_without_tests_prefix_exist():
    bad = {}
    for p in documents():
        if p.suffix == ".md":
            missing = missing_relative_names(FULL.sub("", p.read_text(encoding="utf-8")), TESTS)
            if missing:
                bad[p.relative_to(REPO).as_posix()] = missing
    assert not bad, f"these name test files (relative to tests/) that do not exist: {bad}"


def test_slow_files_first_exist():
    from conftest import SLOW_FILES_FIRST

    assert [f for f in SLOW_FILES_FIRST if not (TESTS / f).is_file()] == []
