"""Render job configuration: YAML loaded safely, validated with pydantic before any worker starts.

Relative paths in a config file are resolved against the folder that contains the config file.
Errors are raised as :class:`ConfigError`, whose message names the file, the key path
(e.g. ``camera.focal_length_mm.low``), the bad value and what was expected. The CLI maps it to exit 2.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    field_validator,
    model_validator,
)

from ..distributions import Constant, Distribution, Normal, Uniform
from ..errors import ConfigError  # noqa: F401 (re-exported)
from ..humans.spec import HumansSpec
from .config_base import StrictModel
from .variation_config import (AppearanceConfig, AreaLightsConfig, CameraRealismConfig, DepthSensorConfig,  # noqa: F401
                               JointConfig, PoseConfig)

SCAN_EXTENSIONS = {".glb", ".gltf", ".fbx", ".obj", ".ply"}
HDRI_EXTENSIONS = {".hdr", ".exr"}
UNIT_TO_METRES = {"m": 1.0, "dm": 0.1, "cm": 0.01, "mm": 0.001, "in": 0.0254, "ft": 0.3048}


class ScanSize(StrictModel):
    """How to bring a scan to metres. Exactly one of the fields must be set.

    - ``height_m``: the subject's real height (extent along the vertical axis) in metres,
      e.g. 0.25 for a head, 1.7 for a full body.
    - ``unit``: the file's unit (m, dm, cm, mm, in, ft), after the importer's own conversion.
    - ``scale``: an explicit factor from file units (as imported) to metres.
    """

    height_m: float | None = Field(None, gt=0)
    unit: Literal["m", "dm", "cm", "mm", "in", "ft"] | None = None
    scale: float | None = Field(None, gt=0)
    measure: Literal["all", "largest_part"] | list[str] = Field(
        "all", description="what is measured for height_m and placed on z = 0, centred, with the head "
                           "region at its top: all (every mesh), largest_part (the connected mesh part of "
                           "largest surface area, e.g. the figure without a separate plinth or prop), or a "
                           "list of object-name fnmatch patterns (case-insensitive); the rest still renders")

    @model_validator(mode="after")
    def _one(self):
        n = sum(v is not None for v in (self.height_m, self.unit, self.scale))
        if n != 1:
            raise ValueError("set exactly one of height_m, unit or scale")
        if isinstance(self.measure, list) and not self.measure:
            raise ValueError("measure: give at least one object-name pattern (or all / largest_part)")
        return self


Axis = Literal["+X", "-X", "+Y", "-Y", "+Z", "-Z"]


class ScanConfig(StrictModel):
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
    up_axis: Axis = Field("+Z", description="the file's axis (as imported: glTF/FBX/OBJ importers already "
                                             "turn Y-up files to Blender's Z-up) that points up the subject")
    forward_axis: Axis = Field("-Y", description="the file's axis (as imported) the subject faces; it is "
                                                 "turned to face -Y (the default camera looks at its front)")
    head_height_m: float = Field(0.24, gt=0, description="height of the head region from the top, for target: head")
    weight: float = Field(1.0, gt=0, description="relative frequency of this scan in the plan")
    exclude_objects: list[str] = Field(
        [], description="fnmatch patterns (case-insensitive) of object names removed at import "
                        "(e.g. a stray helper mesh such as CesiumMan's 'Icosphere')")
    tags: dict[str, str] = Field({}, description="free tags (e.g. sex, age_band, skin_tone, clothing), recorded "
                                                 "in render.scan.tags and counted by synthgen qa")
    licence: str | None = Field(None, description="the scan's licence (recorded; the dataset card uses it)")
    attribution: str | None = Field(None, description="credit line for the scan (recorded; dataset card)")

    @model_validator(mode="after")
    def _material(self):
        if self.texture and self.base_color:
            raise ValueError("set at most one of texture or base_color")
        if self.base_color and not all(0 <= c <= 1 for c in self.base_color):
            raise ValueError("base_color components must lie in [0, 1]")
        if self.up_axis[1] == self.forward_axis[1]:
            raise ValueError(f"up_axis {self.up_axis} and forward_axis {self.forward_axis} must be different "
                             "axes (perpendicular)")
        return self


class HdriConfig(StrictModel):
    paths: list[str] = Field(["../hdris/*.hdr", "../hdris/*.exr"], min_length=1,
                             description="files or globs of .hdr/.exr equirectangular maps")
    rotation_deg: Distribution = Uniform(dist="uniform", low=0.0, high=360.0)
    strength: Distribution = Constant(value=1.0)
    background: Literal["visible", "transparent"] = "visible"


class CameraConfig(StrictModel):
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


class FramingConfig(StrictModel):
    """Accepted subject coverage (mean of the mask) per sample; outside it the sample is re-sampled."""

    coverage_min: float = Field(0.02, ge=0, le=1)
    coverage_max: float = Field(0.95, ge=0, le=1)
    max_resamples: int = Field(10, ge=0)

    @model_validator(mode="after")
    def _order(self):
        if self.coverage_min > self.coverage_max:
            raise ValueError("coverage_min must be <= coverage_max")
        return self


class CameraProfile(CameraConfig):
    """One camera of a weighted mixture (``camera: {profiles: [...]}``): a name, a weight and the
    fields of :class:`CameraConfig`; ``framing`` optionally replaces the job's coverage limits for
    samples of this profile (e.g. tight selfies that may cut the head top)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    weight: float = Field(1.0, gt=0)
    framing: FramingConfig | None = None


