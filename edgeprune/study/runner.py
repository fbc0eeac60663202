"""Run a comparison study: data -> baseline -> prune x targets -> fine-tune -> export -> profile -> report.

Every stage writes files into the study folder and is recorded in
``state.json`` (see :mod:`edgeprune.study.stages`), so an interrupted study
resumes and reuses what was finished. Every method gets the same MACs target
(matched within 2% by the methods themselves) and the same fine-tuning.
All latencies of one study are measured in one profiling stage, so the
speed-ups compare numbers taken on the same machine in the same run.
"""

from __future__ import annotations

import copy
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

from edgeprune.export.bundle import make_bundle
from edgeprune.export.onnx_export import export_checkpoint
from edgeprune.export.runtime.manifest import manifest_hash
from edgeprune.export.runtime.schema import obj, seq, text, validate
from edgeprune.export.targets import load_target
from edgeprune.profiling.remote import Remote, measured_on, profile_remote
from edgeprune.profiling.results_file import load_results, save_results

from ..analysis.plots import plot_importance, plot_similarity
from ..atomic import read_json
from ..checkpoint import checkpoint_as_recipe, file_sha256, load_checkpoint, save_checkpoint
from ..data.dataset import save_npz
from ..data.readers import load_dataset
from ..data.split import filter_snr
from ..data.synth import generate
from ..errors import EdgepruneError
from ..models.macs import MAC_DEFINITION
from ..models.usercode import is_code_ref, parse_ref
from ..pruning.catalogue import entry, option_fields, study_options
from ..pruning.modular import check_reach
from ..pruning.plan import analyze
from ..pruning.plan_file import save_plan
from ..pruning.prune_file import pruned_meta
from ..pruning.registry import get_method, methods as known_methods
from ..training.evaluate import eval_data, evaluate
from ..training.finetune import finetune
from ..training.train import _check_model_name, train_model
from .config import load_config, model_id, normalise, split_method
from . import stages
from .executor import RayExecutor
from .report import write_report
from .stages import StageCache, stage_key
from .stats import mean_ci, summarise, write_summary
from edgeprune.profiling.harness import profile
from edgeprune.export.runtime import registry
import edgeprune.profiling  # noqa: F401 - registers its torch backend
from edgeprune.export.runtime.registry import model_kind


DEPTH_METHODS = ("layer", "dbp", "random")   # whole-unit methods: their reach at a target is matched by channels


def _file_id(mid: str) -> str:
    return mid.replace("@", "-at-")


class Stage:
    """One resumable stage: ``fn(**kwargs)`` writes ``outputs`` (and may read ``inputs``) and returns its record.

    ``fn`` is a module-level function and every path it touches is in ``kwargs``, so an executor
    can run it in another process or on another machine with the paths moved (see executor.py).
    """

    def __init__(self, name: str, key: str, fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any],
                 outputs: list[Path], inputs: list[Path] = ()):
        self.name, self.key, self.fn, self.kwargs = name, key, fn, kwargs
        self.outputs = [Path(p) for p in outputs]
        self.inputs = [Path(p) for p in inputs if p is not None]

    def call(self) -> dict[str, Any]:
        return self.fn(**self.kwargs)


# -- the work of each stage: module-level, explicit input and output paths --------------------------
def work_data(out: Path, d: dict[str, Any], seed: int) -> dict[str, Any]:
    if d["synth"]:
        ds = generate(d["synth"], per_key=d["per_key"], seed=seed, snrs=d["snrs"] or None,
                      snr_mode=d["snr_mode"], length=d["length"] or None)
    else:
        ds = load_dataset(d["file"])
        if d["length"] and d["length"] != ds.length:
            raise EdgepruneError(f"[data] length {d['length']} differs from the file's frame length {ds.length}")
    if d["min_snr"] is not None or d["max_snr"] is not None or (d["snrs"] and not d["synth"]):
        ds = filter_snr(ds, d["min_snr"], d["max_snr"], d["snrs"] or None)
    save_npz(out, ds)
    return {"path": str(out), "sha256": file_sha256(out), "frames": len(ds), "classes": ds.classes,
            "length": ds.length, "snrs": ds.snr_levels(), "source": d["synth"] or d["file"]}


def work_baseline(out: Path, data_path: Path, model: dict[str, Any], train: dict[str, Any], seed: int,
                  split: list, threads: int | None) -> dict[str, Any]:
    if model["checkpoint"]:
        ck = load_checkpoint(model["checkpoint"])
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model["checkpoint"], out)
        return {"path": str(out), "trained": False, "model": ck.spec["name"]}

    t = train
    train_model(data_path, model["name"], out, epochs=t["epochs"], batch_size=t["batch_size"], lr=t["lr"],
                step_size=t["step_size"], gamma=t["gamma"], seed=seed, split=tuple(split), threads=threads,
                kwargs=model.get("kwargs") or None, patience=t["patience"] or 0)
    return {"path": str(out), "trained": True, "model": model["name"]}


