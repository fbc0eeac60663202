"""The ONNX Runtime backend: one class, the registry's protocol (Python 3.6+; onnxruntime imported on open).

Session settings, for answers and timings that compare: ``intra_op_num_threads``
fixed when given, ``inter_op_num_threads`` 1, sequential execution, all
graph optimisations, ``session.intra_op.allow_spinning = 0``.

Providers, one policy (``resolve_providers``): a list the user names is
taken as asked, and a provider that this onnxruntime lacks is an error;
``"auto"`` takes the target's list and drops what is missing here, and says
so (``dropped_providers``, shown by ``run.py check`` and in latency
records); nothing given means the CPU.

``bind(x)`` binds frames and preallocated outputs once (IOBinding with
OrtValues), so ``timed()`` times the model alone, as a receiver with fixed
buffers runs it: no numpy conversion or output allocation is timed
(``session.run`` with numpy feeds costs a few microseconds more per call,
which matters for models that take tens of microseconds).
"""

import os

import numpy as np

from .compat import installed_version, perf_counter_ns, unavailable_reason
from .errors import EdgepruneError, MissingDependency, first_line
from .jetpack import install_hint
from .onnx_external import check_model_file

NAME = "onnxruntime"
MODEL_KIND = "onnx"
CPU = "CPUExecutionProvider"
_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def import_onnxruntime(purpose="running ONNX models"):
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependency("onnxruntime", purpose, install_hint())
    return onnxruntime


def availability():
    """None when this backend can run here, else the reason (one line)."""
    return unavailable_reason(import_onnxruntime)


def version():
    return installed_version("onnxruntime")


def resolve_providers(requested, available, target_providers=None):
    """(providers to use, providers dropped). See the module docstring for the policy."""
    available = list(available)
    if requested in (None, "", [], ()):
        return [CPU], []
    if isinstance(requested, str) and requested != "auto":
        requested = [p.strip() for p in requested.split(",") if p.strip()]
    if list(requested) == ["auto"]:
        requested = "auto"
    if requested == "auto":
        wanted = list(target_providers or [CPU])
        chosen = [p for p in wanted if p in available]
        dropped = [p for p in wanted if p not in available]
        if not chosen:
            if CPU in available:
                return [CPU], dropped
            raise EdgepruneError("none of the target's providers {} is available in this onnxruntime "
                                 "(available: {})".format(wanted, ", ".join(available)))
        return chosen, dropped
    missing = [p for p in requested if p not in available]
    if missing:
        raise EdgepruneError("ONNX Runtime execution provider {} is not available here (available: {}; "
                             "give --providers auto to use what is)".format(", ".join(repr(p) for p in missing),
                                                                            ", ".join(available)))
    return list(requested), []


def session_options(ort, threads=None, profile_prefix=None):
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return opts


class OnnxRuntimeBackend(object):
    """One ONNX model in an ``onnxruntime.InferenceSession``."""

    name = NAME

    def __init__(self, model, threads=None, providers=None, target_providers=None, profile_prefix=None,
                 precision=None, cuda_graphs=False):
        # precision (the file's own) and cuda_graphs: registry options that mean nothing to ONNX Runtime
        ort = import_onnxruntime()
        self.ort = ort
        self.providers_requested = providers
        chosen, self.dropped_providers = resolve_providers(providers, ort.get_available_providers(), target_providers)
        if isinstance(model, (str, os.PathLike)):
            if not os.path.isfile(str(model)):
                raise EdgepruneError("ONNX file {} does not exist".format(model))

            check_model_file(model)  # external data: only files a bundle manifest beside it lists
            src = str(model)
        else:
            src = model
        self.model = model
        try:
            self.session = ort.InferenceSession(src, sess_options=session_options(ort, threads, profile_prefix),
                                                providers=chosen)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
            name = model if isinstance(model, (str, os.PathLike)) else "the ONNX model"
            msg = first_line(exc)
            if "ValidateOpsetForDomain" in msg or "opset" in msg.lower() and "support" in msg.lower():
                raise EdgepruneError("ONNX Runtime {} cannot load {}: the model's ONNX opset is newer than this "
                                     "onnxruntime supports (upgrade onnxruntime, or bundle for a target with a lower "
                                     "opset, e.g. jetson-nano: 13)".format(ort.__version__, name))
            raise EdgepruneError("ONNX Runtime cannot load {}: {}".format(name, msg[:300]))
        self.threads = threads
        self.inputs = self.session.get_inputs()
        self.input_name = self.inputs[0].name
        self.providers = self.session.get_providers()
        self.in_dtype = _NUMPY.get(self.inputs[0].type)
        self.extras = {}
        self._binding = None
        self._values = []
        self._bound_shape = None

    # ------------------------------------------------------------ facts
    def metadata(self):
        """The model's custom metadata (str -> str)."""
        try:
            return dict(self.session.get_modelmeta().custom_metadata_map)
        except UnicodeDecodeError:
            raise EdgepruneError("{}: the model's metadata is not valid UTF-8 (damaged file?)".format(self.model))

    def input_shape(self):
        return list(self.inputs[0].shape)

    def output_shape(self):
        return list(self.session.get_outputs()[0].shape)

    def describe(self):
        first = self.providers[0] if self.providers else CPU
        return {"providers": list(self.providers), "dropped_providers": list(self.dropped_providers),
                "on": "cpu" if first == CPU else first.replace("ExecutionProvider", "").lower(),
                "io": "iobinding", "timing": "wall", "input_shape": self._bound_shape}

    # ------------------------------------------------------------ run
    def _frames(self, x):
        if len(self.inputs) != 1:
            raise EdgepruneError("the ONNX model has {} inputs ({}); edgeprune runs models whose one input is a "
                                 "batch of frames".format(len(self.inputs), ", ".join(i.name for i in self.inputs)))
        if self.in_dtype is None:
            raise EdgepruneError("ONNX input {!r} has type {}; expected float frames".format(
                self.input_name, self.inputs[0].type))
        return np.ascontiguousarray(x, dtype=self.in_dtype)

    def infer(self, x):
        """Logits of frames ``x`` (the model's input shape), a fresh float32 array."""
        feed = {self.input_name: self._frames(x)}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)

    def bind(self, x):
        """Bind frames ``x`` and preallocated outputs (shapes from one ordinary run); their logits."""
        ort = self.ort
        x = self._frames(x)
        outs = self.session.run(None, {self.input_name: x})
        binding = self.session.io_binding()
        values = [ort.OrtValue.ortvalue_from_numpy(x)]
        binding.bind_ortvalue_input(self.input_name, values[0])
        for meta, ref in zip(self.session.get_outputs(), outs):
            ref = np.asarray(ref)
            v = ort.OrtValue.ortvalue_from_shape_and_type(list(ref.shape), ref.dtype)
            binding.bind_ortvalue_output(meta.name, v)
            values.append(v)
        self._binding, self._values, self._bound_shape = binding, values, list(x.shape)
        return np.asarray(outs[0], dtype=np.float32)

    def timed(self):
        """One run of the bound frames on the bound buffers; its wall time in ns."""
        t0 = perf_counter_ns()
        self.session.run_with_iobinding(self._binding)
        return perf_counter_ns() - t0

    def bound_logits(self):
        """The logits the last timed run wrote into the bound output buffer."""
        return np.asarray(self._values[1].numpy(), dtype=np.float32)

    def close(self):
        self._binding = None
        self._values = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_backend(model, **options):
    return OnnxRuntimeBackend(model, **options)
