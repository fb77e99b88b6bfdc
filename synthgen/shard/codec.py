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
:func:`load_record` (and the decoders below) return the record dict from either packing.

Readers hand members over in many shapes; :func:`decode_sample` accepts them all: bytes (webdataset,
Ray Data), file objects (wids ``BytesIO``), ``PIL.Image`` (wids' default ``"PIL"`` transformation,
Hugging Face ``datasets`` Image columns), ``{"bytes": ..., "path": ...}`` (``datasets`` with
``decode=False``), numpy arrays (Ray Data's default decoder) and already-parsed JSON. A depth member
that some generic image decoder already squeezed into 8 bits is an error (the millimetres are
lost), never a silent wrong value. Decoded arrays are always writeable.
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


def load_record(value: Any) -> dict[str, Any]:
    """The sample record from a ``json`` member in any reader's shape: bytes / str of a JSON object
    (EXR shards, stores) or of a JSON string holding one (``train`` shards), a file object, or an
    already-parsed dict or string.

    Raises:
        ValueError: not JSON, or not a record (a JSON object).
    """
    if hasattr(value, "read"):
        value = value.read()
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8")
    if isinstance(value, str):
        value = json.loads(value)
        if isinstance(value, str):  # train shards: a JSON string holding the record
            value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError(f"json member: expected a record (JSON object), got {type(value).__name__}")
    return value


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
        return decode_pil(kind, im, what)


def decode_pil(kind: str, im: Image.Image, what: str | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """:func:`decode_image` for a member some reader already opened with Pillow (wids, HF ``datasets``).

    Raises:
        ValueError: a depth image that is not 16-bit (it was converted to 8 bits: the values are lost).
    """
    if kind == "rgb":
        a = np.array(im.convert("RGB"), dtype=np.uint8)  # np.array: a writeable copy (asarray is read-only)
        return a, [a]
    a = np.array(im)
    return _from_stored(kind, a, what), [a]


def _from_stored(kind: str, a: np.ndarray, what: str | None) -> np.ndarray:
    """Depth / mask PNG pixels (as stored) -> float32 metres / coverage."""
    name = what or kind
    if kind == "depth":
        if a.ndim != 2 or a.dtype == np.uint8 or a.dtype == bool:
            raise ValueError(f"{name}: depth must be a 16-bit single-channel image (millimetres); got "
                             f"{a.dtype} {a.shape}: a generic 8-bit image decoder (e.g. webdataset .decode('rgb8') "
                             "or 'l8') has already thrown the depth away. Decode depth with synthgen.shard.decode "
                             "(put it first) or decode_sample on the raw bytes")
        if np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{name}: got a float image {a.shape}; pass the raw member bytes (an image "
                             "decoder normalised the millimetres)")
        return a.astype(np.float32) / 1000.0
    if a.ndim == 3:  # an 8-bit decoder turned the grey mask into RGB: lossless for 8-bit masks
        a = a[..., 0]
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32)
    return a.astype(np.float32) / (65535.0 if a.dtype == np.uint16 else 255.0)


_IMAGE_KINDS = (("rgb", ("rgb.exr", "rgb.png", "rgb.jpg")), ("depth", ("depth.exr", "depth.png")),
                ("mask", ("mask.exr", "mask.png")))


def _kind_of(name: str) -> str | None:
    """``rgb`` / ``depth`` / ``mask`` for a standard image member (``"rgb.png"`` or ``"KEY.rgb.png"``,
    not e.g. ``extra_rgb.exr``), else None."""
    for kind, exts in _IMAGE_KINDS:
        if any(name == e or name.endswith("." + e) for e in exts):
            return kind
    return None


def _writeable(a: np.ndarray) -> np.ndarray:
    return a if a.flags.writeable else a.copy()


def decode_member(name: str, data: Any) -> Any:
    """Decode one shard member by its extension; returns None for members it does not know.

    Args:
        name: member extension, e.g. ``"rgb.exr"`` (a leading dot, as WebDataset passes it, is ok).
        data: the member as any reader hands it over: bytes-like, a file object, a ``PIL.Image``,
            ``{"bytes": ..., "path": ...}`` (HF ``datasets``), a numpy array (Ray Data's default
            decoder) or parsed JSON.

    Returns:
        ``rgb.exr``: (H, W, 3) float32 linear RGB. ``rgb.png``/``rgb.jpg``: (H, W, 3) uint8 sRGB.
        ``depth.exr``/``depth.png``: (H, W) float32 planar z-depth in metres, 0 = invalid.
        ``mask.exr``/``mask.png``: (H, W) float32 coverage in [0, 1]. ``json``: the record dict
        (:func:`load_record`). Any other ``.exr`` (optional members such as ``depth_sensor.exr``:
        simulated sensor depth in metres, 0 = hole): (H, W) float32 when it has one channel, else
        ``{channel: (H, W) float32}``. Arrays are writeable.

    Raises:
        ValueError: the member cannot be decoded, or was already decoded lossily (a 16-bit depth PNG
            squeezed into 8 bits by a generic image decoder); the message names the member.
    """
    name = name.lstrip(".")
    if name == "json" or name.endswith(".json"):
        return load_record(data)
    if isinstance(data, dict) and "bytes" in data:  # HF datasets Image(decode=False)
        data = data["bytes"]
    elif hasattr(data, "read") and not isinstance(data, Image.Image):  # wids hands over BytesIO
        data = data.read()
    kind = _kind_of(name)
    if isinstance(data, Image.Image):
        if kind is None or name.endswith("exr"):
            return None
        return _writeable(decode_pil(kind, data, name)[0])
    if isinstance(data, np.ndarray):  # decoded by the reader's default decoder (or by synthgen already)
        if kind is None or kind == "rgb" or (np.issubdtype(data.dtype, np.floating) and data.ndim == 2):
            return _writeable(data)  # rgb: uint8 sRGB or float32 linear; float (H, W): metres / coverage
        return _from_stored(kind, data, name)  # integer pixels as stored in the PNG
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return None
    data = bytes(data)
    if kind is not None:
        return _writeable(decode_image(kind, name, data, name)[0])
    if name.endswith(".exr") or name == "exr":  # optional extra member
        c = read_exr_bytes(data, name)
        if len(c) == 1:
            return next(iter(c.values())).astype(np.float32)
        return {k: v.astype(np.float32) for k, v in c.items()}
    return None


def decode(key: str, data: bytes) -> Any:
    """WebDataset decoder handler: ``wds.WebDataset(urls).decode(synthgen.shard.decode)``.

    Returns arrays for the EXR/PNG members listed in :func:`decode_member`, the record dict for a
    ``train`` shard's ``json`` member (a JSON string), and None for anything else (so WebDataset's
    own handlers still run for other extensions, e.g. JSON objects). Put it *first* when combining
    with webdataset's image decoders: ``.decode(synthgen.shard.decode, "rgb8")``; those alone turn a
    16-bit depth PNG into 8 bits without an error.
    """
    name = key.lstrip(".")
    if name == "json":
        return load_record(data) if bytes(data).lstrip()[:1] == b'"' else None
    return decode_member(name, data)


def decode_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Decode a whole sample dict (``{"__key__": ..., "rgb.exr": bytes, ...}``) from any reader.

    Use as ``ray.data.read_webdataset(paths, decoder=synthgen.shard.decode_sample)``,
    ``wds.WebDataset(urls).map(synthgen.shard.decode_sample)``,
    ``wids.ShardListDataset(list, transformations=[synthgen.shard.decode_sample])`` or on a row of
    ``datasets.load_dataset("webdataset", ...)``. Member values may be bytes, file objects, PIL
    images, numpy arrays or parsed JSON (see :func:`decode_member`); keys starting with ``__`` and
    unknown members are passed through unchanged. The ``json`` member becomes the record dict.

    Raises:
        ValueError: a member cannot be decoded, or was already decoded lossily (8-bit depth).
    """
    out = {}
    for k, v in sample.items():
        if k.startswith("__") or v is None:
            out[k] = v
            continue
        dec = decode_member(k, v)
        out[k] = v if dec is None else dec
    return out
