"""NYU Depth v2 raw dumps (Silberman et al., ECCV 2012; https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html).

Layout of one scene dump folder (e.g. ``bedroom_0001/``), as described by the dataset page and its
MATLAB toolbox::

    INDEX.txt                          the dump's file list, one name per line
    d-<time>-<frame>.pgm               Kinect depth: raw 11-bit disparity in a 16-bit binary PGM
    r-<time>-<frame>.ppm               Kinect colour: 640x480 8-bit binary PPM
    a-<time>-<frame>.dump              accelerometer records (not read)

``<time>`` is the capture time in seconds (Unix time, fractional); ``<frame>`` is the device's
frame counter. Each colour frame is paired with the depth frame nearest in time (greedy one-to-one
like TUM's ``associate.py``, within ``--max-time-diff``; default 0.02 s, below the 1/30 s frame
period); the toolbox's ``get_synched_frames.m`` pairs the same way.

**Depth.** metres = 351.3 / (1092.5 - d) (toolbox ``depth_rel2depth_abs.m``: ``depthParam1 = 351.3``,
``depthParam2 = 1092.5``). d = 2047 is the Kinect's "no reading"; d >= 1092 would give infinite or
negative depth and d values giving more than 10 m (the toolbox's ``maxDepth``) are marked invalid
(0) here, where the toolbox clamps them to 10 m. **Byte order:** binary PGM with maxval > 255 is
big-endian by the Netpbm specification, but the dumps in the wild are little-endian (byte-swapped
relative to their header; the toolbox calls ``swapbytes``). Both are handled: a valid disparity
image has every value <= 2047 (11 bits), so the reader takes the byte order under which that holds
and records which one it was; if neither or both do, the frame is quarantined
(``unreadable_depth``).

**Registration.** The raw depth is in the depth (IR) camera's frame; the colour is a different
camera. The depth is registered onto the colour grid with the toolbox's calibration
(``camera_params.m``, RGBDemo calibration): depth intrinsics fx 582.6245, fy 582.6910,
cx 313.0448, cy 238.4439; colour fx 518.8579, fy 519.4696, cx 325.5824, cy 253.7362 (the K stored);
depth-to-colour rotation ``R`` = the 9 published numbers read column-major, translation
``t = (t_x, t_y, t_z) = (0.025032, 0.000662, -0.000293)`` m (:mod:`synthgen.ingest.register`:
reprojection with a z-buffer). The toolbox's distortion coefficients are not applied (recorded as
``camera.distortion`` with ``applied_to_images: false``): the registration is exact for the
pinhole model, within a few pixels at the image corners for the real lenses.

No real raw NYU dump ships with synthgen: the test fixture is built from the published format
(see ``tests/fixtures/ingest/nyu_raw/ATTRIBUTION.md``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..common import (FrameError, FrameRef, LoadedFrame, display_path, load_rgb8, make_K, read_bytes,
                      sanitize_token)
from ..options import IngestOptions
from ..register import register_depth
from . import Reader, is_dir, is_file, resolve_K

NYU_PARAM1, NYU_PARAM2 = 351.3, 1092.5
NYU_INVALID = 2047
NYU_MAX_DEPTH_M = 10.0
K_DEPTH = (5.8262448167737955e+02, 5.8269103270988637e+02, 3.1304475870804731e+02, 2.3844389626620386e+02)
K_RGB = (5.1885790117450188e+02, 5.1946961112127485e+02, 3.2558244941119034e+02, 2.5373616633400465e+02)
_R_PUBLISHED = (9.9997798940829263e-01, 5.0518419386157446e-03, 4.3011152014118693e-03,
                -5.0359919480810989e-03, 9.9998051861143999e-01, -3.6879781309514218e-03,
                -4.3196624923060242e-03, 3.6662365748484798e-03, 9.9998394948385538e-01)
R_DEPTH_TO_RGB = np.array(_R_PUBLISHED, dtype=float).reshape(3, 3, order="F")
T_DEPTH_TO_RGB = np.array([2.5031875059141302e-02, 6.6238747008330102e-04, -2.9342312935846411e-04])
DIST_RGB = (2.0796615318809061e-01, -5.8613825163911781e-01, 7.2231363135888329e-04, 1.0479627195765181e-03,
            4.9856986684705107e-01)
NAME_RE = re.compile(r"^([dra])-(\d+(?:\.\d+)?)-(\d+)\.(pgm|ppm|dump)$")


def disparity_to_metres(d: np.ndarray) -> np.ndarray:
    """NYU raw Kinect disparity -> metres, 351.3 / (1092.5 - d); 0 where invalid (d = 2047, non-positive
    denominator, or beyond 10 m)."""
    d = d.astype(np.float64)
    with np.errstate(divide="ignore"):
        z = NYU_PARAM1 / (NYU_PARAM2 - d)
    ok = (d != NYU_INVALID) & (NYU_PARAM2 - d > 0) & (z <= NYU_MAX_DEPTH_M)
    return np.where(ok, z, 0.0).astype(np.float32)


def metres_to_disparity(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`disparity_to_metres` rounded to integers (2047 where z <= 0), for fixtures."""
    with np.errstate(divide="ignore"):
        d = np.rint(NYU_PARAM2 - NYU_PARAM1 / np.where(z > 0, z, np.nan))
    return np.where(np.isfinite(d), np.clip(d, 0, 2046), NYU_INVALID).astype(np.uint16)


