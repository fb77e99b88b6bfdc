"""DIODE, KITTI depth and image + relative-depth pair readers.

DIODE (Vasiljevic et al. 2019, https://diode-dataset.org/): any folder tree holding
``NAME.png`` + ``NAME_depth.npy`` (float32 metres, ``(H, W)`` or ``(H, W, 1)``) +
``NAME_depth_mask.npy`` (validity, non-zero = valid). The subject is the folder path below SOURCE
(e.g. ``scene_00021/scan_00193``). Intrinsics: ``--intrinsics``/folder file, else DIODE's
published values (fx 886.81, fy 927.06, cx 512, cy 384) for 1024x768 images.

KITTI depth (Uhrig et al. 2017, the ``val_selection_cropped`` layout of the depth-completion
benchmark): ``image/D_image_F.png``, ``groundtruth_depth/D_groundtruth_depth_F.png`` (or
``velodyne_raw/D_velodyne_raw_F.png``) with uint16 value / 256 = metres, 0 = no measurement, and
``intrinsics/D_image_F.txt`` (9 numbers, K row-major). ``D`` is the drive (e.g.
``2011_09_26_drive_0002_sync``), the subject. LiDAR depth is sparse, so the holes check is skipped.

Image + relative-depth pairs (e.g. depthy / Lens Blur exports): ``NAME-image.jpg`` +
``NAME-depth.jpg``; the depth is an 8-bit image where bright = near (Lens Blur's RangeInverse
encoding with unknown near/far). It is decoded with the nominal ``relative_near``/``relative_far``
(default 1 and 10) as ``d = far*near / (far - v/255*(far - near))`` and marked relative.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..common import (IMAGE_EXTS, FrameError, FrameRef, LoadedFrame, K_from_exif, display_path, load_depth_int,
                      load_rgb8, make_K, open_image, read_bytes, sanitize_token)
from ..options import IngestOptions
from . import Reader, folder_intrinsics, intr_to_info, is_dir, is_file, resolve_K, walk_files

DIODE_K = (886.81, 927.06, 512.0, 384.0)


class DiodeReader(Reader):
    name = "diode"
    description = "DIODE: NAME.png + NAME_depth.npy (metres) + NAME_depth_mask.npy"

    def detect(self, source: Path) -> bool:
        if not is_dir(source):
            return False
        for i, p in enumerate(walk_files(source)):
            if p.name.endswith("_depth.npy"):
                return True
            if i > 5000:
                break
        return False

    def scan(self, source: Path, opts: IngestOptions, exclude: Path | None = None) -> list[FrameRef]:
        intr = folder_intrinsics(source, opts, patterns=())
        root = source.resolve()
        refs = []
        files = list(walk_files(source, exclude))
        used = set()
        for p in files:
            if not p.name.endswith("_depth.npy"):
                continue
            stem = p.name[: -len("_depth.npy")]
            img = next((p.parent / (stem + e) for e in (".png", ".jpg") if is_file(p.parent / (stem + e))), None)
            mask = p.parent / (stem + "_depth_mask.npy")
            rel_dir = p.parent.relative_to(source) if p.parent != source else Path()
            subject = opts.subject_id or sanitize_token("_".join((root.name,) + rel_dir.parts))
            key = f"{subject}-{sanitize_token(stem)}"
            fs = {"depth": str(p)}
            used.add(p)
            err = None
            if img is None:
                err = ("no_associated_rgb", f"{display_path(rel_dir / p.name)}: no {stem}.png next to it")
            else:
                fs["rgb"] = str(img)
                used.add(img)
            if is_file(mask):
                fs["mask"] = str(mask)
                used.add(mask)
            refs.append(FrameRef(key, subject, fs, {"intr": intr_to_info(intr), "rel_dir": str(rel_dir)}, err))
        for p in files:
            if p in used or p.name in ("intrinsics.json", "camera_intrinsics.json", "ATTRIBUTION.md"):
                continue
            if p.name.endswith("_depth_mask.npy"):
                err = ("orphan_file", f"{display_path(p.name)}: depth mask without a depth file")
            elif p.suffix.lower() in IMAGE_EXTS:
                err = ("no_associated_depth", f"{display_path(p.name)}: image without NAME_depth.npy")
            else:
                err = ("not_an_image", f"{display_path(p.name)}: not part of the DIODE layout")
            refs.append(FrameRef(f"{sanitize_token(root.name)}-file-{sanitize_token(p.name)}",
                                 opts.subject_id or sanitize_token(root.name), {"file": str(p)}, {}, err))
        return refs

    def load(self, ref: FrameRef, opts: IngestOptions) -> LoadedFrame:
        rgb, _ = load_rgb8(Path(ref.files["rgb"]))
        depth = _load_npy(Path(ref.files["depth"]), "depth")
        note = "depth_mask.npy applied (0 = invalid)"
        if "mask" in ref.files:
            m = _load_npy(Path(ref.files["mask"]), "depth_mask")
            if m.shape != depth.shape:
                raise FrameError("resolution_mismatch",
                                 f"{display_path(ref.files['mask'])}: mask {m.shape} != depth {depth.shape}")
            depth = np.where(m != 0, depth, 0).astype(np.float32)
        else:
            note = "no depth_mask.npy: pixels with depth <= 0 are invalid"
        h, w = rgb.shape[:2]
        fallback = None
        if (w, h) == (1024, 768):
            fallback = (make_K(*DIODE_K), "DIODE published intrinsics (1024x768)")
        K, ksrc = resolve_K(ref.info.get("intr"), w, h, opts, fallback)
        capture = {"format": self.name, "sensor": "FARO Focus S350 laser scanner (DIODE)",
                   "sequence": ref.info["rel_dir"] or ".",
                   "source_files": {k: Path(v).name for k, v in ref.files.items()},
                   "depth_units": "float32 metres (.npy); " + note, "raw_to_metres": 1.0}
        return LoadedFrame(rgb=rgb, depth=depth, K=K, metric=True, capture=capture, sensor_range_m=(0.5, 350.0),
                           depth_bits=32, intrinsics_source=ksrc)


def _load_npy(path: Path, role: str) -> np.ndarray:
    import io

    data = read_bytes(path, role)
    try:
        a = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise FrameError(f"unreadable_{role}", f"{display_path(path)}: not a readable .npy array ({exc})") from exc
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
        raise FrameError(f"unreadable_{role}", f"{display_path(path)}: expected a numeric (H, W) array, got "
                                               f"{a.dtype} {a.shape}")
    return a.astype(np.float32)


class KittiReader(Reader):
    name = "kitti"
    description = "KITTI depth (val_selection_cropped): image/, groundtruth_depth/ (value/256), intrinsics/"
    DEPTH_DIRS = (("groundtruth_depth", "_groundtruth_depth_"), ("velodyne_raw", "_velodyne_raw_"))

    def detect(self, source: Path) -> bool:
        return is_dir(source / "image") and any(is_dir(source / d) for d, _ in self.DEPTH_DIRS)

    def scan(self, source: Path, opts: IngestOptions, exclude: Path | None = None) -> list[FrameRef]:
        ddir, token = next((source / d, t) for d, t in self.DEPTH_DIRS if is_dir(source / d))
        images = sorted((source / "image").iterdir(), key=lambda p: p.name)
        depths = {p.name: p for p in sorted(ddir.iterdir(), key=lambda p: p.name)}
        intr = folder_intrinsics(source, opts, patterns=())
        refs = []
        for im in images:
            m = re.match(r"^(.*?)_image_(.*)$", im.name.rsplit(".", 1)[0])
            drive, frame = (m.group(1), m.group(2)) if m else (source.resolve().name, im.name.rsplit(".", 1)[0])
            subject = opts.subject_id or sanitize_token(drive)
            key = f"{subject}-{sanitize_token(frame)}"
            files = {"rgb": str(im)}
            err = None
            dname = im.name.replace("_image_", token, 1) if m else im.name
            if im.suffix.lower() not in IMAGE_EXTS:
                err = ("not_an_image", f"image/{display_path(im.name)}: not an image file name")
            elif dname in depths:
                files["depth"] = str(depths.pop(dname))
            else:
                err = ("no_associated_depth", f"image/{display_path(im.name)}: no {ddir.name}/{display_path(dname)}")
            kfile = source / "intrinsics" / (im.name.rsplit(".", 1)[0] + ".txt")
            if is_file(kfile):
                files["intrinsics"] = str(kfile)
            refs.append(FrameRef(key, subject, files, {"intr": intr_to_info(intr), "drive": drive}, err))
        for name, p in depths.items():
            refs.append(FrameRef(f"{sanitize_token(source.resolve().name)}-depth-{sanitize_token(name)}",
                                 opts.subject_id or sanitize_token(source.resolve().name), {"depth": str(p)}, {},
                                 ("orphan_depth", f"{ddir.name}/{display_path(name)}: no matching image/ file")))
        return refs

    def load(self, ref: FrameRef, opts: IngestOptions) -> LoadedFrame:
        rgb, _ = load_rgb8(Path(ref.files["rgb"]))
        raw, bits = load_depth_int(Path(ref.files["depth"]))
        scale = opts.depth_scale or 256.0
        depth = raw.astype(np.float32) / np.float32(scale)
        h, w = rgb.shape[:2]
        fallback = None
        if "intrinsics" in ref.files:
            try:
                vals = [float(x) for x in Path(ref.files["intrinsics"]).read_text().split()]
                Kf = np.array(vals, dtype=float).reshape(3, 3)
                if Kf[0, 0] <= 0 or Kf[1, 1] <= 0:
                    raise ValueError("non-positive focal length")
            except (OSError, ValueError) as exc:
                raise FrameError("bad_intrinsics", f"{display_path(ref.files['intrinsics'])}: expected 9 numbers "
                                                   f"(K row-major) ({exc})") from exc
            fallback = (Kf, f"KITTI intrinsics/{Path(ref.files['intrinsics']).name}")
        info_intr = ref.info.get("intr")
        K, ksrc = (resolve_K(info_intr, w, h, opts) if info_intr else resolve_K(None, w, h, opts, fallback))
        capture = {"format": self.name, "sensor": "Velodyne HDL-64E LiDAR projected into KITTI camera 2/3",
                   "sequence": ref.info["drive"], "sparse": True,
                   "source_files": {k: f"{Path(v).parent.name}/{Path(v).name}" for k, v in ref.files.items()},
                   "depth_units": f"uint{bits}, value / {scale:g} = metres, 0 = no measurement",
                   "raw_to_metres": 1.0 / scale,
                   "depth_scale": {"value": float(scale), "source": "option" if opts.depth_scale else "layout",
                                   "reason": (f"--depth-scale {scale:g}" if opts.depth_scale else
                                              "KITTI depth devkit: raw / 256")}}
        return LoadedFrame(rgb=rgb, depth=depth, K=K, metric=True, capture=capture, sensor_range_m=(0.5, 120.0),
                           depth_bits=bits, depth_raw_max=float(raw.max()), expects_16bit=True, intrinsics_source=ksrc)


class PairsReader(Reader):
    name = "image-depth-pairs"
    description = "NAME-image.jpg + NAME-depth.jpg, 8-bit relative depth (bright = near)"

    def detect(self, source: Path) -> bool:
        if is_dir(source):
            return any(p.name.lower().rsplit(".", 1)[0].endswith("-depth") for p in source.iterdir())
        return source.name.lower().rsplit(".", 1)[0].endswith(("-image", "-depth"))

    def scan(self, source: Path, opts: IngestOptions, exclude: Path | None = None) -> list[FrameRef]:
        folder = source if is_dir(source) else source.parent
        entries = sorted(folder.iterdir(), key=lambda p: p.name) if is_dir(source) else [
            folder / (source.name.rsplit(".", 1)[0].rsplit("-", 1)[0] + "-image" + source.suffix),
            folder / (source.name.rsplit(".", 1)[0].rsplit("-", 1)[0] + "-depth" + source.suffix)]
        images, depths, other = {}, {}, []
        for p in entries:
            base = p.name.rsplit(".", 1)[0] if "." in p.name else p.name
            if base.lower().endswith("-image"):
                images[base[:-6]] = p
            elif base.lower().endswith("-depth"):
                depths[base[:-6]] = p
            elif p.name != "ATTRIBUTION.md":
                other.append(p)
        fname = sanitize_token(folder.resolve().name)
        refs = []
        for name in sorted(set(images) | set(depths)):
            subject = opts.subject_id or f"{fname}-{sanitize_token(name)}"
            files = {k: str(v) for k, v in (("rgb", images.get(name)), ("depth", depths.get(name))) if v is not None}
            err = None
            if name not in depths:
                err = ("no_associated_depth", f"{display_path(images[name].name)}: no {display_path(name)}-depth image")
            elif name not in images:
                err = ("orphan_depth", f"{display_path(depths[name].name)}: no {display_path(name)}-image image")
            refs.append(FrameRef(f"{fname}-{sanitize_token(name)}", subject, files, {}, err))
        for p in other:
            refs.append(FrameRef(f"{fname}-file-{sanitize_token(p.name)}", opts.subject_id or fname, {"file": str(p)}, {},
                                 ("unpaired_file", f"{display_path(p.name)}: not a NAME-image / NAME-depth file")))
        return refs

    def load(self, ref: FrameRef, opts: IngestOptions) -> LoadedFrame:
        rgb, im = load_rgb8(Path(ref.files["rgb"]))
        dpath = Path(ref.files["depth"])
        dim = open_image(read_bytes(dpath, "depth"), display_path(dpath), "depth")
        if dim.mode in ("I;16", "I"):
            v = np.asarray(dim).astype(np.float32) / 65535.0
            bits = 16
        else:
            v = np.asarray(dim.convert("L")).astype(np.float32) / 255.0
            bits = 8
        near, far = opts.relative_near, opts.relative_far
        depth = (far * near / (far - v * (far - near))).astype(np.float32)
        h, w = rgb.shape[:2]
        K, ksrc = resolve_K(None, w, h, opts, K_from_exif(im, w, h) if opts.intrinsics is None else None)
        if opts.intrinsics is not None:
            from ..common import K_for_size, load_intrinsics_file
            K, ksrc = K_for_size(load_intrinsics_file(opts.intrinsics), w, h), "--intrinsics"
        capture = {"format": self.name, "sensor": "unknown (image + relative depth export)",
                   "source_files": {"rgb": Path(ref.files["rgb"]).name, "depth": dpath.name},
                   "depth_units": (f"relative: {bits}-bit image, bright = near, decoded as RangeInverse with nominal "
                                   f"near={near:g}, far={far:g} (unitless)"),
                   "raw_to_metres": None}
        return LoadedFrame(rgb=rgb, depth=depth, K=K, metric=False, capture=capture, depth_bits=bits,
                           intrinsics_source=ksrc,
                           depth_extra={"encoding": "RangeInverse (nominal)", "nominal_near": near, "nominal_far": far})
