"""Reading and verifying a bundle on the board (Python 3.6+, stdlib only).

``verify_files`` is the one file check and ``check_manifest`` (against the
declaration ``MANIFEST_SCHEMA``) the one manifest check: ``edgeprune.export.bundle.open_bundle``
and a bundle's run.py both call them.
"""

import hashlib
import json
import os
import re

from .errors import EdgepruneError
from .onnx_external import read_metadata_props
from .safeio import file_sha256, read_bytes
from .schema import integer, mapping, number, obj, opt, parse_json, seq, text, validate

SCHEMA_VERSION = 1
BUNDLE_KIND = "edgeprune-bundle"
MANIFEST = "manifest.json"
RUNNER = "run.py"
VARIANT_FORMATS = ("onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# what ``run.py build`` writes into the bundle folder on the board: the engine, its metadata, the timing cache
BOARD_OUTPUT = re.compile(r"^board-(fp32|fp16|int8)\.engine(\.json)?$|^board-timing\.cache$")


def is_board_output(name):
    """True for the files ``run.py build`` writes beside the verified ones (never listed in the manifest)."""
    return bool(BOARD_OUTPUT.match(name))


def file_entry(path):
    """A bundle file's manifest entry: its sha256 and size."""
    return {"sha256": file_sha256(path), "size": os.path.getsize(str(path))}


def check_file_name(name, where="manifest"):
    """Bundle files are flat, plain names: no folders, no '..', no absolute paths."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise EdgepruneError("{}: unsafe or invalid file name {!r} (bundle files are plain names)".format(where, name))
    return name


def read_manifest(root, source=None):
    """Parse and check ``root/manifest.json``."""
    source = source or root
    mpath = os.path.join(str(root), MANIFEST)
    if not os.path.isfile(mpath) or os.path.islink(mpath):
        raise EdgepruneError("{} is not a bundle: it has no {}".format(source, MANIFEST))
    what = "{}: {}".format(source, MANIFEST)

    m = parse_json(read_bytes(mpath, "bundle manifest", "doc"), what)
    return check_manifest(m, "{}/{}".format(source, MANIFEST))


def _normalization(name):
    from .frames import check_normalization

    check_normalization(name)
    return True


def _increasing(values):
    return all(a < b for a, b in zip(values, values[1:]))


def _class_name(name):
    """Class names are printed one per row (predict's table, annotations): no control characters."""
    bad = [c for c in name if ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029"]
    if bad:
        raise EdgepruneError("the class name {!r} holds control characters (newlines, tabs ...)".format(name[:40]))
    return True


CLASS_NAME = text(nonempty=True, hi=256, check=_class_name)


def check_class_names(classes, where):
    """Refuse class names a bundle cannot carry (empty, longer than 256 characters, control characters)."""
    validate(list(classes), seq(CLASS_NAME, nonempty=True, hi=1 << 16), where + ": its class names")


# What run.py build, bench, check and the ONNX Runtime backend read of the bundle's target, with its type.
TARGET_SCHEMA = obj(
    name=opt(text(nullable=True)), backend=opt(text(choices=("onnxruntime", "tensorrt"))),
    precisions=opt(seq(text(choices=PRECISIONS))), tensorrt=opt(text(nullable=True)),
    jetpack=opt(text(nullable=True)), dla_cores=opt(integer(lo=0, hi=16)),
    workspace_mib=opt(integer(lo=0, hi=1 << 20)), providers=opt(seq(text())),
    batch=opt(obj(min=opt(integer(lo=1)), opt=opt(integer(lo=1)), max=opt(integer(lo=1)),
                  profile=opt(seq(integer(lo=1), nonempty=True, check=_increasing)))),
    nullable=True,
)
# Every field the bundle, the Predictor, the profiler and the runner read, with its type.
MANIFEST_SCHEMA = obj(
    kind=text(choices=(BUNDLE_KIND,), doc="always " + BUNDLE_KIND),
    schema_version=integer(doc="the manifest format version"),
    model=opt(text()),
    classes=seq(CLASS_NAME, nonempty=True, hi=1 << 16, doc="class names, index order"),
    target=opt(TARGET_SCHEMA),
    input=obj(name=opt(text()), layout=text(choices=("NCL", "N1CL", "NLC"), doc="how the model takes frames: (N, 2, L), (N, 1, 2, L) or (N, L, 2)"), channels=integer(choices=(2,)),
              length=integer(lo=1, hi=1 << 24), dtype=opt(text(choices=("float32",))),
              min_batch=opt(integer(lo=1, hi=64, doc="the fewest frames the model files run on (absent: 1); "
                                                     "smaller batches are padded"))),
    output=opt(obj(name=opt(text()))),
    preprocessing=obj(normalization=text(check=_normalization, doc="none, l1, l2 or max"),
                      description=opt(text())),
    default_precision=opt(text(choices=PRECISIONS, nullable=True)),
    opset=opt(integer(lo=1, hi=1000, nullable=True)),
    macs=opt(number(lo=0, nullable=True)),
    params=opt(number(lo=0, nullable=True)),
    weight_layers=opt(number(lo=0, nullable=True)),
    units=opt(number(lo=0, nullable=True)),
    variants=seq(obj(file=text(), format=text(choices=VARIANT_FORMATS), precision=text(choices=PRECISIONS),
                     accuracy=opt(number(lo=0, hi=1, nullable=True))),
                 nonempty=True, doc="the model files"),
    files=mapping(obj(sha256=text(pattern="[0-9a-f]{64}"), size=integer(lo=0)), doc="every file with its hash"),
)


# The edgeprune.* metadata_props of an exported ONNX file that Predictor, the profiler, edgeprune build and the
# class-order check read, with their types (values are JSON; plain strings are stored as they are).
_P = "edgeprune."
ONNX_METADATA_SCHEMA = obj({
    _P + "classes": opt(seq(CLASS_NAME, nonempty=True, hi=1 << 16)),
    _P + "input": opt(obj(name=opt(text()), layout=opt(text(choices=("NCL", "N1CL", "NLC"))), channels=opt(integer(choices=(2,))),
                          length=opt(integer(lo=1, hi=1 << 24)), dtype=opt(text()),
                          min_batch=opt(integer(lo=1, hi=64)))),
    _P + "normalization": opt(text(check=_normalization)),
    _P + "precision": opt(text(choices=PRECISIONS, nullable=True)),
    _P + "opset": opt(integer(lo=1, hi=1000, nullable=True)),
    _P + "macs": opt(number(lo=0, nullable=True)),
    _P + "params": opt(number(lo=0, nullable=True)),
})


def decode_metadata(raw, where="ONNX metadata"):
    """ONNX metadata_props (str -> str) with JSON values decoded behind the one JSON guard (size, depth) and the
    edgeprune.* fields checked against ONNX_METADATA_SCHEMA; text that is not JSON stays a string."""
    if len(raw) > 4096:
        raise EdgepruneError("{} has {} entries; edgeprune writes about 16".format(where, len(raw)))
    out = {}
    for key, value in raw.items():
        out[key] = parse_json(value, "{} {!r}".format(where, key), plain_text=True)
    validate(out, ONNX_METADATA_SCHEMA, where)
    return out


def check_class_order(root, manifest, source=None):
    """Every ONNX model of the bundle folder ``root`` that records its class names (``edgeprune.classes``) must
    list exactly the manifest's classes in the same order: an edited manifest would swap labels silently."""
    source = source or root
    for var in manifest["variants"]:
        if var["format"] != "onnx":
            continue
        path = os.path.join(str(root), var["file"])
        meta = decode_metadata(read_metadata_props(path), "{}: {} metadata".format(source, var["file"]))
        recorded = meta.get(_P + "classes")
        if recorded is not None and list(recorded) != list(manifest["classes"]):
            raise EdgepruneError("bundle {}: the manifest's classes {} are not the classes {} records {} (edited "
                                 "manifest? the labels would be swapped)".format(
                                     source, _names(manifest["classes"]), var["file"], _names(recorded)))


def _names(classes, limit=8):
    shown = ", ".join(repr(c)[:40] for c in classes[:limit])
    return "[" + shown + (", ..." if len(classes) > limit else "") + "]"


def check_manifest(m, where="manifest.json"):
    """Check a parsed manifest against MANIFEST_SCHEMA and its cross-references; raise EdgepruneError naming
    the first problem; return it. The one manifest check of the toolchain and of run.py."""
    if not isinstance(m, dict):
        raise EdgepruneError("{}: not a JSON object".format(where))
    if m.get("kind") != BUNDLE_KIND:
        raise EdgepruneError("{}: not an edgeprune bundle manifest (kind {!r})".format(where, m.get("kind")))
    v = m.get("schema_version")
    if v != SCHEMA_VERSION or isinstance(v, bool):
        raise EdgepruneError("{}: unknown schema_version {!r}; this edgeprune reads version {} (upgrade edgeprune "
                             "or re-bundle with the edgeprune that made it)".format(where, v, SCHEMA_VERSION))
    validate(m, MANIFEST_SCHEMA, where)
    for name in m["files"]:
        check_file_name(name, where)
        if name == MANIFEST:
            raise EdgepruneError("{}: the manifest cannot list itself".format(where))
    for i, var in enumerate(m["variants"]):
        if var["file"] not in m["files"]:
            raise EdgepruneError("{}: variant {} names a file that is not in 'files'".format(where, i))
    return m


def verify_files(root, manifest, source=None):
    """Every listed file exists, is a plain file and matches its size and sha256; nothing unlisted
    except what ``run.py build`` made on the board (``is_board_output``: never trusted as listed files are;
    an engine is checked against the sha256 its build wrote); the ONNX models' recorded class order is the
    manifest's (:func:`check_class_order`)."""
    root = str(root)
    source = source or root
    listed = set(manifest["files"])
    for name in sorted(os.listdir(root)):
        if name == MANIFEST or (is_board_output(name) and os.path.isfile(os.path.join(root, name))
                                  and not os.path.islink(os.path.join(root, name))):
            continue
        if name not in listed:
            raise EdgepruneError("bundle {} holds a file the manifest does not list: {!r}".format(source, name))
    for name, entry in manifest["files"].items():
        p = os.path.join(root, name)
        if os.path.islink(p):
            raise EdgepruneError("bundle {}: {!r} is a symbolic link; bundles hold plain files only".format(source, name))
        if not os.path.isfile(p):
            raise EdgepruneError("bundle {} is incomplete: {!r} is missing".format(source, name))
        size = os.path.getsize(p)
        if size != entry["size"]:
            raise EdgepruneError("bundle {}: {!r} has {} bytes, the manifest says {} (damaged or tampered with)".format(
                source, name, size, entry["size"]))
        if file_sha256(p) != entry["sha256"]:
            raise EdgepruneError("bundle {}: {!r} does not match its sha256 in the manifest (damaged or tampered "
                                 "with)".format(source, name))
    check_class_order(root, manifest, source)


def pick_variant(manifest, precision=None, fmt="onnx", source="bundle"):
    """The variant of ``precision`` (default: the bundle's default precision, else the first) in ``fmt``."""
    cands = [v for v in manifest["variants"] if v["format"] == fmt]
    if not cands:
        raise EdgepruneError("bundle {} has no {} model".format(source, fmt))
    if precision is None:
        for v in cands:
            if v["precision"] == manifest.get("default_precision"):
                return v
        return cands[0]
    for v in cands:
        if v["precision"] == precision:
            return v
    raise EdgepruneError("bundle {} has no {} {} model (it has {})".format(
        source, precision, fmt, ", ".join(v["precision"] for v in cands)))


def manifest_hash(manifest):
    """The identity of a bundle folder in latency records (sha256 of the sorted-key manifest JSON)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode("utf-8")).hexdigest()
