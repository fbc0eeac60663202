"""Entry point: ``edgeprune`` (console script) and ``python -m edgeprune``."""

from __future__ import annotations

import argparse
import importlib
import math
import os
import pkgutil
import sys
import warnings
from pathlib import Path

from .. import __version__
from edgeprune.export.runtime.compat import dumps
from ..errors import EdgepruneError


def common_parser() -> argparse.ArgumentParser:
    """Options every subcommand accepts."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback on errors")
    p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars")
    return p


def add_code(p: argparse.ArgumentParser) -> None:
    """``--code FILE.py``: on the commands that load a checkpoint, which may be one of the user's own network."""
    p.add_argument("--code", action="append", default=argparse.SUPPRESS, metavar="FILE.py",
                   help="allow this model code file (needed to load a checkpoint of your own network; "
                        "or set EDGEPRUNE_CODE)")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document to stdout")


MAX_SEED = 2 ** 32 - 1


def seed_value(text: str) -> int:
    """argparse type for seeds: an integer in 0..2^32-1 (what numpy and torch both accept)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text[:40]!r} (an integer in 0..{MAX_SEED})") from None
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed {text[:40]} is outside 0..{MAX_SEED}")
    return v


def add_seed(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=seed_value, default=default, help=f"random seed (default {default})")


def check_numbers(args) -> None:
    """Every numeric option must be finite and fit 64 bits (NaN, inf and 2^70 are no learning rate or count)."""
    for name, value in vars(args).items():
        if isinstance(value, bool):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, float) and not math.isfinite(value):
            raise EdgepruneError(f"{flag} must be a finite number, not {value}")
        if isinstance(value, int) and not -2 ** 63 <= value < 2 ** 63:
            raise EdgepruneError(f"{flag} {value} is out of range")


_STDOUT: list = []   # edgeprune's own stdout while a command runs (sys.stdout is then stderr)


def stdout():
    """The stream edgeprune's own output goes to. While a command runs, ``sys.stdout`` is stderr, so whatever the
    model's code (or a library) prints cannot mix into edgeprune's output and ``--json`` stays one document."""
    return _STDOUT[-1] if _STDOUT else sys.stdout


def emit(args, obj, text: str | None = None) -> None:
    """Print ``obj`` as JSON with --json, else ``text`` (or a JSON fallback)."""
    out = stdout()
    if getattr(args, "json", False):
        out.write(dumps(obj) + "\n")
    else:
        out.write((text if text is not None else dumps(obj)) + "\n")
    out.flush()


def _command_modules():
    pkg_dir = Path(__file__).parent
    mods = []
    for info in pkgutil.iter_modules([str(pkg_dir)]):
        if info.name.startswith("cmd_"):
            mods.append(importlib.import_module(f"{__package__}.{info.name}"))
    mods.sort(key=lambda m: (getattr(m, "ORDER", 100), m.__name__))
    return mods


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as the one ``edgeprune: error:`` line (the usage is a --help away)."""

    def error(self, message):
        self.exit(2, f"edgeprune: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgeprune",
        description="Layer pruning and edge deployment for signal-classification (AMR) networks: "
                    "data, training, layer/channel pruning, ONNX/TensorRT export, bundles, latency studies.",
    )
    parser.add_argument("--version", action="version", version=f"edgeprune {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_parser()
    for mod in _command_modules():
        mod.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("EDGEPRUNE_PLUGINS"):
        from ..plugins import load_plugins

        try:
            load_plugins()  # before the parser: --method choices include the plugins' methods
        except EdgepruneError as exc:
            print(f"edgeprune: error: {exc}", file=sys.stderr)
            return exc.exit_code
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None) or not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    from ..progress import set_quiet

    set_quiet(bool(getattr(args, "quiet", False)))
    debug = bool(getattr(args, "debug", False))

    # Python warnings (numpy RuntimeWarnings, the sigmf package's notes, library deprecations) never reach the
    # user's terminal as raw lines: the inputs they would be about are validated, and --debug shows them.
    caught: list[str] = []

    def keep(message, category, filename, lineno, file=None, line=None):
        if len(caught) < 50:  # bounded: a warning raised once per batch must not grow memory
            caught.append(f"{category.__name__}: {message} ({filename}:{lineno})")

    with warnings.catch_warnings():
        warnings.simplefilter("default")  # each distinct warning once
        warnings.showwarning = keep
        try:
            return _run(args, debug)
        finally:
            if debug:
                for w in caught:
                    print(f"edgeprune: debug: {w}", file=sys.stderr)


def apply_runtime(args) -> None:
    """What every command shares before it runs: ``--length``/``--hop`` for the SigMF recordings it reads, and
    ``--threads`` (torch intra-op threads) on the commands that compute with torch (``torch_threads``)."""
    if hasattr(args, "recording_length"):
        from ..data.readers import set_recording_options

        hop = getattr(args, "recording_hop", None)
        for flag, value, lo in (("--length", args.recording_length, 8), ("--hop", hop, 1)):
            if value is not None and value < lo:
                raise EdgepruneError(f"{flag} must be >= {lo}")
        set_recording_options(args.recording_length, hop)
    threads = getattr(args, "threads", None)
    if getattr(args, "torch_threads", False) and isinstance(threads, int):
        if threads < 1:
            raise EdgepruneError("--threads must be >= 1")
        from ..training.trainer import set_threads

        set_threads(threads)


def _run(args, debug: bool) -> int:
    _STDOUT.append(sys.stdout)
    sys.stdout = sys.stderr   # prints of the model's code (import, __init__, forward) go to stderr
    try:
        return _run_command(args, debug)
    finally:
        sys.stdout = _STDOUT.pop()


def _run_command(args, debug: bool) -> int:
    try:
        check_numbers(args)
        apply_runtime(args)
        for code in getattr(args, "code", None) or []:
            from ..models.usercode import allow

            allow(code)
        rc = args.func(args)
        return int(rc or 0)
    except EdgepruneError as exc:
        if debug:
            raise
        print(f"edgeprune: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgeprune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except OSError as exc:  # a file that cannot be read or written: permission, no space, not a folder ...
        if debug:
            raise
        what = f"{exc.filename}: " if exc.filename else ""
        print(f"edgeprune: error: {what}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except MemoryError:
        if debug:
            raise
        print("edgeprune: error: out of memory (try a smaller batch or dataset)", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the user gets one line, --debug gives the rest
        if debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"edgeprune: error: unexpected {type(exc).__name__}: {msg} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
