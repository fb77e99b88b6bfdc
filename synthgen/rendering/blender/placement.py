"""Per-scan placement helpers: the orientation rotation (``up_axis`` / ``forward_axis``) and what is
measured for the size rule (``size.measure``: every mesh, the largest connected part, or named
objects). Vertices are world-space float64 arrays in the file's units until the size rule scales them.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import numpy as np

from ...errors import ScanImportError

_AXES = {"X": 0, "Y": 1, "Z": 2}


def axis_vector(axis: str) -> np.ndarray:
    """``"+X"`` / ``"-Z"`` ... -> unit vector."""
    v = np.zeros(3)
    v[_AXES[axis[1]]] = 1.0 if axis[0] == "+" else -1.0
    return v


def axis_rotation(up_axis: str, forward_axis: str) -> np.ndarray:
    """3×3 rotation taking the file's ``up_axis`` to +Z and ``forward_axis`` (the way the subject
    faces) to -Y (Blender world, the convention of every placed subject). Identity for +Z / -Y.

    Raises:
        ValueError: the axes are not perpendicular.
    """
    up, fwd = axis_vector(up_axis), axis_vector(forward_axis)
    if abs(float(up @ fwd)) > 1e-9:
        raise ValueError(f"up_axis {up_axis} and forward_axis {forward_axis} are not perpendicular")
    back = -fwd                      # becomes +Y
    right = np.cross(back, up)       # becomes +X (x = y × z)
    return np.stack([right, back, up])   # rows: R @ right = ex, R @ back = ey, R @ up = ez


def _mesh_arrays(obj: Any, dg: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(world vertices (N, 3), edges (E, 2), triangles (T, 3)) of an object's evaluated mesh."""
    ev = obj.evaluated_get(dg)
    me = ev.to_mesh()
    try:
        co = np.empty(len(me.vertices) * 3, np.float64)
        me.vertices.foreach_get("co", co)
        ed = np.empty(len(me.edges) * 2, np.int64)
        me.edges.foreach_get("vertices", ed)
        me.calc_loop_triangles()
        tri = np.empty(len(me.loop_triangles) * 3, np.int64)
        me.loop_triangles.foreach_get("vertices", tri)
    finally:
        ev.to_mesh_clear()
    m = np.array(ev.matrix_world)
    return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3], ed.reshape(-1, 2), tri.reshape(-1, 3)


def largest_part(meshes: list[Any], dg: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """World vertices of the connected mesh part (over all ``meshes``) with the largest surface
    area, and a description (object, part vertices and area, number of parts). Vertices at the same
    position (to 1e-6 of the object's size) count as connected, since importers split vertices at
    UV and normal seams."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    best: tuple[float, np.ndarray, str] | None = None
    n_parts = 0
    for o in meshes:
        v, ed, tri = _mesh_arrays(o, dg)
        if not len(v):
            continue
        # vertices at the same position are one (importers split vertices at UV and normal seams)
        tol = 1e-6 * max(float(np.ptp(v, 0).max()), 1e-12)
        _, weld = np.unique(np.round(v / tol).astype(np.int64), axis=0, return_inverse=True)
        weld = weld.ravel()
        m = int(weld.max()) + 1
        g = coo_matrix((np.ones(len(ed)), (weld[ed[:, 0]], weld[ed[:, 1]])), shape=(m, m))
        n, labels = connected_components(g, directed=False)
        labels = labels[weld]
        n_parts += n
        a = v[tri]
        area = 0.5 * np.linalg.norm(np.cross(a[:, 1] - a[:, 0], a[:, 2] - a[:, 0]), axis=1)
        per = np.bincount(labels[tri[:, 0]], weights=area, minlength=n) if len(tri) else np.zeros(n)
        k = int(np.argmax(per))
        if best is None or per[k] > best[0]:
            best = (float(per[k]), v[labels == k], o.name)
    if best is None:
        raise ScanImportError("size.measure: largest_part: the scan's meshes have no vertices")
    return best[1], {"object": best[2], "part_area_file_units2": best[0], "parts": n_parts}


def measured_vertices(meshes: list[Any], dg: Any, rule: str | list[str], all_verts: np.ndarray,
                      path: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The world vertices that ``size.measure`` selects, and the record's description of them.

    Raises:
        ScanImportError: no object matches the named patterns.
    """
    if rule == "all":
        return all_verts, {"rule": "all", "objects": sorted(o.name for o in meshes)}
    if rule == "largest_part":
        v, info = largest_part(meshes, dg)
        return v, {"rule": "largest_part", "objects": [info["object"]], **info}
    pats = [p.lower() for p in rule]
    chosen = [o for o in meshes if any(fnmatch.fnmatch(o.name.lower(), p) for p in pats)]
    if not chosen:
        raise ScanImportError(f"{path}: size.measure {rule} matches none of the scan's mesh objects "
                              f"{sorted(o.name for o in meshes)[:20]}")
    return np.concatenate([_mesh_arrays(o, dg)[0] for o in chosen]), \
        {"rule": list(rule), "objects": sorted(o.name for o in chosen)}
