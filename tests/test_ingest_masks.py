"""synthgen ingest: MediaPipe selfie-segmentation masks on a real portrait (runs MediaPipe once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthgen.contract import read_sample
from synthgen.ingest import IngestOptions, ingest

FIX = Path(__file__).parent / "fixtures" / "ingest"
KEY = "heic-iphone13pro_portrait_pug"


@pytest.fixture(scope="module")
def portrait(tmp_path_factory):
    out = tmp_path_factory.mktemp("masks")
    rep = ingest(FIX / "heic" / "iphone13pro_portrait_pug.heic", out,
                 IngestOptions(segment=True, default_intrinsics=True), progress=False)
    return rep, read_sample(out, KEY)


def test_dog_portrait_has_no_person_so_no_mask(portrait):
    # issue 14 item 4 changed this: the selfie segmenter marked the dog's head (mean > 0.4) as a person;
    # the face/pose detectors find no person, so the mask is now empty with mask.kind "none"
    # (the soft person mask is tested on a real person in test_ingest_person_masks.py).
    _, s = portrait
    m = s.mask
    assert m.shape == (576, 768) and np.all(m == 0)
    assert s.record["mask"]["kind"] == "none" and s.record["mask"]["person_present"] < 0.75


def test_mask_model_recorded(portrait):
    rep, s = portrait
    mask = s.record["mask"]
    assert mask["source"] == "mediapipe"
    assert mask["mediapipe_version"] == "0.10.14"
    assert mask["model_file"].endswith("selfie_segmentation.tflite") and len(mask["model_sha256"]) == 64
    assert rep["segmentation"]["model"] == mask["model"]


def test_segmentation_off_gives_documented_all_ones(tmp_path):
    ingest(FIX / "kitti", tmp_path, IngestOptions(segment=False), progress=False)
    s = read_sample(tmp_path, "2011_09_26_drive_0002_sync-0000000005_image_02")
    assert np.all(s.mask == 1.0) and s.record["mask"]["source"] == "none"
