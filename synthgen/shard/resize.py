"""Resizing samples at shard time (``synthgen shard --size WxH --resize fit|crop|pad``).

Every sample comes out at exactly ``W x H``; the camera intrinsics follow exactly.

Geometry (OpenCV pixel-centre convention: the centre of the top-left pixel is (0, 0), so a pixel's
edges are at ``u - 0.5`` and ``u + 0.5``). A resize by ``s`` maps a point at ``u`` to
``u' = (u + 0.5) * s - 0.5``; a crop that drops ``o`` output pixels subtracts ``o``, a pad of ``p``
pixels adds ``p``. Hence ``fx' = fx * sx``, ``fy' = fy * sy`` and
``cx' = (cx + 0.5) * sx - 0.5 + dx``, ``cy' = (cy + 0.5) * sy - 0.5 + dy`` with the offsets ``dx, dy``
recorded in the sample's ``transform``:

- ``fit``: stretch each axis to the target (``sx = W'/W``, ``sy = H'/H``; the aspect ratio, and so
  the pixel aspect ``fx/fy``, changes), no offset.
- ``crop``: one scale ``s = max(W'/W, H'/H)`` (the image covers the target), centre crop:
  ``dx = -(W*s - W')/2`` (fractional offsets are exact: the resampling works on a fractional source box).
- ``pad``: the image fits inside, ``s = min(W'/W, H'/H)``, content ``round(W*s) x round(H*s)``
  centred with integer offsets ``dx = (W' - round(W*s)) // 2``; each axis uses its exact factor
  ``round(W*s)/W`` and ``round(H*s)/H`` (they differ by less than half a pixel over the image).
  Padding: RGB 0, depth 0 (invalid), mask 0.

Resampling:

- RGB (linear float): Lanczos-3 (Pillow, float32 per channel, antialiased: the kernel widens with
  the reduction), then clipped at 0 (Lanczos overshoots); done on *linear* values, before the
  ``--encode train`` view transform.
- depth (and optional depth-like members such as ``depth_sensor.exr``): **nearest**: each output
  pixel takes the source pixel under its centre. A value is always a depth that was measured or
  rendered, never a blend of foreground and background across an edge (no flying pixels) and
  invalid (0) stays invalid; edges alias by at most half a source pixel.
- mask: area average (Pillow ``BOX`` on float32: the exact mean over each output pixel's footprint
  when reducing), clipped to [0, 1].
"""

from __future__ import annotations

import copy
import io
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ShardInputError

RESIZE_MODES = ("fit", "crop", "pad")


def parse_target(text: str) -> tuple[int, int]:
    """``"256x192"`` -> ``(256, 192)`` (width, height); a single number means a square.

    Raises:
        ShardInputError: not ``WxH`` with positive integers.
    """
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*", str(text))
    if not m or int(m.group(1)) < 1 or (m.group(2) is not None and int(m.group(2)) < 1):
        raise ShardInputError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 256x256")
    w = int(m.group(1))
    return w, int(m.group(2)) if m.group(2) else w


def resize_options(size: str | tuple[int, int] | None, mode: str | None) -> dict[str, Any] | None:
    """Canonical ``{"width", "height", "mode"}`` (stored in the encode options), or None without ``size``.

    Raises:
        ShardInputError: a bad size or mode, or ``--resize`` without ``--size``.
    """
    if size is None:
        if mode is not None:
            raise ShardInputError("--resize needs --size WxH")
        return None
    w, h = parse_target(size) if isinstance(size, str) else (int(size[0]), int(size[1]))
    mode = mode or "crop"
    if mode not in RESIZE_MODES:
        raise ShardInputError(f"--resize {mode!r}: expected one of {', '.join(RESIZE_MODES)}")
    return {"width": w, "height": h, "mode": mode}


