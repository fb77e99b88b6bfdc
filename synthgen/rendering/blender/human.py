"""Blender objects for a :class:`synthgen.humans.HumanModel` (the only humans module importing bpy,
lazily, inside functions).

:func:`build_human_objects` creates, in ``bpy.context.scene``: one root empty; an armature (the
MPFB2 default rig, bones placed at the model's world positions with the file's rolls); one mesh
object per part (body, eyes, eyebrows, eyelashes, teeth, hair, top, shoes) with UVs, smooth shading,
materials, one vertex group per bone and an Armature modifier. Everything is parented to the root,
which sits at the world origin with identity transform, so the world frame of the model (metres,
+Z up, facing -Y, standing on z = 0) is kept.

Materials (Cycles; Principled BSDF unless noted):

- ``skin``: base colour = the skin model's linear albedo x ``(1 - s) + 2 s d`` where ``d`` is the grey
  detail map (0.5 = mean tone) and ``s`` the detail strength; Subsurface Weight/Radius from the
  identity (radius per RGB in millimetres with Subsurface Scale 0.001 m, i.e. metres overall),
  roughness from the identity.
- ``hair`` (scalp hair, eyebrows, eyelashes: alpha-textured cards): Mix Shader(Fac = texture alpha,
  Transparent BSDF, Principled) where the Principled colour is the tint x texture luminance / its
  mean (capped at 3). Where alpha is 0 the card is fully transparent: Cycles then records in the
  Z pass (and in the Combined alpha) whatever is behind, because a surface only writes the Z pass
  when its opacity (1 - transparent weight) reaches the view layer's ``pass_alpha_threshold``
  (0.5 by default); :func:`build_human_objects` leaves that threshold as it is.
- ``eye``: iris texture on the eyeball (roughness 0.35). ``cornea``: Mix Shader(Fac = Fresnel(IOR
  1.376), Transparent BSDF, Glossy BSDF roughness 0.02): a clear, reflective shell that lets light and
  shadow rays through, so the eyeball underneath is lit (a refractive glass shell would shadow it
  black in Cycles); its opacity is below the Z-pass threshold, so depth is the eyeball's.
- ``cloth``/``teeth``: diffuse texture (+ tangent-space normal map when shipped), roughness from
  the ``.mhmat`` (``1 - shininess``, at least 0.3). The ``.mtl`` files are never used (MakeHuman
  exports ``d 0`` there, which Blender reads as fully transparent).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from ...humans.model import HumanModel, MaterialDesc, MeshPart

HAIR_LUMINANCE_CAP = 3.0


def _image(bpy, path: str, colorspace: str):
    img = bpy.data.images.load(path, check_existing=True)
    img.colorspace_settings.name = colorspace
    return img


def _tex(nt, bpy, path: str, colorspace: str, loc):
    n = nt.nodes.new("ShaderNodeTexImage")
    n.image = _image(bpy, path, colorspace)
    n.location = loc
    return n


def _principled(nt):
    b = nt.nodes.get("Principled BSDF") or nt.nodes.new("ShaderNodeBsdfPrincipled")
    return b


def _normal_map(nt, bpy, md: MaterialDesc, bsdf) -> None:
    if md.normal_texture:
        t = _tex(nt, bpy, md.normal_texture, "Non-Color", (-700, -300))
        nm = nt.nodes.new("ShaderNodeNormalMap")
        nm.inputs["Strength"].default_value = float(md.normal_strength)
        nt.links.new(t.outputs["Color"], nm.inputs["Color"])
        nt.links.new(nm.outputs["Normal"], bsdf.inputs["Normal"])


def _skin_nodes(bpy, mat, nt, md: MaterialDesc, bsdf, out) -> None:
    base = nt.nodes.new("ShaderNodeRGB")
    base.outputs[0].default_value = (*md.base_color, 1.0)
    if md.detail_texture and md.detail_strength > 0:
        t = _tex(nt, bpy, md.detail_texture, "Non-Color", (-900, 200))
        f = nt.nodes.new("ShaderNodeMath")
        f.operation = "MULTIPLY_ADD"  # d * 2s + (1 - s)
        f.inputs[1].default_value = 2.0 * md.detail_strength
        f.inputs[2].default_value = 1.0 - md.detail_strength
        nt.links.new(t.outputs["Color"], f.inputs[0])
        sc = nt.nodes.new("ShaderNodeVectorMath")
        sc.operation = "SCALE"
        nt.links.new(base.outputs[0], sc.inputs[0])
        nt.links.new(f.outputs[0], sc.inputs["Scale"])
        nt.links.new(sc.outputs["Vector"], bsdf.inputs["Base Color"])
    else:
        nt.links.new(base.outputs[0], bsdf.inputs["Base Color"])
    bsdf.inputs["IOR"].default_value = 1.4  # skin (F0 ~ 2.8 %)
    bsdf.inputs["Subsurface Weight"].default_value = float(md.subsurface_weight)
    bsdf.inputs["Subsurface Radius"].default_value = tuple(1000.0 * r for r in md.subsurface_radius_m)
    bsdf.inputs["Subsurface Scale"].default_value = 0.001
    with contextlib.suppress(KeyError, TypeError, AttributeError):
        bsdf.subsurface_method = "RANDOM_WALK"
    with contextlib.suppress(KeyError):
        bsdf.inputs["Subsurface IOR"].default_value = 1.4


def _hair_nodes(bpy, mat, nt, md: MaterialDesc, bsdf, out) -> None:
    t = _tex(nt, bpy, md.diffuse_texture, "sRGB", (-1100, 200))
    t.image.alpha_mode = "STRAIGHT"
    bw = nt.nodes.new("ShaderNodeRGBToBW")
    nt.links.new(t.outputs["Color"], bw.inputs["Color"])
    div = nt.nodes.new("ShaderNodeMath")
    div.operation = "DIVIDE"
    div.inputs[1].default_value = max(float(md.texture_mean_luminance or 1.0), 1e-4)
    nt.links.new(bw.outputs["Val"], div.inputs[0])
    cap = nt.nodes.new("ShaderNodeMath")
    cap.operation = "MINIMUM"
    cap.inputs[1].default_value = HAIR_LUMINANCE_CAP
    nt.links.new(div.outputs[0], cap.inputs[0])
    tint = nt.nodes.new("ShaderNodeRGB")
    tint.outputs[0].default_value = (*md.base_color, 1.0)
    sc = nt.nodes.new("ShaderNodeVectorMath")
    sc.operation = "SCALE"
    nt.links.new(tint.outputs[0], sc.inputs[0])
    nt.links.new(cap.outputs[0], sc.inputs["Scale"])
    nt.links.new(sc.outputs["Vector"], bsdf.inputs["Base Color"])
    bsdf.inputs["Specular IOR Level"].default_value = 0.5
    transp = nt.nodes.new("ShaderNodeBsdfTransparent")
    mix = nt.nodes.new("ShaderNodeMixShader")
    nt.links.new(t.outputs["Alpha"], mix.inputs["Fac"])
    nt.links.new(transp.outputs["BSDF"], mix.inputs[1])
    nt.links.new(bsdf.outputs["BSDF"], mix.inputs[2])
    nt.links.new(mix.outputs["Shader"], out.inputs["Surface"])
    with contextlib.suppress(AttributeError, TypeError):
        mat.surface_render_method = "DITHERED"  # EEVEE only; Cycles uses the mix above


def _eye_nodes(bpy, mat, nt, md: MaterialDesc, bsdf, out) -> None:
    t = _tex(nt, bpy, md.diffuse_texture, "sRGB", (-600, 200))
    nt.links.new(t.outputs["Color"], bsdf.inputs["Base Color"])


def _cornea_nodes(bpy, mat, nt, md: MaterialDesc, bsdf, out) -> None:
    nt.nodes.remove(bsdf)
    fr = nt.nodes.new("ShaderNodeFresnel")
    fr.inputs["IOR"].default_value = float(md.ior)
    transp = nt.nodes.new("ShaderNodeBsdfTransparent")
    gl = nt.nodes.new("ShaderNodeBsdfGlossy")
    gl.inputs["Roughness"].default_value = float(md.roughness)
    mix = nt.nodes.new("ShaderNodeMixShader")
    nt.links.new(fr.outputs["Fac"], mix.inputs["Fac"])
    nt.links.new(transp.outputs["BSDF"], mix.inputs[1])
    nt.links.new(gl.outputs["BSDF"], mix.inputs[2])
    nt.links.new(mix.outputs["Shader"], out.inputs["Surface"])


def _cloth_nodes(bpy, mat, nt, md: MaterialDesc, bsdf, out) -> None:
    """``cloth`` and ``teeth``."""
    if md.diffuse_texture:
        t = _tex(nt, bpy, md.diffuse_texture, "sRGB", (-600, 200))
        if tuple(md.base_color) != (1.0, 1.0, 1.0):
            sc = nt.nodes.new("ShaderNodeMix")
            sc.data_type = "RGBA"
            sc.blend_type = "MULTIPLY"
            sc.inputs["Factor"].default_value = 1.0
            nt.links.new(t.outputs["Color"], sc.inputs["A"])
            sc.inputs["B"].default_value = (*md.base_color, 1.0)
            nt.links.new(sc.outputs["Result"], bsdf.inputs["Base Color"])
        else:
            nt.links.new(t.outputs["Color"], bsdf.inputs["Base Color"])
        if md.alpha_cut:
            nt.links.new(t.outputs["Alpha"], bsdf.inputs["Alpha"])
    else:
        bsdf.inputs["Base Color"].default_value = (*md.base_color, 1.0)
    _normal_map(nt, bpy, md, bsdf)


_NODE_BUILDERS = {"skin": _skin_nodes, "hair": _hair_nodes, "eye": _eye_nodes, "cornea": _cornea_nodes,
                  "cloth": _cloth_nodes, "teeth": _cloth_nodes}
"""Material kind -> ``f(bpy, material, node tree, MaterialDesc, Principled BSDF, Material Output)``."""


def make_material(md: MaterialDesc, name: str):
    """A Cycles material for ``md`` named ``name`` (see the module docstring for each kind).

    Raises:
        ValueError: unknown material kind.
    """
    import bpy

    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nt = mat.node_tree
    out = nt.nodes.get("Material Output")
    bsdf = _principled(nt)
    bsdf.inputs["Roughness"].default_value = float(md.roughness)
    build = _NODE_BUILDERS.get(md.kind)
    if build is None:
        raise ValueError(f"material {md.name!r}: unknown kind {md.kind!r}")
    build(bpy, mat, nt, md, bsdf, out)
    return mat


def _mesh_object(bpy, part: MeshPart, name: str, materials: list):
    me = bpy.data.meshes.new(name)
    n = len(part.verts)
    me.vertices.add(n)
    me.vertices.foreach_set("co", np.ascontiguousarray(part.verts, dtype=np.float32).ravel())
    L = len(part.face_verts)
    me.loops.add(L)
    me.loops.foreach_set("vertex_index", np.ascontiguousarray(part.face_verts, dtype=np.int32))
    F = len(part.face_sizes)
    me.polygons.add(F)
    me.polygons.foreach_set("loop_start", part.face_starts.astype(np.int32))
    me.polygons.foreach_set("loop_total", np.ascontiguousarray(part.face_sizes, dtype=np.int32))
    uv = me.uv_layers.new(name="UVMap")
    uv.data.foreach_set("uv", np.ascontiguousarray(part.loop_uvs, dtype=np.float32).ravel())
    for m in materials:
        me.materials.append(m)
    me.polygons.foreach_set("material_index", np.ascontiguousarray(part.face_material, dtype=np.int32))
    me.update(calc_edges=True)
    me.shade_smooth()
    obj = bpy.data.objects.new(name, me)
    return obj


def _vertex_groups(obj, part: MeshPart, bone_names: tuple[str, ...]) -> None:
    for bone in bone_names:
        g = part.vertex_groups.get(bone)
        if g is None:
            continue
        vg = obj.vertex_groups.new(name=bone)
        idx, w = g
        # one add() per distinct weight value (weights repeat a lot: exact-fit proxies, 1.0 regions)
        uw, inv = np.unique(w, return_inverse=True)
        if len(uw) < len(w) // 2:
            for k, val in enumerate(uw):
                vg.add(idx[inv == k].tolist(), float(val), "REPLACE")
        else:
            for i, val in zip(idx.tolist(), w.tolist()):
                vg.add([i], val, "REPLACE")


def _armature(bpy, human: HumanModel, name: str, scene):
    rig = human.rig
    data = bpy.data.armatures.new(f"{name}_rig")
    arm = bpy.data.objects.new(f"{name}_rig", data)
    scene.collection.objects.link(arm)
    vl = bpy.context.view_layer
    prev = vl.objects.active
    vl.objects.active = arm
    with contextlib.suppress(RuntimeError):
        if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        eb = data.edit_bones
        bones = {}
        for i, bn in enumerate(rig.names):
            b = eb.new(bn)
            b.head = rig.heads[i].tolist()
            b.tail = rig.tails[i].tolist()
            if np.linalg.norm(rig.tails[i] - rig.heads[i]) < 1e-5:  # degenerate: Blender would drop it
                b.tail = (rig.heads[i] + np.array([0.0, 0.0, 1e-3])).tolist()
            b.roll = float(rig.rolls[i])
            bones[bn] = b
        for i, bn in enumerate(rig.names):
            p = rig.parents[i]
            if p:
                bones[bn].parent = bones[p]
                bones[bn].use_connect = bool(rig.use_connect[i])
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        vl.objects.active = prev
    for pb in arm.pose.bones:
        pb.rotation_mode = "QUATERNION"
    return arm


def build_human_objects(human: HumanModel, name: str) -> dict[str, Any]:
    """Create ``human`` in ``bpy.context.scene`` (see the module docstring).

    Object names start with ``name`` (Blender appends ``.001`` etc. on clashes).

    Returns:
        ``{"objects": [root, armature, *meshes], "meshes": [mesh objects], "armature": armature
        object, "root": root empty, "bbox_min_m", "bbox_max_m", "head_top_m", "head_centre_m",
        "eye_centre_m": lists of 3 floats (world, metres)}``.

    Raises:
        RuntimeError: Blender refuses edit mode for the armature (no usable context).
    """
    import bpy

    scene = bpy.context.scene
    root = bpy.data.objects.new(f"{name}_root", None)
    scene.collection.objects.link(root)
    arm = _armature(bpy, human, name, scene)
    arm.parent = root
    meshes = []
    for part in human.parts():
        mats = [make_material(md, f"{name}_{md.name}") for md in part.materials]
        obj = _mesh_object(bpy, part, f"{name}_{part.name}", mats)
        scene.collection.objects.link(obj)
        _vertex_groups(obj, part, human.rig.names)
        mod = obj.modifiers.new("Armature", "ARMATURE")
        mod.object = arm
        mod.use_vertex_groups = True
        obj.parent = root
        meshes.append(obj)
    bpy.context.view_layer.update()
    return {"objects": [root, arm, *meshes], "meshes": meshes, "armature": arm, "root": root,
            "bbox_min_m": human.bbox_min_m.tolist(), "bbox_max_m": human.bbox_max_m.tolist(),
            "head_top_m": human.head_top_m.tolist(), "head_centre_m": human.head_centre_m.tolist(),
            "eye_centre_m": human.eye_centre_m.tolist()}


def remove_human_objects(created: dict[str, Any]) -> None:
    """Delete the objects of a :func:`build_human_objects` result and purge orphaned data blocks
    (meshes, materials, images, armature)."""
    import bpy

    for o in created["objects"]:
        with contextlib.suppress(ReferenceError):
            bpy.data.objects.remove(o, do_unlink=True)
    bpy.data.orphans_purge(do_local_ids=True, do_linked_ids=True, do_recursive=True)


def evaluated_vertices(obj) -> np.ndarray:
    """(N, 3) float64 world positions of ``obj``'s evaluated mesh (modifiers, armature pose)."""
    import bpy

    dg = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(dg)
    me = ev.to_mesh()
    try:
        co = np.empty(len(me.vertices) * 3, dtype=np.float64)
        me.vertices.foreach_get("co", co)
    finally:
        ev.to_mesh_clear()
    m = np.array(ev.matrix_world)
    return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]


