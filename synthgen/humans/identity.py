"""Identity sampling: every random choice of one procedural person, derived only from (seed, j).

Stream: ``numpy.random.SeedSequence(entropy=seed, spawn_key=(HUMANS_STREAM, j))``. The constant
:data:`HUMANS_STREAM` lies far above any sample index, so it cannot coincide with the per-sample
streams of :mod:`synthgen.sampling` (whose first spawn-key entry is a sample or view index). That
sequence is split with ``SeedSequence.spawn(4)`` into independent child streams for the phenotype,
the skin, the wardrobe and the eyes, so adding a draw to one section never changes the others.
Draw order inside a section is fixed (see :func:`sample_identity`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from . import assets
from .macro import MacroSliders, age_years_to_slider
from .skin import SKIN_MEAN_FREE_PATH_MM, hair_albedo, skin_albedo
from .spec import HumansSpec
from .stature import HEIGHT_CV, height_from_z, median_height_m

HUMANS_STREAM = 0x48554D414E  # ASCII "HUMAN" (310 400 273 742): the identity stream's spawn-key prefix


@dataclass(frozen=True)
class Phenotype:
    """Body parameters. ``sex`` 0 female .. 1 male; ``age_years``; ``height_m`` standing height
    (metres, top of head to sole); ``height_z`` its standard score on the age/sex curve;
    ``muscle``/``weight``/``proportions`` MakeHuman sliders (0.5 average); ethnic blend weights
    (sum 1); ``height_slider`` the MakeHuman height slider used for shape."""

    sex: float
    age_years: float
    height_m: float
    height_z: float
    muscle: float
    weight: float
    proportions: float
    african: float
    asian: float
    caucasian: float
    height_slider: float

    def sliders(self) -> MacroSliders:
        """The MakeHuman macro sliders of this phenotype."""
        return MacroSliders(gender=self.sex, age_years=self.age_years, muscle=self.muscle, weight=self.weight,
                            height=self.height_slider, proportions=self.proportions, african=self.african,
                            asian=self.asian, caucasian=self.caucasian)


@dataclass(frozen=True)
class SkinParams:
    """Skin appearance: melanin and blood volume fractions, oxygen saturation, the resulting
    linear-sRGB albedo, Principled roughness, subsurface weight and per-channel radius (metres,
    Blender's Subsurface Radius x Scale), and the strength of the texture's luminance detail."""

    melanin: float
    blood: float
    oxygen_saturation: float
    albedo_linear: tuple[float, float, float]
    roughness: float
    subsurface_weight: float
    subsurface_radius_m: tuple[float, float, float]
    detail_strength: float


@dataclass(frozen=True)
class HairColour:
    """Hair pigmentation (melanin, redness, greyness in [0, 1]) and the linear-sRGB tints of the
    scalp hair and of the eyebrows."""

    melanin: float
    redness: float
    greyness: float
    albedo_linear: tuple[float, float, float]
    eyebrow_albedo_linear: tuple[float, float, float]


@dataclass(frozen=True)
class Identity:
    """Everything sampled for identity ``index`` (see :func:`sample_identity`). Asset fields hold
    names from :data:`synthgen.humans.assets.PROXIES` (``None``: not worn); ``iris`` is a key of
    :data:`synthgen.humans.assets.IRIS_TEXTURES`."""

    index: int
    subject_id: str
    seed: int
    phenotype: Phenotype
    skin: SkinParams
    hair_colour: HairColour
    hair: str | None
    eyebrows: str
    eyelashes: str
    top: str | None
    shoes: str | None
    eyes: str
    teeth: str | None
    iris: str

    def proxy_names(self) -> dict[str, str]:
        """``{kind: asset name}`` of the proxies worn, in :data:`assets.PROXY_KINDS` order."""
        kinds = {"eyes": self.eyes, "eyebrows": self.eyebrows, "eyelashes": self.eyelashes, "teeth": self.teeth,
                 "hair": self.hair, "top": self.top, "shoes": self.shoes}
        return {k: kinds[k] for k in assets.PROXY_KINDS if kinds[k] is not None}

    def to_record(self) -> dict:
        """JSON-ready record: ``identity_index``, ``subject_id``, ``seed``, ``phenotype``, ``assets``
        (list of ``{"kind", "name", "licence", "source"}``, base mesh, targets, rig, skin texture
        and iris included), ``skin``, ``hair_colour``, ``iris``."""
        recs = [{"kind": "base_mesh", "name": "hm08", "licence": assets.LICENCE, "source": assets.BASE_SOURCE},
                {"kind": "targets", "name": "macrodetails", "licence": assets.LICENCE, "source": assets.TARGETS_SOURCE},
                {"kind": "rig", "name": "default", "licence": assets.LICENCE, "source": assets.RIG_SOURCE},
                {"kind": "skin_texture", "name": "skin_detail", "licence": assets.LICENCE,
                 "source": assets.SKIN_DETAIL_SOURCE}]
        recs += [assets.get_proxy(n).record() for n in self.proxy_names().values()]
        recs.append({"kind": "iris", "name": self.iris, "licence": assets.LICENCE,
                     "source": f"{assets.IRIS_SOURCE}/{self.iris}_eye.png"})
        return {"identity_index": self.index, "subject_id": self.subject_id, "seed": self.seed,
                "phenotype": asdict(self.phenotype), "assets": recs,
                "skin": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.skin).items()},
                "hair_colour": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.hair_colour).items()},
                "iris": self.iris}


def identity_rngs(seed: int, j: int) -> list[np.random.Generator]:
    """The four independent generators (phenotype, skin, wardrobe, eyes) of identity ``j``."""
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(HUMANS_STREAM, int(j)))
    return [np.random.default_rng(s) for s in ss.spawn(4)]


def _affinity_choice(rng: np.random.Generator, names: list[str], weights: list[float] | None, sex: float,
                     bias: float) -> str:
    base = np.ones(len(names)) if weights is None else np.asarray(weights, float)
    aff = [assets.get_proxy(n).sex_affinity for n in names]
    w = np.array([b * (1.0 - bias * abs(sex - a)) if a is not None else b for b, a in zip(base, aff)])
    if w.sum() <= 0:
        w = base
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _sample_phenotype(ph, rng: np.random.Generator) -> Phenotype:
    """Phenotype stream (draw order in :func:`sample_identity`); ``ph``: ``spec.phenotype``."""
    sex = float(ph.sex.sample(rng))
    age = float(ph.age_years.sample(rng))
    if ph.ethnicity.mode == "dirichlet":
        eth = rng.dirichlet([ph.ethnicity.african, ph.ethnicity.asian, ph.ethnicity.caucasian])
    else:
        e = np.array([ph.ethnicity.african, ph.ethnicity.asian, ph.ethnicity.caucasian], float)
        eth = e / e.sum()
    eth = [float(x) for x in eth]
    if ph.height_m is not None:
        height = float(ph.height_m.sample(rng))
        z = (height / median_height_m(age, sex) - 1.0) / HEIGHT_CV
    else:
        z = float(ph.height_z.sample(rng))
        height = height_from_z(age, sex, z)
    muscle = float(ph.muscle.sample(rng))
    weight = float(ph.weight.sample(rng))
    proportions = float(ph.proportions.sample(rng))
    hslider = float(np.clip(0.5 + ph.height_slider_per_sd * z, 0.0, 1.0))
    age_years_to_slider(age)  # validates the range
    return Phenotype(sex=sex, age_years=age, height_m=height, height_z=float(z), muscle=muscle, weight=weight,
                     proportions=proportions, african=eth[0], asian=eth[1], caucasian=eth[2], height_slider=hslider)


def _sample_skin(sk, rng: np.random.Generator, eth: list[float]) -> SkinParams:
    """Skin stream; ``sk``: ``spec.skin``; ``eth``: (african, asian, caucasian) blend."""
    zm = float(rng.standard_normal())
    if sk.melanin is not None:
        melanin = float(sk.melanin.sample(rng))
    else:
        anch = sk.melanin_anchors
        logm = sum(w * math.log(anch[k]) for k, w in zip(("african", "asian", "caucasian"), eth))
        melanin = float(np.clip(math.exp(logm + sk.melanin_log_sd * zm), 0.005, 0.5))
    blood = float(sk.blood_fraction.sample(rng))
    sat = float(sk.oxygen_saturation.sample(rng))
    rough = float(sk.roughness.sample(rng))
    sss = float(sk.subsurface_scale.sample(rng))
    return SkinParams(melanin=melanin, blood=blood, oxygen_saturation=sat, albedo_linear=skin_albedo(melanin, blood, sat),
                      roughness=rough, subsurface_weight=1.0,
                      subsurface_radius_m=tuple(float(x * 1e-3 * sss) for x in SKIN_MEAN_FREE_PATH_MM),
                      detail_strength=float(sk.detail_strength))


def _sample_hair_colour(hc, rng: np.random.Generator, age: float, eth: list[float]) -> HairColour:
    """Wardrobe stream, hair colour part: melanin, red test, redness, grey onset, grey factor."""
    african, asian, caucasian = eth
    if hc.melanin is not None:
        h_mel = float(hc.melanin.sample(rng))
    else:
        mu = 0.55 * caucasian + 0.88 * (african + asian)
        h_mel = float(np.clip(mu + 0.15 * rng.standard_normal(), 0.05, 0.97))
    red = bool(rng.random() < hc.red_probability * caucasian)
    u_red = float(rng.random())
    if hc.redness is not None:
        redness = float(hc.redness.sample(rng))
    elif red:
        redness = 0.75 + 0.25 * u_red
        h_mel = 0.3 + 0.3 * (h_mel - 0.05) / 0.92
    else:
        redness = 0.05 + 0.3 * u_red
    onset = float(hc.grey_onset_years.sample(rng))
    gfac = float(rng.uniform(0.4, 1.0))
    greyness = float(np.clip((age - onset) / hc.grey_span_years, 0.0, 1.0) ** 1.5 * gfac)
    hair_rgb = hair_albedo(h_mel, redness, greyness)
    brow_rgb = tuple(0.8 * c for c in hair_albedo(h_mel, redness, 0.35 * greyness))
    return HairColour(melanin=h_mel, redness=redness, greyness=greyness, albedo_linear=hair_rgb,
                      eyebrow_albedo_linear=brow_rgb)


def _sample_iris(ey, rng: np.random.Generator, eth: list[float]) -> str:
    """Eyes stream: brown test, light colour; ``ey``: ``spec.eyes``."""
    p_brown = sum(w * ey.brown_probability[k] for k, w in zip(("african", "asian", "caucasian"), eth))
    brown = bool(rng.random() < p_brown)
    light = ey.light_colours[int(rng.integers(len(ey.light_colours)))]
    return "brown" if brown else light


def sample_identity(spec: HumansSpec, seed: int, j: int) -> Identity:
    """Sample identity ``j`` (0-based, < ``spec.identities``) of ``spec`` for the global ``seed``.

    Draw order: phenotype stream: sex, age, ethnic blend (Dirichlet; nothing drawn when fixed),
    height_z or height_m, muscle, weight, proportions. Skin stream: a standard normal for melanin
    (or the ``melanin`` distribution), blood, oxygen saturation, roughness, subsurface scale.
    Wardrobe stream: bald test, hair style, hair melanin, red test, redness, grey onset, grey
    factor, eyebrows, eyelashes, top, shoes. Eyes stream: brown test, light colour.

    Raises:
        ValueError: ``j`` outside ``[0, spec.identities)``.
    """
    if not 0 <= j < spec.identities:
        raise ValueError(f"identity index {j} outside [0, {spec.identities}) of subjects entry {spec.id!r}")
    r_ph, r_sk, r_wd, r_ey = identity_rngs(seed, j)
    pheno = _sample_phenotype(spec.phenotype, r_ph)
    sex, age = pheno.sex, pheno.age_years
    eth = [pheno.african, pheno.asian, pheno.caucasian]
    skin = _sample_skin(spec.skin, r_sk, eth)

    wd = spec.wardrobe
    p_bald = wd.bald_probability * sex * float(np.clip((age - 25.0) / 40.0, 0.0, 1.0))
    bald = bool(r_wd.random() < p_bald)
    style = _affinity_choice(r_wd, wd.hair.styles, wd.hair.weights, sex, wd.sex_bias)
    hair_colour = _sample_hair_colour(wd.hair.colour, r_wd, age, eth)
    eyebrows = wd.eyebrows[int(r_wd.integers(len(wd.eyebrows)))]
    eyelashes = wd.eyelashes[int(r_wd.integers(len(wd.eyelashes)))]
    top = _affinity_choice(r_wd, wd.tops, wd.top_weights, sex, wd.sex_bias) if wd.tops else None
    shoes = _affinity_choice(r_wd, wd.shoes, wd.shoe_weights, sex, wd.sex_bias) if wd.shoes else None
    iris = _sample_iris(spec.eyes, r_ey, eth)

    return Identity(index=int(j), subject_id=spec.subject_id(j), seed=int(seed), phenotype=pheno, skin=skin,
                    hair_colour=hair_colour, hair=None if bald else style, eyebrows=eyebrows, eyelashes=eyelashes,
                    top=top, shoes=shoes, eyes="high-poly", teeth="teeth_base" if wd.teeth else None, iris=iris)
