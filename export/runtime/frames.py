"""Frames in, classes out: normalisation, input checks, softmax, .npy reading (numpy only, Python 3.6+).

``normalize`` is the one normaliser: the host's data pipeline (training, evaluation and calibration frames,
SigMF captures), ``edgeprune.export.Predictor`` and a bundle's run.py all call it, so host and board give bit-identical
frames (``tests/device/test_device_core.py`` feeds both the same extreme inputs).

- ``none``: frames are used as given;
- ``l1``: each frame is divided by the sum over samples of sqrt(I^2 + Q^2) (the RML2016 convention);
- ``l2``: by the square root of the summed power;
- ``max``: by the peak magnitude.
All-zero frames stay zero; normalising twice changes nothing.
"""

import numpy as np

from .errors import EdgepruneError

NORMALIZATIONS = ("l1", "l2", "max", "none")
NORMALIZATION_TEXT = {
    "none": "frames are used as given",
    "l1": "each frame (2 x L) is divided by the sum over its samples of sqrt(I^2 + Q^2)",
    "l2": "each frame is divided by the square root of its summed power sum(I^2 + Q^2)",
    "max": "each frame is divided by its peak magnitude max sqrt(I^2 + Q^2)",
}

# The layouts a model may take its frames in. Frames always arrive as (N, 2, L) (rows I and Q); ``to_layout``
# hands them to the model the way it was written to take them (recorded at import, in the manifest and the ONNX
# metadata).
LAYOUTS = {"NCL": "(N, 2, L)", "N1CL": "(N, 1, 2, L)", "NLC": "(N, L, 2)"}


def check_layout(name):
    """The layout's name (NCL when none is given); one-line error for an unknown one."""
    text = "NCL" if name in (None, "") else str(name).upper()
    if text not in LAYOUTS:
        raise EdgepruneError("unknown input layout {!r}; choose one of {}".format(
            name, ", ".join("{} {}".format(k, v) for k, v in LAYOUTS.items())))
    return text


def layout_shape(layout, batch, length):
    """The model's input shape for ``batch`` frames of ``length`` samples in ``layout``."""
    layout = check_layout(layout)
    if layout == "N1CL":
        return [batch, 1, 2, length]
    if layout == "NLC":
        return [batch, length, 2]
    return [batch, 2, length]


def layout_of_shape(shape):
    """The layout an input of ``shape`` (dims may be names) has, or None when it is none of them."""
    dims = list(shape or [])
    if len(dims) == 4 and dims[1:3] == [1, 2]:
        return "N1CL"
    if len(dims) == 3 and dims[1] == 2:
        return "NCL"
    if len(dims) == 3 and dims[2] == 2:
        return "NLC"
    return None


def to_layout(x, layout):
    """(N, 2, L) frames as a model of ``layout`` takes them (float32, contiguous)."""
    layout = check_layout(layout)
    x = np.asarray(x, dtype=np.float32)
    if layout == "N1CL":
        return np.ascontiguousarray(x[:, None])
    if layout == "NLC":
        return np.ascontiguousarray(x.transpose(0, 2, 1))
    return x


def padded_batch(x, min_batch):
    """``x`` (N, ...) with its last frame repeated up to ``min_batch`` frames when N is smaller (a graph that runs
    only on a few frames, see the metadata's ``input.min_batch``), and N: keep the first N outputs."""
    n = int(len(x))
    if n == 0 or not min_batch or n >= int(min_batch):
        return x, n
    return np.concatenate([x, np.repeat(x[-1:], int(min_batch) - n, axis=0)]), n


def check_normalization(name):
    """The normalisation's name (``none`` when none is given); one-line error for an unknown one."""
    name = "none" if name in (None, "") else str(name).lower()
    if name not in NORMALIZATIONS:
        raise EdgepruneError("unknown normalisation {!r}; known: {}".format(name, ", ".join(NORMALIZATIONS)))
    return name


def describe_normalization(name):
    """One line saying what ``name`` does to a frame (the bundle manifest's ``preprocessing.description``)."""
    name = check_normalization(name)
    return NORMALIZATION_TEXT[name]


