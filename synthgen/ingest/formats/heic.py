"""iPhone portrait HEIC with an auxiliary depth/disparity image, read with pillow-heif.

The auxiliary image's depth-representation metadata (ISO/IEC 23002-3, as exposed by libheif:
``representation_type`` 0 uniform inverse Z, 1 uniform disparity, 2 uniform Z, 3 non-uniform
disparity; ``d_min``, ``d_max``) says how the normalised value ``v = raw / (2^bits - 1)`` maps:

- uniform disparity:  ``disp = d_min + v*(d_max - d_min)``, depth = ``1 / disp``;
- uniform inverse Z:  ``1/z = 1/d_max + v*(1/d_min - 1/d_max)``;
- uniform Z:          ``z = d_min + v*(d_max - d_min)``.

**Metric or relative.** ISO/IEC 23002-3 does not state the unit of ``d_min``/``d_max``. Apple
writes an XMP packet for the auxiliary depth item (``apdi:`` = ``http://ns.apple.com/pixeldatainfo/1.0/``,
``depthData:`` = ``http://ns.apple.com/depthData/1.0/``, the AVDepthData properties):
``apdi:AuxiliaryImageType`` (``disparity`` / ``depth``), ``apdi:NativeFormat`` (the CoreVideo pixel
format: ``hdis``/``fdis`` = 1751411059/1717856627 disparity, ``hdep``/``fdep`` =
1751410032/1717855600 depth) and ``depthData:Accuracy``. AVDepthData's accuracy ``absolute``
means the values are in real-world units (disparity in 1/m, depth in m); ``relative`` means they
are not calibrated. Front-camera (TrueDepth) portraits are ``absolute``; rear dual-camera portraits
are ``relative``. So the depth is marked metric (metres = ``1 / disparity``) exactly when the
depth item's XMP says ``Accuracy=absolute`` and its native format and the HEIF representation
agree (disparity with ``uniform_disparity``, depth with ``uniform_Z``); otherwise it is relative
and the stored values are ``1/disparity`` in the file's units. pillow-heif does not expose the
auxiliary item's XMP, so the packets are found in the file bytes (each ``<x:xmpmeta>`` packet with
an ``apdi:AuxiliaryImageType`` of ``disparity`` or ``depth``; mattes are skipped).
K comes from EXIF ``FocalLengthIn35mmFilm``; Apple's ``depthData:IntrinsicMatrix`` (column-major,
pixels of ``IntrinsicMatrixReferenceWidth x Height``) is recorded under ``capture.apple_depth_data``.
The depth image covers the same
field of view as the primary image, so the colour is resampled onto the depth grid. iPhone colour
is Display P3: it is linearised with the sRGB transfer function (shared by Display P3) and converted
to linear Rec.709/sRGB primaries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common import FrameError, FrameRef, LoadedFrame, K_from_exif, display_path, check_regular_file, problem_code
from ..options import IngestOptions
from . import Reader, is_dir, resolve_K, scan_photo_files

HEIC_EXTS = (".heic", ".heif", ".hif")
REPRESENTATIONS = {0: "uniform_inverse_Z", 1: "uniform_disparity", 2: "uniform_Z", 3: "nonuniform_disparity"}


APDI = "{http://ns.apple.com/pixeldatainfo/1.0/}"
DEPTHDATA = "{http://ns.apple.com/depthData/1.0/}"
NATIVE_DISPARITY = {1751411059: "hdis (16-bit float disparity)", 1717856627: "fdis (32-bit float disparity)"}
NATIVE_DEPTH = {1751410032: "hdep (16-bit float depth)", 1717855600: "fdep (32-bit float depth)"}


def apple_depth_xmp(data: bytes) -> dict | None:
    """Properties of the Apple depth-data XMP packet of the auxiliary depth/disparity item (see the
    module doc), with ``IntrinsicMatrix`` as a list of 9 floats; None when the file has none."""
    import re

    from ..xmp import XmpError, parse_xml, properties

    for m in re.finditer(rb"<x:xmpmeta.*?</x:xmpmeta>", data, re.S):
        pkt = m.group(0)
        if b"pixeldatainfo" not in pkt:
            continue
        try:
            root = parse_xml(pkt)
        except XmpError:
            continue
        props = properties(root)
        if props.get(APDI + "AuxiliaryImageType", "").lower() not in ("disparity", "depth"):
            continue
        out = {k.split("}", 1)[1]: v for k, v in props.items() if k.startswith((APDI, DEPTHDATA))}
        el = next(root.iter(DEPTHDATA + "IntrinsicMatrix"), None)
        if el is not None:
            try:
                vals = [float(li.text) for li in el.iter("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li")]
                out["IntrinsicMatrix"] = vals if len(vals) == 9 else None
            except (TypeError, ValueError):
                out["IntrinsicMatrix"] = None
        return out
    return None


def apple_metric(rep_name: str, apple: dict | None) -> tuple[bool, str]:
    """Whether the depth is metric per the Apple XMP (see the module doc), and why."""
    if not apple:
        return False, "no Apple depth-data XMP for the auxiliary image: units not stated"
    acc = (apple.get("Accuracy") or "").lower()
    try:
        native = int(apple.get("NativeFormat") or 0)
    except ValueError:
        native = 0
    kind = ("disparity" if native in NATIVE_DISPARITY else "depth" if native in NATIVE_DEPTH else None)
    agrees = (kind == "disparity" and rep_name == "uniform_disparity") or (kind == "depth" and rep_name == "uniform_Z")
    if acc == "absolute" and agrees:
        return True, (f"depthData:Accuracy=absolute with native format "
                      f"{NATIVE_DISPARITY.get(native) or NATIVE_DEPTH.get(native)} and {rep_name}: "
                      + ("disparity in 1/m" if kind == "disparity" else "depth in m"))
    return False, (f"depthData:Accuracy={acc or 'missing'}, native format {native or 'missing'}, {rep_name}: "
                   "not calibrated units (relative)")


def _decode(path: Path, name: str):
    """``(heif file, depth metadata dict, depth image, primary image)`` (PIL images).

    Raises:
        FrameError: ``no_depth`` without an auxiliary depth/disparity image, ``unreadable_photo``
            when the HEIC cannot be decoded.
    """
    import pillow_heif

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
    return heif, meta, dpil, primary


def _depth(dpil, meta: dict, name: str) -> tuple[np.ndarray, int, str, str]:
    """``(depth (H, W) float32, bits of the stored image, encoding, representation name)``: the
    auxiliary image decoded with the representation formulas of the module doc (0 where not positive).

    Raises:
        FrameError: ``unknown_depth_representation``.
    """
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
    return depth.astype(np.float32), bits, kind, rep_name


def _colour_profile(primary, heif) -> str | None:
    """Description of the primary image's ICC profile (from PIL, else the HEIF's), or None."""
    from ..common import icc_description

    icc = icc_description(primary)
    if icc is None and heif.info.get("icc_profile"):
        import io

        from PIL import ImageCms
        try:
            icc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(heif.info["icc_profile"]))).strip()
        except Exception:
            icc = "unreadable ICC profile"
    return icc


def _units_text(metric: bool, kind: str, rep_name: str, d_min: float, d_max: float, metric_why: str) -> str:
    """``capture.depth_units``: what the stored depth values are."""
    if metric:
        return (f"metres: 1/disparity, disparity = d_min + v*(d_max - d_min) in 1/m ({rep_name}, "
                f"d_min={d_min:g}, d_max={d_max:g}); {metric_why}" if kind == "disparity" else
                f"metres: {kind} image, {rep_name}, d_min={d_min:g}, d_max={d_max:g}; {metric_why}")
    return (f"relative: stored value = 1/disparity ({kind} image, {rep_name}, d_min={d_min:g}, "
            f"d_max={d_max:g}; {metric_why})" if kind == "disparity" else
            f"relative: {kind} image, {rep_name}, d_min={d_min:g}, d_max={d_max:g}; {metric_why}")


def _lens(primary) -> str | None:
    """EXIF ``LensModel`` of the primary image, or None."""
    try:
        return primary.getexif().get_ifd(0x8769).get(0xA434)
    except Exception:
        return None


APPLE_DEPTH_KEYS = ("AuxiliaryImageType", "NativeFormat", "Accuracy", "Quality", "Filtered", "FloatMinValue",
                    "FloatMaxValue", "IntrinsicMatrix", "IntrinsicMatrixReferenceWidth", "IntrinsicMatrixReferenceHeight")
"""The Apple depth-data XMP properties recorded under ``capture.apple_depth_data``."""


class HeicReader(Reader):
    name = "heic"
    description = ("iPhone portrait HEIC with auxiliary depth/disparity image (pillow-heif); metric when Apple's "
                   "XMP says absolute")

    def detect(self, source: Path) -> bool:
        if is_dir(source):
            return any(p.suffix.lower() in HEIC_EXTS for p in source.iterdir())
        return source.suffix.lower() in HEIC_EXTS

    def scan(self, source: Path, opts: IngestOptions, exclude: Path | None = None) -> list[FrameRef]:
        return scan_photo_files(source, opts, HEIC_EXTS, "HEIC")

    def load(self, ref: FrameRef, opts: IngestOptions) -> LoadedFrame:
        path = Path(ref.files["photo"])
        name = display_path(path.name)
        problem = check_regular_file(path)
        if problem:
            raise FrameError(problem_code(problem[0], "photo"), problem[1])
        heif, meta, dpil, primary = _decode(path, name)
        depth, bits, kind, rep_name = _depth(dpil, meta, name)
        d_min, d_max = meta.get("d_min"), meta.get("d_max")
        try:
            apple = apple_depth_xmp(path.read_bytes())
        except OSError:
            apple = None
        metric, metric_why = apple_metric(rep_name, apple)
        rgb = np.asarray(primary.convert("RGB"))
        icc = _colour_profile(primary, heif)
        h, w = depth.shape
        fallback = K_from_exif(primary, w, h)
        K, ksrc = resolve_K(ref.info.get("intr"), w, h, opts, fallback)
        lens = _lens(primary)
        capture = {"format": self.name, "sensor": f"iPhone portrait mode ({lens or 'lens not stated'})",
                   "source_files": {"photo": path.name},
                   "depth_units": _units_text(metric, kind, rep_name, d_min, d_max, metric_why),
                   "apple_depth_data": None if not apple else {k: apple.get(k) for k in APPLE_DEPTH_KEYS},
                   "raw_to_metres": None,
                   "heic": {"representation": rep_name, "d_min": d_min, "d_max": d_max, "depth_bits": bits,
                            "depth_size": [w, h], "primary_size": list(primary.size),
                            "disparity_reference_view": meta.get("disparity_reference_view")},
                   "colour_profile": icc,
                   "registration": "auxiliary depth covers the primary image's field of view; RGB resampled to depth size"}
        return LoadedFrame(rgb=rgb, depth=depth, K=K, metric=metric, capture=capture, depth_bits=bits, registered=True,
                           sensor_range_m=(0.1, 10.0) if metric else None,
                           intrinsics_source=ksrc, depth_extra={"encoding": kind, "representation": rep_name},
                           camera_extra={"colour_primaries_in": icc or "unknown"})
