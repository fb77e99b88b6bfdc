"""One QA sample: its undecoded members (:class:`RawSample`) and decoding them (:func:`decode`).

Members may be EXR (the default) or the training encodings of ``synthgen shard --encode train``:
``rgb.png``/``rgb.jpg`` (sRGB 8-bit), ``depth.png`` (16-bit millimetres, 0 = invalid) and
``mask.png`` (8-bit); image members are decoded by :func:`synthgen.shard.codec.decode_image`,
which also returns the arrays as stored for the content digest. Optional extra EXR members (names
``[a-z0-9_]+.exr`` such as ``depth_sensor.exr``, the simulated sensor depth of renders) are read
with their sample; only ``depth_sensor.exr`` is decoded (channel ``Z``), for the depth-sensor
section of the report. They play no part in the gates.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..colour import srgb_decode
from ..contract import EXTRA_MEMBER_RE, SampleRecord
from ..exr import DEPTH_CHANNEL, LEGACY_DEPTH_CHANNEL, read_exr_bytes
from ..shard.codec import decode_image

MEMBER_KINDS = {
    "rgb": ("rgb.exr", "rgb.png", "rgb.jpg", "rgb.jpeg"),
    "depth": ("depth.exr", "depth.png"),
    "mask": ("mask.exr", "mask.png"),
    "json": ("json",),
}
KNOWN_EXTS = {ext: kind for kind, exts in MEMBER_KINDS.items() for ext in exts}
SENSOR_MEMBER = "depth_sensor.exr"


def is_member_ext(ext: str) -> bool:
    """A standard member extension (:data:`KNOWN_EXTS`) or an optional extra EXR member."""
    return ext in KNOWN_EXTS or bool(EXTRA_MEMBER_RE.match(ext))


@dataclass
class RawSample:
    """The undecoded members of one sample occurrence.

    Attributes:
        location: the store folder or shard tar the sample was read from (for messages).
        split: split name (``"-"`` when unknown).
        key: sample key.
        members: member extension (``rgb.exr``...) -> file bytes.
        source_kind: ``"store"`` or ``"shard"``.
    """
    location: str
    split: str
    key: str
    members: dict[str, bytes]
    source_kind: str
    problems: list[str] = field(default_factory=list)


@dataclass
class Decoded:
    """A decoded sample: arrays (or None), record (or None) and the problems found while decoding.

    Arrays: ``rgb`` (H, W, 3) float32 linear; ``depth`` (H, W) float32 metres (0 invalid; NaN/inf
    kept as stored); ``mask`` (H, W) float32. ``problems`` holds ``(gate, message)`` pairs for the
    ``records_valid`` and ``members_complete`` gates. ``raw_hash`` is a digest of the arrays as
    stored (dtype and shape included). ``sensor_depth``: (H, W) float32 metres of the optional
    ``depth_sensor.exr`` member (None when absent); ``sensor_problem`` says why it could not be used.
    """
    raw: RawSample
    record: dict[str, Any] | None = None
    record_ok: bool = False
    rgb: np.ndarray | None = None
    depth: np.ndarray | None = None
    mask: np.ndarray | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)
    array_hash: bytes | None = None
    sensor_depth: np.ndarray | None = None
    sensor_problem: str | None = None


def decode(raw: RawSample) -> Decoded:
    """Parse the record, check members and checksums, decode the arrays.

    Never raises for bad data: problems are recorded on the result as ``(gate, message)``.
    """
    d = Decoded(raw)
    where = f"{raw.location}: {raw.key}"
    d.problems.extend(("records_valid", p) for p in raw.problems)
    present = {}
    for kind, exts in MEMBER_KINDS.items():
        ext = next((e for e in exts if e in raw.members), None)
        if ext is None:
            d.problems.append(("members_complete", f"{where}.{exts[0]} missing"))
        else:
            present[kind] = ext
    if "json" in present:
        _read_record(d, where, present)
    _decode_arrays(d, where, present)
    if SENSOR_MEMBER in raw.members and d.depth is not None:  # not part of the gates or the array hash
        _decode_sensor(d, raw.members[SENSOR_MEMBER])
    return d


def _read_record(d: Decoded, where: str, present: dict[str, str]) -> None:
    """Parse and validate the JSON record of ``d``; check its key and the members' sha256s."""
    mem = d.raw.members
    try:
        rec = json.loads(mem["json"])
        if isinstance(rec, str):  # train shards (format 2) pack the record as a JSON string
            rec = json.loads(rec)
        if not isinstance(rec, dict):
            raise ValueError("not a JSON object")
        d.record = rec
    except Exception as exc:
        d.problems.append(("records_valid", f"{where}.json: not valid JSON ({exc})"))
    if d.record is None:
        return
    try:
        SampleRecord.model_validate(d.record)
        d.record_ok = True
    except Exception as exc:
        first = str(exc).splitlines()
        d.problems.append(("records_valid", f"{where}.json: does not follow the sample schema "
                                            f"({'; '.join(first[:3])})"))
    if d.record.get("key") not in (None, d.raw.key):
        d.problems.append(("records_valid", f"{where}.json: record key {d.record.get('key')!r} "
                                            "differs from the file name"))
    files = d.record.get("files") if isinstance(d.record.get("files"), dict) else {}
    for kind in ("rgb", "depth", "mask"):
        ext = present.get(kind)
        meta = files.get(ext) if ext else None
        if isinstance(meta, dict) and isinstance(meta.get("sha256"), str):
            if hashlib.sha256(mem[ext]).hexdigest() != meta["sha256"]:
                d.problems.append(("records_valid", f"{where}.{ext}: sha256 does not match the record"))


