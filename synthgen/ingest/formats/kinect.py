"""Folders of colour images plus 16-bit depth PNG/PGM with a depth scale (Kinect-style millimetres).

``kinect-mm`` (e.g. the slambook2 RGB-D frames): ``color/`` (or ``rgb/``) and ``depth/`` folders
whose files pair by stem (``color/1.png`` + ``depth/1.pgm``); depth is uint16, metres =
value / ``depth_scale`` (default 1000), 0 = invalid. Optional ``pose.txt``: one line per frame in
numeric frame order, ``tx ty tz qx qy qz qw`` = camera-to-world (slambook2 ``joinMap.cpp``).
Intrinsics come from ``--intrinsics`` or a ``camera_intrinsics.json`` / ``intrinsics.json`` /
``camera_*.json`` in the folder (``fx fy cx cy`` keys, optional ``depth_scale``).

``redwood`` (Redwood / Augmented ICL-NUIM as shipped with Open3D): ``color/*.jpg``,
``depth/*.png`` (uint16 mm), optional ``rgbd.match`` (``depth/x.png color/x.jpg`` per line),
Open3D ``camera_*.json`` intrinsics (``intrinsic_matrix`` column-major) and ``trajectory.log``
(Redwood/Open3D log: per frame a line ``id id n`` then a 4x4 camera-to-world matrix, row-major,
OpenCV camera axes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common import (IMAGE_EXTS, FrameRef, LoadedFrame, SourceError, display_path, load_depth_int, load_rgb8,
                      pose_matrix, sanitize_token)
from ..options import IngestOptions
from . import Reader, folder_intrinsics, intr_to_info, is_dir, is_file, resolve_K

COLOR_DIRS = ("color", "rgb", "image")


def _color_dir(source: Path) -> Path | None:
    for n in COLOR_DIRS:
        if is_dir(source / n):
            return source / n
    return None


def _sort_key(p: Path):
    stem = p.name.rsplit(".", 1)[0]
    return (0, int(stem), "") if stem.isdigit() else (1, 0, p.name)


def _files(d: Path) -> list[Path]:
    try:
        return sorted(d.iterdir(), key=_sort_key)
    except OSError as exc:
        raise SourceError(f"{display_path(d)}: cannot list folder ({exc.strerror or exc})") from exc


def _is_image_name(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS


def parse_pose_txt(path: Path) -> list[list[list[float]] | None]:
    """slambook2 ``pose.txt``: per line ``tx ty tz qx qy qz qw`` -> 4x4 camera-to-world (None for
    a malformed line)."""
    out = []
    for line in path.read_text("utf-8", errors="replace").splitlines():
        s = line.split()
        if not s:
            continue
        try:
            v = [float(x) for x in s]
            out.append(pose_matrix(v[0:3], v[3:7]).tolist() if len(v) == 7 else None)
        except ValueError:
            out.append(None)
    return out


def parse_trajectory_log(path: Path) -> dict[int, list[list[float]]]:
    """Redwood/Open3D ``.log``: blocks of ``id1 id2 n`` + 4 matrix rows -> ``{id1: 4x4}``.
    Raises SourceError naming the file when the block structure is broken."""
    lines = [ln.split() for ln in path.read_text("utf-8", errors="replace").splitlines() if ln.strip()]
    if len(lines) % 5:
        raise SourceError(f"{display_path(path)}: {len(lines)} non-empty lines, expected blocks of 5")
    poses = {}
    try:
        for b in range(0, len(lines), 5):
            idx = int(lines[b][0])
            m = np.array([[float(x) for x in lines[b + r]] for r in range(1, 5)])
            if m.shape != (4, 4):
                raise ValueError("matrix is not 4x4")
            poses[idx] = m.tolist()
    except (ValueError, IndexError) as exc:
        raise SourceError(f"{display_path(path)}: malformed trajectory block ({exc})") from exc
    return poses


class KinectMMReader(Reader):
    name = "kinect-mm"
    description = "color/ + depth/ folders, 16-bit PNG/PGM depth (scale stated or inferred), pose.txt"
    sensor = "Kinect-style RGB-D camera (depth scale stated, or inferred from the data)"
    default_scale = 1000.0
    scale_from_layout = False
    registration = "depth assumed registered to colour (same resolution required)"
    sensor_range_m = (0.3, 10.0)

    def raw_to_metres(self, scale: float) -> float | None:
        return 1.0 / scale
    """The layout does not document a unit: without --depth-scale or an intrinsics-file
    depth_scale the scale is inferred (:mod:`synthgen.ingest.scale`) or refused."""

    def detect(self, source: Path) -> bool:
        if not is_dir(source) or _color_dir(source) is None or not is_dir(source / "depth"):
            return False
        return any(_is_image_name(p) for p in _files(source / "depth"))

    def pairs(self, source: Path) -> tuple[list[tuple[Path | None, Path | None]], list[Path]]:
        """``([(colour, depth)], non-image files)`` pairing by stem; a missing partner is None."""
        cdir = _color_dir(source)
        colors = _files(cdir) if cdir else []
        depths = _files(source / "depth")
        junk = [p for p in colors + depths if not _is_image_name(p)]
        colors = [p for p in colors if _is_image_name(p)]
        dmap = {p.name.rsplit(".", 1)[0]: p for p in depths if _is_image_name(p)}
        out = []
        for c in colors:
            stem = c.name.rsplit(".", 1)[0]
            out.append((c, dmap.pop(stem, None)))
        out += [(None, d) for d in dmap.values()]
        return out, junk

    def poses(self, source: Path, n: int) -> tuple[list, str]:
        if is_file(source / "pose.txt"):
            p = parse_pose_txt(source / "pose.txt")
            return p, "pose.txt line i = frame i in numeric order (tx ty tz qx qy qz qw, camera-to-world)"
        return [], "no pose file"

    def intrinsics(self, source: Path, opts: IngestOptions) -> dict | None:
        return folder_intrinsics(source, opts)

    def decode(self, raw: np.ndarray, info: dict) -> tuple[np.ndarray, str]:
        """Raw 16-bit depth -> metres and the ``depth_units`` text."""
        scale = info["scale"]
        return raw.astype(np.float32) / np.float32(scale), f"value / {scale:g} = metres, 0 = invalid"

    def decide_scale(self, source: Path, opts: IngestOptions, intr: dict | None, depth_paths: list[Path]) -> dict:
        """The depth scale of this sequence and why (see :mod:`synthgen.ingest.scale`): ``--depth-scale``,
        else ``depth_scale`` in the intrinsics file, else the layout's documented unit
        (``scale_from_layout``), else inferred from the depth values. SUN-rotated depth is refused
        whatever the scale. Sets ``self.warnings`` when the scale was inferred."""
        from .. import scale as sc

        where = display_path(source)
        vals = sc.sample_raw(depth_paths, load_depth_int)
        rot = sc.rotation_evidence(vals)
        if rot:
            raise SourceError(sc.rotation_message(where, rot))
        file_scale = (intr or {}).get("extra", {}).get("depth_scale")
        if opts.depth_scale:
            return sc.stated(opts.depth_scale, "option", f"--depth-scale {opts.depth_scale:g}")
        if file_scale:
            return sc.stated(float(file_scale), "intrinsics_file",
                             f"depth_scale {float(file_scale):g} in {(intr or {}).get('source')}")
        if self.scale_from_layout:
            return sc.stated(self.default_scale, "layout",
                             f"{self.name} layout: documented raw / {self.default_scale:g}")
        fx = float(np.asarray(intr["K"])[0, 0]) if intr is not None else None
        decision = sc.infer_scale(vals, fx, where)
        self.warnings.append(f"depth scale not stated by the source: {decision['reason']}; every record says so "
                             f"under capture.depth_scale; pass --depth-scale to state it")
        return decision

    def scan(self, source: Path, opts: IngestOptions, exclude: Path | None = None) -> list[FrameRef]:
        subject = opts.subject_id or sanitize_token(source.resolve().name)
        intr = self.intrinsics(source, opts)
        pairs, junk = self.pairs(source)
        complete = [pr for pr in pairs if pr[0] is not None and pr[1] is not None]
        decision = self.decide_scale(source, opts, intr, [d for _, d in complete])
        scale = decision["value"]
        poses, pose_note = self.poses(source, len(complete))
        refs = []
        idx = 0
        for c, d in pairs:
            stem = (c or d).name.rsplit(".", 1)[0]
            key = f"{subject}-{sanitize_token(stem)}"
            files = {k: str(v) for k, v in (("rgb", c), ("depth", d)) if v is not None}
            err = None
            info = {"intr": intr_to_info(intr), "scale": float(scale), "scale_decision": decision,
                    "sequence": source.resolve().name,
                    "rel": {k: f"{Path(v).parent.name}/{Path(v).name}" for k, v in files.items()}}
            if c is None:
                err = ("orphan_depth", f"depth/{display_path(d.name)}: no colour image with the same name")
                key = f"{subject}-depth-{sanitize_token(stem)}"
            elif d is None:
                err = ("no_associated_depth", f"{display_path(c.parent.name)}/{display_path(c.name)}: "
                                              f"no depth image with the same name in depth/")
            else:
                missing = [f"{display_path(x.parent.name)}/{display_path(x.name)}" for x in (c, d) if not x.exists()
                           and not x.is_symlink()]
                if missing:
                    err = ("missing_file", f"{', '.join(missing)}: listed but not found")
                info["pose"] = poses[idx] if idx < len(poses) else None
                info["pose_note"] = pose_note if idx < len(poses) else f"{pose_note}; no pose for frame {idx}"
                idx += 1
            refs.append(FrameRef(key, subject, files, info, err))
        for j in junk:
            where = f"{display_path(j.parent.name)}/{display_path(j.name)}"
            err = (("unlisted_file", f"{where}: not listed in rgbd.match") if _is_image_name(j) else
                   ("not_an_image", f"{where}: not an image file name (expected one of {sorted(IMAGE_EXTS)})"))
            refs.append(FrameRef(f"{subject}-file-{sanitize_token(j.name)}", subject, {"file": str(j)}, {}, err))
        return refs

    def load(self, ref: FrameRef, opts: IngestOptions) -> LoadedFrame:
        info = ref.info
        rgb, _ = load_rgb8(Path(ref.files["rgb"]))
        raw, bits = load_depth_int(Path(ref.files["depth"]))
        scale = info["scale"]
        depth, units = self.decode(raw, info)
        h, w = rgb.shape[:2]
        K, ksrc = resolve_K(info.get("intr"), w, h, opts)
        capture = {
            "format": self.name,
            "sensor": self.sensor,
            "sequence": info["sequence"],
            "source_files": info["rel"],
            "depth_units": f"uint{bits}, {units}",
            "raw_to_metres": self.raw_to_metres(scale),
            "depth_scale": info.get("scale_decision"),
            "pose_note": info.get("pose_note"),
            "registration": self.registration,
        }
        return LoadedFrame(rgb=rgb, depth=depth, K=K, metric=True, capture=capture,
                           camera_to_world=None if info.get("pose") is None else np.asarray(info["pose"]),
                           sensor_range_m=self.sensor_range_m, depth_bits=bits, depth_raw_max=float(raw.max()),
                           expects_16bit=True, intrinsics_source=ksrc)


class RedwoodReader(KinectMMReader):
    name = "redwood"
    description = "Redwood/Open3D: color/*.jpg + depth/*.png (mm), camera_*.json, trajectory.log, rgbd.match"
    sensor = "PrimeSense/Kinect-style RGB-D camera (Redwood layout; depth in millimetres)"
    supersedes = ("kinect-mm",)
    scale_from_layout = True

    def detect(self, source: Path) -> bool:
        if not super().detect(source):
            return False
        if is_file(source / "rgbd.match") or is_file(source / "trajectory.log"):
            return True
        for c in source.glob("camera_*.json"):
            try:
                if "intrinsic_matrix" in c.read_text("utf-8", errors="replace"):
                    return True
            except OSError:
                continue
        return False

    def pairs(self, source: Path):
        match = source / "rgbd.match"
        if not is_file(match):
            return super().pairs(source)
        out, listed = [], set()
        for line in match.read_text("utf-8", errors="replace").splitlines():
            s = line.split()
            if len(s) != 2:
                continue
            d, c = source / s[0], source / s[1]
            out.append((c, d))
            listed.update({c.name, d.name})
        cdir = _color_dir(source)
        junk = []
        for folder in (cdir, source / "depth"):
            for p in _files(folder) if folder else []:
                if p.name not in listed:
                    junk.append(p)
        return out, junk

    def poses(self, source: Path, n: int):
        if is_file(source / "trajectory.log"):
            p = parse_trajectory_log(source / "trajectory.log")
            return [p.get(i) for i in range(n)], "trajectory.log (Redwood/Open3D log, camera-to-world)"
        return [], "no trajectory.log"
