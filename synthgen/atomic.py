"""Atomic file writes: write to a temporary file in the target folder, fsync, then ``os.replace``.

An interrupted writer therefore never leaves a half-written file under the final name; at worst a
``.tmp-*`` file remains, which readers ignore (its name does not follow the sample naming rule).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

TMP_PREFIX = ".tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file keeps the final suffix (some writers pick the format from it). On an
    exception the temporary file is removed and the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file ordinary permissions
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted UTF-8 JSON to ``path`` atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})
"""Errors of the storage itself (full, over quota, failing, read-only): retrying a sample cannot help."""


def is_storage_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a storage error: an ``OSError`` with
    an errno in :data:`STORAGE_ERRNOS`, or another error whose message carries that errno's text
    (the OpenEXR library raises ``RuntimeError("... No space left on device.")``)."""
    texts = [os.strerror(e) for e in STORAGE_ERRNOS]
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            return True
        if any(t in str(exc) for t in texts):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
