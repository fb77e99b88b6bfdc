"""Render job configuration: YAML loaded safely, validated with pydantic before any worker starts.

Relative paths in a config file are resolved against the folder that contains the config file.
Errors are raised as :class:`ConfigError`, whose message names the file, the key path
(e.g. ``camera.focal_length_mm.low``), the bad value and what was expected. The CLI maps it to exit 2.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..distributions import Constant, Distribution, LogUniform, Normal, Uniform
from ..errors import ConfigError  # noqa: F401 (re-exported)

SCAN_EXTENSIONS = {".glb", ".gltf", ".fbx", ".obj", ".ply"}
HDRI_EXTENSIONS = {".hdr", ".exr"}
UNIT_TO_METRES = {"m": 1.0, "dm": 0.1, "cm": 0.01, "mm": 0.001, "in": 0.0254, "ft": 0.3048}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScanSize(_Model):
    """How to bring a scan to metres. Exactly one of the fields must be set.

    - ``height_m``: the subject's real height (extent along the vertical axis) in metres,
      e.g. 0.25 for a head, 1.7 for a full body.
    - ``unit``: the file's unit (m, dm, cm, mm, in, ft), after the importer's own conversion.
    - ``scale``: an explicit factor from file units (as imported) to metres.
    """

    height_m: float | None = Field(None, gt=0)
    unit: Literal["m", "dm", "cm", "mm", "in", "ft"] | None = None
    scale: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self):
        n = sum(v is not None for v in (self.height_m, self.unit, self.scale))
        if n != 1:
            raise ValueError("set exactly one of height_m, unit or scale")
        return self


class ScanConfig(_Model):
    path: str = Field(description="file or glob (GLB/glTF, FBX, OBJ, PLY), relative to the config file")
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$",
                           description="scan id; default: the file's folder name (or stem for globs)")
    texture: str | None = Field(None, description="albedo image replacing the file's materials")
    base_color: list[float] | None = Field(
        None, min_length=3, max_length=3,
        description="linear RGB albedo in [0, 1] replacing the file's materials (for scans without colour maps)")
    roughness: float = Field(0.55, ge=0, le=1, description="roughness of the material made from texture/base_color")
    normal_map: str | None = Field(None, description="tangent-space normal map used with texture/base_color")
    size: ScanSize
    head_height_m: float = Field(0.24, gt=0, description="height of the head region from the top, for target: head")
    weight: float = Field(1.0, gt=0, description="relative frequency of this scan in the plan")
    exclude_objects: list[str] = Field(
        [], description="fnmatch patterns (case-insensitive) of object names removed at import "
                        "(e.g. a stray helper mesh such as CesiumMan's 'Icosphere')")

    @model_validator(mode="after")
    def _material(self):
        if self.texture and self.base_color:
            raise ValueError("set at most one of texture or base_color")
        if self.base_color and not all(0 <= c <= 1 for c in self.base_color):
            raise ValueError("base_color components must lie in [0, 1]")
        return self


class HdriConfig(_Model):
    paths: list[str] = Field(["../hdris/*.hdr", "../hdris/*.exr"], min_length=1,
                             description="files or globs of .hdr/.exr equirectangular maps")
    rotation_deg: Distribution = Uniform(dist="uniform", low=0.0, high=360.0)
    strength: Distribution = Constant(value=1.0)
    background: Literal["visible", "transparent"] = "visible"


class CameraConfig(_Model):
    """Pinhole camera sampled around the subject. Angles in degrees, lengths in metres (focal in mm).

    Exactly one of ``focal_length_mm`` / ``fov_deg`` (horizontal field of view) and exactly one of
    ``distance_m`` / ``subject_fraction`` (height of the target region as a fraction of image height;
    the distance follows from the focal length) must be given.
    """

    sensor_width_mm: float = Field(36.0, gt=0)
    focal_length_mm: Distribution | None = None
    fov_deg: Distribution | None = None
    yaw_deg: Distribution = Constant(value=0.0)
    pitch_deg: Distribution = Constant(value=0.0)
    roll_deg: Distribution = Constant(value=0.0)
    distance_m: Distribution | None = None
    subject_fraction: Distribution | None = None
    target: Literal["head", "center"] | list[float] = "head"
    target_jitter_m: Distribution = Constant(value=0.0)

    @model_validator(mode="after")
    def _exclusive(self):
        if (self.focal_length_mm is None) == (self.fov_deg is None):
            raise ValueError("set exactly one of focal_length_mm or fov_deg")
        if (self.distance_m is None) == (self.subject_fraction is None):
            raise ValueError("set exactly one of distance_m or subject_fraction")
        return self

    @field_validator("focal_length_mm", "distance_m", "subject_fraction")
    @classmethod
    def _positive(cls, d):
        if d is not None:
            lo, _ = d.bounds()
            if isinstance(d, Normal) and d.low is None:
                raise ValueError("a normal distribution here needs a positive `low` truncation bound")
            if lo is None or not (isinstance(lo, (int, float)) and lo > 0):
                raise ValueError(f"must be > 0 for every sample, but can be {lo}")
        return d

    @field_validator("fov_deg")
    @classmethod
    def _fov(cls, d):
        if d is not None:
            lo, hi = d.bounds()
            if not (isinstance(lo, (int, float)) and 0 < lo and hi < 180):
                raise ValueError(f"field of view must lie in (0, 180) degrees, but can be [{lo}, {hi}]")
        return d

    @field_validator("pitch_deg")
    @classmethod
    def _pitch(cls, d):
        lo, hi = d.bounds()
        if not (isinstance(lo, (int, float)) and -85 <= lo and hi <= 85):
            raise ValueError(f"pitch must stay within [-85, 85] degrees, but can be [{lo}, {hi}]")
        return d

    @field_validator("target")
    @classmethod
    def _target(cls, v):
        if isinstance(v, list) and len(v) != 3:
            raise ValueError("target as a point needs 3 coordinates [x, y, z] in metres")
        return v


class FramingConfig(_Model):
    """Accepted subject coverage (mean of the mask) per sample; outside it the sample is re-sampled."""

    coverage_min: float = Field(0.02, ge=0, le=1)
    coverage_max: float = Field(0.95, ge=0, le=1)
    max_resamples: int = Field(10, ge=0)

    @model_validator(mode="after")
    def _order(self):
        if self.coverage_min > self.coverage_max:
            raise ValueError("coverage_min must be <= coverage_max")
        return self


class RenderSettings(_Model):
    width: int = Field(256, gt=0, le=16384)
    height: int = Field(256, gt=0, le=16384)
    samples: int = Field(32, gt=0, description="Cycles max samples per pixel")
    adaptive_threshold: float = Field(0.02, ge=0, description="Cycles adaptive sampling noise threshold; 0 = off")
    denoise: bool = True
    max_bounces: int = Field(6, ge=0, description="Cycles total light-path bounce limit")
    diffuse_bounces: int | None = Field(None, ge=0, description="Cycles diffuse bounce limit (null: Blender's 4)")
    glossy_bounces: int | None = Field(None, ge=0, description="Cycles glossy bounce limit (null: Blender's 4)")
    transmission_bounces: int | None = Field(None, ge=0, description="Cycles transmission bounce limit (null: Blender's 12)")
    transparent_bounces: int | None = Field(None, ge=0, description="Cycles transparent bounce limit (null: Blender's 8)")
    env_map_resolution: int = Field(
        2048, ge=0, description="resolution of the HDRI importance map (Cycles world 'Map Resolution', "
                                "sampling method Manual); 0 = Cycles' Automatic (4096 behind the rotation "
                                "node), which costs ~2 CPU-seconds per render against ~0.6 s at 2048 for "
                                "the same PSNR (benchmarks/render_quality.py)")
    light_tree: bool = Field(True, description="Cycles light tree (many-light sampling)")
    denoiser_prepass: Literal["none", "albedo", "albedo_normal"] = Field(
        "albedo_normal", description="guiding passes given to OIDN")
    denoiser_prefilter: Literal["accurate", "fast", "none"] = Field(
        "none", description="OIDN prefiltering of the guiding passes. none (default): same PSNR as Blender's "
                            "accurate on portraits at 64 spp for 1.3 CPU-s less per 256x256 render; fast "
                            "loses ~0.9 dB (benchmarks/render_quality.py)")
    denoiser_quality: Literal["high", "balanced", "fast"] = Field("high", description="OIDN quality mode")
    clamp_indirect: float = Field(10.0, ge=0, description="Cycles indirect light clamp (0 = off; Blender's default 10)")
    persistent_data: bool = Field(
        False, description="Cycles persistent data (keep scene data between renders); measured no faster "
                           "here, since the HDRI changes every sample (benchmarks/render_quality.py)")
    auto_exposure: bool = Field(
        True, description="scale the linear image so the subject's median luminance hits exposure_target "
                          "(like a camera's auto exposure; exactly equivalent to scaling the HDRI strength)")
    exposure_target: float = Field(0.2, gt=0, description="median linear Rec.709 luminance of subject pixels")
    exposure_ev: Distribution = Field(
        default_factory=lambda: Normal(dist="normal", mean=0.0, std=0.5, low=-1.5, high=1.5),
        description="exposure offset in stops (EV) applied on top of auto exposure")
    device: Literal["cpu", "gpu"] = Field(
        "cpu", description="cpu: Cycles on CPU threads; gpu: one worker per GPU (Ray num_gpus=1) with gpu_backend")
    gpu_backend: Literal["optix", "cuda"] = Field("optix", description="Cycles GPU backend when device is gpu")
    threads_per_worker: int = Field(1, ge=1, description="Cycles threads (and Ray CPUs) per worker")
    max_retries: int = Field(
        2, ge=0, description="times a sample is retried after its worker died (SIGKILL, out of memory, "
                             "Blender crash, lost node) or an unexpected error, before it is quarantined")
    recycle_after_samples: int | None = Field(
        500, gt=0, description="replace a worker by a fresh process after this many samples (null: never)")
    max_worker_rss_mb: float | None = Field(
        None, gt=0, description="replace a worker whose resident memory exceeds this many MiB after a sample "
                                "(null: no limit)")


def _u(low: float, high: float) -> Uniform:
    return Uniform(dist="uniform", low=low, high=high)


class JointConfig(_Model):
    """One randomized joint. Angles (degrees) are a rotation about the bone's head in the subject's
    body frame (the world frame of the unrotated subject: +X the subject's left, +Y behind it,
    +Z up; the subject faces -Y): ``R = Rz(yaw) @ Rx(pitch) @ Ry(roll)``. Positive yaw turns the
    front towards the subject's left, positive pitch tips the front down (nodding), positive roll
    tilts the top towards the subject's left. The limits are the distributions' bounds."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    bones: list[str] = Field(min_length=1, description="bone-name fnmatch patterns (case-insensitive), "
                                                       "tried in order; the first matching bone is posed")
    yaw_deg: Distribution = Constant(value=0.0)
    pitch_deg: Distribution = Constant(value=0.0)
    roll_deg: Distribution = Constant(value=0.0)

    @field_validator("yaw_deg", "pitch_deg", "roll_deg")
    @classmethod
    def _bounded(cls, d):
        lo, hi = d.bounds()
        if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and -180 <= lo <= hi <= 180):
            raise ValueError(f"joint angles need finite limits within [-180, 180] degrees, got [{lo}, {hi}]")
        return d


