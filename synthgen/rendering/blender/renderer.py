"""Everything that touches Blender (``bpy``) lives here; the rest of synthgen never imports bpy.

:class:`BlenderRenderer` keeps one Blender scene alive between samples: a camera, a world whose
environment texture is an HDRI, and at most one imported scan under an empty ``subject_root``.
It re-imports only when the scan changes and keeps loaded HDRI images cached.

World axes are Blender's: Z up, metres after scan normalisation; the subject stands on z = 0,
centred on x = y = 0, facing -Y.

Render read-back: Cycles writes one multilayer float32 EXR (Combined RGBA, Depth Z, Environment;
Diffuse Color and Glossy Color only when asked for, see :meth:`BlenderRenderer.render`)
to a private temporary folder, which is read back with the ``OpenEXR`` package. The film is always
transparent so that the Combined alpha is the anti-aliased subject coverage; for a visible HDRI
background the Environment pass (the background radiance weighted by background coverage) is added
back onto the premultiplied Combined colour. The Z pass in Cycles is planar depth written from the
first sample only (not anti-aliased); background reads 1e10 and is stored as 0.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from ...errors import GpuUnavailableError, ScanImportError  # noqa: F401 (re-exported)
from ...exr import read_exr
from ..subject import SubjectInfo
from .util import _quiet_stdout
from .camera_rig import CameraMixin
from .human import HumanMixin
from .lighting import LightingMixin
from .pose import PoseMixin
from .relight import RelightMixin
from .scan import ScanMixin

log = logging.getLogger("synthgen.blender")

NEUTRAL_ALBEDO = (0.5, 0.5, 0.5, 1.0)
BACKGROUND_Z = 1e9  # Cycles writes 1e10 for background; anything beyond this is treated as background


def blender_version() -> str:
    import bpy

    return bpy.app.version_string


class BlenderRenderer(ScanMixin, HumanMixin, PoseMixin, LightingMixin, CameraMixin, RelightMixin):
    """A persistent Blender scene for rendering samples. Not thread-safe; one per process.

    Args:
        threads: Cycles CPU threads.
    """

    def __init__(self, threads: int = 1, device: str = "cpu", gpu_backend: str = "optix"):
        import bpy

        self.bpy = bpy
        with _quiet_stdout():
            bpy.ops.wm.read_factory_settings(use_empty=True)
        self.scene = bpy.context.scene
        self.threads = threads
        self.device = device
        self.gpu_devices: list[str] = []
        if device == "gpu":
            self.gpu_devices = self._enable_gpu(gpu_backend)
        self._tmpdir = tempfile.TemporaryDirectory(prefix="synthgen-blender-")
        self._hdri_images: dict[str, Any] = {}
        self.scan_info: SubjectInfo | None = None
        self._cache_key: tuple | None = None
        self._scan_objects: list[Any] = []
        self._pose_actions: list[tuple[Any, Any]] = []
        self._area_lights: list[Any] = []
        self._motion_blur_state: dict[str, Any] | None = None
        self._domes: list[Any] = []  # one-pass relights (RelightMixin)
        self._hdri_pixel_cache: OrderedDict = OrderedDict()
        self._denoiser = None
        self.relight_cache: Any = None  # the worker's per-view one-pass results
        self._setup_scene()

    # ------------------------------------------------------------------ scene
    def _setup_scene(self) -> None:
        bpy, sc = self.bpy, self.scene
        sc.render.engine = "CYCLES"
        sc.cycles.device = "GPU" if self.gpu_devices else "CPU"
        sc.render.threads_mode = "FIXED"
        sc.render.threads = self.threads
        sc.render.film_transparent = True
        sc.render.resolution_percentage = 100
        sc.render.pixel_aspect_x = sc.render.pixel_aspect_y = 1.0
        sc.cycles.use_animated_seed = False
        sc.view_settings.view_transform = "Standard"
        vl = sc.view_layers[0]
        vl.use_pass_z = True
        vl.use_pass_environment = True
        settings = sc.render.image_settings
        settings.file_format = "OPEN_EXR_MULTILAYER"
        settings.color_depth = "32"
        settings.exr_codec = "ZIP"
        cam_data = bpy.data.cameras.new("synthgen_camera")
        cam_data.sensor_fit = "HORIZONTAL"
        cam_data.clip_start = 0.01
        cam_data.clip_end = 1000.0
        self.camera = bpy.data.objects.new("synthgen_camera", cam_data)
        sc.collection.objects.link(self.camera)
        sc.camera = self.camera
        world = bpy.data.worlds.new("synthgen_world")
        world.use_nodes = True
        sc.world = world
        nt = world.node_tree
        nt.nodes.clear()
        coord = nt.nodes.new("ShaderNodeTexCoord")
        self._mapping = nt.nodes.new("ShaderNodeMapping")
        self._env = nt.nodes.new("ShaderNodeTexEnvironment")
        self._background = nt.nodes.new("ShaderNodeBackground")
        out = nt.nodes.new("ShaderNodeOutputWorld")
        nt.links.new(coord.outputs["Generated"], self._mapping.inputs["Vector"])
        nt.links.new(self._mapping.outputs["Vector"], self._env.inputs["Vector"])
        nt.links.new(self._env.outputs["Color"], self._background.inputs["Color"])
        nt.links.new(self._background.outputs["Background"], out.inputs["Surface"])

    def _enable_gpu(self, backend: str) -> list[str]:
        """Make Cycles render on the GPUs of ``backend`` (optix | cuda) that this process can see (a
        Ray GPU worker sees only its own through ``CUDA_VISIBLE_DEVICES``). Returns their names.

        Raises:
            GpuUnavailableError: Blender finds no device of that backend.
        """
        prefs = self.bpy.context.preferences.addons["cycles"].preferences
        kind = backend.upper()
        try:
            prefs.compute_device_type = kind
            prefs.refresh_devices()
        except (TypeError, ValueError, RuntimeError) as exc:
            raise GpuUnavailableError(f"render.gpu_backend: {backend}: Blender's Cycles cannot use it here "
                                      f"({exc})") from exc
        found = [d for d in prefs.devices if d.type == kind]
        if not found:
            raise GpuUnavailableError(
                f"render.device: gpu with gpu_backend {backend}: Blender found no {kind} device "
                f"(found: {sorted({d.type for d in prefs.devices})}); check the NVIDIA driver and "
                "CUDA_VISIBLE_DEVICES, or use render.device: cpu")
        for d in prefs.devices:
            d.use = d.type == kind
        return [d.name for d in found]

    # ------------------------------------------------------------------ scans
    def configure(self, width: int, height: int, samples: int, adaptive_threshold: float,
                  denoise: bool, max_bounces: int, *, diffuse_bounces: int | None = None,
                  glossy_bounces: int | None = None, transmission_bounces: int | None = None,
                  transparent_bounces: int | None = None, env_map_resolution: int = 2048,
                  light_tree: bool = True, denoiser_prepass: str = "albedo_normal",
                  denoiser_prefilter: str = "none", denoiser_quality: str = "high",
                  clamp_indirect: float = 10.0, persistent_data: bool = False) -> None:
        """Set resolution (pixels) and Cycles quality settings.

        ``adaptive_threshold`` 0 switches adaptive sampling off. Bounce limits left at ``None`` keep
        Blender's defaults (diffuse 4, glossy 4, transmission 12, transparent 8); ``max_bounces``
        caps them all. ``env_map_resolution`` > 0 sets the world's importance map to Manual with that
        resolution; 0 keeps Cycles' Automatic (which, with a 1k HDRI, costs about 2 CPU-seconds per
        render to build, against 0.1 s at 1024). ``denoiser_prepass``: none | albedo | albedo_normal
        (the OIDN guiding passes); ``denoiser_prefilter``: accurate | fast | none (how OIDN cleans the
        guiding passes; accurate, Blender's default, runs OIDN on them first, which at 256×256 costs
        about 1.3 CPU-seconds per render here for no PSNR gain on portraits at 64 spp); ``denoiser_quality``: high | balanced | fast; ``clamp_indirect``: maximum
        indirect sample value (0 = no clamp).
        """
        sc = self.scene
        sc.render.resolution_x, sc.render.resolution_y = width, height
        sc.cycles.samples = samples
        sc.cycles.use_adaptive_sampling = adaptive_threshold > 0
        if adaptive_threshold > 0:
            sc.cycles.adaptive_threshold = adaptive_threshold
        sc.cycles.use_denoising = denoise
        if denoise:
            sc.cycles.denoiser = "OPENIMAGEDENOISE"
            sc.cycles.denoising_input_passes = {"none": "RGB", "albedo": "RGB_ALBEDO",
                                                "albedo_normal": "RGB_ALBEDO_NORMAL"}[denoiser_prepass]
            sc.cycles.denoising_prefilter = denoiser_prefilter.upper()
            sc.cycles.denoising_quality = denoiser_quality.upper()
        sc.cycles.sample_clamp_indirect = float(clamp_indirect)
        sc.cycles.max_bounces = max_bounces
        defaults = {"diffuse_bounces": 4, "glossy_bounces": 4, "transmission_bounces": 12, "transparent_max_bounces": 8}
        for attr, val in (("diffuse_bounces", diffuse_bounces), ("glossy_bounces", glossy_bounces),
                          ("transmission_bounces", transmission_bounces),
                          ("transparent_max_bounces", transparent_bounces)):
            setattr(sc.cycles, attr, defaults[attr] if val is None else int(val))
        wc = sc.world.cycles
        if env_map_resolution > 0:
            wc.sampling_method = "MANUAL"
            wc.sample_map_resolution = int(env_map_resolution)
        else:
            wc.sampling_method = "AUTOMATIC"
        sc.cycles.use_light_tree = light_tree
        sc.render.use_persistent_data = persistent_data

    # ------------------------------------------------------------------ render
    def render(self, seed: int, background_visible: bool = True, surface_passes: bool = False) -> dict[str, Any]:
        """Render the current scene.

        Args:
            seed: Cycles seed.
            background_visible: add the HDRI background (Environment pass) to the RGB.
            surface_passes: also render Cycles' Diffuse Color and Glossy Color passes (the colour
                weights of the diffuse and glossy BSDF closures at the first hit: albedo and
                specular reflectance, independent of the lighting). Off by default: the plain render
                is unchanged. Used by the depth-sensor simulation (:mod:`synthgen.depth_sensor`).

        Returns:
            dict with ``rgb`` (H, W, 3) float32 linear RGB (premultiplied over black when the
            background is not visible), ``depth`` (H, W) float32 planar z-depth in metres with 0 for
            background, ``mask`` (H, W) float32 coverage in [0, 1], and ``seconds`` (Cycles wall time).
            With ``surface_passes`` also ``diffuse_color`` and ``glossy_color``: (H, W, 3) float32
            linear RGB in [0, 1], divided by the coverage (the passes average over the pixel's
            samples and background samples add 0; un-premultiplied so a silhouette pixel holds the
            surface's own colour), 0 where the coverage is 0.
        """
        out = self._render_read(seed, surface_passes)
        ch = out.pop("channels")
        pre = "ViewLayer."
        rgb = np.stack([ch[pre + f"Combined.{c}"] for c in "RGB"], axis=-1).astype(np.float32)
        if background_visible:
            rgb += np.stack([ch[pre + f"Env.{c}"] for c in "RGB"], axis=-1)
        return {"rgb": rgb, **out}

    def _render_read(self, seed: int, surface_passes: bool) -> dict[str, Any]:
        """Render with Cycles seed ``seed`` and read the EXR back: ``channels`` (every channel by its
        multilayer name), ``depth``, ``mask``, ``seconds`` and, with ``surface_passes``, the colour
        passes (see :meth:`render`)."""
        sc = self.scene
        sc.cycles.seed = int(seed)
        vl = sc.view_layers[0]
        vl.use_pass_diffuse_color = bool(surface_passes)
        vl.use_pass_glossy_color = bool(surface_passes)
        path = os.path.join(self._tmpdir.name, "render.exr")
        sc.render.filepath = path
        t0 = time.perf_counter()
        with _quiet_stdout():
            self.bpy.ops.render.render(write_still=True)
        seconds = time.perf_counter() - t0
        ch = read_exr(path)
        os.remove(path)
        pre = "ViewLayer."
        mask = np.clip(ch[pre + "Combined.A"].astype(np.float32), 0.0, 1.0)
        z = ch[pre + "Depth.Z"].astype(np.float32)
        depth = np.where(np.isfinite(z) & (z < BACKGROUND_Z), z, 0.0).astype(np.float32)
        out = {"channels": ch, "depth": depth, "mask": mask, "seconds": seconds}
        if surface_passes:
            cov = mask[..., None]
            for key, name in (("diffuse_color", "DiffCol"), ("glossy_color", "GlossCol")):
                c = np.stack([ch[pre + f"{name}.{k}"] for k in "RGB"], axis=-1).astype(np.float32)
                with np.errstate(invalid="ignore", divide="ignore"):
                    c = np.where(cov > 1e-4, c / np.maximum(cov, 1e-4), 0.0)
                out[key] = np.clip(np.nan_to_num(c), 0.0, 1.0).astype(np.float32)
        return out
