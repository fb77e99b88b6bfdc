"""``synthgen export STORE|SHARDS --to diode|npz --out DIR``: samples in layouts other tools read.

**diode** — the layout of the DIODE dataset (Vasiljevic et al. 2019) that the Keras "Monocular depth
estimation" example (keras-io ``examples/vision/depth_estimation.py``) and ``synthgen ingest --format
diode`` read, one folder per sample (so every folder has its own intrinsics, and sorted file lists
pair up as the Keras example expects)::

    DIR/{split}/{subject_id}/{key}/{key}.png              8-bit sRGB colour
    DIR/{split}/{subject_id}/{key}/{key}_depth.npy        float32 (H, W, 1), planar z-depth in metres
    DIR/{split}/{subject_id}/{key}/{key}_depth_mask.npy   float32 (H, W), 1 = valid depth, 0 = invalid
    DIR/{split}/{subject_id}/{key}/intrinsics.json        {"fx", "fy", "cx", "cy"} in pixels (OpenCV)
    DIR/ATTRIBUTION.md                                    licences of the assets used
    DIR/_meta/export.json                                 what was exported, settings, warnings, records
    DIR/_meta/subject_masks/{split}/{key}.png             8-bit subject mask (DIODE has none)

**npz** — one ``DIR/{split}/{key}.npz`` per sample: ``rgb_srgb8`` (H, W, 3) uint8, ``rgb_linear``
(H, W, 3) float32 when the input has linear colour (stores, EXR shards), ``depth`` (H, W) float32
metres (0 = invalid), ``depth_valid`` (H, W) bool, ``mask`` (H, W) float32 coverage, ``K`` (3, 3)
float64, ``camera_to_world`` (4, 4) float64 when known, ``record`` (the JSON record, a 0-d str array).

Colour: linear RGB goes through the documented ``--encode train`` view transform
(:func:`synthgen.colour.rgb_to_8bit`, ``--exposure``, ``--tone``); 8-bit shards are copied as they are.

The Keras example clips depth for its loss: ``np.clip(depth, 0.1, max_depth)``, ``np.log``, then
``np.clip(log_depth, 0.1, np.log(max_depth))`` with ``max_depth = min(300, percentile(depth, 99))``
over all pixels. The second clip floors *log*-depth at 0.1, i.e. every depth below e^0.1 = 1.105 m
becomes 1.105 m: portraits (0.3-1 m) come out flat. :func:`keras_clip_report` counts such samples
and the export warns (:data:`KERAS_MIN_DEPTH_M`).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import sys
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .atomic import atomic_path, write_json_atomic
from .card import AssetCollector, assets_table
from .colour import TONE_CURVES, rgb_to_8bit
from .errors import ShardInputError

log = logging.getLogger("synthgen.export")

FORMATS = ("diode", "npz")
KERAS_MIN_DEPTH_M = math.exp(0.1)
"""Depth below this (1.105 m) is flattened by the Keras DIODE example's ``np.clip(log_depth, 0.1, ...)``."""


class ExportError(ValueError):
    """Bad export input or options (exit 2)."""


# ----------------------------------------------------------------------------- reading inputs

def iter_samples(path: str | Path) -> Iterator[dict[str, Any]]:
    """Samples of a store or a shard folder, decoded: ``{"key", "split", "store", "record", "rgb"
    (float32 linear or uint8 sRGB), "depth" (float32 metres), "mask" (float32)}``.

    Raises:
        ExportError: ``path`` is neither a store nor a shard folder.
    """
    from .shard.layout import find_manifest
    from .store import list_keys

    path = Path(path)
    if not path.is_dir():
        raise ExportError(f"{path}: not a folder (expected a sample store or a shard folder)")
    man = find_manifest(path)
    if man is not None:
        yield from _iter_shards(path, json.loads(man.read_text("utf-8")))
        return
    keys = list_keys(path)
    if not keys:
        raise ExportError(f"{path}: neither a sample store (KEY.json records) nor a shard folder (_meta/manifest.json)")
    from .contract import read_sample

    for k in keys:
        s = read_sample(path, k)
        yield {"key": k, "split": s.record.get("split") or "all", "store": str(path), "record": s.record,
               "rgb": s.rgb, "depth": s.depth, "mask": s.mask}


