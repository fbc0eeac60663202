"""``edgeprune analyze``: the layer-pruning plan of a trained checkpoint, with plots."""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgepruneError
from .args import add_data, add_model, add_out, add_runtime
from .main import add_code, add_json, add_seed, emit

ORDER = 40


def add_analysis_options(p, g=None) -> None:
    """The analysis flags, into the argument group ``g`` when given (``prune`` groups them), else into ``p``."""
    g = p if g is None else g
    g.add_argument("--similarity", choices=["cka-unbiased", "cka", "cosine"], default="cka-unbiased",
                   help="similarity between unit outputs (default cka-unbiased, the reference code's)")
    g.add_argument("--segments", default="auto", help="number of blocks K, or 'auto' (the 5%% rule; default)")
    g.add_argument("--max-segments", type=int, default=None,
                   help="largest K tried by 'auto' (default: ResNet56 5, ResNet110 7, else from the depth; with "
                        "--reference 4, as the reference's shipped Network_Partition.py)")
    g.add_argument("--importance", default=None, metavar="NAME",
                   help="importance criterion: ablation (default), iterative-ablation, taylor, block-influence, "
                        "synflow, reverse, or the reference's transplant proxies synflow-transplant, gradnorm, snip")
    g.add_argument("--search", choices=["per-unit", "exhaustive"], default="per-unit",
                   help="score units one by one (linear in depth, default) or every combination per block (reference; "
                        "with --target-macs, each block's best combination that keeps the MACs in the window)")
    g.add_argument("--reference", action="store_true",
                   help="reproduce the reference code's procedure (yaolu-zjut/PSR) for resnet56(-ref), "
                        "resnet110(-ref) and vgg16: similarity on the first 5 batches of 128 TEST-split frames in "
                        "order, SynFlow on 128 all-ones frames, max K 4; its budget is --keep; differences are "
                        "listed in docs/method.md")
    g.add_argument("--batches", type=int, default=5, help="batches of frames for the representations (default 5)")
    add_runtime(p, threads=False, batch_size=128)


def add_budget_options(p, target_help: str, g=None) -> None:
    g = p if g is None else g
    g.add_argument("--keep", default=None, help="units kept per block, like 1,1,1,1 (default one per block)")
    g.add_argument("--keep-units", type=int, default=None, help="units kept in all, spread over the blocks")
    g.add_argument("--target-macs", type=float, default=None, help=target_help)


def register(sub, common):
    p = sub.add_parser("analyze", parents=[common], help="analyse a trained model for layer pruning (plan + plots)",
                       description="Forward a few batches of frames, measure the similarity of every "
                                   "unit's output, split the units into contiguous blocks (Fisher optimal "
                                   "segmentation), score them with a criterion and choose the units to "
                                   "keep. Frames: by default random batches of the checkpoint's TRAINING split for "
                                   "the similarity, and the validation split for data-driven criteria; with "
                                   "--reference the first 5 batches of 128 frames of the TEST split, in order (as "
                                   "the reference code). Writes DIR/plan.json, DIR/similarity.png and "
                                   "DIR/importance.png.")
    add_model(p, help="trained checkpoint (.pt)")
    add_data(p, help="dataset file (the checkpoint's split is reproduced: training split for the similarity, "
                     "validation split for the criterion; --reference: the test split)")
    add_out(p, help="output folder")
    add_analysis_options(p)
    add_budget_options(p, "choose the kept units for this fraction of the baseline MACs, within 2%% (e.g. 0.15)")
    p.add_argument("--transition", choices=["keep", "reinit", "replace"], default=None,
                   help="stage transitions: keep the trained block (default), let shape-changing units go too and "
                        "re-initialise what follows (reinit), or keep the stage's transition re-initialised in place "
                        "of its first kept unit (replace, the reference's)")
    p.add_argument("--no-plots", action="store_true", help="write plan.json only")
    add_runtime(p)
    add_seed(p)
    add_json(p)
    add_code(p)
    p.set_defaults(func=run_analyze, torch_threads=True)


def run_analyze(args):
    from ..pruning.plan import analyze
    from ..pruning.plan_file import plan_summary, save_plan

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise EdgepruneError(f"--out {out} exists and is not a folder")
    if args.reference and args.transition not in (None, "replace"):
        raise EdgepruneError("--reference builds the reference's transitions (replace); do not give --transition")
    plan = analyze(args.model, args.data, similarity=args.similarity, segments=args.segments,
                   max_segments=args.max_segments, importance=args.importance, batches=args.batches,
                   batch_size=args.batch_size, seed=args.seed, keep=args.keep, keep_units=args.keep_units,
                   target_macs=args.target_macs, transition=args.transition or "keep", search=args.search,
                   reference=args.reference)
    out.mkdir(parents=True, exist_ok=True)
    save_plan(out / "plan.json", plan)
    files = {"plan": str(out / "plan.json")}
    if not args.no_plots:
        from ..analysis.plots import plot_importance, plot_similarity

        files["similarity_png"] = str(plot_similarity(plan, out / "similarity.png"))
        files["importance_png"] = str(plot_importance(plan, out / "importance.png"))
    doc = {"files": files, "model": plan["model"], "segments": plan["segments"]["bounds"],
           "k": plan["segments"]["k"], "kept_units": plan["kept_units"], "counts": plan["keep"]["counts"],
           "expected": plan["expected"], "timings": plan["timings"]}
    emit(args, doc, plan_summary(plan) + "\nwrote " + ", ".join(files.values()))
    return 0
