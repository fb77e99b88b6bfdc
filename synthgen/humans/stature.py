"""Expected standing height by age and sex (pure Python).

Sources:

- ages 5-19 y: WHO Growth Reference 2007 (de Onis et al., Bull. WHO 85(9), 2007), height-for-age
  medians at whole years (boys / girls, cm);
- below 5 y: WHO Child Growth Standards 2006 medians at 1-4 y;
- adults: the 19-year WHO medians (176.5 cm men, 163.2 cm women) held constant to age 40, then an
  age-related loss of stature of about 0.08 cm/y to 60 y and 0.2 cm/y after (approximately the
  longitudinal losses of Sorkin, Muller & Andres 1999, Am. J. Epidemiol. 150(9): ~1-2 cm by 60,
  5-7 cm by 85);
- spread: a coefficient of variation of 4 % (WHO SDs are ~4 % of the median at school ages; adult
  SDs of ~7 cm men / ~6.5 cm women, NCD-RisC 2016, give about the same).

Sex blends (``sex`` in [0, 1], 0 female, 1 male) interpolate the two curves linearly.
"""

from __future__ import annotations

import numpy as np

_AGES = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19], dtype=float)
_BOYS_CM = np.array([75.7, 87.8, 96.1, 103.3, 110.3, 116.0, 121.7, 127.3, 132.6, 137.8, 143.1, 149.1,
                     156.0, 163.2, 169.0, 172.9, 175.2, 176.1, 176.5])
_GIRLS_CM = np.array([74.0, 86.4, 95.1, 102.7, 109.4, 115.1, 120.8, 126.6, 132.5, 138.6, 145.0, 151.2,
                      156.4, 159.8, 161.7, 162.5, 162.9, 163.1, 163.2])
HEIGHT_CV = 0.04


def _ageing_loss_cm(age: float) -> float:
    if age <= 40:
        return 0.0
    if age <= 60:
        return 0.08 * (age - 40)
    return 0.08 * 20 + 0.2 * (age - 60)


def median_height_m(age_years: float, sex: float) -> float:
    """Median standing height in metres for an age (years, >= 1) and sex blend (0 female .. 1 male)."""
    a = max(1.0, float(age_years))
    s = min(max(float(sex), 0.0), 1.0)
    boys = float(np.interp(a, _AGES, _BOYS_CM)) - _ageing_loss_cm(a)
    girls = float(np.interp(a, _AGES, _GIRLS_CM)) - _ageing_loss_cm(a)
    return (s * boys + (1.0 - s) * girls) / 100.0


def height_from_z(age_years: float, sex: float, z: float) -> float:
    """Height in metres ``median * (1 + HEIGHT_CV * z)`` for a standard score ``z``."""
    return median_height_m(age_years, sex) * (1.0 + HEIGHT_CV * float(z))
