"""Tiny sample stores for the shard tests, written with the real contract writer (real OpenEXR files).

Records copy the shape of real ones: synthetic records as written by synthgen.rendering.worker (camera in
OpenCV convention, render section with params/scan/hdri), real ones with a capture section.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from synthgen.contract import write_sample

H = W = 16


def _camera(f_px: float = 20.0) -> dict:
    return {"model": "pinhole", "convention": "opencv", "pixel_centre": "integer",
            "K": [[f_px, 0.0, (W - 1) / 2], [0.0, f_px, (H - 1) / 2], [0.0, 0.0, 1.0]],
            "camera_to_world": [[1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 1.5],
                                [0.0, 0.0, 0.0, 1.0]],
            "focal_length_mm": 50.0, "sensor_width_mm": 36.0, "sensor_fit": "horizontal",
            "fov_x_deg": 39.6, "fov_y_deg": 39.6}


def arrays(key: str):
    """Deterministic (rgb, depth, mask) for a key: rgb (16,16,3) linear incl. >1 highlights,
    depth (16,16) metres with an invalid border, mask (16,16) in [0,1]."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    rgb = rng.uniform(0.0, 1.6, (H, W, 3)).astype(np.float32)
    depth = rng.uniform(0.4, 3.0, (H, W)).astype(np.float32)
    depth[0, :] = 0.0
    mask = rng.uniform(0.0, 1.0, (H, W)).astype(np.float32)
    mask[:, 0] = 0.0
    mask[:, -1] = 1.0
    return rgb, depth, mask


def synthetic_record(subject: str, index: int) -> dict:
    return {
        "source": "synthetic", "subject_id": subject, "camera": _camera(),
        "depth": {"kind": "planar_z", "units": "metres", "metric": True, "invalid_value": 0.0, "anti_aliased": False},
        "mask": {"kind": "subject_coverage", "source": "render_alpha", "anti_aliased": True, "coverage": 0.4},
        "render": {"job": "test", "seed": 7, "index": index, "attempt": 0, "resamples": 0, "rejected": [],
                   "params": {"scan_id": subject, "hdri_id": "studio", "focal_length_mm": 50.0,
                              "sensor_width_mm": 36.0, "yaw_deg": 10.0 * index, "pitch_deg": 5.0,
                              "roll_deg": 0.0, "distance_m": 1.5},
                   "camera": {"target_m": [0.0, 0.0, 1.5], "distance_m": 1.5, "target_mode": "head"},
                   "scan": {"id": subject, "file": f"scans/{subject}.glb"},
                   "hdri": {"id": "studio", "file": "hdris/studio.exr", "rotation_deg": 0.0, "strength": 1.0,
                            "background": "visible"}},
        "synthgen_version": "0.1.0",
    }


def real_record(sequence: str, frame: int) -> dict:
    return {
        "source": "real", "subject_id": sequence, "camera": {**_camera(18.0), "camera_to_world": None},
        "depth": {"kind": "planar_z", "units": "metres", "metric": True, "invalid_value": 0.0},
        "mask": {"kind": "subject_coverage", "source": "mediapipe_selfie"},
        "capture": {"device": "test-rgbd", "sequence": sequence, "frame": frame, "file": f"{sequence}/{frame:04d}.heic"},
        "synthgen_version": "0.1.0",
    }


def make_synthetic_store(root: Path, subjects=("scanA", "scanB", "scanC", "scanD"), per_subject=4,
                         prefix="syn") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    i = 0
    for s in subjects:
        for _ in range(per_subject):
            key = f"{prefix}_s7_{i:06d}"
            write_sample(root, key, *arrays(key), synthetic_record(s, i))
            i += 1
    return root


def make_real_store(root: Path, sequences=("seq01", "seq02", "seq03"), per_sequence=4, prefix="real") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for s in sequences:
        for f in range(per_sequence):
            key = f"{prefix}_{s}_{f:04d}"
            write_sample(root, key, *arrays(key), real_record(s, f))
    return root
