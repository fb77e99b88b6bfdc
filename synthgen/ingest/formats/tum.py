"""TUM RGB-D benchmark layout (Sturm et al., IROS 2012; https://cvg.cit.tum.de/data/datasets/rgbd-dataset/file_formats).

Layout: ``rgb.txt`` and ``depth.txt`` (lines ``timestamp path``; ``#`` comments), ``rgb/*.png``
(8-bit colour, 640x480), ``depth/*.png`` (16-bit, value / 5000 = metres, 0 = no measurement,
already registered to the colour camera), optional ``groundtruth.txt`` (``timestamp tx ty tz qx qy
qz qw``: camera-to-world pose of the colour camera's optical centre, metres, OpenCV axes).

Pairs are associated like the dataset's ``associate.py``: candidate pairs with
``|t_rgb - t_depth| < max_time_diff`` are taken greedily by increasing difference, one-to-one.
Poses are interpolated at the colour timestamp (linear translation, quaternion slerp) between the
two bracketing ground-truth samples when they are at most 0.1 s apart.

Intrinsics: the dataset ships none. Its file-format page recommends the ROS default parameter set
(fx = fy = 525, cx = 319.5, cy = 239.5, no undistortion) for the pre-registered depth, "as
undistortion of the pre-registered depth images is not trivial"; that is what ingest uses (issue 14
item 3), and ``camera.intrinsics_source`` says so. The published calibration of the fr1/fr2/fr3
colour camera (chosen by ``freiburg1/2/3`` in the folder name or the lists' ``# file:`` header) is
recorded under ``camera.tum_published_calibration`` (``used: false``); pass ``--intrinsics`` to
use it instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..common import (FrameRef, LoadedFrame, SourceError, display_path, load_depth_int, load_rgb8,
                      make_K, pose_matrix, sanitize_token, slerp)
from ..options import IngestOptions
from . import Reader, folder_intrinsics, intr_to_info, is_dir, is_file, resolve_K

TUM_SCALE = 5000.0
# Published calibration of the TUM RGB-D colour cameras: fx fy cx cy, OpenCV distortion k1 k2 p1 p2 k3.
TUM_CAMERAS = {
    "freiburg1": ((517.3, 516.5, 318.6, 255.3), (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)),
    "freiburg2": ((520.9, 521.0, 325.1, 249.7), (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)),
    "freiburg3": ((535.4, 539.2, 320.1, 247.6), (0.0, 0.0, 0.0, 0.0, 0.0)),
}
MAX_POSE_GAP_S = 0.1
TUM_RECOMMENDED = (525.0, 525.0, 319.5, 239.5)
TUM_RECOMMENDED_NOTE = ("TUM RGB-D recommendation for the pre-registered depth: ROS default fx=fy=525, cx=319.5, "
                        "cy=239.5, no undistortion (the dataset's file-format page; its generate_pointcloud.py uses "
                        "the same)")


def parse_list(path: Path) -> tuple[list[tuple[float, str, int]], list[tuple[int, str]], str]:
    """Parse a TUM list file. Returns ``(entries, bad_lines, header)`` with entries
    ``(timestamp, relative path, line number)`` and bad lines ``(line number, text)``."""
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError as exc:
        raise SourceError(f"{display_path(path)}: unreadable ({exc.strerror or exc})") from exc
    entries, bad, header = [], [], ""
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            header += s + "\n"
            continue
        parts = s.split()
        try:
            if len(parts) < 2:
                raise ValueError
            entries.append((float(parts[0]), parts[1], n))
        except ValueError:
            bad.append((n, s))
    return entries, bad, header


def associate(a: list[float], b: list[float], max_diff: float) -> dict[int, int]:
    """Greedy one-to-one association of timestamp lists (as TUM's ``associate.py``): returns
    ``{index in a: index in b}`` for pairs with ``|a - b| < max_diff``."""
    cands = sorted((abs(ta - tb), i, j) for i, ta in enumerate(a) for j, tb in enumerate(b)
                   if abs(ta - tb) < max_diff)
    used_a, used_b, out = set(), set(), {}
    for _, i, j in cands:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out[i] = j
    return out


def parse_groundtruth(path: Path) -> np.ndarray:
    """``(N, 8)`` array of ``t tx ty tz qx qy qz qw`` rows sorted by time (malformed lines skipped)."""
    rows = []
    for line in path.read_text("utf-8", errors="replace").splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            v = [float(x) for x in s.split()]
        except ValueError:
            continue
        if len(v) == 8 and all(np.isfinite(v)):
            rows.append(v)
    a = np.array(rows, dtype=float).reshape(-1, 8)
    return a[np.argsort(a[:, 0])]


def interpolate_pose(gt: np.ndarray, t: float) -> tuple[np.ndarray | None, str]:
    """Camera-to-world 4x4 at time ``t`` from ground-truth rows, or ``(None, why)``."""
    if len(gt) == 0:
        return None, "groundtruth.txt has no poses"
    i = int(np.searchsorted(gt[:, 0], t))
    if i == 0 or i == len(gt):
        if len(gt) and abs(gt[min(i, len(gt) - 1), 0] - t) < 1e-6:
            r = gt[min(i, len(gt) - 1)]
            return pose_matrix(r[1:4], r[4:8]), "exact ground-truth sample"
        return None, f"timestamp {t:.6f} outside ground-truth range"
    r0, r1 = gt[i - 1], gt[i]
    if r1[0] - r0[0] > MAX_POSE_GAP_S:
        return None, f"ground-truth gap {r1[0] - r0[0]:.3f} s around {t:.6f} exceeds {MAX_POSE_GAP_S} s"
    a = (t - r0[0]) / (r1[0] - r0[0]) if r1[0] > r0[0] else 0.0
    tr = (1 - a) * r0[1:4] + a * r1[1:4]
    q = slerp(r0[4:8], r1[4:8], a)
    return pose_matrix(tr, q), f"interpolated between ground-truth samples {r0[0]:.4f} and {r1[0]:.4f}"


class TumReader(Reader):
    name = "tum"
    supersedes = ("kinect-mm", "redwood")
    description = "TUM RGB-D: rgb.txt/depth.txt, 16-bit depth PNG value/5000 = metres, groundtruth.txt poses"

    def detect(self, source: Path) -> bool:
        return is_dir(source) and is_file(source / "rgb.txt") and is_file(source / "depth.txt")

    def scan(self, source: Path, opts: IngestOptions, exclude: Path | None = None) -> list[FrameRef]:
        rgb, bad_rgb, header = parse_list(source / "rgb.txt")
        depth, bad_depth, header_d = parse_list(source / "depth.txt")
        subject = opts.subject_id or sanitize_token(source.resolve().name)
        camera = None
        for token in (source.resolve().name, header, header_d):
            m = re.search(r"(?:freiburg|fr)([123])", token)
            if m:
                camera = f"freiburg{m.group(1)}"
                break
        intr = None
        if opts.intrinsics is not None:  # the TUM layout has no intrinsics file of its own
            intr = folder_intrinsics(source, opts, patterns=())
        if intr is None:
            intr = {"K": make_K(*TUM_RECOMMENDED), "width": 640, "height": 480, "extra": {},
                    "source": TUM_RECOMMENDED_NOTE}
        gt = None
        gt_path = source / "groundtruth.txt"
        if is_file(gt_path):
            gt = parse_groundtruth(gt_path)
        pairs = associate([e[0] for e in rgb], [e[0] for e in depth], opts.max_time_diff)
        common = {"camera": camera, "intr": intr_to_info(intr), "sequence": source.resolve().name}
        refs: list[FrameRef] = []
        used_files = set()
        for i, (t, rel, _) in enumerate(rgb):
            stem = Path(rel).name.rsplit(".", 1)[0]
            key = f"{subject}-{sanitize_token(stem)}"
            files = {"rgb": str(source / rel)}
            used_files.add((source / rel).resolve())
            info = dict(common, t_rgb=t, rgb_rel=rel)
            err = None
            if not (source / rel).exists() and not (source / rel).is_symlink():  # name the missing file
                err = ("missing_file", f"{rel}: listed in rgb.txt but not found")
            if i in pairs:
                td, drel, _ = depth[pairs[i]]
                files["depth"] = str(source / drel)
                used_files.add((source / drel).resolve())
                info.update(t_depth=td, depth_rel=drel)
                if err is None and not (source / drel).exists() and not (source / drel).is_symlink():
                    err = ("missing_file", f"{drel}: listed in depth.txt but not found")
                if gt is not None:
                    c2w, note = interpolate_pose(gt, t)
                    info["pose"] = None if c2w is None else c2w.tolist()
                    info["pose_note"] = note
                else:
                    info["pose"], info["pose_note"] = None, "no groundtruth.txt"
            elif err is None:
                near = min((abs(t - d[0]) for d in depth), default=None)
                err = ("no_associated_depth",
                       f"{rel}: no depth frame within {opts.max_time_diff} s"
                       + (f" (nearest {near:.4f} s away)" if near is not None else ""))
            refs.append(FrameRef(key, subject, files, info, err))
        matched_depth = set(pairs.values())
        for j, (t, drel, _) in enumerate(depth):
            if j not in matched_depth:
                used_files.add((source / drel).resolve())
                refs.append(FrameRef(f"{subject}-depth-{sanitize_token(Path(drel).name)}", subject,
                                     {"depth": str(source / drel)}, {"t_depth": t},
                                     ("orphan_depth", f"{drel}: depth frame not associated with any colour frame "
                                                      f"within {opts.max_time_diff} s")))
        for listname, bad in (("rgb.txt", bad_rgb), ("depth.txt", bad_depth)):
            for n, text in bad:
                refs.append(FrameRef(f"{subject}-{sanitize_token(listname)}-line{n}", subject, {"list": listname}, {},
                                     ("bad_list_line", f"{listname} line {n}: cannot parse {text[:80]!r}")))
        for sub in ("rgb", "depth"):
            d = source / sub
            if not is_dir(d):
                continue
            for p in sorted(d.iterdir(), key=lambda p: p.name):
                try:
                    rp = p.resolve()
                except (OSError, RuntimeError):
                    rp = p
                if rp not in used_files:
                    refs.append(FrameRef(f"{subject}-unlisted-{sub}-{sanitize_token(p.name)}", subject,
                                         {sub: str(p)}, {},
                                         ("unlisted_file", f"{sub}/{display_path(p.name)}: not listed in {sub}.txt")))
        return refs

    def load(self, ref: FrameRef, opts: IngestOptions) -> LoadedFrame:
        info = ref.info
        rgb, im = load_rgb8(Path(ref.files["rgb"]))
        raw, bits = load_depth_int(Path(ref.files["depth"]))
        scale = opts.depth_scale or TUM_SCALE
        depth = raw.astype(np.float32) / np.float32(scale)
        h, w = rgb.shape[:2]
        K, ksrc = resolve_K(info.get("intr"), w, h, opts)
        extra = {}
        if info.get("intr") and info["intr"].get("extra", {}).get("distortion"):
            extra["distortion"] = {"model": "opencv k1 k2 p1 p2 k3",
                                   "coeffs": info["intr"]["extra"]["distortion"], "applied_to_images": False}
        if info.get("camera"):
            (fx, fy, cx, cy), dist = TUM_CAMERAS[info["camera"]]
            extra["tum_published_calibration"] = {
                "camera": f"{info['camera']} colour", "fx": fx, "fy": fy, "cx": cx, "cy": cy,
                "distortion_k1_k2_p1_p2_k3": list(dist), "used": False,
                "note": "not used: the dataset recommends the ROS default for its pre-registered depth, which "
                        "would need undistorting together with the colour; pass --intrinsics to use it"}
        skew = abs(info["t_rgb"] - info["t_depth"])
        capture = {
            "format": "tum",
            "sensor": f"Microsoft Kinect v1 (TUM RGB-D {info.get('camera') or 'unknown camera'})",
            "sequence": info["sequence"],
            "source_files": {"rgb": info["rgb_rel"], "depth": info["depth_rel"]},
            "depth_units": f"uint16, value / {scale:g} = metres, 0 = no measurement",
            "raw_to_metres": 1.0 / scale,
            "depth_scale": ({"value": float(scale), "source": "option", "reason": f"--depth-scale {scale:g}"}
                            if opts.depth_scale else
                            {"value": TUM_SCALE, "source": "layout", "reason": "TUM RGB-D file format: raw / 5000"}),
            "timestamps": {"rgb": info["t_rgb"], "depth": info["t_depth"], "skew_s": skew},
            "pose_note": info.get("pose_note"),
            "registration": "depth pre-registered to the colour camera by the dataset",
        }
        return LoadedFrame(rgb=rgb, depth=depth, K=K, metric=True, capture=capture,
                           camera_to_world=None if info.get("pose") is None else np.asarray(info["pose"]),
                           sensor_range_m=(0.3, 10.0), depth_bits=bits, depth_raw_max=float(raw.max()),
                           expects_16bit=True, intrinsics_source=ksrc, camera_extra=extra, timestamp_skew_s=skew)