def work_analyze(base: Path, data_path: Path, folder: Path, similarity: str, importance: str,
                 seed: int, reference: bool = False, keep=None) -> dict[str, Any]:
    plan_path = folder / "plan.json"
    if reference:
        plan = analyze(load_checkpoint(base), load_dataset(data_path), reference=True, seed=seed,
                       keep=",".join(map(str, keep)) if keep else None)
    else:
        plan = analyze(load_checkpoint(base), load_dataset(data_path), similarity=similarity, importance=importance,
                       seed=seed)
    save_plan(plan_path, plan)
    imgs, notes = [], []
    try:
        imgs.append(str(plot_similarity(plan, folder / "similarity.png")))
        imgs.append(str(plot_importance(plan, folder / "importance.png")))
    except EdgepruneError as exc:  # matplotlib missing: the study still runs
        notes.append(f"analysis plots skipped: {exc}")
    res = {"plan": str(plan_path), "images": imgs, "segments": plan.get("segments", {}).get("bounds")}
    if notes:
        res["notes"] = notes
    return res


def work_prune(base: Path, data_path: Path, out: Path, method: str, seed: int,
               options: dict[str, Any], matched: dict[str, Any] | None = None) -> dict[str, Any]:
    """Prune ``base`` with ``method`` and its ``options`` (``target_macs`` among them; see ``Study.prune_specs``);
    ``matched``: a channel method matched to the depth methods' reach (:func:`matched_options`)."""
    ck = load_checkpoint(base)
    note = None
    if matched is not None:
        options, note = matched_options(ck, method, options, matched)
    res = get_method(method)(ck, load_dataset(data_path), seed=seed, **options)
    res.lineage.setdefault("method", method)
    if note:
        res.lineage["matched_to_depth"] = {"requested": matched["target"], "target_macs": options["target_macs"]}
    meta = pruned_meta(ck, res)
    save_checkpoint(out, res.spec, res.state_dict, meta)
    notes = ([note] if note else []) + list((res.info or {}).get("notes") or [])
    return {"path": str(out), "macs": meta["macs"], "params": meta["params"], **({"notes": notes} if notes else {})}


def matched_options(ck, method: str, options: dict[str, Any], matched: dict[str, Any]):
    """A channel method's options in a study that also has depth methods: when whole units cannot reach the
    target within the tolerance, the depth methods take the nearest model at or below it (computed here from the
    traced units' MACs, the same candidates they use), and the channel method aims at that MACs fraction so the
    comparison stays matched. Returns (options, note or None)."""
    r = check_reach(checkpoint_as_recipe(ck), matched["target"], matched.get("tolerance"), matched.get("transition") or "keep",
                    probe=True)
    if r is None or r["window"]:
        return options, None
    note = (f"{method}@{matched['target']:g} aims at {r['nearest']:.4f} x MACs, the nearest whole units reach "
            f"(so it matches the depth methods at this target)")
    return {**options, "target_macs": r["nearest"]}, note


def method_options(method: str, section: dict[str, Any], target: float, plan_path: Path | None
                   ) -> tuple[dict[str, Any], bool]:
    """The options of ``method`` from the study's ``[prune]`` section
    (:func:`edgeprune.pruning.catalogue.study_options`) with ``target_macs``; a method that declares a ``plan``
    option runs with the study's analysis plan (its options dataclass's ``with_plan`` says what the plan
    fixes). Returns (options, whether the plan is used)."""
    options = {"target_macs": target, **study_options(method, section)}
    if plan_path is None or "plan" not in (option_fields(method) or {}):
        return options, False
    return entry(method).options().with_plan(options, str(plan_path)), True


def work_finetune(pruned: Path, data_path: Path, out: Path, epochs: int, lr: float, l1: float, seed: int,
                  teacher: Path | None, threads: int | None) -> dict[str, Any]:
    r = finetune(pruned, data_path, epochs, out, lr=lr, l1=l1, seed=seed, distill_from=teacher, threads=threads)
    return {"path": str(out), "result": {k: v for k, v in r.items() if not isinstance(v, (dict, list))}}


def work_evaluate(ckpt: Path, data_path: Path, pruned: Path | None) -> dict[str, Any]:
    ck = load_checkpoint(ckpt)
    ds, info = eval_data(ck, data_path, split="test")
    r = evaluate(ck, ds)
    rec = {"accuracy": r["accuracy"], "per_snr": {str(s["snr"]): s["accuracy"] for s in r["per_snr"]},
           "frames": r["frames"],
           # what the report needs to tell whether these frames can include training frames
           "eval": {"split": info["split"], "same_as_training": info["same_as_training"],
                    "sha256": info["sha256"], "trained_on": (ck.meta.get("dataset") or {}).get("sha256")}}
    if pruned is not None:
        pk = load_checkpoint(pruned)
        rec["accuracy_before_finetune"] = evaluate(pk, ds)["accuracy"]
    return rec


