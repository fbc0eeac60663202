"""Write classifications back into a SigMF recording's metadata as annotations (torch-free, stdlib JSON).

One annotation per classified window: ``core:sample_start`` (the window's
first sample), ``core:sample_count`` (the frame length), ``core:label`` (the
class), ``core:generator`` ("edgeprune"), and the confidence under our own
namespace, ``edgeprune:confidence``, declared in ``core:extensions`` as an
optional extension (SigMF has no standard confidence field). Existing
annotations stay; all are sorted by ``core:sample_start`` as SigMF requires.

The output metadata must sit beside its data file (``OUT.sigmf-data``): when
OUT names another recording, the input's data file is hard-linked there (or
copied where a link is impossible).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from edgeprune.atomic import write_text
from edgeprune.errors import EdgepruneError

from .runtime.sigmf import paths

EXTENSION = {"name": "edgeprune", "version": "1.0.0", "optional": True}


def write_annotations(src: str, out: str, rows: list[dict], length: int, model: dict | None = None) -> Path:
    """Copy ``src``'s metadata to ``out`` (a .sigmf-meta path) with one annotation per row (offset, class)."""
    in_meta, in_data = paths(src)
    if not str(out).endswith(".sigmf-meta"):
        raise EdgepruneError(f"--annotate {out}: give a .sigmf-meta path")
    out_meta, out_data = paths(out)
    meta = json.loads(Path(in_meta).read_text(encoding="utf-8"))
    g = meta.setdefault("global", {})
    exts = [e for e in g.get("core:extensions", []) if e.get("name") != EXTENSION["name"]]
    g["core:extensions"] = exts + [dict(EXTENSION)]
    ann = [a for a in meta.get("annotations", []) if a.get("core:generator") != "edgeprune"]
    desc = None
    if model:
        desc = f"{Path(str(model.get('source', ''))).name} {model.get('backend')} {model.get('precision')}"
    for r in rows:
        a = {"core:sample_start": int(r["offset"]), "core:sample_count": int(length), "core:label": str(r["class"])[:20],
             "core:generator": "edgeprune", "edgeprune:confidence": round(float(r["confidence"]), 6)}
        if desc:
            a["core:comment"] = desc
        ann.append(a)
    ann.sort(key=lambda a: a.get("core:sample_start", 0))  # stable: equal starts keep their order
    meta["annotations"] = ann
    if os.path.abspath(out_data) != os.path.abspath(in_data) and not os.path.exists(out_data):
        Path(out_data).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(in_data, out_data)
        except OSError:
            shutil.copyfile(in_data, out_data)
    write_text(out_meta, json.dumps(meta, indent=2) + "\n")
    return Path(out_meta)
