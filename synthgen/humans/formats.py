"""Readers for MakeHuman's file formats (pure Python + numpy, no bpy).

Every reader accepts a plain file or its gzip-compressed form (a path ending in ``.gz``), because
the vendored data under :mod:`synthgen.humans.data` is stored gzip-compressed. Parse errors raise
``ValueError`` whose message starts with ``"<path>:<line>: "``.

Formats (MakeHuman 1.x, as read by ``makehuman/shared/proxy.py``, ``material.py``,
``files3d.py``/``wavefront.py`` and ``algos3d.py`` of makehumancommunity/makehuman, and by MPFB2):

- Wavefront OBJ (:func:`read_obj`): ``v x y z``, ``vt u v``, ``f a/ta b/tb c/tc [d/td]`` (1-based,
  negative = relative), ``g name`` (face groups), ``usemtl name``. MakeHuman meshes are in
  decimetres with +Y up and the figure facing +Z. The hm08 base mesh puts the body in group
  ``body`` and helper geometry (hidden in renders; used to fit proxies and rigs) in groups
  ``helper-*`` and ``joint-*`` (joint cubes: one small cube per rig joint).
- Target (:func:`read_target`, ``.target``/``.target.gz``): one line per moved vertex,
  ``vertex_index dx dy dz`` (decimetres, OBJ frame); ``#`` starts a comment line.
- Proxy fitting (:func:`read_mhclo`, ``.mhclo``): ``key value`` header lines (``name``, ``uuid``,
  ``obj_file``, ``material``, ``z_depth``, ``x_scale v1 v2 d`` / ``y_scale`` / ``z_scale``,
  ``delete_verts``, ``tag``, ``license``, ``author``...), then after ``verts 0`` one line per proxy
  vertex: either ``v1 v2 v3 w1 w2 w3 [dx dy dz]`` (three base vertices, barycentric weights,
  offset) or a single base-vertex index ``v`` (exact fit: weight 1, offset 0). ``delete_verts``
  is followed by lines of base-vertex indices and ranges ``a - b`` (inclusive). ``#`` lines are
  comments (MakeHuman reads licence info from them).
- Material (:func:`read_mhmat`, ``.mhmat``): ``key value...`` lines, ``#`` or ``//`` comments;
  colours are three floats, booleans ``True``/``False`` (case-insensitive), textures are paths
  relative to the ``.mhmat`` file.
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ObjMesh", "Target", "Mhclo", "Mhmat", "read_obj", "read_target", "read_mhclo", "read_mhmat",
           "read_text", "read_bytes"]


def read_bytes(path: str | os.PathLike) -> bytes:
    """Whole file as bytes; ``*.gz`` files are decompressed.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read (e.g. not valid gzip), naming the file.
    """
    path = os.fspath(path)
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}:0: cannot read: {exc}") from exc


def read_text(path: str | os.PathLike) -> str:
    """Whole file as UTF-8 text; ``*.gz`` files are decompressed.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid UTF-8 (or not valid gzip), naming the file.
    """
    path = os.fspath(path)
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}:0: cannot read: {exc}") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}:0: not UTF-8 text ({exc})") from exc


def _err(path: str, lineno: int, msg: str) -> ValueError:
    return ValueError(f"{path}:{lineno}: {msg}")


_DATA_LINE = re.compile(r"^[ \t]*\S", re.M)
_COMMENT_LINE_B = re.compile(rb"^[ \t]*#[^\n]*", re.M)


_P10 = 10 ** np.arange(19, dtype=np.int64)


def _decimal_tokens(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """Vectorised parser for whitespace-separated plain decimals (``-12.345``, ``.5``, ``7``): returns
    ``(values float64, byte offset of each token)`` or ``None`` when the text holds anything else
    (exponents, stray characters), in which case callers fall back to a general parser. Each value is
    ``integer mantissa / 10**decimals``, a correctly rounded division, hence identical to ``strtod``.
    About twice as fast as ``numpy.fromstring`` on MakeHuman targets."""
    b = np.frombuffer(data, np.uint8)
    if b.size == 0:
        return np.zeros(0), np.zeros(0, np.int64)
    digit = (b >= 48) & (b <= 57)
    dot = b == 46
    minus = b == 45
    tok = b > 32
    if not np.array_equal(tok, digit | dot | minus):
        return None
    edge = np.diff(np.concatenate([[0], tok.view(np.int8), [0]]))
    starts = np.nonzero(edge == 1)[0]
    ends = np.nonzero(edge == -1)[0]
    cd = np.concatenate([[0], np.cumsum(digit)])
    dstart, dend = cd[starts], cd[ends]
    ndig = dend - dstart
    if ndig.size == 0 or ndig.min() == 0 or ndig.max() > 18:
        return None
    di = np.nonzero(digit)[0]
    pos = np.repeat(dend, ndig) - np.arange(1, len(di) + 1)
    val = np.add.reduceat((b[di] - 48).astype(np.int64) * _P10[pos], dstart)
    dec = np.zeros(len(starts), np.int64)
    dpos = np.nonzero(dot)[0]
    if dpos.size:
        t = np.searchsorted(starts, dpos, side="right") - 1
        if np.unique(t).size != t.size:
            return None
        dec[t] = dend[t] - cd[dpos + 1]
    out = val / _P10[dec].astype(np.float64)
    mpos = np.nonzero(minus)[0]
    if mpos.size:
        t = np.searchsorted(starts, mpos, side="right") - 1
        if np.any(starts[t] != mpos):
            return None
        out[t] = -out[t]
    return out, starts


def _numbers(text: str, dtype=np.float64) -> np.ndarray:
    """All whitespace-separated numbers of ``text`` (C parser; stops early on a bad token, which
    callers detect by checking the count)."""
    if not text.strip():
        return np.zeros(0, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.fromstring(text, dtype=dtype, sep=" ")


# ---------------------------------------------------------------------------------------- OBJ
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


def read_obj(path: str | os.PathLike) -> ObjMesh:
    """Read a Wavefront OBJ file (see module docstring); ``vn``, ``s``, ``o``, ``mtllib`` and
    other statements are ignored.

    Raises:
        ValueError: malformed line or out-of-range index, naming file and line.
    """
    path = os.fspath(path)
    text = read_text(path)
    v: list[str] = []
    vt: list[str] = []
    sizes: list[int] = []
    fv: list[int] = []
    ft: list[int] = []
    fg: list[int] = []
    fm: list[int] = []
    groups: list[str] = []
    gindex: dict[str, int] = {}
    mats: list[str] = []
    mindex: dict[str, int] = {}
    cur_g = cur_m = -1
    v_lines: list[int] = []
    f_lines: list[str] = []
    f_ctx: list[tuple[int, int, int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line or line[0] == "#":
            continue
        head = line[:2]
        if head == "v ":
            v.append(line[2:])
            v_lines.append(lineno)
        elif head == "vt":
            if line[2:3] in (" ", "\t"):
                vt.append(line[3:])
        elif head == "f ":
            f_lines.append(line[2:])
            f_ctx.append((lineno, len(v), len(vt)))
            fg.append(cur_g)
            fm.append(cur_m)
        elif head == "g " or line.strip() == "g":
            name = line[2:].strip() or "default"
            if name not in gindex:
                gindex[name] = len(groups)
                groups.append(name)
            cur_g = gindex[name]
        elif line.startswith("usemtl"):
            name = line[6:].strip()
            if name not in mindex:
                mindex[name] = len(mats)
                mats.append(name)
            cur_m = mindex[name]
    sizes = [len(x.split()) for x in f_lines]
    for n, (lineno, _, _) in zip(sizes, f_ctx):
        if n < 3:
            raise _err(path, lineno, f"face with {n} corners (need >= 3)")
    joined = "\n".join(f_lines)
    fast = None
    if f_lines and "//" not in joined and "-" not in joined:
        k = f_lines[0].split()[0].count("/") + 1
        nums = _numbers(joined.replace("/", " "), dtype=np.int64)
        if k <= 3 and nums.size == k * sum(sizes):
            nums = nums.reshape(-1, k)
            fast = (nums[:, 0] - 1, nums[:, 1] - 1 if k >= 2 else np.full(len(nums), -1))
    if fast is not None:
        fv, ft = fast
    else:
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
    verts = _numbers("\n".join(v))
    if verts.size == 3 * len(v):
        verts = verts.reshape(-1, 3)
    else:
        for k, s in enumerate(v):
            try:
                if len(s.split()) < 3:
                    raise ValueError
                [float(x) for x in s.split()[:3]]
            except ValueError:
                raise _err(path, v_lines[k], f"bad vertex line {('v ' + s).strip()!r}") from None
        # some vertex lines carry extra values (vertex colours): keep the first three
        verts = np.array([[float(x) for x in s.split()[:3]] for s in v], dtype=np.float64).reshape(-1, 3)
    uvs = _numbers("\n".join(vt))
    if uvs.size == 2 * len(vt):
        uvs = uvs.reshape(-1, 2)
    else:
        try:
            uvs = np.array([[float(x) for x in s.split()[:2]] for s in vt], dtype=np.float64).reshape(-1, 2)
        except ValueError:
            raise _err(path, 0, "bad vt line") from None
    face_verts = np.asarray(fv, dtype=np.int32)
    face_uvs = np.asarray(ft, dtype=np.int32)
    if face_verts.size and (face_verts.min() < 0 or face_verts.max() >= len(verts)):
        bad = int(np.nonzero((face_verts < 0) | (face_verts >= len(verts)))[0][0])
        raise _err(path, 0, f"face corner {bad} references vertex {int(face_verts[bad]) + 1} of {len(verts)}")
    if face_uvs.size and face_uvs.max() >= len(uvs):
        raise _err(path, 0, f"face references uv {int(face_uvs.max()) + 1} of {len(uvs)}")
    return ObjMesh(path=path, verts=verts, uvs=uvs, face_sizes=np.asarray(sizes, dtype=np.int32),
                   face_verts=face_verts, face_uvs=face_uvs, face_groups=np.asarray(fg, dtype=np.int32),
                   groups=tuple(groups), face_materials=np.asarray(fm, dtype=np.int32), materials=tuple(mats))


# ---------------------------------------------------------------------------------------- target
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


# ---------------------------------------------------------------------------------------- mhclo
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


def read_mhclo(path: str | os.PathLike) -> Mhclo:
    """Read a ``.mhclo`` file (see :class:`Mhclo` and the module docstring).

    Raises:
        ValueError: malformed header value, vertex line or ``delete_verts`` entry, a missing
            ``obj_file``, or a zero scale distance, naming file and line.
    """
    path = os.fspath(path)
    text = read_text(path)
    hdr: dict[str, Any] = {"tags": [], "extra": {}}
    scales: list[Any] = [None, None, None]
    refs: list[tuple[int, int, int]] = []
    wts: list[tuple[float, float, float]] = []
    offs: list[tuple[float, float, float]] = []
    delete: list[int] = []
    status = None
    for lineno, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        key = words[0]
        try:
            if key == "verts":
                status = "verts"
            elif key == "delete_verts":
                status = "delete"
            elif key in ("x_scale", "y_scale", "z_scale"):
                if len(words) != 4:
                    raise ValueError("expected 'x_scale v1 v2 distance'")
                d = float(words[3])
                if d == 0:
                    raise ValueError("scale reference distance is 0")
                scales["xyz".index(key[0])] = (int(words[1]), int(words[2]), d)
            elif key == "tag":
                hdr["tags"].append(" ".join(words[1:]))
            elif key in ("name", "uuid", "obj_file", "material", "license", "author", "homepage",
                         "vertexboneweights_file", "basemesh", "description"):
                hdr[key] = " ".join(words[1:])
            elif key in _MHCLO_INT_KEYS:
                hdr[key] = int(words[1])
            elif key[0].isdigit() or key[0] == "-":
                if status == "verts":
                    if len(words) == 1:
                        vi = int(words[0])
                        refs.append((vi, vi, vi))
                        wts.append((1.0, 0.0, 0.0))
                        offs.append((0.0, 0.0, 0.0))
                    elif len(words) in (6, 9):
                        refs.append((int(words[0]), int(words[1]), int(words[2])))
                        wts.append((float(words[3]), float(words[4]), float(words[5])))
                        offs.append(tuple(float(x) for x in words[6:9]) if len(words) == 9 else (0.0, 0.0, 0.0))
                    else:
                        raise ValueError(f"vertex line needs 1, 6 or 9 numbers, got {len(words)}")
                elif status == "delete":
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
                else:
                    raise ValueError("numbers outside a 'verts' or 'delete_verts' section")
            else:
                hdr["extra"].setdefault(key, []).append(" ".join(words[1:]))
        except ValueError as exc:
            raise _err(path, lineno, f"{exc} in {line.strip()[:80]!r}") from None
    if "obj_file" not in hdr:
        raise _err(path, 0, "no obj_file line")
    if not refs:
        raise _err(path, 0, "no vertex bindings (missing 'verts 0' section)")
    ref = np.asarray(refs, dtype=np.int32)
    if ref.min() < 0:
        raise _err(path, 0, "negative base vertex index in the verts section")
    return Mhclo(path=path, name=hdr.get("name", os.path.basename(path).split(".")[0]), uuid=hdr.get("uuid"),
                 obj_file=hdr["obj_file"], material=hdr.get("material"), z_depth=int(hdr.get("z_depth", 50)),
                 tags=tuple(hdr["tags"]), license=hdr.get("license"), author=hdr.get("author"),
                 homepage=hdr.get("homepage"), scales=tuple(scales), ref_verts=ref,
                 weights=np.asarray(wts, dtype=np.float32), offsets=np.asarray(offs, dtype=np.float32),
                 delete_verts=np.unique(np.asarray(delete, dtype=np.int32)),
                 vertexboneweights_file=hdr.get("vertexboneweights_file"), extra=hdr["extra"])


# ---------------------------------------------------------------------------------------- mhmat
@dataclass(frozen=True, eq=False)
class Mhmat:
    """A MakeHuman material (``.mhmat``). Texture paths are as written (relative to the file).

    Attributes:
        path, name: the file and its ``name``.
        diffuse_color, specular_color: (r, g, b) floats (MakeHuman default 1,1,1 / 1,1,1).
        shininess: 0..1 (MakeHuman default 0.5); :attr:`roughness` is ``1 - shininess`` (the
            MPFB conversion).
        opacity: 0..1 (default 1).
        transparent: ``transparent`` flag: the diffuse texture's alpha cuts the surface.
        alpha_to_coverage, backface_cull: flags (defaults True / True).
        diffuse_texture, normalmap_texture, bump_texture, specular_texture, transparency_texture,
            ao_texture: texture file names or ``None``.
        normalmap_intensity: float (default 1).
        sss_enabled: subsurface flag.
        values: every ``key -> value string`` read, for reference.
    """

    path: str
    name: str
    diffuse_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    specular_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shininess: float = 0.5
    opacity: float = 1.0
    transparent: bool = False
    alpha_to_coverage: bool = True
    backface_cull: bool = True
    diffuse_texture: str | None = None
    normalmap_texture: str | None = None
    bump_texture: str | None = None
    specular_texture: str | None = None
    transparency_texture: str | None = None
    ao_texture: str | None = None
    normalmap_intensity: float = 1.0
    sss_enabled: bool = False
    values: dict[str, str] = field(default_factory=dict)

    @property
    def roughness(self) -> float:
        """``1 - shininess`` clamped to [0, 1] (MPFB's mhmat -> Principled conversion)."""
        return float(min(1.0, max(0.0, 1.0 - self.shininess)))


_MHMAT_COLOURS = {"diffuseColor": "diffuse_color", "specularColor": "specular_color"}
_MHMAT_FLOATS = {"shininess": "shininess", "opacity": "opacity", "normalmapIntensity": "normalmap_intensity"}
_MHMAT_BOOLS = {"transparent": "transparent", "alphaToCoverage": "alpha_to_coverage",
                "backfaceCull": "backface_cull", "sssEnabled": "sss_enabled"}
_MHMAT_TEXTURES = {"diffuseTexture": "diffuse_texture", "normalmapTexture": "normalmap_texture",
                   "bumpTexture": "bump_texture", "specularTexture": "specular_texture",
                   "transparencyTexture": "transparency_texture", "aomapTexture": "ao_texture"}


def read_mhmat(path: str | os.PathLike) -> Mhmat:
    """Read a ``.mhmat`` material file (see :class:`Mhmat`).

    Raises:
        ValueError: a colour without three numbers, a non-numeric float or a boolean other than
            true/false, naming file and line.
    """
    path = os.fspath(path)
    text = read_text(path)
    kw: dict[str, Any] = {}
    values: dict[str, str] = {}
    name = os.path.basename(path).split(".")[0]
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#") or s.startswith("//"):
            continue
        words = s.split(None, 1)
        key, val = words[0], (words[1].strip() if len(words) > 1 else "")
        values[key] = val
        try:
            if key == "name":
                name = val
            elif key in _MHMAT_COLOURS:
                c = [float(x) for x in val.split()]
                if len(c) != 3:
                    raise ValueError(f"{key} needs 3 numbers")
                kw[_MHMAT_COLOURS[key]] = tuple(c)
            elif key in _MHMAT_FLOATS:
                kw[_MHMAT_FLOATS[key]] = float(val)
            elif key in _MHMAT_BOOLS:
                if val.lower() not in ("true", "false"):
                    raise ValueError(f"{key} must be True or False")
                kw[_MHMAT_BOOLS[key]] = val.lower() == "true"
            elif key in _MHMAT_TEXTURES:
                kw[_MHMAT_TEXTURES[key]] = val or None
        except ValueError as exc:
            raise _err(path, lineno, f"{exc}: {s[:80]!r}") from None
    return Mhmat(path=path, name=name, values=values, **kw)
