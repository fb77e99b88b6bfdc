"""One-pass relights: all lighting variants of a view traced in one Cycles pass (issue 16).

Light transport is linear in the emitted light, so one path-traced pass can carry several
lightings at once if each light writes its own pass: Cycles' light groups do that (one
``Combined_<group>`` pass per group). Each distinct HDRI (file and rotation) of the view is one
group, each distinct set of area lights another (:meth:`RelightMixin.relight_plan`).

The world holds one HDRI only: the first HDRI group stays the world (Cycles' importance-sampled
environment, its background from the Environment pass). Every other HDRI becomes a *light dome*:
a closed convex polyhedron around the scene (:func:`.envmap.dome_geometry`), invisible to the
camera and to shadow rays, whose surface emits exactly the HDRI radiance of the direction it is
seen from (Environment Texture at the incoming ray direction, rotated like the world's Mapping
node). A dome is Emission + Transparent BSDF, so rays pass on to the domes behind it.

Importance sampling of a dome: Cycles' light tree weights an emissive triangle by ``area × the
shader's emission estimate``, and a textured emission is estimated as its Strength input alone. The
dome is therefore cut into adaptive cells (:func:`.envmap.quadtree_cells`, finer where the HDRI is
bright, down to its pixels), and only the bright cells are lights (:func:`.envmap.nee_cells`); each
gets one of a few *bucket* materials whose Strength is a power of two near the cell's radiance and
whose colour is the HDRI divided by that Strength, so the emission is unchanged and the light tree
samples cells in proportion to their power. The other cells are reached by BSDF sampling only.

Each group is rendered at a normalised scale (HDRI mean radiance 1) so that Cycles splits its light
samples evenly between the lightings; :meth:`RelightMixin.relight_rgb` scales the group passes back
(exact: light transport is linear).

Denoising: Cycles denoises only Combined, so each group pass is denoised here with OIDN
(:mod:`.oidn`) and the render's Denoising Albedo/Normal, with Cycles' settings. See docs/relight.md.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from .envmap import bucket_strengths, dome_geometry, nee_cells, quadtree_cells

DOME_RADIUS_M = 500.0
"""Radius of the first light dome (metres); each further dome is 1 % larger (no coincident faces)."""
DOME_GRID = (64, 32)
"""Top cells of a light dome in longitude × latitude (5.6° each)."""
DOME_SPLIT = 1024
"""A cell is split in four while it holds more than 1/DOME_SPLIT of the HDRI's power ..."""
DOME_LEVELS = 7
"""... at most this many times ..."""
DOME_MIN_PX = 0.25
"""... and while wider than this many HDRI pixels (a bright pixel's bilinear radiance varies within it)."""
NEE_THRESHOLD = 4.0
"""Cells brighter than this × the median cell are lights (next-event estimation) ..."""
NEE_MAX_CELLS = 1024
"""... at most this many (the brightest) per dome."""
DOME_IMPORTANCE = 0.25
"""Light-tree importance of a dome relative to a world of the same radiance (a dome's triangles are
local lights at the dome's radius: their energy over the distance squared integrates to 4π × the
mean radiance, a world's to π × it)."""
_PIXEL_CACHE_BYTES = 256 * 2**20
"""Memory for HDRI pixels kept between views (least recently used first out; at least one map)."""


