"""Wavefront OBJ meshes as MakeHuman writes them; format in :mod:`synthgen.humans.formats`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .text import _err, _numbers, read_text


@dataclass(frozen=True, eq=False)
class ObjMesh:
    """A polygon mesh as read from an OBJ file (file units and axes, no conversion).

    Attributes:
        path: the file read.
        verts: (N, 3) float64 vertex positions.
        uvs: (U, 2) float64 texture coordinates (may be empty).
        face_sizes: (F,) int32 corners per face (3, 4, ...).
        face_verts: (L,) int32 0-based vertex index of every face corner, faces concatenated
            (``L = face_sizes.sum()``; face ``f`` starts at ``face_starts[f]``).
        face_uvs: (L,) int32 0-based uv index of every corner, -1 where the face has none.
        face_groups: (F,) int32 index into ``groups`` (the last ``g`` before the face; ``-1``
            before any ``g``).
        groups: group names in order of first appearance.
        face_materials: (F,) int32 index into ``materials`` (``usemtl``; -1 before any).
        materials: material names in order of first appearance.
    """

    path: str
    verts: np.ndarray
    uvs: np.ndarray
    face_sizes: np.ndarray
    face_verts: np.ndarray
    face_uvs: np.ndarray
    face_groups: np.ndarray
    groups: tuple[str, ...]
    face_materials: np.ndarray
    materials: tuple[str, ...]

    @property
    def face_starts(self) -> np.ndarray:
        """(F,) int64 offset of each face's first corner in ``face_verts``."""
        return np.concatenate([[0], np.cumsum(self.face_sizes)[:-1]]).astype(np.int64)

    def faces_in_groups(self, predicate) -> np.ndarray:
        """(F,) bool: faces whose group name satisfies ``predicate(name)``."""
        ok = np.array([bool(predicate(g)) for g in self.groups] + [False], dtype=bool)
        return ok[self.face_groups]  # index -1 -> the trailing False

    def group_vertices(self, name: str) -> np.ndarray:
        """Sorted unique int64 indices of the vertices used by the faces of group ``name``.

        Raises:
            KeyError: no such group.
        """
        if name not in self.groups:
            raise KeyError(f"{self.path}: no group {name!r}")
        gi = self.groups.index(name)
        mask = np.repeat(self.face_groups == gi, self.face_sizes)
        return np.unique(self.face_verts[mask]).astype(np.int64)


@dataclass
class _ObjLines:
    """Statements of an OBJ file sorted by kind, before number parsing.

    ``v`` / ``vt`` / ``f``: the text after the keyword of each ``v`` / ``vt`` / ``f`` line;
    ``v_lines``: line number of each ``v``; ``f_ctx``: ``(line number, vertices so far, uvs so far)``
    of each face (to resolve negative indices); ``fg`` / ``fm``: group / material index per face."""

    v: list[str] = field(default_factory=list)
    vt: list[str] = field(default_factory=list)
    v_lines: list[int] = field(default_factory=list)
    f: list[str] = field(default_factory=list)
    f_ctx: list[tuple[int, int, int]] = field(default_factory=list)
    fg: list[int] = field(default_factory=list)
    fm: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    mats: list[str] = field(default_factory=list)


def _index_of(name: str, names: list[str], index: dict[str, int]) -> int:
    """Index of ``name`` in ``names``, appending it on first sight."""
    if name not in index:
        index[name] = len(names)
        names.append(name)
    return index[name]


def _split_lines(text: str) -> _ObjLines:
    out = _ObjLines()
    gindex: dict[str, int] = {}
    mindex: dict[str, int] = {}
    cur_g = cur_m = -1
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line or line[0] == "#":
            continue
        head = line[:2]
        if head == "v ":
            out.v.append(line[2:])
            out.v_lines.append(lineno)
        elif head == "vt":
            if line[2:3] in (" ", "\t"):
                out.vt.append(line[3:])
        elif head == "f ":
            out.f.append(line[2:])
            out.f_ctx.append((lineno, len(out.v), len(out.vt)))
            out.fg.append(cur_g)
            out.fm.append(cur_m)
        elif head == "g " or line.strip() == "g":
            cur_g = _index_of(line[2:].strip() or "default", out.groups, gindex)
        elif line.startswith("usemtl"):
            cur_m = _index_of(line[6:].strip(), out.mats, mindex)
    return out


