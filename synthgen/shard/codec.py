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
``files`` moved to ``source_files`` and an ``encoding`` section describing the above, packed as a
JSON *string* (the member is ``"{\"schema\": ...}"``): every sample's ``json`` then has the same
Arrow type (string), whatever its source, so Hugging Face ``datasets`` and Ray Data load mixed
synthetic and real shards (records of different sources have different fields; Arrow infers a
struct from the first few records and fails on, or silently drops, the others' fields).
:func:`load_record` (and the decoders) return the record dict from either packing.

Decoding (every reader's member shapes) is in :mod:`synthgen.shard.decoding`; its functions are
re-exported here.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
from PIL import Image

from ..colour import TONE_CURVES, rgb_to_8bit, view_transform  # noqa: F401 (re-exported)
from ..exr import DEPTH_CHANNEL, LEGACY_DEPTH_CHANNEL, camera_attributes, read_exr_bytes  # noqa: F401 (re-exported)
from .decoding import (EXR_CHANNELS, decode, decode_image, decode_member, decode_pil,  # noqa: F401 (re-exported)
                       decode_sample, load_record)

EXR_MEMBERS = ("rgb.exr", "depth.exr", "mask.exr", "json")
PNG_COMPRESS_LEVEL = 6
JPEG_QUALITY = 95


def encode_options(name: str = "exr", rgb: str = "png", depth: str = "png16", exposure_ev: float = 0.0,
                   tone: str = "clip", resize: dict[str, Any] | None = None) -> dict[str, Any]:
    """Canonical encoding options dict (stored in the manifest and part of the fingerprint).

    ``resize``: ``{"width", "height", "mode"}`` (:func:`synthgen.shard.resize.resize_options`) to write
    every sample at one size; absent from the dict when None.
    """
    extra = {"resize": dict(resize)} if resize else {}
    if name == "exr":
        return {"name": "exr", **extra}
    if rgb not in ("png", "jpeg"):
        raise ValueError(f"rgb format {rgb!r}: expected png or jpeg")
    if depth not in ("png16", "exr"):
        raise ValueError(f"depth format {depth!r}: expected png16 or exr")
    if tone not in TONE_CURVES:
        raise ValueError(f"tone curve {tone!r}: expected one of {TONE_CURVES}")
    return {"name": "train", "rgb": rgb, "depth": depth, "exposure_ev": float(exposure_ev), "tone": tone, **extra}


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
    """Re-encode one sample for training (``rgb``, ``depth``, ``mask``, ``json``; see :func:`encode_sample`)."""
    members = encode_sample(key, blobs, [], record, encode)
    return members[:3] + members[-1:]


def encode_sample(key: str, blobs: dict[str, bytes], extras: list[tuple[str, bytes]], record: dict[str, Any],
                  encode: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Re-encode one sample: ``train`` encoding and/or a resize (``encode["resize"]``, :mod:`.resize`).

    Args:
        key: sample key.
        blobs: the store's member bytes ``{"rgb.exr": ..., "depth.exr": ..., "mask.exr": ...}``.
        extras: optional members ``[(name, bytes)]`` (e.g. ``depth_sensor.exr``): packed unchanged,
            or resampled like depth (nearest) when resizing.
        record: the parsed store record.
        encode: options from :func:`encode_options` (``train``, or ``exr`` with a resize).

    Returns:
        ``[(member extension, bytes), ...]`` in write order (rgb, depth, mask, extras, json). With a
        resize the record gets the new ``image``, ``camera.K`` and a ``transform`` section, and its
        ``files`` describe the members as packed (the store's are kept as ``source_files``).

    Raises:
        ValueError: an EXR cannot be decoded or lacks its channels (message names the member).
    """
    from .resize import exr_bytes, geometry, resize_depth, resize_mask, resize_record, resize_rgb

    rgb, depth, mask = (decode_image(kind, m, blobs[m], f"{key}.{m}")[0] for kind, m in
                        (("rgb", "rgb.exr"), ("depth", "depth.exr"), ("mask", "mask.exr")))
    rec = dict(record)
    depth_blob = blobs["depth.exr"]
    rs = encode.get("resize")
    if rs:
        g = geometry(rgb.shape[1], rgb.shape[0], rs["width"], rs["height"], rs["mode"])
        rgb, depth, mask = resize_rgb(rgb, g), resize_depth(depth, g), resize_mask(mask, g)
        rec = resize_record(rec, g)
        extras = [(n, _resize_extra(d, g, f"{key}.{n}", resize_depth, exr_bytes)) for n, d in extras]
        depth_blob = exr_bytes({DEPTH_CHANNEL: depth.astype(np.float32)},
                               camera_attributes(rec["camera"]["K"], rec["camera"].get("camera_to_world")))
    if encode["name"] == "exr":  # resized EXR members; the record lists them
        members = [("rgb.exr", exr_bytes({c: rgb[..., i].astype(np.float16) for i, c in enumerate("RGB")})),
                   ("depth.exr", depth_blob), ("mask.exr", exr_bytes({"Y": mask.astype(np.float16)})), *extras]
        rec["source_files"] = rec.pop("files", {})
        rec["files"] = {m: {"file": f"{key}.{m}", "bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                        for m, b in members}
        return [*members, ("json", (json.dumps(rec, indent=2, sort_keys=True) + "\n").encode("utf-8"))]
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
        out.append((depth_name, depth_blob))
        depth_info = {"file": depth_name, "dtype": "float32", "units": "metres", "invalid_value": 0}
    out.append((mask_name, png_bytes(mask_to_8bit(mask))))
    out += extras
    rec["source_files"] = rec.pop("files", {})
    if rs and extras:  # resampled optional members: their sha256 as packed
        rec["files"] = {n: {"file": f"{key}.{n}", "bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                        for n, b in extras}
    rec["encoding"] = {
        "name": "train",
        "rgb": {"file": rgb_name, "dtype": "uint8", "colour_space": "sRGB (IEC 61966-2-1)",
                "view_transform": {"exposure_ev": encode["exposure_ev"], "tone": encode["tone"],
                                   "clip": [0.0, 1.0], "quantisation": "floor(255 * v + 0.5)"},
                **({"jpeg_quality": JPEG_QUALITY} if encode["rgb"] == "jpeg" else {})},
        "depth": depth_info,
        "mask": {"file": mask_name, "dtype": "uint8", "scale": 1 / 255, "quantisation": "floor(255 * m + 0.5)"},
    }
    out.append(("json", record_member(rec)))
    return out


def _resize_extra(data: bytes, g, what: str, resize_depth, exr_bytes) -> bytes:
    """An optional EXR member resampled like depth (nearest, per channel, dtype kept)."""
    chans = read_exr_bytes(data, what)
    return exr_bytes({c: resize_depth(a, g).astype(a.dtype if a.dtype in (np.float16, np.float32) else np.float32)
                      for c, a in chans.items()})


def record_member(rec: dict[str, Any]) -> bytes:
    """The ``json`` member of a ``train`` sample: the record as a JSON string (see the module doc)."""
    return (json.dumps(json.dumps(rec, sort_keys=True, separators=(",", ":"))) + "\n").encode("utf-8")
