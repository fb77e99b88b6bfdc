"""synthgen ingest, issue 14 item 4: honest person masks. A person/face detector runs beside the
selfie segmenter; frames without a confident person get mask.kind "none" and an all-zero mask (or
are quarantined), and the QA report's mask_without_person gate catches a hallucinated mask.

Fixtures: a real iPhone TrueDepth portrait of an identifiable person (tests only, never published)
and the real TUM desk frames (no person)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from synthgen.contract import read_sample, write_sample
from synthgen.ingest import IngestOptions, ingest

FIX = Path(__file__).parent / "fixtures" / "ingest"
PERSON = "heic_truedepth-iphone14_truedepth_person"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    base = tmp_path_factory.mktemp("person_masks")
    person = ingest(FIX / "heic_truedepth", base / "person", IngestOptions(), progress=False)
    desk = ingest(FIX / "tum_rgbd_fr1_xyz", base / "desk", IngestOptions(), progress=False)
    return base, person, desk


def test_no_person_frames_get_kind_none_and_an_empty_mask(stores):
    base, _, desk = stores
    assert desk["counts"]["ingested"] == 3
    assert desk["segmentation"]["frames_without_person"] == 3
    for f in desk["frames"]:
        s = read_sample(base / "desk", f["key"])
        m = s.record["mask"]
        assert m["kind"] == "none" and m["coverage"] == 0.0 and np.all(s.mask == 0)
        assert m["person_present"] < m["min_person_confidence"] == 0.75
        assert m["person_detector"]["face"]["model_file"].endswith("face_detection_short_range.tflite")
        assert f["metrics"]["person_present"] == m["person_present"]


def test_person_photo_gives_a_non_trivial_soft_mask(stores):
    base, person, _ = stores
    s = read_sample(base / "person", PERSON)
    m = s.record["mask"]
    assert m["kind"] == "person" and m["person_present"] >= 0.75 and m["source"] == "mediapipe"
    assert m["person_evidence"]["face_score"] >= 0.75
    mask = s.mask
    assert len(np.unique(mask)) > 50  # soft
    assert 0.2 < mask.mean() < 0.8
    face = float(mask[280:360, 200:280].mean())  # the face, ~0.3 m away (see the depth test)
    wall = float(mask[10:60, 10:60].mean())      # the wall behind, top-left
    assert face > 0.9 and wall < 0.05, (face, wall)
    assert person["segmentation"]["frames_without_person"] == 0


def test_no_person_frames_can_be_quarantined(tmp_path):
    src = tmp_path / "desk"
    shutil.copytree(FIX / "tum_rgbd_fr1_xyz", src)
    rep = ingest(src, tmp_path / "out", IngestOptions(no_person="quarantine"), progress=False)
    assert rep["counts"] == {"found": 3, "ingested": 0, "quarantined": 3}
    assert rep["quarantine_reasons"] == {"no_person": 3}


def test_qa_gate_fires_on_a_planted_hallucinated_mask(stores, tmp_path):
    from synthgen.qa.cli import run_qa

    base, _, desk = stores
    store = tmp_path / "store"
    shutil.copytree(base / "desk", store)
    shutil.copytree(base / "person", store, dirs_exist_ok=True)
    doc = run_qa([str(store)], tmp_path / "qa_clean", progress=False, html=False)
    res = {r["expectation_config"]["meta"]["gate"]: r for r in doc["results"]}
    assert res["mask_without_person"]["success"] and res["mask_without_person"]["result"]["element_count"] == 4
    assert res["mask_not_empty"]["success"] and res["mask_not_empty"]["result"]["element_count"] == 1
    # plant: a desk frame whose record says "no person" but whose mask has a person-shaped blob
    key = desk["frames"][0]["key"]
    s = read_sample(store, key)
    blob = np.zeros_like(s.mask)
    blob[100:400, 200:420] = 0.9
    write_sample(store, key, s.rgb, s.depth, blob, s.record)
    doc = run_qa([str(store)], tmp_path / "qa_planted", progress=False, html=False)
    r = {r["expectation_config"]["meta"]["gate"]: r for r in doc["results"]}["mask_without_person"]
    assert r["success"] is False and r["result"]["unexpected_count"] == 1
    assert r["result"]["partial_unexpected_list"][0]["key"] == key
    assert "mask.kind none" in r["result"]["partial_unexpected_list"][0]["observed"]
