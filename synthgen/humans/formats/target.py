"""MakeHuman morph targets (``.target``, ``.target.gz``); format in :mod:`synthgen.humans.formats`."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .text import _COMMENT_LINE_B, _DATA_LINE, _decimal_tokens, _err, _numbers, read_bytes

@dataclass(frozen=True, eq=False)
class Target:
    """A MakeHuman morph target: ``verts[indices] += weight * deltas``.

    Attributes:
        path: the file read.
        indices: (K,) int32 base-mesh vertex indices.
        deltas: (K, 3) float32 offsets, file units (decimetres, OBJ frame).
    """

    path: str
    indices: np.ndarray
    deltas: np.ndarray


def read_target(path: str | os.PathLike) -> Target:
    """Read a ``.target`` or ``.target.gz`` file: lines ``index dx dy dz``, ``#`` comments.

    Raises:
        ValueError: a data line without exactly 4 numbers or with a negative index, naming file
            and line.
    """
    path = os.fspath(path)
    raw = read_bytes(path)
    body = _COMMENT_LINE_B.sub(b"", raw)
    ok = False
    parsed = _decimal_tokens(body)
    if parsed is not None:
        a, starts = parsed
        nl = np.nonzero(np.frombuffer(body, np.uint8) == 10)[0]
        per_line = np.bincount(np.searchsorted(nl, starts), minlength=len(nl) + 1)
        ok = bool(np.all((per_line == 0) | (per_line == 4)))
    else:
        a = _numbers(body.decode("utf-8"))
        ok = a.size == 4 * len(_DATA_LINE.findall(body.decode("utf-8")))
    if ok:
        a = a.reshape(-1, 4)
        idx = a[:, 0]
        ok = not idx.size or (idx.min() >= 0 and np.all(idx == np.round(idx)))
    if not ok:
        text = raw.decode("utf-8", errors="replace")  # slow path: find the offending line
        for n, line in enumerate(text.splitlines(), 1):
            st = line.strip()
            if not st or st.startswith("#"):
                continue
            parts = st.split()
            try:
                if len(parts) != 4:
                    raise ValueError
                i = int(parts[0])
                [float(x) for x in parts[1:]]
                if i < 0:
                    raise ValueError
            except ValueError:
                raise _err(path, n, f"expected 'index dx dy dz' with index >= 0, got {st!r}") from None
        raise _err(path, 0, "malformed target")  # pragma: no cover
    return Target(path=path, indices=a[:, 0].astype(np.int32), deltas=a[:, 1:].astype(np.float32))