class RelightMixin:
    """Methods of :class:`synthgen.rendering.blender.BlenderRenderer` for one-pass relights."""

    def hdri_pixels(self, path: str) -> np.ndarray:
        """The HDRI at ``path`` as float32 (H, W, 3), rows bottom to top (kept in a small LRU cache)."""
        cache: OrderedDict = self._hdri_pixel_cache
        if path in cache:
            cache.move_to_end(path)
            return cache[path]
        img = self._hdri_image(path)
        w, h = img.size
        px = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(px)
        cache[path] = arr = np.ascontiguousarray(px.reshape(h, w, 4)[..., :3])
        while len(cache) > 1 and sum(a.nbytes for a in cache.values()) > _PIXEL_CACHE_BYTES:
            cache.popitem(last=False)
        return arr

    def _dome_material(self, name: str, image, rotation_deg: float, scale: float, strength: float | None):
        """Emission of the HDRI × ``scale`` at the incoming direction + Transparent BSDF; ``strength``
        (the light tree's estimate) makes the material a light, None leaves it to BSDF sampling."""
        bpy = self.bpy
        m = bpy.data.materials.new(name)
        m.use_nodes = True
        nt = m.node_tree
        nt.nodes.clear()
        n = nt.nodes.new
        geo, neg, mp, env = (n("ShaderNodeNewGeometry"), n("ShaderNodeVectorMath"), n("ShaderNodeMapping"),
                             n("ShaderNodeTexEnvironment"))
        mul, em, tr, add, out = (n("ShaderNodeVectorMath"), n("ShaderNodeEmission"), n("ShaderNodeBsdfTransparent"),
                                 n("ShaderNodeAddShader"), n("ShaderNodeOutputMaterial"))
        neg.operation = mul.operation = "SCALE"
        neg.inputs["Scale"].default_value = -1.0  # Incoming points back along the ray
        mp.inputs["Rotation"].default_value = (0.0, 0.0, math.radians(rotation_deg))
        env.image = image
        em.inputs["Strength"].default_value = strength or 1.0
        mul.inputs["Scale"].default_value = scale / (strength or 1.0)
        links = ((geo.outputs["Incoming"], neg.inputs[0]), (neg.outputs["Vector"], mp.inputs["Vector"]),
                 (mp.outputs["Vector"], env.inputs["Vector"]), (env.outputs["Color"], mul.inputs[0]),
                 (mul.outputs["Vector"], em.inputs["Color"]), (em.outputs[0], add.inputs[0]),
                 (tr.outputs[0], add.inputs[1]), (add.outputs[0], out.inputs["Surface"]))
        for a, b in links:
            nt.links.new(a, b)
        m.cycles.emission_sampling = "FRONT" if strength is not None else "NONE"
        return m

    def add_light_dome(self, group: str, path: str, rotation_deg: float, scale: float = 1.0) -> dict[str, Any]:
        """A light dome of the HDRI at ``path`` rotated by ``rotation_deg`` emitting its radiance ×
        ``scale`` in light group ``group``. Returns its statistics (cells, light cells, triangles)."""
        bpy = self.bpy
        cols, rows = DOME_GRID
        pixels = self.hdri_pixels(path)
        cells, means = quadtree_cells(pixels, cols, rows, DOME_SPLIT, DOME_LEVELS, DOME_MIN_PX)
        radius = DOME_RADIUS_M * (1.0 + 0.01 * len(self._domes))
        verts, tris, cell = dome_geometry(cells, cols, rows, radius)
        nee = nee_cells(means, NEE_THRESHOLD, NEE_MAX_CELLS)
        strengths = bucket_strengths(means * scale * DOME_IMPORTANCE)
        levels = np.unique(strengths[nee])
        slot = np.where(nee, np.searchsorted(levels, strengths) + 1, 0)[cell]  # 0: BSDF-only material
        me = bpy.data.meshes.new(f"synthgen_dome_{group}")
        me.from_pydata(verts.tolist(), [], tris.tolist())
        image = self._hdri_image(path)
        me.materials.append(self._dome_material(f"synthgen_dome_{group}", image, rotation_deg, scale, None))
        for k, st in enumerate(levels):
            me.materials.append(self._dome_material(f"synthgen_dome_{group}_{k}", image, rotation_deg, scale, float(st)))
        me.polygons.foreach_set("material_index", slot.astype(np.int32))
        me.update()
        ob = bpy.data.objects.new(f"synthgen_dome_{group}", me)
        ob.rotation_euler = (0.0, 0.0, -math.radians(rotation_deg))  # the cells follow the rotated map
        ob.visible_camera = False
        ob.visible_shadow = False
        ob.lightgroup = group
        self.scene.collection.objects.link(ob)
        self._domes.append(ob)
        return {"cells": int(len(cells)), "light_cells": int(nee.sum()), "triangles": int(len(tris))}

    def clear_relights(self) -> None:
        """Remove the light domes (meshes, materials), the light groups and the world's group."""
        bpy = self.bpy
        for ob in self._domes:
            me = ob.data
            mats = list(me.materials)
            bpy.data.objects.remove(ob, do_unlink=True)
            bpy.data.meshes.remove(me)
            for m in mats:
                bpy.data.materials.remove(m)
        self._domes = []
        vl = self.scene.view_layers[0]
        while len(vl.lightgroups):
            vl.lightgroups.remove(vl.lightgroups[0])
        self.scene.world.lightgroup = ""

    def render_light_groups(self, seed: int, groups: list[str], world_group: str | None,
                            surface_passes: bool = False, denoise: dict[str, str] | None = None,
                            clamp_indirect: float | None = None) -> dict[str, Any]:
        """Render the current scene once, writing one pass per light group.

        Args:
            seed: Cycles seed.
            groups: light group names (domes and lights must already be assigned to them).
            world_group: the group of the world's HDRI, or None for a black world.
            surface_passes: also the Diffuse/Glossy Color passes (as :meth:`render`).
            denoise: ``{"prepass": none|albedo|albedo_normal, "prefilter": ..., "quality": ...}``:
                denoise every group pass with OIDN as Cycles denoises Combined (with the world as the
                only group, Cycles denoises Combined itself); None: no denoising.
            clamp_indirect: Cycles' indirect clamp for this render (None: as configured).

        Returns:
            ``groups`` ({name: (H, W, 3) float32 linear, premultiplied, without background}),
            ``environment`` (the world's background at its strength, weighted by coverage, as the
            Environment pass; zeros without a world group), ``depth``, ``mask``, ``seconds``
            (Cycles), ``denoise_seconds`` (CPU) and, with ``surface_passes``, the colour passes.
        """
        sc = self.scene
        vl = sc.view_layers[0]
        # the world alone (relights differing only in strength): Combined is its pass, rendered and
        # denoised exactly as a separate render
        world_only = world_group is not None and list(groups) == [world_group]
        have = {lg.name for lg in vl.lightgroups}
        for g in ([] if world_only else groups):
            if g not in have:
                vl.lightgroups.add(name=g)
        sc.world.lightgroup = "" if world_only else (world_group or "")
        strength = self._background.inputs["Strength"].default_value
        saved = (sc.cycles.use_denoising, sc.cycles.transparent_max_bounces, sc.cycles.sample_clamp_indirect)
        if world_group is None:
            self._background.inputs["Strength"].default_value = 0.0
        sc.cycles.use_denoising = denoise is not None and world_only
        # every ray leaving the scene crosses each dome, a transparent bounce each
        sc.cycles.transparent_max_bounces = saved[1] + len(self._domes)
        if clamp_indirect is not None:
            sc.cycles.sample_clamp_indirect = float(clamp_indirect)
        vl.cycles.denoising_store_passes = denoise is not None and not world_only
        try:
            out = self._render_read(seed, surface_passes)
        finally:
            self._background.inputs["Strength"].default_value = strength
            sc.cycles.use_denoising, sc.cycles.transparent_max_bounces, sc.cycles.sample_clamp_indirect = saved
            vl.cycles.denoising_store_passes = False
        ch = out.pop("channels")
        pre = "ViewLayer."
        rgb = lambda name: np.stack([ch[f"{pre}{name}.{c}"] for c in "RGB"], -1).astype(np.float32)  # noqa: E731
        env = rgb("Env") if world_group is not None else np.zeros(out["mask"].shape + (3,), np.float32)
        if world_only:
            out.update(groups={world_group: rgb("Combined")}, environment=env, denoise_seconds=0.0)
            return out
        passes = {g: rgb(f"Combined_{g}") for g in groups}
        if world_group is not None:
            passes[world_group] = passes[world_group] - env  # a world group's pass holds its background too
        t0 = time.process_time()
        if denoise is not None:
            passes = self._denoise_passes(passes, ch, denoise)
        out.update(groups=passes, environment=env, denoise_seconds=time.process_time() - t0)
        return out

    def _denoise_passes(self, passes: dict[str, np.ndarray], ch: dict[str, np.ndarray],
                        settings: dict[str, str]) -> dict[str, np.ndarray]:
        from .oidn import Denoiser

        if self._denoiser is None:
            self._denoiser = Denoiser(threads=self.threads)
        pre = "ViewLayer."
        prepass = settings.get("prepass", "albedo_normal")
        albedo = normal = None
        if prepass in ("albedo", "albedo_normal"):
            albedo = np.stack([ch[f"{pre}Denoising Albedo.{c}"] for c in "RGB"], -1)
        if prepass == "albedo_normal":
            normal = np.stack([ch[f"{pre}Denoising Normal.{c}"] for c in "XYZ"], -1)
        prefilter, quality = settings.get("prefilter", "none"), settings.get("quality", "high")
        guides = self._denoiser.guides(albedo, normal, prefilter, quality)
        return {g: self._denoiser.denoise(p, guides, prefilter, quality) for g, p in passes.items()}

    def render_geometry(self, seed: int, surface_passes: bool = False) -> dict[str, Any]:
        """Depth, mask (and colour passes) exactly as a full render with the current Cycles settings
        gives them, at a fraction of its cost: the same camera samples (seed, samples, pixel filter),
        no bounces, no lights, no denoising. Cycles writes depth from the first sample and the mask
        from the camera rays' coverage, neither of which depends on the lighting or on later bounces
        (tests/test_relight.py checks that they are byte-identical). Lights and domes must not be in
        the scene yet. Returns :meth:`_render_read` without ``channels``."""
        sc = self.scene
        strength = self._background.inputs["Strength"].default_value
        saved = (sc.cycles.max_bounces, sc.cycles.use_denoising)
        self._background.inputs["Strength"].default_value = 0.0
        sc.cycles.max_bounces, sc.cycles.use_denoising = 0, False
        try:
            out = self._render_read(seed, surface_passes)
        finally:
            self._background.inputs["Strength"].default_value = strength
            sc.cycles.max_bounces, sc.cycles.use_denoising = saved
        out.pop("channels")
        return out

    # ------------------------------------------------------------------ a view's relights
    def relight_plan(self, lightings: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Light groups of a view's relights (``lightings``: per relight ``path``, ``rotation_deg``,
        ``strength``, ``area_lights`` or None): one per distinct HDRI (file, rotation) -- the first in
        the world (``hdri0``), the others light domes -- and one per distinct set of area lights.
        Render scales: every HDRI group as bright on average as the first relight's HDRI at its
        strength (so Cycles gives every lighting the same share of its light samples, and a view
        with one lighting renders exactly as the first relight's separate render), every area group
        as bright against its HDRI as in a separate render. Returns per relight ``{hdri, area,
        scale, area_scale}``."""
        from .envmap import mean_radiance

        mean = lambda L: max(mean_radiance(self.hdri_pixels(L["path"])), 1e-9)  # noqa: E731
        target = max(lightings[0]["strength"], 1e-9) * mean(lightings[0])
        groups: dict[tuple, tuple[str, float]] = {}
        areas: dict[str, tuple[str, float]] = {}
        plan = []
        for L in lightings:
            hkey = (L["path"], L["rotation_deg"])
            if hkey not in groups:
                groups[hkey] = (f"hdri{len(groups)}", target / mean(L))
            g, scale = groups[hkey]
            akey = repr(L["area_lights"]) if L["area_lights"] else None
            if akey is not None and akey not in areas:
                areas[akey] = (f"area{len(areas)}", scale / max(L["strength"], 1e-9))
            area, area_scale = areas.get(akey, (None, 1.0))
            plan.append({"hdri": g, "area": area, "scale": scale, "area_scale": area_scale})
        return plan

    def set_relight_lights(self, lightings: list[dict[str, Any]], plan: list[dict[str, Any]],
                           target: list[float]) -> list[str]:
        """Put the groups of :meth:`relight_plan` in the scene (``hdri0`` in the world, other HDRIs as
        light domes, area lights around ``target``), each at its render scale. Returns the group names."""
        done: set[str] = set()
        lights, names, scales = [], [], []
        for L, g in zip(lightings, plan):
            if g["hdri"] not in done:
                done.add(g["hdri"])
                if g["hdri"] == "hdri0":
                    self.set_hdri(L["path"], L["rotation_deg"], g["scale"])
                else:
                    self.add_light_dome(g["hdri"], L["path"], L["rotation_deg"], g["scale"])
            if g["area"] and g["area"] not in done:
                done.add(g["area"])
                lights += L["area_lights"]
                names += [g["area"]] * len(L["area_lights"])
                scales += [g["area_scale"]] * len(L["area_lights"])
        if lights:
            self.set_area_lights(lights, target, names, scales)
        return sorted(done)

    def relight_rgb(self, lighting: dict[str, Any], g: dict[str, Any], out: dict[str, Any], K: np.ndarray,
                    c2w: np.ndarray, background: bool, bg_cache: dict[str, np.ndarray]) -> np.ndarray:
        """A relight's linear RGB from :meth:`render_light_groups`' passes, each divided by its render
        scale (exact: light transport is linear): (HDRI group + its background) × strength / scale
        + area group / its scale. A dome's background is its HDRI as the camera (``K``, OpenCV
        ``c2w``) sees it (:func:`.envmap.camera_background`) × the background coverage; the world's is
        the Environment pass. ``bg_cache`` keeps backgrounds by group for the view's other relights."""
        from .envmap import camera_background

        rgb = out["groups"][g["hdri"]]
        if background:
            if g["hdri"] not in bg_cache:
                h, w = out["mask"].shape
                bg_cache[g["hdri"]] = out["environment"] if g["hdri"] == "hdri0" else camera_background(
                    self.hdri_pixels(lighting["path"]), lighting["rotation_deg"], K, c2w, w, h) * (
                    g["scale"] * (1.0 - out["mask"])[..., None])
            rgb = rgb + bg_cache[g["hdri"]]
        rgb = rgb * np.float32(lighting["strength"] / g["scale"])
        if g["area"]:
            rgb = rgb + out["groups"][g["area"]] * np.float32(1.0 / g["area_scale"])
        return rgb.astype(np.float32)
