"""Reading and verifying a bundle on the board (Python 3.6+, stdlib only).

``verify_files`` is the one file check and ``check_manifest`` (against the
declaration ``MANIFEST_SCHEMA``) the one manifest check: ``export.bundle.open_bundle``
and a bundle's run.py both call them.
"""

import hashlib
import json
import os
import re

from .errors import EdgepruneError
from .schema import integer, mapping, number, obj, opt, seq, text, validate

SCHEMA_VERSION = 1
KIND = "edgeprune-bundle"
MANIFEST = "manifest.json"
RUNNER = "run.py"
FORMATS = ("onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# what ``run.py build`` writes into the bundle folder on the board: the engine, its metadata, the timing cache
BOARD_OUTPUT = re.compile(r"^board-(fp32|fp16|int8)\.engine(\.json)?$|^board-timing\.cache$")


def is_board_output(name):
    """True for the files ``run.py build`` writes beside the verified ones (never listed in the manifest)."""
    return bool(BOARD_OUTPUT.match(name))


def file_sha256(path):
    h = hashlib.sha256()
    with open(str(path), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    from .safeio import read_bytes

    try:
        m = json.loads(read_bytes(mpath, "bundle manifest", "doc").decode("utf-8"))
    except RecursionError:
        raise EdgepruneError("{} is not valid JSON (nested too deeply)".format(what))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise EdgepruneError("{} is not valid JSON ({})".format(what, exc))
    return check_manifest(m, "{}/{}".format(source, MANIFEST))


def _normalization(name):
    from .frames import check_normalization

    check_normalization(name)
    return True


# Every field the bundle, the Predictor, the profiler and the runner read, with its type.
MANIFEST_SCHEMA = obj(
    kind=text(choices=(KIND,), doc="always " + KIND),
    schema_version=integer(doc="the manifest format version"),
    model=opt(text()),
    classes=seq(text(nonempty=True), nonempty=True, hi=1 << 16, doc="class names, index order"),
    input=obj(name=opt(text()), layout=text(choices=("NCL", "N1CL", "NLC"), doc="how the model takes frames: (N, 2, L), (N, 1, 2, L) or (N, L, 2)"), channels=integer(choices=(2,)),
              length=integer(lo=1, hi=1 << 24), dtype=opt(text(choices=("float32",)))),
    output=opt(obj(name=opt(text()))),
    preprocessing=obj(normalization=text(check=_normalization, doc="none, l1, l2 or max"),
                      description=opt(text())),
    default_precision=opt(text(choices=PRECISIONS, nullable=True)),
    opset=opt(integer(lo=1, hi=1000, nullable=True)),
    macs=opt(number(lo=0, nullable=True)),
    params=opt(number(lo=0, nullable=True)),
    weight_layers=opt(number(lo=0, nullable=True)),
    units=opt(number(lo=0, nullable=True)),
    variants=seq(obj(file=text(), format=text(choices=FORMATS), precision=text(choices=PRECISIONS),
                     accuracy=opt(number(lo=0, hi=1, nullable=True))),
                 nonempty=True, doc="the model files"),
    files=mapping(obj(sha256=text(pattern="[0-9a-f]{64}"), size=integer(lo=0)), doc="every file with its hash"),
)


def check_manifest(m, where="manifest.json"):
    """Check a parsed manifest against MANIFEST_SCHEMA and its cross-references; raise EdgepruneError naming
    the first problem; return it. The one manifest check of the toolchain and of run.py."""
    if not isinstance(m, dict):
        raise EdgepruneError("{}: not a JSON object".format(where))
    if m.get("kind") != KIND:
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
    an engine is checked against the sha256 its build wrote)."""
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
