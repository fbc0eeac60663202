"""The robustness suite, counted: bad inputs tried and refused cleanly, faults injected and survived.

Runs ``pytest tests/robustness`` with ``EDGEPRUNE_ROBUSTNESS_LOG`` set, so
every check appends its outcome to a JSON-lines tally (see
tests/robustness/tally.py), then sums it up:

* bad inputs: hostile, damaged or malformed files and values fed to a command
  or reader; "refused cleanly" = a non-zero exit with exactly one
  ``edgeprune: error:`` line, no traceback, and no output written or changed
  (API: an EdgepruneError with a one-line message);
* fuzz cases: hypothesis examples (random bytes, mutated files, random
  documents); "handled" = loaded or refused with an EdgepruneError;
* user's view (tests/robustness/test_subprocess.py, test_hostile_round2_*.py): hostile files and values
  run as ``python -m edgeprune`` in child processes with an address-space
  limit and a timeout, counted per class (non-regular files, expansion bombs,
  foreign references, malformed values, the study folder, noise on success,
  limits overridable) with each class's peak RSS and time; "clean" = exactly
  one ``edgeprune: error:`` line (or an intended success with empty stderr),
  at most 1 GiB more RSS than the child started with, at most 1 GiB written;
* faults: SIGKILL mid-run then resume, unwritable outputs, writes failing
  part-way, 8 threads sharing a predictor, a long recording streamed;
  "survived" = resumed with identical results / failed cleanly with nothing
  half-written / identical results / bounded memory.

    python benchmarks/robustness.py [--quick] [--fuzz] [--out bench-out/robustness.json]

``--fuzz`` runs the fuzz properties on fresh random examples, ten times as many as
``make test`` (the hypothesis "fuzz" profile; same as ``make fuzz``), counted here.
``--quick`` leaves out the subprocess-heavy fault tests (SIGKILL, file-size
limit, the 136 MiB recording). Prints a table and writes the counts, the
pytest outcome and every failed check as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICK_SKIP = "not sigkill and not part_way and not long_sigmf"


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="skip the slow subprocess fault tests")
    p.add_argument("--fuzz", action="store_true", help="random (not derandomised) fuzzing, 10x the examples")
    p.add_argument("--out", default="bench-out/robustness.json")
    p.add_argument("--pytest-args", default="", help="extra arguments for pytest (space separated)")
    return p.parse_args(argv)


def run_suite(quick: bool, extra: list[str], fuzz: bool = False) -> tuple[list[dict], dict, float]:
    """Run the suite; return (tally records, pytest outcome counts, seconds)."""
    with tempfile.TemporaryDirectory(prefix="edgeprune-robustness-") as tmp:
        log = Path(tmp) / "tally.jsonl"
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/robustness",
               f"--junitxml={junit}", *extra]
        if quick:
            cmd += ["-k", QUICK_SKIP]
        env = dict(os.environ, EDGEPRUNE_ROBUSTNESS_LOG=str(log), EDGEPRUNE_QUIET="1")
        if fuzz:
            env["EDGEPRUNE_HYPOTHESIS"] = "fuzz"
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        outcome = _junit(junit) if junit.exists() else {}
        outcome["exit_status"] = proc.returncode
        if proc.returncode not in (0,):
            outcome["tail"] = proc.stdout[-3000:]
    return records, outcome, seconds


def _junit(path: Path) -> dict:
    root = ET.parse(path).getroot()
    counts = Counter()
    for case in root.iter("testcase"):
        kinds = {child.tag for child in case}
        if "failure" in kinds or "error" in kinds:
            counts["failed"] += 1
        elif "skipped" in kinds:
            kind = " ".join((c.get("type") or "") + (c.get("message") or "") for c in case if c.tag == "skipped")
            counts["xfailed" if "xfail" in kind.lower() else "skipped"] += 1
        else:
            counts["passed"] += 1
    return dict(counts)


def summarise(records: list[dict]) -> dict:
    def count(kind):
        rs = [r for r in records if r["kind"] == kind]
        return len(rs), sum(1 for r in rs if r["ok"])

    bad, bad_ok = count("bad_input")
    fuzz, fuzz_ok = count("fuzz")
    faults, faults_ok = count("fault")
    user, user_ok = count("subprocess")
    fuzz_refused = sum(1 for r in records if r["kind"] == "fuzz" and r["ok"] and r["detail"].startswith("refused"))
    return {"bad_inputs_tried": bad, "refused_cleanly": bad_ok,
            "fuzz_cases": fuzz, "fuzz_handled_cleanly": fuzz_ok, "fuzz_refused": fuzz_refused,
            "faults_injected": faults, "survived_nothing_lost": faults_ok,
            "user_view_cases": user, "user_view_clean": user_ok}


def per_class(records: list[dict]) -> list[dict]:
    """The subprocess cases per class: cases, clean, peak RSS (MiB, the largest child), seconds (summed)."""
    rows: dict[str, dict] = {}
    for r in records:
        if r["kind"] != "subprocess":
            continue
        row = rows.setdefault(r.get("cls") or "?", {"class": r.get("cls") or "?", "cases": 0, "clean": 0,
                                                   "peak_rss_mib": 0.0, "grew_mib": 0.0, "seconds": 0.0,
                                                   "slowest_s": 0.0})
        row["cases"] += 1
        row["clean"] += bool(r["ok"])
        row["peak_rss_mib"] = max(row["peak_rss_mib"], (r.get("peak_rss") or 0) / 2 ** 20)
        row["grew_mib"] = max(row["grew_mib"], ((r.get("peak_rss") or 0) - (r.get("start_rss") or 0)) / 2 ** 20)
        row["seconds"] += r.get("seconds") or 0.0
        row["slowest_s"] = max(row["slowest_s"], r.get("seconds") or 0.0)
    return [dict(v, peak_rss_mib=round(v["peak_rss_mib"]), grew_mib=round(v["grew_mib"]), seconds=round(v["seconds"], 2),
                 slowest_s=round(v["slowest_s"], 2)) for v in rows.values()]


def main(argv=None) -> int:
    args = _parse(argv)
    sys.path.insert(0, str(REPO))
    from edgeprune.atomic import write_json

    records, outcome, seconds = run_suite(args.quick, args.pytest_args.split(), args.fuzz)
    counts = summarise(records)
    failed = [r for r in records if not r["ok"]]
    by_area = Counter(r["name"].split()[0] for r in records if r["kind"] == "bad_input")
    rows = [("bad inputs tried", counts["bad_inputs_tried"]), ("  refused cleanly", counts["refused_cleanly"]),
            ("fuzz cases (hypothesis)", counts["fuzz_cases"]), ("  handled cleanly", counts["fuzz_handled_cleanly"]),
            ("faults injected", counts["faults_injected"]), ("  survived, nothing lost", counts["survived_nothing_lost"]),
            ("user's view (python -m edgeprune, limits)", counts["user_view_cases"]),
            ("  clean", counts["user_view_clean"])]
    width = max(len(r[0]) for r in rows)
    print(f"robustness suite ({'quick' if args.quick else 'full'}{', random fuzzing' if args.fuzz else ''}): {seconds:.0f} s, pytest {outcome}")
    for name, value in rows:
        print(f"{name:<{width}}  {value:>6}")
    classes = per_class(records)
    if classes:
        print()
        print(f"{'class (python -m edgeprune in a child)':<40} {'cases':>5} {'clean':>5} {'peak RSS MiB':>12} "
              f"{'grew MiB':>8} {'time s':>7} {'slowest s':>9}")
        for row in classes:
            print(f"{row['class']:<40} {row['cases']:>5} {row['clean']:>5} {row['peak_rss_mib']:>12} "
                  f"{row['grew_mib']:>8} {row['seconds']:>7.2f} {row['slowest_s']:>9.2f}")
    for r in failed[:20]:
        print(f"NOT CLEAN: [{r['kind']}] {r['name']}: {r['detail']}")
    doc = {"quick": args.quick, "fuzz": args.fuzz, "seconds": round(seconds, 1), "pytest": outcome, **counts,
           "not_clean": failed, "bad_inputs_by_area": dict(by_area.most_common()), "user_view_by_class": classes,
           "python": sys.version.split()[0]}
    write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0 if not failed and outcome.get("exit_status") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
