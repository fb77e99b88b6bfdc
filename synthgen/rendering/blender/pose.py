"""Subject variation in Blender: joint rotations on rigs, animation frames, appearance (HSV, roughness, skin tone).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ...errors import GpuUnavailableError, ScanImportError  # noqa: F401 (re-exported)
from .util import _frame_range

log = logging.getLogger("synthgen.blender")

NEUTRAL_ALBEDO = (0.5, 0.5, 0.5, 1.0)
BACKGROUND_Z = 1e9  # Cycles writes 1e10 for background; anything beyond this is treated as background



class PoseMixin:
    """Methods of :class:`synthgen.rendering.blender.BlenderRenderer` (a mixin: it uses the renderer's ``bpy``, ``scene`` and subject state)."""

    def _find_bone(self, patterns: list[str]):
        import fnmatch

        for pat in patterns:
            for arm in self._armatures:
                for pb in arm.pose.bones:
                    if fnmatch.fnmatch(pb.name.lower(), pat.lower()):
                        return arm, pb
        return None, None

    def set_pose(self, joints: list[Any], pose: dict[str, Any]) -> dict[str, Any]:
        """Pose the loaded scan: reset to the rest pose, rotate each joint, then yaw the subject.

        Args:
            joints: :class:`synthgen.config.JointConfig` list (bone patterns); applied parents first.
            pose: ``{"subject_yaw_deg": float, "joints": {name: {"yaw_deg", "pitch_deg", "roll_deg"}}}``.
                A joint rotation ``R = Rz(yaw) Rx(pitch) Ry(roll)`` (body frame: the unrotated
                subject's world frame, +X its left, +Y behind it, +Z up) is applied about the bone's
                head on top of the pose of its parents. With ``"animation_phase": u`` (in [0, 1)),
                the base pose is frame ``floor(u * N)`` of the ``N`` integer frames of the pose
                actions kept by ``load_scan(..., keep_animation=True)`` (their inclusive frame
                ranges laid end to end in name order), evaluated with
                ``Pose.apply_pose_from_action``; the joint rotations are applied on top of it.

        Returns:
            the record section: ``rigged``, ``subject_yaw_deg``, ``joints`` (list of
            ``{"joint", "bone", "yaw_deg", "pitch_deg", "roll_deg"}``) and ``missing`` (joint names
            whose bones the scan lacks); with an ``animation_phase`` also ``animation``
            (``{"armature", "action", "frame", "frame_range", "phase"}``, or ``None`` when the scan
            has no pose animation: rest pose instead) and ``warnings`` (list of str).
        """
        from mathutils import Euler, Matrix

        bpy = self.bpy
        self._pivot.rotation_euler = (0.0, 0.0, 0.0)
        for arm in self._armatures:
            for pb in arm.pose.bones:
                pb.matrix_basis.identity()
        extra: dict[str, Any] = {}
        if "animation_phase" in pose:
            extra = {"animation": self._apply_animation_frame(float(pose["animation_phase"])), "warnings": []}
            if extra["animation"] is None:
                msg = (f"scan {self.scan_info['id'] if self.scan_info else '?'}: pose.source is animation but "
                       "the scan has no pose animation; using the rest pose")
                extra["warnings"].append(msg)
                log.warning("%s", msg)
        bpy.context.view_layer.update()
        done, missing = [], []
        self._head_bone = None
        found = []
        for j in joints:
            arm, pb = self._find_bone(j.bones)
            if pb is None or pose["joints"].get(j.name) is None:
                missing.append(j.name)
            else:
                found.append((len(pb.parent_recursive), j, arm, pb))
        for _, j, arm, pb in sorted(found, key=lambda t: t[0]):  # parents first
            ang = pose["joints"][j.name]
            R = (Euler((0.0, 0.0, math.radians(ang["yaw_deg"]))).to_matrix().to_4x4()
                 @ Euler((math.radians(ang["pitch_deg"]), 0.0, 0.0)).to_matrix().to_4x4()
                 @ Euler((0.0, math.radians(ang["roll_deg"]), 0.0)).to_matrix().to_4x4())
            A = self._pivot.matrix_world.inverted() @ arm.matrix_world  # armature -> body frame
            M = A @ pb.matrix
            h = M.translation.copy()
            T = Matrix.Translation(h)
            pb.matrix = A.inverted() @ (T @ R @ Matrix.Translation(-h) @ M)
            bpy.context.view_layer.update()
            done.append({"joint": j.name, "bone": pb.name, **{k: float(v) for k, v in ang.items()}})
            if j.name == "head":
                self._head_bone = (arm, pb)
        self._pivot.rotation_euler = (0.0, 0.0, math.radians(pose.get("subject_yaw_deg", 0.0)))
        bpy.context.view_layer.update()
        return {"rigged": bool(self._armatures), "subject_yaw_deg": float(pose.get("subject_yaw_deg", 0.0)),
                "joints": done, "missing": missing, **extra}

    def _apply_animation_frame(self, phase: float) -> dict[str, Any] | None:
        """Pose the rig at frame ``floor(phase * N)`` of the kept pose actions' ``N`` integer frames
        (see :meth:`set_pose`); ``None`` when there are none. Bones the action does not animate
        keep their current (rest) pose."""
        ranges = [(arm, act, *_frame_range(act)) for arm, act in self._pose_actions]
        total = sum(last - first + 1 for _, _, first, last in ranges)
        if total == 0:
            return None
        k = min(int(math.floor(phase * total)), total - 1)
        for arm, act, first, last in ranges:
            n = last - first + 1
            if k < n:
                frame = first + k
                arm.pose.apply_pose_from_action(act, evaluation_time=float(frame))
                return {"armature": arm.name, "action": act.name, "frame": frame,
                        "frame_range": [first, last], "phase": phase}
            k -= n
        raise AssertionError("unreachable")

    def posed_point(self, p_rest: list[float]) -> list[float]:
        """Where a world point of the rest-pose scan (e.g. ``target_head_m``) is after :meth:`set_pose`:
        moved rigidly with the posed head bone when there is one, else only by the subject yaw."""
        p = np.append(np.asarray(p_rest, float), 1.0)
        hb = getattr(self, "_head_bone", None)
        if hb is not None:
            arm, pb = hb
            W0 = self._rest_armature_world[arm.name]
            D = np.array(arm.matrix_world) @ np.array(pb.matrix) @ np.linalg.inv(np.array(pb.bone.matrix_local)) @ np.linalg.inv(W0)
        else:
            D = np.array(self._pivot.matrix_world)
        return (D @ p)[:3].tolist()

    # ------------------------------------------------------------------ appearance
    def _setup_appearance(self, meshes) -> None:
        """Insert an HSV node before every Principled BSDF's Base Color; neutral materials
        (no usable texture) become skin (subsurface, colour set by :meth:`set_appearance`)."""
        mats = {m for o in meshes for m in o.data.materials if m is not None and m.use_nodes}
        for mat in mats:
            nt = mat.node_tree
            for bsdf in [n for n in nt.nodes if n.type == "BSDF_PRINCIPLED"]:
                inp = bsdf.inputs["Base Color"]
                hsv = nt.nodes.new("ShaderNodeHueSaturation")
                if inp.is_linked:
                    src = inp.links[0].from_socket
                    nt.links.new(src, hsv.inputs["Color"])
                else:
                    hsv.inputs["Color"].default_value = tuple(inp.default_value)
                nt.links.new(hsv.outputs["Color"], inp)
                self._hsv_nodes.append(hsv)
                self._bsdfs.append(bsdf)
                if mat.name.startswith("synthgen_neutral"):
                    self._skin_bsdfs.append((bsdf, hsv))

    def set_appearance(self, hue: float, saturation: float, value: float, roughness: float,
                       skin_tone_rgb: list[float], subsurface_weight: float) -> dict[str, Any]:
        """Set the HSV shift (Blender HSV node: hue 0.5 = unchanged, saturation/value factors),
        roughness of every material and the skin albedo (linear RGB) of untextured materials.
        Returns the record section (the values and the number of materials touched)."""
        for hsv in self._hsv_nodes:
            hsv.inputs["Hue"].default_value = hue
            hsv.inputs["Saturation"].default_value = saturation
            hsv.inputs["Value"].default_value = value
        for bsdf in self._bsdfs:
            bsdf.inputs["Roughness"].default_value = roughness
        for bsdf, hsv in self._skin_bsdfs:
            hsv.inputs["Color"].default_value = (*skin_tone_rgb, 1.0)
            bsdf.inputs["Subsurface Weight"].default_value = subsurface_weight
            bsdf.inputs["Subsurface Radius"].default_value = (1.0, 0.2, 0.1)
            bsdf.inputs["Subsurface Scale"].default_value = 0.01
        return {"hue": hue, "saturation": saturation, "value": value, "roughness": roughness,
                "skin_material": bool(self._skin_bsdfs), "skin_tone_rgb": list(skin_tone_rgb) if self._skin_bsdfs else None,
                "materials": len(self._bsdfs)}

    # ------------------------------------------------------------------ lighting and camera
