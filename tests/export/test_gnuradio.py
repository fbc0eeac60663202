"""The GNU Radio 3.10 block (export/grblocks): a real flowgraph, run by GNU Radio's own Python (Debian's
``gnuradio`` package, /usr/bin/python3), classifies a SigMF recording; its stream tags and messages must equal
``edgeprune predict`` on the same recording. GRC's compiler (grcc) must accept the .block.yml and the
flowgraph it generates must run.

Skipped, with the reason, only where GNU Radio is not installed (CI installs it: .ci/run). ONNX Runtime for
that interpreter is pip-installed (no dependencies; GNU Radio's numpy is used) into a cache folder outside the
repository when it lacks one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgeprune_run import run_edgeprune

from export_fixtures import LENGTH, REPO, shared_bundle

GR_PYTHON = os.environ.get("EDGEPRUNE_GR_PYTHON", "/usr/bin/python3")
BLOCKS = REPO / "export" / "grblocks"

FLOWGRAPH = r'''
import json, sys
import numpy as np
import pmt
from gnuradio import blocks, gr
from edgeprune.export.grblocks.classifier import classifier

data, bundle, hop, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tb = gr.top_block()
src = blocks.file_source(gr.sizeof_gr_complex, data, False)
clf = classifier(bundle=bundle, hop=hop, batch=batch)
snk = blocks.vector_sink_c()
dbg = blocks.message_debug()
tb.connect(src, clf, snk)
tb.msg_connect((clf, "classification"), (dbg, "store"))
tb.run()
tags = [{"offset": t.offset, "key": pmt.symbol_to_string(t.key), "value": pmt.to_python(t.value)}
        for t in snk.tags()]
msgs = [pmt.to_python(dbg.get_message(i)) for i in range(dbg.num_messages())]
passed = np.array_equal(np.asarray(snk.data(), np.complex64), np.fromfile(data, np.complex64))
print(json.dumps({"tags": tags, "msgs": msgs, "passthrough": bool(passed), "windows": clf.windows}))
'''


def _gr_env() -> dict[str, str]:
    """Environment in which GR_PYTHON imports gnuradio, numpy, onnxruntime and this repository; or skip."""
    if not Path(GR_PYTHON).exists():
        pytest.skip(f"GNU Radio's python {GR_PYTHON} is absent (install: apt-get install gnuradio)")
    probe = subprocess.run([GR_PYTHON, "-c", "from gnuradio import gr; import pmt, numpy; print(gr.version())"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"GNU Radio is not installed for {GR_PYTHON} (apt-get install gnuradio): "
                    f"{(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["PYTHONPATH"] = str(REPO)
    env["EDGEPRUNE_QUIET"] = "1"
    if subprocess.run([GR_PYTHON, "-c", "import onnxruntime"], env=env, capture_output=True).returncode != 0:
        ver = subprocess.run([GR_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
        import onnxruntime

        from venvs import cache_dir

        site = cache_dir() / f"gr-site-py{ver}-ort{onnxruntime.__version__}"
        if not (site / "onnxruntime").is_dir():
            if ver != "%d.%d" % sys.version_info[:2]:
                pytest.skip(f"{GR_PYTHON} is Python {ver}: no onnxruntime for it and no pip of that version here")
            r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                "--no-deps", "--target", str(site), f"onnxruntime=={onnxruntime.__version__}"],
                               capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                pytest.skip(f"cannot pip-install onnxruntime for {GR_PYTHON}: {r.stderr.strip()[-300:]}")
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(site)])
    return env


@pytest.fixture(scope="module")
def gr(tmp_path_factory):
    env = _gr_env()
    bundle, _, data = shared_bundle(tmp_path_factory)
    from edgeprune.data.readers import load_npz

    x = load_npz(data).x[:12].astype(np.float32)
    z = (x[:, 0] + 1j * x[:, 1]).reshape(-1).astype(np.complex64)
    z = np.concatenate([z, z[:21]])  # 21 samples that make no whole window at the end
    tmp = tmp_path_factory.mktemp("gr")
    (tmp / "cap.sigmf-data").write_bytes(z.tobytes())
    (tmp / "cap.sigmf-meta").write_text(json.dumps({
        "global": {"core:datatype": "cf32_le", "core:version": "1.0.0", "core:sample_rate": 1e6},
        "captures": [{"core:sample_start": 0}], "annotations": []}))
    (tmp / "flowgraph.py").write_text(FLOWGRAPH)
    return env, bundle, tmp


def _reference(bundle, meta, hop):
    r = run_edgeprune("predict", bundle, "--input", meta, "--hop", hop, "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["predictions"]


@pytest.mark.parametrize("hop,batch", [(LENGTH, 1), (40, 4)])
def test_flowgraph_tags_and_messages_equal_predict(gr, hop, batch):
    env, bundle, tmp = gr
    r = subprocess.run([GR_PYTHON, str(tmp / "flowgraph.py"), str(tmp / "cap.sigmf-data"), str(bundle), str(hop),
                        str(batch)], capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp))
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    ref = _reference(bundle, tmp / "cap.sigmf-meta", hop)
    assert got["passthrough"] and got["windows"] == len(ref) > 10
    tags = [t for t in got["tags"] if t["key"] == "amr_class"]
    assert [t["offset"] for t in tags] == [p["offset"] + LENGTH - 1 for p in ref]  # at each window's last sample
    for t, m, p in zip(tags, got["msgs"], ref):
        for d in (t["value"], m):
            assert (d["offset"], d["class"], d["label"], d["length"]) == (p["offset"], p["class"], p["label"], LENGTH)
            assert d["confidence"] == pytest.approx(p["confidence"], abs=1e-5)
        assert m["latency_ms"] > 0
    assert len(got["msgs"]) == len(ref)


def test_grc_compiles_and_runs_the_block(gr, tmp_path):
    env, bundle, tmp = gr
    grcc = shutil.which("grcc")
    if grcc is None:
        pytest.skip("grcc (GNU Radio Companion's compiler) is not installed")
    data = tmp / "cap.sigmf-data"
    grc = tmp_path / "t.grc"
    grc.write_text(f"""options:
  parameters: {{id: edgeprune_grc_test, title: test, generate_options: no_gui, output_language: python,
               run_options: run, run: 'True'}}
  states: {{state: enabled}}
