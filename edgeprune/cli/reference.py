"""The CLI reference (docs/cli.md), generated from the parsers themselves.

``python -m edgeprune.cli.reference > docs/cli.md`` writes it; tests/cli/test_cli_reference.py fails when the file
and the parsers differ, so the reference cannot drift from what ``--help`` says.
"""

from __future__ import annotations

import argparse
import sys

from .main import build_parser

HEADER = ("# Command-line reference\n\n"
          "Generated from edgeprune's argument parsers by `python -m edgeprune.cli.reference > docs/cli.md`\n"
          "(a test fails when this file and the parsers differ). Every command also takes `--debug` (full\n"
          "traceback on errors) and `--quiet` (no progress bars); `--help` prints the same text for one command.\n")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        name = action.metavar or action.dest
        return f"`{name}`" + (" ..." if action.nargs in ("*", "+") else "")
    arg = ""
    if action.nargs != 0:
        if action.choices is not None:
            arg = " {" + ",".join(str(c) for c in action.choices) + "}"
        else:
            arg = " " + (action.metavar if isinstance(action.metavar, str) else action.dest.upper())
    return ", ".join(f"`{o}{arg}`" for o in action.option_strings)


def _default(action: argparse.Action) -> str:
    d = action.default
    if action.nargs == 0 or d is None or d is argparse.SUPPRESS or d == [] or d == "":
        return ""
    return f"`{d}`"


def _sub_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:  # argparse keeps no public list of a parser's actions
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _command(name: str, parser: argparse.ArgumentParser, helps: dict[str, str]) -> list[str]:
    out = [f"## `edgeprune {name}`", ""]
    text = parser.description or helps.get(name) or ""
    if text:
        out += [_cell(text), ""]
    sub = _sub_actions(parser)
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.dest in ("debug", "quiet"):
            continue
        rows.append(f"| {_flags(action)} | {_cell(action.help or '')} | {_default(action)} |")
    if rows:
        out += ["| option | meaning | default |", "|---|---|---|"] + rows + [""]
    if sub is not None:
        child_help = {a.dest: a.help or "" for a in sub._choices_actions}
        for child, p in sub.choices.items():
            out += _command(f"{name} {child}", p, child_help)
    return out


def cli_markdown() -> str:
    """The whole reference, one section per command (subcommands included), in the parsers' order."""
    top = build_parser()
    sub = _sub_actions(top)
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    lines = [HEADER]
    for name, parser in sub.choices.items():
        lines += _command(name, parser, helps)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(cli_markdown())
