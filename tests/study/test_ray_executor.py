"""compare --executor ray on a real local Ray (2 CPUs, no dashboard): a tiny study runs, is killed midway,
resumes, and computes the same models as the local executor; bad input is one line before anything starts.

The tests on a Ray cluster carry the ``slow`` marker: they run in `make test-slow` (CI runs it after `make test`);
the ones that need no cluster stay in `make test`."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from edgeprune.cli.main import main
from edgeprune.errors import EdgepruneError
from edgeprune.study.config import normalise
from edgeprune.study.runner import run_study

TINY = """
[study]
name = "tiny-ray"
threads = 1
[data]
synth = "rml2016.10a"
per_key = 6
snrs = [10, 18]
length = 64
[model]
name = "resnet20-1d"
[train]
epochs = 1
[prune]
methods = ["layer", "channel-l1"]
targets = [0.6]
[finetune]
epochs = 2
[resources]
cpus_per_task = 1
[export]
precisions = ["fp32"]
[profile]
backends = ["onnxruntime"]
batch = [1]
iters = 5
warmup = 1
"""


def _cfg(**study):
    import tomllib

    raw = tomllib.loads(TINY)
    raw["study"].update(study)
    return normalise(raw)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()


def _state(folder):
    try:
        return json.loads((folder / "state.json").read_text())["stages"]
    except (OSError, ValueError, KeyError):
        return {}


def _model_facts(res):
    """Everything about each model that is deterministic on CPU with one thread per task."""
    return {m["id"]: {k: m[k] for k in ("macs", "params", "layers", "units", "accuracy", "accuracy_before_finetune",
                                        "per_snr", "training", "pruning")}
            for m in res["models"]}


def _weights(path):
    from edgeprune.checkpoint import load_checkpoint

    return {k: v.tolist() for k, v in load_checkpoint(path).state_dict.items()}


def _compare_killed_when(cfg_file, out, address, done, timeout=180) -> str:
    """Run ``edgeprune compare --executor ray`` as a driver process and SIGKILL it (its whole process group) as soon
    as ``done()`` holds (or it exits, or ``timeout`` s pass); the tail of its stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "edgeprune", "compare", "--config", str(cfg_file), "--out",
                             str(out), "--executor", "ray", "--address", address, "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not done():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.stderr.read().decode()[-2000:]


@pytest.mark.slow
def test_more_gpus_than_the_cluster_has_is_refused_before_any_stage(tmp_path, ray_cluster):
    cfg = _cfg(executor="ray", address=ray_cluster)
    cfg["resources"]["gpus_per_task"] = 1
    with pytest.raises(EdgepruneError, match=r"gpus_per_task = 1 but the Ray cluster has 0 GPU"):
        run_study(cfg, tmp_path / "s", log=lambda m: None)
    assert not (tmp_path / "s").exists()  # nothing started, no half-made folder


