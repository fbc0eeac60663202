"""Write classifications back into a SigMF recording's metadata as annotations (torch-free, stdlib JSON).

One annotation per classified window: ``core:sample_start`` (the window's
first sample), ``core:sample_count`` (the frame length), ``core:label`` (the
class), ``core:generator`` ("edgeprune"), and the confidence under our own
namespace, ``edgeprune:confidence``, declared in ``core:extensions`` as an
optional extension (SigMF has no standard confidence field). Existing
annotations stay; all are sorted by ``core:sample_start`` as SigMF requires.

The output is a recording of its own, ``OUT.sigmf-meta`` beside
``OUT.sigmf-data`` (the input's samples, hard-linked there, or copied where a
link is impossible). Both files are written whole or not at all: the data to a
temporary file that is renamed into place only once complete, then the
metadata (written to a temporary file before the data is placed). An output
that is a symbolic link (dangling too), a folder or not a regular file is
refused; so is an existing recording unless ``force``, and then both of its
files are written anew (a data file left by an interrupted run is never
reused). :func:`check_annotate` does all the checks before any inference.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

from edgeprune.atomic import atomic_path, read_json
from edgeprune.errors import EdgepruneError

from .runtime.sigmf import recording_paths

EXTENSION = {"name": "edgeprune", "version": "1.0.0", "optional": True}


def _check_output(path: str, force: bool) -> bool:
    """Whether ``path`` (one file of the output pair) exists; refuses links, folders and other non-files."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise EdgepruneError(f"--annotate: cannot use {path}: {exc.strerror or exc}") from exc
    if stat.S_ISLNK(st.st_mode):
        raise EdgepruneError(f"--annotate: {path} is a symbolic link; edgeprune does not write through links "
                             f"(give another output name)")
    if stat.S_ISDIR(st.st_mode):
        raise EdgepruneError(f"--annotate: {path} is a folder")
    if not stat.S_ISREG(st.st_mode):
        raise EdgepruneError(f"--annotate: {path} is not a regular file")
    if not force:
        raise EdgepruneError(f"--annotate: {path} exists (a recording); give --force to replace it")
    return True


def _input_meta(in_meta: str) -> dict:
    """The input's metadata, with the parts this writer changes checked (one line for anything else)."""
    meta = read_json(in_meta, f"SigMF metadata {in_meta}")
    if not isinstance(meta, dict) or not isinstance(meta.get("global", {}), dict):
        raise EdgepruneError(f"SigMF metadata {in_meta}: expected an object with a \"global\" object")
    g = meta.get("global", {})
    exts = g.get("core:extensions", [])
    if not isinstance(exts, list) or not all(isinstance(e, dict) for e in exts):
        raise EdgepruneError(f"SigMF metadata {in_meta}: core:extensions must be a list of objects, "
                             f"got {type(exts).__name__}")
    ann = meta.get("annotations", [])
    if not isinstance(ann, list) or not all(isinstance(a, dict) for a in ann):
        raise EdgepruneError(f"SigMF metadata {in_meta}: annotations must be a list of objects")
    return meta


def check_annotate(src: str, out: str, force: bool = False) -> dict:
    """Everything ``--annotate OUT`` needs, checked before any window is classified: the input's metadata and
    the output pair (see the module docstring). A plan for :func:`write_annotations`."""
    in_meta, in_data = recording_paths(src)
    if not str(out).endswith(".sigmf-meta"):
        raise EdgepruneError(f"--annotate {out}: give a .sigmf-meta path")
    out_meta, out_data = recording_paths(out)
    meta_exists = _check_output(out_meta, force)
    data_exists = _check_output(out_data, force)
    same_data = data_exists and os.path.exists(in_data) and os.path.samefile(in_data, out_data)
    meta = _input_meta(in_meta)
    return {"meta": meta, "in_data": in_data, "out_meta": out_meta, "out_data": out_data,
            "copy_data": not same_data, "replace": meta_exists or data_exists}


def _annotated(meta: dict, rows: list[dict], length: int, model: dict | None) -> dict:
    meta = dict(meta)
    g = meta["global"] = dict(meta.get("global", {}))
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

    def start(a):
        s = a.get("core:sample_start", 0)
        return s if isinstance(s, int) and not isinstance(s, bool) else 0

    ann.sort(key=start)  # stable: equal starts keep their order
    meta["annotations"] = ann
    return meta


def _place_data(in_data: str, out_data: str) -> None:
    """``in_data`` at ``out_data``, whole: hard-linked (or copied) to a temporary name there, then renamed."""
    parent = os.path.dirname(os.path.abspath(out_data))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(out_data)}.", suffix=".tmp", dir=parent)
        os.close(fd)
        os.unlink(tmp)
        try:
            os.link(in_data, tmp)
        except OSError:  # another file system, or links not allowed: a copy
            shutil.copyfile(in_data, tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, out_data)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise EdgepruneError(f"cannot write {out_data}: {exc.strerror or exc}") from exc


def write_annotations(src: str, out: str, rows: list[dict], length: int, model: dict | None = None,
                      force: bool = False, plan: dict | None = None) -> Path:
    """Write ``src``'s recording with one annotation per row (offset, class) as ``out`` (a .sigmf-meta path).

    ``plan``: :func:`check_annotate`'s (made before inference); checked again here when not given.
    """
    plan = plan or check_annotate(src, out, force)
    text = json.dumps(_annotated(plan["meta"], rows, length, model), indent=2) + "\n"
    for p in (plan["out_meta"], plan["out_data"]):  # nothing appeared there while the windows were classified
        if not plan["replace"] and os.path.lexists(p):
            raise EdgepruneError(f"--annotate: {p} appeared while the recording was classified; not replaced")
    with atomic_path(plan["out_meta"], suffix=".tmp") as tmp:
        tmp.write_text(text, encoding="utf-8")
        if plan["copy_data"]:
            _place_data(plan["in_data"], plan["out_data"])  # the data first: the metadata never names missing samples
    return Path(plan["out_meta"])
