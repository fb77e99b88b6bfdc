"""Ingest options and validation thresholds (pydantic models, so bad values fail early with a
clear message)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Thresholds(BaseModel):
    """Per-frame validation thresholds. A frame failing any check is quarantined.

    Attributes:
        max_holes: largest allowed fraction of invalid (0) depth pixels.
        max_out_of_range: largest allowed fraction of valid depth pixels outside the sensor's
            near/far range (metric depth only).
        max_timestamp_skew_s: largest allowed |t_rgb - t_depth| in seconds for associated pairs.
        max_clipped: largest allowed fraction of pixels whose channels are all 255 (or all 0) in 8-bit sRGB
            — over- or under-exposure.
        min_sharpness: smallest allowed variance of the Laplacian of the 8-bit grey image (blur
            check, Pech-Pacheco et al. 2000); 0 disables it.
    """

    model_config = ConfigDict(extra="forbid")
    max_holes: float = Field(0.6, ge=0, le=1)
    max_out_of_range: float = Field(0.02, ge=0, le=1)
    max_timestamp_skew_s: float = Field(0.02, ge=0)
    max_clipped: float = Field(0.25, ge=0, le=1)
    min_sharpness: float = Field(15.0, ge=0)


class IngestOptions(BaseModel):
    """Options of one ingest run (the CLI flags, see ``synthgen ingest --help``).

    Attributes:
        format: reader name or ``auto``.
        intrinsics: JSON intrinsics file that overrides the source's own.
        default_intrinsics: allow the documented default intrinsics (26 mm-equivalent lens,
            centred principal point) where the source has none.
        depth_scale: raw depth units per metre (metres = raw / depth_scale); overrides the format's
            default (TUM 5000, Kinect-mm 1000, KITTI 256, float EXR 1).
        max_time_diff: TUM association: largest timestamp difference (s) for an RGB/depth pair.
        segment: run MediaPipe person detection and selfie segmentation for the mask.
        min_person_confidence: frames whose ``person_present`` (face/pose detectors, see
            :func:`synthgen.ingest.segment.person_evidence`) is below this have no person: their mask
            is all zeros with ``mask.kind: "none"`` (or they are quarantined, ``no_person``).
        no_person: what happens to frames without a confident person: ``empty_mask`` (written,
            all-zero mask, ``mask.kind: "none"``) or ``quarantine`` (reason ``no_person``).
        address: run the per-frame work on Ray: ``auto``, ``HOST:PORT``, ``ray://...``, or ``local``
            (an embedded local Ray); None runs in this process / ``workers`` processes.
        subject_id: override the subject id (capture session) of every frame.
        workers: worker processes (1 = in-process).
        relative_near / relative_far: nominal near/far used to decode 8-bit relative depth images
            (``image-depth-pairs``) as RangeInverse; the result is relative, not metres.
    """

    model_config = ConfigDict(extra="forbid")
    format: str = "auto"
    intrinsics: Path | None = None
    default_intrinsics: bool = False
    depth_scale: float | None = Field(None, gt=0)
    max_time_diff: float = Field(0.02, gt=0)
    segment: bool = True
    min_person_confidence: float = Field(0.75, ge=0, le=1)
    no_person: Literal["empty_mask", "quarantine"] = "empty_mask"
    address: str | None = None
    subject_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$")
    workers: int = Field(1, ge=1)
    relative_near: float = Field(1.0, gt=0)
    relative_far: float = Field(10.0, gt=0)
    thresholds: Thresholds = Field(default_factory=Thresholds)
