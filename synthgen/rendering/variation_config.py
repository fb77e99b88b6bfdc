"""Config models of the variation features: pose (joints on rigs), appearance, extra area lights,
the simulated depth sensor and camera realism. Part of the render job (:mod:`synthgen.rendering.config`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
)

from ..distributions import Constant, Distribution, LogUniform, Normal, Uniform
from ..errors import ConfigError  # noqa: F401 (re-exported)
from .config_base import StrictModel


def _u(low: float, high: float) -> Uniform:
    return Uniform(dist="uniform", low=low, high=high)


class JointConfig(StrictModel):
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
    """Biped (3ds Max ``Bip01 ...``, e.g. Rocketbox), CesiumMan glTF, Mixamo-style and MakeHuman
    default-rig (``spine02``, ``neck01``, ``head``, ``upperarm01.L``, ``lowerarm01.L``) names. Biped's
    neck also carries the clavicles, so on Biped rigs only the head bone turns."""
    J = JointConfig
    return [
        J(name="spine", bones=["Bip01 Spine1", "Skeleton_torso_joint_2", "mixamorig:Spine1", "spine_01", "spine1", "spine02"],
          yaw_deg=_u(-12, 12), pitch_deg=_u(-4, 10), roll_deg=_u(-6, 6)),
        J(name="neck", bones=["Skeleton_neck_joint_1", "mixamorig:Neck", "neck_01", "neck", "neck01"],
          yaw_deg=_u(-15, 15), pitch_deg=_u(-8, 12), roll_deg=_u(-8, 8)),
        J(name="head", bones=["Bip01 Head", "Skeleton_neck_joint_2", "mixamorig:Head", "head"],
          yaw_deg=_u(-35, 35), pitch_deg=_u(-15, 20), roll_deg=_u(-12, 12)),
        J(name="upper_arm_l", bones=["Bip01 L UpperArm", "Skeleton_arm_joint_L__3_", "mixamorig:LeftArm", "upperarm_l", "upperarm01.L"],
          yaw_deg=_u(-15, 15), pitch_deg=_u(-35, 15), roll_deg=_u(-10, 35)),
        J(name="upper_arm_r", bones=["Bip01 R UpperArm", "Skeleton_arm_joint_R__2_", "mixamorig:RightArm", "upperarm_r", "upperarm01.R"],
          yaw_deg=_u(-15, 15), pitch_deg=_u(-35, 15), roll_deg=_u(-35, 10)),
        J(name="forearm_l", bones=["Bip01 L Forearm", "Skeleton_arm_joint_L__2_", "mixamorig:LeftForeArm", "lowerarm_l", "lowerarm01.L"],
          pitch_deg=_u(-70, 0)),
        J(name="forearm_r", bones=["Bip01 R Forearm", "Skeleton_arm_joint_R__3_", "mixamorig:RightForeArm", "lowerarm_r", "lowerarm01.R"],
          pitch_deg=_u(-70, 0)),
    ]


class PoseConfig(StrictModel):
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


class AppearanceConfig(StrictModel):
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


class AreaLightsConfig(StrictModel):
    """Extra area lights per relight (off: count 0), placed on a sphere around the target point."""

    count: Distribution = Constant(value=0)
    power_w: Distribution = _u(20, 150)
    temperature_k: Distribution = _u(2700, 6500)
    size_m: Distribution = _u(0.3, 1.0)
    distance_m: Distribution = _u(1.0, 2.5)
    elevation_deg: Distribution = _u(-10, 60)


class DepthSensorConfig(StrictModel):
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


class CameraRealismConfig(StrictModel):
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
