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


def write_exr(path: str | os.PathLike, channels: Mapping[str, np.ndarray]) -> None:
    """Write ``channels`` (name -> 2-D array, all the same H×W shape) to ``path`` atomically.

    Arrays of dtype float16 are stored as HALF, float32 as FLOAT; other dtypes are rejected.
    Compression is ZIP (lossless).

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
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
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
