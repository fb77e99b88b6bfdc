"""Data access for ``synthgen efficacy``: the ONE module that imports synthgen internals.

Everything else in :mod:`synthgen.efficacy` goes through the names defined here, so a move of the
sample-format, shard-codec or atomic-write modules is fixed in this file alone.

A *source* is one of:

* a sample store folder (``synthgen render`` / ``synthgen ingest`` output: ``KEY.{rgb,depth,mask}.exr``
  + ``KEY.json``), read with :func:`read_sample`;
* a shard folder written by ``synthgen shard`` (all shards listed in its manifest, ``_meta/manifest.json``
  or ``manifest.json``, every split; without a manifest, every ``*.tar`` in it), or single ``.tar``
  shards; members are decoded with :func:`decode_sample`, so both ``--encode exr`` and ``--encode
  train`` shards work.

Every sample becomes an :class:`Item` at the network resolution ``size x size``: the image is scaled
to fit (longer side = ``size``, aspect ratio kept) and centred on a square canvas ("letterbox"); the
padding has RGB 0, depth 0 and mask 0, so it is never part of a loss or a metric. RGB is sRGB-encoded
8-bit: linear EXR RGB goes through the documented view transform
(:func:`view_transform`, default exposure 0 EV, tone ``clip``) and is quantised like ``--encode train``
shards (``floor(255 v + 0.5)``); 8-bit PNG/JPEG members are sRGB already. Depth is resampled with
nearest neighbour (valid and invalid pixels are never blended), the mask and RGB with an antialiased
bilinear filter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# --- synthgen internals (keep every such import in this block) ------------------------------------
from .. import __version__ as SYNTHGEN_VERSION
from ..atomic import atomic_path, write_bytes_atomic, write_json_atomic
from ..contract import ContractError, list_keys, read_sample
from ..colour import view_transform
from ..shard.codec import decode_sample
from ..shard.layout import find_manifest
# ----------------------------------------------------------------------------------------------------

log = logging.getLogger("synthgen.efficacy")

__all__ = [
    "SYNTHGEN_VERSION",
    "Item",
    "SourceError",
    "atomic_path",
    "fit_square",
    "load_source",
    "split_by_subject",
    "view_transform",
    "write_bytes_atomic",
    "write_json_atomic",
]


class SourceError(ValueError):
    """A training or evaluation source cannot be used (missing, empty, unreadable)."""


@dataclass
class Item:
    """One sample at network resolution.

    Attributes:
        key: sample key.
        origin: the store folder or shard file it came from.
        subject_id: the record's ``subject_id`` (grouping unit for leakage-free splits).
        source: ``"synthetic"`` or ``"real"`` (record ``source``).
        metric: record ``depth.metric`` (False: depth known only up to scale).
        rgb: (S, S, 3) uint8, sRGB-encoded.
        depth: (S, S) float32, planar z-depth in metres (relative units when not metric), 0 = invalid.
        mask: (S, S) float32 in [0, 1], subject coverage.
        box: ``(y0, y1, x0, x1)`` of the image inside the letterboxed canvas.
    """

    key: str
    origin: str
    subject_id: str
    source: str
    metric: bool
    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    box: tuple[int, int, int, int]


def _resize(arr: np.ndarray, hw: tuple[int, int], nearest: bool) -> np.ndarray:
    h, w = hw
    if arr.shape[:2] == (h, w):
        return arr.astype(np.float32, copy=True)
    im = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32), mode="F")
    return np.asarray(im.resize((w, h), Image.NEAREST if nearest else Image.BILINEAR), dtype=np.float32)


def fit_square(rgb01: np.ndarray, depth: np.ndarray, mask: np.ndarray, size: int):
    """Letterbox one sample into ``size x size``.

    Args:
        rgb01: (H, W, 3) float sRGB-encoded values in [0, 1].
        depth: (H, W) float depth, 0 = invalid.
        mask: (H, W) float coverage.
        size: output side in pixels.

    Returns:
        ``(rgb uint8 (S,S,3), depth float32 (S,S), mask float32 (S,S), (y0, y1, x0, x1))``.
    """
    h, w = depth.shape
    scale = size / max(h, w)
    nh, nw = max(1, min(size, round(h * scale))), max(1, min(size, round(w * scale)))
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    rgb = np.zeros((size, size, 3), np.float32)
    for c in range(3):
        rgb[y0:y0 + nh, x0:x0 + nw, c] = _resize(rgb01[..., c], (nh, nw), nearest=False)
    d = np.zeros((size, size), np.float32)
    d[y0:y0 + nh, x0:x0 + nw] = _resize(np.where(np.isfinite(depth) & (depth > 0), depth, 0), (nh, nw), nearest=True)
    m = np.zeros((size, size), np.float32)
    m[y0:y0 + nh, x0:x0 + nw] = np.clip(_resize(np.nan_to_num(mask), (nh, nw), nearest=False), 0, 1)
    rgb8 = np.floor(np.clip(rgb, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    return rgb8, d, m, (y0, y0 + nh, x0, x0 + nw)


def _item(key: str, origin: str, rgb01: np.ndarray, depth: np.ndarray, mask: np.ndarray, record: dict,
          size: int) -> Item:
    rgb8, d, m, box = fit_square(rgb01, depth, mask, size)
    dep = record.get("depth") or {}
    return Item(key=key, origin=origin, subject_id=str(record.get("subject_id", key)),
                source=str(record.get("source", "unknown")), metric=bool(dep.get("metric", True)),
                rgb=rgb8, depth=d, mask=m, box=box)


def is_store(path: Path) -> bool:
    """True when ``path`` is a folder with sample records (``KEY.json``)."""
    return path.is_dir() and bool(list_keys(path))


def shard_files(path: Path) -> list[Path]:
    """Shard tar files of a shard folder (manifest order, every split) or a single ``.tar``."""
    if path.is_file() and path.name.endswith(".tar"):
        return [path]
    manifest = find_manifest(path) if path.is_dir() else None  # _meta/manifest.json (format 2) or format 1
    if manifest is not None:
        try:
            m = json.loads(manifest.read_text("utf-8"))
            return [path / e["file"] for e in m["shards"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"{manifest}: unreadable shard manifest ({exc})") from exc
    return sorted(path.glob("*.tar"))


def _iter_tar(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Group a WebDataset tar's members by key (basename up to the first dot), in file order."""
    key, group = None, {}
    with tarfile.open(path, "r") as tf:
        for info in tf:
            if not info.isfile():
                continue
            d, _, base = info.name.rpartition("/")
            if base.startswith(".") or "." not in base:
                continue
            k, ext = base.split(".", 1)
            k = f"{d}/{k}" if d else k
            if k != key and group:
                yield key, group
                group = {}
            key = k
            group[ext] = tf.extractfile(info).read()
    if group:
        yield key, group


