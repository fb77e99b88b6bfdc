"""iPhone portrait HEIC with an auxiliary depth/disparity image, read with pillow-heif.

The auxiliary image's depth-representation metadata (ISO/IEC 23002-3, as exposed by libheif:
``representation_type`` 0 uniform inverse Z, 1 uniform disparity, 2 uniform Z, 3 non-uniform
disparity; ``d_min``, ``d_max``) says how the normalised value ``v = raw / (2^bits - 1)`` maps:

- uniform disparity:  ``disp = d_min + v*(d_max - d_min)``, depth = ``1 / disp``;
- uniform inverse Z:  ``1/z = 1/d_max + v*(1/d_min - 1/d_max)``;
- uniform Z:          ``z = d_min + v*(d_max - d_min)``.

HEIC files do not state the unit of ``d_min``/``d_max`` (Apple's disparity is usually 1/m, but
nothing in the file guarantees it), so the result is marked relative (``depth.metric=false``); the
stored values are ``1/disparity`` in the file's (unknown) units. The depth image covers the same
field of view as the primary image, so the colour is resampled onto the depth grid. iPhone colour
is Display P3: it is linearised with the sRGB transfer function (shared by Display P3) and converted
to linear Rec.709/sRGB primaries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common import FrameError, FrameRef, LoadedFrame, K_from_exif, display_path, check_regular_file
from ..options import IngestOptions
from . import Reader, is_dir, resolve_K, scan_photo_files

HEIC_EXTS = (".heic", ".heif", ".hif")
REPRESENTATIONS = {0: "uniform_inverse_Z", 1: "uniform_disparity", 2: "uniform_Z", 3: "nonuniform_disparity"}


class HeicReader(Reader):
    name = "heic"
    description = "iPhone portrait HEIC with auxiliary depth/disparity image (pillow-heif)"

    def detect(self, source: Path) -> bool:
        if is_dir(source):
            return any(p.suffix.lower() in HEIC_EXTS for p in source.iterdir())
        return source.suffix.lower() in HEIC_EXTS

    def scan(self, source: Path, opts: IngestOptions, exclude: Path | None = None) -> list[FrameRef]:
        return scan_photo_files(source, opts, HEIC_EXTS, "HEIC")

    def load(self, ref: FrameRef, opts: IngestOptions) -> LoadedFrame:
        import pillow_heif

        path = Path(ref.files["photo"])
        name = display_path(path.name)
        problem = check_regular_file(path)
        if problem:
            raise FrameError(problem[0] if problem[0] == "symlink_loop" else "unreadable_photo", problem[1])
        try:
            heif = pillow_heif.open_heif(str(path), convert_hdr_to_8bit=True)
            depth_imgs = heif.info.get("depth_images") or []
            if not depth_imgs:
                raise FrameError("no_depth", f"{name}: HEIC has no auxiliary depth/disparity image")
            dimg = depth_imgs[0]
            meta = dict(dimg.info.get("metadata") or {})
            dpil = dimg.to_pillow()
            primary = heif.to_pillow()
        except FrameError:
            raise
        except Exception as exc:
            raise FrameError("unreadable_photo", f"{name}: cannot decode HEIC ({exc})") from exc
        raw = np.asarray(dpil)
        if raw.ndim == 3:
            raw = raw[..., 0]
        bits = 16 if raw.dtype == np.uint16 else 8
        v = raw.astype(np.float32) / float(2 ** bits - 1)
        rep = meta.get("representation_type")
        d_min, d_max = meta.get("d_min"), meta.get("d_max")
        if rep is None or d_min is None or d_max is None:
            raise FrameError("unknown_depth_representation",
                             f"{name}: auxiliary image lacks depth representation metadata ({meta})")
        rep_name = REPRESENTATIONS.get(int(rep), f"unknown({rep})")
        with np.errstate(divide="ignore", invalid="ignore"):
            if rep_name == "uniform_disparity":
                disp = d_min + v * (d_max - d_min)
                depth = np.where(disp > 0, 1.0 / disp, 0.0)
                kind = "disparity"
            elif rep_name == "uniform_inverse_Z":
                inv = 1.0 / d_max + v * (1.0 / d_min - 1.0 / d_max)
                depth = np.where(inv > 0, 1.0 / inv, 0.0)
                kind = "inverse depth"
            elif rep_name == "uniform_Z":
                depth = d_min + v * (d_max - d_min)
                kind = "depth"
            else:
                raise FrameError("unknown_depth_representation", f"{name}: unsupported representation {rep_name}")
        depth = depth.astype(np.float32)
        rgb = np.asarray(primary.convert("RGB"))
        from ..common import icc_description

        icc = icc_description(primary)
        if icc is None and heif.info.get("icc_profile"):
            import io

            from PIL import ImageCms
            try:
                icc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(heif.info["icc_profile"]))).strip()
            except Exception:
                icc = "unreadable ICC profile"
        h, w = depth.shape
        K, ksrc = resolve_K(ref.info.get("intr"), w, h, opts, K_from_exif(primary, w, h))
        capture = {"format": self.name, "sensor": "iPhone portrait mode (HEIC auxiliary depth image)",
                   "source_files": {"photo": path.name},
                   "depth_units": (f"relative: stored value = 1/disparity ({kind} image, {rep_name}, d_min={d_min:g}, "
                                   f"d_max={d_max:g}; units not stated by the file)" if kind == "disparity" else
                                   f"relative: {kind} image, {rep_name}, d_min={d_min:g}, d_max={d_max:g}; units not stated"),
                   "raw_to_metres": None,
                   "heic": {"representation": rep_name, "d_min": d_min, "d_max": d_max, "depth_bits": bits,
                            "depth_size": [w, h], "primary_size": list(primary.size),
                            "disparity_reference_view": meta.get("disparity_reference_view")},
                   "colour_profile": icc,
                   "registration": "auxiliary depth covers the primary image's field of view; RGB resampled to depth size"}
        return LoadedFrame(rgb=rgb, depth=depth, K=K, metric=False, capture=capture, depth_bits=bits, registered=True,
                           intrinsics_source=ksrc, depth_extra={"encoding": kind, "representation": rep_name},
                           camera_extra={"colour_primaries_in": icc or "unknown"})
