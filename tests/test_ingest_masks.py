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


def test_mask_is_soft_and_non_trivial_on_the_subject(portrait):
    _, s = portrait
    m = s.mask
    assert m.shape == (576, 768) and m.min() >= 0 and m.max() <= 1
    assert len(np.unique(m)) > 50  # soft, not binary
    head = m[290:400, 360:490].mean()   # the subject's head
    wall = m[20:200, 200:600].mean()    # plain wall behind it
    assert head > 0.4 and wall < 0.02, (head, wall)


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