def read_pgm16(data: bytes, name: str) -> tuple[np.ndarray, str]:
    """Binary 16-bit PGM (P5, maxval > 255) -> ``(uint16 array, byte-order note)``; the byte order
    is the one under which every value fits 11 bits (see the module doc).

    Raises:
        FrameError: ``not_an_image`` (not a P5 PGM), ``unreadable_depth`` (truncated, 8-bit, or
            byte order undecidable).
    """
    m = re.match(rb"P5\s+(?:#[^\n]*\n\s*)*(\d+)\s+(?:#[^\n]*\n\s*)*(\d+)\s+(?:#[^\n]*\n\s*)*(\d+)\s", data)
    if not m:
        raise FrameError("not_an_image", f"{name}: not a binary PGM (P5) file")
    w, h, maxval = (int(x) for x in m.groups())
    if maxval <= 255:
        raise FrameError("unreadable_depth", f"{name}: 8-bit PGM (maxval {maxval}), expected 16-bit disparity")
    body = data[m.end():]
    if len(body) < w * h * 2:
        raise FrameError("unreadable_depth", f"{name}: truncated PGM ({len(body)} of {w * h * 2} data bytes)")
    big = np.frombuffer(body[: w * h * 2], ">u2").reshape(h, w)
    little = big.byteswap()
    ok_big, ok_little = int(big.max()) <= 2047, int(little.max()) <= 2047
    if ok_big and not ok_little:
        return big.astype(np.uint16), "big-endian, as the PGM header says"
    if ok_little and not ok_big:
        return little.astype(np.uint16), "little-endian: byte-swapped relative to the PGM header (NYU raw dumps)"
    raise FrameError("unreadable_depth", f"{name}: cannot tell the byte order: "
                                         + ("both orders" if ok_big else "neither order") + " give 11-bit values")


