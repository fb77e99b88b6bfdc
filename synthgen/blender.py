"""Everything that touches Blender (``bpy``) lives here; the rest of synthgen never imports bpy.

:class:`BlenderRenderer` keeps one Blender scene alive between samples: a camera, a world whose
environment texture is an HDRI, and at most one imported scan under an empty ``subject_root``.
It re-imports only when the scan changes and keeps loaded HDRI images cached.

World axes are Blender's: Z up, metres after scan normalisation; the subject stands on z = 0,
centred on x = y = 0, facing -Y.

Render read-back: Cycles writes one multilayer float32 EXR (Combined RGBA, Depth Z, Environment;
Diffuse Color and Glossy Color only when asked for, see :meth:`BlenderRenderer.render`)
to a private temporary folder, which is read back with the ``OpenEXR`` package. The film is always
transparent so that the Combined alpha is the anti-aliased subject coverage; for a visible HDRI
background the Environment pass (the background radiance weighted by background coverage) is added
back onto the premultiplied Combined colour. The Z pass in Cycles is planar depth written from the
first sample only (not anti-aliased); background reads 1e10 and is stored as 0.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .camera import CV_TO_BLENDER
from .config import ScanAsset, UNIT_TO_METRES
from .exr import read_exr

log = logging.getLogger("synthgen.blender")

NEUTRAL_ALBEDO = (0.5, 0.5, 0.5, 1.0)
BACKGROUND_Z = 1e9  # Cycles writes 1e10 for background; anything beyond this is treated as background


class GpuUnavailableError(RuntimeError):
    """``render.device: gpu`` but Blender finds no device of the configured backend."""


class ScanImportError(RuntimeError):
    """A scan file could not be imported or holds no mesh; the message names the file."""


@contextlib.contextmanager
def _quiet_stdout():
    """Silence Blender's C-level progress output (``Fra: ...``) on fd 1 for the duration."""
    try:
        fd = os.dup(1)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(fd, 1)
            os.close(fd)


def _frame_range(action) -> tuple[int, int]:
    """Inclusive integer frame range of an action (its keyframe range rounded to whole frames)."""
    first, last = action.frame_range
    return int(round(first)), int(round(last))


def _pose_actions_of(arm) -> list[Any]:
    """Actions of an armature (active and NLA strips) that animate at least one pose bone, by name."""
    ad = arm.animation_data
    if ad is None:
        return []
    acts = {a for a in [ad.action, *(s.action for t in ad.nla_tracks for s in t.strips)] if a is not None}
    keep = [a for a in acts if any(fc.data_path.startswith("pose.bones[") for fc in a.fcurves)]
    for a in keep:
        a.use_fake_user = True  # unassigned but kept until the scan is cleared
    return sorted(keep, key=lambda a: a.name)


