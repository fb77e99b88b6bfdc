"""Decoding shard members (and store files) for every reader: WebDataset, wids, Ray Data, Hugging
Face ``datasets``. The members and their encodings are described in :mod:`synthgen.shard.codec`.

Readers hand members over in many shapes; :func:`decode_sample` accepts them all: bytes (webdataset,
Ray Data), file objects (wids ``BytesIO``), ``PIL.Image`` (wids' default ``"PIL"`` transformation,
Hugging Face ``datasets`` Image columns), ``{"bytes": ..., "path": ...}`` (``datasets`` with
``decode=False``), numpy arrays (Ray Data's default decoder) and already-parsed JSON. A depth member
that some generic image decoder already squeezed into 8 bits is an error (the millimetres are
lost), never a silent wrong value. Decoded arrays are always writeable.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from PIL import Image

from ..exr import DEPTH_CHANNEL, LEGACY_DEPTH_CHANNEL, read_exr_bytes


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
