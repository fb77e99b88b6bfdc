"""Lighting: the HDRI world (rotation, strength) and extra area lights.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ...errors import GpuUnavailableError, ScanImportError  # noqa: F401 (re-exported)

log = logging.getLogger("synthgen.blender")

NEUTRAL_ALBEDO = (0.5, 0.5, 0.5, 1.0)
BACKGROUND_Z = 1e9  # Cycles writes 1e10 for background; anything beyond this is treated as background



class LightingMixin:
    """Methods of :class:`synthgen.rendering.blender.BlenderRenderer` (a mixin: it uses the renderer's ``bpy``, ``scene`` and subject state)."""

    def set_area_lights(self, lights: list[dict[str, Any]], target: list[float],
                        lightgroups: list[str] | None = None, power_scales: list[float] | None = None) -> None:
        """Replace the extra area lights: each on a sphere of ``distance_m`` around ``target`` at
        ``azimuth_deg`` (about +Z, 0 = in front of the subject, -Y) and ``elevation_deg``, aimed at
        the target, with ``power_w`` watts, a square of ``size_m`` and a black-body colour of
        ``temperature_k`` kelvin (Blender's Blackbody node). ``lightgroups`` (one name per light)
        puts each light in a Cycles light group and ``power_scales`` multiplies each light's power
        (one-pass relights)."""
        bpy = self.bpy
        from mathutils import Vector

        for o in self._area_lights:
            data = o.data
            bpy.data.objects.remove(o, do_unlink=True)
            bpy.data.lights.remove(data)
        self._area_lights = []
        for i, L in enumerate(lights):
            data = bpy.data.lights.new(f"synthgen_area_{i}", "AREA")
            data.energy = L["power_w"] * (1.0 if power_scales is None else power_scales[i])
            data.size = L["size_m"]
            data.use_nodes = True
            nt = data.node_tree
            bb = nt.nodes.new("ShaderNodeBlackbody")
            bb.inputs["Temperature"].default_value = L["temperature_k"]
            em = nt.nodes.get("Emission")
            nt.links.new(bb.outputs["Color"], em.inputs["Color"])
            o = bpy.data.objects.new(f"synthgen_area_{i}", data)
            if lightgroups is not None:
                o.lightgroup = lightgroups[i]
            self.scene.collection.objects.link(o)
            az, el = math.radians(L["azimuth_deg"]), math.radians(L["elevation_deg"])
            d = np.array([math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)])
            pos = np.asarray(target, float) + L["distance_m"] * d
            o.location = pos.tolist()
            o.rotation_euler = Vector((-d).tolist()).to_track_quat("-Z", "Y").to_euler()
            self._area_lights.append(o)

    def _hdri_image(self, path: str):
        """The HDRI at ``path`` as a Blender image (loaded once, kept across scans)."""
        img = self._hdri_images.get(path)
        if img is None:
            img = self._load_image(path, "Linear Rec.709")
            img.use_fake_user = True  # survives orphans_purge when a scan is swapped
            self._hdri_images[path] = img
        return img

    def set_hdri(self, path: str, rotation_deg: float, strength: float) -> None:
        """Light the scene with the equirectangular map at ``path`` rotated about world Z."""
        self._env.image = self._hdri_image(path)
        self._mapping.inputs["Rotation"].default_value = (0.0, 0.0, math.radians(rotation_deg))
        self._background.inputs["Strength"].default_value = strength