def _cause(exc: BaseException, limit: int = 2000) -> str:
    """The real cause of a Blender operator error: its message lines without Blender's trailing
    ``Location: .../bpy/ops.py:N`` pointer (which is all the last line holds), at most ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("Location:")]
    text = " | ".join(lines) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:limit]


def blender_version() -> str:
    import bpy

    return bpy.app.version_string


class BlenderRenderer:
    """A persistent Blender scene for rendering samples. Not thread-safe; one per process.

    Args:
        threads: Cycles CPU threads.
    """

    def __init__(self, threads: int = 1, device: str = "cpu", gpu_backend: str = "optix"):
        import bpy

        self.bpy = bpy
        with _quiet_stdout():
            bpy.ops.wm.read_factory_settings(use_empty=True)
        self.scene = bpy.context.scene
        self.threads = threads
        self.device = device
        self.gpu_devices: list[str] = []
        if device == "gpu":
            self.gpu_devices = self._enable_gpu(gpu_backend)
        self._tmpdir = tempfile.TemporaryDirectory(prefix="synthgen-blender-")
        self._hdri_images: dict[str, Any] = {}
        self.scan_info: dict[str, Any] | None = None
        self._cache_key: tuple | None = None
        self._scan_objects: list[Any] = []
        self._pose_actions: list[tuple[Any, Any]] = []
        self._area_lights: list[Any] = []
        self._motion_blur_state: dict[str, Any] | None = None
        self._setup_scene()

    # ------------------------------------------------------------------ scene
    def _setup_scene(self) -> None:
        bpy, sc = self.bpy, self.scene
        sc.render.engine = "CYCLES"
        sc.cycles.device = "GPU" if self.gpu_devices else "CPU"
        sc.render.threads_mode = "FIXED"
        sc.render.threads = self.threads
        sc.render.film_transparent = True
        sc.render.resolution_percentage = 100
        sc.render.pixel_aspect_x = sc.render.pixel_aspect_y = 1.0
        sc.cycles.use_animated_seed = False
        sc.view_settings.view_transform = "Standard"
        vl = sc.view_layers[0]
        vl.use_pass_z = True
        vl.use_pass_environment = True
        settings = sc.render.image_settings
        settings.file_format = "OPEN_EXR_MULTILAYER"
        settings.color_depth = "32"
        settings.exr_codec = "ZIP"
        cam_data = bpy.data.cameras.new("synthgen_camera")
        cam_data.sensor_fit = "HORIZONTAL"
        cam_data.clip_start = 0.01
        cam_data.clip_end = 1000.0
        self.camera = bpy.data.objects.new("synthgen_camera", cam_data)
        sc.collection.objects.link(self.camera)
        sc.camera = self.camera
        world = bpy.data.worlds.new("synthgen_world")
        world.use_nodes = True
        sc.world = world
        nt = world.node_tree
        nt.nodes.clear()
        coord = nt.nodes.new("ShaderNodeTexCoord")
        self._mapping = nt.nodes.new("ShaderNodeMapping")
        self._env = nt.nodes.new("ShaderNodeTexEnvironment")
        self._background = nt.nodes.new("ShaderNodeBackground")
        out = nt.nodes.new("ShaderNodeOutputWorld")
        nt.links.new(coord.outputs["Generated"], self._mapping.inputs["Vector"])
        nt.links.new(self._mapping.outputs["Vector"], self._env.inputs["Vector"])
        nt.links.new(self._env.outputs["Color"], self._background.inputs["Color"])
        nt.links.new(self._background.outputs["Background"], out.inputs["Surface"])

    def _enable_gpu(self, backend: str) -> list[str]:
        """Make Cycles render on the GPUs of ``backend`` (optix | cuda) that this process can see (a
        Ray GPU worker sees only its own through ``CUDA_VISIBLE_DEVICES``). Returns their names.

        Raises:
            GpuUnavailableError: Blender finds no device of that backend.
        """
        prefs = self.bpy.context.preferences.addons["cycles"].preferences
        kind = backend.upper()
        try:
            prefs.compute_device_type = kind
            prefs.refresh_devices()
        except (TypeError, ValueError, RuntimeError) as exc:
            raise GpuUnavailableError(f"render.gpu_backend: {backend}: Blender's Cycles cannot use it here "
                                      f"({exc})") from exc
        found = [d for d in prefs.devices if d.type == kind]
        if not found:
            raise GpuUnavailableError(
                f"render.device: gpu with gpu_backend {backend}: Blender found no {kind} device "
                f"(found: {sorted({d.type for d in prefs.devices})}); check the NVIDIA driver and "
                "CUDA_VISIBLE_DEVICES, or use render.device: cpu")
        for d in prefs.devices:
            d.use = d.type == kind
        return [d.name for d in found]

    # ------------------------------------------------------------------ scans
    def clear_scan(self) -> None:
        """Remove the current scan and purge orphaned data blocks (meshes, materials, images)."""
        bpy = self.bpy
        for obj in self._scan_objects:
            with contextlib.suppress(ReferenceError):
                bpy.data.objects.remove(obj, do_unlink=True)
        self._scan_objects = []
        for _, action in self._pose_actions:
            with contextlib.suppress(ReferenceError):
                bpy.data.actions.remove(action)
        self._pose_actions = []
        self.scan_info = None
        self._cache_key = None
        bpy.data.orphans_purge(do_local_ids=True, do_linked_ids=True, do_recursive=True)

    def _import(self, path: str) -> list[Any]:
        bpy = self.bpy
        before = set(bpy.data.objects)
        ext = Path(path).suffix.lower()
        try:
            with _quiet_stdout():
                if ext in (".glb", ".gltf"):
                    res = bpy.ops.import_scene.gltf(filepath=path)
                elif ext == ".fbx":
                    res = bpy.ops.import_scene.fbx(filepath=path)
                elif ext == ".obj":
                    res = bpy.ops.wm.obj_import(filepath=path)
                elif ext == ".ply":
                    res = bpy.ops.wm.ply_import(filepath=path)
                else:
                    raise ScanImportError(f"{path}: unsupported scan format {ext!r}")
        except ScanImportError:
            raise
        except Exception as exc:
            self._remove_new_objects(before)
            raise ScanImportError(f"{path}: Blender could not import the scan: {_cause(exc)}") from exc
        new = [o for o in bpy.data.objects if o not in before]
        if "FINISHED" not in res:
            self._remove_new_objects(before)
            raise ScanImportError(f"{path}: Blender importer returned {res}")
        return new

    def _remove_new_objects(self, before: set) -> None:
        """Remove objects a failed import left behind (they would show up in later renders)."""
        bpy = self.bpy
        for o in [o for o in bpy.data.objects if o not in before]:
            with contextlib.suppress(ReferenceError, RuntimeError):
                bpy.data.objects.remove(o, do_unlink=True)
        bpy.data.orphans_purge(do_local_ids=True, do_linked_ids=True, do_recursive=True)

    def load_scan(self, asset: ScanAsset, rest_pose: bool = False, appearance: bool = False,
                  keep_animation: bool = False) -> dict[str, Any]:
        """Import ``asset`` (unless it is already loaded), normalise it to metres and place it.

        The scan is scaled uniformly so that its vertical extent equals ``size.height_m`` (or by
        ``size.unit`` / ``size.scale``), then translated so that its bounding box is centred on
        x = y = 0 with its lowest point at z = 0.

        Args:
            rest_pose: remove the rigs' animation and measure the scan in its rest pose.
            appearance: insert the appearance nodes (see :meth:`set_appearance`).
            keep_animation: with ``rest_pose``, keep the rigs' pose actions (unassigned, so the
                rest pose is still what is measured) for ``set_pose`` with an ``animation_phase``.

        Returns:
            dict with ``id``, ``scale_applied`` (file units -> metres), ``bbox_min_m``/``bbox_max_m``
            (world, after placement), ``target_head_m`` and ``target_center_m`` (world points),
            ``head_region_height_m``, ``num_vertices``, ``warnings`` (list of str), ``armatures``
            and ``animations`` (``[{"armature", "action", "frame_range": [first, last]}]``, integer
            frames, only with ``keep_animation``).

        Raises:
            ScanImportError: the import fails or yields no mesh.
        """
        cache_key = (asset.id, rest_pose, appearance, keep_animation and rest_pose)
        if self.scan_info is not None and self._cache_key == cache_key:
            return self.scan_info
        bpy = self.bpy
        self.clear_scan()
        new = self._import(asset.path)
        warnings: list[str] = []
        import fnmatch

        drop = [o for o in new if o.type in ("CAMERA", "LIGHT")  # they would change the render
                or any(fnmatch.fnmatch(o.name.lower(), pat.lower()) for pat in asset.exclude_objects)]
        new = [o for o in new if o not in drop]
        for o in drop:
            for ch in o.children:
                ch.parent = o.parent
            bpy.data.objects.remove(o, do_unlink=True)
        meshes = [o for o in new if o.type == "MESH" and not o.hide_render]
        if not meshes:
            for o in new:
                bpy.data.objects.remove(o, do_unlink=True)
            raise ScanImportError(f"{asset.path}: the file contains no renderable mesh")
        root = bpy.data.objects.new(f"subject_root_{asset.id}", None)
        self.scene.collection.objects.link(root)
        # pivot at the world origin: subject yaw rotates the (x = y = 0 centred) subject in place
        pivot = bpy.data.objects.new(f"subject_pivot_{asset.id}", None)
        self.scene.collection.objects.link(pivot)
        root.parent = pivot
        for o in new:
            if o.parent is None:
                o.parent = root
        self._scan_objects = new + [root, pivot]
        self._pivot = pivot
        self._meshes = meshes
        self._armatures = [o for o in new if o.type == "ARMATURE"]
        for o in new:  # frozen in a motion-blur pass: only the camera moves (see set_motion_blur)
            o.cycles.use_motion_blur = False
        if rest_pose:
            for arm in self._armatures:
                if keep_animation:
                    self._pose_actions += [(arm, a) for a in _pose_actions_of(arm)]
                arm.animation_data_clear()
                for pb in arm.pose.bones:
                    pb.matrix_basis.identity()
            bpy.context.view_layer.update()
        warnings += self._setup_materials(asset, meshes)
        self._hsv_nodes, self._bsdfs, self._skin_bsdfs = [], [], []
        if appearance:
            self._setup_appearance(meshes)

        verts = self.mesh_vertices_world()
        lo, hi = verts.min(0), verts.max(0)
        if asset.size.height_m is not None:
            extent = float(hi[2] - lo[2])
            if extent <= 0:
                raise ScanImportError(f"{asset.path}: scan has zero height; cannot scale to height_m")
            scale = asset.size.height_m / extent
        elif asset.size.unit is not None:
            scale = UNIT_TO_METRES[asset.size.unit]
        else:
            scale = float(asset.size.scale)
        root.scale = (scale, scale, scale)
        root.location = (-scale * (lo[0] + hi[0]) / 2, -scale * (lo[1] + hi[1]) / 2, -scale * lo[2])
        bpy.context.view_layer.update()
        verts = self.mesh_vertices_world()
        lo, hi = verts.min(0), verts.max(0)
        head_h = min(asset.head_height_m, float(hi[2] - lo[2]))
        head = verts[verts[:, 2] >= hi[2] - head_h]
        hlo, hhi = head.min(0), head.max(0)
        self.scan_info = {
            "id": asset.id,
            "scale_applied": float(scale),
            "bbox_min_m": lo.tolist(),
            "bbox_max_m": hi.tolist(),
            "target_head_m": [float((hlo[0] + hhi[0]) / 2), float((hlo[1] + hhi[1]) / 2), float(hi[2] - head_h / 2)],
            "target_center_m": ((lo + hi) / 2).tolist(),
            "head_region_height_m": float(head_h),
            "num_vertices": int(len(verts)),
            "warnings": warnings,
            "armatures": [a.name for a in self._armatures],
            "animations": [{"armature": arm.name, "action": act.name, "frame_range": list(_frame_range(act))}
                           for arm, act in self._pose_actions],
        }
        self._cache_key = cache_key
        self._rest_armature_world = {a.name: np.array(a.matrix_world) for a in self._armatures}
        for w in warnings:
            log.warning("%s", w)
        return self.scan_info

    def mesh_vertices_world(self) -> np.ndarray:
        """(N, 3) float64 world-space vertices of the loaded scan (evaluated: modifiers, armature)."""
        dg = self.bpy.context.evaluated_depsgraph_get()
        out = []
        for o in self._meshes:
            ev = o.evaluated_get(dg)
            me = ev.to_mesh()
            co = np.empty(len(me.vertices) * 3, dtype=np.float64)
            me.vertices.foreach_get("co", co)
            ev.to_mesh_clear()
            m = np.array(ev.matrix_world)
            out.append(co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3])
        return np.concatenate(out) if out else np.zeros((0, 3))

    def _neutral_material(self):
        bpy = self.bpy
        mat = bpy.data.materials.get("synthgen_neutral") or bpy.data.materials.new("synthgen_neutral")
        mat.use_nodes = True
        bsdf = mat.node_tree.nodes.get("Principled BSDF")
        bsdf.inputs["Base Color"].default_value = NEUTRAL_ALBEDO
        bsdf.inputs["Roughness"].default_value = 0.5
        return mat

    def _load_image(self, path: str, colorspace: str):
        img = self.bpy.data.images.load(path, check_existing=True)
        img.colorspace_settings.name = colorspace
        if img.size[0] == 0:
            raise OSError("image has no pixels")
        return img

    def _config_material(self, asset: ScanAsset, warnings: list[str]):
        """Material from the config: albedo texture or constant base colour, optional normal map."""
        bpy = self.bpy
        img = None
        if asset.texture:
            try:
                if not os.path.isfile(asset.texture):
                    raise FileNotFoundError("file not found")
                img = self._load_image(asset.texture, "sRGB")
            except Exception as exc:
                warnings.append(f"scan {asset.id}: texture {asset.texture} unusable ({exc}); using a neutral material")
                return self._neutral_material()
        mat = bpy.data.materials.new(f"synthgen_{asset.id}")
        mat.use_nodes = True
        nt = mat.node_tree
        bsdf = nt.nodes.get("Principled BSDF")
        if img is not None:
            tex = nt.nodes.new("ShaderNodeTexImage")
            tex.image = img
            nt.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
        else:
            bsdf.inputs["Base Color"].default_value = (*asset.base_color, 1.0)
        bsdf.inputs["Roughness"].default_value = asset.roughness
        if asset.normal_map:
            try:
                nimg = self._load_image(asset.normal_map, "Non-Color")
                ntex = nt.nodes.new("ShaderNodeTexImage")
                ntex.image = nimg
                nmap = nt.nodes.new("ShaderNodeNormalMap")
                nt.links.new(ntex.outputs["Color"], nmap.inputs["Color"])
                nt.links.new(nmap.outputs["Normal"], bsdf.inputs["Normal"])
            except Exception as exc:
                warnings.append(f"scan {asset.id}: normal map {asset.normal_map} unusable ({exc}); ignored")
        return mat

    def _setup_materials(self, asset: ScanAsset, meshes) -> list[str]:
        """Use the texture or base colour named in the config, else the file's materials; a material
        whose image textures are missing is replaced by a neutral one (with a warning)."""
        warnings: list[str] = []
        if asset.texture or asset.base_color:
            mat = self._config_material(asset, warnings)
            for o in meshes:
                o.data.materials.clear()
                o.data.materials.append(mat)
            return warnings
        neutral = None
        for o in meshes:
            if not o.data.materials:
                neutral = neutral or self._neutral_material()
                o.data.materials.append(neutral)
                continue
            for i, mat in enumerate(o.data.materials):
                missing = []
                if mat is not None and mat.use_nodes:
                    for n in mat.node_tree.nodes:
                        if n.type == "TEX_IMAGE":
                            img = n.image
                            if img is None:
                                continue  # node without image: renders as its default, not an error
                            ok = img.packed_file is not None or os.path.isfile(self.bpy.path.abspath(img.filepath))
                            if not ok:
                                missing.append(img.filepath or img.name)
                if mat is None or missing:
                    warnings.append(f"scan {asset.id}: material {getattr(mat, 'name', None)!r} "
                                    f"has missing texture(s) {missing}; using a neutral material")
                    neutral = neutral or self._neutral_material()
                    o.data.materials[i] = neutral
        return warnings

    # ------------------------------------------------------------------ pose
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
    def set_area_lights(self, lights: list[dict[str, Any]], target: list[float]) -> None:
        """Replace the extra area lights: each on a sphere of ``distance_m`` around ``target`` at
        ``azimuth_deg`` (about +Z, 0 = in front of the subject, -Y) and ``elevation_deg``, aimed at
        the target, with ``power_w`` watts, a square of ``size_m`` and a black-body colour of
        ``temperature_k`` kelvin (Blender's Blackbody node)."""
        bpy = self.bpy
        from mathutils import Vector

        for o in self._area_lights:
            data = o.data
            bpy.data.objects.remove(o, do_unlink=True)
            bpy.data.lights.remove(data)
        self._area_lights = []
        for i, L in enumerate(lights):
            data = bpy.data.lights.new(f"synthgen_area_{i}", "AREA")
            data.energy = L["power_w"]
            data.size = L["size_m"]
            data.use_nodes = True
            nt = data.node_tree
            bb = nt.nodes.new("ShaderNodeBlackbody")
            bb.inputs["Temperature"].default_value = L["temperature_k"]
            em = nt.nodes.get("Emission")
            nt.links.new(bb.outputs["Color"], em.inputs["Color"])
            o = bpy.data.objects.new(f"synthgen_area_{i}", data)
            self.scene.collection.objects.link(o)
            az, el = math.radians(L["azimuth_deg"]), math.radians(L["elevation_deg"])
            d = np.array([math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)])
            pos = np.asarray(target, float) + L["distance_m"] * d
            o.location = pos.tolist()
            o.rotation_euler = Vector((-d).tolist()).to_track_quat("-Z", "Y").to_euler()
            self._area_lights.append(o)

    def set_hdri(self, path: str, rotation_deg: float, strength: float) -> None:
        """Light the scene with the equirectangular map at ``path`` rotated about world Z."""
        img = self._hdri_images.get(path)
        if img is None:
            img = self._load_image(path, "Linear Rec.709")
            img.use_fake_user = True  # survives orphans_purge when a scan is swapped
            self._hdri_images[path] = img
        self._env.image = img
        self._mapping.inputs["Rotation"].default_value = (0.0, 0.0, math.radians(rotation_deg))
        self._background.inputs["Strength"].default_value = strength

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

        from .camera import shake_pose

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

    def configure(self, width: int, height: int, samples: int, adaptive_threshold: float,
                  denoise: bool, max_bounces: int, *, diffuse_bounces: int | None = None,
                  glossy_bounces: int | None = None, transmission_bounces: int | None = None,
                  transparent_bounces: int | None = None, env_map_resolution: int = 2048,
                  light_tree: bool = True, denoiser_prepass: str = "albedo_normal",
                  denoiser_prefilter: str = "none", denoiser_quality: str = "high",
                  clamp_indirect: float = 10.0, persistent_data: bool = False) -> None:
        """Set resolution (pixels) and Cycles quality settings.

        ``adaptive_threshold`` 0 switches adaptive sampling off. Bounce limits left at ``None`` keep
        Blender's defaults (diffuse 4, glossy 4, transmission 12, transparent 8); ``max_bounces``
        caps them all. ``env_map_resolution`` > 0 sets the world's importance map to Manual with that
        resolution; 0 keeps Cycles' Automatic (which, with a 1k HDRI, costs about 2 CPU-seconds per
        render to build, against 0.1 s at 1024). ``denoiser_prepass``: none | albedo | albedo_normal
        (the OIDN guiding passes); ``denoiser_prefilter``: accurate | fast | none (how OIDN cleans the
        guiding passes; accurate, Blender's default, runs OIDN on them first, which at 256×256 costs
        about 1.3 CPU-seconds per render here for no PSNR gain on portraits at 64 spp); ``denoiser_quality``: high | balanced | fast; ``clamp_indirect``: maximum
        indirect sample value (0 = no clamp).
        """
        sc = self.scene
        sc.render.resolution_x, sc.render.resolution_y = width, height
        sc.cycles.samples = samples
        sc.cycles.use_adaptive_sampling = adaptive_threshold > 0
        if adaptive_threshold > 0:
            sc.cycles.adaptive_threshold = adaptive_threshold
        sc.cycles.use_denoising = denoise
        if denoise:
            sc.cycles.denoiser = "OPENIMAGEDENOISE"
            sc.cycles.denoising_input_passes = {"none": "RGB", "albedo": "RGB_ALBEDO",
                                                "albedo_normal": "RGB_ALBEDO_NORMAL"}[denoiser_prepass]
            sc.cycles.denoising_prefilter = denoiser_prefilter.upper()
            sc.cycles.denoising_quality = denoiser_quality.upper()
        sc.cycles.sample_clamp_indirect = float(clamp_indirect)
        sc.cycles.max_bounces = max_bounces
        defaults = {"diffuse_bounces": 4, "glossy_bounces": 4, "transmission_bounces": 12, "transparent_max_bounces": 8}
        for attr, val in (("diffuse_bounces", diffuse_bounces), ("glossy_bounces", glossy_bounces),
                          ("transmission_bounces", transmission_bounces),
                          ("transparent_max_bounces", transparent_bounces)):
            setattr(sc.cycles, attr, defaults[attr] if val is None else int(val))
        wc = sc.world.cycles
        if env_map_resolution > 0:
            wc.sampling_method = "MANUAL"
            wc.sample_map_resolution = int(env_map_resolution)
        else:
            wc.sampling_method = "AUTOMATIC"
        sc.cycles.use_light_tree = light_tree
        sc.render.use_persistent_data = persistent_data

    # ------------------------------------------------------------------ render
    def render(self, seed: int, background_visible: bool = True, surface_passes: bool = False) -> dict[str, Any]:
        """Render the current scene.

        Args:
            seed: Cycles seed.
            background_visible: add the HDRI background (Environment pass) to the RGB.
            surface_passes: also render Cycles' Diffuse Color and Glossy Color passes (the colour
                weights of the diffuse and glossy BSDF closures at the first hit: albedo and
                specular reflectance, independent of the lighting). Off by default: the plain render
                is unchanged. Used by the depth-sensor simulation (:mod:`synthgen.depth_sensor`).

        Returns:
            dict with ``rgb`` (H, W, 3) float32 linear RGB (premultiplied over black when the
            background is not visible), ``depth`` (H, W) float32 planar z-depth in metres with 0 for
            background, ``mask`` (H, W) float32 coverage in [0, 1], and ``seconds`` (Cycles wall time).
            With ``surface_passes`` also ``diffuse_color`` and ``glossy_color``: (H, W, 3) float32
            linear RGB in [0, 1], divided by the coverage (the passes average over the pixel's
            samples and background samples add 0; un-premultiplied so a silhouette pixel holds the
            surface's own colour), 0 where the coverage is 0.
        """
        sc = self.scene
        sc.cycles.seed = int(seed)
        vl = sc.view_layers[0]
        vl.use_pass_diffuse_color = bool(surface_passes)
        vl.use_pass_glossy_color = bool(surface_passes)
        path = os.path.join(self._tmpdir.name, "render.exr")
        sc.render.filepath = path
        t0 = time.perf_counter()
        with _quiet_stdout():
            self.bpy.ops.render.render(write_still=True)
        seconds = time.perf_counter() - t0
        ch = read_exr(path)
        pre = "ViewLayer."
        rgb = np.stack([ch[pre + f"Combined.{c}"] for c in "RGB"], axis=-1).astype(np.float32)
        if background_visible:
            rgb += np.stack([ch[pre + f"Env.{c}"] for c in "RGB"], axis=-1)
        mask = np.clip(ch[pre + "Combined.A"].astype(np.float32), 0.0, 1.0)
        z = ch[pre + "Depth.Z"].astype(np.float32)
        depth = np.where(np.isfinite(z) & (z < BACKGROUND_Z), z, 0.0).astype(np.float32)
        os.remove(path)
        out = {"rgb": rgb, "depth": depth, "mask": mask, "seconds": seconds}
        if surface_passes:
            cov = mask[..., None]
            for key, name in (("diffuse_color", "DiffCol"), ("glossy_color", "GlossCol")):
                c = np.stack([ch[pre + f"{name}.{k}"] for k in "RGB"], axis=-1).astype(np.float32)
                with np.errstate(invalid="ignore", divide="ignore"):
                    c = np.where(cov > 1e-4, c / np.maximum(cov, 1e-4), 0.0)
                out[key] = np.clip(np.nan_to_num(c), 0.0, 1.0).astype(np.float32)
        return out
