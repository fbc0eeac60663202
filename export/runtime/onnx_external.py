"""edgeprune's own check of ONNX external data, before ONNX Runtime sees the file.

An ONNX tensor can keep its bytes in another file (``data_location =
EXTERNAL`` with a ``location`` entry). Recent ONNX Runtime and onnx releases
refuse absolute and ``..`` locations, but an older ONNX Runtime (a Jetson's)
may follow them, so edgeprune checks every tensor itself:

* a model inside a bundle may use external data only in files the bundle's
  manifest lists (plain names, verified by sha256 with the rest), and the
  byte range must lie inside that file;
* a standalone ``.onnx`` file may not use external data at all.

The model's protobuf is walked directly (initializers, sparse initializers,
node attributes, subgraphs and functions), so neither ``onnx`` nor torch is
needed: the check runs on the device side too. Python-3.6-compatible.
"""

import os

from .errors import EdgepruneError
from .safeio import read_bytes
from .schema import parse_json

# field numbers from onnx.proto
_MODEL_GRAPH, _MODEL_METADATA, _MODEL_FUNCTIONS = 7, 14, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE = 1, 5, 15
_NODE_ATTRIBUTE = 5
_FUNCTION_NODE = 7
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_NAME, _TENSOR_EXTERNAL, _TENSOR_LOCATION = 8, 13, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_EXTERNAL = 1
_MAX_DEPTH = 64


class _Malformed(Exception):
    pass


