"""Build a posed-at-rest, metric, rigged human as plain numpy arrays (no bpy).

Pipeline of :func:`build_human`:

1. **Morph** (OBJ frame, decimetres): ``v = base + sum_i w_i target_i`` with the macro weights of
   :func:`synthgen.humans.macro.macro_target_weights` (helpers are morphed too: proxies and the
   rig are fitted to them).
2. **Proxies** (OBJ frame): each ``.mhclo`` binding gives
   ``p = sum_k w_k v[i_k] + offset * s``, ``s_a = |v[a1, a] - v[a2, a]| / d_a`` per OBJ axis
   (MakeHuman's ``proxy.py``). Body faces touching a vertex in any worn proxy's ``delete_verts``
   are dropped (MakeHuman hides them so skin cannot poke through).
3. **Rig** (OBJ frame): MPFB2's ``rig.default.json`` places each bone end by strategy ``CUBE``
   (mean of the vertices of joint-cube group ``cube_name``), ``VERTEX`` (one vertex) or ``MEAN``
   (mean of two vertices), exactly as MPFB's ``Rig._get_best_location_from_strategy`` /
   ``build_basemesh_position_info``. Roll is the file's (Blender edit-bone roll, radians).
4. **World frame** (all of the above): ``(x, y, z)_obj -> (x, -z, y)`` (what Blender's OBJ importer
   does: +Z up, the figure faces -Y), times 0.1 (decimetres -> metres), then uniform scale ``k``
   so that the body height (highest minus lowest *body* vertex, helpers excluded) equals
   ``identity.phenotype.height_m``, then a translation centring the body's bounding box on
   x = y = 0 with its lowest vertex on z = 0; finally everything is lifted so that the lowest point
   of all meshes (the shoe soles when shoes are worn) is on z = 0.
5. **Skin weights**: ``weights.default.json`` for the body; a proxy vertex inherits
   ``sum_k w_k W[i_k]`` over its three bound base vertices (binding weights clipped at 0 and
   renormalised; bone weights below 1e-4 dropped, rows renormalised; MakeHuman's
   ``Proxy.getVertexWeights`` with the same threshold).

Conventions of the returned :class:`HumanModel`: metres, world frame above (+Z up, facing -Y,
standing on z = 0, centred on x = y = 0); vertex arrays float32 (N, 3); faces as Blender-style
flat corner lists (``face_sizes`` (F,) int32, ``face_verts`` (L,) int32) with per-corner UVs
``loop_uvs`` (L, 2) float32 (OBJ convention: v up, origin bottom-left).
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

from . import assets
from .identity import Identity
from .macro import MacroSliders, macro_target_weights
from .model import HumanModel, MaterialDesc, MeshPart, Rig

__all__ = ["HumanModel", "MaterialDesc", "MeshPart", "Rig", "build_human", "morph", "OBJ_TO_WORLD"]

OBJ_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # (x, y, z) -> (x, -z, y)
DECIMETRE = 0.1
WEIGHT_THRESHOLD = 1e-4
HAIR_ROUGHNESS = 0.4
CORNEA_IOR = 1.376
EYELASH_ALBEDO = (0.012, 0.010, 0.009)


# ---------------------------------------------------------------------------------------- helpers
def morph(sliders: MacroSliders) -> np.ndarray:
    """(19158, 3) float64 morphed base mesh (OBJ frame, decimetres), helpers included."""
    base = assets.base_mesh().obj.verts
    v = base.copy()
    for name, w in macro_target_weights(sliders).items():
        t = assets.target(name)
        np.add.at(v, t.indices, w * t.deltas.astype(np.float64))
    return v


def _groups_from_dense(W: np.ndarray, names: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for j, n in enumerate(names):
        idx = np.nonzero(W[:, j] > 0)[0]
        if idx.size:
            out[n] = (idx.astype(np.int32), W[idx, j].astype(np.float32))
    return out


def _normalise_rows(W: np.ndarray) -> np.ndarray:
    W = np.where(W < WEIGHT_THRESHOLD, 0.0, W)
    s = W.sum(1, keepdims=True)
    return np.divide(W, s, out=np.zeros_like(W), where=s > 0)


@lru_cache(maxsize=None)
def _proxy_static(name: str):
    """Topology-only data of a proxy (cached): faces, loop UVs, clipped binding weights."""
    lp = assets.load_proxy(name)
    m = lp.mesh
    loop_uvs = np.zeros((len(m.face_verts), 2), np.float32)
    has = m.face_uvs >= 0
    loop_uvs[has] = m.uvs[m.face_uvs[has]]
    bw = np.clip(lp.mhclo.weights.astype(np.float64), 0.0, None)
    s = bw.sum(1, keepdims=True)
    bw = np.divide(bw, s, out=np.full_like(bw, 1.0 / 3.0), where=s > 0)
    return lp, loop_uvs, bw


@lru_cache(maxsize=1)
def _body_static():
    bm = assets.base_mesh()
    o = bm.obj
    fmask = bm.body_faces
    cmask = np.repeat(fmask, o.face_sizes)
    face_sizes = o.face_sizes[fmask]
    face_verts = o.face_verts[cmask]
    uvi = o.face_uvs[cmask]
    loop_uvs = np.where(uvi[:, None] >= 0, o.uvs[np.maximum(uvi, 0)], 0.0).astype(np.float32)
    return face_sizes, face_verts, loop_uvs


def _transform(p: np.ndarray, A: np.ndarray, b: np.ndarray) -> np.ndarray:
    return p @ A.T + b


def _rig_positions(v: np.ndarray) -> tuple[list[str], list, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rd = assets.rig_definition()
    bm = assets.base_mesh()
    cubes: dict[str, np.ndarray] = {}

    def loc(e: dict, bone: str) -> np.ndarray:
        s = e["strategy"]
        if s == "CUBE":
            n = e["cube_name"]
            if n not in cubes:
                if n not in bm.joint_groups:
                    raise ValueError(f"rig bone {bone}: unknown joint cube {n!r}")
                cubes[n] = v[bm.joint_groups[n]].mean(0)
            return cubes[n]
        if s == "VERTEX":
            return v[int(e["vertex_index"])]
        if s == "MEAN":
            i = e["vertex_indices"]
            return (v[int(i[0])] + v[int(i[1])]) / 2.0
        if s == "XYZ":
            i = e["vertex_indices"]
            return np.array([v[int(i[0])][0], v[int(i[1])][1], v[int(i[2])][2]])
        raise ValueError(f"rig bone {bone}: unknown placement strategy {s!r}")

    # parents before children
    order: list[str] = []
    seen: set[str] = set()

    def visit(n: str) -> None:
        if n in seen:
            return
        p = rd[n].get("parent") or None
        if p:
            visit(p)
        seen.add(n)
        order.append(n)

    for n in sorted(rd):
        visit(n)
    heads = np.array([loc(rd[n]["head"], n) for n in order])
    tails = np.array([loc(rd[n]["tail"], n) for n in order])
    rolls = np.array([float(rd[n].get("roll", 0.0)) for n in order], np.float32)
    conn = np.array([bool(rd[n].get("use_connect", False)) for n in order])
    parents = [rd[n].get("parent") or None for n in order]
    return order, parents, heads, tails, rolls, conn


def _hair_material(name: str, lp: assets.LoadedProxy, tint) -> MaterialDesc:
    return MaterialDesc(name=name, kind="hair", base_color=tuple(float(c) for c in tint),
                        diffuse_texture=lp.texture("diffuse_texture"),
                        texture_mean_luminance=assets.TEXTURE_MEAN_LUMINANCE[lp.asset.name],
                        alpha_cut=True, roughness=HAIR_ROUGHNESS, source=lp.mhmat.path if lp.mhmat else None)


def _proxy_materials(kind: str, lp: assets.LoadedProxy, ident: Identity, loop_uvs: np.ndarray,
                     face_sizes: np.ndarray) -> tuple[tuple[MaterialDesc, ...], np.ndarray]:
    nf = len(face_sizes)
    zeros = np.zeros(nf, np.int32)
    if kind == "hair":
        return (_hair_material("hair", lp, ident.hair_colour.albedo_linear),), zeros
    if kind == "eyebrows":
        return (_hair_material("eyebrows", lp, ident.hair_colour.eyebrow_albedo_linear),), zeros
    if kind == "eyelashes":
        return (_hair_material("eyelashes", lp, EYELASH_ALBEDO),), zeros
    if kind == "eyes":
        st = np.concatenate([[0], np.cumsum(face_sizes)[:-1]])
        c = np.add.reduceat(loop_uvs.astype(np.float64), st) / face_sizes[:, None]
        u0, v0, u1, v1 = assets.CORNEA_UV_BOX
        cornea = (c[:, 0] >= u0) & (c[:, 0] <= u1) & (c[:, 1] >= v0) & (c[:, 1] <= v1)
        eye = MaterialDesc(name="eyeball", kind="eye", diffuse_texture=assets.data_path(assets.IRIS_TEXTURES[ident.iris]),
                           roughness=0.35, subsurface_weight=0.0,
                           source=assets.IRIS_SOURCE)
        cor = MaterialDesc(name="cornea", kind="cornea", roughness=0.02, ior=CORNEA_IOR)
        return (eye, cor), cornea.astype(np.int32)
    mh = lp.mhmat
    if kind == "teeth":
        return (MaterialDesc(name="teeth", kind="teeth", diffuse_texture=lp.texture("diffuse_texture"),
                             roughness=max(0.25, mh.roughness), source=mh.path),), zeros
    return (MaterialDesc(name=kind, kind="cloth", diffuse_texture=lp.texture("diffuse_texture"),
                         normal_texture=lp.texture("normalmap_texture"),
                         normal_strength=float(mh.normalmap_intensity),
                         base_color=tuple(float(c) for c in mh.diffuse_color),
                         alpha_cut=bool(mh.transparent), roughness=max(0.3, mh.roughness), source=mh.path),), zeros


# ---------------------------------------------------------------------------------------- build
def _world_transform(v_body: np.ndarray, height_m: float) -> tuple[float, np.ndarray, np.ndarray]:
    """``(k, A, b)``: world point ``p @ A.T + b`` of OBJ point ``p`` (step 4 before the floor lift):
    axes swapped, decimetres -> metres, scaled by ``k`` to ``height_m``, bounding box centred on
    x = y = 0 with its lowest vertex on z = 0. ``v_body``: (N, 3) morphed body vertices."""
    q = v_body @ OBJ_TO_WORLD.T * DECIMETRE
    lo, hi = q.min(0), q.max(0)
    extent = float(hi[2] - lo[2])
    k = float(height_m) / extent
    A = k * DECIMETRE * OBJ_TO_WORLD
    b = np.array([-k * (lo[0] + hi[0]) / 2.0, -k * (lo[1] + hi[1]) / 2.0, -k * lo[2]])
    return k, A, b


def _fit_proxies(identity: Identity, v: np.ndarray, A: np.ndarray, b: np.ndarray, W: np.ndarray):
    """Step 2 and the proxies' skin weights: ``({kind: (proxy, world verts before the lift, loop
    UVs, (P, B) weights)}, (V,) bool base vertices hidden by a proxy, floor lift in metres)``."""
    proxies_raw = {}
    deleted = np.zeros(len(v), bool)
    for kind, name in identity.proxy_names().items():
        lp, loop_uvs, bw = _proxy_static(name)
        p = _transform(lp.mhclo.fit(v), A, b)
        Wp = np.einsum("pk,pkb->pb", bw, W[lp.mhclo.ref_verts])
        proxies_raw[kind] = (lp, p, loop_uvs, _normalise_rows(Wp))
        deleted[lp.mhclo.delete_verts[lp.mhclo.delete_verts < len(v)]] = True
    lift = 0.0
    for _, p, _, _ in proxies_raw.values():
        lift = max(lift, -float(p[:, 2].min()))
    return proxies_raw, deleted, lift


def _body_part(identity: Identity, body_verts: np.ndarray, deleted: np.ndarray, Wb: np.ndarray,
               names_w: tuple[str, ...]) -> tuple[MeshPart, int]:
    """The skin mesh without the faces touching ``deleted`` vertices, and how many faces were dropped."""
    face_sizes, face_verts, loop_uvs = _body_static()
    fdel = np.add.reduceat(deleted[face_verts].astype(np.int32), np.concatenate([[0], np.cumsum(face_sizes)[:-1]])) > 0
    keep_c = np.repeat(~fdel, face_sizes)
    s = identity.skin
    skin_mat = MaterialDesc(name="skin", kind="skin", base_color=s.albedo_linear,
                            detail_texture=assets.data_path(assets.SKIN_DETAIL_TEXTURE),
                            detail_strength=s.detail_strength, roughness=s.roughness,
                            subsurface_weight=s.subsurface_weight, subsurface_radius_m=s.subsurface_radius_m,
                            source="synthgen.humans.skin (melanin/blood model)")
    body = MeshPart(name="body", asset="hm08", verts=body_verts.astype(np.float32),
                    face_sizes=face_sizes[~fdel].copy(), face_verts=face_verts[keep_c].copy(),
                    loop_uvs=loop_uvs[keep_c].copy(), face_material=np.zeros(int((~fdel).sum()), np.int32),
                    materials=(skin_mat,), vertex_groups=_groups_from_dense(Wb, names_w),
                    base_index=np.arange(len(body_verts), dtype=np.int32))
    return body, int(fdel.sum())


def _proxy_parts(identity: Identity, proxies_raw: dict, lift: float, names_w: tuple[str, ...]) -> dict[str, MeshPart]:
    proxies = {}
    for kind, (lp, p, luv, Wp) in proxies_raw.items():
        m = lp.mesh
        mats, fmat = _proxy_materials(kind, lp, identity, luv, m.face_sizes)
        proxies[kind] = MeshPart(name=kind, asset=lp.asset.name, verts=(p + np.array([0.0, 0.0, lift])).astype(np.float32),
                                 face_sizes=m.face_sizes, face_verts=m.face_verts, loop_uvs=luv, face_material=fmat,
                                 materials=mats, vertex_groups=_groups_from_dense(Wp.astype(np.float32), names_w))
    return proxies


def _rig(v: np.ndarray, A: np.ndarray, b: np.ndarray) -> Rig:
    order, parents, heads, tails, rolls, conn = _rig_positions(v)
    return Rig(names=tuple(order), parents=tuple(parents), heads=_transform(heads, A, b).astype(np.float32),
               tails=_transform(tails, A, b).astype(np.float32), rolls=rolls, use_connect=conn)


def _landmarks(v: np.ndarray, bv: np.ndarray, Wb: np.ndarray, names_w: tuple[str, ...], A: np.ndarray,
               b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World head top, head centre and eye centre (see :class:`HumanModel`); ``bv``: body world verts."""
    bm = assets.base_mesh()
    top = bv[int(np.argmax(bv[:, 2]))]
    hj = names_w.index("head")
    head_verts = bv[Wb[:, hj] > 0.5]
    head_centre = head_verts.mean(0) if len(head_verts) else top
    eyes = [v[bm.joint_groups[g]].mean(0) for g in ("joint-l-eye", "joint-r-eye")]
    eye_centre = _transform((eyes[0] + eyes[1]) / 2.0, A, b)
    return top, head_centre, eye_centre