def _decode_arrays(d: Decoded, where: str, present: dict[str, str]) -> None:
    """Decode rgb (to linear), depth and mask; set them and the digest of the stored arrays when
    all three decode and agree in shape."""
    h = hashlib.blake2b(digest_size=16)
    arrays = {}
    for kind in ("rgb", "depth", "mask"):
        ext = present.get(kind)
        if ext is None:
            continue
        try:
            arr, stored = decode_image(kind, ext, d.raw.members[ext])
        except Exception as exc:
            d.problems.append(("records_valid", f"{where}.{ext}: cannot decode ({exc})"))
            continue
        if kind == "rgb" and not ext.endswith("exr"):  # 8-bit sRGB (PNG/JPEG) -> linear
            arr = srgb_decode(arr.astype(np.float32) / 255.0).astype(np.float32)
        arrays[kind] = arr
        for s in stored:
            h.update(f"{kind}{s.dtype.str}{s.shape}".encode())
            h.update(np.ascontiguousarray(s).tobytes())
    if len(arrays) == 3:
        shapes = {k: a.shape[:2] for k, a in arrays.items()}
        if len(set(shapes.values())) != 1:
            d.problems.append(("records_valid", f"{where}: member shapes disagree {shapes}"))
        else:
            d.rgb, d.depth, d.mask = arrays["rgb"], arrays["depth"], arrays["mask"]
            d.array_hash = h.digest()


def _decode_sensor(d: Decoded, data: bytes) -> None:
    """Decode the ``depth_sensor.exr`` member (channel ``Y``; ``Z`` in format 1) or say why it cannot be used."""
    try:
        ch = read_exr_bytes(data)
        sd = ch.get(DEPTH_CHANNEL, ch.get(LEGACY_DEPTH_CHANNEL))
        if sd is None:
            d.sensor_problem = f"no {DEPTH_CHANNEL} (or {LEGACY_DEPTH_CHANNEL}) channel"
        elif sd.shape != d.depth.shape:
            d.sensor_problem = f"shape {sd.shape} != depth {d.depth.shape}"
        else:
            d.sensor_depth = sd.astype(np.float32)
    except Exception as exc:
        d.sensor_problem = f"cannot decode ({exc})"