def _default_joints() -> list[JointConfig]:
    """Biped (3ds Max ``Bip01 ...``, e.g. Rocketbox), CesiumMan glTF and Mixamo-style names. Biped's
    neck also carries the clavicles, so on Biped rigs only the head bone turns."""
    J = JointConfig
    return [
        J(name="spine", bones=["Bip01 Spine1", "Skeleton_torso_joint_2", "mixamorig:Spine1", "spine_01", "spine1"],
          yaw_deg=_u(-12, 12), pitch_deg=_u(-4, 10), roll_deg=_u(-6, 6)),
        J(name="neck", bones=["Skeleton_neck_joint_1", "mixamorig:Neck", "neck_01", "neck"],
          yaw_deg=_u(-15, 15), pitch_deg=_u(-8, 12), roll_deg=_u(-8, 8)),
        J(name="head", bones=["Bip01 Head", "Skeleton_neck_joint_2", "mixamorig:Head", "head"],
          yaw_deg=_u(-35, 35), pitch_deg=_u(-15, 20), roll_deg=_u(-12, 12)),
        J(name="upper_arm_l", bones=["Bip01 L UpperArm", "Skeleton_arm_joint_L__3_", "mixamorig:LeftArm", "upperarm_l"],
          yaw_deg=_u(-15, 15), pitch_deg=_u(-35, 15), roll_deg=_u(-10, 35)),
        J(name="upper_arm_r", bones=["Bip01 R UpperArm", "Skeleton_arm_joint_R__2_", "mixamorig:RightArm", "upperarm_r"],
          yaw_deg=_u(-15, 15), pitch_deg=_u(-35, 15), roll_deg=_u(-35, 10)),
        J(name="forearm_l", bones=["Bip01 L Forearm", "Skeleton_arm_joint_L__2_", "mixamorig:LeftForeArm", "lowerarm_l"],
          pitch_deg=_u(-70, 0)),
        J(name="forearm_r", bones=["Bip01 R Forearm", "Skeleton_arm_joint_R__3_", "mixamorig:RightForeArm", "lowerarm_r"],
          pitch_deg=_u(-70, 0)),
    ]


