"""MakeHuman proxy-fitting files (``.mhclo``); format in :mod:`synthgen.humans.formats`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .text import _err, read_text

@dataclass(frozen=True, eq=False)
class Mhclo:
    """A MakeHuman proxy-fitting file (``.mhclo``).

    Proxy vertex ``p`` sits at ``sum_k weights[p, k] * base[ref_verts[p, k]] + offsets[p] * s``
    where ``s[a] = |base[v1_a, a] - base[v2_a, a]| / d_a`` for the ``(v1_a, v2_a, d_a)`` of
    ``scales[a]`` (a = x, y, z in the OBJ frame; MakeHuman's ``TMatrix.getMatrix``), or 1 where the
    file gives no scale.

    Attributes:
        path: the file read.
        name, uuid, obj_file, material: header values (``obj_file`` and ``material`` relative to the
            file's folder; ``material`` may be ``None``).
        z_depth: MakeHuman's render-order / masking depth (50 when absent, as MakeHuman does).
        tags: ``tag`` values.
        license, author, homepage: header values or ``None``.
        scales: ``(x, y, z)``, each ``(v1, v2, distance)`` or ``None``.
        ref_verts: (P, 3) int32 base vertex indices (single-vertex form: ``(v, v, v)``).
        weights: (P, 3) float32 (single-vertex form: ``(1, 0, 0)``).
        offsets: (P, 3) float32 offsets (file units, OBJ frame; zero in the single-vertex form).
        delete_verts: sorted unique int32 base vertex indices hidden by this proxy.
        vertexboneweights_file: optional custom-weights file name (not used here).
        extra: other ``key -> [values]`` header lines, kept for reference.
    """

    path: str
    name: str
    uuid: str | None
    obj_file: str
    material: str | None
    z_depth: int
    tags: tuple[str, ...]
    license: str | None
    author: str | None
    homepage: str | None
    scales: tuple[tuple[int, int, float] | None, tuple[int, int, float] | None, tuple[int, int, float] | None]
    ref_verts: np.ndarray
    weights: np.ndarray
    offsets: np.ndarray
    delete_verts: np.ndarray
    vertexboneweights_file: str | None = None
    extra: dict[str, list[str]] = field(default_factory=dict)

    def scale_matrix(self, base_verts: np.ndarray) -> np.ndarray:
        """(3,) float64 per-axis offset scale measured on ``base_verts`` (OBJ frame, see class doc)."""
        s = np.ones(3)
        for a, sc in enumerate(self.scales):
            if sc is not None:
                v1, v2, d = sc
                s[a] = abs(base_verts[v1, a] - base_verts[v2, a]) / d
        return s

    def fit(self, base_verts: np.ndarray) -> np.ndarray:
        """(P, 3) float64 proxy vertex positions fitted to ``base_verts`` ((N, 3), OBJ frame)."""
        b = np.asarray(base_verts, dtype=np.float64)
        pos = np.einsum("pk,pkc->pc", self.weights.astype(np.float64), b[self.ref_verts])
        return pos + self.offsets.astype(np.float64) * self.scale_matrix(b)


_MHCLO_INT_KEYS = {"z_depth", "max_pole", "version"}


_MHCLO_TEXT_KEYS = ("name", "uuid", "obj_file", "material", "license", "author", "homepage",
                    "vertexboneweights_file", "basemesh", "description")


@dataclass
class _MhcloLines:
    """What :func:`read_mhclo` has read so far; ``status`` is the section numbers belong to
    (``verts``, ``delete`` or ``None``)."""

    hdr: dict[str, Any] = field(default_factory=lambda: {"tags": [], "extra": {}})
    scales: list[Any] = field(default_factory=lambda: [None, None, None])
    refs: list[tuple[int, int, int]] = field(default_factory=list)
    wts: list[tuple[float, float, float]] = field(default_factory=list)
    offs: list[tuple[float, float, float]] = field(default_factory=list)
    delete: list[int] = field(default_factory=list)
    status: str | None = None


def _binding(words: list[str], st: _MhcloLines) -> None:
    """One ``verts`` line: ``v`` or ``v1 v2 v3 w1 w2 w3 [dx dy dz]``."""
    if len(words) == 1:
        vi = int(words[0])
        st.refs.append((vi, vi, vi))
        st.wts.append((1.0, 0.0, 0.0))
        st.offs.append((0.0, 0.0, 0.0))
    elif len(words) in (6, 9):
        st.refs.append((int(words[0]), int(words[1]), int(words[2])))
        st.wts.append((float(words[3]), float(words[4]), float(words[5])))
        st.offs.append(tuple(float(x) for x in words[6:9]) if len(words) == 9 else (0.0, 0.0, 0.0))
    else:
        raise ValueError(f"vertex line needs 1, 6 or 9 numbers, got {len(words)}")


def _delete_indices(words: list[str], delete: list[int]) -> None:
    """One ``delete_verts`` line: indices and inclusive ranges ``a - b``, appended to ``delete``."""
    seq = False
    v0 = None
    for w in words:
        if w == "-":
            if v0 is None:
                raise ValueError("range without a start")
            seq = True
            continue
        v1 = int(w)
        if seq:
            if v1 < v0:
                raise ValueError(f"descending range {v0} - {v1}")
            delete.extend(range(v0 + 1, v1 + 1))
            seq = False
        else:
            delete.append(v1)
        v0 = v1
    if seq:
        raise ValueError("range without an end")


def _mhclo_line(words: list[str], st: _MhcloLines) -> None:
    """Apply one non-comment line; ``ValueError`` says what is wrong with it."""
    key = words[0]
    if key == "verts":
        st.status = "verts"
    elif key == "delete_verts":
        st.status = "delete"
    elif key in ("x_scale", "y_scale", "z_scale"):
        if len(words) != 4:
            raise ValueError("expected 'x_scale v1 v2 distance'")
        d = float(words[3])
        if d == 0:
            raise ValueError("scale reference distance is 0")
        st.scales["xyz".index(key[0])] = (int(words[1]), int(words[2]), d)
    elif key == "tag":
        st.hdr["tags"].append(" ".join(words[1:]))
    elif key in _MHCLO_TEXT_KEYS:
        st.hdr[key] = " ".join(words[1:])
    elif key in _MHCLO_INT_KEYS:
        st.hdr[key] = int(words[1])
    elif key[0].isdigit() or key[0] == "-":
        if st.status == "verts":
            _binding(words, st)
        elif st.status == "delete":
            _delete_indices(words, st.delete)
        else:
            raise ValueError("numbers outside a 'verts' or 'delete_verts' section")
    else:
        st.hdr["extra"].setdefault(key, []).append(" ".join(words[1:]))


def read_mhclo(path: str | os.PathLike) -> Mhclo:
    """Read a ``.mhclo`` file (see :class:`Mhclo` and the module docstring).

    Raises:
        ValueError: malformed header value, vertex line or ``delete_verts`` entry, a missing
            ``obj_file``, or a zero scale distance, naming file and line.
    """
    path = os.fspath(path)
    text = read_text(path)
    st = _MhcloLines()
    for lineno, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        try:
            _mhclo_line(words, st)
        except ValueError as exc:
            raise _err(path, lineno, f"{exc} in {line.strip()[:80]!r}") from None
    hdr = st.hdr
    if "obj_file" not in hdr:
        raise _err(path, 0, "no obj_file line")
    if not st.refs:
        raise _err(path, 0, "no vertex bindings (missing 'verts 0' section)")
    ref = np.asarray(st.refs, dtype=np.int32)
    if ref.min() < 0:
        raise _err(path, 0, "negative base vertex index in the verts section")
    return Mhclo(path=path, name=hdr.get("name", os.path.basename(path).split(".")[0]), uuid=hdr.get("uuid"),
                 obj_file=hdr["obj_file"], material=hdr.get("material"), z_depth=int(hdr.get("z_depth", 50)),
                 tags=tuple(hdr["tags"]), license=hdr.get("license"), author=hdr.get("author"),
                 homepage=hdr.get("homepage"), scales=tuple(st.scales), ref_verts=ref,
                 weights=np.asarray(st.wts, dtype=np.float32), offsets=np.asarray(st.offs, dtype=np.float32),
                 delete_verts=np.unique(np.asarray(st.delete, dtype=np.int32)),
                 vertexboneweights_file=hdr.get("vertexboneweights_file"), extra=hdr["extra"])
