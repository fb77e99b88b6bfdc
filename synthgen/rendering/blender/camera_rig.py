"""The Blender camera: pose and intrinsics from OpenCV camera-to-world, depth of field, camera-shake motion blur.
"""

from __future__ import annotations

import logging

import numpy as np

from ...camera import CV_TO_BLENDER
from ...errors import GpuUnavailableError, ScanImportError  # noqa: F401 (re-exported)

log = logging.getLogger("synthgen.blender")

NEUTRAL_ALBEDO = (0.5, 0.5, 0.5, 1.0)
BACKGROUND_Z = 1e9  # Cycles writes 1e10 for background; anything beyond this is treated as background



class CameraMixin:
    """Methods of :class:`synthgen.rendering.blender.BlenderRenderer` (a mixin: it uses the renderer's ``bpy``, ``scene`` and subject state)."""

    def set_camera(self, c2w_cv: np.ndarray, f_mm: float, sensor_width_mm: float) -> None:
        """Place the camera from an OpenCV camera-to-world 4×4 (metres), focal length and sensor width (mm)."""
        from mathutils import Matrix

        self.camera.data.lens = f_mm
        self.camera.data.sensor_width = sensor_width_mm
        self.camera.data.sensor_fit = "HORIZONTAL"
        self.camera.data.shift_x = self.camera.data.shift_y = 0.0
        self.camera.matrix_world = Matrix((np.asarray(c2w_cv) @ CV_TO_BLENDER).tolist())

    def set_dof(self, f_stop: float | None, focus_distance_m: float = 1.0) -> None:
        """Thin-lens depth of field (Cycles) focused at ``focus_distance_m`` along the optical axis
        with aperture ``f_stop`` (diameter = focal length / f-stop); ``None`` switches it off."""
        dof = self.camera.data.dof
        dof.use_dof = f_stop is not None
        if f_stop is not None:
            dof.focus_distance = float(focus_distance_m)
            dof.aperture_fstop = float(f_stop)

    def set_motion_blur(self, c2w_cv: np.ndarray, shutter_s: float, angular_velocity_deg_s: list[float],
                        translation_velocity_m_s: list[float]) -> None:
        """Camera shake for the next render: Cycles motion blur with the exposure centred on the
        camera pose ``c2w_cv`` (OpenCV camera-to-world 4×4, metres), which must be the pose last
        given to :meth:`set_camera`.

        The camera is keyframed (linear interpolation, location + quaternion) at the current
        frame F and F ± 1 with :func:`synthgen.camera.shake_pose` at ``t = 0, ±shutter_s``;
        the shutter is 1 frame centred on F, so the exposure covers ``t`` in
        ``[-shutter_s / 2, +shutter_s / 2]`` (independent of the scene's frame rate). The scan's
        objects do not move (their ``cycles.use_motion_blur`` is off). Undo with
        :meth:`clear_motion_blur` (the renderer is reused for later samples).

        Args:
            shutter_s: exposure time in seconds (> 0).
            angular_velocity_deg_s, translation_velocity_m_s: 3-vectors in the camera's OpenCV
                axes (x right, y down, z forward), deg/s and m/s.
        """
        from mathutils import Matrix

        from ...camera import shake_pose

        bpy, sc, cam = self.bpy, self.scene, self.camera
        self.clear_motion_blur()
        self._motion_blur_state = {"matrix_world": cam.matrix_world.copy(), "rotation_mode": cam.rotation_mode,
                                   "shutter": sc.render.motion_blur_shutter,
                                   "position": sc.render.motion_blur_position}
        f0 = sc.frame_current
        keys = []
        for k in (-1, 0, 1):
            m = shake_pose(c2w_cv, angular_velocity_deg_s, translation_velocity_m_s, k * shutter_s) @ CV_TO_BLENDER
            loc, q, _ = Matrix(m.tolist()).decompose()
            keys.append((f0 + k, loc, q))
        q0 = keys[1][2]
        cam.rotation_mode = "QUATERNION"
        for frame, loc, q in keys:
            if q.dot(q0) < 0:  # same hemisphere, or the interpolation would take the long way round
                q.negate()
            cam.location = loc
            cam.rotation_quaternion = q
            cam.keyframe_insert("location", frame=frame)
            cam.keyframe_insert("rotation_quaternion", frame=frame)
        for fc in cam.animation_data.action.fcurves:
            for kp in fc.keyframe_points:
                kp.interpolation = "LINEAR"
        sc.render.use_motion_blur = True
        sc.render.motion_blur_shutter = 1.0
        sc.render.motion_blur_position = "CENTER"
        bpy.context.view_layer.update()

    def clear_motion_blur(self) -> None:
        """Undo :meth:`set_motion_blur`: motion blur off, the camera's keyframes and action removed,
        its clean pose restored. Does nothing when no motion blur is set."""
        st = self._motion_blur_state
        if st is None:
            return
        bpy, sc, cam = self.bpy, self.scene, self.camera
        sc.render.use_motion_blur = False
        sc.render.motion_blur_shutter = st["shutter"]
        sc.render.motion_blur_position = st["position"]
        ad = cam.animation_data
        action = ad.action if ad is not None else None
        cam.animation_data_clear()
        if action is not None and action.users == 0:
            bpy.data.actions.remove(action)
        cam.rotation_mode = st["rotation_mode"]
        cam.matrix_world = st["matrix_world"]
        self._motion_blur_state = None
        bpy.context.view_layer.update()
