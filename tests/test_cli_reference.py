"""docs/cli.md is the parsers' own reference: regenerate it with `python -m edgeprune.cli.reference > docs/cli.md`."""

from pathlib import Path

from edgeprune.cli.main import build_parser
from edgeprune.cli.reference import cli_markdown

REPO = Path(__file__).resolve().parents[1]


def test_docs_cli_reference_matches_the_parsers():
    text = (REPO / "docs" / "cli.md").read_text()
    assert text == cli_markdown(), "docs/cli.md is stale: python -m edgeprune.cli.reference > docs/cli.md"


def test_every_command_and_option_is_in_the_reference():
    """Independent of the generator's walk: every subcommand's every flag, read from --help's parser, appears."""
    text = (REPO / "docs" / "cli.md").read_text()
    top = build_parser()
    sub = next(a for a in top._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, parser in sub.choices.items():
        assert f"## `edgeprune {name}`" in text, name
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help", "--debug", "--quiet", "-q"):
                    assert f"`{flag}" in text, (name, flag)
