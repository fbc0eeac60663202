"""docs/cli.md is the parsers' own reference: regenerate it with `python -m edgeprune.cli.reference > docs/cli.md`."""

from pathlib import Path

from edgeprune.cli.main import build_parser
from edgeprune.cli.reference import cli_markdown

REPO = Path(__file__).resolve().parents[2]


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


def test_prune_groups_its_options_by_purpose():
    """`prune --help` keeps the method's own options apart from the layer analysis, the latency target and the
    fine-tuning that follows (issue 27): each flag sits in exactly the group named for it."""
    sub = next(a for a in build_parser()._actions if getattr(a, "choices", None) and "prune" in a.choices)
    prune = sub.choices["prune"]
    groups = {g.title: {s for a in g._group_actions for s in a.option_strings if s.startswith("--")}
              for g in prune._action_groups}
    want = {
        "method and budget": {"--method", "--keep", "--keep-units", "--target-macs", "--plan", "--opt"},
        "layer method: analysis and transitions": {"--transition", "--similarity", "--segments", "--max-segments",
                                                   "--importance", "--search", "--reference", "--batches"},
        "layer method: a latency target instead of --target-macs": {"--target-latency", "--target",
                                                                     "--latency-margin", "--latency-model"},
        "fine-tuning afterwards": {"--finetune-epochs", "--distill"},
    }
    for title, flags in want.items():
        assert groups.get(title) == flags, (title, groups.get(title))
    help_text = prune.format_help()
    assert help_text.index("method and budget:") < help_text.index("fine-tuning afterwards:")
