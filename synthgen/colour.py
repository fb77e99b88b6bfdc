"""Colour: sRGB transfer functions both ways, Rec. 709 luminance, the view transform from linear
scene-referred RGB to display values, P3 → Rec. 709 primaries, and the depth colour map of previews.

Sources:
- sRGB transfer functions: IEC 61966-2-1:1999 (encode ``12.92 x`` below 0.0031308, else
  ``1.055 x^(1/2.4) - 0.055``; decode ``v / 12.92`` below 0.04045, else ``((v + 0.055) / 1.055)^2.4``).
- Luminance weights: ITU-R BT.709 (``Y = 0.2126 R + 0.7152 G + 0.0722 B``), which sRGB shares.
- Display P3 → Rec. 709: computed from the primaries' chromaticities (P3: R .680/.320, G .265/.690,
  B .150/.060; Rec. 709: R .64/.33, G .30/.60, B .15/.06; both D65).
"""

from __future__ import annotations

import numpy as np

REC709_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
"""Rec. 709 / sRGB luminance weights of linear R, G, B."""

TONE_CURVES = ("clip", "reinhard")

P3_TO_REC709 = np.array([[1.2249401, -0.2249404, 0.0],
                         [-0.0420569, 1.0420571, 0.0],
                         [-0.0196376, -0.0786361, 1.0982735]], dtype=np.float32)
"""Linear Display P3 (D65) → linear Rec. 709/sRGB primaries (3×3, applied as ``rgb @ P3_TO_REC709.T``)."""


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) linear RGB → (...) float32 Rec. 709 luminance."""
    return (np.asarray(rgb, np.float32) @ REC709_LUMA).astype(np.float32)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear values → sRGB-encoded [0, 1] (clipped to [0, 1] first); same shape, float."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] → linear (float32, same shape)."""
    x = np.asarray(encoded, np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


_SRGB8_LUT = srgb_decode(np.arange(256) / 255.0)


def srgb8_to_linear(rgb8: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 sRGB-encoded → (H, W, 3) float32 linear (a 256-entry table of :func:`srgb_decode`)."""
    return _SRGB8_LUT[rgb8]


def linear_to_srgb8(rgb: np.ndarray) -> np.ndarray:
    """Linear float RGB → uint8 sRGB (clipped to [0, 1], rounded)."""
    return (srgb_encode(rgb) * 255 + 0.5).astype(np.uint8)


def view_transform(rgb: np.ndarray, exposure_ev: float = 0.0, tone: str = "clip") -> np.ndarray:
    """Linear scene-referred RGB → display sRGB-encoded values.

    Args:
        rgb: (H, W, 3) float, linear.
        exposure_ev: exposure in stops (multiplies by ``2 ** exposure_ev``).
        tone: ``"clip"`` (identity, then clip to [0, 1]) or ``"reinhard"`` (``x / (1 + x)``).

    Returns:
        (H, W, 3) float32 in [0, 1], sRGB-encoded (IEC 61966-2-1).

    Raises:
        ValueError: unknown ``tone``.
    """
    x = np.asarray(rgb, dtype=np.float32) * np.float32(2.0 ** exposure_ev)
    x = np.nan_to_num(x, nan=0.0, posinf=1e6, neginf=0.0)
    if tone == "reinhard":
        x = np.maximum(x, 0) / (1.0 + np.maximum(x, 0))
    elif tone != "clip":
        raise ValueError(f"tone curve {tone!r}: expected one of {TONE_CURVES}")
    return srgb_encode(x).astype(np.float32)


def rgb_to_8bit(rgb: np.ndarray, exposure_ev: float = 0.0, tone: str = "clip") -> np.ndarray:
    """(H, W, 3) linear float → (H, W, 3) uint8 through :func:`view_transform`."""
    return np.floor(view_transform(rgb, exposure_ev, tone) * 255.0 + 0.5).astype(np.uint8)


def colourise_depth(depth: np.ndarray) -> np.ndarray:
    """(H, W) metres → (H, W, 3) uint8 matplotlib ``turbo`` colours between the 1st and 99th
    percentile of valid depth; invalid (<= 0) pixels black."""
    from matplotlib import colormaps

    valid = depth > 0
    out = np.zeros(depth.shape + (3,), np.uint8)
    if valid.any():
        lo, hi = np.percentile(depth[valid], [1, 99])
        t = np.clip((depth - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = (colormaps["turbo"](t)[..., :3] * 255).astype(np.uint8)
        out[valid] = rgb[valid]
    return out
