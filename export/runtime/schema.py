"""Declared shapes of the JSON documents edgeprune reads back, and the one validator for them.

Every document that edgeprune writes and later reads again (bundle manifests,
plans, profile results, latency models, a study's ``state.json``) is declared
once as a tree of :class:`Field` objects next to the code that writes it. The
declaration lists every field the readers use, with its type, its range and
whether it may be absent; :func:`validate` walks a parsed document against it
and raises :class:`SchemaError` (an ``EdgepruneError``: one line, naming the
file and the field path) on the first problem. Fields that are not declared
are left alone, so newer writers can add fields without breaking older readers.

    MANIFEST = obj(classes=seq(text(), nonempty=True), input=obj(length=integer(lo=1)))
    validate(doc, MANIFEST, "bundle/manifest.json")

:func:`parse_json` is the one guard in front of every JSON that edgeprune
reads (files, ONNX metadata values, a board's answer, a checkpoint's spec):
its size (the ``doc`` limit), its nesting depth (the ``depth`` limit, checked
without recursion) and, when a declaration is given, the type of every
declared field, all refused in one line naming the document and the field.
:func:`check_depth` is the depth check alone, for parsed TOML.

Torch-free and written for Python 3.6 and later (the bundle's runner on a
Jetson Nano uses it too).
"""

import json
import math
import re

from .errors import EdgepruneError
from .safeio import LIMITS, human, limit as _limit

KINDS = ("object", "list", "str", "int", "number", "bool", "any")
_MISSING = object()


class SchemaError(EdgepruneError):
    """A document that does not have the declared shape."""


class Field(object):
    """One declared value.

    ``kind``: object, list, str, int, number (int or float), bool or any.
    ``required``: the key must be present (for object members).
    ``nullable``: JSON null is accepted too.
    ``fields``: for objects, the declared members (name -> Field).
    ``values``: for objects used as maps, the Field every value must match;
    ``keys`` an optional callable that checks each key (raises or returns False).
    ``items``: for lists, the Field every item must match.
    ``choices``: the allowed values; ``lo``/``hi``: an inclusive numeric range
    (the length for str and list); numbers must be finite.
    ``nonempty``: a str, list or object with at least one element.
    ``pattern``: a regular expression a str must match in full.
    ``check``: a callable applied last (raise EdgepruneError, or return False to refuse).
    ``doc``: what the field is, for error messages and the docs.
    """

    __slots__ = ("kind", "required", "nullable", "fields", "values", "keys", "items", "choices", "lo", "hi",
                 "nonempty", "pattern", "check", "doc")

    def __init__(self, kind, required=True, nullable=False, fields=None, values=None, keys=None, items=None,
                 choices=None, lo=None, hi=None, nonempty=False, pattern=None, check=None, doc=""):
        if kind not in KINDS:
            raise ValueError("unknown field kind %r" % (kind,))
        self.kind = kind
        self.required = required
        self.nullable = nullable
        self.fields = fields
        self.values = values
        self.keys = keys
        self.items = items
        self.choices = tuple(choices) if choices is not None else None
        self.lo = lo
        self.hi = hi
        self.nonempty = nonempty
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        self.check = check
        self.doc = doc

    def optional(self):
        """The same field, allowed to be absent."""
        out = Field.__new__(Field)
        for name in Field.__slots__:
            setattr(out, name, getattr(self, name))
        out.required = False
        return out


def obj(fields=None, **kw):
    """An object with declared members (``fields`` or keyword members); other keyword args go to Field."""
    opts = {k: kw.pop(k) for k in list(kw) if k in Field.__slots__ and not isinstance(kw[k], Field)}
    members = dict(fields or {})
    members.update(kw)
    return Field("object", fields=members, **opts)


def mapping(values, keys=None, **kw):
    return Field("object", values=values, keys=keys, **kw)


def seq(items=None, **kw):
    return Field("list", items=items, **kw)


def text(**kw):
    return Field("str", **kw)


def integer(**kw):
    return Field("int", **kw)


def number(**kw):
    return Field("number", **kw)


def boolean(**kw):
    return Field("bool", **kw)


def anything(**kw):
    return Field("any", **kw)


def opt(field):
    return field.optional()


def _type_name(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_WANT = {"object": "an object", "list": "a list", "str": "a string", "int": "an integer",
         "number": "a number", "bool": "true or false"}


def _is_kind(value, kind):
    if kind == "any":
        return True
    if kind == "object":
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, list)
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fail(where, path, message):
    raise SchemaError("%s: %s %s" % (where, "'%s'" % path if path else "the document", message))


def _join(path, key):
    if isinstance(key, int):
        return "%s[%d]" % (path, key)
    return "%s.%s" % (path, key) if path else str(key)