class CameraProfiles(StrictModel):
    """A weighted mixture of camera profiles; each view draws one (recorded as ``camera_profile``)."""

    profiles: list[CameraProfile] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self):
        names = [p.name for p in self.profiles]
        if len(set(names)) != len(names):
            raise ValueError(f"camera profile names must be unique, got {names}")
        return self


class RenderSettings(StrictModel):
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
    exposure_warn_factor: float | None = Field(
        32.0, gt=1, description="auto exposure: record a warning (render.exposure.warning, listed by synthgen qa) "
                                "when the factor leaves [1/x, x] (32: 5 stops) or hits its clamp; null: only at the clamp")
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
    max_wait_for_workers_s: float | None = Field(
        1800.0, gt=0, description="stop the run (exit 4) when no render worker has been running for this "
                                  "many seconds (waiting for cluster resources or nodes, e.g. on a joined "
                                  "--address cluster); progress is logged meanwhile; null: wait forever. "
                                  "An embedded cluster whose raylet or GCS dies ends the run at once")
    relight_mode: Literal["separate", "one_pass"] = Field(
        "separate", description="with relights_per_view > 1: separate renders every relight alone; one_pass "
                                "renders the relights of a view in one Cycles pass with light groups and writes "
                                "the same samples: exact and K times cheaper for relights that differ only in "
                                "HDRI strength and exposure; relights with their own HDRI, rotation or area "
                                "lights render separately unless relight_domes (docs/relight.md)")
    relight_domes: bool = Field(
        False, description="one_pass: also trace relights with different HDRIs, rotations or area lights in the "
                           "view's pass (extra HDRIs as light domes); measured slower than separate at equal "
                           "quality in Cycles 4.5 (docs/relight.md)")
    relight_samples: int | None = Field(
        None, gt=0, description="samples per pixel of a one_pass render (null: samples x the number of distinct "
                                "lightings in the pass, which share Cycles' light samples)")


class OutputConfig(StrictModel):
    dir: str = Field("out/portrait", description="output store; relative to the current directory")
    previews: bool = Field(True, description="write _meta/previews/KEY.png (RGB | depth | mask)")


class RenderConfig(StrictModel):
    """A render job. See configs/portrait.yaml for a documented example."""

    name: str = Field("portrait", pattern=r"^[A-Za-z0-9_-]+$")
    seed: int = Field(0, ge=0)
    num_samples: int = Field(8, gt=0)
    workers: int | None = Field(None, gt=0, description="Ray render workers; default: CPUs / threads_per_worker")
    scans: list[ScanConfig] = Field(default_factory=list, description="scanned subjects (files); or "
                                    "{manifest: library.csv, balance, tag_weights} (docs/scans.md)")
    subjects: list[HumansSpec] = Field(
        default_factory=list, description="generated subjects: [{kind: makehuman, id, identities, weight, "
                                          "phenotype, wardrobe, eyes, skin}] (see docs/humans.md)")
    hdris: HdriConfig = HdriConfig()
    camera: CameraConfig | CameraProfiles = Field(
        description="one camera, or {profiles: [{name, weight, <camera fields>, framing?}, ...]}")
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

    @model_validator(mode="after")
    def _some_subject(self):
        if not self.scans and not self.subjects:
            raise ValueError("no subject: give at least one entry under `scans` or `subjects`")
        ids = [s.id for s in self.subjects]
        if len(set(ids)) != len(ids):
            raise ValueError(f"subjects: ids must be unique, got {ids}")
        return self


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
    up_axis: str = "+Z"
    forward_axis: str = "-Y"
    tags: dict[str, str] = {}
    licence: str | None = None
    attribution: str | None = None


class HdriAsset(BaseModel):
    id: str
    path: str


class Job(BaseModel):
    """A validated config plus the resolved asset lists; everything a worker needs."""

    config: RenderConfig
    config_path: str
    scans: list[ScanAsset]
    hdris: list[HdriAsset]

    def human_spec(self, source: str) -> HumansSpec:
        """The ``subjects`` entry with id ``source``."""
        return next(h for h in self.config.subjects if h.id == source)

    def camera_config(self, profile: str | None = None) -> CameraConfig:
        """The camera of a sample: the profile named ``profile``, or the job's single camera."""
        cam = self.config.camera
        if isinstance(cam, CameraProfiles):
            return next(p for p in cam.profiles if p.name == profile)
        return cam

    def framing_for(self, profile: str | None = None) -> FramingConfig:
        """Coverage limits of a sample: the profile's own ``framing`` if it has one, else the job's."""
        cam = self.camera_config(profile)
        return getattr(cam, "framing", None) or self.config.framing




# loading lives in .loading (it needs the models above); re-exported for `from synthgen.rendering.config import ...`
from .loading import (RUN_ONLY_KEYS, content_hash, format_validation_error, load_yaml,  # noqa: E402,F401
                      resolve_job, set_override)
