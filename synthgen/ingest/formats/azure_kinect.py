"""Azure Kinect recordings (``k4arecorder`` ``.mkv``), read with PyAV.

Recording format (Microsoft, "Azure Kinect Sensor SDK record file format"): a Matroska file whose
video tracks are named ``COLOR`` (MJPEG, NV12 or YUY2 by mode), ``DEPTH`` and ``IR`` (FourCC
``b16g``: 16-bit greyscale, big-endian; depth in millimetres, 0 = invalid), tagged
``K4A_DEPTH_MODE`` etc., and an attachment ``calibration.json`` holding the device's raw
calibration (``CalibrationInformation.Cameras[]``: ``Purpose`` ``CALIBRATION_CameraPurposeDepth``
/ ``...PhotoVideo``, ``Intrinsics.ModelParameters`` = ``cx cy fx fy k1..k6 codx cody p2 p1``
normalised by the sensor size with (0, 0) at the top-left *corner*, ``Rt`` in millimetres).

**What is ingested: the depth camera's own view.** Depth is not registered to the colour camera
(that needs the full Brown-Conrady model of both lenses); instead each sample is the depth image
with the **IR image of the same capture as greyscale colour** (same sensor, so registered exactly),
and ``K`` is the depth camera's mode-specific pinhole intrinsics, computed as the Sensor SDK's
``transformation_get_mode_specific_camera_calibration`` does: ``f = f_n * W_b``,
``c = c_n * W_b - crop_offset - 0.5`` with (binned width/height, crop offset) per depth mode:
NFOV_UNBINNED (1024x1024, 192, 180) -> 640x576; NFOV_2X2BINNED (512x512, 96, 90) -> 320x288;
WFOV_UNBINNED (1024x1024, 0, 0) -> 1024x1024; WFOV_2X2BINNED (512x512, 0, 0) -> 512x512. The lens
distortion parameters are recorded, not applied. The COLOR track is never paired with the depth.
The IR image (16-bit, linear in received light) is stored as linear grey, divided by its 99.5th
percentile and clipped to 1 (``capture.ir_white`` records the divisor). Depth is planar z in
millimetres (metres = value / 1000), a unit fixed by the format.

Frames: one per DEPTH packet; the IR packet with the same timestamp completes it (the SDK writes
both from one capture). Missing IR -> ``no_associated_rgb``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..common import FrameError, FrameRef, LoadedFrame, SourceError, display_path, make_K, sanitize_token
from ..options import IngestOptions
from . import Reader, is_dir, resolve_K

MKV_EXTS = (".mkv",)
DEPTH_MODES = {  # binned calibration resolution, crop offset, output resolution (Sensor SDK)
    "NFOV_UNBINNED": ((1024, 1024), (192, 180), (640, 576)),
    "NFOV_2X2BINNED": ((512, 512), (96, 90), (320, 288)),
    "WFOV_UNBINNED": ((1024, 1024), (0, 0), (1024, 1024)),
    "WFOV_2X2BINNED": ((512, 512), (0, 0), (512, 512)),
}
PARAM_NAMES = ("cx", "cy", "fx", "fy", "k1", "k2", "k3", "k4", "k5", "k6", "codx", "cody", "p2", "p1")


def _tracks(container) -> dict[str, object]:
    out = {}
    for s in container.streams.video:
        title = (s.metadata or {}).get("title") or (s.metadata or {}).get("TITLE")
        if title:
            out[title.upper()] = s
    return out


def read_calibration(container, name: str) -> dict:
    """The ``calibration.json`` attachment as a dict. Raises SourceError naming the file."""
    for s in container.streams.attachments:
        if (s.name or "").lower() == "calibration.json" or (s.metadata or {}).get("K4A_CALIBRATION_FILE"):
            try:
                return json.loads(bytes(s.data).decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise SourceError(f"{name}: calibration.json attachment is not JSON ({exc})") from exc
    raise SourceError(f"{name}: no calibration.json attachment (not an Azure Kinect recording?)")


def depth_camera_K(calib: dict, mode: str, name: str) -> tuple[np.ndarray, dict]:
    """Mode-specific pinhole K of the depth camera (see the module doc) and the raw parameters."""
    cams = (calib.get("CalibrationInformation") or {}).get("Cameras") or []
    cam = next((c for c in cams if "Depth" in str(c.get("Purpose", ""))), None)
    if cam is None or mode not in DEPTH_MODES:
        raise SourceError(f"{name}: no depth camera calibration for depth mode {mode!r}")
    p = [float(x) for x in cam["Intrinsics"]["ModelParameters"]]
    params = dict(zip(PARAM_NAMES, p))
    (bw, bh), (ox, oy), _ = DEPTH_MODES[mode]
    K = make_K(params["fx"] * bw, params["fy"] * bh, params["cx"] * bw - ox - 0.5, params["cy"] * bh - oy - 0.5)
    return K, {"model": cam["Intrinsics"].get("ModelType"), "params": params}


class AzureKinectReader(Reader):
    name = "azure-kinect"
    description = "Azure Kinect .mkv (PyAV): DEPTH + IR tracks in the depth camera's view, calibration.json"

    def detect(self, source: Path) -> bool:
        if is_dir(source):
            return any(p.suffix.lower() in MKV_EXTS for p in source.iterdir())
        return source.suffix.lower() in MKV_EXTS

    def scan(self, source: Path, opts: IngestOptions, exclude: Path | None = None) -> list[FrameRef]:
        import av

        files = (sorted(p for p in source.iterdir() if p.suffix.lower() in MKV_EXTS) if is_dir(source) else [source])
        refs = []
        for f in files:
            name = display_path(f.name)
            subject = opts.subject_id or sanitize_token(f.name.rsplit(".", 1)[0])
            try:
                container = av.open(str(f))
            except Exception as exc:
                raise SourceError(f"{name}: cannot open as Matroska ({exc})") from exc
            with container:
                tracks = _tracks(container)
                if "DEPTH" not in tracks:
                    raise SourceError(f"{name}: no DEPTH track (tracks: {', '.join(tracks) or 'none named'})")
                calib = read_calibration(container, name)
                dmode = (tracks["DEPTH"].metadata or {}).get("K4A_DEPTH_MODE", "NFOV_UNBINNED")
                K, lens = depth_camera_K(calib, dmode, name)
                wanted = {tracks["DEPTH"].index: "depth"}
                if "IR" in tracks:
                    wanted[tracks["IR"].index] = "ir"
                by_pts: dict[int, dict[str, int]] = {}
                for pkt in container.demux([container.streams[i] for i in wanted]):
                    if pkt.pts is None or pkt.size == 0:
                        continue
                    by_pts.setdefault(int(pkt.pts), {})[wanted[pkt.stream.index]] = int(pkt.pts)
                tb = float(tracks["DEPTH"].time_base)
            common = {"K": K.tolist(), "lens": lens, "depth_mode": dmode, "time_base": tb,
                      "tracks": sorted(tracks), "file": f.name}
            for pts in sorted(by_pts):
                have = by_pts[pts]
                if "depth" not in have:
                    continue
                err = None if "ir" in have else ("no_associated_rgb", f"{name}: no IR frame at pts {pts}")
                refs.append(FrameRef(f"{subject}-{pts:012d}", subject, {"mkv": str(f)},
                                     dict(common, pts=pts), err))
        return refs

    def _frame(self, container, stream, pts: int, name: str) -> np.ndarray:
        w, h = stream.codec_context.width, stream.codec_context.height
        container.seek(pts, stream=stream, any_frame=True, backward=True)
        for pkt in container.demux(stream):
            if pkt.pts is None:
                continue
            if int(pkt.pts) == pts:
                data = bytes(pkt)
                if len(data) != w * h * 2:
                    raise FrameError("unreadable_depth", f"{name}: {stream.metadata.get('title')} packet at {pts} has "
                                                         f"{len(data)} bytes, expected {w * h * 2} (b16g {w}x{h})")
                return np.frombuffer(data, ">u2").reshape(h, w).astype(np.uint16)
            if int(pkt.pts) > pts:
                break
        raise FrameError("unreadable_depth", f"{name}: no {stream.metadata.get('title')} frame at pts {pts}")

    def load(self, ref: FrameRef, opts: IngestOptions) -> LoadedFrame:
        import av

        path = Path(ref.files["mkv"])
        name = display_path(path.name)
        info = ref.info
        with av.open(str(path)) as container:
            tracks = _tracks(container)
            raw = self._frame(container, tracks["DEPTH"], info["pts"], name)
            ir = self._frame(container, tracks["IR"], info["pts"], name)
        depth = raw.astype(np.float32) / np.float32(1000.0)
        irf = ir.astype(np.float32)
        white = float(np.percentile(irf, 99.5)) or 1.0
        grey = np.clip(irf / white, 0.0, 1.0)
        rgb = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
        h, w = depth.shape
        ksrc_note = f"Azure Kinect calibration.json, depth camera, {info['depth_mode']} mode-specific (Sensor SDK)"
        K, ksrc = resolve_K(None, w, h, opts, (np.asarray(info["K"]), ksrc_note))
        capture = {"format": self.name, "sensor": "Microsoft Azure Kinect DK (depth camera, ToF)",
                   "sequence": path.name, "source_files": {"mkv": path.name},
                   "view": "depth camera's own view: colour = the IR image of the same capture (greyscale); the COLOR "
                           "track is not used (not registered to the depth)",
                   "depth_units": "b16g uint16 millimetres (planar z), value / 1000 = metres, 0 = invalid",
                   "raw_to_metres": 0.001,
                   "depth_scale": {"value": 1000.0, "source": "layout",
                                   "reason": "Azure Kinect recording format: DEPTH track in millimetres"},
                   "depth_mode": info["depth_mode"], "tracks": info["tracks"],
                   "timestamps": {"pts": info["pts"], "seconds": info["pts"] * info["time_base"]},
                   "ir_white": white,
                   "rgb_source": "IR track, linear grey = IR / ir_white (99.5th percentile), clipped to 1",
                   "registration": "depth and IR come from the same sensor: registered exactly"}
        extra = {"distortion": {"model": info["lens"]["model"], "coeffs": info["lens"]["params"],
                                "applied_to_images": False}}
        return LoadedFrame(rgb=rgb, depth=depth, K=K, metric=True, capture=capture, rgb_linear=True,
                           sensor_range_m=(0.2, 10.0),
                           depth_bits=16, depth_raw_max=float(raw.max()), expects_16bit=True,
                           intrinsics_source=ksrc, camera_extra=extra)
