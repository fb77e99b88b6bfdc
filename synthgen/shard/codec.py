"""Shard member encodings (``--encode exr|train``) and decoder hooks for WebDataset and Ray Data.

Members in a shard (WebDataset splits a member name at the first dot into key and extension):

=================  ====================================================================================
``KEY.rgb.exr``    linear scene-referred RGB, half float (the store's file, byte for byte)
``KEY.depth.exr``  planar z-depth, metres, float32, 0 = invalid (store file)
``KEY.mask.exr``   subject coverage [0, 1], half float (store file)
``KEY.json``       the sample record (``exr``: the store's bytes; ``train``: see below)
``KEY.rgb.png``    ``train``: 8-bit sRGB (or ``KEY.rgb.jpg``), made by :func:`view_transform`
``KEY.depth.png``  ``train``: 16-bit grey, millimetres (uint16), 0 = invalid (or ``depth.exr``)
``KEY.mask.png``   ``train``: 8-bit grey, ``round(255 * coverage)``
``KEY.NAME.exr``   optional extra members listed in the record's ``files`` (e.g. ``depth_sensor.exr``,
                   simulated sensor depth, float32 ``Z``, metres, 0 = hole): the store's file, byte for
                   byte, in both encodings
=================  ====================================================================================

The *train* view transform (documented in docs/shard.md) is, per pixel and channel::

    x = linear * 2 ** exposure_ev                     # exposure
    x = x                  (tone "clip")              # tone curve, or
    x = x / (1 + x)        (tone "reinhard")          #   Reinhard et al. 2002, eq. 3
    v = srgb_oetf(clip(x, 0, 1))                      # IEC 61966-2-1 sRGB encoding
    rgb8 = floor(255 * v + 0.5)

Depth in millimetres is ``round(1000 * z)``; pixels that are invalid (z <= 0 or not finite) or
farther than 65.535 m are stored as 0. In ``train`` shards the JSON record is the store record with
``files`` moved to ``source_files`` and an ``encoding`` section describing the above.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from PIL import Image

from ..colour import TONE_CURVES, rgb_to_8bit, view_transform  # noqa: F401 (re-exported)
from ..exr import DEPTH_CHANNEL, LEGACY_DEPTH_CHANNEL, read_exr_bytes  # noqa: F401 (re-exported)

EXR_MEMBERS = ("rgb.exr", "depth.exr", "mask.exr", "json")
PNG_COMPRESS_LEVEL = 6
JPEG_QUALITY = 95


def encode_options(name: str = "exr", rgb: str = "png", depth: str = "png16", exposure_ev: float = 0.0,
                   tone: str = "clip") -> dict[str, Any]:
    """Canonical encoding options dict (stored in the manifest and part of the fingerprint)."""
    if name == "exr":
        return {"name": "exr"}
    if rgb not in ("png", "jpeg"):
        raise ValueError(f"rgb format {rgb!r}: expected png or jpeg")
    if depth not in ("png16", "exr"):
        raise ValueError(f"depth format {depth!r}: expected png16 or exr")
    if tone not in TONE_CURVES:
        raise ValueError(f"tone curve {tone!r}: expected one of {TONE_CURVES}")
    return {"name": "train", "rgb": rgb, "depth": depth, "exposure_ev": float(exposure_ev), "tone": tone}


def member_names(encode: dict[str, Any]) -> tuple[str, str, str, str]:
    """Member extensions of one sample, in the order they are written: rgb, depth, mask, json."""
    if encode["name"] == "exr":
        return EXR_MEMBERS
    return ("rgb.jpg" if encode["rgb"] == "jpeg" else "rgb.png",
            "depth.png" if encode["depth"] == "png16" else "depth.exr", "mask.png", "json")


def depth_to_mm16(depth: np.ndarray) -> np.ndarray:
    """(H, W) float metres -> (H, W) uint16 millimetres; invalid or > 65.535 m -> 0."""
    d = np.asarray(depth, dtype=np.float64)
    mm = np.round(np.where(np.isfinite(d) & (d > 0), d, 0.0) * 1000.0)
    mm[mm > 65535] = 0
    return mm.astype(np.uint16)


def mask_to_8bit(mask: np.ndarray) -> np.ndarray:
    """(H, W) float coverage -> (H, W) uint8 ``floor(255 * clip(m, 0, 1) + 0.5)``."""
    m = np.clip(np.nan_to_num(np.asarray(mask, dtype=np.float32)), 0.0, 1.0)
    return np.floor(m * 255.0 + 0.5).astype(np.uint8)


def png_bytes(arr: np.ndarray) -> bytes:
    """Encode uint8 (H, W) / (H, W, 3) or uint16 (H, W) as PNG (zlib level 6, no metadata)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def jpeg_bytes(arr: np.ndarray) -> bytes:
    """Encode uint8 (H, W, 3) as baseline JPEG, quality 95, 4:4:4."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


def encode_train(key: str, blobs: dict[str, bytes], record: dict[str, Any], encode: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Re-encode one sample for training.

    Args:
        key: sample key.
        blobs: the store's member bytes ``{"rgb.exr": ..., "depth.exr": ..., "mask.exr": ...}``.
        record: the parsed store record.
        encode: options from :func:`encode_options` with ``name == "train"``.

    Returns:
        ``[(member extension, bytes), ...]`` in write order (rgb, depth, mask, json).

    Raises:
        ValueError: an EXR cannot be decoded or lacks its channels (message names the member).
    """
    rgb, depth, mask = (decode_image(kind, m, blobs[m], f"{key}.{m}")[0] for kind, m in
                        (("rgb", "rgb.exr"), ("depth", "depth.exr"), ("mask", "mask.exr")))
    rgb_name, depth_name, mask_name, _ = member_names(encode)
    rgb8 = rgb_to_8bit(rgb, encode["exposure_ev"], encode["tone"])
    out = [(rgb_name, jpeg_bytes(rgb8) if encode["rgb"] == "jpeg" else png_bytes(rgb8))]
    if encode["depth"] == "png16":
        mm = depth_to_mm16(depth)
        out.append((depth_name, png_bytes(mm)))
        depth_info = {"file": depth_name, "dtype": "uint16", "units": "millimetres", "scale_to_metres": 0.001,
                      "invalid_value": 0, "max_metres": 65.535,
                      "dropped_pixels": int(((depth > 65.5355) & np.isfinite(depth)).sum())}
    else:
        out.append((depth_name, blobs["depth.exr"]))
        depth_info = {"file": depth_name, "dtype": "float32", "units": "metres", "invalid_value": 0}
    out.append((mask_name, png_bytes(mask_to_8bit(mask))))
    rec = dict(record)
    rec["source_files"] = rec.pop("files", {})
    rec["encoding"] = {
        "name": "train",
        "rgb": {"file": rgb_name, "dtype": "uint8", "colour_space": "sRGB (IEC 61966-2-1)",
                "view_transform": {"exposure_ev": encode["exposure_ev"], "tone": encode["tone"],
                                   "clip": [0.0, 1.0], "quantisation": "floor(255 * v + 0.5)"},
                **({"jpeg_quality": JPEG_QUALITY} if encode["rgb"] == "jpeg" else {})},
        "depth": depth_info,
        "mask": {"file": mask_name, "dtype": "uint8", "scale": 1 / 255, "quantisation": "floor(255 * m + 0.5)"},
    }
    out.append(("json", (json.dumps(rec, indent=2, sort_keys=True) + "\n").encode("utf-8")))
    return out


