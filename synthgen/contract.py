"""The synthgen sample format: the contract between render, ingest, shard and QA.

A *store* is a folder. Each sample in it is four files that share a key::

    KEY.rgb.exr    linear scene-referred RGB, half float, channels R, G, B (H×W each)
    KEY.depth.exr  planar z-depth in metres along the optical axis, float32, channel Y (format 2;
                   format 1 used Z, which OpenCV and Blender misread: see synthgen.exr);
                   0 marks background / invalid pixels; not anti-aliased; header attributes
                   intrinsicsK and worldToCamera
    KEY.mask.exr   subject coverage in [0, 1], half float, channel Y; anti-aliased for renders
    KEY.json       the sample record (see :class:`SampleRecord`), written last

Keys match ``[A-Za-z0-9_-]+``: no dots, because WebDataset splits a member name at the first dot
into key and extension. The JSON record is written after the EXRs and holds their sha256, so a
sample is complete exactly when its record exists and the member checksums match.

Store-level files live under ``STORE/_meta/`` (``store.json``, quarantine lists, previews); they
never match the sample naming rule.

Camera conventions (OpenCV): x right, y down, z forward; ``K`` in pixels with the centre of the
top-left pixel at (0, 0), so a centred principal point is ``cx = (W - 1) / 2``;
``camera_to_world`` is a 4×4 matrix mapping OpenCV camera coordinates to world coordinates (metres).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .atomic import write_json_atomic
from .errors import ContractError  # noqa: F401 (re-exported)
from .exr import DEPTH_CHANNEL, camera_attributes, depth_channel, read_exr, write_exr
from .store import META_DIR, list_keys  # noqa: F401 (re-exported: the store owns its layout and keys)

SCHEMA = "synthgen.sample/2"
"""Written by this version. Format 2 stores depth (and extra depth members) in channel ``Y`` and
adds camera header attributes; format 1 (``synthgen.sample/1``, channel ``Z``) is still read."""
SCHEMAS = ("synthgen.sample/1", SCHEMA)
MEMBERS = ("rgb.exr", "depth.exr", "mask.exr")
"""EXR members of a sample, in the order they are written; ``json`` is written after them."""
ALL_MEMBERS = MEMBERS + ("json",)
KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
HALF_MAX = 65504.0
"""Largest finite half-float value; RGB beyond it is stored saturated at it."""
EXTRA_MEMBER_RE = re.compile(r"^[a-z0-9_]+\.exr$")


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid WebDataset key (``[A-Za-z0-9_-]+``), else raise ContractError."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ContractError(f"invalid sample key {key!r}: keys must match [A-Za-z0-9_-]+ (no dots)")
    return key


def member_path(store: str | os.PathLike, key: str, member: str) -> Path:
    """Path of ``member`` (one of :data:`ALL_MEMBERS`) of sample ``key`` in ``store``."""
    return Path(store) / f"{key}.{member}"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


class ImageSize(BaseModel):
    width: int = Field(gt=0, description="pixels")
    height: int = Field(gt=0, description="pixels")


class CameraRecord(BaseModel):
    """Pinhole camera in OpenCV convention (x right, y down, z forward)."""

    model_config = ConfigDict(extra="allow")
    model: Literal["pinhole"] = "pinhole"
    convention: Literal["opencv"] = "opencv"
    pixel_centre: Literal["integer"] = Field(
        "integer", description="centre of the top-left pixel is (0, 0); cx = (W-1)/2 when centred")
    K: list[list[float]] = Field(description="3x3 intrinsics in pixels [[fx,0,cx],[0,fy,cy],[0,0,1]]")
    camera_to_world: list[list[float]] | None = Field(
        None, description="4x4 camera-to-world in OpenCV camera axes, metres; null when unknown")
    focal_length_mm: float | None = None
    sensor_width_mm: float | None = None
    sensor_fit: str | None = None
    fov_x_deg: float | None = None
    fov_y_deg: float | None = None

    @field_validator("K")
    @classmethod
    def _k_shape(cls, v):
        a = np.asarray(v, dtype=float)
        if a.shape != (3, 3) or not np.all(np.isfinite(a)) or a[0, 0] <= 0 or a[1, 1] <= 0:
            raise ValueError("K must be a finite 3x3 matrix with positive fx, fy")
        return v

    @field_validator("camera_to_world")
    @classmethod
    def _c2w_shape(cls, v):
        if v is not None and np.asarray(v, dtype=float).shape != (4, 4):
            raise ValueError("camera_to_world must be 4x4")
        return v


class DepthRecord(BaseModel):
    model_config = ConfigDict(extra="allow")
    kind: Literal["planar_z"] = "planar_z"
    units: Literal["metres"] = "metres"
    metric: bool = Field(True, description="false when depth is only relative (unknown scale)")
    invalid_value: float = 0.0


class MemberRecord(BaseModel):
    file: str
    bytes: int
    sha256: str


class SampleRecord(BaseModel):
    """Fields every sample record has, whatever its source. Source-specific sections
    (``render`` for synthetic samples, ``capture`` for ingested ones) are kept as extra fields."""

    model_config = ConfigDict(extra="allow")
    schema_: Literal["synthgen.sample/1", "synthgen.sample/2"] = Field(SCHEMA, alias="schema")
    key: str
    source: Literal["synthetic", "real"]
    subject_id: str = Field(description="grouping unit for leakage-free splits (scan id or capture sequence)")
    image: ImageSize
    camera: CameraRecord
    depth: DepthRecord
    mask: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, MemberRecord] = Field(default_factory=dict)
    synthgen_version: str

    @field_validator("key")
    @classmethod
    def _key(cls, v):
        check_key(v)
        return v


@dataclass
class Sample:
    """A loaded sample.

    Attributes:
        key: sample key.
        rgb: (H, W, 3) float32, linear scene-referred RGB.
        depth: (H, W) float32, planar z-depth in metres, 0 = invalid.
        mask: (H, W) float32 in [0, 1], subject coverage.
        record: the parsed JSON record (plain dict).
    """

    key: str
    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    record: dict[str, Any]

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 intrinsics in pixels (OpenCV: centre of the top-left pixel at (0, 0))."""
        return np.asarray(self.record["camera"]["K"], np.float64)

    @property
    def camera_to_world(self) -> np.ndarray | None:
        """(4, 4) float64 camera-to-world pose in OpenCV camera axes (x right, y down, z forward),
        metres; None where the record has no pose (most real captures)."""
        c2w = self.record["camera"].get("camera_to_world")
        return None if c2w is None else np.asarray(c2w, np.float64)