class HumanMixin:
    """Loading a generated MakeHuman subject as the renderer's current subject (a mixin of
    :class:`synthgen.rendering.blender.BlenderRenderer`, beside ``load_scan``)."""

    def load_human(self, spec, seed: int, j: int, appearance: bool = False) -> dict[str, Any]:
        """Build identity ``j`` of ``spec`` (a :class:`synthgen.humans.HumansSpec`; pure in
        ``(seed, j)``) unless it is already loaded, and make it the current subject, in its rest pose.

        The model is built at metric scale (no further scaling), standing on z = 0 centred on
        x = y = 0 and facing -Y, like scans. The head target for framing is the model's head centre
        (mean of the vertices weighted to the ``head`` bone); the head region height is twice its
        distance to the head top.

        Returns:
            ``scan_info`` like :meth:`load_scan` (``scale_applied`` 1.0), plus ``identity`` (the
            :meth:`synthgen.humans.Identity.to_record` JSON) and ``build_s`` (numpy build seconds)
            and ``blender_s`` (object creation seconds).
        """
        import time

        from ...humans import build_human, sample_identity

        subject = spec.subject_id(j)
        cache_key = ("human", subject, appearance)
        if self.scan_info is not None and self._cache_key == cache_key:
            return self.scan_info
        self.clear_scan()
        identity = sample_identity(spec, seed, j)
        t0 = time.perf_counter()
        model = build_human(identity)
        t1 = time.perf_counter()
        created = build_human_objects(model, subject)
        t2 = time.perf_counter()
        self._adopt_subject(subject, created["objects"], created["meshes"])
        self._hsv_nodes, self._bsdfs, self._skin_bsdfs = [], [], []
        if appearance:
            self._setup_appearance(created["meshes"])
        top = float(model.head_top_m[2])
        head_h = 2.0 * (top - float(model.head_centre_m[2]))
        self._finish_subject(subject, 1.0, head_h, [], cache_key, head_top_m=top)
        self.scan_info = self.scan_info.model_copy(update=dict(
            target_head_m=[float(v) for v in model.head_centre_m], identity=identity.to_record(),
            build_s=t1 - t0, blender_s=t2 - t1, height_m=float(model.height_m)))
        return self.scan_info
