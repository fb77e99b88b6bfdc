"""The records of a built human: :class:`HumanModel` with its :class:`MeshPart` meshes,
:class:`MaterialDesc` shading descriptions and :class:`Rig` (numpy only, no bpy).

Units and frames are those of :mod:`synthgen.humans.build` (metres; +Z up, facing -Y, standing on
z = 0); :func:`synthgen.humans.build.build_human` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .identity import Identity


@dataclass(frozen=True)
class MaterialDesc:
    """How a renderer should shade a mesh part (units: linear-sRGB colours, metres).

    Attributes:
        name: unique material name within the human.
        kind: ``skin`` | ``hair`` (alpha-textured cards: hair, eyebrows, eyelashes) | ``eye``
            (eyeball with iris texture) | ``cornea`` (clear glossy shell) | ``teeth`` | ``cloth``.
        base_color: linear-sRGB colour; for textured hair it is the tint multiplying the texture's
            normalised luminance (``lum / texture_mean_luminance``), for skin the albedo modulated by
            the detail map, else a constant multiplier of the diffuse texture (1, 1, 1).
        diffuse_texture: absolute path of the colour texture (sRGB PNG) or ``None``.
        normal_texture: absolute path of a tangent-space normal map or ``None``.
        detail_texture: skin only: grey detail map (0.5 = mean tone) or ``None``.
        detail_strength: 0..1 mix of the detail map.
        texture_mean_luminance: mean linear luminance of the diffuse texture where alpha > 0.5
            (hair only; used to normalise the tint).
        alpha_cut: the diffuse texture's alpha is coverage (transparent where 0).
        roughness: Principled roughness.
        normal_strength: normal map strength.
        subsurface_weight, subsurface_radius_m: Principled subsurface (radius per RGB, metres).
        ior: index of refraction (cornea).
        source: the ``.mhmat`` (or other file) the values come from.
    """

    name: str
    kind: str
    base_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    diffuse_texture: str | None = None
    normal_texture: str | None = None
    detail_texture: str | None = None
    detail_strength: float = 0.0
    texture_mean_luminance: float | None = None
    alpha_cut: bool = False
    roughness: float = 0.5
    normal_strength: float = 1.0
    subsurface_weight: float = 0.0
    subsurface_radius_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ior: float = 1.45
    source: str | None = None


@dataclass(frozen=True, eq=False)
class MeshPart:
    """One mesh of a human.

    Attributes:
        name: ``body`` or the proxy kind (``eyes``, ``eyebrows``, ``eyelashes``, ``teeth``, ``hair``,
            ``top``, ``shoes``).
        asset: asset name (``hm08`` for the body).
        verts: (N, 3) float32 world positions, metres.
        face_sizes: (F,) int32 corners per face (3 or 4).
        face_verts: (L,) int32 vertex index per corner (faces concatenated).
        loop_uvs: (L, 2) float32 UV per corner.
        face_material: (F,) int32 index into ``materials``.
        materials: material descriptions.
        vertex_groups: ``{bone name: (indices (K,) int32, weights (K,) float32)}``; every vertex's
            weights sum to 1 (within float error).
        base_index: body only: (N,) int32 base-mesh vertex index of each vertex (``arange``).
    """

    name: str
    asset: str
    verts: np.ndarray
    face_sizes: np.ndarray
    face_verts: np.ndarray
    loop_uvs: np.ndarray
    face_material: np.ndarray
    materials: tuple[MaterialDesc, ...]
    vertex_groups: dict[str, tuple[np.ndarray, np.ndarray]]
    base_index: np.ndarray | None = None

    @property
    def face_starts(self) -> np.ndarray:
        """(F,) int64 offset of each face's first corner in ``face_verts``."""
        return np.concatenate([[0], np.cumsum(self.face_sizes)[:-1]]).astype(np.int64)

    def faces_as_lists(self) -> list[list[int]]:
        """Faces as Python lists of vertex indices (slow; for small meshes and tests)."""
        st = self.face_starts
        return [self.face_verts[s:s + n].tolist() for s, n in zip(st, self.face_sizes)]

    def used_vertices(self) -> np.ndarray:
        """Sorted unique int64 indices of the vertices referenced by faces."""
        return np.unique(self.face_verts).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Rig:
    """Armature in the world frame (metres).

    Attributes:
        names: bone names (MPFB2 default rig, 163 bones), parents before children.
        parents: parent name per bone (``None`` for the root).
        heads, tails: (B, 3) float32 bone ends.
        rolls: (B,) float32 Blender edit-bone roll, radians.
        use_connect: (B,) bool.
    """

    names: tuple[str, ...]
    parents: tuple[str | None, ...]
    heads: np.ndarray
    tails: np.ndarray
    rolls: np.ndarray
    use_connect: np.ndarray

    def index(self, name: str) -> int:
        return self.names.index(name)


@dataclass(frozen=True, eq=False)
class HumanModel:
    """A built human (see module docstring for units and frames).

    Attributes:
        identity: what was built.
        body: the skin mesh (all 13 380 hm08 body vertices; faces hidden by clothes removed).
        proxies: ``{kind: MeshPart}`` for the worn proxies.
        rig: the armature.
        scale: uniform factor applied after the decimetre -> metre conversion.
        height_m: measured body height (equals the phenotype's).
        floor_lift_m: how far everything was raised so the lowest point (shoe soles) is on z = 0.
        head_top_m, head_centre_m, eye_centre_m: (3,) float64 world points: highest body vertex,
            mean of body vertices mostly weighted to the ``head`` bone, mid-point of the eye joints.
        bbox_min_m, bbox_max_m: (3,) float64 bounds of all meshes.
        seconds: build time.
    """

    identity: Identity
    body: MeshPart
    proxies: dict[str, MeshPart]
    rig: Rig
    scale: float
    height_m: float
    floor_lift_m: float
    head_top_m: np.ndarray
    head_centre_m: np.ndarray
    eye_centre_m: np.ndarray
    bbox_min_m: np.ndarray
    bbox_max_m: np.ndarray
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def parts(self) -> list[MeshPart]:
        """Body then proxies."""
        return [self.body, *self.proxies.values()]