class PoseConfig(_Model):
    """Subject pose (off by default). Rigged scans (with an armature) get every joint of ``joints``
    rotated within its limits (joints whose bones are not found are recorded as missing); every scan
    gets ``subject_yaw_deg``, a rotation of the whole subject about the vertical axis through x = y = 0.
    The pose is applied after the scan was measured and scaled in its rest pose (see README).

    ``source`` is where the base pose comes from before the joints are rotated on top of it:

    - ``joints`` (default): the rest pose.
    - ``animation``: a frame of the scan's embedded animation (e.g. CesiumMan's walk). A phase
      ``u`` in [0, 1) is drawn per view (:func:`synthgen.sampling.pose_params`) and mapped to one of
      the ``N`` integer frames of the rig's pose actions (the actions' frame ranges laid end to
      end, actions sorted by name): frame ``floor(u * N)`` of that list, so every frame is equally
      likely. The joint limits then act as perturbations of that frame (narrow them, e.g. ±5°).
      A scan without a pose animation (unrigged, or actions that move no bone) falls back to the
      rest pose with a warning in ``render.pose.warnings`` (``render.pose.animation`` is null), so
      animated and static scans can share a job.
    """

    enabled: bool = False
    source: Literal["joints", "animation"] = "joints"
    subject_yaw_deg: Distribution = Constant(value=0.0)
    joints: list[JointConfig] = Field(default_factory=_default_joints)