def _face_corners(path: str, f_lines: list[str], f_ctx: list[tuple[int, int, int]],
                  sizes: list[int]) -> tuple[np.ndarray | list[int], np.ndarray | list[int]]:
    """0-based vertex and uv index of every corner (uv -1 where absent): vectorised when every face
    line has the same ``a/b/c`` shape with positive indices, else line by line."""
    joined = "\n".join(f_lines)
    if f_lines and "//" not in joined and "-" not in joined:
        k = f_lines[0].split()[0].count("/") + 1
        nums = _numbers(joined.replace("/", " "), dtype=np.int64)
        if k <= 3 and nums.size == k * sum(sizes):
            nums = nums.reshape(-1, k)
            return nums[:, 0] - 1, (nums[:, 1] - 1 if k >= 2 else np.full(len(nums), -1))
    fv: list[int] = []
    ft: list[int] = []
    for fl, (lineno, nv, nt) in zip(f_lines, f_ctx):
        try:
            for p in fl.split():
                sp = p.split("/")
                i = int(sp[0])
                fv.append(i - 1 if i > 0 else nv + i)
                if len(sp) > 1 and sp[1]:
                    t = int(sp[1])
                    ft.append(t - 1 if t > 0 else nt + t)
                else:
                    ft.append(-1)
        except ValueError:
            raise _err(path, lineno, f"bad face corner in {('f ' + fl).strip()!r}") from None
    return fv, ft


def _vertices(path: str, v: list[str], v_lines: list[int]) -> np.ndarray:
    """(N, 3) float64 positions of the ``v`` lines (extra values, e.g. vertex colours, dropped)."""
    verts = _numbers("\n".join(v))
    if verts.size == 3 * len(v):
        return verts.reshape(-1, 3)
    for k, s in enumerate(v):
        try:
            if len(s.split()) < 3:
                raise ValueError
            [float(x) for x in s.split()[:3]]
        except ValueError:
            raise _err(path, v_lines[k], f"bad vertex line {('v ' + s).strip()!r}") from None
    # some vertex lines carry extra values (vertex colours): keep the first three
    return np.array([[float(x) for x in s.split()[:3]] for s in v], dtype=np.float64).reshape(-1, 3)


def _uvs(path: str, vt: list[str]) -> np.ndarray:
    """(U, 2) float64 texture coordinates of the ``vt`` lines."""
    uvs = _numbers("\n".join(vt))
    if uvs.size == 2 * len(vt):
        return uvs.reshape(-1, 2)
    try:
        return np.array([[float(x) for x in s.split()[:2]] for s in vt], dtype=np.float64).reshape(-1, 2)
    except ValueError:
        raise _err(path, 0, "bad vt line") from None


def read_obj(path: str | os.PathLike) -> ObjMesh:
    """Read a Wavefront OBJ file (see module docstring); ``vn``, ``s``, ``o``, ``mtllib`` and
    other statements are ignored.

    Raises:
        ValueError: malformed line or out-of-range index, naming file and line.
    """
    path = os.fspath(path)
    ol = _split_lines(read_text(path))
    sizes = [len(x.split()) for x in ol.f]
    for n, (lineno, _, _) in zip(sizes, ol.f_ctx):
        if n < 3:
            raise _err(path, lineno, f"face with {n} corners (need >= 3)")
    fv, ft = _face_corners(path, ol.f, ol.f_ctx, sizes)
    verts = _vertices(path, ol.v, ol.v_lines)
    uvs = _uvs(path, ol.vt)
    face_verts = np.asarray(fv, dtype=np.int32)
    face_uvs = np.asarray(ft, dtype=np.int32)
    if face_verts.size and (face_verts.min() < 0 or face_verts.max() >= len(verts)):
        bad = int(np.nonzero((face_verts < 0) | (face_verts >= len(verts)))[0][0])
        raise _err(path, 0, f"face corner {bad} references vertex {int(face_verts[bad]) + 1} of {len(verts)}")
    if face_uvs.size and face_uvs.max() >= len(uvs):
        raise _err(path, 0, f"face references uv {int(face_uvs.max()) + 1} of {len(uvs)}")
    return ObjMesh(path=path, verts=verts, uvs=uvs, face_sizes=np.asarray(sizes, dtype=np.int32),
                   face_verts=face_verts, face_uvs=face_uvs, face_groups=np.asarray(ol.fg, dtype=np.int32),
                   groups=tuple(ol.groups), face_materials=np.asarray(ol.fm, dtype=np.int32),
                   materials=tuple(ol.mats))