def _iter_shards(path: Path, manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    from .shard.codec import decode_sample
    from .shard.tarformat import member_problem

    for e in manifest["shards"]:
        with tarfile.open(path / e["file"], "r|") as tf:
            cur: dict[str, Any] = {}
            for ti in tf:
                if member_problem(ti) is not None:
                    raise ExportError(f"{path / e['file']}: {member_problem(ti)}; run synthgen shard verify")
                key, _, ext = ti.name.partition(".")
                if cur and cur["__key__"] != key:
                    yield _shard_sample(decode_sample(cur), e["split"], str(path))
                    cur = {}
                cur["__key__"] = key
                cur[ext] = tf.extractfile(ti).read()
            if cur:
                yield _shard_sample(decode_sample(cur), e["split"], str(path))


def _shard_sample(s: dict[str, Any], split: str, where: str) -> dict[str, Any]:
    def first(*names):
        return next((s[n] for n in names if n in s), None)

    return {"key": s["__key__"], "split": split, "store": where, "record": s["json"],
            "rgb": first("rgb.exr", "rgb.png", "rgb.jpg"), "depth": first("depth.exr", "depth.png"),
            "mask": first("mask.exr", "mask.png")}


# ----------------------------------------------------------------------------- checks

def keras_clip_report(depth: np.ndarray) -> dict[str, float]:
    """How the Keras DIODE example's clipping treats one depth map: ``below`` (fraction of valid
    pixels under 1.105 m, flattened to it), ``max_depth`` (its percentile-99 ceiling over all pixels,
    invalid zeros included) and ``flat`` (1.0 when that ceiling is itself under 1.105 m: the whole
    map becomes one value)."""
    valid = depth > 0
    n = int(valid.sum())
    max_depth = min(300.0, float(np.percentile(depth, 99))) if depth.size else 0.0
    return {"below": float((depth[valid] < KERAS_MIN_DEPTH_M).sum() / n) if n else 0.0,
            "max_depth": max_depth, "flat": float(max_depth < KERAS_MIN_DEPTH_M)}


def keras_warning(reports: list[dict[str, float]], threshold: float = 0.1) -> str | None:
    """The warning for a DIODE export, or None when no sample has more than ``threshold`` of its
    valid depth under 1.105 m."""
    hit = [r for r in reports if r["below"] > threshold or r["flat"]]
    if not hit:
        return None
    flat = sum(1 for r in hit if r["flat"])
    mean_below = sum(r["below"] for r in hit) / len(hit)
    return (f"{len(hit)} of {len(reports)} samples have depth below {KERAS_MIN_DEPTH_M:.3f} m (on average "
            f"{100 * mean_below:.0f} % of their valid pixels; {flat} entirely): the Keras DIODE example "
            "(keras-io examples/vision/depth_estimation.py) clips log-depth at 0.1 "
            "(np.clip(depth_map, 0.1, np.log(max_depth)) after np.log), so it flattens all depth under "
            f"{KERAS_MIN_DEPTH_M:.3f} m to that value. For portraits, lower that floor (e.g. clip log-depth at "
            "np.log(0.1)) or train on metres directly")


# ----------------------------------------------------------------------------- writing

def _rgb8(rgb: np.ndarray, exposure_ev: float, tone: str) -> np.ndarray:
    return rgb if rgb.dtype == np.uint8 else rgb_to_8bit(rgb, exposure_ev, tone)


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name)) or "_"


def write_diode(out: Path, s: dict[str, Any], exposure_ev: float, tone: str) -> dict[str, Any]:
    """One sample in the DIODE layout (see the module doc); returns its listing entry."""
    key, rec = s["key"], s["record"]
    folder = out / _safe(s["split"]) / _safe(rec.get("subject_id", "subject")) / key
    depth = np.where(np.isfinite(s["depth"]) & (s["depth"] > 0), s["depth"], 0).astype(np.float32)
    K = np.asarray(rec["camera"]["K"], np.float64)
    _write_bytes(folder / f"{key}.png", _png(_rgb8(s["rgb"], exposure_ev, tone)))
    _write_bytes(folder / f"{key}_depth.npy", _npy(depth[..., None]))
    _write_bytes(folder / f"{key}_depth_mask.npy", _npy((depth > 0).astype(np.float32)))
    write_json_atomic(folder / "intrinsics.json", {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]})
    mpath = out / "_meta" / "subject_masks" / _safe(s["split"]) / f"{key}.png"
    m8 = np.floor(np.clip(np.nan_to_num(s["mask"]), 0, 1) * 255 + 0.5).astype(np.uint8)
    _write_bytes(mpath, _png(m8))
    return {"key": key, "split": s["split"], "folder": str(folder.relative_to(out)), "K": K.tolist(),
            "subject_mask": str(mpath.relative_to(out))}


