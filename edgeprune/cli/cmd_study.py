"""``edgeprune compare`` (a study from a config) and ``edgeprune demo`` (the built-in quickstart)."""

from __future__ import annotations

from .args import add_out, add_runtime
from .main import add_json, emit

ORDER = 90


def register(sub, common):
    p = sub.add_parser("compare", parents=[common], help="run a comparison study from a TOML config",
                       description="Run every stage of a study (data, baseline training, pruning methods at "
                                   "matched MACs, fine-tuning, export, profiling) and write report.md, "
                                   "report.html, results.json and plots. Re-running with the same config "
                                   "reuses finished stages, so an interrupted study resumes.")
    p.add_argument("--config", required=True, help="study config (see configs/)")
    add_out(p, help="study folder")
    p.add_argument("--results", nargs="+", default=(), metavar="FILE",
                   help="latency results measured elsewhere (edgeprune profile, or run.py bench --out on a board) "
                        "of this study's ONNX files or bundles, merged into the report in their own columns")
    p.add_argument("--executor", default=None, choices=None, metavar="local|ray",
                   help="where the compute stages run: local (this process, the default) or ray (a Ray cluster; "
                        "pip install \"edgeprune[ray]\"); overrides [study] executor")
    p.add_argument("--address", default=None, metavar="auto|HOST:PORT|ray://HOST:10001",
                   help="the Ray cluster to use (default: [study] address, else a Ray started on this machine)")
    p.add_argument("--profile-node", default=None, metavar="NODE_ID|NODE_IP",
                   help="with --executor ray: time the models in one Ray task pinned to this node, after every "
                        "compute stage has finished (default: [profile] node, else on this machine)")
    add_runtime(p)
    add_json(p)
    p.set_defaults(func=run_compare, torch_threads=True)

    d = sub.add_parser("demo", parents=[common], help="the built-in quickstart study on synthetic data",
                       description="Run the quickstart study (configs/quickstart.toml): synthetic "
                                   "RML2016.10a-like data, a 1-D ResNet56, layer pruning against channel "
                                   "pruning and random layers at equal MACs, ONNX Runtime and PyTorch latency "
                                   "on this machine. About 2.5 minutes on 2 idle CPU cores.")
    add_out(d, help="study folder (default demo-study)", required=False, default="demo-study")
    d.add_argument("--config", default=None, help="use another config instead of the quickstart")
    add_runtime(d)
    add_json(d)
    d.set_defaults(func=run_demo, torch_threads=True)

    r = sub.add_parser("report", parents=[common], help="write a study's report again from its results.json",
                       description="Write report.md, report.html and the plots again from a study's results.json: "
                                   "after adding latency records measured elsewhere (the report then warns that "
                                   "they come from another machine), or to give an older study this version's "
                                   "verdict and warnings. Nothing is re-measured.")
    r.add_argument("results", help="a study's results.json, or the study folder")
    add_out(r, help="folder for the report (default: the folder of the results)", required=False)
    add_json(r)
    r.set_defaults(func=run_report)


def _emit(args, res):
    from ..study.report import headline

    if "summary" in res:   # [study] seeds: the summary over seeds
        from ..study.stats import markdown

        doc = {"summary_md": res["summary_md"], "summary_json": res["summary_json"], "summary": res["summary"],
               "per_seed": res["per_seed"]}
        emit(args, doc, markdown(res["summary"]) + f"\nsummary: {res['summary_md']}")
        return
    _, rows = headline(res["results"])
    from ..study.report import build_report

    rep = build_report(res["results"])
    doc = {"report_md": res["report_md"], "report_html": res["report_html"], "results_json": res["results_json"],
           "headline": rows, "verdict": rep["verdict"], "warnings": rep["warnings"], "notes": res["results"]["notes"],
           "stages": res["results"]["stages"], "seconds": res["results"]["seconds"]}
    text = None
    if not getattr(args, "json", False):
        from ..study.report import text_table

        keys, rows = headline(res["results"])
        verdict = [ln.replace("**", "") for ln in rep["verdict"]["lines"]]
        warns = [f"warning ({w['kind']}): {w['title']}" for w in rep["warnings"]]
        text = "\n".join(text_table(keys, rows) + [""] + verdict + ([""] + warns if warns else []) + [
            "",
            f"stages run: {len(doc['stages']['ran'])}, reused: {len(doc['stages']['reused'])}; {doc['seconds']} s",
            f"report: {doc['report_md']} and {doc['report_html']}; data: {doc['results_json']}"])
    emit(args, doc, text)


def _stage_log():
    """The study's per-stage lines go to stderr like progress bars, so --quiet silences them too."""
    from ..progress import is_quiet

    return (lambda msg: None) if is_quiet() else None


def _config(args, path):
    """The study config at ``path`` with the command line's overrides: ``--threads`` sets ``[study] threads`` (the
    torch threads of the compute stages this process runs; a Ray task's are ``[resources] cpus_per_task``), and
    compare's ``--executor``/``--address``/``--profile-node`` their config keys."""
    from ..study.config import load_config, normalise

    cfg = load_config(path)
    over = {("study", "threads", "--threads"): args.threads,
            ("study", "executor", "--executor"): getattr(args, "executor", None),
            ("study", "address", "--address"): getattr(args, "address", None),
            ("profile", "node", "--profile-node"): getattr(args, "profile_node", None)}
    given = {k: v for k, v in over.items() if v is not None}
    if not given:
        return cfg
    raw = {sec: dict(v) for sec, v in cfg.items()}
    for (sec, key, _), value in given.items():
        raw[sec][key] = value
    return normalise(raw, f"{path} with {', '.join(flag for _, _, flag in given)}")


def run_compare(args):
    from ..study.runner import run_study

    _emit(args, run_study(_config(args, args.config), args.out, log=_stage_log(), results_files=args.results))


def run_demo(args):
    from ..study.runner import quickstart_config, run_study

    _emit(args, run_study(_config(args, args.config or quickstart_config()), args.out, log=_stage_log()))


def run_report(args):
    from ..study.report import build_report, load_study_results, rerender

    paths = rerender(args.results, args.out)
    res, _ = load_study_results(paths["results_json"])
    rep = build_report(res)
    doc = {**paths, "verdict": rep["verdict"], "warnings": rep["warnings"]}
    text = "\n".join([ln.replace("**", "") for ln in rep["verdict"]["lines"]]
                     + [f"warning ({w['kind']}): {w['title']}" for w in rep["warnings"]]
                     + ["", f"report: {paths['report_md']} and {paths['report_html']}"])
    emit(args, doc, text)
