"""A GNU Radio 3.10 sync block that classifies a complex stream with an edgeprune bundle.

Samples pass through unchanged (complex in, complex out, 1:1). Windows of the
model's frame length start every ``hop`` samples from the first sample of the
stream (the same windows as ``edgeprune predict`` on a SigMF recording with
``--hop``); each window is classified as soon as its last sample arrives,
``batch`` windows per call at most. For every window:

- a stream tag on the output at the window's last sample (absolute offset
  ``start + length - 1``), key ``tag_key`` (default ``amr_class``), value a
  PMT dict: ``class`` (str), ``label`` (int), ``confidence`` (float),
  ``offset`` (the window's first sample), ``length``;
- a message on the ``classification`` port: the same dict plus
  ``latency_ms`` (the inference call's wall time).

The model runs on ONNX Runtime or TensorRT through ``edgeprune.export.Predictor``
(torch-free); the bundle's files are verified when the block is made.
"""

import time

import numpy as np
import pmt
from gnuradio import gr

from edgeprune.export.predictor import Predictor
from edgeprune.export.runtime.stream import Windower


def _pmt_dict(d):
    out = pmt.make_dict()
    for k, v in d.items():
        out = pmt.dict_add(out, pmt.intern(k), pmt.to_pmt(v))  # plain Python scalars only (to_pmt rejects numpy's)
    return out


class classifier(gr.sync_block):  # noqa: N801 - GNU Radio's naming for blocks
    """Classify windows of a complex stream; emit stream tags and ``classification`` messages."""

    def __init__(self, bundle="", hop=0, batch=1, tag_key="amr_class", backend="auto", precision=""):
        gr.sync_block.__init__(self, name="edgeprune_classifier", in_sig=[np.complex64], out_sig=[np.complex64])
        self.predictor = Predictor(bundle, backend=backend or "auto", precision=precision or None)
        self.length = int(self.predictor.length)
        self.hop = int(hop) if int(hop or 0) > 0 else self.length
        self.batch = max(1, int(batch))
        self.windower = Windower(self.length, self.hop)
        self.key = pmt.intern(tag_key or "amr_class")
        self.port = pmt.intern("classification")
        self.message_port_register_out(self.port)
        self.windows = 0

    def work(self, input_items, output_items):
        x = input_items[0]
        n = len(x)
        output_items[0][:n] = x
        starts, frames = self.windower.push(x)
        for i in range(0, len(starts), self.batch):
            part = frames[i:i + self.batch]
            t0 = time.perf_counter()
            out = self.predictor.predict(part)
            ms = (time.perf_counter() - t0) * 1000.0
            for k in range(len(part)):
                start = int(starts[i + k])
                info = {"class": str(out["names"][k]), "label": int(out["labels"][k]),
                        "confidence": float(out["confidence"][k]), "offset": start, "length": self.length}
                self.add_item_tag(0, start + self.length - 1, self.key, _pmt_dict(info), pmt.intern(self.name()))
                info["latency_ms"] = ms
                self.message_port_pub(self.port, _pmt_dict(info))
                self.windows += 1
        return n