@dataclass(frozen=True)
class Geometry:
    """How a ``src`` (W, H) image maps to ``dst`` (W', H'): the source box (edge coordinates,
    pixels) resampled onto the content rectangle ``content`` = (x, y, width, height) of the output."""

    src: tuple[int, int]
    dst: tuple[int, int]
    mode: str
    sx: float
    sy: float
    box: tuple[float, float, float, float]
    content: tuple[int, int, int, int]

    @property
    def offset(self) -> tuple[float, float]:
        """``(dx, dy)`` in ``u' = (u + 0.5) * sx - 0.5 + dx``."""
        return (self.content[0] - self.box[0] * self.sx, self.content[1] - self.box[1] * self.sy)

    def map_points(self, uv: np.ndarray) -> np.ndarray:
        """Source pixel coordinates (..., 2) -> output pixel coordinates."""
        uv = np.asarray(uv, np.float64)
        dx, dy = self.offset
        return np.stack([(uv[..., 0] + 0.5) * self.sx - 0.5 + dx, (uv[..., 1] + 0.5) * self.sy - 0.5 + dy], -1)

    def K(self, K: Any) -> np.ndarray:
        """The intrinsics after the resize (exact, see the module doc)."""
        K = np.asarray(K, np.float64)
        dx, dy = self.offset
        A = np.array([[self.sx, 0.0, 0.5 * self.sx - 0.5 + dx], [0.0, self.sy, 0.5 * self.sy - 0.5 + dy],
                      [0.0, 0.0, 1.0]])
        return A @ K


