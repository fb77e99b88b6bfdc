"""SUN RGB-D scene folders (Song, Lichtenberg, Xiao, CVPR 2015; https://rgbd.cs.princeton.edu/).

Layout of one scene folder (the SUN RGB-D release, e.g. ``kv1/NYUdata/NYU0001/``)::

    image/NAME.jpg        8-bit colour
    depth/NAME.png        16-bit depth, registered to the colour image (same size)
    intrinsics.txt        K, 9 numbers, row-major, pixels
    (extrinsics/, depth_bfx/, annotation*/, fullres/ ... are not read)

The depth PNGs store millimetres *bit-rotated* by 3: ``stored = (mm << 3) | (mm >> 13)`` (16-bit),
so the SUN RGB-D toolbox's ``read3dPoints.m`` decodes ``mm = bitor(bitshift(d, -3), bitshift(d, 16 - 3))``
and metres = mm / 1000 (values above 65.535 m do not occur). Reading the file as plain millimetres
is 8x off; reading it as ``/8000`` is right below 8.192 m and wrong by up to 8.19 m above, where the
rotated-out high bits land in the low bits. The scale is fixed by the format, so ``--depth-scale``
is refused. When each of ``image/`` and ``depth/`` holds a single image they are paired whatever
their names (SUN scene folders hold one frame; some sensors name the depth differently); otherwise
they pair by stem. ``--format sunrgbd`` also accepts a ``color/`` or ``rgb/`` folder instead of
``image/``, with ``--intrinsics`` instead of ``intrinsics.txt``.

No real SUN RGB-D frame ships with synthgen: the test fixture is built from the published format
description (see ``tests/fixtures/ingest/make_fixtures.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common import SourceError, display_path, make_K
from ..options import IngestOptions
from ..scale import stated, sun_rotate
from . import folder_intrinsics, is_dir, is_file
from .kinect import KinectMMReader, _color_dir, _files, _is_image_name


def read_intrinsics_txt(path: Path) -> dict:
    """SUN RGB-D ``intrinsics.txt``: 9 numbers, K row-major. Raises SourceError naming the file."""
    try:
        vals = [float(x) for x in path.read_text("utf-8", errors="replace").split()]
        K = np.array(vals, dtype=float).reshape(3, 3)
        if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.all(np.isfinite(K)):
            raise ValueError("focal lengths must be positive and finite")
    except (OSError, ValueError) as exc:
        raise SourceError(f"{display_path(path)}: expected 9 numbers (K row-major) ({exc})") from exc
    return {"K": make_K(K[0, 0], K[1, 1], K[0, 2], K[1, 2]), "width": None, "height": None, "extra": {},
            "source": "SUN RGB-D intrinsics.txt"}


class SunRgbdReader(KinectMMReader):
    name = "sunrgbd"
    description = "SUN RGB-D scene folder: image/, depth/ (bit-rotated mm PNG), intrinsics.txt"
    sensor = "SUN RGB-D RGB-D camera (Kinect v1/v2, RealSense or Xtion)"
    supersedes = ("kinect-mm",)
    scale_from_layout = True
    registration = "SUN RGB-D: depth registered to the colour image by the dataset"
    sensor_range_m = (0.2, 10.0)

    def detect(self, source: Path) -> bool:
        return (is_dir(source) and is_dir(source / "image") and is_dir(source / "depth")
                and is_file(source / "intrinsics.txt"))

    def intrinsics(self, source: Path, opts: IngestOptions) -> dict | None:
        if opts.intrinsics is None and is_file(source / "intrinsics.txt"):
            return read_intrinsics_txt(source / "intrinsics.txt")
        return folder_intrinsics(source, opts)

    def pairs(self, source: Path):
        cdir = _color_dir(source)
        colors = [p for p in _files(cdir) if _is_image_name(p)] if cdir else []
        depths = [p for p in _files(source / "depth") if _is_image_name(p)]
        if len(colors) == 1 and len(depths) == 1:
            junk = [p for p in _files(cdir) + _files(source / "depth") if not _is_image_name(p)]
            return [(colors[0], depths[0])], junk
        return super().pairs(source)

    def decide_scale(self, source: Path, opts: IngestOptions, intr, depth_paths) -> dict:
        if opts.depth_scale:
            raise SourceError(
                f"{display_path(source)}: --depth-scale does not apply to SUN RGB-D: its depth is millimetres rotated "
                f"by 3 bits, decoded as mm = (d >> 3) | (d << 13); a linear scale such as 8000 is wrong by up to "
                f"8.19 m beyond 8.192 m")
        return stated(1000.0, "layout", "SUN RGB-D: 16-bit millimetres rotated by 3 bits, mm = (d >> 3) | (d << 13), "
                                        "metres = mm / 1000")

    def decode(self, raw: np.ndarray, info: dict) -> tuple[np.ndarray, str]:
        mm = sun_rotate(raw)
        return (mm.astype(np.float32) / np.float32(1000.0),
                "SUN RGB-D bit-rotated millimetres: mm = (d >> 3) | (d << 13), metres = mm / 1000, 0 = invalid")

    def raw_to_metres(self, scale: float) -> float | None:
        return None  # not a linear scale of the raw values
