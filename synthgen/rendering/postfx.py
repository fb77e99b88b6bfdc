"""Post-processing of a rendered sample's linear RGB (numpy only, no Blender): auto exposure,
white balance and sensor noise, plus the record sections of the lens effects rendered in Blender
(depth of field, motion blur). Depth and mask are never touched: they stay the clean pinhole
ground truth.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..camera import shake_blur_px
from ..colour import REC709_LUMA

MAX_EXPOSURE_FACTOR = 256.0
"""Auto exposure changes the image by at most ±8 stops (a black or empty subject would ask for more)."""


def apply_exposure(rgb: np.ndarray, mask: np.ndarray, auto: bool, target: float, ev: float,
                   warn_factor: float | None = None) -> dict[str, Any]:
    """Scale linear ``rgb`` (H, W, 3) float32 in place like a camera's auto exposure.

    ``factor = target / median(Y of subject pixels) * 2**ev`` with Rec. 709 luminance
    ``Y = 0.2126 R + 0.7152 G + 0.0722 B`` over pixels with mask > 0.5. The scene is lit only by the
    HDRI and rendering is linear in light, so this equals rendering with HDRI strength × factor.
    The factor is clamped to [1/256, 256] (±8 stops; ``clamped`` says so). Returns the record
    section: mode, target, EV offset, measured median, factor and whether it was clamped, plus a
    ``warning`` (str) when the factor was clamped or lies outside [1 / ``warn_factor``,
    ``warn_factor``]: such a sample usually means a broken (black or white) material or a wrong HDRI.
    """
    if not auto:
        return {"mode": "off", "factor": 1.0}
    sel = mask > 0.5
    lum = rgb[sel] @ REC709_LUMA if sel.any() else np.zeros(0)
    median = float(np.median(lum)) if lum.size else 0.0
    wanted = float(target / median * 2.0 ** ev) if median > 1e-8 else 1.0
    factor = float(np.clip(wanted, 1.0 / MAX_EXPOSURE_FACTOR, MAX_EXPOSURE_FACTOR))
    rgb *= np.float32(factor)
    out = {"mode": "auto", "target_median_luminance": target, "ev": ev,
           "subject_median_luminance_before": median, "factor": factor, "clamped": factor != wanted}
    if lum.size and median <= 1e-8:
        out["warning"] = ("the subject renders black (median luminance 0), so auto exposure cannot help: a black "
                          "material without texture, or a wrong HDRI?")
    elif factor != wanted:
        out["warning"] = (f"auto exposure wanted a factor of {wanted:.4g} and was clamped to {factor:.4g} "
                          f"(subject median luminance {median:.3g}): a black or white material, or a wrong HDRI?")
    elif warn_factor and not 1.0 / warn_factor <= factor <= warn_factor:
        out["warning"] = (f"auto exposure factor {factor:.4g} is outside [1/{warn_factor:g}, {warn_factor:g}] "
                          f"(render.exposure_warn_factor; subject median luminance {median:.3g}): a black or "
                          "white material, or a wrong HDRI?")
    return out


def apply_sensor_effects(rgb: np.ndarray, cr: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """White balance (per-channel linear gains, green 1) and sensor noise on exposed linear ``rgb``.

    Noise is the Gaussian approximation of Poisson-Gaussian sensor noise, ``var = k x + s²``
    (Foi et al., "Practical Poissonian-Gaussian noise modeling", IEEE TIP 2008), seeded by
    ``cr["noise_seed"]``. Returns the new (H, W, 3) float32 array and the record sections.
    """
    sections: dict[str, Any] = {}
    if "wb_gains_rgb" in cr:
        rgb = rgb * np.asarray(cr["wb_gains_rgb"], np.float32)
        sections["white_balance"] = {"gains_rgb": cr["wb_gains_rgb"]}
    if "shot_noise_k" in cr:
        nrng = np.random.default_rng(cr["noise_seed"])
        x = np.maximum(rgb, 0.0)
        std = np.sqrt(cr["shot_noise_k"] * x + cr["read_noise_std"] ** 2)
        rgb = np.maximum(x + nrng.standard_normal(x.shape).astype(np.float32) * std, 0.0).astype(np.float32)
        sections["sensor_noise"] = {"model": "poisson_gaussian_approx", "shot_noise_k": cr["shot_noise_k"],
                                    "read_noise_std": cr["read_noise_std"], "noise_seed": cr["noise_seed"]}
    return rgb, sections


def lens_sections(cr: dict[str, Any], focal_length_mm: float, K: np.ndarray, distance_m: float) -> dict[str, Any]:
    """Record sections of the lens pass: depth of field (thin lens focused at ``distance_m``, metres)
    and camera-shake motion blur (velocities in the camera's OpenCV axes; ``centre_blur_px`` from
    :func:`synthgen.camera.shake_blur_px`)."""
    out: dict[str, Any] = {}
    if "f_stop" in cr:
        out["dof"] = {"f_stop": cr["f_stop"], "focus_distance_m": distance_m,
                      "aperture_diameter_mm": focal_length_mm / cr["f_stop"], "model": "cycles_thin_lens"}
    mb = cr.get("motion_blur")
    if mb:
        w, v, T = mb["angular_velocity_deg_s"], mb["translation_velocity_m_s"], mb["shutter_s"]
        out["motion_blur"] = {
            "model": "camera_shake_constant_velocity", "renderer": "cycles_motion_blur",
            "shutter_s": T, "shutter_position": "centre",
            "axes": "camera_opencv",
            "angular_velocity_deg_s": w, "translation_velocity_m_s": v,
            "angular_speed_deg_s": float(np.linalg.norm(w)), "translation_speed_m_s": float(np.linalg.norm(v)),
            "rotation_during_exposure_deg": float(np.linalg.norm(w)) * T,
            "translation_during_exposure_m": float(np.linalg.norm(v)) * T,
            "centre_blur_px": shake_blur_px(K, distance_m, w, v, T),
        }
    return out