class AppearanceConfig(_Model):
    """Albedo and roughness variation (off by default). A Hue/Saturation/Value node is inserted after
    every base-colour source of the scan's materials (Blender's HSV node: hue 0.5 = unchanged,
    saturation and value are factors); roughness replaces the materials' roughness. A material
    without a usable texture becomes a skin material whose base colour is drawn from ``skin_tones``."""

    enabled: bool = False
    hue: Distribution = _u(0.48, 0.52)
    saturation: Distribution = _u(0.85, 1.15)
    value: Distribution = _u(0.8, 1.2)
    roughness: Distribution = _u(0.35, 0.65)
    skin_tones: list[list[float]] = Field(
        default_factory=lambda: [[0.80, 0.58, 0.47], [0.70, 0.48, 0.36], [0.55, 0.36, 0.25],
                                 [0.40, 0.25, 0.16], [0.24, 0.14, 0.09], [0.12, 0.07, 0.05]],
        description="linear RGB skin albedos for materials without textures (light to dark)")
    subsurface_weight: float = Field(0.15, ge=0, le=1)

    @field_validator("hue", "saturation", "value", "roughness")
    @classmethod
    def _bounds(cls, d):
        lo, hi = d.bounds()
        if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0 <= lo <= hi <= 2):
            raise ValueError(f"needs finite limits within [0, 2], got [{lo}, {hi}]")
        return d