def write_sample(store: str | os.PathLike, key: str, rgb: np.ndarray, depth: np.ndarray,
                 mask: np.ndarray, record: dict[str, Any],
                 extra: dict[str, np.ndarray | dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """Write one sample atomically member by member, the JSON record last.

    Args:
        store: output folder (created if missing).
        key: sample key, ``[A-Za-z0-9_-]+``.
        rgb: (H, W, 3) float array, linear RGB; stored as half float (NaN -> 0, values clipped to
            ±65504, the half-float range).
        depth: (H, W) float array, planar z-depth in metres, 0 = invalid; stored as float32.
            Non-finite and negative values are stored as 0 (invalid).
        mask: (H, W) float array in [0, 1]; stored as half float.
        record: record fields; ``key``, ``image``, ``files`` and ``schema`` are filled in here.
        extra: optional additional EXR members, ``{"NAME.exr": array}`` with NAME matching
            ``[a-z0-9_]+`` and not a standard member (e.g. ``depth_sensor.exr``). A 2-D array is
            stored as one float32 channel ``Z``; a dict maps channel names to (H, W) arrays stored
            with their own dtype (float16/float32). Written before the record and listed in its
            ``files`` with sha256 like the standard members.

    Returns:
        The record as written (with member sizes and sha256).

    Raises:
        ContractError: bad key, shapes that disagree, or a record that fails :class:`SampleRecord`.
    """
    check_key(key)
    rgb = np.asarray(rgb)
    depth = np.asarray(depth, dtype=np.float32)
    mask = np.asarray(mask)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ContractError(f"sample {key}: rgb must be (H, W, 3), got {rgb.shape}")
    h, w = rgb.shape[:2]
    if depth.shape != (h, w) or mask.shape != (h, w):
        raise ContractError(f"sample {key}: rgb {rgb.shape}, depth {depth.shape} and mask {mask.shape} disagree")
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    mask = np.clip(np.nan_to_num(mask.astype(np.float32)), 0.0, 1.0)
    rec = dict(record)
    rec.update(schema=SCHEMA, key=key, image={"width": int(w), "height": int(h)})
    # half float holds |x| <= 65504: NaN becomes 0 and larger values (fireflies) saturate at the limit
    rgb16 = np.clip(np.nan_to_num(rgb.astype(np.float32), nan=0.0), -HALF_MAX, HALF_MAX).astype(np.float16)
    write_exr(member_path(store, key, "rgb.exr"),
              {"R": rgb16[..., 0], "G": rgb16[..., 1], "B": rgb16[..., 2]})
    cam = rec.get("camera") or {}
    attrs = camera_attributes(cam["K"], cam.get("camera_to_world")) if "K" in cam else None
    write_exr(member_path(store, key, "depth.exr"), {DEPTH_CHANNEL: depth}, attrs)
    write_exr(member_path(store, key, "mask.exr"), {"Y": mask.astype(np.float16)})
    extra_names = []
    for name, arr in (extra or {}).items():
        if not EXTRA_MEMBER_RE.match(name) or name in MEMBERS:
            raise ContractError(f"sample {key}: extra member name {name!r} must match [a-z0-9_]+.exr "
                                f"and differ from {MEMBERS}")
        chans = {DEPTH_CHANNEL: np.asarray(arr, np.float32)} if not isinstance(arr, dict) else dict(arr)
        for c, a in chans.items():
            if np.asarray(a).shape != (h, w):
                raise ContractError(f"sample {key}: extra member {name} channel {c} has shape "
                                    f"{np.asarray(a).shape}, expected {(h, w)}")
        write_exr(member_path(store, key, name), chans)
        extra_names.append(name)
    files = {}
    for m in (*MEMBERS, *extra_names):
        p = member_path(store, key, m)
        files[m] = {"file": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p)}
    rec["files"] = files
    try:
        SampleRecord.model_validate(rec)
    except Exception as exc:
        raise ContractError(f"sample {key}: record does not follow {SCHEMA}: {exc}") from exc
    write_json_atomic(member_path(store, key, "json"), rec)
    return rec


def read_record(store: str | os.PathLike, key: str) -> dict[str, Any]:
    """Load and validate ``KEY.json``. Raises ContractError naming the file on failure."""
    import json

    p = member_path(store, key, "json")
    try:
        rec = json.loads(p.read_text("utf-8"))
        SampleRecord.model_validate(rec)
    except FileNotFoundError as exc:
        raise ContractError(f"{p}: record missing") from exc
    except Exception as exc:
        raise ContractError(f"{p}: invalid sample record: {exc}") from exc
    return rec


def read_sample(store: str | os.PathLike, key: str) -> Sample:
    """Load a sample's arrays and record (see :class:`Sample` for shapes and dtypes).

    Raises:
        ContractError: missing member, unreadable EXR, wrong channels, or shape mismatch.
    """
    rec = read_record(store, key)
    try:
        c = read_exr(member_path(store, key, "rgb.exr"), ["R", "G", "B"])
        rgb = np.stack([c["R"], c["G"], c["B"]], axis=-1).astype(np.float32)
        dpath = member_path(store, key, "depth.exr")
        depth = depth_channel(read_exr(dpath), str(dpath)).astype(np.float32)
        mask = read_exr(member_path(store, key, "mask.exr"), ["Y"])["Y"].astype(np.float32)
    except Exception as exc:
        raise ContractError(str(exc)) from exc
    shape = (rec["image"]["height"], rec["image"]["width"])
    for name, arr in (("rgb", rgb[..., 0]), ("depth", depth), ("mask", mask)):
        if arr.shape != shape:
            raise ContractError(f"{member_path(store, key, name + '.exr')}: shape {arr.shape} != record image {shape}")
    return Sample(key, rgb, depth, mask, rec)


def verify_sample(store: str | os.PathLike, key: str) -> list[str]:
    """Return a list of problems with sample ``key`` (empty when complete and checksums match)."""
    problems = []
    try:
        rec = read_record(store, key)
    except ContractError as exc:
        return [str(exc)]
    listed = rec.get("files", {})
    for m in (*MEMBERS, *[x for x in listed if x not in MEMBERS]):  # standard members + listed extras
        if m not in MEMBERS and not EXTRA_MEMBER_RE.match(m):
            problems.append(f"{member_path(store, key, 'json')}: files lists an invalid member name {m!r}")
            continue
        p = member_path(store, key, m)
        meta = listed.get(m)
        if not p.exists():
            problems.append(f"{p}: missing")
        elif meta is None:
            problems.append(f"{p}: not listed in record")
        elif sha256_file(p) != meta["sha256"]:
            problems.append(f"{p}: sha256 does not match record")
    return problems


