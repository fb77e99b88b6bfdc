"""Loading a scan into the Blender scene: import, clean-up, metric scale and placement, materials.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import GpuUnavailableError, ScanImportError  # noqa: F401 (re-exported)
from ..config import UNIT_TO_METRES, ScanAsset
from ..subject import SubjectInfo
from .placement import axis_rotation, measured_vertices
from .util import _cause, _frame_range, _pose_actions_of, _quiet_stdout

log = logging.getLogger("synthgen.blender")

NEUTRAL_ALBEDO = (0.5, 0.5, 0.5, 1.0)
IMPORT_UNITS = {".glb": "metres (glTF)", ".gltf": "metres (glTF)",
                ".fbx": "Blender units after the FBX importer's unit scale (metres if the file says so)",
                ".obj": "file numbers (OBJ has no unit)", ".ply": "file numbers (PLY has no unit)"}
"""What the imported coordinates (``raw``, before the size rule) are measured in, per format."""
BACKGROUND_Z = 1e9  # Cycles writes 1e10 for background; anything beyond this is treated as background


class ScanMixin:
    """Methods of :class:`synthgen.rendering.blender.BlenderRenderer` (a mixin: it uses the renderer's ``bpy``, ``scene`` and subject state)."""

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
        self._placement, self._measure_rule, self._excluded = {}, "all", []
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

        The scan is turned by ``up_axis`` / ``forward_axis`` (to Z up, facing -Y), scaled uniformly
        so that the vertical extent of what ``size.measure`` selects equals ``size.height_m`` (or by
        ``size.unit`` / ``size.scale``), then translated so that that part's bounding box is centred
        on x = y = 0 with its lowest point at z = 0.

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
            frames, only with ``keep_animation``), ``centroid_m``, and for scans ``raw`` (bounding box
            as imported, file units), ``orientation`` and ``measured`` (rule, objects, vertices,
            ``height_m`` of the measured part and ``whole_height_m``, ``excluded_objects``). The
            bounding box, targets and centroid are those of the measured part.

        Raises:
            ScanImportError: the import fails or yields no mesh.
        """
        cache_key = (asset.id, rest_pose, appearance, keep_animation and rest_pose)
        if self.scan_info is not None and self._cache_key == cache_key:
            return self.scan_info
        self.clear_scan()
        new = self._drop_excluded(self._import(asset.path), asset.exclude_objects)
        meshes = [o for o in new if o.type == "MESH" and not o.hide_render]
        if not meshes:
            for o in new:
                self.bpy.data.objects.remove(o, do_unlink=True)
            raise ScanImportError(f"{asset.path}: the file contains no renderable mesh")
        root = self._adopt_subject(asset.id, new, meshes)
        if rest_pose:
            self._rest_pose(keep_animation)
        warnings = [f"scan {asset.id}: exclude_objects pattern {p!r} matches no object of the file"
                    for p in self._unmatched] + self._setup_materials(asset, meshes)
        self._hsv_nodes, self._bsdfs, self._skin_bsdfs = [], [], []
        if appearance:
            self._setup_appearance(meshes)
        scale = self._place(root, asset)
        self._finish_subject(asset.id, scale, asset.head_height_m, warnings, cache_key)
        return self.scan_info

    def _drop_excluded(self, new: list[Any], patterns: list[str]) -> list[Any]:
        """Remove imported cameras and lights (they would change the render) and objects matching
        ``patterns`` (fnmatch, case-insensitive); their children move to their parent."""
        import fnmatch

        drop = [o for o in new if o.type in ("CAMERA", "LIGHT")
                or any(fnmatch.fnmatch(o.name.lower(), pat.lower()) for pat in patterns)]
        self._excluded = sorted(o.name for o in drop if o.type not in ("CAMERA", "LIGHT"))
        self._unmatched = [p for p in patterns if not any(fnmatch.fnmatch(o.name.lower(), p.lower()) for o in new)]
        for o in drop:
            for ch in o.children:
                ch.parent = o.parent
            self.bpy.data.objects.remove(o, do_unlink=True)
        return [o for o in new if o not in drop]

    def _adopt_subject(self, subject_id: str, new: list[Any], meshes: list[Any]) -> Any:
        """Make ``new`` objects the current subject: parented under an empty ``subject_root`` below a
        pivot at the world origin (subject yaw rotates the x = y = 0 centred subject in place);
        returns the root."""
        bpy = self.bpy
        root = bpy.data.objects.new(f"subject_root_{subject_id}", None)
        self.scene.collection.objects.link(root)
        pivot = bpy.data.objects.new(f"subject_pivot_{subject_id}", None)
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
        return root

    def _rest_pose(self, keep_animation: bool) -> None:
        """Clear the rigs' animation (keeping their pose actions for ``animation`` poses if asked)
        and put every bone in its rest pose."""
        for arm in self._armatures:
            if keep_animation:
                self._pose_actions += [(arm, a) for a in _pose_actions_of(arm)]
            arm.animation_data_clear()
            for pb in arm.pose.bones:
                pb.matrix_basis.identity()
        self.bpy.context.view_layer.update()

    def _place(self, root: Any, asset: ScanAsset) -> float:
        """Turn ``root`` by the scan's orientation (``up_axis`` to +Z, ``forward_axis`` to -Y), scale it
        uniformly by the size rule applied to what ``size.measure`` selects, and centre that on
        x = y = 0 standing on z = 0; returns the scale (file units -> metres)."""
        from mathutils import Matrix

        R = axis_rotation(asset.up_axis, asset.forward_axis)
        M = np.eye(4)
        M[:3, :3] = R
        root.matrix_basis = Matrix(M.tolist())
        self.bpy.context.view_layer.update()
        all_v = self.mesh_vertices_world()
        dg = self.bpy.context.evaluated_depsgraph_get()
        verts, measured = measured_vertices(self._meshes, dg, asset.size.measure, all_v, asset.path)
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
        M[:3, :3] = scale * R
        M[:3, 3] = (-scale * (lo[0] + hi[0]) / 2, -scale * (lo[1] + hi[1]) / 2, -scale * lo[2])
        root.matrix_basis = Matrix(M.tolist())
        self.bpy.context.view_layer.update()
        self._measure_rule = asset.size.measure
        raw = all_v @ R  # as imported (before the orientation)
        self._placement = {
            "raw": {"bbox_min": raw.min(0).tolist(), "bbox_max": raw.max(0).tolist(),
                    "extent": np.ptp(raw, 0).tolist(),
                    "units": IMPORT_UNITS.get(Path(asset.path).suffix.lower(), "file units")},
            "orientation": {"up_axis": asset.up_axis, "forward_axis": asset.forward_axis},
            "measured": {**measured, "vertices": int(len(verts)), "height_m": float(scale * (hi[2] - lo[2])),
                         "whole_height_m": float(scale * np.ptp(all_v[:, 2])),
                         "excluded_objects": self._excluded}}
        return float(scale)

    def _measured_world(self) -> np.ndarray:
        """World vertices of what ``size.measure`` selected (all meshes for a generated person)."""
        verts = self.mesh_vertices_world()
        rule = getattr(self, "_measure_rule", "all")
        if rule == "all":
            return verts
        dg = self.bpy.context.evaluated_depsgraph_get()
        return measured_vertices(self._meshes, dg, rule, verts, "")[0]

    def _finish_subject(self, subject_id: str, scale: float, head_height_m: float, warnings: list[str],
                        cache_key: Any, head_top_m: float | None = None) -> None:
        """Measure the placed subject into :attr:`scan_info` (bounding box, head target region of
        ``head_height_m`` below the top, or below ``head_top_m`` when given) and remember the rest pose."""
        verts = self._measured_world()
        lo, hi = verts.min(0), verts.max(0)
        top = hi[2] if head_top_m is None else head_top_m
        head_h = min(head_height_m, float(top - lo[2]))
        head = verts[(verts[:, 2] >= top - head_h) & (verts[:, 2] <= top + 1e-6)]
        hlo, hhi = head.min(0), head.max(0)
        self.scan_info = SubjectInfo(
            id=subject_id,
            scale_applied=float(scale),
            bbox_min_m=lo.tolist(),
            bbox_max_m=hi.tolist(),
            target_head_m=[float((hlo[0] + hhi[0]) / 2), float((hlo[1] + hhi[1]) / 2), float(top - head_h / 2)],
            target_center_m=((lo + hi) / 2).tolist(),
            centroid_m=verts.mean(0).tolist(),
            head_region_height_m=float(head_h),
            num_vertices=int(len(verts)),
            warnings=warnings,
            armatures=[a.name for a in self._armatures],
            animations=[{"armature": arm.name, "action": act.name, "frame_range": list(_frame_range(act))}
                        for arm, act in self._pose_actions],
            **getattr(self, "_placement", {}),
        )
        self._cache_key = cache_key
        self._rest_armature_world = {a.name: np.array(a.matrix_world) for a in self._armatures}
        for w in warnings:
            log.warning("%s", w)

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
                                where = os.path.normpath(self.bpy.path.abspath(img.filepath)) if img.filepath else img.name
                                missing += [where] if where not in missing else []
                if mat is None or missing:
                    warnings.append(f"scan {asset.id}: material {getattr(mat, 'name', None)!r} "
                                    f"has missing texture(s) {missing}; using a neutral material")
                    neutral = neutral or self._neutral_material()
                    o.data.materials[i] = neutral
        return warnings

    # ------------------------------------------------------------------ pose
