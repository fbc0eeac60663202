"""``edgeprune compare`` (a study from a config) and ``edgeprune demo`` (the built-in quickstart)."""

from __future__ import annotations

from .main import add_json, emit

ORDER = 90


def register(sub, common):
    p = sub.add_parser("compare", parents=[common], help="run a comparison study from a TOML config",
                       description="Run every stage of a study (data, baseline training, pruning methods at "
                                   "matched MACs, fine-tuning, export, profiling) and write report.md, "
                                   "report.html, results.json and plots. Re-running with the same config "
                                   "reuses finished stages, so an interrupted study resumes.")
    p.add_argument("--config", required=True, help="study config (see configs/)")
    p.add_argument("--out", required=True, help="study folder")
    add_json(p)
    p.set_defaults(func=run_compare)

    d = sub.add_parser("demo", parents=[common], help="the built-in quickstart study on synthetic data",
                       description="Run the quickstart study (configs/quickstart.toml): synthetic "
                                   "RML2016.10a-like data, a 1-D ResNet56, layer pruning against channel "
                                   "pruning and random layers at equal MACs, ONNX Runtime and PyTorch latency "
                                   "on this machine. About 10 minutes on a 2-core CPU.")
    d.add_argument("--out", default="demo-study", help="study folder (default demo-study)")
    d.add_argument("--config", default=None, help="use another config instead of the quickstart")
    add_json(d)
    d.set_defaults(func=run_demo)


def _emit(args, res):
    from ..study.report import headline

    if "summary" in res:   # [study] seeds: the summary over seeds
        from ..study.stats import markdown

        doc = {"summary_md": res["summary_md"], "summary_json": res["summary_json"], "summary": res["summary"],
               "per_seed": res["per_seed"]}
        emit(args, doc, markdown(res["summary"]) + f"\nsummary: {res['summary_md']}")
        return
    _, rows = headline(res["results"])
    doc = {"report_md": res["report_md"], "report_html": res["report_html"], "results_json": res["results_json"],
           "headline": rows, "notes": res["results"]["notes"], "stages": res["results"]["stages"],
           "seconds": res["results"]["seconds"]}
    text = None
    if not getattr(args, "json", False):
        from ..study.report import text_table

        keys, rows = headline(res["results"])
        text = "\n".join(text_table(keys, rows) + [
            "",
            f"stages run: {len(doc['stages']['ran'])}, reused: {len(doc['stages']['reused'])}; {doc['seconds']} s",
            f"report: {doc['report_md']} and {doc['report_html']}; data: {doc['results_json']}"])
    emit(args, doc, text)


def _stage_log():
    """The study's per-stage lines go to stderr like progress bars, so --quiet silences them too."""
    from ..progress import is_quiet

    return (lambda msg: None) if is_quiet() else None


def run_compare(args):
    from ..study.runner import run_study

    _emit(args, run_study(args.config, args.out, log=_stage_log()))


def run_demo(args):
    from ..study.runner import quickstart_config, run_study

    _emit(args, run_study(args.config or quickstart_config(), args.out, log=_stage_log()))