@pytest.mark.slow
def test_unknown_executor_and_unreachable_address_are_one_line(tmp_path, capsys, ray_cluster):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace('threads = 1', 'threads = 1\nexecutor = "dask"'))
    rc = main(["compare", "--config", str(cfg), "--out", str(tmp_path / "a"), "-q"])
    err = capsys.readouterr().err
    assert rc != 0 and "unknown executor 'dask'" in err and "local, ray" in err and "Traceback" not in err

    cfg.write_text(TINY)
    rc = main(["compare", "--config", str(cfg), "--out", str(tmp_path / "b"), "-q", "--executor", "spark"])
    err = capsys.readouterr().err
    assert rc != 0 and "unknown executor 'spark'" in err

    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # a fresh process (this one is connected to the fixture's cluster already)
    r = subprocess.run([sys.executable, "-m", "edgeprune", "compare", "--config", str(cfg), "--out",
                        str(tmp_path / "c"), "-q", "--executor", "ray", "--address", f"ray://127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=120)
    err = r.stderr.strip()
    assert r.returncode != 0 and err.count("\n") == 0 and f"cannot reach the Ray cluster at ray://127.0.0.1:{port}" in err
    assert not (tmp_path / "c").exists()
    # in a process already on a cluster, another address is refused rather than silently ignored
    rc = main(["compare", "--config", str(cfg), "--out", str(tmp_path / "d"), "-q", "--executor", "ray",
               "--address", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert rc != 0 and f"already connected to the Ray cluster at {ray_cluster}" in err


def test_missing_ray_names_the_extra(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    code = ("import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed: `import ray` fails
            "from edgeprune.cli.main import main\n"
            f"sys.exit(main(['compare', '--config', {str(cfg)!r}, '--out', {str(tmp_path / 's')!r}, '-q', "
            "'--executor', 'ray']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and 'pip install "edgeprune[ray]"' in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_state_format_is_versioned(tmp_path):
    """A folder of the pre-version layout (no "format") is reused; another format is refused, not overwritten."""
    from edgeprune.study.stages import STATE_FORMAT, StageCache

    folder = tmp_path / "s"
    c = StageCache(folder, log=lambda m: None)
    c.run("one", "k1", lambda: {"x": 1})
    c.close()
    state = json.loads((folder / "state.json").read_text())
    assert state["format"] == STATE_FORMAT
    del state["format"]  # as written before the format was recorded: same stage records
    (folder / "state.json").write_text(json.dumps(state))
    c = StageCache(folder, log=lambda m: None)
    calls = []
    assert c.run("one", "k1", lambda: calls.append(1) or {"x": 2}) == {"x": 1} and not calls
    c.close()

    state["format"] = STATE_FORMAT + 1
    (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(EdgepruneError, match=rf"state format {STATE_FORMAT + 1}, this edgeprune reads format "
                                             rf"{STATE_FORMAT}"):
        StageCache(folder, log=lambda m: None)
    assert json.loads((folder / "state.json").read_text())["format"] == STATE_FORMAT + 1  # left as it was
    with pytest.raises(EdgepruneError, match="state format"):  # the refusal released the folder's lock
        StageCache(folder, log=lambda m: None)


@pytest.mark.slow
def test_an_edgeprune_error_in_a_task_skips_that_model_like_local(tmp_path, ray_cluster):
    """channel-l1 cannot reach 0.01 x MACs on this model (a TargetUnreachable inside the task: the stem and block
    outputs keep their channels): the branch is skipped with the same note as the local executor's, and the rest
    of the study (here the baseline) goes on."""
    def cfg(**study):
        c = _cfg(**study)
        c["prune"]["methods"], c["prune"]["targets"] = ["channel-l1"], [0.01]
        c["finetune"]["epochs"] = 1
        return c

    local = run_study(cfg(), tmp_path / "local", log=lambda m: None)["results"]
    ray_res = run_study(cfg(executor="ray", address=ray_cluster), tmp_path / "ray", log=lambda m: None)["results"]
    note = [n for n in local["notes"] if n.startswith("channel-l1@0.01 skipped: channel-l1 cannot reach")]
    assert note and [n for n in ray_res["notes"] if n.startswith("channel-l1@0.01 skipped")] == note
    assert [m["id"] for m in ray_res["models"]] == ["baseline"]
    assert "prune channel-l1@0.01" not in _state(tmp_path / "ray")
    assert _state(tmp_path / "ray")["baseline"]["executor"] == "ray"


@pytest.mark.slow
def test_a_failing_task_is_retried_once_then_reported_with_its_stage(tmp_path, ray_cluster):
    """The study's own task (run_chain with the executor's options): a stage that raises runs twice, then the
    driver gets an error that one_line turns into the stage and the original error."""
    import ray

    from edgeprune.study.executor import _one_line, chain_task

    trace = tmp_path / "attempts"
    trace.mkdir()
    specs = [{"name": "leave a trace", "fn": "tempfile.mkstemp", "kwargs": {"dir": str(trace)}},
             {"name": "finetune x@0.5", "fn": "json.loads", "kwargs": {"s": "{not json"}}]
    ref = chain_task(ray, 1, 0).remote(specs, str(tmp_path / "study"), 1, [])
    with pytest.raises(ray.exceptions.RayTaskError) as info:
        ray.get(ref)
    assert len(list(trace.iterdir())) == 2  # the first attempt and one retry, no more
    msg = _one_line(info.value)
    assert "stage 'finetune x@0.5' failed: JSONDecodeError" in msg and "\n" not in msg

    # an EdgepruneError is not retried: the task returns where it stopped
    for p in trace.iterdir():
        p.unlink()
    specs[1] = {"name": "prune x@0.5", "fn": "edgeprune.study.runner.work_evaluate",
                "kwargs": {"ckpt": str(tmp_path / "missing.pt"), "data_path": str(tmp_path / "d.npz"), "pruned": None}}
    out = ray.get(chain_task(ray, 1, 0).remote(specs, str(tmp_path / "study"), 1, []))
    assert len(list(trace.iterdir())) == 1
    assert out["stopped"]["stage"] == "prune x@0.5" and "missing.pt" in out["stopped"]["error"]
    assert [d["name"] for d in out["stages"]] == ["leave a trace"]


def _seed_cfg(**study):
    c = _cfg(seeds=[0, 1], **study)
    c["prune"]["methods"] = ["layer"]
    return c


def _compute_tasks(results):
    return [t for t in results["executor"]["tasks"] if t["chain"] != "profile"]


@pytest.fixture(scope="module")
def local_seeds(tmp_path_factory):
    """The local executor's two-seed study (one thread per task): what every Ray run of ``_seed_cfg`` must equal.
    Tests read it; the one that runs the Ray executor on it checks that nothing is computed there."""
    out = tmp_path_factory.mktemp("local-seeds") / "local"
    run_study(_seed_cfg(), out, log=lambda m: None)
    return out


@pytest.mark.slow
def test_seeds_run_together_on_ray_profile_on_the_named_node_and_equal_local(tmp_path, ray_cluster, local_seeds):
    """[study] seeds with the ray executor: every seed's baseline is its own task, in flight together (the tasks'
    own start/end times), each seed's branches wait only on their own baseline; results, folders and stage keys
    are the local executor's; [profile] node times the models in one task on that node after every compute task."""
    import ray

    node = ray.nodes()[0]["NodeID"]
    cfg = _seed_cfg(executor="ray", address=ray_cluster)
    cfg["profile"]["node"] = node
    res = run_study(cfg, tmp_path / "ray", log=lambda m: None)

    per = {}
    for s in (0, 1):
        loc = json.loads((local_seeds / f"seed-{s}" / "results.json").read_text())
        per[s] = got = json.loads((tmp_path / "ray" / f"seed-{s}" / "results.json").read_text())
        assert _model_facts(got) == _model_facts(loc), s  # MACs, kept units, accuracies (one thread: exact)
        assert got["models"][1]["pruning"]["kept_units"]
        st_loc, st_ray = _state(local_seeds / f"seed-{s}"), _state(tmp_path / "ray" / f"seed-{s}")
        compute = set(st_loc) - {"data", "profile"}
        assert set(st_ray) == set(st_loc)  # the same stages (their keys hold folder paths: see the resume below)
        assert all(st_ray[n]["executor"] == "ray" for n in compute) and st_ray["data"]["executor"] == "local"
        assert st_ray["profile"]["executor"] == "ray"
    # the two seeds differ (otherwise "in parallel" and "equal" would prove little)
    assert per[0]["models"][0]["training"] != per[1]["models"][0]["training"]
    assert json.loads((tmp_path / "ray" / "summary.json").read_text()) == \
        json.loads((local_seeds / "summary.json").read_text())
    assert (tmp_path / "ray" / "report.md").is_file() and res["summary"]

    # in flight together: each seed's baseline task ran in its own worker, and their runs overlapped in time
    b0, b1 = (next(t for t in _compute_tasks(per[s]) if t["chain"] == "baseline") for s in (0, 1))
    assert b0["pid"] != b1["pid"]
    assert b0["start"] < b1["end"] and b1["start"] < b0["end"], (b0, b1)

    # profiling: one task per seed on the named node, after every compute task of both seeds had ended,
    # never beside another task
    compute_end = max(t["end"] for s in (0, 1) for t in _compute_tasks(per[s]))
    prof = [next(t for t in per[s]["executor"]["tasks"] if t["chain"] == "profile") for s in (0, 1)]
    assert all(p["start"] > compute_end for p in prof)
    assert prof[0]["end"] < prof[1]["start"] or prof[1]["end"] < prof[0]["start"]
    for s in (0, 1):
        lat = per[s]["latency"]
        assert lat and {r["measured_on"] for r in lat} == {f"Ray node {node[:12]} "
                                                          f"({ray.nodes()[0]['NodeManagerAddress']}, "
                                                          f"{ray.nodes()[0]['NodeManagerHostname']})"}
        assert {r["model_id"] for r in lat} == {"baseline", "layer@0.6"}
        assert all(str(tmp_path / "ray" / f"seed-{s}") in r["path"] for r in lat)  # the driver's paths
        assert node[:12] in per[s]["latency_measured_on"] and "pinned" in per[s]["latency_measured_on"]
        report = (tmp_path / "ray" / f"seed-{s}" / "report.md").read_text()
        assert f"@ Ray node {node[:12]}" in report and f"Latency measured on: Ray node {node[:12]}" in report

    # resume: the local executor on the Ray-made folders computes nothing again (profiling: the node's key)
    run_study(_seed_cfg(), tmp_path / "ray", log=lambda m: None)
    for s in (0, 1):
        again = json.loads((tmp_path / "ray" / f"seed-{s}" / "results.json").read_text())
        assert again["stages"]["ran"] == ["profile"], again["stages"]["ran"]
        assert _model_facts(again) == _model_facts(per[s])


@pytest.mark.slow
def test_an_unknown_profile_node_is_one_line_before_anything_starts(tmp_path, capsys, ray_cluster):
    import ray

    from edgeprune.study.executor import resolve_node

    n = ray.nodes()[0]
    assert resolve_node(ray.nodes(), n["NodeManagerAddress"])["id"] == n["NodeID"]  # by IP
    assert resolve_node(ray.nodes(), n["NodeID"][:10])["id"] == n["NodeID"]  # by a prefix of its id

    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace("[study]", "[study]\nseeds = [0, 1]"))
    rc = main(["compare", "--config", str(cfg), "--out", str(tmp_path / "a"), "-q", "--executor", "ray",
               "--address", ray_cluster, "--profile-node", "10.255.255.1"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.count("\n") == 0 and "[profile] node '10.255.255.1' is not a node of the Ray cluster" in err
    assert n["NodeID"][:12] in err  # it lists the nodes there are
    assert not (tmp_path / "a").exists()

    rc = main(["compare", "--config", str(cfg), "--out", str(tmp_path / "b"), "-q", "--profile-node", n["NodeID"]])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "needs the ray executor" in err and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_one_study_profiled_on_the_node_named_by_its_ip(tmp_path, capsys, ray_cluster):
    """compare --executor ray --profile-node IP (one study, no seeds): the latency records and the report name the
    node; the profiling task ran after the study's compute tasks, on that node."""
    import ray

    n = ray.nodes()[0]
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace('methods = ["layer", "channel-l1"]', 'methods = ["channel-l1"]'))
    rc = main(["compare", "--config", str(cfg), "--out", str(tmp_path / "s"), "-q", "--executor", "ray",
               "--address", ray_cluster, "--profile-node", n["NodeManagerAddress"]])
    assert rc == 0, capsys.readouterr().err[-2000:]
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    assert {r["measured_on"] for r in res["latency"]} == {
        f"Ray node {n['NodeID'][:12]} ({n['NodeManagerAddress']}, {n['NodeManagerHostname']})"}
    assert res["executor"]["profile_node"] == n["NodeID"]
    tasks = res["executor"]["tasks"]
    prof = [t for t in tasks if t["chain"] == "profile"]
    assert len(prof) == 1 and prof[0]["start"] > max(t["end"] for t in tasks if t["chain"] != "profile")
    assert _state(tmp_path / "s")["profile"]["executor"] == "ray"
    assert f"Latency measured on: Ray node {n['NodeID'][:12]}" in (tmp_path / "s" / "report.md").read_text()


@pytest.mark.slow
def test_a_killed_ray_study_resumes_to_the_local_result(tmp_path, ray_cluster, local_seeds):
    """A Ray driver (its own process, two seeds) SIGKILLed once a seed's baseline is recorded: the re-run on Ray
    reuses every recorded stage of every seed, computes only the rest, and ends with the local executor's models
    (MACs, kept units, accuracies and the weights themselves); then each executor reuses the other's folder
    whole."""
    raw = TINY.replace('name = "tiny-ray"', 'name = "tiny-ray"\nseeds = [0, 1]').replace(
        'methods = ["layer", "channel-l1"]', 'methods = ["layer"]')
    cfg_file = tmp_path / "seeds.toml"
    cfg_file.write_text(raw)
    out = tmp_path / "ray"
    err = _compare_killed_when(cfg_file, out, ray_cluster,
                               lambda: any("baseline" in _state(out / f"seed-{s}") for s in (0, 1)))
    killed = {s: _state(out / f"seed-{s}") for s in (0, 1)}
    assert any("baseline" in killed[s] and killed[s]["baseline"]["executor"] == "ray" for s in (0, 1)), err
    assert not all("profile" in killed[s] for s in (0, 1)), "the driver finished before it was killed"

    # resumed (Ray again, this process): what the killed run recorded is reused, the rest runs
    run_study(_seed_cfg(executor="ray", address=ray_cluster), out, log=lambda m: None)
    for s in (0, 1):
        res = json.loads((out / f"seed-{s}" / "results.json").read_text())
        loc = json.loads((local_seeds / f"seed-{s}" / "results.json").read_text())
        assert set(killed[s]) <= set(res["stages"]["reused"]), s            # nothing recorded is computed again
        assert not set(killed[s]) & set(res["stages"]["ran"]), s
        compute = set(_state(local_seeds / f"seed-{s}")) - {"data", "profile"}
        assert set(res["stages"]["ran"]) == (compute - set(killed[s])) | {"profile"}, s
        assert all(_state(out / f"seed-{s}")[n]["executor"] == "ray" for n in compute), s
        assert res["executor"]["name"] == "ray" and set(res["computed_by"].values()) == {"ray"}
        assert "driver" in res["latency_measured_on"]
        report = (out / f"seed-{s}" / "report.md").read_text()
        assert "Models computed by: ray executor" in report and "Latency measured on:" in report
        # the same models as the local executor: MACs, kept units, accuracies, and the weights themselves
        assert _model_facts(res) == _model_facts(loc), s
        assert res["models"][1]["pruning"]["kept_units"]  # the layer method's kept units are compared, not empty
        for m_ray, m_loc in zip(res["models"], loc["models"]):
            assert _weights(m_ray["checkpoint"]) == _weights(m_loc["checkpoint"]), (s, m_ray["id"])
    assert json.loads((out / "summary.json").read_text()) == json.loads((local_seeds / "summary.json").read_text())

    # the local executor on the Ray-made folder: the stage keys match, nothing is computed again
    run_study(_seed_cfg(), out, log=lambda m: None)
    for s in (0, 1):
        again = json.loads((out / f"seed-{s}" / "results.json").read_text())
        assert again["stages"]["ran"] == [] and set(killed[s]) <= set(again["stages"]["reused"]), s
        assert set(again["computed_by"].values()) == {"ray"}  # who computed each model is kept across executors

    # and the other way: the Ray executor on the local executor's folder submits no task (the stage keys hold
    # the folder's path, so it runs on the fixture's folder itself; it computes nothing there)
    run_study(_seed_cfg(executor="ray", address=ray_cluster), local_seeds, log=lambda m: None)
    for s in (0, 1):
        back = json.loads((local_seeds / f"seed-{s}" / "results.json").read_text())
        assert back["stages"]["ran"] == [] and set(back["computed_by"].values()) == {"local"}, s


def _task_folders(tmp):
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("edgeprune-task-"))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT to the process group (Ctrl-C)", "SIGTERM to the driver"])
def test_an_interrupted_ray_study_leaves_no_task_folder(tmp_path, how):
    """A driver that starts its own Ray, interrupted while a task works in its folder ($TMPDIR/edgeprune-task-*):
    it exits with one line (no native stack dump) and no task folder is left."""
    pytest.importorskip("ray")
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace("epochs = 1", "epochs = 3"))  # a baseline long enough to be interrupted in
    import shutil
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp(prefix="ep-", dir="/tmp"))  # short: Ray puts its sockets under $TMPDIR too
    proc = subprocess.Popen([sys.executable, "-m", "edgeprune", "compare", "--config", str(cfg), "--out",
                             str(tmp_path / "s"), "--executor", "ray", "-q"], env=dict(os.environ, TMPDIR=str(tmp)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and not _task_folders(tmp):
            time.sleep(0.1)
        assert _task_folders(tmp) and proc.poll() is None, "no task started (or the study finished first)"
        def interrupt():
            if how.startswith("SIGINT"):
                os.killpg(proc.pid, signal.SIGINT)
            else:
                os.kill(proc.pid, signal.SIGTERM)

        interrupt()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            # Inside the full parallel suite a first Ctrl-C was three times left without effect (the study then
            # ran to its end, exit 0) before the driver's waits checked a flag the signal sets (docs/reliability.md).
            # A user presses it again: so does this test, once, and the driver must then stop as cleanly.
            interrupt()
            _, err = proc.communicate(timeout=180)
        err = err.decode()
        assert proc.returncode != 0 and err.strip() == "edgeprune: interrupted", err[-2000:]
        assert _task_folders(tmp) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def test_task_folders_of_dead_workers_are_swept(tmp_path):
    """What a worker killed by SIGKILL left (its process gone) is removed by the next task; a live one is kept."""
    from edgeprune.study.executor import sweep_task_folders

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid in (dead.pid, os.getpid(), os.getppid()):
        (tmp_path / f"edgeprune-task-{pid}-abcd1234" / "study").mkdir(parents=True)
    (tmp_path / "edgeprune-task-notapid").mkdir()
    removed = sweep_task_folders(str(tmp_path))
    assert [os.path.basename(p) for p in removed] == [f"edgeprune-task-{dead.pid}-abcd1234"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"edgeprune-task-{os.getpid()}-abcd1234", f"edgeprune-task-{os.getppid()}-abcd1234", "edgeprune-task-notapid"])