class AreaLightsConfig(_Model):
    """Extra area lights per relight (off: count 0), placed on a sphere around the target point."""

    count: Distribution = Constant(value=0)
    power_w: Distribution = _u(20, 150)
    temperature_k: Distribution = _u(2700, 6500)
    size_m: Distribution = _u(0.3, 1.0)
    distance_m: Distribution = _u(1.0, 2.5)
    elevation_deg: Distribution = _u(-10, 60)


class DepthSensorConfig(_Model):
    """Simulated structured-light depth sensor written as ``KEY.depth_sensor.exr`` (off by default);
    the clean ``KEY.depth.exr`` is unchanged. Model and fit: :mod:`synthgen.depth_sensor`; defaults
    fitted to Kinect v1 frames (TUM RGB-D fr1/xyz, slambook2) by ``benchmarks/depth_sensor_fit.py``
    (see README, "Depth-sensor simulation"). When enabled, the render also produces Cycles' Diffuse
    Color and Glossy Color passes, from which the dark and specular hole terms are computed."""

    enabled: bool = False
    sigma_a_m: float = Field(0.00058, ge=0, description="noise std at zero depth (m)")
    sigma_b_per_m: float = Field(0.00068, ge=0, description="noise std growth: sigma = a + b z² (1/m)")
    edge_jump_rel: float = Field(0.1, gt=0, description="relative depth jump that marks a discontinuity")
    edge_radius_px: int = Field(2, ge=1, description="half-width of the discontinuity band (pixels)")
    edge_hole_prob: float = Field(0.097, ge=0, le=1, description="hole probability in the discontinuity band")
    grazing_deg: float = Field(90.0, gt=0, le=90, description="incidence angle (deg) where the grazing hole "
                                                               "probability reaches 1/2")
    grazing_width_deg: float = Field(4.0, ge=0, le=20, description="width (deg) of the logistic grazing "
                                                                   "fall-off; 0 = hard cut at grazing_deg")
    dropout: float = Field(0.050, ge=0, le=1, description="hole probability of any other pixel when the render "
                                                          "gives no surface passes (all causes of random holes)")
    base_dropout: float = Field(0.020, ge=0, le=1, description="hole probability of a bright diffuse surface "
                                                              "(with surface passes)")
    dark_hole_prob: float = Field(0.072, ge=0, le=1, description="extra hole probability of a black surface")
    dark_albedo: float = Field(0.22, gt=0, le=1, description="albedo at which the dark term is half of dark_hole_prob")
    dark_power: float = Field(3.0, gt=0, le=10, description="steepness of the dark term's fall-off with albedo")
    specular_hole_prob: float = Field(0.5, ge=0, le=1, description="extra hole probability of a purely "
                                                                   "specular surface (metal); set by hand")
    specular_min: float = Field(0.85, ge=0, lt=1, description="specularity (glossy share of reflectance) "
                                                             "where the specular term starts; set by hand")
    min_depth_m: float = Field(0.4, ge=0)
    max_depth_m: float = Field(8.0, gt=0)
    quantum_m: float = Field(0.001, ge=0, description="quantisation step (m); 0.001 = 16-bit millimetres")