def _from_decoded(key: str, s: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    rec = s.get("json")
    if not isinstance(rec, dict):
        raise ValueError("no JSON record")
    if "rgb.exr" in s:
        rgb01 = np.asarray(s["rgb.exr"], np.float32)  # linear: the caller applies the view transform
        linear = True
    elif "rgb.png" in s or "rgb.jpg" in s:
        rgb01 = np.asarray(s.get("rgb.png", s.get("rgb.jpg")), np.float32) / 255.0
        linear = False
    else:
        raise ValueError("no rgb member")
    depth = s.get("depth.exr", s.get("depth.png"))
    mask = s.get("mask.exr", s.get("mask.png"))
    if depth is None or mask is None:
        raise ValueError("no depth or mask member")
    return rgb01, np.asarray(depth, np.float32), np.asarray(mask, np.float32), dict(rec, _linear=linear)


def load_source(path: str | os.PathLike, size: int, *, exposure_ev: float = 0.0, tone: str = "clip",
                limit: int | None = None) -> tuple[list[Item], list[str]]:
    """Load every sample of one source at ``size x size``.

    Args:
        path: store folder, shard folder or ``.tar`` shard.
        size: network resolution.
        exposure_ev, tone: view transform for linear EXR RGB (see :func:`view_transform`).
        limit: read at most this many samples (first in key / shard order).

    Returns:
        ``(items, problems)``: problems name the samples that could not be read (they are skipped).

    Raises:
        SourceError: the path does not exist or holds no samples or shards.
    """
    p = Path(path)
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder")
    items: list[Item] = []
    problems: list[str] = []

    def srgb(rgb: np.ndarray, linear: bool) -> np.ndarray:
        return view_transform(rgb, exposure_ev, tone) if linear else rgb

    if not (p.is_dir() and find_manifest(p)) and is_store(p):  # a format-1 shard folder has manifest.json
        for key in list_keys(p):
            if limit is not None and len(items) >= limit:
                break
            try:
                s = read_sample(p, key)
            except (ContractError, OSError, ValueError) as exc:
                problems.append(f"{p}/{key}: {exc}")
                continue
            items.append(_item(key, str(p), srgb(s.rgb, True), s.depth, s.mask, s.record, size))
        return items, problems
    tars = shard_files(p)
    if not tars:
        raise SourceError(f"{p}: neither a sample store (no KEY.json records) nor a shard folder "
                          "(no manifest.json or *.tar)")
    for tar in tars:
        if limit is not None and len(items) >= limit:
            break
        try:
            for key, members in _iter_tar(tar):
                if limit is not None and len(items) >= limit:
                    break
                try:
                    rgb, depth, mask, rec = _from_decoded(key, decode_sample(dict(members)))
                    items.append(_item(key.rpartition("/")[2], str(tar), srgb(rgb, rec.pop("_linear")),
                                       depth, mask, rec, size))
                except (ValueError, KeyError, TypeError, OSError) as exc:
                    problems.append(f"{tar}: sample {key}: {exc}")
        except (OSError, tarfile.TarError) as exc:
            problems.append(f"{tar}: unreadable shard ({exc})")
    return items, problems


def _subject_order(subject: str) -> str:
    return hashlib.sha256(subject.encode("utf-8")).hexdigest()


def split_by_subject(items: list[Item], fraction: float) -> tuple[list[Item], list[Item], list[str]]:
    """Deterministic leakage-free hold-out: subjects ordered by ``sha256(subject_id)``, the first
    ``max(1, round(fraction * n))`` (at most ``n - 1``) are held back. Nothing is held back when
    ``fraction`` is 0 or there is a single subject. Returns ``(train, held_back, held_subjects)``."""
    subjects = sorted({it.subject_id for it in items}, key=_subject_order)
    if fraction <= 0 or len(subjects) < 2:
        return list(items), [], []
    k = min(len(subjects) - 1, max(1, round(fraction * len(subjects))))
    held = set(subjects[:k])
    return ([it for it in items if it.subject_id not in held], [it for it in items if it.subject_id in held],
            sorted(held))