blocks:
- name: src
  id: blocks_file_source
  parameters: {{file: '{data}', type: complex, repeat: 'False'}}
  states: {{state: enabled}}
- name: clf
  id: edgeprune_classifier
  parameters: {{bundle: '{bundle}', hop: '0', batch: '2', backend: "'onnxruntime'"}}
  states: {{state: enabled}}
- name: snk
  id: blocks_null_sink
  parameters: {{type: complex}}
  states: {{state: enabled}}
- name: dbg
  id: blocks_message_debug
  parameters: {{}}
  states: {{state: enabled}}
connections:
- [src, '0', clf, '0']
- [clf, '0', snk, '0']
- [clf, classification, dbg, print]
metadata:
  file_format: 1
""")
    genv = dict(env, GRC_BLOCKS_PATH=str(BLOCKS))
    r = subprocess.run([grcc, "-o", str(tmp_path), str(grc)], capture_output=True, text=True, timeout=300, env=genv)
    assert r.returncode == 0 and (tmp_path / "edgeprune_grc_test.py").is_file(), r.stdout + r.stderr
    run = subprocess.run([GR_PYTHON, str(tmp_path / "edgeprune_grc_test.py")], capture_output=True, text=True,
                         timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    ref = _reference(bundle, tmp / "cap.sigmf-meta", LENGTH)
    classes = re.findall(r"\(class \. ([^)]+)\)", run.stdout)
    assert classes == [p["class"] for p in ref]
