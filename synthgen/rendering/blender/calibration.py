"""The depth-sensor calibration scene (walls of known albedo, a floor and table at grazing incidence, a
metal sphere), rendered with :class:`synthgen.rendering.blender.BlenderRenderer` to fit the sensor model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ..depth_sensor import surface_from_passes
from ..sensor_fit import CALIBRATION_STRIP_ALBEDOS


def render_calibration(renderer, width: int = 320, height: int = 240, surface_passes: bool = True) -> dict[str, Any]:
    """Render a room-like calibration scene with ``renderer`` (:class:`synthgen.blender.BlenderRenderer`;
    removes its scan), seen by a camera with a Kinect-like 58° horizontal field of view:

    - a back wall at 4.5 m made of coplanar strips 0.9 m wide of diffuse albedo
      :data:`CALIBRATION_STRIP_ALBEDOS` (left to right, centred) inside a grey (0.5) wall;
    - a grey floor 1.2 m below the camera (incidence about 50–75°), and a low grey table top 0.3 m
      below the camera on the right, seen at grazing incidence (about 75–86°);
    - a polished metal sphere (radius 0.35 m at 1.5 m: specular) and a white diffuse box at 2.5 m.

    Returns:
        dict with ``depth`` (H, W) float32 planar depth (m, 0 = none), ``K`` (3×3), and with
        ``surface_passes`` also ``albedo`` and ``specularity`` ((H, W) float32, see
        :func:`surface_from_passes`) and ``strips`` ((H, W) int8: index of the wall strip, -1 elsewhere).
    """
    from ...camera import intrinsics, look_at

    bpy = renderer.bpy
    renderer.clear_scan()

    def drop():
        for o in list(bpy.data.objects):
            if o.name.startswith("calib_"):
                mesh = o.data
                bpy.data.objects.remove(o, do_unlink=True)
                if mesh is not None and mesh.users == 0:
                    bpy.data.meshes.remove(mesh)
        for m in list(bpy.data.materials):
            if m.name.startswith("calib_"):
                bpy.data.materials.remove(m)

    def material(name, colour, roughness=0.5, metallic=0.0):
        m = bpy.data.materials.new(f"calib_{name}")
        m.use_nodes = True
        b = m.node_tree.nodes["Principled BSDF"]
        b.inputs["Base Color"].default_value = (*colour, 1.0)
        b.inputs["Roughness"].default_value = roughness
        b.inputs["Metallic"].default_value = metallic
        return m

    drop()
    renderer.configure(width, height, samples=1, adaptive_threshold=0, denoise=False, max_bounces=0)
    x0, strip_w = _build_scene(bpy, material)
    c2w = look_at(np.array([0.0, -0.3, 0.0]), np.array([0.0, 1.0, -0.3]))
    f_mm = 36.0 / (2 * np.tan(np.radians(58.0) / 2))
    renderer.set_camera(c2w, f_mm, 36.0)
    try:
        out = renderer.render(seed=1, background_visible=False, surface_passes=surface_passes)
    finally:
        drop()
    K = intrinsics(f_mm, 36.0, width, height)
    res: dict[str, Any] = {"depth": out["depth"], "K": K}
    if surface_passes:
        res["albedo"], res["specularity"] = surface_from_passes(out["diffuse_color"], out["glossy_color"])
        # strip index from the back-projected wall points (plane y = 4.5 in world)
        H, W = out["depth"].shape
        v, u = np.mgrid[0:H, 0:W].astype(np.float64)
        z = out["depth"].astype(np.float64)
        Pc = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z, np.ones_like(z)], -1)
        Pw = Pc @ c2w.T
        on_wall = (z > 0) & (np.abs(Pw[..., 1] - 4.5) < 0.02)
        idx = np.floor((Pw[..., 0] - x0) / strip_w).astype(int)
        res["strips"] = np.where(on_wall & (idx >= 0) & (idx < len(CALIBRATION_STRIP_ALBEDOS)), idx, -1).astype(np.int8)
    return res


def _build_scene(bpy, material) -> tuple[float, float]:
    """Add the calibration scene's objects (named ``calib_*``); returns the wall strips' left edge
    ``x0`` and width (metres)."""
    grey = material("grey", (0.5, 0.5, 0.5))
    n_strips = len(CALIBRATION_STRIP_ALBEDOS)
    strip_w = 0.9
    x0 = -strip_w * n_strips / 2
    adds = [  # (operator, kwargs, material, smooth)
        (bpy.ops.mesh.primitive_plane_add, dict(size=1, location=(0, 0, -1.2), scale=(30, 30, 1)), grey, False),
        (bpy.ops.mesh.primitive_plane_add, dict(size=1, location=(1.6, 2.45, -0.3), scale=(2.0, 3.5, 1)), grey, False),
        (bpy.ops.mesh.primitive_uv_sphere_add, dict(radius=0.35, location=(-0.4, 1.5, -0.2), segments=64, ring_count=32),
         material("metal", (0.9, 0.9, 0.9), roughness=0.1, metallic=1.0), True),
        (bpy.ops.mesh.primitive_cube_add, dict(size=0.6, location=(0.7, 2.5, 0.25), rotation=(0.3, 0.2, 0.6)),
         material("white", (0.8, 0.8, 0.8)), False),
    ]
    # back wall: grey left and right parts plus the albedo strips, all in the plane y = 4.5
    wall = [(-15.0, x0, grey)] + [(x0 + i * strip_w, x0 + (i + 1) * strip_w, material(f"strip{i}", (a, a, a)))
                                  for i, a in enumerate(CALIBRATION_STRIP_ALBEDOS)] + [(-x0, 15.0, grey)]
    for lo, hi, mat in wall:
        adds.append((bpy.ops.mesh.primitive_plane_add,
                     dict(size=1, location=((lo + hi) / 2, 4.5, 3.0), rotation=(np.pi / 2, 0, 0), scale=(hi - lo, 30, 1)),
                     mat, False))
    for i, (op, kw, mat, smooth) in enumerate(adds):
        scale = kw.pop("scale", None)  # the operators' own scale argument is ignored in background mode
        op(**kw)
        o = bpy.context.active_object
        o.name = f"calib_{i}"
        if scale is not None:
            o.scale = scale
        o.data.materials.append(mat)
        if smooth:
            bpy.ops.object.shade_smooth()
    return x0, strip_w