class NyuRawReader(Reader):
    name = "nyu-raw"
    description = "NYU Depth v2 raw dump: d-*.pgm Kinect disparity, r-*.ppm colour, INDEX.txt; registered to colour"

    def detect(self, source: Path) -> bool:
        if not is_dir(source):
            return False
        if is_file(source / "INDEX.txt"):
            return True
        return any(NAME_RE.match(p.name) and p.name.startswith("d-") for p in source.iterdir())

    def scan(self, source: Path, opts: IngestOptions, exclude: Path | None = None) -> list[FrameRef]:
        from .tum import associate

        subject = opts.subject_id or sanitize_token(source.resolve().name)
        listed: list[str] | None = None
        if is_file(source / "INDEX.txt"):
            listed = [ln.strip() for ln in (source / "INDEX.txt").read_text("utf-8", errors="replace").splitlines()
                      if ln.strip() and not ln.startswith("#")]
        present = {p.name for p in source.iterdir()}
        names = listed if listed is not None else sorted(present)
        refs: list[FrameRef] = []
        rgb, dep = [], []
        for n in names:
            m = NAME_RE.match(n)
            if not m:
                continue
            kind, t = m.group(1), float(m.group(2))
            if n not in present:
                refs.append(FrameRef(f"{subject}-missing-{sanitize_token(n)}", subject, {"file": str(source / n)}, {},
                                     ("missing_file", f"{display_path(n)}: listed in INDEX.txt but not present")))
                continue
            if kind == "r":
                rgb.append((t, n))
            elif kind == "d":
                dep.append((t, n))
        if listed is not None:
            for n in sorted(present - set(listed) - {"INDEX.txt", "ATTRIBUTION.md"}):
                if NAME_RE.match(n) and not n.startswith("a-"):
                    refs.append(FrameRef(f"{subject}-unlisted-{sanitize_token(n)}", subject, {"file": str(source / n)},
                                         {}, ("unlisted_file", f"{display_path(n)}: not listed in INDEX.txt")))
        rgb.sort()
        dep.sort()
        pairs = associate([t for t, _ in rgb], [t for t, _ in dep], opts.max_time_diff)
        used = set()
        for i, (t, n) in enumerate(rgb):
            key = f"{subject}-{sanitize_token(n[2:].rsplit('.', 1)[0])}"
            files = {"rgb": str(source / n)}
            err = None
            info = {"t_rgb": t, "sequence": source.resolve().name}
            if i in pairs:
                td, dn = dep[pairs[i]]
                used.add(pairs[i])
                files["depth"] = str(source / dn)
                info.update(t_depth=td, skew=abs(t - td))
            else:
                err = ("no_associated_depth", f"{display_path(n)}: no d-*.pgm within {opts.max_time_diff} s")
            refs.append(FrameRef(key, subject, files, info, err))
        for j, (t, n) in enumerate(dep):
            if j not in used:
                refs.append(FrameRef(f"{subject}-depth-{sanitize_token(n[2:].rsplit('.', 1)[0])}", subject,
                                     {"depth": str(source / n)}, {},
                                     ("orphan_depth", f"{display_path(n)}: no r-*.ppm within {opts.max_time_diff} s")))
        return refs

    def load(self, ref: FrameRef, opts: IngestOptions) -> LoadedFrame:
        rgb, _ = load_rgb8(Path(ref.files["rgb"]))
        dpath = Path(ref.files["depth"])
        disp, order = read_pgm16(read_bytes(dpath, "depth"), display_path(dpath.name))
        z_d = disparity_to_metres(disp)
        h, w = rgb.shape[:2]
        K_c = make_K(*K_RGB)
        if (w, h) != (640, 480) or disp.shape != (480, 640):
            raise FrameError("resolution_mismatch", f"NYU raw frames are 640x480; colour {w}x{h}, depth "
                                                    f"{disp.shape[1]}x{disp.shape[0]}")
        depth = register_depth(z_d, make_K(*K_DEPTH), K_c, R_DEPTH_TO_RGB, T_DEPTH_TO_RGB, (h, w))
        K, ksrc = resolve_K(None, w, h, opts, (K_c, "NYU Depth v2 toolbox camera_params.m (colour camera)"))
        skew = ref.info["skew"]
        capture = {"format": self.name, "sensor": "Microsoft Kinect v1 (NYU Depth v2 raw dump)",
                   "sequence": ref.info["sequence"],
                   "source_files": {"rgb": Path(ref.files["rgb"]).name, "depth": dpath.name},
                   "depth_units": "11-bit Kinect disparity d in a 16-bit PGM; metres = 351.3 / (1092.5 - d); "
                                  "d = 2047, d >= 1092 and depth > 10 m are invalid",
                   "raw_to_metres": None,
                   "depth_scale": {"value": None, "source": "layout",
                                   "reason": "NYU Depth v2 toolbox depth_rel2depth_abs.m: 351.3 / (1092.5 - d)"},
                   "pgm_byte_order": order,
                   "timestamps": {"rgb": ref.info["t_rgb"], "depth": ref.info["t_depth"], "skew_s": skew},
                   "registration": ("depth reprojected from the depth camera onto the colour camera with the NYU "
                                    "toolbox calibration (camera_params.m), z-buffered; lens distortion not applied")}
        extra = {"distortion": {"model": "opencv k1 k2 p1 p2 k3", "coeffs": list(DIST_RGB), "applied_to_images": False}}
        return LoadedFrame(rgb=rgb, depth=depth, K=K, metric=True, capture=capture, sensor_range_m=(0.3, 10.0),
                           depth_bits=16, intrinsics_source=ksrc, camera_extra=extra, timestamp_skew_s=skew)