def validate(value, field, where="document", path=""):
    """Check ``value`` against ``field``; return ``value``; raise SchemaError naming the first problem."""
    if value is None and field.nullable:
        return value
    if not _is_kind(value, field.kind):
        _fail(where, path, "must be %s, not %s" % (_WANT.get(field.kind, field.kind), _type_name(value)))
    if field.kind in ("int", "number") and isinstance(value, float) and not math.isfinite(value):
        _fail(where, path, "must be a finite number, not %r" % (value,))
    if field.choices is not None and value not in field.choices:
        _fail(where, path, "must be one of %s, not %r" % (", ".join(repr(c) for c in field.choices), _short(value)))
    if field.kind in ("int", "number"):
        if field.lo is not None and value < field.lo:
            _fail(where, path, "must be at least %s, not %s" % (field.lo, _short(value)))
        if field.hi is not None and value > field.hi:
            _fail(where, path, "must be at most %s, not %s" % (field.hi, _short(value)))
    if field.kind in ("str", "list", "object"):
        n = len(value)
        if field.nonempty and n == 0:
            _fail(where, path, "must not be empty")
        if field.kind != "object":
            if field.lo is not None and n < field.lo:
                _fail(where, path, "must have at least %d elements" % field.lo)
            if field.hi is not None and n > field.hi:
                _fail(where, path, "must have at most %d elements" % field.hi)
    if field.pattern is not None and not field.pattern.fullmatch(value):
        _fail(where, path, "is malformed (%r)" % (_short(value),))
    if field.kind == "object":
        for name, sub in (field.fields or {}).items():
            got = value.get(name, _MISSING)
            if got is _MISSING:
                if sub.required:
                    _fail(where, _join(path, name), "is missing" + (" (%s)" % sub.doc if sub.doc else ""))
                continue
            validate(got, sub, where, _join(path, name))
        if field.values is not None or field.keys is not None:
            for key, sub_value in value.items():
                if field.keys is not None and field.keys(key) is False:
                    _fail(where, _join(path, key), "is not an allowed key")
                if field.values is not None:
                    validate(sub_value, field.values, where, _join(path, key))
    elif field.kind == "list" and field.items is not None:
        for i, item in enumerate(value):
            validate(item, field.items, where, _join(path, i))
    if field.check is not None:
        try:
            ok = field.check(value)
        except EdgepruneError as exc:
            _fail(where, path, "is invalid: %s" % exc)
        except (TypeError, ValueError, OverflowError) as exc:
            _fail(where, path, "is invalid (%s)" % exc)
        else:
            if ok is False:
                _fail(where, path, "is invalid (%r)" % (_short(value),))
    return value


def check_depth(value, where="document", limit=None):
    """Refuse a parsed document nested deeper than ``limit`` (default: the ``depth`` limit); iterative, so a
    deep document never reaches Python's recursion limit here or in :func:`validate` afterwards."""
    if limit is None:
        limit = _limit("depth")
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            raise SchemaError("%s is nested more than %d levels deep (raise EDGEPRUNE_MAX_JSON_DEPTH to allow "
                              "more)" % (where, limit))
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return value


def parse_json(data, where="document", field=None, kind="doc", plain_text=False):
    """Parse JSON ``data`` (bytes or str) behind the one guard: at most the ``kind`` size limit, at most the
    ``depth`` limit of nesting, and, with ``field``, every declared field of the declared type
    (:func:`validate`). Any failure is one :class:`SchemaError` naming ``where``; returns the value.

    ``plain_text``: text that is not JSON at all is the string itself (ONNX metadata values: strings are
    stored as they are, lists and objects as JSON); too large or too deep is still refused."""
    cap = _limit(kind)
    if len(data) > cap:
        raise SchemaError("%s is %s, over the %s limit for it (raise %s to allow more)"
                          % (where, human(len(data)), human(cap), LIMITS[kind][0]))
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SchemaError("%s is not valid JSON (not UTF-8 text at byte %d)" % (where, exc.start))
    try:
        value = json.loads(data)
    except RecursionError:
        raise SchemaError("%s is not valid JSON (nested too deeply)" % where)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        if plain_text:
            value = data
            if field is not None:
                validate(value, field, where)
            return value
        raise SchemaError("%s is not valid JSON (%s)" % (where, str(exc).splitlines()[0] if str(exc) else exc))
    check_depth(value, where)
    if field is not None:
        validate(value, field, where)
    return value


def _short(value, limit=40):
    s = repr(value)
    return value if len(s) <= limit else s[:limit] + "..."


def required_paths(field, path=""):
    """Every path of a required member in ``field`` (the objects' declared members, lists' first item).

    Used by the tests: deleting any of these from a valid document must be refused.
    """
    out = []
    if field.kind == "object":
        for name, sub in (field.fields or {}).items():
            p = _join(path, name)
            if sub.required:
                out.append(p)
            out.extend(required_paths(sub, p))
    elif field.kind == "list" and field.items is not None:
        out.extend(required_paths(field.items, _join(path, 0)))
    return out


def declared_paths(field, path=""):
    """Every declared path in ``field``, required or not (lists: their first item)."""
    out = []
    if field.kind == "object":
        for name, sub in (field.fields or {}).items():
            p = _join(path, name)
            out.append(p)
            out.extend(declared_paths(sub, p))
    elif field.kind == "list" and field.items is not None:
        out.extend(declared_paths(field.items, _join(path, 0)))
    return out


def prune_undeclared(value, field):
    """A copy of ``value`` with only the declared members (tests: what the readers need is all declared)."""
    if field.kind == "object" and isinstance(value, dict):
        if field.fields is not None and field.values is None:
            return {k: prune_undeclared(v, field.fields[k]) for k, v in value.items() if k in field.fields}
        if field.values is not None:
            return {k: prune_undeclared(v, field.values) for k, v in value.items()}
        return dict(value)
    if field.kind == "list" and isinstance(value, list) and field.items is not None:
        return [prune_undeclared(v, field.items) for v in value]
    return value