def geometry(width: int, height: int, out_w: int, out_h: int, mode: str) -> Geometry:
    """The :class:`Geometry` of resizing a ``width x height`` image to ``out_w x out_h`` with ``mode``."""
    W, H = int(width), int(height)
    if mode == "fit":
        return Geometry((W, H), (out_w, out_h), mode, out_w / W, out_h / H, (0.0, 0.0, float(W), float(H)),
                        (0, 0, out_w, out_h))
    if mode == "crop":
        s = max(out_w / W, out_h / H)
        bw, bh = out_w / s, out_h / s
        x0, y0 = (W - bw) / 2, (H - bh) / 2
        return Geometry((W, H), (out_w, out_h), mode, s, s, (x0, y0, x0 + bw, y0 + bh), (0, 0, out_w, out_h))
    if mode == "pad":
        s = min(out_w / W, out_h / H)
        cw = min(out_w, max(1, int(math.floor(W * s + 0.5))))
        ch = min(out_h, max(1, int(math.floor(H * s + 0.5))))
        return Geometry((W, H), (out_w, out_h), mode, cw / W, ch / H, (0.0, 0.0, float(W), float(H)),
                        ((out_w - cw) // 2, (out_h - ch) // 2, cw, ch))
    raise ValueError(f"resize mode {mode!r}: expected one of {RESIZE_MODES}")


def _place(g: Geometry, content: np.ndarray) -> np.ndarray:
    x, y, cw, ch = g.content
    w, h = g.dst
    if (x, y, cw, ch) == (0, 0, w, h):
        return np.ascontiguousarray(content)
    out = np.zeros((h, w) + content.shape[2:], content.dtype)
    out[y:y + ch, x:x + cw] = content
    return out


def _pil_resize(a: np.ndarray, g: Geometry, method: int) -> np.ndarray:
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    r = im.resize((g.content[2], g.content[3]), method, box=g.box)
    return np.asarray(r, dtype=np.float32)


def resize_rgb(rgb: np.ndarray, g: Geometry) -> np.ndarray:
    """(H, W, 3) linear float -> (H', W', 3) float32: Lanczos-3 per channel, clipped at 0."""
    ch = [_pil_resize(rgb[..., c], g, Image.Resampling.LANCZOS) for c in range(rgb.shape[2])]
    return _place(g, np.maximum(np.stack(ch, -1), 0.0).astype(np.float32))


def resize_mask(mask: np.ndarray, g: Geometry) -> np.ndarray:
    """(H, W) coverage -> (H', W') float32: area average (box filter), clipped to [0, 1]."""
    return _place(g, np.clip(_pil_resize(mask, g, Image.Resampling.BOX), 0.0, 1.0))


def nearest_index(g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Source row and column of each output content pixel (the source pixel under its centre)."""
    x0, y0, _, _ = g.box
    W, H = g.src
    cols = np.clip(np.floor(x0 + (np.arange(g.content[2]) + 0.5) / g.sx), 0, W - 1).astype(np.intp)
    rows = np.clip(np.floor(y0 + (np.arange(g.content[3]) + 0.5) / g.sy), 0, H - 1).astype(np.intp)
    return rows, cols


def resize_depth(depth: np.ndarray, g: Geometry) -> np.ndarray:
    """(H, W) depth (metres, 0 = invalid) -> (H', W'): nearest (see the module doc); padding is 0."""
    rows, cols = nearest_index(g)
    return _place(g, np.asarray(depth)[np.ix_(rows, cols)])


def _fov_deg(f: float, c: float, n: int) -> float:
    """Angular extent of ``n`` pixels with focal ``f`` and principal point ``c`` (pixel centres)."""
    return math.degrees(math.atan((c + 0.5) / f) + math.atan((n - 0.5 - c) / f))


def resize_record(rec: dict[str, Any], g: Geometry) -> dict[str, Any]:
    """A copy of ``rec`` for the resized sample: ``image``, ``camera.K``, FoV, sensor width and a
    ``transform`` section (mode, sizes, scale, offset, source box, K before, resampling rules)."""
    rec = copy.deepcopy(rec)
    cam = rec.setdefault("camera", {})
    K0 = np.asarray(cam["K"], np.float64)
    K1 = g.K(K0)
    w, h = g.dst
    cam["K"] = K1.tolist()
    cam["fov_x_deg"] = _fov_deg(K1[0, 0], K1[0, 2], w)
    cam["fov_y_deg"] = _fov_deg(K1[1, 1], K1[1, 2], h)
    if cam.get("sensor_width_mm"):  # the sensor area behind the output image (focal length unchanged)
        cam["sensor_width_mm"] = float(cam["sensor_width_mm"]) * (w / g.sx) / g.src[0]
    rec["image"] = {"width": w, "height": h}
    dx, dy = g.offset
    rec["transform"] = {
        "kind": "resize", "mode": g.mode, "from": {"width": g.src[0], "height": g.src[1]},
        "to": {"width": w, "height": h}, "scale": [g.sx, g.sy], "offset_px": [dx, dy],
        "mapping": "u' = (u + 0.5) * sx - 0.5 + dx, v' = (v + 0.5) * sy - 0.5 + dy (pixel centres at integers)",
        "source_box": list(g.box), "content": list(g.content), "K_before": K0.tolist(),
        "rgb": "Lanczos-3 on linear RGB (Pillow, antialiased), clipped at 0",
        "depth": "nearest (source pixel under each output pixel centre; never blends across edges)",
        "mask": "area average (box filter), clipped to [0, 1]",
        "padding": {"rgb": 0.0, "depth": 0.0, "mask": 0.0},
    }
    return rec


def exr_bytes(channels: dict[str, np.ndarray], attributes: dict[str, Any] | None = None) -> bytes:
    """An in-memory OpenEXR file (scanline, ZIP), like :func:`synthgen.exr.write_exr` writes to disk."""
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, **(attributes or {})}
    buf = io.BytesIO()
    with OpenEXR.File(header, {k: np.ascontiguousarray(v) for k, v in channels.items()}) as f:
        f.write(buf)
    return buf.getvalue()


def estimated_bytes(opts: dict[str, Any], n_extras: int) -> int:
    """Upper bound of the uncompressed bytes of one resized sample's EXR members."""
    px = opts["width"] * opts["height"]
    return px * (6 + 4 + 2 + 4 * n_extras)
