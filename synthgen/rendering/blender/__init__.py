"""Everything that touches Blender (``bpy``) lives in this package; the rest of synthgen never imports bpy
(a test enforces it). Importing the package does not import bpy either: :class:`BlenderRenderer`
imports it when constructed.

Modules: :mod:`.renderer` (the scene, Cycles settings, render passes read back as arrays),
:mod:`.scan` (import and placement of scans, materials), :mod:`.pose` (rig poses, animation frames,
appearance), :mod:`.lighting` (HDRI world, area lights), :mod:`.camera_rig` (camera, depth of field,
motion blur), :mod:`.calibration` (the depth-sensor calibration scene), :mod:`.util`.
"""

from __future__ import annotations

from ...errors import GpuUnavailableError, ScanImportError
from .renderer import BlenderRenderer, blender_version

__all__ = ["BlenderRenderer", "blender_version", "GpuUnavailableError", "ScanImportError"]
