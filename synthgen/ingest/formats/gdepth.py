"""Google depth photos with GDepth XMP (Camera "Lens Blur"; https://developers.google.com/depthmap-metadata).

The depth image is base64 in ``GDepth:Data`` (usually in extended XMP), ``GDepth:Mime`` its type.
Normalised value ``dn = v / (2^bits - 1)`` decodes as (``GDepth:Format``):

- ``RangeInverse``: ``d = far*near / (far - dn*(far - near))``;
- ``RangeLinear``:  ``d = dn*(far - near) + near``.

``near``/``far`` are in ``GDepth:Units``. The depth is marked metric only when the file states
``Units`` as metres (``m``) or millimetres (``mm``, divided by 1000); Lens Blur files state no units
(their near/far are arbitrary), so they are relative. ``GDepth:MeasureType`` ``OpticRay`` (range)
is converted to planar z with K. ``GDepth:Confidence`` (optional) 0 marks invalid pixels.
The colour is the original un-blurred image in ``GImage:Data`` when present, else the primary
JPEG. The depth map is "stretched to fit" the image, so RGB is resampled onto the depth grid.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import numpy as np

from ..common import (FrameError, FrameRef, LoadedFrame, K_from_exif, display_path, open_image, read_bytes)
from ..options import IngestOptions
from ..xmp import XmpError, read_properties
from . import Reader, is_dir, resolve_K, scan_photo_files

NS = "{http://ns.google.com/photos/1.0/depthmap/}"
NS_IMG = "{http://ns.google.com/photos/1.0/image/}"
JPEG_EXTS = (".jpg", ".jpeg")
UNITS_TO_M = {"m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0, "mm": 0.001,
              "millimeter": 0.001, "millimeters": 0.001, "millimetres": 0.001}


def decode_range(dn: np.ndarray, fmt: str, near: float, far: float) -> np.ndarray:
    """Normalised depth-image values in [0, 1] -> depth in the file's units (GDepth / Dynamic Depth
    ``RangeInverse`` / ``RangeLinear``). Raises ValueError for another format name."""
    f = fmt.lower()
    if f == "rangeinverse":
        return (far * near / (far - dn * (far - near))).astype(np.float32)
    if f == "rangelinear":
        return (dn * (far - near) + near).astype(np.float32)
    raise ValueError(f"unknown depth format {fmt!r} (expected RangeInverse or RangeLinear)")


def range_to_planar(rng: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Range (distance to the camera centre along the pixel's ray) -> planar z-depth:
    ``z = r / sqrt(((u - cx)/fx)^2 + ((v - cy)/fy)^2 + 1)`` (OpenCV pixel centres)."""
    h, w = rng.shape
    u = (np.arange(w) - K[0, 2]) / K[0, 0]
    v = (np.arange(h) - K[1, 2]) / K[1, 1]
    return (rng / np.sqrt(u[None, :] ** 2 + v[:, None] ** 2 + 1.0)).astype(np.float32)


def planar_depth(depth: np.ndarray, K: np.ndarray | None, measure: str, name: str,
                 ray_measures: tuple[str, ...] = ("opticray",)) -> np.ndarray:
    """``depth`` as planar z: unchanged when measured along the optical axis, converted by
    :func:`range_to_planar` when ``measure`` (the file's ``MeasureType``, case-insensitive) is one of
    ``ray_measures`` (distance along the pixel's ray).

    Raises:
        FrameError: ``intrinsics_missing``: ray depth but no intrinsics (``K`` None); names ``name``.
    """
    if measure.lower() not in ray_measures:
        return depth
    if K is None:
        raise FrameError("intrinsics_missing", f"{name}: OpticRay depth needs intrinsics to become planar z")
    return range_to_planar(depth, K)


