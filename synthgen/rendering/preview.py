"""PNG previews for people: RGB (tone-mapped) | colourised depth | mask, side by side.

View transform for RGB: linear values clipped to [0, 1] then sRGB-encoded (IEC 61966-2-1).
Depth is colourised with matplotlib's ``turbo`` colormap between the 1st and 99th percentile of
valid depth; invalid (0) pixels are black.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..atomic import atomic_path
from ..colour import colourise_depth, srgb_encode


def preview_image(rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, 3W, 3) uint8 strip: sRGB colour | colourised depth | mask (grey)."""
    c = (srgb_encode(rgb) * 255 + 0.5).astype(np.uint8)
    m = (np.clip(mask, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.concatenate([c, colourise_depth(depth), np.repeat(m[..., None], 3, -1)], axis=1)


def save_preview(path: str | os.PathLike, rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray) -> None:
    """Write :func:`preview_image` as PNG atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(preview_image(rgb, depth, mask)).save(tmp, format="PNG")