def _varint(buf, pos, end):
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed("bad varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf, start, end):
    """(field number, wire type, value) of each field in buf[start:end]; length-delimited values as (a, b)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 5:
            value, pos = None, pos + 4
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            value, pos = (pos, pos + n), pos + n
        else:
            raise _Malformed("unsupported wire type %d" % wire)
        if pos > end:
            raise _Malformed("a field runs past its message")
        yield field, wire, value


def _tensor(buf, span, out):
    name, location, entries = "", 0, {}
    for field, wire, value in _fields(buf, span[0], span[1]):
        if field == _TENSOR_NAME and wire == 2:
            name = bytes(buf[value[0]:value[1]]).decode("utf-8", "replace")
        elif field == _TENSOR_LOCATION and wire == 0:
            location = value
        elif field == _TENSOR_EXTERNAL and wire == 2:
            key = val = ""
            for f2, w2, v2 in _fields(buf, value[0], value[1]):
                if w2 == 2 and f2 in (_ENTRY_KEY, _ENTRY_VALUE):
                    text = bytes(buf[v2[0]:v2[1]]).decode("utf-8", "replace")
                    if f2 == _ENTRY_KEY:
                        key = text
                    else:
                        val = text
            entries[key] = val
    if location == _EXTERNAL or entries:
        out.append((name, entries))


def _sparse(buf, span, out):
    for field, wire, value in _fields(buf, span[0], span[1]):
        if wire == 2 and field in (_SPARSE_VALUES, _SPARSE_INDICES):
            _tensor(buf, value, out)


def _node(buf, span, out, depth):
    for field, wire, value in _fields(buf, span[0], span[1]):
        if field != _NODE_ATTRIBUTE or wire != 2:
            continue
        for f2, w2, v2 in _fields(buf, value[0], value[1]):
            if w2 != 2:
                continue
            if f2 in (_ATTR_T, _ATTR_TENSORS):
                _tensor(buf, v2, out)
            elif f2 in (_ATTR_G, _ATTR_GRAPHS):
                _graph(buf, v2, out, depth + 1)
            elif f2 in (_ATTR_SPARSE, _ATTR_SPARSES):
                _sparse(buf, v2, out)


def _graph(buf, span, out, depth):
    if depth > _MAX_DEPTH:
        raise _Malformed("subgraphs nested too deeply")
    for field, wire, value in _fields(buf, span[0], span[1]):
        if wire != 2:
            continue
        if field == _GRAPH_INITIALIZER:
            _tensor(buf, value, out)
        elif field == _GRAPH_SPARSE:
            _sparse(buf, value, out)
        elif field == _GRAPH_NODE:
            _node(buf, value, out, depth)


def external_tensors(data):
    """[(tensor name, {external_data key: value})] for every tensor of a serialized model stored outside it."""
    buf = memoryview(data)
    out = []
    try:
        for field, wire, value in _fields(buf, 0, len(buf)):
            if wire != 2:
                continue
            if field == _MODEL_GRAPH:
                _graph(buf, value, out, 0)
            elif field == _MODEL_FUNCTIONS:
                for f2, w2, v2 in _fields(buf, value[0], value[1]):
                    if f2 == _FUNCTION_NODE and w2 == 2:
                        _node(buf, v2, out, 1)
    except _Malformed as exc:
        raise EdgepruneError("not a readable ONNX model (%s)" % exc)
    return out


def read_metadata_props(model_path):
    """The metadata_props of the ONNX file ``model_path`` ({key: value} strings), read from its protobuf (no
    ``onnx`` package needed); a damaged file is one EdgepruneError."""
    data = read_bytes(model_path, "ONNX model", "checkpoint")
    buf = memoryview(data)
    out = {}
    try:
        for field, wire, value in _fields(buf, 0, len(buf)):
            if field != _MODEL_METADATA or wire != 2:
                continue
            entry = {}
            for f2, w2, v2 in _fields(buf, value[0], value[1]):
                if f2 in (_ENTRY_KEY, _ENTRY_VALUE) and w2 == 2:
                    entry[f2] = bytes(buf[v2[0]:v2[1]]).decode("utf-8")
            out[entry.get(_ENTRY_KEY, "")] = entry.get(_ENTRY_VALUE, "")
    except (_Malformed, UnicodeDecodeError) as exc:
        raise EdgepruneError("%s is not a readable ONNX model (%s)" % (model_path, exc))
    return out


def check_external_data(model_path, allowed=None, where=None):
    """Refuse a model whose tensors live outside it, unless in ``allowed`` files beside it.

    ``allowed``: {file name: size in bytes} of the files the model may use
    (a bundle's manifest ``files``); None: no external data at all.
    """
    where = where or str(model_path)
    data = read_bytes(model_path, "ONNX model", "checkpoint")
    try:
        found = external_tensors(data)
    except EdgepruneError as exc:
        raise EdgepruneError("cannot load %s: %s" % (where, exc))
    for name, entries in found:
        loc = entries.get("location", "")
        label = "tensor %r" % name[:60]
        if allowed is None:
            raise EdgepruneError("%s: %s keeps its data in the external file %r; edgeprune runs external-data "
                                 "models only from a bundle that lists the file" % (where, label, loc[:80]))
        if not loc or loc not in allowed or os.path.basename(loc) != loc or loc in (".", ".."):
            raise EdgepruneError("%s: %s keeps its data in %r, which is not a file the bundle's manifest lists"
                                 % (where, label, loc[:80]))
        try:
            offset = int(entries.get("offset", "0") or 0)
            length = int(entries["length"]) if entries.get("length") else None
        except ValueError:
            raise EdgepruneError("%s: %s has a malformed external-data offset or length" % (where, label))
        size = allowed[loc]
        if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
            raise EdgepruneError("%s: %s reads bytes %d..%s of %r, outside the file (%d bytes)"
                                 % (where, label, offset, "end" if length is None else offset + length, loc, size))
    return found


def check_model_file(path):
    """:func:`check_external_data` for an ONNX file wherever it is: beside a bundle manifest that lists it,
    external data may come from the other files that manifest lists; anywhere else, from nowhere."""
    path = str(path)
    folder, name = os.path.split(os.path.abspath(path))
    manifest = os.path.join(folder, "manifest.json")
    allowed = None
    if os.path.isfile(manifest) and not os.path.islink(manifest):
        try:
            doc = parse_json(read_bytes(manifest, "bundle manifest", "doc"), "bundle manifest")
            files = doc.get("files") if isinstance(doc, dict) else None
            if isinstance(files, dict) and name in files:
                allowed = {}
                for k, v in files.items():
                    size = v.get("size") if isinstance(v, dict) else None
                    if isinstance(k, str) and k != name and isinstance(size, int) and not isinstance(size, bool):
                        allowed[k] = size
        except EdgepruneError:
            allowed = None
    return check_external_data(path, allowed)