def normalised(im) -> tuple[np.ndarray, int]:
    """Depth image -> ``(dn in [0, 1] float32, bits)``; colour images use their first channel."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(im).astype(np.float32) / 65535.0, 16
    a = np.asarray(im.convert("RGB") if im.mode in ("P", "LA", "RGBA") else im)
    if a.ndim == 3:
        a = a[..., 0]
    return a.astype(np.float32) / 255.0, 8


def jpeg_candidates(source: Path) -> list[Path]:
    if is_dir(source):
        return [p for p in sorted(source.iterdir(), key=lambda p: p.name) if p.suffix.lower() in JPEG_EXTS]
    return [source]


def sniff(path: Path, needle: bytes, limit: int = 1 << 17) -> bool:
    try:
        with open(path, "rb") as fh:
            return needle in fh.read(limit)
    except OSError:
        return False


class GDepthReader(Reader):
    name = "gdepth"
    description = "Google GDepth XMP depth photos (Lens Blur), incl. extended XMP"
    needle = b"http://ns.google.com/photos/1.0/depthmap/"
    exts = JPEG_EXTS

    def detect(self, source: Path) -> bool:
        dd = b"http://ns.google.com/photos/dd/1.0/"
        return any(p.suffix.lower() in self.exts and sniff(p, self.needle) and not sniff(p, dd)
                   for p in jpeg_candidates(source)[:50])

    def scan(self, source: Path, opts: IngestOptions, exclude: Path | None = None) -> list[FrameRef]:
        return scan_photo_files(source, opts, self.exts, '/'.join(self.exts))

    def load(self, ref: FrameRef, opts: IngestOptions) -> LoadedFrame:
        path = Path(ref.files["photo"])
        data = read_bytes(path, "photo")
        name = display_path(path.name)
        try:
            props, _ = read_properties(data)
        except XmpError as exc:
            raise FrameError("unreadable_xmp", f"{name}: {exc}") from exc
        if NS + "Data" not in props:
            raise FrameError("no_depth", f"{name}: no GDepth:Data in the XMP")
        try:
            fmt = props.get(NS + "Format", "RangeInverse")
            near, far = float(props[NS + "Near"]), float(props[NS + "Far"])
            ddata = base64.b64decode(props[NS + "Data"], validate=False)
        except (KeyError, ValueError, binascii.Error) as exc:
            raise FrameError("unreadable_xmp", f"{name}: bad GDepth Near/Far/Data ({exc})") from exc
        dim = open_image(ddata, f"{name} GDepth:Data", "depth")
        dn, bits = normalised(dim)
        try:
            depth = decode_range(dn, fmt, near, far)
        except ValueError as exc:
            raise FrameError("unreadable_xmp", f"{name}: GDepth:Format: {exc}") from exc
        if NS + "Confidence" in props:
            try:
                cim = open_image(base64.b64decode(props[NS + "Confidence"]), f"{name} GDepth:Confidence", "depth")
                conf, _ = normalised(cim)
                if conf.shape == depth.shape:
                    depth = np.where(conf > 0, depth, 0).astype(np.float32)
            except (FrameError, binascii.Error, ValueError):
                pass
        rgb_note = "primary JPEG image"
        if NS_IMG + "Data" in props:
            try:
                rgb_im = open_image(base64.b64decode(props[NS_IMG + "Data"]), f"{name} GImage:Data", "rgb")
                rgb_note = "GImage:Data (original un-blurred image)"
            except (FrameError, binascii.Error, ValueError):
                rgb_im = open_image(data, name, "rgb")
        else:
            rgb_im = open_image(data, name, "rgb")
        primary = open_image(data, name, "rgb") if rgb_note != "primary JPEG image" else rgb_im
        rgb = np.asarray(rgb_im.convert("RGB"))
        units = props.get(NS + "Units")
        scale = UNITS_TO_M.get((units or "").strip().lower())
        metric = scale is not None
        if metric:
            depth = depth * np.float32(scale)
        h, w = depth.shape
        K, ksrc = resolve_K(ref.info.get("intr"), w, h, opts, K_from_exif(primary, w, h))
        measure = props.get(NS + "MeasureType", "OpticalAxis")
        depth = planar_depth(depth, K, measure, name)
        capture = {"format": self.name, "sensor": "phone camera (Google GDepth / Lens Blur)",
                   "source_files": {"photo": path.name},
                   "depth_units": (f"GDepth {fmt}, near={near:g}, far={far:g}, units={units or 'not stated'}; "
                                   + ("metres" if metric else "relative (file does not state metres)")),
                   "raw_to_metres": None,
                   "gdepth": {"format": fmt, "near": near, "far": far, "units": units, "measure_type": measure,
                              "mime": props.get(NS + "Mime"), "depth_bits": bits,
                              "confidence": NS + "Confidence" in props},
                   "rgb_source": rgb_note,
                   "registration": "GDepth: depth map stretched to fit the colour image; RGB resampled to depth size"}
        return LoadedFrame(rgb=rgb, depth=depth, K=K, metric=metric, capture=capture, depth_bits=bits,
                           registered=True, intrinsics_source=ksrc,
                           sensor_range_m=(near * scale, far * scale) if metric else None,
                           depth_extra={"encoding": fmt, "near": near, "far": far, "file_units": units})
