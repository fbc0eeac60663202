"""The study report: its verdict, its warnings (each from its own evidence), and the page in a real browser.

The results here are synthetic (built by hand), so every expected figure is
known: speed-ups are ratios of the given latencies, significance follows the
textbook two-proportion and paired-t formulas, and each warning is provoked by
one change to results that otherwise raise none.
"""

from __future__ import annotations

import copy
import math
import re

import pytest

from edgeprune.study.caveats import caveats
from edgeprune.study.report import write_report
from edgeprune.study.verdict import compare_accuracy, compute_verdict

MACHINE = {"cpu": "Test CPU", "hostname_sha256": "aaaaaaaaaaaaaaaa"}
BASE_MACS = 1_000_000
N_UNITS = 10


def _rec(mid, backend, batch, rounds, machine=None):
    rs = sorted(rounds)
    return {"model_id": mid, "backend": backend, "precision": "fp32", "batch": batch, "threads": 1,
            "median_ms": rs[len(rs) // 2], "rounds": list(rounds), "machine": dict(machine or MACHINE),
            "backend_version": "1.0"}


def _model(mid, method, target, frac, acc, frames, kept=None, layers=20):
    m = {"id": mid, "method": method, "target": target, "macs": int(round(frac * BASE_MACS)),
         "params": int(90_000 * frac), "layers": layers, "accuracy": acc, "frames": frames,
         "per_snr": {"0.0": acc - 0.1, "10.0": acc + 0.05},
         "eval": {"split": "test", "same_as_training": True, "sha256": "d" * 64, "trained_on": "d" * 64},
         "training": {"epochs": 10, "best_epoch": 6, "val_acc": [0.3, 0.5, 0.6, 0.62, 0.63, 0.64, 0.63, 0.64, 0.63, 0.63]}}
    if kept is not None:
        m["pruning"] = {"method": method, "kept_units": kept, "forced": [4, 7] if method == "layer" else [],
                        "plan_kept": [2, 9] if method == "layer" else None, "rule": "fill"}
    return m


def clean_results():
    """Results that deserve no warning: a clearly better baseline, many frames, separated rounds, one machine."""
    models = [_model("baseline", "baseline", 1.0, 1.0, 0.90, 100_000),
              _model("layer@0.3", "layer", 0.3, 0.301, 0.85, 100_000, kept=[2, 4, 6, 7, 9], layers=8),
              _model("channel-l1@0.3", "channel-l1", 0.3, 0.298, 0.80, 100_000)]
    latency = [_rec("baseline", "onnxruntime", 1, [1.00, 1.01, 1.02]),
               _rec("layer@0.3", "onnxruntime", 1, [0.30, 0.31, 0.32]),
               _rec("channel-l1@0.3", "onnxruntime", 1, [0.50, 0.51, 0.52])]
    units = [{"layer": i, "position": i, "role": "stem" if i == 0 else "unit", "removable": i not in (0, 4, 7),
              "transition": i in (0, 4, 7)} for i in range(N_UNITS)]
    return {"study": {"study": {"name": "synthetic"}, "profile": {"backends": ["onnxruntime", "torch"]}},
            "dataset": {"frames": 500_000, "n_classes": 11}, "machine": MACHINE,
            "mac_definition": "MACs: conv + linear multiply-accumulates per frame", "models": models,
            "latency": latency, "notes": [],
            "plan": {"units": units, "segments": [[0, 1], [1, 3], [3, 10]], "kept_units": [2, 9],
                     "similarity_metric": "cka-unbiased", "importance_proxy": "synflow",
                     "importance_rule": "lowest score kept"}}


def beaten_results():
    """The demo's situation: every depth-pruned model beats a 51.9% baseline on 1,320 test frames."""
    r = clean_results()
    models = [_model("baseline", "baseline", 1.0, 1.0, 0.519, 1320),
              _model("layer@0.3", "layer", 0.3, 0.300, 0.570, 1320, kept=[2, 4, 6, 7, 9], layers=8),
              _model("dbp@0.3", "dbp", 0.3, 0.299, 0.541, 1320, kept=[1, 3, 4, 7, 8], layers=8),
              _model("channel-l1@0.3", "channel-l1", 0.3, 0.302, 0.449, 1320)]
    models[0]["training"] = {"epochs": 10, "best_epoch": 10,
                             "val_acc": [0.2, 0.3, 0.35, 0.4, 0.42, 0.45, 0.47, 0.49, 0.50, 0.52]}
    r["models"] = models
    r["latency"] = [
        _rec("baseline", "onnxruntime", 1, [1.28, 1.30, 1.33]),
        _rec("layer@0.3", "onnxruntime", 1, [0.39, 0.40, 0.41]),
        _rec("dbp@0.3", "onnxruntime", 1, [0.415, 0.42, 0.43]),
        _rec("channel-l1@0.3", "onnxruntime", 1, [0.69, 0.70, 0.72]),
        _rec("baseline", "torch", 1, [2.0, 2.1, 2.2]),
        _rec("layer@0.3", "torch", 1, [0.80, 0.86, 0.95]),
        _rec("dbp@0.3", "torch", 1, [0.82, 0.84, 0.90]),
        _rec("channel-l1@0.3", "torch", 1, [1.2, 1.25, 1.3]),
    ]
    return r


def kinds(res):
    return [w["kind"] for w in caveats(res, compute_verdict(res))]


def test_verdict_names_fastest_most_accurate_and_pareto():
    res = beaten_results()
    v = compute_verdict(res)
    assert v["primary"] == "onnxruntime fp32 b1, 1 thr"   # the study's first backend
    (t,) = v["targets"]
    assert t["target"] == 0.3 and t["missed_target"] == []
    fastest = {f["key"]: f for f in t["fastest"]}
    ort, pt = fastest["onnxruntime fp32 b1, 1 thr"], fastest["torch fp32 b1, 1 thr"]
    assert ort["id"] == "layer@0.3" and ort["runner_up"] == "dbp@0.3"
    assert ort["speedup"] == pytest.approx(1.30 / 0.40) and ort["over_runner_up"] == pytest.approx(0.42 / 0.40)
    assert ort["resolved"] is True                       # every layer round beat every dbp round
    assert pt["id"] == "dbp@0.3" and pt["runner_up"] == "layer@0.3"   # the other backend ranks differently
    assert pt["resolved"] is False                       # 0.82-0.90 against 0.80-0.95: overlapping rounds
    ma = t["most_accurate"]
    assert ma["id"] == "layer@0.3" and ma["runner_up"] == "dbp@0.3"
    c = ma["comparison"]
    se = math.sqrt(0.570 * 0.430 / 1320 + 0.541 * 0.459 / 1320)   # two-proportion standard error
    assert c["diff"] == pytest.approx(2.9) and c["ci"][1] - c["diff"] == pytest.approx(100 * 1.96 * se, rel=1e-3)
    assert c["significant"] is False                     # 2.9 points < 3.8 points half-width
    assert t["pareto"]["ids"] == ["layer@0.3"]           # faster and more accurate than every other model
    text = "\n".join(v["lines"])
    assert "Fastest on onnxruntime fp32 b1, 1 thr: layer@0.3 (0.400 ms, 3.25x the baseline; 1.05x dbp@0.3" in text
    assert "Most accurate: layer@0.3, 57.0%" in text and "not significant" in text


def test_beaten_baseline_is_warned_with_its_evidence(tmp_path):
    res = beaten_results()
    ws = {w["kind"]: w for w in caveats(res, compute_verdict(res))}
    assert "baseline" in ws
    ev = " ".join(ws["baseline"]["evidence"])
    assert "51.9%" in ev and "2 of 3 pruned models scored higher" in ev
    assert "layer@0.3: 57.0% (+5.1 points, beyond noise" in ev   # 5.1 > 1.96 * 1.94 points
    assert "dbp@0.3: 54.1% (+2.2 points, within noise" in ev
    assert "channel-l1" not in ev                                 # 44.9% did not beat it
    assert "best epoch was the last (10 of 10)" in ev             # still rising when training stopped
    # the written report opens with the verdict, then the warnings
    paths = write_report(res, tmp_path)
    md = open(paths["report_md"]).read()
    assert md.index("## Verdict") < md.index("## Warnings") < md.index("## Headline")
    assert "The baseline was beaten by 2 pruned models" in md
    page = open(paths["report_html"]).read()
    assert "id='verdict'" in page and "data-kind='baseline'" in page
    # self-contained: every image inline, no external resource of any kind
    srcs = re.findall(r"<img src='([^']*)'", page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"(src|href)=['\"](https?:|//)", page) and "<link" not in page


def test_clean_results_raise_no_warning():
    assert kinds(clean_results()) == []


def _missed(r):
    r["models"][2]["macs"] = int(0.34 * BASE_MACS)


def _leaky_split(r):
    r["models"][0]["eval"]["split"] = "all"


def _other_file(r):
    r["models"][0]["eval"].update(same_as_training=False, trained_on="e" * 64)


def _merged(r):
    r["latency"][1]["machine"] = dict(MACHINE, board="NVIDIA Jetson Orin Nano", power_mode="7W")


def _noisy(r):
    r["latency"][1]["rounds"] = [0.20, 0.31, 0.45]


def _unconverged(r):
    r["models"][0]["training"] = {"epochs": 10, "best_epoch": 10, "val_acc": [0.5, 0.6, 0.7, 0.8, 0.85]}


def _few_frames(r):
    for m in r["models"]:
        m["frames"] = 200


@pytest.mark.parametrize("change, kind, needle", [
    (_missed, "missed-target", "channel-l1@0.3: 0.340 of the baseline MACs for a target of 0.3"),
    (_leaky_split, "eval-split", "baseline: scored on the 'all' split"),
    (_other_file, "eval-split", "a file other than the one its weights were trained on"),
    (_merged, "merged-machines", "NVIDIA Jetson Orin Nano, power mode 7W"),
    (_noisy, "noisy-timing", "layer@0.3's rounds differ by 81% of its median"),
    (_unconverged, "baseline", "still rising"),
    (_few_frames, "few-frames", "200 test frames"),
])
def test_each_warning_fires_on_its_own_evidence(change, kind, needle):
    r = copy.deepcopy(clean_results())
    change(r)
    ws = caveats(r, compute_verdict(r))
    assert [w["kind"] for w in ws] == [kind]
    assert needle in " ".join(ws[0]["evidence"])


def test_missed_target_is_flagged_in_the_verdict():
    r = clean_results()
    _missed(r)
    v = compute_verdict(r)
    assert v["targets"][0]["missed_target"] == ["channel-l1@0.3"]
    assert any("Not at equal MACs: channel-l1@0.3" in ln for ln in v["lines"])


def test_error_bars_decide_significance():
    a = {"accuracy": 0.81, "seeds": [0, 1, 2], "accuracy_runs": [0.80, 0.82, 0.81]}
    b = {"accuracy": 0.79, "seeds": [0, 1, 2], "accuracy_runs": [0.78, 0.80, 0.79]}
    c = compare_accuracy(a, b)                       # the same 2-point gain on every seed
    assert c["significant"] is True and c["ci"] == pytest.approx([2.0, 2.0]) and "paired over 3 seeds" in c["how"]
    a["accuracy_runs"] = [0.80, 0.76, 0.84]          # differences 1, -4, 6: mean 1, sd 5
    b["accuracy_runs"] = [0.79, 0.80, 0.78]
    a["accuracy"] = 0.80
    c = compare_accuracy(a, b)
    half = 4.302652729911275 * 5 / math.sqrt(3)      # t(0.975, 2 df) * sd / sqrt(n)
    assert c["significant"] is False and c["ci"] == pytest.approx([1 - half, 1 + half])
    # intervals only (no per-seed runs): overlap decides
    assert compare_accuracy({"accuracy": 0.8, "accuracy_ci": [0.78, 0.82]},
                            {"accuracy": 0.7, "accuracy_ci": [0.68, 0.72]})["significant"] is True
    assert compare_accuracy({"accuracy": 0.8, "accuracy_ci": [0.70, 0.90]},
                            {"accuracy": 0.7, "accuracy_ci": [0.60, 0.80]})["significant"] is False
    # a study with seeds: the verdict shows the intervals and uses them; frame counts no longer raise few-frames
    r = clean_results()
    for m, runs in zip(r["models"], ([0.90, 0.91, 0.89], [0.85, 0.86, 0.84], [0.80, 0.79, 0.81])):
        m.update(seeds=[0, 1, 2], accuracy_runs=runs, accuracy_ci=[min(runs), max(runs)], frames=200)
    v = compute_verdict(r)
    assert "paired over 3 seeds" in "\n".join(v["lines"]) and "95% CI" in "\n".join(v["lines"])
    assert "few-frames" not in kinds(r)


# -- the page in a real browser -----------------------------------------------------------------------
def _analysis_images(folder):
    """similarity.png and importance.png drawn by the analysis plots from a small hand-made plan."""
    import numpy as np

    from edgeprune.analysis.plots import plot_importance, plot_similarity

    n = N_UNITS
    idx = np.arange(n)
    plan = {"model": "toy", "similarity": {"metric": "cka-unbiased",
                                           "matrix": (1 - np.abs(idx[:, None] - idx[None, :]) / n).tolist()},
            "segments": {"k": 3, "bounds": [[0, 1], [1, 3], [3, 10]]},
            "units": [{"layer": i, "position": i, "role": "stem" if i == 0 else "unit"} for i in range(n)],
            "kept_units": [2, 9], "importance": {"proxy": "synflow", "rule": "lowest score kept",
                                                 "scores": {str(i): float(i + 1) for i in range(1, n)}}}
    return [plot_similarity(plan, folder / "similarity.png").name, plot_importance(plan, folder / "importance.png").name]


def test_report_in_headless_chromium(tmp_path):
    from browser import Chromium, find_chromium

    if find_chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    res = beaten_results()
    out = tmp_path / "report"
    out.mkdir()
    paths = write_report(res, out, extra_images=_analysis_images(out))
    with Chromium(tmp_path / "profile") as b:
        b.open((out / "report.html").resolve().as_uri())
        imgs = b.evaluate("Promise.all(Array.from(document.images).map(i => i.decode().then(() => 0, () => 0)))"
                          ".then(() => Array.from(document.images).map(i => ({alt: i.alt, done: i.complete, "
                          "w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width})))",
                          await_promise=True)
        assert {i["alt"] for i in imgs} == {"latency_vs_macs.png", "accuracy_vs_latency.png", "accuracy_vs_snr.png",
                                            "units_kept.png", "similarity.png", "importance.png"}
        for i in imgs:
            assert i["done"] and i["w"] > 0 and i["h"] > 0 and i["shown"] > 0, i
        verdict = b.evaluate("document.getElementById('verdict').innerText")
        assert "Fastest on onnxruntime fp32 b1, 1 thr: layer@0.3" in verdict
        assert "baseline was beaten" in b.evaluate("document.getElementById('warnings').innerText")
        # a real click on the accuracy header of the headline table sorts its rows, a second click reverses them
        col = "accuracy (%)"
        read = ("Array.from(document.querySelectorAll('#headline tbody tr')).map(r => "
                f"parseFloat(r.cells[Array.from(document.querySelectorAll('#headline th')).findIndex(h => "
                f"h.textContent === '{col}')].dataset.v))")
        before = b.evaluate(read)
        assert before != sorted(before)
        rect = b.evaluate("(() => {const h = Array.from(document.querySelectorAll('#headline th'))"
                          f".find(h => h.textContent === '{col}'); h.scrollIntoView({{block: 'center'}}); "
                          "const r = h.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];})()")
        b.click(*rect)
        assert b.evaluate(read) == sorted(before)
        b.click(*rect)
        assert b.evaluate(read) == sorted(before, reverse=True)
        b.evaluate("window.scrollTo(0, 0)")
        b.screenshot(tmp_path / "report.png")
        errors = b.console_errors()
        remote = [u for u in b.requests() if not u.startswith(("file:", "data:"))]
    assert errors == [] and remote == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
    print(f"screenshot: {tmp_path / 'report.png'}; report: {paths['report_html']}")


def test_report_command_rerenders_merged_results_and_refuses_bad_input(tmp_path, capsys):
    import json

    from edgeprune.cli.main import main

    res = clean_results()
    study = tmp_path / "study"
    write_report(res, study)
    assert main(["report", str(study), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
    # records measured on a board are added to the results by hand: the report now warns, naming both machines
    doc = json.loads((study / "results.json").read_text())
    board = dict(MACHINE, board="NVIDIA Jetson Orin Nano", hostname_sha256="bbbbbbbbbbbbbbbb")
    doc["latency"] += [_rec("baseline", "onnxruntime", 1, [3.0, 3.1, 3.2], board),
                       _rec("layer@0.3", "onnxruntime", 8, [2.0, 2.1, 2.2], board)]
    (study / "results.json").write_text(json.dumps(doc))
    assert main(["report", str(study / "results.json"), "--out", str(tmp_path / "again"), "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    (w,) = out["warnings"]
    assert w["kind"] == "merged-machines" and "NVIDIA Jetson Orin Nano, host bbbbbbbb: 2 records" in w["evidence"][-1]
    assert "merged-machines" in (tmp_path / "again" / "report.md").read_text()
    for bad, msg in (({"models": []}, "no 'models' list"),
                     ({"models": [{"id": "a", "method": "layer", "accuracy": "high"}]}, "non-numeric 'accuracy'"),
                     ({"models": [{"id": "a", "method": "b"}], "latency": [{"backend": "x", "batch": 1,
                                                                           "median_ms": -1}]}, "positive")):
        f = tmp_path / "bad.json"
        f.write_text(json.dumps(bad))
        assert main(["report", str(f)]) != 0
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err and err.count("\n") == 1
