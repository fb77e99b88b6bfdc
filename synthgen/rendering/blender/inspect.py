"""Preflight inspection of one scan, run in its own Blender process by
:func:`synthgen.rendering.scan_check.check_scans` (so a Blender crash on a bad file cannot take the
render driver down).

Run as ``python -m synthgen.rendering.blender.inspect RESULT.json`` with a JSON request on stdin:
``{"asset": ScanAsset fields, "joints": [JointConfig fields], "rest_pose": bool,
"keep_animation": bool, "sheet": PNG path (optional, with "hdri": an HDRI path)}``: the sheet is
:func:`.contact_sheet.render_sheet`. It imports the scan exactly as a render worker
does (:meth:`BlenderRenderer.load_scan`: orientation, exclusions, size rule, materials) and writes
``{"ok": true, "report": {...}}`` or ``{"ok": false, "kind": "scan_import_failed", "error": cause}``
to RESULT.json. Anything else (no file, a signal) means the process crashed.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

DARK_LUMINANCE = 0.03
"""A material whose untextured base colour has a Rec. 709 luminance below this renders nearly black."""
BRIGHT_LUMINANCE = 0.9
"""... and above this, nearly white (no real skin, hair or cloth is that bright)."""
_LUMA = (0.2126, 0.7152, 0.0722)


def _base_colour(mat) -> tuple[list[float] | None, bool]:
    """(linear RGB of the material's base colour, whether it comes from a texture or other node)."""
    if mat.use_nodes and mat.node_tree is not None:
        for n in mat.node_tree.nodes:
            if n.type in ("BSDF_PRINCIPLED", "BSDF_DIFFUSE"):
                sock = n.inputs.get("Base Color") or n.inputs.get("Color")
                if sock is None:
                    continue
                if sock.is_linked:
                    return None, True
                return [float(c) for c in sock.default_value[:3]], False
        return None, False
    return [float(c) for c in mat.diffuse_color[:3]], False


def _materials(r) -> tuple[list[dict[str, Any]], list[str], int]:
    """The file's materials still in use after load_scan: (per material facts, warnings, count of
    the file's materials)."""
    bpy = r.bpy
    file_mats = [m for m in bpy.data.materials if not m.is_grease_pencil and not m.name.startswith("synthgen_")]
    used = {}
    for o in r._meshes:
        for m in o.data.materials:
            if m is not None:
                used[m.name] = m
    out, warnings = [], []
    for name, m in sorted(used.items()):
        rgb, textured = _base_colour(m)
        lum = sum(a * b for a, b in zip(_LUMA, rgb)) if rgb is not None else None
        entry = {"name": name, "textured": textured, "base_color": rgb,
                 "luminance": None if lum is None else round(lum, 4),
                 "replaced": name.startswith("synthgen_")}
        images = [n.image for n in (m.node_tree.nodes if m.use_nodes and m.node_tree else [])
                  if n.type == "TEX_IMAGE" and n.image is not None]
        bad = [img.filepath or img.name for img in images if _unreadable(img)]
        if bad:
            entry["unreadable_textures"] = bad
            warnings.append(f"material {name!r}: texture(s) {bad} cannot be decoded")
        if not textured and lum is not None and not entry["replaced"]:
            rgb_s = "(" + ", ".join(f"{c:.3g}" for c in rgb) + ")"
            if lum < DARK_LUMINANCE:
                entry["near"] = "black"
                warnings.append(f"material {name!r}: base colour {rgb_s} is near black (luminance {lum:.3f}) "
                                "and has no texture: the scan renders almost black (reflections only) and auto "
                                "exposure will scale the image up strongly; set `base_color` or `texture` for this scan")
            elif lum > BRIGHT_LUMINANCE:
                entry["near"] = "white"
                warnings.append(f"material {name!r}: base colour {rgb_s} is near white (luminance {lum:.3f}) "
                                "and has no texture; set `base_color` or `texture` for this scan if that is not intended")
        out.append(entry)
    return out, warnings, len(file_mats)


def _unreadable(img) -> bool:
    """Whether an image that exists on disk (or is packed) fails to decode."""
    import bpy

    path = bpy.path.abspath(img.filepath) if img.filepath else ""
    if img.packed_file is None and not (path and os.path.isfile(path)):
        return False  # missing: already a load_scan warning (neutral material)
    try:
        return img.size[0] == 0
    except Exception:
        return True


def _rigs(r, joints: list[Any]) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
    rigs = [{"name": a.name, "bones": len(a.pose.bones), "bone_names": [b.name for b in a.pose.bones][:40]}
            for a in r._armatures]
    match = {}
    for j in joints:
        _, pb = r._find_bone(j.bones)
        match[j.name] = pb.name if pb is not None else None
    return rigs, match


def inspect(req: dict[str, Any]) -> dict[str, Any]:
    """Import ``req["asset"]`` like a render worker and describe it (see the module docstring)."""
    from ..config import ScanAsset
    from ..variation_config import JointConfig
    from .renderer import BlenderRenderer

    asset = ScanAsset.model_validate(req["asset"])
    joints = [JointConfig.model_validate(j) for j in req.get("joints", [])]
    t0 = time.perf_counter()
    r = BlenderRenderer(threads=1)
    info = r.load_scan(asset, rest_pose=req.get("rest_pose", False),
                       keep_animation=req.get("keep_animation", False))
    mats, mat_warnings, n_file_mats = _materials(r)
    rigs, match = _rigs(r, joints)
    lo, hi = info["bbox_min_m"], info["bbox_max_m"]
    report = {
        "id": asset.id, "path": asset.path,
        "raw": info.get("raw", {}),
        "scale_applied": info["scale_applied"],
        "size_rule": asset.size.model_dump(exclude_none=True),
        "bbox_min_m": lo, "bbox_max_m": hi,
        "extent_m": [float(h - l) for l, h in zip(lo, hi)],
        "measured": info.get("measured"), "orientation": info.get("orientation"),
        "centroid_m": info.get("centroid_m"),
        "meshes": len(r._meshes), "vertices": info["num_vertices"],
        "materials_in_file": n_file_mats, "materials": mats,
        "rigs": rigs, "pose_joints": match,
        "head_region_height_m": info["head_region_height_m"],
        "target_head_m": info["target_head_m"],
        "load_warnings": list(info["warnings"]), "material_warnings": mat_warnings,
        "import_s": round(time.perf_counter() - t0, 3),
    }
    if req.get("sheet"):
        from .contact_sheet import render_sheet

        try:
            report["contact_sheet"] = render_sheet(r, info, req["hdri"], req["sheet"])
        except Exception as exc:  # the sheet is a picture for people: never fail the check for it
            report["contact_sheet"] = {"error": f"{type(exc).__name__}: {exc}"}
    return report


def main(argv: list[str]) -> None:
    result_path = argv[1]
    req = json.loads(sys.stdin.read())
    from ...errors import ScanImportError

    try:
        res = {"ok": True, "report": inspect(req)}
    except ScanImportError as exc:
        res = {"ok": False, "kind": "scan_import_failed", "error": str(exc)}
    except Exception as exc:  # an unexpected failure inside Blender: report it, do not crash silently
        res = {"ok": False, "kind": "inspect_failed", "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc()[-4000:]}
    tmp = result_path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(res, fh)
    os.replace(tmp, result_path)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip bpy's static destructors (they can deadlock at exit, see tests/conftest.py)


if __name__ == "__main__":
    main(sys.argv)