# ----------------------------------------------------------------------------- decoding (readers)

EXR_CHANNELS = {"rgb": ("R", "G", "B"), "depth": (DEPTH_CHANNEL,), "mask": ("Y",)}
"""Channels of each image kind in EXR members (sample format 2; format 1 stored depth in ``Z``,
which :func:`decode_image` still accepts)."""


def decode_image(kind: str, ext: str, data: bytes, what: str | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Decode one image member of a sample (a shard member or a store file): the one decoder of image members.

    Args:
        kind: ``"rgb"``, ``"depth"`` or ``"mask"``.
        ext: the member extension; ``*exr`` is read as OpenEXR, anything else (``png``, ``jpg``,
            ``jpeg``) with Pillow.
        data: the member bytes.
        what: the member's name for error messages (None: messages name no member).

    Returns:
        ``(array, stored)``. ``array``: rgb (H, W, 3) float32 linear from EXR or uint8 sRGB from
        PNG/JPEG; depth (H, W) float32 metres, 0 = invalid (EXR as stored; PNG: uint16 millimetres
        / 1000); mask (H, W) float32 coverage (EXR as stored; PNG: uint8 / 255 or uint16 / 65535).
        ``stored``: the arrays as stored in the member (EXR: one per channel, in ``R, G, B`` /
        depth (``Y``, format 1 ``Z``) / ``Y`` order, stored dtype; PNG/JPEG: the image array), e.g. for hashing content.

    Raises:
        ValueError: the bytes cannot be decoded or an EXR lacks the channels of ``kind``
            (:class:`synthgen.errors.ExrError` is a ValueError).
        PIL.UnidentifiedImageError, OSError: a PNG/JPEG member that Pillow cannot read.
    """
    if ext.endswith("exr"):
        ch = read_exr_bytes(data, what or "EXR")
        if kind == "depth" and DEPTH_CHANNEL not in ch and LEGACY_DEPTH_CHANNEL in ch:  # format 1
            ch = {DEPTH_CHANNEL: ch[LEGACY_DEPTH_CHANNEL]}
        need = EXR_CHANNELS[kind]
        missing = [c for c in need if c not in ch]
        if missing:
            raise ValueError(f"{what + ': ' if what else ''}missing channel(s) {missing}; found {sorted(ch)}")
        stored = [ch[c] for c in need]
        if kind == "rgb":
            return np.stack(stored, axis=-1).astype(np.float32), stored
        return stored[0].astype(np.float32), stored
    with Image.open(io.BytesIO(data)) as im:
        if kind == "rgb":
            a = np.asarray(im.convert("RGB"), dtype=np.uint8)
            return a, [a]
        a = np.asarray(im)
    if kind == "depth":
        return a.astype(np.float32) / 1000.0, [a]  # 16-bit millimetres, 0 = invalid
    return a.astype(np.float32) / (65535.0 if a.dtype == np.uint16 else 255.0), [a]


def decode_member(name: str, data: bytes) -> Any:
    """Decode one shard member by its extension; returns None for members it does not know.

    Args:
        name: member extension, e.g. ``"rgb.exr"`` (a leading dot, as WebDataset passes it, is ok).
        data: the member bytes.

    Returns:
        ``rgb.exr``: (H, W, 3) float32 linear RGB. ``rgb.png``/``rgb.jpg``: (H, W, 3) uint8 sRGB.
        ``depth.exr``/``depth.png``: (H, W) float32 planar z-depth in metres, 0 = invalid.
        ``mask.exr``/``mask.png``: (H, W) float32 coverage in [0, 1]. ``json``: dict.
        Any other ``.exr`` (optional members such as ``depth_sensor.exr``: simulated sensor depth in
        metres, 0 = hole): (H, W) float32 when it has one channel, else ``{channel: (H, W) float32}``.

    Raises:
        ValueError: the bytes cannot be decoded (message names the member).
    """
    name = name.lstrip(".")

    def is_(ext: str | tuple[str, ...]) -> bool:  # the member itself or KEY.member, not e.g. extra_rgb.exr
        return any(name == e or name.endswith("." + e) for e in ((ext,) if isinstance(ext, str) else ext))

    for kind, exts in (("rgb", ("rgb.exr", "rgb.png", "rgb.jpg")), ("depth", ("depth.exr", "depth.png")),
                       ("mask", ("mask.exr", "mask.png"))):
        if is_(exts):
            return decode_image(kind, name, data, name)[0]
    if name.endswith(".exr"):  # optional extra member
        c = read_exr_bytes(data, name)
        if len(c) == 1:
            return next(iter(c.values())).astype(np.float32)
        return {k: v.astype(np.float32) for k, v in c.items()}
    if name == "json" or name.endswith(".json"):
        return json.loads(data)
    return None


def decode(key: str, data: bytes) -> Any:
    """WebDataset decoder handler: ``wds.WebDataset(urls).decode(synthgen.shard.decode)``.

    Returns arrays for the EXR/PNG members listed in :func:`decode_member` and None for anything
    else (so WebDataset's own handlers still run for other extensions).
    """
    name = key.lstrip(".")
    if name == "json":
        return None  # leave JSON to webdataset's basic handler
    return decode_member(name, data)


def decode_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Decode a whole sample dict (``{"__key__": ..., "rgb.exr": bytes, ...}``).

    Use as ``ray.data.read_webdataset(paths, decoder=synthgen.shard.decode_sample)`` or
    ``wds.WebDataset(urls).map(synthgen.shard.decode_sample)``. Keys starting with ``__`` and
    unknown members are passed through unchanged; already-decoded values are left alone.
    """
    out = {}
    for k, v in sample.items():
        if k.startswith("__") or not isinstance(v, (bytes, bytearray, memoryview)):
            out[k] = v
            continue
        dec = decode_member(k, bytes(v))
        out[k] = v if dec is None else dec
    return out
