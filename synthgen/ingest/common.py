"""Shared pieces of ``synthgen ingest``: the frame types readers produce, image decoding with clear
errors, colour conversion, key derivation, intrinsics files and pose maths.

Conventions (see ``docs/ingest.md``):

- RGB is decoded to 8-bit sRGB ``(H, W, 3) uint8`` and stored linear (IEC 61966-2-1 sRGB EOTF);
  sources that are already linear (float EXR) are kept as ``(H, W, 3) float32``.
- Depth is ``(H, W) float32`` planar z-depth along the optical axis, 0 = invalid. It is in metres
  when ``LoadedFrame.metric`` is true; otherwise in the relative units documented per format.
- ``K`` is 3x3 in pixels, OpenCV convention (centre of the top-left pixel at (0, 0)).
- ``camera_to_world`` is 4x4, OpenCV camera axes (x right, y down, z forward), metres.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from ..errors import FrameError, SourceError  # noqa: F401 (re-exported)
from ..colour import P3_TO_REC709, linear_to_srgb8, srgb8_to_linear  # noqa: F401 (re-exported)
from ..camera import DEFAULT_EQUIV_FOCAL_MM, default_K, make_K, scale_K  # noqa: F401 (re-exported)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".tif", ".tiff", ".bmp"}
KEY_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")

# Pillow refuses images above this many pixels as a decompression-bomb guard (default ~89 Mpx).
Image.MAX_IMAGE_PIXELS = 200_000_000


@dataclass
class FrameRef:
    """One frame found by a reader's ``scan`` (cheap: no pixel decoding).

    Attributes:
        key: sample key (``[A-Za-z0-9_-]+``), stable across re-ingests.
        subject_id: capture sequence / session id.
        files: role (``rgb``, ``depth``, ``mask``, ``photo`` ...) -> absolute path.
        info: reader-specific data passed on to ``load`` (timestamps, pose, intrinsics...).
        error: set when the scan already knows the frame is unusable: ``(reason, detail)``.
    """

    key: str
    subject_id: str
    files: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)
    error: tuple[str, str] | None = None


@dataclass
class LoadedFrame:
    """A decoded frame, before validation.

    Attributes:
        rgb: ``(H, W, 3) uint8`` sRGB-encoded, or ``(H, W, 3) float32`` linear when ``rgb_linear``.
        depth: ``(H, W) float32`` planar z-depth (metres when ``metric``), 0 = invalid.
        K: ``(3, 3)`` intrinsics in pixels for the *stored* resolution, or None when unknown.
        metric: depth is in metres (False: relative, see ``capture["depth_units"]``).
        camera_to_world: ``(4, 4)`` or None.
        capture: the record's ``capture`` section (sensor, format, units, scale, timestamps...).
        sensor_range_m: ``(near, far)`` plausible depth range for this sensor, or None.
        depth_bits: bit depth the depth file was stored with (8, 16, 32) or None.
        depth_raw_max: largest raw stored depth value (for the 8-bit check) or None.
        expects_16bit: the format stores depth as 16-bit integers.
        rgb_shape_raw / depth_shape_raw: shapes as decoded, before any registered resize.
        registered: the depth map is known to cover the same field of view as the RGB (the
            format says so), so differing sizes may be resampled onto each other.
    """

    rgb: np.ndarray
    depth: np.ndarray
    K: np.ndarray | None
    metric: bool
    capture: dict[str, Any]
    camera_to_world: np.ndarray | None = None
    rgb_linear: bool = False
    sensor_range_m: tuple[float, float] | None = None
    depth_bits: int | None = None
    depth_raw_max: float | None = None
    expects_16bit: bool = False
    registered: bool = False
    intrinsics_source: str | None = None
    camera_extra: dict[str, Any] = field(default_factory=dict)
    depth_extra: dict[str, Any] = field(default_factory=dict)
    timestamp_skew_s: float | None = None


# --------------------------------------------------------------------------------------------
# keys and files


def sanitize_token(name: str) -> str:
    """Make a key fragment from a file or folder name.

    Dots and spaces become ``_``. Other characters outside ``[A-Za-z0-9_-]`` also become ``_`` and
    then an 8-hex-digit hash of the original name is appended, so two odd names never collide and
    re-ingesting gives the same key. Example: ``1305031102.175304`` -> ``1305031102_175304``.
    """
    simple = name.replace(".", "_").replace(" ", "_")
    out = KEY_BAD_CHARS.sub("_", simple)
    if out != simple:
        digest = hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        out = f"{out}-{digest}"
    return out or "x"


def display_path(path: str | os.PathLike) -> str:
    """A printable (JSON-safe) version of a path: undecodable bytes are shown as ``\\xNN``."""
    s = os.fspath(path)
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def list_dir(folder: Path) -> list[Path]:
    """Sorted entries of ``folder``; raises SourceError naming the folder when it is unreadable."""
    try:
        return sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise SourceError(f"{display_path(folder)}: cannot list folder ({exc.strerror or exc})") from exc


def check_regular_file(path: Path) -> tuple[str, str] | None:
    """Return ``(reason, detail)`` when ``path`` cannot be read as a regular file (dangling link,
    symlink loop, folder, permission), else None."""
    try:
        st = path.stat()
    except OSError as exc:
        import errno

        if exc.errno == errno.ELOOP:
            return "symlink_loop", f"{display_path(path)}: symbolic link loop"
        if exc.errno == errno.ENOENT:
            return "missing_file", f"{display_path(path)}: no such file"
        return "unreadable_file", f"{display_path(path)}: {exc.strerror or exc}"
    import stat as _stat

    if not _stat.S_ISREG(st.st_mode):
        return "not_a_file", f"{display_path(path)}: not a regular file"
    if st.st_size == 0:
        return "empty_file", f"{display_path(path)}: file is empty"
    return None


def problem_code(code: str, role: str) -> str:
    """Reason code for a :func:`check_regular_file` problem of a file with ``role``: ``symlink_loop``,
    ``empty_file`` and ``missing_file`` are kept, anything else becomes ``unreadable_<role>``."""
    return code if code in ("symlink_loop", "empty_file", "missing_file") else f"unreadable_{role}"


def read_bytes(path: Path, role: str) -> bytes:
    """Read a whole file; raise FrameError(``unreadable_<role>``) naming the file on failure."""
    problem = check_regular_file(path)
    if problem:
        raise FrameError(problem_code(problem[0], role), problem[1])
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FrameError(f"unreadable_{role}", f"{display_path(path)}: {exc.strerror or exc}") from exc


def open_image(data: bytes, name: str, role: str) -> Image.Image:
    """Decode image bytes fully with Pillow (truncated files fail here, not later).

    Raises:
        FrameError: ``not_an_image`` when Pillow does not recognise the bytes, ``unreadable_<role>``
            when decoding fails (truncated or corrupt data).
    """
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise FrameError("not_an_image", f"{name}: not a recognised image file") from exc
    except Exception as exc:
        raise FrameError(f"unreadable_{role}", f"{name}: {exc}") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
    except Exception as exc:  # OSError "image file is truncated", SyntaxError for broken PGM...
        raise FrameError(f"unreadable_{role}", f"{name}: corrupt or truncated image ({exc})") from exc
    return im


def load_rgb8(path: Path) -> tuple[np.ndarray, Image.Image]:
    """Decode a colour image to ``(H, W, 3) uint8`` sRGB (EXIF orientation is *not* applied:
    depth maps are stored in sensor orientation too). Returns the array and the Pillow image (for
    its metadata). Raises FrameError naming the file."""
    im = open_image(read_bytes(path, "rgb"), display_path(path), "rgb")
    if im.mode not in ("RGB", "L", "RGBA", "P", "I;16", "I", "LA", "CMYK", "YCbCr"):
        raise FrameError("unreadable_rgb", f"{display_path(path)}: unsupported colour mode {im.mode}")
    if im.mode in ("I;16", "I"):
        raise FrameError("rgb_not_colour", f"{display_path(path)}: 16-bit single-channel image, expected colour")
    return np.asarray(im.convert("RGB")), im


def load_depth_int(path: Path) -> tuple[np.ndarray, int]:
    """Decode an integer depth image (PNG/PGM) to ``(H, W)`` uint16/uint8 and its bit depth.

    Raises FrameError naming the file (``unreadable_depth``, ``not_an_image``,
    ``depth_not_single_channel``).
    """
    im = open_image(read_bytes(path, "depth"), display_path(path), "depth")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im)
        if arr.dtype != np.uint16:
            if arr.min() < 0 or arr.max() > 65535:
                raise FrameError("unreadable_depth", f"{display_path(path)}: 32-bit integer depth out of 16-bit range")
            arr = arr.astype(np.uint16)
        return arr, 16
    if im.mode == "L":
        return np.asarray(im), 8
    if im.mode in ("RGB", "RGBA", "P", "LA"):
        raise FrameError("depth_not_single_channel",
                         f"{display_path(path)}: depth image has colour mode {im.mode}, expected 16-bit grey")
    raise FrameError("unreadable_depth", f"{display_path(path)}: unsupported depth image mode {im.mode}")


# --------------------------------------------------------------------------------------------
# colour

def icc_description(im: Image.Image) -> str | None:
    """Description string of the image's embedded ICC profile, or None."""
    icc = im.info.get("icc_profile")
    if not icc:
        return None
    try:
        from PIL import ImageCms

        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    except Exception:
        return "unreadable ICC profile"


