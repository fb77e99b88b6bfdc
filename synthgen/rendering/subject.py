"""What a loaded subject measured in Blender (:class:`SubjectInfo`): returned by
``BlenderRenderer.load_scan`` / ``load_human``, used for framing (:func:`.framing.camera_for`), the
sample record and the scan preflight."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from .jsonmodel import JsonModel


class SubjectInfo(JsonModel):
    """A loaded subject, placed in the world: Blender world coordinates in metres, z up, the subject
    standing on z = 0 and centred on x = y = 0, facing -y (after ``up_axis``/``forward_axis``).

    Fields: ``bbox_min_m``/``bbox_max_m`` (xyz of what ``size.measure`` selected),
    ``target_head_m`` (head centre) and ``target_center_m`` (bounding-box centre), ``centroid_m``
    (mean vertex), ``head_region_height_m`` (the head's height, used by ``subject_fraction``
    framing), ``scale_applied`` (file units to metres), ``num_vertices``, ``warnings`` (load
    warnings, e.g. missing textures), ``armatures`` and ``animations`` (kept actions and their
    inclusive frame ranges). Scans also carry ``raw`` (bounding box in file units, before scaling),
    ``orientation`` and ``measured`` (the size rule's selection); generated people ``identity`` (the
    phenotype record), ``height_m`` and build times ``build_s``/``blender_s`` in seconds.
    Read-only mapping access (``info["bbox_min_m"]``) gives the same values as the JSON form.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    scale_applied: float
    bbox_min_m: list[float]
    bbox_max_m: list[float]
    target_head_m: list[float]
    target_center_m: list[float]
    centroid_m: list[float]
    head_region_height_m: float
    num_vertices: int
    warnings: list[str]
    armatures: list[str]
    animations: list[dict[str, Any]]
    raw: dict[str, Any] | None = None
    orientation: dict[str, Any] | None = None
    measured: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None
    height_m: float | None = None
    build_s: float | None = None
    blender_s: float | None = None
