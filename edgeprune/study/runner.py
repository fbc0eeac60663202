"""Run a comparison study: data -> baseline -> prune x targets -> fine-tune -> export -> profile -> report.

Every stage writes files into the study folder and is recorded in
``state.json`` (see :mod:`edgeprune.study.stages`), so an interrupted study
resumes and reuses what was finished. Every method gets the same MACs target
(matched within 2% by the methods themselves) and the same fine-tuning.
All latencies of one study are measured in one profiling stage, so the
speed-ups compare numbers taken on the same machine in the same run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..checkpoint import file_sha256, load_checkpoint
from ..errors import EdgepruneError
from .config import load_config, normalise
from . import stages
from .stages import StageCache, stage_key


def _fmt_target(t: float) -> str:
    return f"{t:g}"


def model_id(method: str, target: float) -> str:
    return f"{method}@{_fmt_target(target)}"


def _file_id(mid: str) -> str:
    return mid.replace("@", "-at-")


class Study:
    def __init__(self, cfg: dict[str, Any], out: str | Path, log: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self.cache = StageCache(self.out, self.log)
        self.seed = cfg["study"]["seed"]
        self.threads = cfg["study"]["threads"] or None
        self.notes: list[str] = []

    # -- stages -------------------------------------------------------------------------------
    def data_stage(self) -> tuple[Path, str]:
        d = self.cfg["data"]
        key = stage_key("data", d, self.seed, stages.code_fingerprint("edgeprune.data"))
        out = self.out / "data" / "dataset.npz"

        def run():
            from ..data.dataset import save_npz
            from ..data.readers import load_dataset
            from ..data.split import filter_snr

            if d["synth"]:
                from ..data.synth import generate

                ds = generate(d["synth"], per_key=d["per_key"], seed=self.seed, snrs=d["snrs"] or None,
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

        res = self.cache.run("data", key, run, [out])
        self.dataset_info = res
        return Path(res["path"]), res["sha256"]

    def baseline_stage(self, data_path: Path, data_key: str) -> tuple[Path, str]:
        m, t = self.cfg["model"], self.cfg["train"]
        key = stage_key("baseline", m, t, data_key, self.seed, self.cfg["data"]["split"],
                        stages.code_fingerprint("edgeprune.models", "edgeprune.training"))
        out = self.out / "models" / "baseline.pt"

        def run():
            if m["checkpoint"]:
                import shutil

                ck = load_checkpoint(m["checkpoint"])
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(m["checkpoint"], out)
                return {"path": str(out), "trained": False, "model": ck.spec["name"]}
            from ..training.train import train_model

            train_model(data_path, m["name"], out, epochs=t["epochs"], batch_size=t["batch_size"], lr=t["lr"],
                        step_size=t["step_size"], gamma=t["gamma"], seed=self.seed,
                        split=tuple(self.cfg["data"]["split"]), threads=self.threads, patience=t["patience"] or 0)
            return {"path": str(out), "trained": True, "model": m["name"]}

        self.cache.run("baseline", key, run, [out])
        mt = load_checkpoint(out).meta.get("metrics", {})
        if "epochs_run" in mt:
            self.baseline_epochs = {k: mt.get(k) for k in ("epochs", "epochs_run", "stopped_early", "best_epoch")}
            self.notes.append(f"baseline trained {mt['epochs_run']} of {mt['epochs']} epochs"
                              + (f" (early stopping on the validation loss, patience {t['patience']})"
                                 if mt.get("stopped_early") else "") + f"; best epoch {mt.get('best_epoch')}")
        return out, key

    def analyze_stage(self, base: Path, base_key: str, data) -> dict[str, Any] | None:
        if "layer" not in self.cfg["prune"]["methods"]:
            return None
        p = self.cfg["prune"]
        key = stage_key("analyze", base_key, p["similarity"], p["importance"], p["transition"], self.seed,
                        *([p["reference"], p["keep"]] if p["reference"] else []),
                        stages.code_fingerprint("edgeprune.analysis"))
        folder = self.out / "analysis"
        plan_path = folder / "plan.json"

        def run():
            from ..analysis.plan import analyze, save_plan
            from ..analysis.plots import plot_importance, plot_similarity

            if p["reference"]:
                plan = analyze(load_checkpoint(base), data, reference=True, seed=self.seed,
                               keep=",".join(map(str, p["keep"])) if p["keep"] else None)
            else:
                plan = analyze(load_checkpoint(base), data, similarity=p["similarity"], importance=p["importance"],
                               seed=self.seed)
            save_plan(plan_path, plan)
            imgs = []
            try:
                imgs.append(str(plot_similarity(plan, folder / "similarity.png")))
                imgs.append(str(plot_importance(plan, folder / "importance.png")))
            except EdgepruneError as exc:  # matplotlib missing: the study still runs
                self.notes.append(f"analysis plots skipped: {exc}")
            return {"plan": str(plan_path), "images": imgs,
                    "segments": plan.get("segments", {}).get("bounds")}

        return self.cache.run("analyze", key, run, [plan_path])

    def prune_stage(self, method: str, target: float, base: Path, base_key: str, data, plan: dict | None):
        p, f = self.cfg["prune"], self.cfg["finetune"]
        mid = model_id(method, target)
        pruned = self.out / "models" / f"{_file_id(mid)}.pruned.pt"
        final = self.out / "models" / f"{_file_id(mid)}.pt"
        base_method, distill = split_method(method)
        # the "+kd" variant prunes exactly like its base method: share the pruned checkpoint
        pruned = self.out / "models" / f"{_file_id(model_id(base_method, target))}.pruned.pt"
        pkey = stage_key("prune", base_method, target, base_key, p, self.seed, plan["plan"] if plan else None,
                         stages.code_fingerprint("edgeprune.pruning", "edgeprune.analysis"))

        def run_prune():
            from ..checkpoint import save_checkpoint
            from ..pruning.apply import pruned_meta
            from ..pruning.registry import get_method

            ck = load_checkpoint(base)
            fn = get_method(base_method)
            opts: dict[str, Any] = {}
            target_opt: dict[str, Any] = {"target_macs": float(target)}
            if base_method == "layer":
                opts = {"plan": plan["plan"], "transition": p["transition"]}
                if p["reference"]:   # the reference's plan fixes its own budget (its kept units)
                    opts, target_opt = {"plan": plan["plan"]}, {}
            res = fn(ck, data, seed=self.seed, **target_opt, **opts)
            res.lineage.setdefault("method", base_method)
            meta = pruned_meta(ck, res)
            save_checkpoint(pruned, res.spec, res.state_dict, meta)
            return {"path": str(pruned), "macs": meta["macs"], "params": meta["params"]}

        self.cache.run(f"prune {model_id(base_method, target)}", pkey, run_prune, [pruned])
        fkey = stage_key("finetune", pkey, f, distill, self.seed, stages.code_fingerprint("edgeprune.training"))

        def run_finetune():
            from ..training.finetune import finetune

            r = finetune(pruned, data_path_of(self), f["epochs"], final, lr=f["lr"], l1=f["l1"], seed=self.seed,
                         distill_from=base if (f["distill"] or distill) else None, threads=self.threads)
            return {"path": str(final), "result": {k: v for k, v in r.items() if not isinstance(v, (dict, list))}}

        self.cache.run(f"finetune {mid}", fkey, run_finetune, [final])
        return mid, pruned, final, fkey

    def evaluate_stage(self, mid: str, ckpt: Path, key: str, data_path: Path, pruned: Path | None = None):
        def run():
            from ..training.evaluate import eval_data, evaluate

            ck = load_checkpoint(ckpt)
            ds, _ = eval_data(ck, data_path, split="test")
            r = evaluate(ck, ds)
            rec = {"accuracy": r["accuracy"], "per_snr": {str(s["snr"]): s["accuracy"] for s in r["per_snr"]},
                   "frames": r["frames"]}
            if pruned is not None:
                pk = load_checkpoint(pruned)
                rec["accuracy_before_finetune"] = evaluate(pk, ds)["accuracy"]
            return rec

        ekey = stage_key("evaluate", key, str(data_path), stages.code_fingerprint("edgeprune.training"))
        return self.cache.run(f"evaluate {mid}", ekey, run)

    def export_stage(self, mid: str, ckpt: Path, key: str, data_path: Path) -> dict[str, Any]:
        e = self.cfg["export"]
        out = {}
        for prec in e["precisions"]:
            onnx_path = self.out / "onnx" / f"{_file_id(mid)}.{prec}.onnx"

            def run(prec=prec, onnx_path=onnx_path):
                from export.onnx_export import export_checkpoint

                r = export_checkpoint(ckpt, onnx_path, opset=e["opset"], precision=prec, verify_data=data_path,
                                      calib_data=data_path, seed=self.seed)
                keep = {k: v for k, v in r.items() if isinstance(v, (int, float, str, bool)) or v is None}
                return {"path": str(onnx_path), **keep}

            xkey = stage_key("export", key, prec, e["opset"], stages.code_fingerprint("export"))
            out[prec] = self.cache.run(f"export {mid} {prec}", xkey, run, [onnx_path])
        return out

    def profile_stage(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        pr = self.cfg["profile"]
        key = stage_key("profile", pr, [(e["id"], e["key"]) for e in entries], stages.code_fingerprint("profiling"))
        out = self.out / "profile" / "latency.json"

        def run():
            from profiling.harness import profile
            from profiling.records import save_results

            records: list[dict[str, Any]] = []
            skipped: list[dict[str, Any]] = []
            by_path = {}
            onnx_models = []
            torch_models = []
            for e in entries:
                for prec, ex in e["onnx"].items():
                    by_path[str(Path(ex["path"]).resolve())] = (e["id"], prec)
                    onnx_models.append(ex["path"])
                by_path[str(Path(e["checkpoint"]).resolve())] = (e["id"], "fp32")
                torch_models.append(str(e["checkpoint"]))
            runs = []
            if "onnxruntime" in pr["backends"]:
                runs.append(("onnxruntime", onnx_models))
            if "tensorrt" in pr["backends"]:
                runs.append(("tensorrt", onnx_models))
            if "torch" in pr["backends"]:
                runs.append(("torch", torch_models))
            # Every model is timed in each of `rounds` rounds (models interleaved), for at least
            # `min_time_ms` (and `iters` runs); a model's figure is its median round. Drift and
            # interruptions of a shared machine then hit every model alike instead of a few.
            rounds = max(1, pr["rounds"])
            res = {"machine": {}}
            for backend, models in runs:
                per_key: dict[tuple, list[dict[str, Any]]] = {}
                for rnd in range(rounds):
                    timing = ({"iters": None, "duration_ms": pr["min_time_ms"], "min_iters": pr["iters"]}
                              if pr["min_time_ms"] else {"iters": pr["iters"], "duration_ms": None})
                    res = profile(models, backends=(backend,), batches=pr["batch"], threads=pr["threads"],
                                  warmup_iters=pr["warmup"], seed=self.seed, show_progress=True,
                                  allow_empty=True, **timing)
                    for rec in res["records"]:
                        k = (str(Path(rec["path"]).resolve()), rec.get("precision"), int(rec["batch"]),
                             int(rec.get("threads") or 0))
                        per_key.setdefault(k, []).append(rec)
                    if rnd == 0:
                        skipped += res.get("skipped", [])
                for k, recs in per_key.items():
                    recs.sort(key=lambda r: r["median_ms"])
                    rec = dict(recs[len(recs) // 2])
                    rec["rounds"] = [r["median_ms"] for r in recs]
                    mid, prec = by_path.get(k[0], (rec.get("model"), "fp32"))
                    rec["model_id"] = mid
                    rec["precision"] = rec.get("precision") or prec
                    records.append(rec)
            all_res = {"schema": 1, "records": records, "skipped": skipped, "machine": res.get("machine", {})}
            save_results(out, all_res)
            return {"path": str(out), "n": len(records)}

        self.cache.run("profile", key, run, [out])
        from profiling.records import load_results

        res = load_results(out)
        self.machine = res.get("machine", {})
        for s in res.get("skipped", []):
            self.notes.append(f"not profiled: {s.get('model')} {s.get('backend')} b{s.get('batch')}: {s.get('reason')}")
        return res["records"]

    # -- the whole study ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from ..data.readers import load_dataset
        from ..models.macs import MAC_DEFINITION
        from .report import write_report

        t0 = time.perf_counter()
        data_path, data_sha = self.data_stage()
        self._data_path = data_path
        base, base_key = self.baseline_stage(data_path, data_sha)
        data = load_dataset(data_path)
        plan = self.analyze_stage(base, base_key, data)

        entries = []
        bck = load_checkpoint(base)
        entries.append({"id": "baseline", "method": "baseline", "target": 1.0, "checkpoint": base, "key": base_key,
                        "pruned": None})
        from ..pruning.registry import methods as known_methods

        for method in self.cfg["prune"]["methods"]:
            if split_method(method)[0] not in known_methods():
                raise EdgepruneError(f"[prune] unknown method {method!r}; choose from: {', '.join(sorted(known_methods()))} "
                                     f"(add '+kd' for distillation)")
        for method in self.cfg["prune"]["methods"]:
            for target in self.cfg["prune"]["targets"]:
                try:
                    mid, pruned, final, key = self.prune_stage(method, float(target), base, base_key, data, plan)
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
                "onnx": {p: {k: v for k, v in x.items() if k in ("path", "accuracy", "max_abs_diff", "argmax_agreement")}
                         for p, x in e["onnx"].items()},
            })
        latency = self.profile_stage(entries)
        images = []
        if plan:
            import shutil

            for img in plan.get("images", []):
                if Path(img).exists():
                    shutil.copyfile(img, self.out / Path(img).name)
                    images.append(Path(img).name)
        results = {
            "study": self.cfg, "dataset": {k: v for k, v in self.dataset_info.items() if k != "classes"},
            "machine": getattr(self, "machine", {}), "mac_definition": MAC_DEFINITION,
            "models": models, "latency": latency, "notes": self.notes,
            "stages": {"ran": self.cache.ran, "reused": self.cache.reused},
            "seconds": round(time.perf_counter() - t0, 1),
        }
        paths = write_report(results, self.out, extra_images=images)
        return {"results": results, **paths}


def split_method(method: str) -> tuple[str, bool]:
    """``"layer+kd"`` -> ("layer", True): the method, fine-tuned with distillation from the baseline."""
    base, _, suffix = method.partition("+")
    if suffix not in ("", "kd"):
        raise EdgepruneError(f"unknown method variant {method!r} (only '+kd', distillation, is known)")
    return base, suffix == "kd"


def data_path_of(study: Study) -> Path:
    return study._data_path


def run_study(config: str | Path | dict[str, Any], out: str | Path, log=None) -> dict[str, Any]:
    """Run (or resume) the study described by ``config`` (a TOML path or a config dict) into ``out``.

    With ``[study] seeds``, the study runs once per seed into ``out/seed-<s>/``
    and ``out/summary.md``/``summary.json`` give mean +- 95% CI per method and
    target and the paired difference to ``random`` (:mod:`edgeprune.study.stats`).
    """
    cfg = load_config(config) if isinstance(config, (str, Path)) else normalise(config)
    out = Path(out)
    fresh = not out.exists()
    try:
        if cfg["study"]["seeds"]:
            return _run_seeds(cfg, out, log)
        return Study(cfg, out, log).run()
    except BaseException:
        # a study that fails before finishing any stage leaves no half-made folder behind;
        # once a stage is recorded (state.json) the folder is kept so a re-run resumes
        if fresh and out.is_dir() and not (out / "state.json").exists():
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise


def _run_seeds(cfg: dict[str, Any], out: Path, log=None) -> dict[str, Any]:
    import copy

    from .stats import summarise, write_summary

    per_seed, epochs, reports = {}, {}, {}
    for s in cfg["study"]["seeds"]:
        sub = copy.deepcopy(cfg)
        sub["study"]["seed"], sub["study"]["seeds"] = int(s), []
        study = Study(sub, out / f"seed-{s}", log)
        res = study.run()
        per_seed[int(s)] = res["results"]["models"]
        epochs[int(s)] = getattr(study, "baseline_epochs", None) or {}
        reports[int(s)] = {k: v for k, v in res.items() if k != "results"}
    summary = summarise(per_seed, epochs)
    paths = write_summary(summary, out)
    return {"summary": summary, "per_seed": reports, **paths}


def quickstart_config() -> Path:
    """The built-in quickstart config (configs/quickstart.toml of the source tree)."""
    here = Path(__file__).resolve()
    for cand in (here.parents[2] / "configs" / "quickstart.toml",
                 Path(sys.prefix) / "share" / "edgeprune" / "configs" / "quickstart.toml"):
        if cand.is_file():
            return cand
    raise EdgepruneError("the quickstart config (configs/quickstart.toml) is not installed; "
                         "run from a source checkout or pass --config")
