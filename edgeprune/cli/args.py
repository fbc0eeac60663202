"""The options the commands share, declared once: argument groups, typed parsers and range checks.

- ``add_data`` / ``add_model`` / ``add_out``: the data, model and output groups (``--data``, ``--model``,
  ``--out``), each with the command's own help text and requiredness.
- ``add_runtime``: the runtime group. ``--threads N`` has one meaning everywhere: the CPU threads the
  command computes with (torch intra-op threads for torch work, ONNX Runtime intra-op threads for an ONNX
  model); default: the library's own choice. ``--device`` has one default, ``auto`` (CUDA if available).
  ``--batch-size N``: frames per batch, with the command's default.
- ``comma_list``: the one comma-list parser (an argparse ``type`` when given ``item``/``what``).
- ``check_range``: the one range check of parsed options, raising an EdgepruneError with one clear line.

(``edgeprune profile --threads 1,2`` is a comma list of the same thread counts, one measurement each.)
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from ..errors import EdgepruneError

DEVICE_DEFAULT = "auto"
THREADS_HELP = ("CPU threads to compute with (torch or ONNX Runtime intra-op threads; default: the library's "
                "choice)")


def _group(p: argparse.ArgumentParser, title: str):
    """The parser's argument group ``title`` (made on first use, so several helpers share it)."""
    for g in p._action_groups:
        if g.title == title:
            return g
    return p.add_argument_group(title)


def add_data(p: argparse.ArgumentParser, help: str = "dataset file", required: bool = True,
             recordings: bool = True, **kw) -> None:
    """``--data``; with ``recordings``, also ``--length``/``--hop``: how SigMF recordings are cut into frames
    (default: the labelled annotations' one core:sample_count; a recording whose length is ambiguous is
    refused). A folder of recordings is one dataset."""
    g = _group(p, "data")
    g.add_argument("--data", required=required, default=kw.pop("default", None), help=help, **kw)
    if recordings:
        g.add_argument("--length", dest="recording_length", type=int, default=None, metavar="N",
                       help="SigMF recordings: frame length (default: the annotations' core:sample_count)")
        g.add_argument("--hop", dest="recording_hop", type=int, default=None, metavar="N",
                       help="SigMF recordings: samples between frame starts (default: the frame length)")


def add_model(p: argparse.ArgumentParser, help: str = "checkpoint (.pt)", required: bool = True, **kw) -> None:
    _group(p, "model").add_argument("--model", required=required, default=kw.pop("default", None), help=help, **kw)


def add_out(p: argparse.ArgumentParser, help: str, required: bool = True, default: str | None = None) -> None:
    _group(p, "output").add_argument("--out", required=required, default=default, help=help)


def add_runtime(p: argparse.ArgumentParser, threads: bool = True, device: bool = False,
                batch_size: int | None = None, batch_help: str = "frames per batch") -> None:
    """The runtime group: ``--threads`` (one meaning), ``--device`` (default auto), ``--batch-size``."""
    g = _group(p, "runtime")
    if batch_size is not None:
        g.add_argument("--batch-size", type=int, default=batch_size, help=f"{batch_help} (default {batch_size})")
    if threads:
        g.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    if device:
        g.add_argument("--device", default=DEVICE_DEFAULT,
                       help=f"auto (CUDA if available), cpu, cuda or cuda:N (default {DEVICE_DEFAULT})")


def comma_list(text: Any, item: Callable[[str], Any] = str, what: str | None = None) -> list:
    """``"a, b,,c"`` -> ``[item("a"), item("b"), item("c")]`` (blanks dropped).

    A value ``item`` cannot read raises argparse.ArgumentTypeError (a usage error) naming ``what``.
    """
    try:
        return [item(t.strip()) for t in str(text).split(",") if t.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"must be {what or 'a comma list'}, got {text!r}") from exc


def list_of(item: Callable[[str], Any], what: str) -> Callable[[str], list]:
    """An argparse ``type`` for a comma list of ``item``."""
    return lambda text: comma_list(text, item, what)


def check_range(args: argparse.Namespace, *names: str, lo: float | None = None, hi: float | None = None,
                why: str = "") -> None:
    """Raise EdgepruneError ``--NAME must be >= lo`` (or ``<= hi``) for the first given option out of range.

    ``names`` are argparse destinations (``batch_size``); an option left at None is not checked.
    """
    for name in names:
        v = getattr(args, name, None)
        if v is None:
            continue
        flag = "--" + name.replace("_", "-")
        if lo is not None and v < lo:
            raise EdgepruneError(f"{flag} must be >= {lo:g}{why}")
        if hi is not None and v > hi:
            raise EdgepruneError(f"{flag} must be <= {hi:g}{why}")
