"""Configuration of procedural MakeHuman subjects (pydantic v2, ``extra="forbid"``).

One entry of a config's ``subjects:`` list::

    subjects:
      - kind: makehuman
        id: mh                 # identity j gets subject_id f"{id}_{j:05d}"
        identities: 500
        weight: 1.0
        phenotype:
          sex: {dist: uniform, low: 0, high: 1}          # 0 female .. 1 male (a blend)
          age_years: {dist: normal, mean: 38, std: 20, low: 6, high: 85}
          height_z: {dist: normal, mean: 0, std: 1, low: -2.5, high: 2.5}
          # height_m: {dist: uniform, low: 1.5, high: 1.9}  # overrides the age/sex curve
          muscle: {dist: normal, mean: 0.5, std: 0.15, low: 0, high: 1}
          weight: {dist: normal, mean: 0.5, std: 0.15, low: 0, high: 1}
          proportions: {dist: normal, mean: 0.5, std: 0.15, low: 0, high: 1}
          ethnicity: {mode: dirichlet, african: 0.25, asian: 0.25, caucasian: 0.25}
        wardrobe:
          hair: {styles: [short02, short04, braid01], weights: null, colour: {red_probability: 0.06}}
          bald_probability: 0.35
          eyebrows: [eyebrow001, eyebrow005, eyebrow008, eyebrow012]
          tops: [male_casualsuit05, male_casualsuit06, male_elegantsuit01, female_elegantsuit01]
          top_weights: [1, 1, 1, 2.5]
          shoes: [shoes01, shoes04]
          sex_bias: 0.9
        eyes: {brown_probability: {african: 0.98, asian: 0.97, caucasian: 0.4}}
        skin: {melanin_log_sd: 0.5, roughness: {dist: normal, mean: 0.5, std: 0.05, low: 0.35, high: 0.7}}

Distribution values use :mod:`synthgen.distributions` (a bare number is a constant).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..distributions import Choice, Distribution, LogUniform, Normal
from . import assets
from .macro import MAX_AGE_YEARS, MIN_AGE_YEARS


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _normal(mean, std, low, high):
    return Normal(dist="normal", mean=mean, std=std, low=low, high=high)


def _check_range(name: str, dist, lo: float, hi: float) -> None:
    a, b = dist.bounds()
    try:
        ok = a is not None and b is not None and lo <= float(a) and float(b) <= hi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be bounded within [{lo}, {hi}]; its distribution gives [{a}, {b}] "
                         "(add low/high to a normal distribution)")


# U-shaped blend of the two sexes: mostly clearly female or male, some androgynous blends
DEFAULT_SEX = Choice(dist="choice", values=[round(0.05 * i, 2) for i in range(21)],
                     weights=[6, 5, 4, 3, 2, 1.5, 1, 0.7, 0.5, 0.4, 0.4, 0.4, 0.5, 0.7, 1, 1.5, 2, 3, 4, 5, 6])


class EthnicitySpec(_Model):
    """The african/asian/caucasian blend: ``mode: dirichlet`` draws it from a Dirichlet with these
    concentrations; ``mode: fixed`` uses these weights (normalised to sum 1)."""

    mode: Literal["dirichlet", "fixed"] = "dirichlet"
    african: float = Field(0.25, ge=0)
    asian: float = Field(0.25, ge=0)
    caucasian: float = Field(0.25, ge=0)

    @model_validator(mode="after")
    def _check(self):
        v = (self.african, self.asian, self.caucasian)
        if sum(v) <= 0:
            raise ValueError("ethnicity weights need a positive sum")
        if self.mode == "dirichlet" and min(v) <= 0:
            raise ValueError("Dirichlet concentrations must all be > 0 (use mode: fixed for a zero weight)")
        return self


class PhenotypeSpec(_Model):
    """Body shape. ``height_m`` (metres) overrides the age/sex height curve
    (:mod:`synthgen.humans.stature`), which is otherwise scaled by ``height_z`` (a standard score).
    ``height_slider_per_sd``: MakeHuman's height slider (shape only: leg length and head size
    relative to stature; the metric size always comes from the sampled height) is
    ``0.5 + height_slider_per_sd * z`` (z from ``height_m`` and the curve when it is given)."""

    sex: Distribution = Field(default_factory=lambda: DEFAULT_SEX)
    age_years: Distribution = Field(default_factory=lambda: _normal(38.0, 20.0, 6.0, 85.0))
    height_m: Distribution | None = None
    height_z: Distribution = Field(default_factory=lambda: _normal(0.0, 1.0, -2.5, 2.5))
    muscle: Distribution = Field(default_factory=lambda: _normal(0.5, 0.15, 0.0, 1.0))
    weight: Distribution = Field(default_factory=lambda: _normal(0.5, 0.15, 0.0, 1.0))
    proportions: Distribution = Field(default_factory=lambda: _normal(0.5, 0.15, 0.0, 1.0))
    ethnicity: EthnicitySpec = EthnicitySpec()
    height_slider_per_sd: float = Field(0.08, ge=0, le=0.25)

    @model_validator(mode="after")
    def _check(self):
        _check_range("phenotype.sex", self.sex, 0.0, 1.0)
        _check_range("phenotype.age_years", self.age_years, MIN_AGE_YEARS, MAX_AGE_YEARS)
        for n in ("muscle", "weight", "proportions"):
            _check_range(f"phenotype.{n}", getattr(self, n), 0.0, 1.0)
        if self.height_m is not None:
            _check_range("phenotype.height_m", self.height_m, 0.4, 2.6)
        else:
            _check_range("phenotype.height_z", self.height_z, -6.0, 6.0)
        return self


class HairColourSpec(_Model):
    """Hair colour (see :func:`synthgen.humans.skin.hair_albedo`). ``melanin``/``redness``
    override the defaults (melanin ~ normal around ``0.55 caucasian + 0.88 (african + asian)`` of
    the ethnic blend, sd 0.15; redness uniform 0.05-0.35, or 0.75-1 with melanin 0.3-0.6 with
    probability ``red_probability * caucasian``). Greyness grows from age ``grey_onset_years`` over
    ``grey_span_years`` (power 1.5) times a per-person factor uniform in [0.4, 1]."""

    melanin: Distribution | None = None
    redness: Distribution | None = None
    red_probability: float = Field(0.06, ge=0, le=1)
    grey_onset_years: Distribution = Field(default_factory=lambda: _normal(42.0, 8.0, 25.0, 70.0))
    grey_span_years: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _check(self):
        for n in ("melanin", "redness"):
            d = getattr(self, n)
            if d is not None:
                _check_range(f"hair.colour.{n}", d, 0.0, 1.0)
        return self


def _check_names(field: str, names: list[str], kind: str, weights: list[float] | None) -> None:
    known = assets.proxies_of_kind(kind)
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"{field}: unknown {kind} {bad}; known: {known}")
    if weights is not None:
        if len(weights) != len(names):
            raise ValueError(f"{field}: {len(names)} names but {len(weights)} weights")
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"{field}: weights must be >= 0 with a positive sum")


class HairSpec(_Model):
    styles: list[str] = Field(default_factory=lambda: ["short02", "short04", "braid01"], min_length=1)
    weights: list[float] | None = None
    colour: HairColourSpec = HairColourSpec()

    @model_validator(mode="after")
    def _check(self):
        _check_names("wardrobe.hair.styles", self.styles, "hair", self.weights)
        return self


class WardrobeSpec(_Model):
    """What is worn. Choices are weighted by ``weights x (1 - sex_bias |sex - affinity|)`` where
    ``affinity`` is the asset's sex affinity (0 female-typical .. 1 male-typical, see
    :data:`synthgen.humans.assets.PROXIES`); any combination stays possible while ``sex_bias < 1``.
    ``bald_probability`` is the chance of no hair for a fully male subject of 65 or more; it scales
    with the sex value and with ``(age - 25) / 40`` clipped to [0, 1]. Empty ``tops``/``shoes``
    lists mean none worn."""

    hair: HairSpec = HairSpec()
    bald_probability: float = Field(0.35, ge=0, le=1)
    eyebrows: list[str] = Field(default_factory=lambda: assets.proxies_of_kind("eyebrows"), min_length=1)
    eyelashes: list[str] = Field(default_factory=lambda: ["eyelashes01"], min_length=1)
    tops: list[str] = Field(default_factory=lambda: ["male_casualsuit05", "male_casualsuit06",
                                                     "male_elegantsuit01", "female_elegantsuit01"])
    top_weights: list[float] | None = Field(default_factory=lambda: [1.0, 1.0, 1.0, 2.5])
    shoes: list[str] = Field(default_factory=lambda: ["shoes01", "shoes04"])
    shoe_weights: list[float] | None = None
    sex_bias: float = Field(0.9, ge=0, le=1)
    teeth: bool = True

    @model_validator(mode="after")
    def _check(self):
        _check_names("wardrobe.eyebrows", self.eyebrows, "eyebrows", None)
        _check_names("wardrobe.eyelashes", self.eyelashes, "eyelashes", None)
        _check_names("wardrobe.tops", self.tops, "top", self.top_weights if self.tops else None)
        _check_names("wardrobe.shoes", self.shoes, "shoes", self.shoe_weights if self.shoes else None)
        return self


class EyesSpec(_Model):
    """Iris colour: brown with probability ``sum_e ethnicity_e * brown_probability[e]``, else one
    of ``light_colours`` (uniformly)."""

    brown_probability: dict[Literal["african", "asian", "caucasian"], float] = Field(
        default_factory=lambda: {"african": 0.98, "asian": 0.97, "caucasian": 0.4})
    light_colours: list[str] = Field(default_factory=lambda: ["blue", "bluegreen", "deepblue", "lightblue"],
                                     min_length=1)

    @model_validator(mode="after")
    def _check(self):
        if set(self.brown_probability) != {"african", "asian", "caucasian"}:
            raise ValueError("eyes.brown_probability needs african, asian and caucasian")
        if any(not 0 <= p <= 1 for p in self.brown_probability.values()):
            raise ValueError("eyes.brown_probability values must lie in [0, 1]")
        bad = [c for c in self.light_colours if c not in assets.IRIS_TEXTURES or c == "brown"]
        if bad:
            raise ValueError(f"eyes.light_colours: unknown {bad}; known: "
                             f"{sorted(set(assets.IRIS_TEXTURES) - {'brown'})}")
        return self


class SkinSpec(_Model):
    """Skin appearance (see :mod:`synthgen.humans.skin`). Melanin volume fraction: ``melanin``
    when given, else log-normal around the ethnic blend of ``melanin_anchors`` (geometric mean
    weighted by the blend) with log-sd ``melanin_log_sd``, clipped to [0.005, 0.5]. Blood volume
    fraction, oxygen saturation, roughness (Principled BSDF) and a factor on the measured skin
    mean free path (Blender subsurface radius) are distributions. ``detail_strength`` in [0, 1]
    scales the luminance detail of the vendored skin texture."""

    melanin: Distribution | None = None
    melanin_anchors: dict[Literal["african", "asian", "caucasian"], float] = Field(
        default_factory=lambda: {"african": 0.28, "asian": 0.05, "caucasian": 0.012})
    melanin_log_sd: float = Field(0.5, ge=0, le=2)
    blood_fraction: Distribution = Field(default_factory=lambda: LogUniform(dist="loguniform", low=0.01, high=0.045))
    oxygen_saturation: Distribution = Field(default_factory=lambda: _normal(0.75, 0.05, 0.6, 0.9))
    roughness: Distribution = Field(default_factory=lambda: _normal(0.5, 0.05, 0.35, 0.7))
    subsurface_scale: Distribution = Field(default_factory=lambda: _normal(1.0, 0.1, 0.6, 1.4))
    detail_strength: float = Field(0.7, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self):
        if self.melanin is not None:
            _check_range("skin.melanin", self.melanin, 0.005, 0.5)
        if set(self.melanin_anchors) != {"african", "asian", "caucasian"} or \
                any(not 0.005 <= v <= 0.5 for v in self.melanin_anchors.values()):
            raise ValueError("skin.melanin_anchors needs african, asian, caucasian in [0.005, 0.5]")
        _check_range("skin.blood_fraction", self.blood_fraction, 0.001, 0.07)
        _check_range("skin.oxygen_saturation", self.oxygen_saturation, 0.0, 1.0)
        _check_range("skin.roughness", self.roughness, 0.0, 1.0)
        _check_range("skin.subsurface_scale", self.subsurface_scale, 0.0, 5.0)
        return self


class HumansSpec(_Model):
    """A ``subjects:`` entry of ``kind: makehuman``: ``identities`` procedural people with subject
    ids ``f"{id}_{j:05d}"``; ``weight`` is the entry's relative frequency among subjects."""

    kind: Literal["makehuman"] = "makehuman"
    id: str = Field("mh", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    identities: int = Field(ge=1)
    weight: float = Field(1.0, gt=0)
    phenotype: PhenotypeSpec = PhenotypeSpec()
    wardrobe: WardrobeSpec = WardrobeSpec()
    eyes: EyesSpec = EyesSpec()
    skin: SkinSpec = SkinSpec()

    def subject_id(self, j: int) -> str:
        """``f"{id}_{j:05d}"``."""
        return f"{self.id}_{j:05d}"
