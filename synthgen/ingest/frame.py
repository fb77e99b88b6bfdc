"""One frame of an ingest run: load -> register -> colour -> validate -> segment -> write
(``synthgen.contract.write_sample``). :func:`process_frame` never raises for bad input: the frame
is ingested or quarantined with its reasons."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import __version__
from ..contract import ALL_MEMBERS, ContractError, member_path, write_sample
from .common import P3_TO_REC709, FrameError, FrameRef, LoadedFrame, display_path, linear_to_srgb8, srgb8_to_linear
from .formats import all_readers
from .options import IngestOptions
from .validate import frame_digest, validate

log = logging.getLogger("synthgen.ingest")


class _Quarantine(Exception):
    """Raised inside :func:`process_frame`'s steps: the frame is quarantined for ``reasons``
    (``(code, detail)`` pairs)."""

    def __init__(self, reasons: list[tuple[str, str]]):
        super().__init__(reasons)
        self.reasons = reasons


def _rel(path: str, root: Path) -> str:
    try:
        return display_path(os.path.relpath(path, root))
    except ValueError:
        return display_path(path)


def remove_sample(out: Path, key: str) -> None:
    """Delete a previously written sample ``key`` (record first, so it never looks complete)."""
    for m in ("json",) + tuple(x for x in ALL_MEMBERS if x != "json"):
        with contextlib.suppress(FileNotFoundError):
            member_path(out, key, m).unlink()


def register(frame: LoadedFrame) -> tuple[np.ndarray, str | None]:
    """Bring the colour onto the depth grid. Returns ``(rgb, note)``.

    Equal sizes: unchanged. Different sizes with a known registration (``frame.registered``: the
    format says the depth covers the colour image's field of view): the colour is resized to the
    depth resolution (Pillow BOX filter when shrinking, bilinear otherwise; ``K`` is already given
    for the depth grid by the reader). Otherwise raises FrameError ``resolution_mismatch``.
    """
    dh, dw = frame.depth.shape
    h, w = frame.rgb.shape[:2]
    if (h, w) == (dh, dw):
        return frame.rgb, None
    if not frame.registered:
        raise FrameError("resolution_mismatch", f"colour is {w}x{h} but depth is {dw}x{dh} and no registration "
                                                "between them is known")
    shrink = dw <= w and dh <= h
    filt = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    if frame.rgb.dtype == np.uint8:
        rgb = np.asarray(Image.fromarray(frame.rgb).resize((dw, dh), filt))
    else:
        rgb = np.stack([np.asarray(Image.fromarray(frame.rgb[..., c].astype(np.float32), "F").resize((dw, dh), filt))
                        for c in range(3)], -1)
    return rgb, f"colour resized from {w}x{h} to the depth grid {dw}x{dh}"


def _fov(K: np.ndarray, w: int, h: int) -> tuple[float, float]:
    return (math.degrees(2 * math.atan(w / 2 / K[0, 0])), math.degrees(2 * math.atan(h / 2 / K[1, 1])))


def _colour(rgb: np.ndarray, frame: LoadedFrame) -> tuple[np.ndarray, np.ndarray, str]:
    """``(linear float32 Rec.709 colour, 8-bit sRGB colour, note for capture.colour)``."""
    if rgb.dtype == np.uint8:
        rgb8 = rgb
        linear = srgb8_to_linear(rgb8)
        colour_note = "8-bit sRGB decoded with the IEC 61966-2-1 EOTF to linear"
        prof = frame.capture.get("colour_profile") or ""
        if "P3" in prof:
            linear = np.clip(linear @ P3_TO_REC709.T, 0, None).astype(np.float32)
            colour_note += "; Display P3 primaries converted to Rec.709/sRGB primaries"
    else:
        linear = rgb.astype(np.float32)
        rgb8 = linear_to_srgb8(linear)
        colour_note = "linear float colour stored as is"
    return linear, rgb8, colour_note


def _segment(rgb8: np.ndarray, opts: IngestOptions, metrics: dict[str, Any], h: int,
             w: int) -> tuple[np.ndarray, dict[str, Any]]:
    """``(mask (h, w) float32, record's mask entry)``; adds ``person_present`` and ``mask_mean`` to
    ``metrics`` when segmenting. Raises :class:`_Quarantine` (``segmentation_failed``, ``no_person``)."""
    if not opts.segment:
        mask = np.ones((h, w), np.float32)
        return mask, {"source": "none", "kind": "whole_frame",
                      "meaning": "segmentation switched off: all ones (whole frame), not a person mask"}
    from .segment import detector_info, model_info, person_evidence, person_mask

    try:
        ev = person_evidence(rgb8, opts.min_person_confidence)
    except Exception as exc:
        raise _Quarantine([("segmentation_failed", f"person detection: {type(exc).__name__}: {exc}")]) from exc
    metrics["person_present"] = ev["person_present"]
    person = ev["person_present"] >= opts.min_person_confidence
    if not person and opts.no_person == "quarantine":
        raise _Quarantine([("no_person", f"no confident person: person_present {ev['person_present']:.2f} < "
                                         f"--min-person-confidence {opts.min_person_confidence:g} (face "
                                         f"{ev['face_score']:.2f}, pose {ev['pose_detected']})")])
    if person:
        try:
            mask = person_mask(rgb8)
        except Exception as exc:
            raise _Quarantine([("segmentation_failed", f"{type(exc).__name__}: {exc}")]) from exc
        mask_rec = dict(model_info(), kind="person",
                        meaning="soft person probability in [0, 1] (MediaPipe selfie segmentation)")
    else:
        mask = np.zeros((h, w), np.float32)
        mask_rec = dict(model_info(), kind="none",
                        meaning="no confident person in the frame: all zeros (the segmenter was not applied)")
    mask_rec.update(person_present=ev["person_present"], person_evidence=ev,
                    min_person_confidence=opts.min_person_confidence, person_detector=detector_info())
    metrics["mask_mean"] = round(float(mask.mean()), 6)
    return mask, mask_rec


def _record(ref: FrameRef, frame: LoadedFrame, source: Path, mask_rec: dict[str, Any], colour_note: str,
            metrics: dict[str, Any], reg_note: str | None) -> dict[str, Any]:
    """The sample's JSON record (``source: real``)."""
    h, w = frame.depth.shape
    K = np.asarray(frame.K, dtype=float)
    fx, fy = _fov(K, w, h)
    camera = {"K": K.tolist(),
              "camera_to_world": None if frame.camera_to_world is None else np.asarray(frame.camera_to_world).tolist(),
              "fov_x_deg": fx, "fov_y_deg": fy, "intrinsics_source": frame.intrinsics_source, **frame.camera_extra}
    depth_rec = {"kind": "planar_z", "units": "metres", "metric": bool(frame.metric), "invalid_value": 0.0,
                 **frame.depth_extra}
    if not frame.metric:
        depth_rec["relative_note"] = ("metric=false: values are planar depth up to an unknown scale (monotonic in "
                                      "true depth, larger = farther); 'units' does not apply. See capture.depth_units.")
    capture = dict(frame.capture)
    capture.update(colour=colour_note, validation={"passed": True, "metrics": metrics},
                   source_root=display_path(source.resolve()))
    if reg_note:
        capture["resampling"] = reg_note
    return {"source": "real", "subject_id": ref.subject_id, "camera": camera, "depth": depth_rec, "mask": mask_rec,
            "capture": capture, "synthgen_version": __version__}


def process_frame(reader_name: str, ref: FrameRef, opts: IngestOptions, out: Path, source: Path) -> dict[str, Any]:
    """Ingest one frame. Never raises for bad input: returns the frame's report entry
    (``status`` ``ingested`` or ``quarantined`` with ``reasons``), plus a private ``_digest``."""
    entry: dict[str, Any] = {"key": ref.key, "subject_id": ref.subject_id,
                             "files": {k: _rel(v, source) for k, v in ref.files.items()}}

    def quarantine(reasons, metrics=None):
        remove_sample(out, ref.key)
        entry.update(status="quarantined", reasons=[{"code": c, "detail": d} for c, d in reasons])
        if metrics:
            entry["metrics"] = metrics
        return entry

    if ref.error:
        return quarantine([ref.error])
    reader = all_readers()[reader_name]
    try:
        frame = reader.load(ref, opts)
        rgb, reg_note = register(frame)
    except FrameError as exc:
        return quarantine([(exc.reason, exc.detail)])
    except Exception as exc:  # a reader bug or an exotic file: quarantine, never abort the run
        log.debug("unexpected error on %s", ref.key, exc_info=True)
        return quarantine([("unexpected_error", f"{type(exc).__name__}: {exc}")])
    digest = frame_digest(frame.rgb, frame.depth)
    linear, rgb8, colour_note = _colour(rgb, frame)
    frame.rgb = rgb
    metrics, reasons = validate(frame, rgb8, opts.thresholds)
    if reasons:
        return quarantine(reasons, metrics)
    h, w = frame.depth.shape
    try:
        mask, mask_rec = _segment(rgb8, opts, metrics, h, w)
    except _Quarantine as q:
        return quarantine(q.reasons, metrics)
    mask_rec["coverage"] = round(float(mask.mean()), 6)
    rec = _record(ref, frame, source, mask_rec, colour_note, metrics, reg_note)
    try:
        write_sample(out, ref.key, linear, frame.depth, mask, rec)
    except (ContractError, ValueError) as exc:
        return quarantine([("write_failed", str(exc))], metrics)
    entry.update(status="ingested", metrics=metrics, _digest=digest)
    return entry
