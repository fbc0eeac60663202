"""Counting for the robustness suite: every bad input tried and every fault injected is recorded.

When ``EDGEPRUNE_ROBUSTNESS_LOG`` names a file, each check appends one JSON
line ``{"kind": "bad_input"|"fault", "name": ..., "ok": bool}`` to it;
``benchmarks/robustness.py`` sums them up. Without the variable nothing is written.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from edgeprune.cli.main import main

LOG_ENV = "EDGEPRUNE_ROBUSTNESS_LOG"


def record(kind: str, name: str, ok: bool, detail: str = "", **extra) -> None:
    """Append one outcome to the tally file (if any); ``extra``: more fields (class, peak_rss, seconds ...)."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = json.dumps({"kind": kind, "name": name, "ok": bool(ok), "detail": detail[:300], **extra})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def _snapshot(paths) -> dict:
    """Bytes of each watched file, and the listing of each watched file's folder."""
    snap = {}
    for p in paths:
        p = Path(p)
        if p.is_file():
            snap[str(p)] = ("file", p.read_bytes())
        elif p.is_dir():
            snap[str(p)] = ("dir", sorted(x.name for x in p.rglob("*")))
        else:
            snap[str(p)] = ("absent", None)
        parent = p.parent
        if parent.is_dir():
            snap["parent:" + str(parent)] = ("listing", sorted(x.name for x in parent.iterdir()))
    return snap


def check_error_output(rc: int, err: str, expect: str | None = None) -> list[str]:
    """The problems with a failed command's exit code and stderr (empty list: a clean refusal)."""
    problems = []
    lines = [line for line in err.splitlines() if line.strip()]
    if rc == 0:
        problems.append("exit status 0")
    if "Traceback" in err:
        problems.append("a traceback reached stderr")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr, expected exactly one")
    if not lines or not lines[0].startswith("edgeprune: error:"):
        problems.append("stderr does not start with 'edgeprune: error:'")
    elif "unexpected " in lines[0] and "--debug" in lines[0]:
        problems.append("an unexpected exception, not a clear EdgepruneError")
    if expect and not re.search(expect, err, re.I | re.S):
        problems.append(f"message does not match {expect!r}")
    return problems


def refuses(capsys, argv, outputs=(), expect: str | None = None, name: str | None = None, kind: str = "bad_input"):
    """Run the CLI in-process and assert a clean refusal: non-zero exit, one 'edgeprune: error:' line,
    no traceback, and ``outputs`` (files or folders) untouched with no stray files beside them.

    Returns the error line.
    """
    argv = [str(a) for a in argv]
    before = _snapshot(outputs)
    capsys.readouterr()
    rc = main(argv)
    _, err = capsys.readouterr()
    problems = check_error_output(rc, err, expect)
    after = _snapshot(outputs)
    for key, val in before.items():
        if after.get(key) != val:
            problems.append(f"{key.removeprefix('parent:')} changed (half-written output or stray files: "
                            f"{_diff(val, after.get(key))})")
    record(kind, name or " ".join(argv[:3]), not problems, "; ".join(problems) or err.strip())
    assert not problems, f"edgeprune {' '.join(argv)}: {'; '.join(problems)}\nstderr: {err}"
    return err.strip()


def _diff(a, b) -> str:
    if a and b and a[0] == b[0] == "listing":
        return f"new {sorted(set(b[1]) - set(a[1]))}, gone {sorted(set(a[1]) - set(b[1]))}"
    return f"{a[0] if a else None} -> {b[0] if b else None}"


def api_refuses(fn, *args, name: str, expect: str | None = None, **kwargs) -> str:
    """Call ``fn`` and assert it raises EdgepruneError (not another exception); return the message."""
    from edgeprune.errors import EdgepruneError

    try:
        fn(*args, **kwargs)
    except EdgepruneError as exc:
        msg = str(exc)
        ok = "\n" not in msg.strip() and (not expect or re.search(expect, msg, re.I) is not None)
        record("bad_input", name, ok, msg)
        assert ok, f"{name}: message {msg!r} (expected one line matching {expect!r})"
        return msg
    except Exception as exc:  # noqa: BLE001 - the point is to catch anything that is not clean
        record("bad_input", name, False, f"{type(exc).__name__}: {exc}")
        raise AssertionError(f"{name}: raised {type(exc).__name__} ({exc}), not EdgepruneError") from exc
    record("bad_input", name, False, "accepted")
    raise AssertionError(f"{name}: accepted a bad input")