def work_export(ckpt: Path, data_path: Path, out: Path, precision: str, opset: int, seed: int,
                simplify: bool = True) -> dict[str, Any]:
    r = export_checkpoint(ckpt, out, opset=opset, precision=precision, verify_data=data_path,
                          calib_data=data_path, seed=seed, simplify=simplify)
    keep = {k: v for k, v in r.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return {"path": str(out), **keep}


def work_profile(out: Path, onnx: list, torch_models: list, pr: dict[str, Any], seed: int,
                 measured_on: str | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Time the study's models (``onnx``: [id, precision, path]; ``torch_models``: [id, checkpoint]) as ``[profile]``
    says; every record names its model id, and, if given, ``measured_on`` (where it was timed)."""

    records: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    by_path = {}
    for mid, prec, path in onnx:
        by_path[str(Path(path).resolve())] = (mid, prec)
    for mid, path in torch_models:
        by_path[str(Path(path).resolve())] = (mid, "fp32")

    # each backend times the files of its kind (the registry's MODEL_KIND): checkpoints, or the ONNX files (an
    # engine backend finds the engines beside them)
    runs = [(b, [m[1] for m in torch_models] if registry.model_kind(b) == "checkpoint" else [m[2] for m in onnx])
            for b in pr["backends"]]
    # Every model is timed in each of `rounds` rounds (models interleaved), for at least
    # `min_time_ms` (and `iters` runs); a model's figure is its median round (profiling's rounds rule).
    res = {"machine": {}}
    rounds_run: dict[str, int] = {}
    timing = ({"iters": None, "duration_ms": pr["min_time_ms"], "min_iters": pr["iters"]}
              if pr["min_time_ms"] else {"iters": pr["iters"], "duration_ms": None})
    for backend, models in runs:
        res = profile(models, backends=(backend,), batches=pr["batch"], threads=pr["threads"],
                      warmup_iters=pr["warmup"], seed=seed, show_progress=show_progress,
                      allow_empty=True, rounds=max(1, pr["rounds"]), stop_spread=pr["stop_spread"] or None,
                      **timing)
        rounds_run[backend] = res.get("rounds_run", 1)
        skipped += res.get("skipped", [])
        for rec in res["records"]:
            mid, prec = by_path.get(str(Path(rec["path"]).resolve()), (rec.get("model"), "fp32"))
            rec["model_id"] = mid
            rec["precision"] = rec.get("precision") or prec
            if measured_on:
                rec["measured_on"] = measured_on
            records.append(rec)
    all_res = {"schema": 1, "records": records, "skipped": skipped, "machine": res.get("machine", {}),
               "rounds_run": rounds_run}
    save_results(out, all_res)
    return {"path": str(out), "n": len(records), **({"measured_on": measured_on} if measured_on else {})}


class Study:
    def __init__(self, cfg: dict[str, Any], out: str | Path, log: Callable[[str], None] | None = None,
                 results_files=()):
        self.cfg = cfg
        self.results_files = [Path(p) for p in results_files or ()]
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = log or (lambda m: None)   # the CLI passes its stage printer; the library itself prints nothing
        self.cache = StageCache(self.out, self.log)
        self.seed = cfg["study"]["seed"]
        self.threads = cfg["study"]["threads"] or None
        self.notes: list[str] = []
        self.skipped: dict[str, str] = {}  # model id -> why (set by an executor that ran its stages elsewhere)
        st = cfg.get("study", {})
        self.executor = st.get("executor", "local")
        self.executor_info: dict[str, Any] = {"name": "local"}

    # -- stages -------------------------------------------------------------------------------
    # Each compute stage is a Stage: its name, key, outputs and a module-level work function with explicit
    # input and output paths, so the same stage runs here (local executor) or in a Ray worker.
    def _run(self, st: "Stage") -> dict[str, Any]:
        return self.cache.run(st.name, st.key, st.call, st.outputs)

    def data_stage(self) -> tuple[Path, str]:
        d = self.cfg["data"]
        key = stage_key("data", d, self.seed, stages.code_fingerprint("edgeprune.data"))
        out = self.out / "data" / "dataset.npz"
        res = self._run(Stage("data", key, work_data, dict(out=out, d=d, seed=self.seed), [out]))
        self.dataset_info = res
        return Path(res["path"]), res["sha256"]

    def baseline_spec(self, data_path: Path, data_key: str) -> "Stage":
        m, t = self.cfg["model"], self.cfg["train"]
        extra = []
        if m.get("code"):
            extra.append(file_sha256(m["name"].rpartition(":")[0]))   # the user's code is part of the baseline
        key = stage_key("baseline", m, t, data_key, self.seed, self.cfg["data"]["split"],
                        stages.code_fingerprint("edgeprune.models", "edgeprune.training"), *extra)
        out = self.out / "models" / "baseline.pt"
        return Stage("baseline", key, work_baseline,
                     dict(out=out, data_path=data_path, model=m, train=t, seed=self.seed,
                          split=list(self.cfg["data"]["split"]), threads=self.threads),
                     [out], inputs=[data_path] + ([Path(m["checkpoint"])] if m["checkpoint"] else []))

    def baseline_stage(self, data_path: Path, data_key: str) -> tuple[Path, str]:
        st = self.baseline_spec(data_path, data_key)
        self._run(st)
        out = st.outputs[0]
        mt = load_checkpoint(out).meta.get("metrics", {})
        if "epochs_run" in mt:
            self.baseline_epochs = {k: mt.get(k) for k in ("epochs", "epochs_run", "stopped_early", "best_epoch")}
            note = (f"baseline trained {mt['epochs_run']} of {mt['epochs']} epochs"
                    + (f" (early stopping on the validation loss, patience {self.cfg['train']['patience']})"
                       if mt.get("stopped_early") else "") + f"; best epoch {mt.get('best_epoch')}")
            if note not in self.notes:
                self.notes.append(note)
        return out, st.key

    def analyze_spec(self, base: Path, base_key: str) -> "Stage | None":
        if "layer" not in [split_method(m)[0] for m in self.cfg["prune"]["methods"]]:
            return None
        p = {**self.cfg["prune"], **self.cfg["prune"].get("layer", {})}   # [prune.layer] wins
        key = stage_key("analyze", base_key, p["similarity"], p["importance"], p["transition"], self.seed,
                        *([p["reference"], p["keep"]] if p["reference"] else []),
                        stages.code_fingerprint("edgeprune.analysis", "edgeprune.pruning", "edgeprune.models"))
        folder = self.out / "analysis"
        return Stage("analyze", key, work_analyze,
                     dict(base=base, data_path=self._data_path, folder=folder, similarity=p["similarity"],
                          importance=p["importance"], seed=self.seed, reference=p["reference"], keep=p["keep"]),
                     [folder / "plan.json"], inputs=[base, self._data_path])

    def analyze_stage(self, base: Path, base_key: str, data=None) -> dict[str, Any] | None:
        st = self.analyze_spec(base, base_key)
        if st is None:
            return None
        res = self._run(st)
        self.notes += [n for n in res.get("notes", []) if n not in self.notes]
        return res

    def prune_specs(self, method: str, target: float, base: Path, base_key: str,
                    plan_path: Path | None) -> tuple[str, "Stage", "Stage"]:
        """The prune and fine-tune stages of one method at one target ("+kd" shares its base method's prune)."""
        p, f = self.cfg["prune"], self.cfg["finetune"]
        mid = model_id(method, target)
        final = self.out / "models" / f"{_file_id(mid)}.pt"
        base_method, distill = split_method(method)
        # the "+kd" variant prunes exactly like its base method: share the pruned checkpoint
        pruned = self.out / "models" / f"{_file_id(model_id(base_method, target))}.pruned.pt"
        plan = str(plan_path) if plan_path is not None else None
        pkey = stage_key("prune", base_method, target, base_key, p, self.seed, plan,
                         stages.code_fingerprint("edgeprune.pruning", "edgeprune.analysis", "edgeprune.models"))
        options, uses_plan = method_options(base_method, p, float(target), plan_path)
        prune = Stage(f"prune {model_id(base_method, target)}", pkey, work_prune,
                      dict(base=base, data_path=self._data_path, out=pruned, method=base_method, seed=self.seed,
                           options=options, matched=self._matched(base_method, float(target))),
                      [pruned], inputs=[base, self._data_path] + ([plan_path] if uses_plan else []))
        fkey = stage_key("finetune", pkey, f, distill, self.seed, stages.code_fingerprint("edgeprune.training"))
        teacher = base if (f["distill"] or distill) else None
        finetune = Stage(f"finetune {mid}", fkey, work_finetune,
                         dict(pruned=pruned, data_path=self._data_path, out=final, epochs=f["epochs"], lr=f["lr"],
                              l1=f["l1"], seed=self.seed, teacher=teacher, threads=self.threads),
                         [final], inputs=[pruned, self._data_path] + ([teacher] if teacher else []))
        return mid, prune, finetune

    def _matched(self, method: str, target: float) -> dict[str, Any] | None:
        """For a channel method in a study with depth methods: what to match (see matched_options); nothing when
        the depth method is the reference's procedure (its own fixed budget)."""
        depth = [m for m in (split_method(x)[0] for x in self.cfg["prune"]["methods"]) if m in DEPTH_METHODS]
        if not method.startswith("channel-") or not depth:
            return None
        p = {**self.cfg["prune"], **self.cfg["prune"].get(depth[0], {})}
        if p.get("reference"):
            return None
        return {"target": float(target), "tolerance": p.get("tolerance"), "transition": p.get("transition")}

    def prune_stage(self, method: str, target: float, base: Path, base_key: str, data=None, plan: dict | None = None):
        mid = model_id(method, target)
        if mid in self.skipped:  # the executor already ran it and it failed with a clear error
            raise EdgepruneError(self.skipped[mid])
        plan_path = Path(plan["plan"]) if plan else None
        mid, prune, finetune = self.prune_specs(method, target, base, base_key, plan_path)
        rec = self._run(prune)
        self.notes += [n for n in (rec or {}).get("notes", []) if n not in self.notes]
        self._run(finetune)
        return mid, prune.outputs[0], finetune.outputs[0], finetune.key

    def evaluate_spec(self, mid: str, ckpt: Path, key: str, data_path: Path, pruned: Path | None = None) -> "Stage":
        ekey = stage_key("evaluate", key, str(data_path), stages.code_fingerprint("edgeprune.training"), "eval-info")
        return Stage(f"evaluate {mid}", ekey, work_evaluate, dict(ckpt=ckpt, data_path=data_path, pruned=pruned),
                     [], inputs=[ckpt, data_path] + ([pruned] if pruned else []))

    def evaluate_stage(self, mid: str, ckpt: Path, key: str, data_path: Path, pruned: Path | None = None):
        return self._run(self.evaluate_spec(mid, ckpt, key, data_path, pruned))

    def export_specs(self, mid: str, ckpt: Path, key: str, data_path: Path) -> list["Stage"]:
        e = self.cfg["export"]
        out = []
        for prec in e["precisions"]:
            onnx_path = self.out / "onnx" / f"{_file_id(mid)}.{prec}.onnx"
            simplify = e.get("simplify", True)
            xkey = stage_key("export", key, prec, e["opset"], stages.code_fingerprint("export"),
                             *([] if simplify else ["no-simplify"]))
            out.append(Stage(f"export {mid} {prec}", xkey, work_export,
                             dict(ckpt=ckpt, data_path=data_path, out=onnx_path, precision=prec, opset=e["opset"],
                                  seed=self.seed, simplify=simplify), [onnx_path], inputs=[ckpt, data_path]))
        return out

    def export_stage(self, mid: str, ckpt: Path, key: str, data_path: Path) -> dict[str, Any]:
        return {st.kwargs["precision"]: self._run(st) for st in self.export_specs(mid, ckpt, key, data_path)}

    def profile_spec(self, entries: list[dict[str, Any]], node: dict[str, Any] | None = None) -> "Stage":
        """The latency stage: every model of ``entries`` timed in one stage (on ``node``, a Ray node, if given)."""
        pr = self.cfg["profile"]
        # [profile] node joins the key only when set (the resolved node id): folders made before it existed,
        # and every study profiled on its driver, keep their keys
        pr_key = {k: v for k, v in pr.items() if k != "node"}
        key = stage_key("profile", pr_key, [(e["id"], e["key"]) for e in entries], stages.code_fingerprint("profiling"),
                        *([node["id"]] if node else []))
        out = self.out / "profile" / "latency.json"
        onnx = [[e["id"], prec, str(ex["path"])] for e in entries for prec, ex in e["onnx"].items()]
        torch_models = [[e["id"], str(e["checkpoint"])] for e in entries]

        on_checkpoints = any(model_kind(b) == "checkpoint" for b in pr["backends"])
        inputs = [Path(m[2]) for m in onnx] + ([Path(m[1]) for m in torch_models] if on_checkpoints else [])
        return Stage("profile", key, work_profile,
                     dict(out=out, onnx=onnx, torch_models=torch_models, pr=pr, seed=self.seed,
                          measured_on=node["where"] if node else None, show_progress=node is None),
                     [out], inputs=inputs)

    def profile_stage(self, entries: list[dict[str, Any]], ex=None) -> list[dict[str, Any]]:
        """Time every model: here (the driver), or, with ``[profile] node``, in one Ray task pinned to that node
        (``ex``, the study's Ray executor, after every compute stage has finished)."""
        node = ex.profile_node if ex is not None else None
        st = self.profile_spec(entries, node)
        out = st.outputs[0]
        if node is not None and self.cache.lookup(st.name, st.key) is None:
            ex.run_profile(self, st)  # recorded as run by Ray; the line below then reads it back
        self._run(st)

        res = load_results(out)

        validate(res, obj(records=seq(obj(model_id=text(doc="the study model a record measures")))), str(out))
        self.machine = res.get("machine", {})
        for s in res.get("skipped", []):
            self.notes.append(f"not profiled: {s.get('model')} {s.get('backend')} b{s.get('batch')}: {s.get('reason')}")
        return res["records"]

    def bundle_stage(self, entries: list[dict[str, Any]]) -> dict[str, Path]:
        """[profile] target: a bundle folder per model in study/bundles/ (what a board runs); {id: folder}."""
        pr, e = self.cfg["profile"], self.cfg["export"]
        out = {}
        for ent in entries:
            folder = self.out / "bundles" / _file_id(ent["id"])

            def run(ent=ent, folder=folder):
                tgt = load_target(pr["target"])
                precs = [p for p in e["precisions"] if p in tgt.precisions] or ["fp32"]
                if folder.exists():
                    shutil.rmtree(folder)
                m = make_bundle(ent["checkpoint"], pr["target"], folder, precisions=precs,
                                calib_data=self._data_path if "int8" in precs else None, seed=self.seed,
                                simplify=e.get("simplify", True))
                return {"path": str(folder), "precisions": [v["precision"] for v in m["variants"]
                                                            if v["format"] == "onnx"]}

            key = stage_key("bundle", ent["key"], pr["target"], e["precisions"], stages.code_fingerprint("export"),
                            *([] if e.get("simplify", True) else ["no-simplify"]))
            out[ent["id"]] = self.cache.run(f"bundle {ent['id']}", key, run, [folder / "manifest.json"])
        return out

    def remote_stage(self, bundles: dict[str, dict]) -> list[dict[str, Any]]:
        """[profile] remote: every bundle timed on the board over SSH (records tagged with the board)."""
        pr = self.cfg["profile"]
        out = self.out / "profile" / "remote-latency.json"
        ids = sorted(bundles)
        key = stage_key("remote-profile", {k: v for k, v in pr.items() if k != "node"},
                        [(i, bundles[i]["path"]) for i in ids],
                        [self._bundle_hash(bundles[i]["path"]) for i in ids], stages.code_fingerprint("profiling"))

        def run():
            remote = Remote(pr["remote"], pr["remote_dir"] or None, pr["remote_python"], pr["ssh_config"] or None)
            precs = [p for p in self.cfg["export"]["precisions"] if p in bundles[ids[0]]["precisions"]]
            res = profile_remote([bundles[i]["path"] for i in ids], remote, batches=pr["batch"],
                                 threads=pr["threads"], precisions=precs, warmup_iters=pr["warmup"],
                                 iters=pr["iters"], energy=pr["energy"], seed=self.seed, log=self.log)
            save_results(out, res)
            return {"path": str(out), "n": len(res["records"])}

        self.cache.run("remote profile", key, run, [out])

        by_sha = {self._bundle_hash(bundles[i]["path"]): i for i in ids}
        recs = []
        for rec in load_results(out)["records"]:
            rec["model_id"] = by_sha.get(rec.get("sha256"), rec.get("model"))
            recs.append(rec)
        return recs

    def _computed_by(self, entries: list[dict[str, Any]]) -> dict[str, str]:
        """Model id -> the executor that trained/fine-tuned it (from state.json, so a resumed study tells true)."""
        out = {}
        for e in entries:
            name = "baseline" if e["id"] == "baseline" else f"finetune {e['id']}"
            rec = self.cache.state["stages"].get(name) or {}
            out[e["id"]] = rec.get("executor", "local")
        return out

    def _latency_where(self) -> str:
        rec = (self.cache.state["stages"].get("profile") or {}).get("result") or {}
        if rec.get("measured_on"):  # [profile] node: one Ray task pinned to that node (recorded, so a resume tells true)
            where = [f"{rec['measured_on']}, in one Ray task pinned to that node holding all its CPUs, after every "
                     f"compute stage had finished, with nothing else of the study running"]
        else:
            where = [f"this machine (the study's driver, {platform.node() or 'unknown host'}), after every compute "
                     f"stage had finished, with nothing else of the study running"]
        if self.cfg["profile"]["remote"]:
            where.append(f"the board {self.cfg['profile']['remote']} over SSH (its records name it)")
        if self.results_files:
            where.append("records merged from --results files (each names where it was measured)")
        return "; ".join(where)

    @staticmethod
    def _bundle_hash(folder) -> str:
        return manifest_hash(read_json(Path(folder) / "manifest.json", f"bundle manifest {folder}/manifest.json"))

    def merge_results(self, entries: list[dict[str, Any]], bundles: dict[str, dict]) -> list[dict[str, Any]]:
        """``compare --results FILE...``: records measured elsewhere, accepted only for this study's models."""
        known: dict[str, str] = {}
        for ent in entries:
            known[file_sha256(ent["checkpoint"])] = ent["id"]
            for ex in ent["onnx"].values():
                known[file_sha256(ex["path"])] = ent["id"]
        for mid, b in bundles.items():
            known[self._bundle_hash(b["path"])] = mid
        merged = []
        for path in self.results_files:
            res = load_results(path)
            for rec in res["records"]:
                sha = str(rec.get("sha256"))
                if sha not in known:
                    raise EdgepruneError(
                        f"--results {path}: {rec.get('model')} (sha256 {sha[:12]}) is not a model of this study; "
                        f"measure the study's own ONNX files or bundles (study/onnx, study/bundles)")
                rec = dict(rec, model_id=known[sha], merged_from=str(path))
                rec["measured_on"] = rec.get("measured_on") or measured_on(rec)
                merged.append(rec)
            self.notes.append(f"merged {len(res['records'])} latency record(s) from {path}")
        return merged

    # -- the whole study ----------------------------------------------------------------------------
    def run(self, executor=None) -> dict[str, Any]:
        """The whole study. ``executor``: a started RayExecutor that already computed this study's stages (the
        seeds of a study run on Ray: their compute stages go to the cluster together, see _run_seeds)."""
        t0 = time.perf_counter()
        check_profile_node(self.cfg)
        ex, own = executor, False
        if ex is None and self.executor == "ray":
            ex, own = RayExecutor(self.cfg, self.log), True
            ex.start()  # Ray missing, an unreachable address, too few GPUs, an unknown node: one error, before any stage
        try:
            data_path, data_sha = self.data_stage()
            self._data_path = data_path
            if own:
                # every compute stage runs on the cluster and is recorded here; the steps below then reuse them
                ex.submit(self, data_path, data_sha)
                ex.drain()
            if ex is not None:
                self.executor_info = ex.info_for(self)
                if own and ex.profile_node is None:
                    ex.close()  # a Ray started for this study stops before profiling on the driver
            return self._finish(t0, data_path, data_sha, ex)
        finally:
            if own:
                ex.close()

    def _finish(self, t0: float, data_path: Path, data_sha: str, ex) -> dict[str, Any]:
        """Every stage after the compute stages ran (here or on Ray): the passes that collect them, profiling
        (on the driver, or on the [profile] node through ``ex``), bundles, and the report."""
        base, base_key = self.baseline_stage(data_path, data_sha)
        data = None
        plan = self.analyze_stage(base, base_key, data)

        entries = []
        bck = load_checkpoint(base)
        entries.append({"id": "baseline", "method": "baseline", "target": 1.0, "checkpoint": base, "key": base_key,
                        "pruned": None})
        check_before_stages(self.cfg)  # the methods again (a Study made without run_study)
        for method in self.cfg["prune"]["methods"]:
            for target in self.cfg["prune"]["targets"]:
                try:
                    mid, pruned, final, key = self.prune_stage(method, float(target), base, base_key, plan=plan)
                except EdgepruneError as exc:
                    self.notes.append(f"{model_id(method, float(target))} skipped: {exc}")
                    self.log(f"[skip]  {model_id(method, float(target))}: {exc}")
                    continue
                entries.append({"id": mid, "method": method, "target": float(target), "checkpoint": final,
                                "key": key, "pruned": pruned})
        models = []
        for e in entries:
            ck = bck if e["id"] == "baseline" else load_checkpoint(e["checkpoint"])
            ev = self.evaluate_stage(e["id"], e["checkpoint"], e["key"], data_path, e["pruned"])
            e["onnx"] = self.export_stage(e["id"], e["checkpoint"], e["key"], data_path)
            models.append({
                "id": e["id"], "method": e["method"], "target": e["target"], "checkpoint": str(e["checkpoint"]),
                "macs": ck.meta["macs"], "params": ck.meta["params"], "layers": ck.meta.get("weight_layers"),
                "units": ck.meta.get("units"), "accuracy": ev["accuracy"],
                "accuracy_before_finetune": ev.get("accuracy_before_finetune"), "per_snr": ev["per_snr"],
                "frames": ev.get("frames"), "eval": ev.get("eval"), "training": training_summary(ck.meta),
                "pruning": pruning_summary(ck.meta),
                "onnx": {p: {k: v for k, v in x.items() if k in ("path", "accuracy", "max_abs_diff", "argmax_agreement")}
                         for p, x in e["onnx"].items()},
            })
        latency = self.profile_stage(entries, ex)
        if ex is not None:
            self.executor_info = ex.info_for(self)  # with the profiling task, if it ran on the node
        bundles = self.bundle_stage(entries) if self.cfg["profile"]["target"] else {}
        if self.cfg["profile"]["remote"]:
            latency += self.remote_stage(bundles)
        if self.results_files:
            latency += self.merge_results(entries, bundles)
        images = []
        if plan:
            for img in plan.get("images", []):
                if Path(img).exists():
                    shutil.copyfile(img, self.out / Path(img).name)
                    images.append(Path(img).name)
        results = {
            "plan": plan_file_summary(plan["plan"]) if plan else None,
            "study": self.cfg, "dataset": {**{k: v for k, v in self.dataset_info.items() if k != "classes"},
                                          "n_classes": len(self.dataset_info.get("classes") or [])},
            "machine": getattr(self, "machine", {}), "mac_definition": MAC_DEFINITION,
            "models": models, "latency": latency, "notes": self.notes,
            "stages": {"ran": self.cache.ran, "reused": self.cache.reused},
            # where the models were computed (per stage: state.json "executor") and where latency was measured
            "executor": self.executor_info,
            "computed_by": self._computed_by(entries),
            "latency_measured_on": self._latency_where(),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        paths = write_report(results, self.out, extra_images=images)
        return {"results": results, **paths}


def training_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """Epochs, best epoch and validation accuracy per epoch of a checkpoint's last training run."""
    m = meta.get("metrics") or {}
    hist = m.get("history") or []
    return {"epochs": m.get("epochs"), "best_epoch": m.get("best_epoch"),
            "val_acc": [h.get("val_acc") for h in hist if isinstance(h, dict)]}


def pruning_summary(meta: dict[str, Any]) -> dict[str, Any] | None:
    """What a pruned model kept and why (from its lineage): kept units, forced transitions, the plan's choice."""
    rec = next((r for r in reversed(meta.get("lineage") or []) if isinstance(r, dict) and r.get("op") == "prune"), None)
    if rec is None:
        return None
    forced = [f.get("unit") if isinstance(f, dict) else f for f in rec.get("forced") or []]
    match = rec.get("match") or {}
    return {"method": rec.get("method"), "kept_units": rec.get("kept_positions"), "forced": forced,
            "plan_kept": (rec.get("plan_summary") or {}).get("kept_units"), "rule": match.get("rule"),
            "resegmented": rec.get("resegmented")}


def plan_file_summary(path: str | Path) -> dict[str, Any] | None:
    """The parts of plan.json the report draws: units, blocks, kept units, the similarity and importance used."""
    try:
        plan = read_json(path, f"plan {path}")
    except EdgepruneError:
        return None
    if not isinstance(plan, dict):
        return None
    keep = ("layer", "position", "role", "removable", "transition")
    return {"units": [{k: u.get(k) for k in keep} for u in plan.get("units", [])],
            "segments": (plan.get("segments") or {}).get("bounds"), "kept_units": plan.get("kept_units"),
            "similarity_metric": (plan.get("similarity") or {}).get("metric"),
            "importance_proxy": (plan.get("importance") or {}).get("proxy"),
            "importance_rule": (plan.get("importance") or {}).get("rule")}


def data_path_of(study: Study) -> Path:
    return study._data_path


def run_study(config: str | Path | dict[str, Any], out: str | Path, log=None, results_files=()) -> dict[str, Any]:
    """Run (or resume) the study described by ``config`` (a TOML path or a config dict) into ``out``.

    ``results_files``: latency results measured elsewhere (``edgeprune profile`` or a bundle's
    ``run.py bench --out``) of this study's models, merged into the report beside its own.
    With ``[study] seeds``, the study runs once per seed into ``out/seed-<s>/``
    and ``out/summary.md``/``summary.json`` give mean +- 95% CI per method and
    target and the paired difference to ``random`` (:mod:`edgeprune.study.stats`).
    """
    cfg = load_config(config) if isinstance(config, (str, Path)) else normalise(config)
    check_profile_node(cfg)
    if results_files:
        for path in results_files:  # checked (RESULTS_SCHEMA) before the first stage, not after the study
            load_results(path)
    check_before_stages(cfg)
    out = Path(out)
    fresh = not out.exists()
    study = None
    try:
        if cfg["study"]["seeds"]:
            if results_files:
                raise EdgepruneError("--results merges latencies into one study; with [study] seeds, merge them "
                                     "into each seed's study (compare --config ... --out DIR/seed-<s> --results ...)")
            return _run_seeds(cfg, out, log)
        study = Study(cfg, out, log, results_files)  # takes the folder's lock (another run on it: one clear error)
        return study.run()
    except BaseException:
        # a study that fails before finishing any stage leaves no half-made folder behind;
        # once a stage is recorded (state.json) the folder is kept so a re-run resumes.
        # Only a run that held the folder's lock removes it (never the loser of a lock race).
        if study is not None and fresh and out.is_dir() and not study.cache.state["stages"]:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        if study is not None:
            study.cache.close()


def check_before_stages(cfg: dict[str, Any]) -> None:
    """What the config names that only exists outside it, checked before the first stage runs (a typo must not
    wait for the baseline to train): the methods (plugins are loaded by now), the device profile, the user's
    code file and the ssh config file. Types, ranges and the remote host are checked by ``normalise``."""
    for method in cfg["prune"]["methods"]:
        if split_method(method)[0] not in known_methods():
            raise EdgepruneError(f"[prune] unknown method {method!r}; choose from: {', '.join(sorted(known_methods()))} "
                                 f"(add '+kd' for distillation)")
    pr = cfg["profile"]
    if pr["target"]:
        load_target(pr["target"])
    if pr["ssh_config"] and not Path(pr["ssh_config"]).expanduser().is_file():
        raise EdgepruneError(f"[profile] ssh_config {pr['ssh_config']} is not a file")
    name = cfg["model"]["name"]

    if not cfg["model"]["checkpoint"]:
        _check_model_name(name)  # a zoo name or FILE.py:NAME
    if not cfg["model"]["checkpoint"] and is_code_ref(name):
        parse_ref(name)  # the code file exists and is a .py file
    elif cfg["model"]["checkpoint"] and not Path(cfg["model"]["checkpoint"]).expanduser().is_file():
        raise EdgepruneError(f"[model] checkpoint {cfg['model']['checkpoint']} does not exist")


def check_profile_node(cfg: dict[str, Any]) -> None:
    if cfg["profile"].get("node") and cfg["study"].get("executor") != "ray":
        raise EdgepruneError(f"[profile] node = {cfg['profile']['node'][:80]!r} names a Ray node: it needs the ray "
                             f"executor (--executor ray or [study] executor = \"ray\")")


def seed_config(cfg: dict[str, Any], s: int) -> dict[str, Any]:
    sub = copy.deepcopy(cfg)
    sub["study"]["seed"], sub["study"]["seeds"] = int(s), []
    return sub


def submit_studies(ex, studies: list[Study]) -> None:
    """Every study's compute stages to the Ray executor ``ex`` at once, then wait for all of them.

    Each study's data stage runs here (the driver) just before its chains are submitted, so the first seed's
    baseline trains while the next seed's data is made; each branch waits only on its own seed's baseline task.
    """
    ex.several = len(studies) > 1
    for study in studies:
        data_path, data_sha = study.data_stage()
        study._data_path = data_path
        ex.submit(study, data_path, data_sha)
    ex.drain()


def _run_seeds(cfg: dict[str, Any], out: Path, log=None) -> dict[str, Any]:
    per_seed, epochs, reports, results = {}, {}, {}, {}
    seeds = [int(s) for s in cfg["study"]["seeds"]]
    ex = None
    if cfg["study"]["executor"] == "ray":
        # the seeds' compute stages all go to the cluster together: no seed waits for another
        ex = RayExecutor(cfg, log or (lambda m: None))
        ex.start()  # every bad-input error before any folder is made
    studies: dict[int, Study] = {}
    try:
        for s in seeds:
            studies[s] = Study(seed_config(cfg, s), out / f"seed-{s}", log)
        if ex is not None:
            submit_studies(ex, [studies[s] for s in seeds])
            if ex.profile_node is None:
                ex.close()  # a Ray started for this study stops before profiling on the driver
        for s in seeds:
            study = studies[s]
            res = study.run(executor=ex)  # with Ray: every compute stage is recorded already, then profiling
            results[s] = res["results"]
            per_seed[s] = res["results"]["models"]
            epochs[s] = getattr(study, "baseline_epochs", None) or {}
            reports[s] = {k: v for k, v in res.items() if k != "results"}
    finally:
        if ex is not None:
            ex.close()
        for study in studies.values():
            study.cache.close()
    summary = summarise(per_seed, epochs)
    paths = write_summary(summary, out)

    paths.update(write_report(over_seeds(results), out))
    return {"summary": summary, "per_seed": reports, **paths}


def over_seeds(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """One study's results for the report over seeds: each model's accuracy is its mean over the seeds, with
    ``accuracy_runs`` (per seed, in ``seeds`` order) and ``accuracy_ci`` (95% t-interval of the mean), so the
    verdict judges accuracy differences by a paired test over seeds; MACs, tables and latency are the first
    seed's (the architectures of one method and target differ only in which units/channels they keep)."""
    seeds = sorted(results)
    out = copy.deepcopy(results[seeds[0]])
    by_id = {s: {m["id"]: m for m in results[s]["models"]} for s in seeds}
    for m in out["models"]:
        runs = [by_id[s].get(m["id"], {}).get("accuracy") for s in seeds]
        if any(a is None for a in runs):
            continue
        st = mean_ci(runs)
        m.update(accuracy=st["mean"], accuracy_runs=runs, seeds=seeds)
        if st["ci"] is not None:
            m["accuracy_ci"] = [st["mean"] - st["ci"], st["mean"] + st["ci"]]
    out["notes"] = list(out.get("notes") or []) + [
        f"accuracy: mean over seeds {', '.join(map(str, seeds))} (per-seed studies in seed-<s>/, summary.md); "
        f"MACs, latency and plots from seed {seeds[0]}"]
    out["seeds"] = seeds
    return out


def quickstart_config() -> Path:
    """The built-in quickstart config (configs/quickstart.toml of the source tree)."""
    here = Path(__file__).resolve()
    for cand in (here.parents[2] / "configs" / "quickstart.toml",
                 Path(sys.prefix) / "share" / "edgeprune" / "configs" / "quickstart.toml"):
        if cand.is_file():
            return cand
    raise EdgepruneError("the quickstart config (configs/quickstart.toml) is not installed; "
                         "run from a source checkout or pass --config")