# --------------------------------------------------------------------------------------------
# geometry


def quat_to_matrix(qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    """Unit quaternion (Hamilton, x y z w order as in TUM/Eigen) -> 3x3 rotation matrix.
    The quaternion is normalised first. Raises ValueError for a zero quaternion."""
    q = np.array([qw, qx, qy, qz], dtype=float)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError("zero or non-finite quaternion")
    w, x, y, z = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def pose_matrix(t: "list[float] | np.ndarray", q_xyzw: "list[float] | np.ndarray") -> np.ndarray:
    """4x4 rigid transform from translation ``(tx, ty, tz)`` and quaternion ``(qx, qy, qz, qw)``."""
    m = np.eye(4)
    m[:3, :3] = quat_to_matrix(*q_xyzw)
    m[:3, 3] = np.asarray(t, dtype=float)
    return m


def slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (any component order), shortest path."""
    q0 = q0 / np.linalg.norm(q0)
    q1 = q1 / np.linalg.norm(q1)
    d = float(np.dot(q0, q1))
    if d < 0:
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + a * (q1 - q0)
        return q / np.linalg.norm(q)
    th = np.arccos(d)
    return (np.sin((1 - a) * th) * q0 + np.sin(a * th) * q1) / np.sin(th)


def K_from_exif(im: Image.Image, width: int, height: int) -> tuple[np.ndarray, str] | None:
    """Intrinsics from EXIF ``FocalLengthIn35mmFilm`` (tag 0xA405) for an image of ``width x height``
    (the stored resolution), using :func:`default_K`'s formula. None when absent."""
    try:
        exif = im.getexif()
        sub = exif.get_ifd(0x8769)
        f35 = sub.get(0xA405) or exif.get(0xA405)
    except Exception:
        return None
    if not f35:
        return None
    try:
        f35 = float(f35)
    except (TypeError, ValueError):
        return None
    if f35 <= 0:
        return None
    return default_K(width, height, f35), f"EXIF FocalLengthIn35mmFilm={f35:g} mm (diagonal-equivalent)"


def load_intrinsics_file(path: Path) -> dict[str, Any]:
    """Read an intrinsics JSON file. Accepted shapes (all in pixels, OpenCV convention):

    - ``{"fx", "fy", "cx", "cy"[, "width", "height"]}`` (slambook2 note, generic);
    - ``{"K": [[fx,0,cx],[0,fy,cy],[0,0,1]][, "width", "height"]}``;
    - Open3D ``PinholeCameraIntrinsic`` JSON: ``{"width", "height", "intrinsic_matrix": [9 numbers,
      column-major]}`` (Redwood ``camera_primesense.json``).

    Returns ``{"K": 3x3 ndarray, "width": int|None, "height": int|None, "extra": dict}``.
    Raises SourceError naming the file when it is unreadable or has none of these shapes.
    """
    try:
        obj = json.loads(Path(path).read_text("utf-8"))
    except Exception as exc:
        raise SourceError(f"{display_path(path)}: unreadable intrinsics file ({exc})") from exc
    if not isinstance(obj, dict):
        raise SourceError(f"{display_path(path)}: intrinsics file must hold a JSON object")
    try:
        if "intrinsic_matrix" in obj:
            m = np.asarray(obj["intrinsic_matrix"], dtype=float).reshape(3, 3).T  # column-major
            K = m
        elif "K" in obj:
            K = np.asarray(obj["K"], dtype=float).reshape(3, 3)
        elif all(k in obj for k in ("fx", "fy", "cx", "cy")):
            K = make_K(float(obj["fx"]), float(obj["fy"]), float(obj["cx"]), float(obj["cy"]))
        else:
            raise ValueError("expected fx/fy/cx/cy, K, or intrinsic_matrix")
        if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.all(np.isfinite(K)):
            raise ValueError("focal lengths must be positive and finite")
    except (TypeError, ValueError) as exc:
        raise SourceError(f"{display_path(path)}: not an intrinsics file ({exc})") from exc
    w, h = obj.get("width"), obj.get("height")
    extra = {k: v for k, v in obj.items() if k in ("depth_scale", "distortion", "distortion_k1_k2_p1_p2_k3")}
    return {"K": K, "width": int(w) if w else None, "height": int(h) if h else None, "extra": extra,
            "path": display_path(path)}


def K_for_size(intr: dict[str, Any], width: int, height: int) -> np.ndarray:
    """The intrinsics of ``intr`` (from :func:`load_intrinsics_file`) for an image of
    ``width x height``: scaled with :func:`scale_K` when the file states another size."""
    K = intr["K"]
    if intr.get("width") and intr.get("height") and (intr["width"], intr["height"]) != (width, height):
        return scale_K(K, width / intr["width"], height / intr["height"])
    return np.array(K, dtype=float)
