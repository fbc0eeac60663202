"""Entry point: ``edgeprune`` (console script) and ``python -m edgeprune``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from .. import __version__
from ..atomic import dumps
from ..errors import EdgepruneError


def common_parser() -> argparse.ArgumentParser:
    """Options every subcommand accepts."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback on errors")
    p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars")
    p.add_argument("--code", action="append", default=argparse.SUPPRESS, metavar="FILE.py",
                   help="allow this model code file (needed to load a checkpoint of your own network; "
                        "or set EDGEPRUNE_CODE)")
    return p


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document to stdout")


def add_seed(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=int, default=default, help=f"random seed (default {default})")


def emit(args, obj, text: str | None = None) -> None:
    """Print ``obj`` as JSON with --json, else ``text`` (or a JSON fallback)."""
    if getattr(args, "json", False):
        sys.stdout.write(dumps(obj) + "\n")
    else:
        sys.stdout.write((text if text is not None else dumps(obj)) + "\n")
    sys.stdout.flush()


def _command_modules():
    pkg_dir = Path(__file__).parent
    mods = []
    for info in pkgutil.iter_modules([str(pkg_dir)]):
        if info.name.startswith("cmd_"):
            mods.append(importlib.import_module(f"{__package__}.{info.name}"))
    mods.sort(key=lambda m: (getattr(m, "ORDER", 100), m.__name__))
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None) or not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    from ..progress import set_quiet

    set_quiet(bool(getattr(args, "quiet", False)))
    debug = bool(getattr(args, "debug", False))
    try:
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
