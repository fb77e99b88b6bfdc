"""Float depth EXR.

Layout: a folder (or one file) of ``NAME.exr`` files. Each holds the depth in a float channel
``Z`` (or ``depth.Z``, ``depth``, ``D``; a file with a single channel uses it), metres = value /
``depth_scale`` (default 1, i.e. the EXR holds metres), non-finite or <= 0 = invalid. The colour
is either the EXR's own ``R``, ``G``, ``B`` channels (linear, scene-referred, stored as is) or,
when those are absent, a sibling ``NAME.png``/``NAME.jpg`` (8-bit sRGB). Intrinsics come from
``--intrinsics`` or an ``intrinsics.json`` / ``camera_intrinsics.json`` in the folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...exr import ExrError, read_exr
from ..common import (FrameError, FrameRef, LoadedFrame, check_regular_file, problem_code, display_path, load_rgb8,
                      sanitize_token)
from ..options import IngestOptions
from . import Reader, folder_intrinsics, intr_to_info, is_dir, is_file, resolve_K

DEPTH_CHANNELS = ("Z", "depth.Z", "depth", "D", "depth.V")  # a single channel of any name (e.g. Y) is depth too


class ExrReader(Reader):
    name = "exr"
    description = "float depth EXR (channel Z, metres), colour from R,G,B or sibling PNG/JPEG"

    def detect(self, source: Path) -> bool:
        if is_dir(source):
            return any(p.suffix.lower() == ".exr" for p in source.iterdir())
        return source.suffix.lower() == ".exr"

    def scan(self, source: Path, opts: IngestOptions, exclude: Path | None = None) -> list[FrameRef]:
        folder = source if is_dir(source) else source.parent
        intr = folder_intrinsics(folder, opts, patterns=())
        fname = sanitize_token(folder.resolve().name)
        subject = opts.subject_id or fname
        entries = sorted(folder.iterdir(), key=lambda p: p.name) if is_dir(source) else [source]
        exrs = [p for p in entries if p.suffix.lower() == ".exr"]
        stems = {p.name[:-4] for p in exrs}
        refs, used = [], set()
        for p in exrs:
            stem = p.name[:-4]
            files = {"depth": str(p)}
            used.add(p.name)
            for ext in (".png", ".jpg", ".jpeg"):
                if is_file(folder / (stem + ext)):
                    files["rgb"] = str(folder / (stem + ext))
                    used.add(stem + ext)
                    break
            refs.append(FrameRef(f"{subject}-{sanitize_token(stem)}", subject, files, {"intr": intr_to_info(intr)}))
        if is_dir(source):
            for p in entries:
                if p.name in used or p.name in ("ATTRIBUTION.md", "intrinsics.json", "camera_intrinsics.json"):
                    continue
                if p.name.rsplit(".", 1)[0] in stems:
                    continue
                refs.append(FrameRef(f"{subject}-file-{sanitize_token(p.name)}", subject, {"file": str(p)}, {},
                                     ("unpaired_file", f"{display_path(p.name)}: no NAME.exr depth for this file")))
        return refs

    def load(self, ref: FrameRef, opts: IngestOptions) -> LoadedFrame:
        path = Path(ref.files["depth"])
        problem = check_regular_file(path)
        if problem:
            raise FrameError(problem_code(problem[0], "depth"), problem[1])
        try:
            chans = read_exr(path)
        except ExrError as exc:
            raise FrameError("unreadable_depth", str(exc)) from exc
        dname = next((c for c in DEPTH_CHANNELS if c in chans), None)
        if dname is None and len(chans) == 1:
            dname = next(iter(chans))
        if dname is None:
            raise FrameError("no_depth", f"{display_path(path.name)}: no depth channel (looked for "
                                         f"{', '.join(DEPTH_CHANNELS)}; found {', '.join(sorted(chans))})")
        scale = opts.depth_scale or 1.0
        raw = chans[dname].astype(np.float32)
        depth = np.where(np.isfinite(raw) & (raw > 0), raw / np.float32(scale), 0).astype(np.float32)
        linear = False
        if "rgb" in ref.files:
            rgb, _ = load_rgb8(Path(ref.files["rgb"]))
            rgb_note = f"sibling {Path(ref.files['rgb']).name} (8-bit sRGB)"
        elif all(c in chans for c in "RGB"):
            rgb = np.stack([chans[c].astype(np.float32) for c in "RGB"], -1)
            rgb = np.nan_to_num(rgb, nan=0.0, posinf=0.0, neginf=0.0)
            linear = True
            rgb_note = "EXR R,G,B channels (linear, stored as is)"
        else:
            raise FrameError("no_associated_rgb", f"{display_path(path.name)}: no R,G,B channels and no sibling "
                                                  f"{display_path(path.name[:-4])}.png/.jpg")
        h, w = depth.shape
        K, ksrc = resolve_K(ref.info.get("intr"), w, h, opts)
        capture = {"format": self.name, "sensor": "unknown (float depth EXR)",
                   "source_files": {k: Path(v).name for k, v in ref.files.items()},
                   "depth_units": f"float{32 if raw.dtype == np.float32 else 16} channel {dname}, value / {scale:g} = metres",
                   "raw_to_metres": 1.0 / scale, "rgb_source": rgb_note,
                   "depth_scale": {"value": float(scale), "source": "option" if opts.depth_scale else "layout",
                                   "reason": (f"--depth-scale {scale:g}" if opts.depth_scale else
                                              "exr layout: float depth in metres (documented default 1)")}}
        return LoadedFrame(rgb=rgb, depth=depth, K=K, metric=True, capture=capture, rgb_linear=linear,
                           depth_bits=32, intrinsics_source=ksrc)