class CameraRealismConfig(_Model):
    """Camera effects on the RGB only (off by default); depth and mask stay the clean pinhole ground
    truth. ``dof``: thin-lens depth of field focused on the camera target, aperture ``f_stop``
    (rendered as a second Cycles pass: about twice the render time). ``white_balance``: per-channel
    gains on the linear RGB (green fixed at 1), i.e. a camera's white balance missing the
    illuminant. ``sensor_noise``: heteroscedastic Gaussian approximation of Poisson-Gaussian sensor
    noise on the exposed linear RGB, ``var = shot_noise_k * x + read_noise_std²`` per channel
    (Foi et al., "Practical Poissonian-Gaussian noise modeling and fitting for single-image raw
    data", IEEE TIP 2008), clipped at 0.

    ``motion_blur``: hand shake during an exposure of ``shutter_s`` seconds, rendered with Cycles
    motion blur. The camera moves at a constant angular velocity (speed ``shake_angular_speed_deg_s``
    in deg/s about a uniformly random axis) and a constant translation velocity (speed
    ``shake_translation_speed_m_s`` in m/s in a uniformly random direction), both in the camera's
    own (OpenCV) axes; the clean camera pose is the centre of the exposure, so the blurred RGB
    stays registered to the clean depth and mask. Under HDRI lighting a translation of the camera
    equals the opposite translation of the subject, so subject sway is covered by the same
    velocity; the subject itself is frozen (an embedded animation does not play during the
    shutter). Hand tremor turns a held camera at roughly 1-5 deg/s; with the defaults (1/250 to
    1/15 s, 0.5-8 deg/s) a 50 mm lens on a 36 mm sensor 1920 px across gets rotational blur
    streaks from 0.1 px to 25 px (about 1.5 px typical). With ``dof`` too, both effects come from
    the same single extra pass (about twice the render time, like ``dof`` alone).
    """

    dof: bool = False
    f_stop: Distribution = Field(default_factory=lambda: LogUniform(dist="loguniform", low=1.8, high=8.0))
    white_balance: bool = False
    wb_red_gain: Distribution = _u(0.88, 1.12)
    wb_blue_gain: Distribution = _u(0.88, 1.12)
    sensor_noise: bool = False
    shot_noise_k: Distribution = Field(default_factory=lambda: LogUniform(dist="loguniform", low=1e-4, high=4e-3))
    read_noise_std: Distribution = Field(default_factory=lambda: LogUniform(dist="loguniform", low=2e-4, high=3e-3))
    motion_blur: bool = False
    shutter_s: Distribution = Field(
        default_factory=lambda: LogUniform(dist="loguniform", low=1 / 250, high=1 / 15),
        description="exposure time in seconds")
    shake_angular_speed_deg_s: Distribution = Field(
        default_factory=lambda: LogUniform(dist="loguniform", low=0.5, high=8.0),
        description="camera angular speed during the exposure (deg/s), random axis")
    shake_translation_speed_m_s: Distribution = Field(
        default_factory=lambda: LogUniform(dist="loguniform", low=0.002, high=0.05),
        description="camera speed relative to the subject during the exposure (m/s), random direction")

    @field_validator("f_stop", "wb_red_gain", "wb_blue_gain", "shot_noise_k", "read_noise_std", "shutter_s",
                     "shake_angular_speed_deg_s", "shake_translation_speed_m_s")
    @classmethod
    def _pos(cls, d):
        lo, _ = d.bounds()
        if not (isinstance(lo, (int, float)) and lo >= 0) or (isinstance(d, Normal) and d.low is None):
            raise ValueError(f"must be >= 0 for every sample (bounded below), but can be {lo}")
        return d

    @property
    def any(self) -> bool:
        return self.dof or self.white_balance or self.sensor_noise or self.motion_blur


class OutputConfig(_Model):
    dir: str = Field("out/portrait", description="output store; relative to the current directory")
    previews: bool = Field(True, description="write _meta/previews/KEY.png (RGB | depth | mask)")


class RenderConfig(_Model):
    """A render job. See configs/portrait.yaml for a documented example."""

    name: str = Field("portrait", pattern=r"^[A-Za-z0-9_-]+$")
    seed: int = Field(0, ge=0)
    num_samples: int = Field(8, gt=0)
    workers: int | None = Field(None, gt=0, description="Ray render workers; default: CPUs / threads_per_worker")
    scans: list[ScanConfig] = Field(min_length=1)
    hdris: HdriConfig = HdriConfig()
    camera: CameraConfig
    framing: FramingConfig = FramingConfig()
    render: RenderSettings = RenderSettings()
    output: OutputConfig = OutputConfig()
    relights_per_view: int = Field(
        1, ge=1, description="K lighting variants per view: sample i is relight i % K of view i // K "
                             "(same scan, pose, appearance, camera and Cycles seed; own HDRI/rotation/"
                             "strength/area lights); K > 1 switches adaptive sampling off")
    pose: PoseConfig = PoseConfig()
    appearance: AppearanceConfig = AppearanceConfig()
    area_lights: AreaLightsConfig = AreaLightsConfig()
    depth_sensor: DepthSensorConfig = DepthSensorConfig()
    camera_realism: CameraRealismConfig = CameraRealismConfig()


