"""The declarative JSON validator, for the host side: it lives in :mod:`export.runtime.schema`.

The validator is part of the device runtime because a bundle's run.py (Python 3.6, no edgeprune
installed) checks manifests with it too; plans, results, latency models and study state use the same one.
"""

from export.runtime.schema import (Field, SchemaError, anything, boolean, check_depth,  # noqa: F401
                                   declared_paths, integer, mapping, number, obj, opt, parse_json,
                                   prune_undeclared, required_paths, seq, text, validate)