def build_human(identity: Identity) -> HumanModel:
    """Build ``identity`` (see the module docstring for every step, units and frames).

    The first call in a process parses the vendored files (cached afterwards).

    Raises:
        ValueError: malformed vendored data or a phenotype out of range.
        KeyError: an unknown asset name in the identity.
    """
    t0 = time.perf_counter()
    nb = assets.base_mesh().n_body
    v = morph(identity.phenotype.sliders())
    k, A, b = _world_transform(v[:nb], identity.phenotype.height_m)
    names_w, W = assets.skin_weights()
    proxies_raw, deleted, lift = _fit_proxies(identity, v, A, b, W)
    b = b + np.array([0.0, 0.0, lift])
    body_verts = _transform(v[:nb], A, b)
    Wb = W[:nb]
    body, n_removed = _body_part(identity, body_verts, deleted, Wb, names_w)
    proxies = _proxy_parts(identity, proxies_raw, lift, names_w)
    rig = _rig(v, A, b)
    top, head_centre, eye_centre = _landmarks(v, body_verts, Wb, names_w, A, b)
    allv = np.concatenate([body.verts] + [pp.verts for pp in proxies.values()])
    height = float(body_verts[:, 2].max() - body_verts[:, 2].min())
    return HumanModel(identity=identity, body=body, proxies=proxies, rig=rig, scale=k, height_m=height,
                      floor_lift_m=lift, head_top_m=top.astype(np.float64), head_centre_m=head_centre.astype(np.float64),
                      eye_centre_m=eye_centre.astype(np.float64), bbox_min_m=allv.min(0).astype(np.float64),
                      bbox_max_m=allv.max(0).astype(np.float64), seconds=time.perf_counter() - t0,
                      info={"n_targets": len(macro_target_weights(identity.phenotype.sliders())),
                            "body_faces_removed": n_removed})