# --------------------------------------------------------------------------------------------
# Loading and resolution


class ScanAsset(BaseModel):
    """A resolved scan: absolute paths and its sizing rule."""

    id: str
    path: str
    texture: str | None
    base_color: list[float] | None
    roughness: float
    normal_map: str | None
    size: ScanSize
    head_height_m: float
    weight: float
    exclude_objects: list[str] = []


class HdriAsset(BaseModel):
    id: str
    path: str


class Job(BaseModel):
    """A validated config plus the resolved asset lists; everything a worker needs."""

    config: RenderConfig
    config_path: str
    scans: list[ScanAsset]
    hdris: list[HdriAsset]


def _fmt_loc(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("constant", "uniform", "normal", "loguniform", "choice", "function-after[_check(), Normal]"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration ({exc.error_count()} error(s)):"]
    for err in exc.errors():
        loc = _fmt_loc([p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))])
        val = err.get("input")
        val_s = repr(val)
        if len(val_s) > 80:
            val_s = val_s[:77] + "..."
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {loc}: {msg} (got {val_s})")
    return "\n".join(lines)


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping with ``yaml.safe_load``. Raises ConfigError naming the file and line."""
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        raise ConfigError(f"{p}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def set_override(data: dict, dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted='a.b'`` (creating mappings as needed)."""
    parts = dotted.split(".")
    cur = data
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"override {dotted}: {p} is not a mapping")
    cur[parts[-1]] = value


