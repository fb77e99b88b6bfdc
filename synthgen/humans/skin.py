"""Skin and hair colour models (pure numpy).

Skin: a two-parameter (melanin, blood) spectral model in the spirit of Jimenez et al. 2010, "A
practical appearance model for dynamic facial color" (ACM TOG 29(6)), who drive skin colour by
melanin and haemoglobin concentrations through the two-layer model of Donner & Jensen 2006 ("A
spectral BSSRDF for shading human skin", EGSR). Here a cheaper closed form is used:

- epidermis (thickness ``d_epi`` = 100 um, Jacques' typical 60-100 um) absorbs with
  ``mu_a,epi = f_mel * mu_a,mel + (1 - f_mel) * mu_a,base``, melanin
  ``mu_a,mel(l) = 6.6e11 * l^-3.33 cm^-1`` and melanin-free tissue
  ``mu_a,base(l) = 0.244 + 85.3 exp(-(l - 154) / 66.2) cm^-1`` (l in nm; S. L. Jacques, "Skin
  optics", Oregon Medical Laser Center News, 1998; "Optical properties of biological tissues: a
  review", Phys. Med. Biol. 58, 2013);
- dermis absorbs with ``mu_a,der = f_blood * mu_a,blood + (1 - f_blood) * mu_a,base``, whole blood
  at 150 g/l haemoglobin (64 500 g/mol) with oxygen saturation ``S``:
  ``mu_a,blood = ln(10) * 150 / 64500 * (S e_HbO2 + (1 - S) e_Hb)``, molar extinction ``e`` from
  S. Prahl's compilation (OMLC, "Optical absorption of hemoglobin", 1999), log-interpolated;
  reduced scattering ``mu_s' = 45.3 (l / 500)^-1.29 cm^-1`` (Jacques 2013, skin average);
- dermal diffuse reflectance from the dipole approximation (Jensen et al. 2001, "A practical
  model for subsurface light transport"): ``R_d = a'/2 (1 + exp(-4/3 A sqrt(3(1-a')))) exp(-sqrt(3(1-a')))``,
  ``a' = mu_s' / (mu_s' + mu_a)``, ``A = (1 + F_dr) / (1 - F_dr)`` with ``F_dr = 0.44`` (n = 1.4);
- total ``R = r_s exp(-2 mu_a,epi d_s) + (1 - r_s) T^2 R_d`` with ``T = exp(-mu_a,epi d_epi)``: a
  fraction ``r_s = 0.08`` of the light is scattered back by the upper epidermis (stratum corneum)
  after crossing only ``d_s = 5 um`` of it twice (without this term very dark skin comes out with no
  blue at all and light skin too saturated, which measured spectra do not show). ``d_epi``, ``r_s``
  and ``d_s`` were fitted so that the model reproduces the two skin patches of the ColorChecker
  (McCamy, Marcus & Davidson 1976; sRGB "light skin" 194/150/130 at melanin ~1.6 %, blood ~2.5 %,
  and "dark skin" 115/82/68 at melanin ~28 %) within a few percent per channel;
- ``R(l)`` (400..700 nm, 10 nm) -> CIE XYZ with the analytic colour matching functions of Wyman,
  Sloan & Shirley 2013 (JCGT 2(2)) under a 6504 K black body (~D65) -> linear sRGB (IEC 61966-2-1
  matrix), normalised so that R = 1 gives (1, 1, 1).

Melanin volume fractions cover the human range: ~1-6 % light, 11-16 % medium, 18-43 % dark skin
(Jacques 1998); 0.5-50 % are accepted. Blood volume fraction 0.2-7 % (typical 0.2-2 % here).

Hair: the melanin parametrisation of Blender's Principled Hair BSDF / Chiang et al. 2016 ("A
practical and controllable hair and fur model for production path tracing", CGF 35(2)):
``q = -ln(1 - melanin)``, eumelanin ``q (1 - redness)``, pheomelanin ``q redness``, absorption
``sigma_a = eu (0.419, 0.697, 1.37) + pheo (0.187, 0.4, 1.05)``, colour
``c = exp(-f(beta) sqrt(sigma_a))`` with ``f(0.3) = 5.889`` (Chiang's inverse mapping), mixed with a
grey-white fibre albedo by the greyness fraction.
"""

from __future__ import annotations

import numpy as np

LAMBDA_NM = np.arange(400.0, 701.0, 10.0)
EPIDERMIS_THICKNESS_CM = 0.01
SURFACE_SCATTER = 0.08
SURFACE_LAYER_CM = 0.0005  # light scattered back by the upper epidermis crosses 5 um of it twice
F_DR = 0.44
MELANIN_RANGE = (0.005, 0.5)
BLOOD_RANGE = (0.001, 0.07)
# Jensen et al. 2001, measured skin ("skin1") diffuse mean free path, mm (R, G, B)
SKIN_MEAN_FREE_PATH_MM = (3.67, 1.37, 0.68)

# Prahl (OMLC) molar extinction coefficients, cm^-1 / (mol/l)
_HB_NM = np.array([400.0, 450.0, 500.0, 550.0, 600.0, 650.0, 700.0])
_HBO2 = np.array([266232.0, 62816.0, 20932.8, 43016.0, 3200.0, 368.0, 290.0])
_HB = np.array([223296.0, 103292.0, 20862.0, 53412.0, 14677.2, 3750.12, 1794.28])

_XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])


def _g(lam, mu, s1, s2):
    s = np.where(lam < mu, s1, s2)
    return np.exp(-0.5 * ((lam - mu) / s) ** 2)


def _cmf(lam):
    x = 1.056 * _g(lam, 599.8, 37.9, 31.0) + 0.362 * _g(lam, 442.0, 16.0, 26.7) - 0.065 * _g(lam, 501.1, 20.4, 26.2)
    y = 0.821 * _g(lam, 568.8, 46.9, 40.5) + 0.286 * _g(lam, 530.9, 16.3, 31.1)
    z = 1.217 * _g(lam, 437.0, 11.8, 36.0) + 0.681 * _g(lam, 459.0, 26.0, 13.8)
    return np.stack([x, y, z])


def _blackbody(lam_nm, t_k=6504.0):
    h, c, k = 6.62607015e-34, 2.99792458e8, 1.380649e-23
    lam = lam_nm * 1e-9
    return 1.0 / (lam ** 5 * (np.exp(h * c / (lam * k * t_k)) - 1.0))


_CMF = _cmf(LAMBDA_NM) * _blackbody(LAMBDA_NM)
_WHITE_RGB = _XYZ_TO_SRGB @ _CMF.sum(1)


def reflectance_to_linear_srgb(refl: np.ndarray) -> np.ndarray:
    """(3,) linear sRGB of a reflectance spectrum sampled at :data:`LAMBDA_NM` (white -> 1, 1, 1)."""
    return (_XYZ_TO_SRGB @ (_CMF @ np.asarray(refl, dtype=np.float64))) / _WHITE_RGB


def blood_absorption(saturation: float = 0.75) -> np.ndarray:
    """Whole-blood absorption coefficient (cm^-1) at :data:`LAMBDA_NM`."""
    eo = np.exp(np.interp(LAMBDA_NM, _HB_NM, np.log(_HBO2)))
    ed = np.exp(np.interp(LAMBDA_NM, _HB_NM, np.log(_HB)))
    return np.log(10.0) * 150.0 / 64500.0 * (saturation * eo + (1.0 - saturation) * ed)


def skin_reflectance(melanin: float, blood: float, saturation: float = 0.75) -> np.ndarray:
    """Diffuse reflectance spectrum (at :data:`LAMBDA_NM`) of skin with melanin volume fraction
    ``melanin`` (epidermis) and blood volume fraction ``blood`` (dermis); see module docstring.

    Raises:
        ValueError: fractions outside [0, 1] or saturation outside [0, 1].
    """
    for n, v in (("melanin", melanin), ("blood", blood), ("saturation", saturation)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{n} must lie in [0, 1], got {v}")
    lam = LAMBDA_NM
    mua_mel = 6.6e11 * lam ** -3.33
    mua_base = 0.244 + 85.3 * np.exp(-(lam - 154.0) / 66.2)
    mua_epi = melanin * mua_mel + (1.0 - melanin) * mua_base
    mua_der = blood * blood_absorption(saturation) + (1.0 - blood) * mua_base
    mus = 45.3 * (lam / 500.0) ** -1.29
    a = mus / (mus + mua_der)
    A = (1.0 + F_DR) / (1.0 - F_DR)
    s = np.sqrt(3.0 * (1.0 - a))
    rd = a / 2.0 * (1.0 + np.exp(-4.0 / 3.0 * A * s)) * np.exp(-s)
    t = np.exp(-mua_epi * EPIDERMIS_THICKNESS_CM)
    rs = SURFACE_SCATTER * np.exp(-2.0 * mua_epi * SURFACE_LAYER_CM)
    return rs + (1.0 - SURFACE_SCATTER) * t * t * rd


def skin_albedo(melanin: float, blood: float, saturation: float = 0.75) -> tuple[float, float, float]:
    """Linear-sRGB diffuse albedo (each in [0.002, 1]) of :func:`skin_reflectance`."""
    rgb = np.clip(reflectance_to_linear_srgb(skin_reflectance(melanin, blood, saturation)), 0.002, 1.0)
    return tuple(float(x) for x in rgb)


EUMELANIN_SIGMA = np.array([0.419, 0.697, 1.37])
PHEOMELANIN_SIGMA = np.array([0.187, 0.4, 1.05])
GREY_HAIR_ALBEDO = 0.55


def hair_albedo(melanin: float, redness: float, greyness: float = 0.0) -> tuple[float, float, float]:
    """Linear-sRGB hair colour (see module docstring) for melanin and redness in [0, 1] and a grey
    (unpigmented) fibre fraction ``greyness`` in [0, 1].

    Raises:
        ValueError: an argument outside [0, 1].
    """
    for n, v in (("melanin", melanin), ("redness", redness), ("greyness", greyness)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{n} must lie in [0, 1], got {v}")
    q = -np.log(max(1.0 - melanin, 1e-4))
    sigma = q * (1.0 - redness) * EUMELANIN_SIGMA + q * redness * PHEOMELANIN_SIGMA
    c = np.exp(-5.889 * np.sqrt(sigma))
    c = (1.0 - greyness) * c + greyness * GREY_HAIR_ALBEDO
    return tuple(float(x) for x in np.clip(c, 0.002, 1.0))
