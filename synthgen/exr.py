"""OpenEXR read/write with the ``OpenEXR`` Python package (OpenEXR >= 3.3 ``OpenEXR.File`` API).

Files are scanline images with lossless ZIP compression. Channel names follow the EXR convention:
``R``, ``G``, ``B`` (optionally ``A``) for colour, ``Z`` for depth, ``Y`` for a single-channel
(luminance-like) mask. File format reference: https://openexr.com/en/latest/OpenEXRFileLayout.html
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import OpenEXR

from .atomic import atomic_path
from .errors import ExrError  # noqa: F401 (re-exported)


DEPTH_CHANNEL = "Y"
"""Channel of single-channel depth files (sample format 2). A lone ``Z`` channel, the EXR convention
for depth, reads back as zeros in OpenCV (``cv2.imread``, any flag) and as garbage in Blender's image
loader, with no error; a lone ``Y`` channel reads exactly in OpenCV, Blender, OpenImageIO, imageio
(OpenCV plug-in) and the OpenEXR package (tested in tests/test_readers.py)."""
LEGACY_DEPTH_CHANNEL = "Z"
"""Depth channel of sample format 1 (read, never written)."""


def depth_channel(chans: Mapping[str, np.ndarray], what: str = "depth EXR") -> np.ndarray:
    """The depth array of a depth file's channels: :data:`DEPTH_CHANNEL`, else the format-1 ``Z``.

    Raises:
        ExrError: neither channel is present (the message names ``what`` and the channels found).
    """
    for c in (DEPTH_CHANNEL, LEGACY_DEPTH_CHANNEL):
        if c in chans:
            return chans[c]
    raise ExrError(f"{what}: no depth channel ({DEPTH_CHANNEL} or {LEGACY_DEPTH_CHANNEL}); found {sorted(chans)}")


def camera_attributes(K: np.ndarray, camera_to_world: np.ndarray | None) -> dict[str, object]:
    """EXR header attributes that tell compositing tools where the camera was.

    - ``worldToCamera`` (M44f; OpenEXR standard attribute): world → camera in OpenEXR's
      convention (Imath row vectors, ``p_cam = p_world · M``; camera looks down -Z with +Y up), i.e.
      ``inverse(c2w_opencv · diag(1, -1, -1, 1))ᵀ``. Written only when the pose is known.
    - ``intrinsicsK`` (M33f): K in pixels, OpenCV convention (column vectors, centre of the top-left
      pixel at (0, 0)), as in the JSON record.

    Source: OpenEXR "Standard Attributes" (https://openexr.com/en/latest/StandardAttributes.html).
    """
    attrs: dict[str, object] = {"intrinsicsK": np.asarray(K, np.float32).reshape(3, 3)}
    if camera_to_world is not None:
        c2w_gl = np.asarray(camera_to_world, np.float64) @ np.diag([1.0, -1.0, -1.0, 1.0])
        # contiguous: the OpenEXR binding copies the raw buffer and ignores numpy strides
        attrs["worldToCamera"] = np.ascontiguousarray(np.linalg.inv(c2w_gl).T, dtype=np.float32)
    return attrs


def write_exr(path: str | os.PathLike, channels: Mapping[str, np.ndarray],
              attributes: Mapping[str, object] | None = None) -> None:
    """Write ``channels`` (name -> 2-D array, all the same H×W shape) to ``path`` atomically.

    Arrays of dtype float16 are stored as HALF, float32 as FLOAT; other dtypes are rejected.
    Compression is ZIP (lossless). ``attributes`` are extra header attributes (numpy (3, 3) / (4, 4)
    float32 arrays become M33f / M44f, ``str`` a string attribute).

    Raises:
        ValueError: channel arrays are not 2-D, differ in shape, or have an unsupported dtype.
    """
    shapes = {a.shape for a in channels.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"{path}: channels must be 2-D arrays of one shape, got {sorted(shapes)}")
    data = {}
    for name, arr in channels.items():
        if arr.dtype not in (np.float16, np.float32):
            raise ValueError(f"{path}: channel {name!r} has dtype {arr.dtype}, expected float16 or float32")
        data[name] = np.ascontiguousarray(arr)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, **(attributes or {})}
    with atomic_path(path) as tmp:
        with OpenEXR.File(header, data) as f:
            f.write(str(tmp))


def read_exr(path: str | os.PathLike, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Read an EXR file and return ``{channel name: H×W array}`` in the stored dtype.

    Args:
        path: EXR file.
        names: channels that must be present; ``None`` returns all channels.

    Raises:
        ExrError: the file is missing, not a readable EXR, or lacks one of ``names``.
    """
    path = Path(path)
    chans = _channels(str(path), str(path))
    if names is not None:
        missing = [n for n in names if n not in chans]
        if missing:
            raise ExrError(f"{path}: missing channel(s) {missing}; found {sorted(chans)}")
        chans = {n: chans[n] for n in names}
    return chans


def read_exr_bytes(data: bytes, what: str = "EXR") -> dict[str, np.ndarray]:
    """Decode an in-memory EXR (e.g. a shard member) into ``{channel: (H, W) array}`` (stored dtype).

    Raises:
        ExrError: the bytes are not a readable EXR (the message names ``what``).
    """
    return _channels(io.BytesIO(data), what)


def _channels(source, what: str) -> dict[str, np.ndarray]:
    try:
        with OpenEXR.File(source, separate_channels=True) as f:
            return {name: np.asarray(ch.pixels) for name, ch in f.channels().items()}
    except Exception as exc:  # OpenEXR raises bare RuntimeError/Exception types
        raise ExrError(f"{what}: not a readable EXR file ({exc})") from exc
