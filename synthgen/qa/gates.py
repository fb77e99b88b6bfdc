"""QA gates: thresholds loaded from YAML and validated with pydantic.

A gates file maps gate names to their settings; every field is optional and falls back to the
defaults below, unknown gate names or fields are errors (typos must not silently disable a gate)::

    depth_in_range:
      min_m: 0.2
      max_m: 10.0
    exposure_not_clipped:
      max_clipped_fraction: 0.4
    mask_not_full:
      enabled: false

Every gate has ``enabled`` (default true) and ``mostly`` (default 1.0): like Great Expectations'
``mostly``, the gate succeeds when at least this fraction of the samples it evaluates pass. The
per-sample thresholds are documented on each model and in ``docs/qa.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from .. import safeyaml
from ..errors import GatesError  # noqa: F401 (re-exported)


class _Gate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    mostly: float = Field(1.0, ge=0.0, le=1.0,
                          description="fraction of evaluated samples that must pass for the gate to succeed")


class InputsReadable(_Gate):
    """Every input is readable: no damaged or truncated tar, no shard listed in ``manifest.json``
    but missing, per-shard sample counts equal to the manifest's, readable quarantine lists.
    Evaluated per input file (store folder or tar)."""


class RecordsValid(_Gate):
    """Record parses and follows the contract schema, its key matches the file name, member sha256
    matches the record, members decode and their shapes agree."""


class MembersComplete(_Gate):
    """All four members (rgb, depth, mask, json) are present."""


class DepthFinite(_Gate):
    """No NaN or ±inf in depth (the contract stores invalid depth as 0, never NaN)."""
    max_nonfinite_fraction: float = Field(0.0, ge=0.0, le=1.0, description="fraction of pixels")


class DepthHasValidPixels(_Gate):
    """Depth has at least some valid (finite, > 0) pixels."""
    min_valid_fraction: float = Field(0.001, ge=0.0, le=1.0, description="fraction of pixels")


class DepthInRange(_Gate):
    """Valid depth lies in a plausible range (catches unit errors: millimetres stored as metres).
    Skipped for samples whose record says ``depth.metric: false`` (relative depth)."""
    min_m: float = Field(0.05, ge=0.0, description="metres")
    max_m: float = Field(20.0, gt=0.0, description="metres")
    max_out_of_range_fraction: float = Field(0.01, ge=0.0, le=1.0, description="fraction of valid pixels")


class MaskNotEmpty(_Gate):
    """Subject coverage (mean of the mask) is above ``min_coverage``. Not evaluated on samples whose
    record says ``mask.kind: "none"`` (no person in the frame: an empty mask is right there)."""
    min_coverage: float = Field(0.001, ge=0.0, le=1.0)


class MaskNotFull(_Gate):
    """Subject coverage (mean of the mask) is below ``max_coverage``."""
    max_coverage: float = Field(0.999, ge=0.0, le=1.0)


class MaskWithoutPerson(_Gate):
    """No mask on a frame without a person: evaluated on samples whose record states person presence
    (``mask.kind`` ``"none"``, or a numeric ``mask.person_present``, as ``synthgen ingest`` writes);
    a sample fails when its record says there is no person (``mask.kind: "none"`` or
    ``person_present < min_person_confidence``) but its mask covers more than ``max_coverage``
    (a hallucinated person mask)."""
    max_coverage: float = Field(0.001, ge=0.0, le=1.0, description="mask mean")
    min_person_confidence: float = Field(0.75, ge=0.0, le=1.0)


class ExposureNotClipped(_Gate):
    """Fraction of clipped pixels, measured on the subject (mask >= 0.5) when it covers at least 1 %
    of the frame, else on the whole frame. A pixel is clipped when max(R, G, B) >= ``clip_high``
    (white under the default view transform) or <= ``clip_low`` (crushed black); linear RGB."""
    clip_high: float = Field(1.0, gt=0.0)
    clip_low: float = Field(0.0, ge=0.0)
    max_clipped_fraction: float = Field(0.25, ge=0.0, le=1.0)


class NoExactDuplicates(_Gate):
    """No two samples with different keys have identical arrays (hash of rgb, depth, mask)."""


class KeysUnique(_Gate):
    """A key occurs at most once within a split."""


class KeysDisjointAcrossSplits(_Gate):
    """A key occurs in at most one split."""


class SubjectsDisjointAcrossSplits(_Gate):
    """All samples of a subject (scan id or capture sequence) are in one split."""


class CameraConsistent(_Gate):
    """The camera record agrees with the image: record image size equals the EXR size; the principal
    point lies inside the image grown by ``principal_point_margin`` × size on every side; when given,
    ``fov_x_deg``/``fov_y_deg`` agree with K (fov = 2·atan(size / (2·f))) within ``fov_tolerance_deg``,
    and ``focal_length_mm`` / ``sensor_width_mm`` · W agrees with fx within ``focal_rel_tolerance``
    (horizontal sensor fit)."""
    principal_point_margin: float = Field(0.1, ge=0.0)
    fov_tolerance_deg: float = Field(0.5, ge=0.0)
    focal_rel_tolerance: float = Field(0.01, ge=0.0)


class Gates(BaseModel):
    """All gates, in report order."""
    model_config = ConfigDict(extra="forbid")
    inputs_readable: InputsReadable = InputsReadable()
    records_valid: RecordsValid = RecordsValid()
    members_complete: MembersComplete = MembersComplete()
    depth_finite: DepthFinite = DepthFinite()
    depth_has_valid_pixels: DepthHasValidPixels = DepthHasValidPixels()
    depth_in_range: DepthInRange = DepthInRange()
    mask_not_empty: MaskNotEmpty = MaskNotEmpty()
    mask_not_full: MaskNotFull = MaskNotFull()
    mask_without_person: MaskWithoutPerson = MaskWithoutPerson()
    exposure_not_clipped: ExposureNotClipped = ExposureNotClipped()
    no_exact_duplicates: NoExactDuplicates = NoExactDuplicates()
    keys_unique: KeysUnique = KeysUnique()
    keys_disjoint_across_splits: KeysDisjointAcrossSplits = KeysDisjointAcrossSplits()
    subjects_disjoint_across_splits: SubjectsDisjointAcrossSplits = SubjectsDisjointAcrossSplits()
    camera_consistent: CameraConsistent = CameraConsistent()


EXPECTATION_TYPES = {
    "inputs_readable": "expect_inputs_to_be_readable",
    "records_valid": "expect_sample_records_to_be_valid",
    "members_complete": "expect_samples_to_have_all_members",
    "depth_finite": "expect_depth_values_to_be_finite",
    "depth_has_valid_pixels": "expect_depth_valid_fraction_to_be_at_least",
    "depth_in_range": "expect_depth_values_to_be_between",
    "mask_not_empty": "expect_mask_coverage_to_be_above",
    "mask_not_full": "expect_mask_coverage_to_be_below",
    "mask_without_person": "expect_mask_to_be_empty_without_person",
    "exposure_not_clipped": "expect_clipped_pixel_fraction_to_be_at_most",
    "no_exact_duplicates": "expect_sample_arrays_to_be_unique",
    "keys_unique": "expect_keys_to_be_unique_within_split",
    "keys_disjoint_across_splits": "expect_keys_to_be_in_one_split",
    "subjects_disjoint_across_splits": "expect_subjects_to_be_in_one_split",
    "camera_consistent": "expect_camera_records_to_match_images",
}
"""Gate name -> expectation type written to ``report.json`` (Great Expectations style names)."""


def gate_names() -> list[str]:
    """Gate names in report order."""
    return list(Gates.model_fields)


def load_gates(path: str | os.PathLike | None) -> Gates:
    """Load a gates YAML file (``None``: defaults).

    Raises:
        GatesError: unreadable file, invalid YAML, unknown gate or field, or an out-of-range value;
            the message names the file and the field path.
    """
    if path is None:
        return Gates()
    p = Path(path)
    try:
        data = safeyaml.load_file(p)  # bounded cost: size, nesting, expanded aliases
    except OSError as exc:
        raise GatesError(f"{p}: cannot read gates file ({exc.strerror or exc})") from exc
    except safeyaml.SafeYAMLError as exc:
        raise GatesError(str(exc)) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise GatesError(f"{p}: expected a mapping of gate name -> settings, got {type(data).__name__}")
    if "gates" in data and isinstance(data["gates"], dict) and len(data) == 1:
        data = data["gates"]  # also accept a top-level ``gates:`` wrapper
    try:
        return Gates.model_validate(data)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            msgs.append(f"{loc}: {err['msg']} (got {safeyaml.bounded_repr(err.get('input'))})")
        raise GatesError(f"{p}: invalid gates: " + "; ".join(msgs)) from exc


def dump_gates(gates: Gates) -> str:
    """Gates as YAML text (all fields, defaults included)."""
    return yaml.safe_dump(gates.model_dump(), sort_keys=False)