def normalize(x, mode):
    """float32 frames (N, 2, L) scaled per frame by ``mode`` (see the module's docstring).

    Magnitudes and scales are computed in float64: frames near the float32 limit (3e38) would overflow float32 to
    inf and normalise to zeros; in float64 they normalise like any other frame. A scale above 1e37 is not
    representable as a float32 divisor, so those frames are divided in float64 (then rounded to float32).
    """
    mode = check_normalization(mode)
    x = np.asarray(x, dtype=np.float32)
    if mode == "none" or x.size == 0:
        return x
    mag = np.hypot(x[:, 0, :].astype(np.float64), x[:, 1, :].astype(np.float64))
    if mode == "l1":
        scale = mag.sum(axis=1)
    elif mode == "l2":
        scale = np.sqrt((mag ** 2).sum(axis=1))  # float32 input: mag < 5e38, mag^2 summed stays finite in float64
    else:
        scale = mag.max(axis=1)
    del mag
    scale = np.where(scale > 0, scale, 1.0)
    big = scale > 1e37
    out = x / np.where(big, 1.0, scale).astype(np.float32)[:, None, None]
    if big.any():
        out[big] = (x[big].astype(np.float64) / scale[big][:, None, None]).astype(np.float32)
    return out


def check_frames(frames, length):
    """Validate and return frames as float32 (N, 2, length); (2, length) becomes (1, 2, length)."""
    try:
        x = np.asarray(frames)
    except (ValueError, TypeError):  # ragged nested lists and the like
        raise EdgepruneError("frames must be a numeric array of shape (N, 2, {}) (got something numpy cannot "
                             "make one array of)".format(length))
    if x.dtype == object or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise EdgepruneError("frames must be real numbers (float32), got dtype {}".format(x.dtype))
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] != 2:
        raise EdgepruneError("frames must have shape (N, 2, {0}) or (2, {0}) (rows I and Q), got {1}".format(
            length, tuple(np.shape(frames))))
    if x.shape[2] != length:
        raise EdgepruneError("frames have {} samples but the model takes {}".format(x.shape[2], length))
    x = x.astype(np.float32, copy=False)
    if x.size and not np.isfinite(x).all():
        bad = int((~np.isfinite(x).reshape(len(x), -1).all(axis=1)).sum())
        raise EdgepruneError("{} frame(s) contain NaN or Inf samples".format(bad))
    return x


def softmax(z):
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def classify(logits, classes):
    """Class index, name, confidence and probabilities of each row of ``logits``."""
    z = np.asarray(logits, dtype=np.float32)
    if len(z) == 0:
        return {"labels": np.zeros(0, np.int64), "names": [], "confidence": np.zeros(0, np.float32),
                "probs": z.reshape(0, len(classes))}
    probs = softmax(z)
    labels = probs.argmax(axis=1).astype(np.int64)
    return {"labels": labels, "names": [classes[i] for i in labels], "confidence": probs.max(axis=1),
            "probs": probs}


def npy_chunks(path, batch):
    """(first frame index, frames) chunks of a .npy file: (N, 2, L) / (2, L) real, or complex (N, L) / (L,)."""
    try:
        arr = np.load(str(path), mmap_mode="r", allow_pickle=False)
    except (IOError, OSError) as exc:
        if not __import__("os").path.exists(str(path)):
            raise EdgepruneError("input {} does not exist".format(path))
        raise EdgepruneError("{} is not a readable .npy array of numbers: {}".format(path, exc))
    except (ValueError, EOFError) as exc:
        raise EdgepruneError("{} is not a readable .npy array of numbers: {}".format(path, exc))
    if np.iscomplexobj(arr):
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2:
            raise EdgepruneError("complex input must have shape (N, L), got {}".format(arr.shape))
        return _complex_chunks(arr, batch)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise EdgepruneError("{}: frames must have shape (N, 2, L) or (2, L), got {}".format(path, arr.shape))
    return _real_chunks(arr, batch)


def _complex_chunks(arr, batch):
    for i in range(0, len(arr), batch):
        c = np.asarray(arr[i:i + batch])
        yield i, np.stack([c.real, c.imag], 1).astype(np.float32)


def _real_chunks(arr, batch):
    for i in range(0, len(arr), batch):
        yield i, np.asarray(arr[i:i + batch])


def table_text(name):
    """``name`` for one cell of a tab-separated table printed one row per line: backslashes, control characters
    (tabs, newlines ...) and line separators escaped, so a name can never forge rows or columns."""
    out = []
    for ch in str(name):
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif code < 32 or 127 <= code < 160:
            out.append("\\x%02x" % code)
        elif ch in "\u2028\u2029":
            out.append("\\u%04x" % code)
        else:
            out.append(ch)
    return "".join(out)


def prediction_rows(start, out, hop=None):
    """One row per frame of a ``classify`` result whose first frame is number ``start``: frame, label, class,
    confidence, and the sample ``offset`` when frames are windows ``hop`` samples apart (a recording)."""
    rows = []
    for k in range(len(out["labels"])):
        row = {"frame": start + k, "label": int(out["labels"][k]), "class": out["names"][k],
               "confidence": float(out["confidence"][k])}
        if hop is not None:
            row["offset"] = (start + k) * hop
        rows.append(row)
    return rows
