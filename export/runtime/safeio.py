"""One bounded, regular-file-only way to open every file edgeprune reads.

Every reader of user input (datasets in all formats, SigMF metadata and
samples, CSV, target and study TOML, JSON documents, checkpoints, bundles)
goes through :func:`check_input` or :func:`open_input`:

* only regular files are read: a FIFO, a character or block device (a link to
  ``/dev/zero``, say) or a socket is refused before anything is opened, and
  the file is opened with ``O_NONBLOCK`` and checked again with ``fstat``, so a
  FIFO swapped in between can never block the reader;
* a file larger than its kind's limit is refused before it is read.

The limits (bytes unless noted), each overridable by an environment variable:

============  ==================================  =========  ==============================================
name          variable                            default    what
============  ==================================  =========  ==============================================
doc           EDGEPRUNE_MAX_DOC_BYTES             64 MiB     one JSON/TOML/SigMF-metadata document
dataset       EDGEPRUNE_MAX_DATASET_BYTES         64 GiB     one dataset file (RML2018 HDF5 is 20 GiB)
checkpoint    EDGEPRUNE_MAX_CHECKPOINT_BYTES      4 GiB      one checkpoint or model file
bundle        EDGEPRUNE_MAX_BUNDLE_BYTES          8 GiB      everything a bundle archive extracts, in total
array         EDGEPRUNE_MAX_ARRAY_BYTES           16 GiB     the arrays one input may decode into memory
expansion     EDGEPRUNE_MAX_EXPANSION             32 (x)     decoded bytes per byte stored (compression,
                                                             pickle memo references, sparse HDF5 extents)
width         EDGEPRUNE_MAX_WIDTH                 8192       channels or features of one layer in a model spec
layers        EDGEPRUNE_MAX_LAYERS                4096       layers in a model spec
params        EDGEPRUNE_MAX_PARAMS                1e8        parameters of a model spec (400 MB of float32)
activation    EDGEPRUNE_MAX_ACTIVATION            2^24       values in one layer's output for one frame
                                                             (also bounds the input length and padding)
depth         EDGEPRUNE_MAX_JSON_DEPTH            64         nesting levels of one JSON/TOML document or
                                                             JSON value (``schema.parse_json``)
============  ==================================  =========  ==============================================

The expansion cap is what keeps a small hostile file from growing: a
compressed npz member, an HDF5 dataset or a pickle may decode to at most
``expansion`` times the bytes it occupies in the file (plus 1 MiB). Honest
files are far below it (uncompressed npz and HDF5: 1x, deflated I/Q: ~1-2x,
int8 samples widened to float32: 4x).

Torch-free and Python-3.6-compatible (the device side uses it too).
"""

import errno
import hashlib
import os
import stat
import zipfile

from .errors import EdgepruneError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

LIMITS = {
    "doc": ("EDGEPRUNE_MAX_DOC_BYTES", 64 * MiB),
    "dataset": ("EDGEPRUNE_MAX_DATASET_BYTES", 64 * GiB),
    "checkpoint": ("EDGEPRUNE_MAX_CHECKPOINT_BYTES", 4 * GiB),
    "bundle": ("EDGEPRUNE_MAX_BUNDLE_BYTES", 8 * GiB),
    "array": ("EDGEPRUNE_MAX_ARRAY_BYTES", 16 * GiB),
    "expansion": ("EDGEPRUNE_MAX_EXPANSION", 32),
    # model specs read from checkpoints (edgeprune.models.spec.validate_spec)
    "width": ("EDGEPRUNE_MAX_WIDTH", 8192),
    "layers": ("EDGEPRUNE_MAX_LAYERS", 4096),
    "params": ("EDGEPRUNE_MAX_PARAMS", 100_000_000),
    "activation": ("EDGEPRUNE_MAX_ACTIVATION", 1 << 24),
    # nesting of every JSON (and TOML) document read (edgeprune.export.runtime.schema.parse_json / check_depth)
    "depth": ("EDGEPRUNE_MAX_JSON_DEPTH", 64),
}
SLACK = 1 * MiB


def limit(name):
    """The limit ``name`` (see :data:`LIMITS`), from its environment variable when set."""
    var, default = LIMITS[name]
    raw = os.environ.get(var)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        raise EdgepruneError("%s=%r is not a number" % (var, raw))
    if value < 1:
        raise EdgepruneError("%s must be at least 1, got %r" % (var, raw))
    return value


def human(n):
    """Bytes as a short text (``1.5 GiB``)."""
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "bytes" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return "%d bytes" % n  # pragma: no cover


def _name(what, path):
    """``what`` followed by the path, unless ``what`` names the path already."""
    return what if str(path) in what else "%s %s" % (what, path)


def _kind(mode):
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _refuse(what, path, st):
    return EdgepruneError("%s is %s; edgeprune reads only regular files" % (_name(what, path), _kind(st.st_mode)))