def write_npz(out: Path, s: dict[str, Any], exposure_ev: float, tone: str) -> dict[str, Any]:
    """One sample as ``DIR/{split}/{key}.npz`` (see the module doc); returns its listing entry."""
    rec = s["record"]
    arrays: dict[str, Any] = {
        "rgb_srgb8": _rgb8(s["rgb"], exposure_ev, tone),
        "depth": np.asarray(s["depth"], np.float32), "depth_valid": np.asarray(s["depth"]) > 0,
        "mask": np.asarray(s["mask"], np.float32), "K": np.asarray(rec["camera"]["K"], np.float64),
        "record": np.array(json.dumps(rec, sort_keys=True)),
    }
    if s["rgb"].dtype != np.uint8:
        arrays["rgb_linear"] = np.asarray(s["rgb"], np.float32)
    if rec["camera"].get("camera_to_world") is not None:
        arrays["camera_to_world"] = np.asarray(rec["camera"]["camera_to_world"], np.float64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path = out / _safe(s["split"]) / f"{s['key']}.npz"
    _write_bytes(path, buf.getvalue())
    return {"key": s["key"], "split": s["split"], "file": str(path.relative_to(out))}


def export(path: str | Path, out: str | Path, to: str = "diode", exposure_ev: float = 0.0, tone: str = "clip",
           progress: bool = True) -> dict[str, Any]:
    """Export every sample of a store or shard folder ``path`` to ``out`` (a new or empty folder).

    Returns:
        ``{"format", "input", "samples", "by_split", "warnings", "samples_listing", ...}`` (also
        written to ``out/_meta/export.json``).

    Raises:
        ExportError: bad input, format or options, or a non-empty ``out``.
    """
    from tqdm import tqdm

    if to not in FORMATS:
        raise ExportError(f"--to {to!r}: expected one of {', '.join(FORMATS)}")
    if tone not in TONE_CURVES:
        raise ExportError(f"--tone {tone!r}: expected one of {', '.join(TONE_CURVES)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out}: exists and is not an empty folder")
    writer = write_diode if to == "diode" else write_npz
    listing, reports, by_split = [], [], Counter()
    assets = AssetCollector()
    try:
        for s in tqdm(iter_samples(path), desc=f"export {to}", unit="sample", disable=not progress):
            listing.append(writer(out, s, exposure_ev, tone))
            reports.append(keras_clip_report(np.asarray(s["depth"])))
            by_split[s["split"]] += 1
            assets.add(s["record"], s["store"] if (Path(s["store"]) / "_meta" / "store.json").exists() else None,
                       s["split"])
    except (ShardInputError, OSError, tarfile.TarError) as exc:
        raise ExportError(f"{path}: {exc}") from exc
    if not listing:
        raise ExportError(f"{path}: no samples")
    warnings = []
    w = keras_warning(reports) if to == "diode" else None
    if w:
        warnings.append(w)
    asset_list = assets.result()
    _write_attribution(out, asset_list)
    doc = {"kind": "synthgen.export/1", "format": to, "input": str(Path(path).resolve()), "samples": len(listing),
           "by_split": dict(by_split), "view_transform": {"exposure_ev": exposure_ev, "tone": tone},
           "keras_min_depth_m": KERAS_MIN_DEPTH_M if to == "diode" else None,
           "keras_clip": reports if to == "diode" else None, "warnings": warnings, "assets": asset_list,
           "samples_listing": listing}
    write_json_atomic(out / "_meta" / "export.json", doc)
    return doc


def _write_attribution(out: Path, assets: list[dict[str, Any]]) -> None:
    lic = sorted({str(a.get("licence")) for a in assets}) or ["unknown"]
    text = ("# Attribution\n\nExported by synthgen from samples that use the assets below.\n\n"
            f"- Licence: {lic[0] if len(lic) == 1 else 'mixed: ' + '; '.join(lic)}\n\n" + assets_table(assets) + "\n")
    _write_bytes(out / "ATTRIBUTION.md", text.encode("utf-8"))


# ----------------------------------------------------------------------------- command line

def cmd_export(args: argparse.Namespace) -> int:
    try:
        doc = export(args.path, args.out, args.to, args.exposure, args.tone, progress=not args.no_progress)
    except ExportError as exc:
        print(f"synthgen export: error: {exc}", file=sys.stderr)
        return 2
    for w in doc["warnings"]:
        print(f"synthgen export: warning: {w}", file=sys.stderr)
    splits = ", ".join(f"{k} {v}" for k, v in doc["by_split"].items())
    print(f"synthgen export: {doc['samples']} samples ({splits}) as {args.to} -> {args.out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="export a store or shard folder as DIODE (png + depth npy) or one npz per sample",
        description="Write the samples of a store or shard folder in another layout: 'diode' (NAME.png, "
                    "NAME_depth.npy in metres, NAME_depth_mask.npy, intrinsics.json per sample; read by the "
                    "Keras depth-estimation example and 'synthgen ingest --format diode') or 'npz' (one "
                    "NumPy archive per sample). See docs/loading.md.",
        epilog="examples:\n  synthgen export out/portrait --to diode --out exports/portrait_diode\n"
               "  synthgen export data/v1 --to npz --out exports/v1_npz",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="STORE|SHARDS", help="sample store or shard folder")
    p.add_argument("--to", choices=FORMATS, required=True, help="output layout")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    p.add_argument("--exposure", type=float, default=0.0, metavar="EV",
                   help="exposure in stops for linear colour (default 0)")
    p.add_argument("--tone", choices=TONE_CURVES, default="clip", help="tone curve for linear colour (default clip)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)