def _sniff(path: Path, kind: str) -> None:
    """Cheap readability check of a scan or HDRI file by its header bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {kind} ({exc.strerror})") from exc
    ext = path.suffix.lower()
    ok = {
        ".glb": head.startswith(b"glTF"),
        ".gltf": head.lstrip()[:1] == b"{",
        ".fbx": head.startswith(b"Kaydara FBX Binary") or head.lstrip().startswith(b";"),
        ".obj": len(head) > 0 and b"\x00" not in head,
        ".ply": head.startswith(b"ply"),
        ".hdr": head.startswith(b"#?RADIANCE") or head.startswith(b"#?RGBE"),
        ".exr": head.startswith(b"\x76\x2f\x31\x01"),
    }[ext]
    if not ok:
        raise ConfigError(f"{path}: unreadable {kind}: content is not a valid {ext} file")
    size = path.stat().st_size
    if ext == ".glb":  # header: magic, version, total length (little-endian uint32)
        declared = int.from_bytes(head[8:12], "little")
        if declared != size:
            raise ConfigError(f"{path}: unreadable {kind}: GLB header declares {declared} bytes, file has {size} (truncated?)")
    if ext == ".hdr" and b"\n\n" not in head and size < 64:
        raise ConfigError(f"{path}: unreadable {kind}: Radiance header is incomplete")


def _expand(pattern: str, base: Path, key: str, exts: set[str], kind: str) -> list[Path]:
    full = pattern if os.path.isabs(pattern) else str(base / pattern)
    matches = sorted(Path(p).resolve() for p in glob.glob(full, recursive=True))
    if not matches:
        raise ConfigError(f"{key}: {pattern!r} matches no {kind} files (looked in {base})")
    out = []
    for m in matches:
        if m.suffix.lower() not in exts:
            if glob.has_magic(pattern):
                continue
            raise ConfigError(f"{key}: {m} is not a supported {kind} (expected one of {sorted(exts)})")
        _sniff(m, kind)
        out.append(m)
    if not out:
        raise ConfigError(f"{key}: {pattern!r} matches no {kind} files with extensions {sorted(exts)}")
    return out


def resolve_job(config_path: str | os.PathLike, overrides: dict[str, Any] | None = None,
                data: dict | None = None) -> Job:
    """Load, validate and resolve a config file into a :class:`Job`.

    Args:
        config_path: YAML file; relative paths inside the config resolve against its folder.
        overrides: dotted key -> value, applied before validation (CLI flags).
        data: the config mapping itself (e.g. the resolved config recorded in a store's
            ``_meta/store.json``); when given, ``config_path`` is not read, only used as the base
            for relative paths and in messages.

    Raises:
        ConfigError: malformed YAML, unknown keys, bad values, globs matching nothing, unreadable assets.
    """
    import copy

    config_path = Path(config_path).resolve()
    data = load_yaml(config_path) if data is None else copy.deepcopy(data)
    for k, v in (overrides or {}).items():
        set_override(data, k, v)
    try:
        cfg = RenderConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(config_path))) from None
    base = config_path.parent

    scans: list[ScanAsset] = []
    for i, sc in enumerate(cfg.scans):
        files = _expand(sc.path, base, f"scans[{i}].path", SCAN_EXTENSIONS, "scan")
        for f in files:
            sid = sc.id if (sc.id and len(files) == 1) else (f"{sc.id}_{f.stem}" if sc.id else None)
            if sid is None:
                sid = f.parent.name if len(files) == 1 else f"{f.parent.name}_{f.stem}"
            sid = "".join(ch if (ch.isalnum() or ch in "_-") else "_" for ch in sid)
            tex = nrm = None
            if sc.texture:
                tex = str((base / sc.texture).resolve())
            if sc.normal_map:
                nrm = str((base / sc.normal_map).resolve())
            scans.append(ScanAsset(id=sid, path=str(f), texture=tex, normal_map=nrm, size=sc.size,
                                   base_color=sc.base_color, roughness=sc.roughness,
                                   head_height_m=sc.head_height_m, weight=sc.weight,
                                   exclude_objects=sc.exclude_objects))
    ids = [s.id for s in scans]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"{config_path}: scans: duplicate scan id(s) {dup}; set distinct `id` keys")

    hdris: list[HdriAsset] = []
    seen = set()
    for i, pat in enumerate(cfg.hdris.paths):
        for f in _expand(pat, base, f"hdris.paths[{i}]", HDRI_EXTENSIONS, "HDRI"):
            if f in seen:
                continue
            seen.add(f)
            hid = "".join(ch if (ch.isalnum() or ch in "_-") else "_" for ch in f.stem)
            hdris.append(HdriAsset(id=hid, path=str(f)))
    return Job(config=cfg, config_path=str(config_path), scans=scans, hdris=hdris)


# Settings that change how a job runs but not what any sample contains; they are left out of
# :func:`content_hash`, so they may differ between a run and its resumption.
RUN_ONLY_KEYS = ("num_samples", "workers", "output", "render.threads_per_worker", "render.max_retries",
                 "render.recycle_after_samples", "render.max_worker_rss_mb",
                 "render.persistent_data")


def content_hash(job: Job) -> str:
    """sha256 (hex) of everything that determines the content of a job's samples.

    Hashed: the resolved config as canonical JSON without :data:`RUN_ONLY_KEYS` (so ``num_samples``
    may grow and workers, threads, retries and memory limits may change between runs), plus every
    resolved scan and HDRI file by id, path relative to the config folder and size in bytes (a
    replaced or re-exported asset changes the hash; contents are not read, to stay cheap for large
    scans). The seed and the job name are part of the config and therefore of the hash.
    """
    import hashlib
    import json

    cfg = job.config.model_dump(mode="json")
    for dotted in RUN_ONLY_KEYS:
        *parents, leaf = dotted.split(".")
        cur = cfg
        for p in parents:
            cur = cur.get(p, {})
        cur.pop(leaf, None)
    base = Path(job.config_path).parent

    def asset(a_id: str, path: str) -> dict[str, Any]:
        try:
            size = os.path.getsize(path)
        except OSError:
            size = None
        return {"id": a_id, "file": os.path.relpath(path, base), "bytes": size}

    doc = {"config": cfg,
           "scans": [asset(s.id, s.path) for s in job.scans],
           "hdris": [asset(h.id, h.path) for h in job.hdris]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