def check_input(path, what="file", kind="doc"):
    """Stat ``path`` (following links) and return its stat result if it is a regular file within the limit.

    A missing path, a folder, a FIFO, a device or a socket, or a file over the
    ``kind`` limit is one EdgepruneError naming ``what``.
    """
    try:
        st = os.stat(str(path))
    except FileNotFoundError:
        raise EdgepruneError("%s does not exist" % _name(what, path))
    except OSError as exc:
        raise EdgepruneError("cannot read %s: %s" % (_name(what, path), exc.strerror or exc))
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(what, path, st)
    _check_size(what, path, st.st_size, kind)
    return st


def _check_size(what, path, size, kind):
    if kind is None:
        return
    cap = limit(kind)
    if size > cap:
        var = LIMITS[kind][0]
        raise EdgepruneError("%s is %s, over the %s limit for it (raise %s to allow more)"
                             % (_name(what, path), human(size), human(cap), var))


def open_input(path, what="file", kind="doc", mode="rb", encoding=None, errors=None):
    """Open a regular file for reading without ever blocking on a FIFO; see :func:`check_input`.

    The file is opened with ``O_NONBLOCK`` (a FIFO opens at once instead of
    waiting for a writer), checked with ``fstat`` (the object actually opened
    must be a regular file within the limit), then switched back to blocking.
    """
    if "w" in mode or "a" in mode or "+" in mode or "x" in mode:
        raise ValueError("open_input is for reading")
    check_input(path, what, kind)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(str(path), flags)
    except FileNotFoundError:
        raise EdgepruneError("%s does not exist" % _name(what, path))
    except OSError as exc:
        raise EdgepruneError("cannot read %s: %s" % (_name(what, path), exc.strerror or exc))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(what, path, st)
        _check_size(what, path, st.st_size, kind)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        fh = os.fdopen(fd, mode, encoding=encoding, errors=errors) if "b" not in mode else os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fh


def file_sha256(path, what="file"):
    """sha256 of a regular file, streamed (bundles, engines, checkpoints, datasets, profiles: the host and the
    board use this one). A FIFO, a device or a folder is refused (:func:`open_input`): it would never end."""
    h = hashlib.sha256()
    with open_input(path, what, None) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_bytes(path, what="file", kind="doc"):
    """The whole of a regular file within its limit."""
    with open_input(path, what, kind) as fh:
        try:
            return fh.read()
        except OSError as exc:
            if exc.errno == errno.EISDIR:
                raise EdgepruneError("%s is a folder" % _name(what, path))
            raise EdgepruneError("cannot read %s: %s" % (_name(what, path), exc.strerror or exc))


def read_text(path, what="file", kind="doc", encoding="utf-8"):
    """A regular file within its limit, decoded (a decoding failure is one EdgepruneError)."""
    data = read_bytes(path, what, kind)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise EdgepruneError("%s is not %s text (byte %d)" % (_name(what, path), encoding.upper(), exc.start))


def check_zip(fh, what, size, methods=(0, 8)):
    """The members of the zip archive open in ``fh`` (``size`` bytes), after checking them all.

    Encrypted members, compression methods outside ``methods`` (0 stored,
    8 deflated: what np.savez and torch.save write), members claiming more stored
    bytes than the file holds, and members whose declared sizes add up beyond the
    expansion and array caps are refused before anything is decompressed.
    """
    try:
        zf = zipfile.ZipFile(fh)
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise EdgepruneError("%s is not a readable zip archive (truncated or corrupt?): %s" % (what, exc))
    total = 0
    for info in infos:
        name = info.filename[:60]
        if info.flag_bits & 0x1:
            raise EdgepruneError("%s: member %r is encrypted; edgeprune reads only plain members" % (what, name))
        if info.compress_type not in methods:
            raise EdgepruneError("%s: member %r uses compression method %d (only stored or deflated members are "
                                 "read)" % (what, name, info.compress_type))
        if info.compress_size > size:
            raise EdgepruneError("%s: member %r claims %d stored bytes, more than the file holds (%d)"
                                 % (what, name, info.compress_size, size))
        total += info.file_size
    check_expansion(what, total, size)
    return zf, infos


def check_array(what, produced):
    """Refuse allocating ``produced`` bytes of arrays for one input beyond the array cap."""
    produced = int(produced)
    cap_array = limit("array")
    if produced > cap_array:
        raise EdgepruneError("%s would need %s in memory, over the %s limit (raise EDGEPRUNE_MAX_ARRAY_BYTES "
                             "to allow more)" % (what, human(produced), human(cap_array)))


def check_expansion(what, produced, stored, kind_of_bytes="decoded", in_memory=True):
    """Refuse ``produced`` bytes decoded from ``stored`` bytes of a file beyond the expansion cap (and, when
    they are all to be held ``in_memory``, the array cap)."""
    produced = int(produced)
    cap_array = limit("array")
    if in_memory and produced > cap_array:
        raise EdgepruneError("%s would need %s in memory, over the %s limit (raise EDGEPRUNE_MAX_ARRAY_BYTES "
                             "to allow more)" % (what, human(produced), human(cap_array)))
    ratio = limit("expansion")
    allowed = int(stored) * ratio + SLACK
    if produced > allowed:
        raise EdgepruneError("%s would expand %s stored in the file into %s %s, more than %dx "
                             "(a compression or reference bomb? raise EDGEPRUNE_MAX_EXPANSION to allow it)"
                             % (what, human(stored), human(produced), kind_of_bytes, ratio))
