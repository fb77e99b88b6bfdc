"""Readers, one per capture format, and format auto-detection.

Each reader is a :class:`Reader` with ``detect`` (cheap check of a SOURCE path), ``scan`` (list
frames as :class:`~synthgen.ingest.common.FrameRef`, no pixel decoding) and ``load`` (decode one
frame into a :class:`~synthgen.ingest.common.LoadedFrame`, raising
:class:`~synthgen.ingest.common.FrameError` for bad input).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..common import (FrameError, FrameRef, LoadedFrame, SourceError, K_for_size, default_K,
                      display_path, load_intrinsics_file, sanitize_token)
from ..options import IngestOptions

INTRINSICS_FILE_NAMES = ("camera_intrinsics.json", "intrinsics.json")


class Reader:
    """Base class of a capture-format reader."""

    name: str = ""
    description: str = ""
    supersedes: tuple[str, ...] = ()
    """Formats this one is a more specific case of: when both detect, this one wins."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        """Run-level warnings found by ``scan`` (e.g. an inferred depth scale), for the report."""

    def detect(self, source: Path) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def scan(self, source: Path, opts: IngestOptions, exclude: Path | None = None) -> list[FrameRef]:  # pragma: no cover
        raise NotImplementedError

    def load(self, ref: FrameRef, opts: IngestOptions) -> LoadedFrame:  # pragma: no cover
        raise NotImplementedError


def is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:
        return False


def is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except OSError:
        return False


def walk_files(root: Path, exclude: Path | None = None) -> Iterator[Path]:
    """All files under ``root`` (sorted, recursive), following folder symlinks at most once per
    real folder so symlink loops end. ``exclude`` (e.g. the ``--out`` folder) is skipped."""
    seen: set[str] = set()
    excl = os.path.realpath(exclude) if exclude else None
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            real = os.path.realpath(d)
        except OSError:
            continue
        if real in seen or real == excl:
            continue
        seen.add(real)
        try:
            entries = sorted(d.iterdir(), key=lambda p: p.name)
        except OSError:
            continue
        subdirs = []
        for e in entries:
            if is_dir(e):
                subdirs.append(e)
            else:
                yield e  # includes dangling links and link loops: the caller reports them
        stack.extend(reversed(subdirs))


def folder_intrinsics(source: Path, opts: IngestOptions, patterns: tuple[str, ...] = ("camera_*.json",)
                      ) -> dict | None:
    """The intrinsics that apply to a folder source: ``--intrinsics`` if given, else the first of
    :data:`INTRINSICS_FILE_NAMES` or ``patterns`` found in ``source``. None when there is none.
    Raises SourceError when the chosen file is unreadable."""
    if opts.intrinsics is not None:
        intr = load_intrinsics_file(opts.intrinsics)
        intr["source"] = f"--intrinsics {display_path(opts.intrinsics)}"
        return intr
    cands = [source / n for n in INTRINSICS_FILE_NAMES]
    for pat in patterns:
        cands += sorted(source.glob(pat))
    for c in cands:
        if is_file(c):
            intr = load_intrinsics_file(c)
            intr["source"] = f"intrinsics file {c.name}"
            return intr
    return None


def intr_to_info(intr: dict | None) -> dict | None:
    """JSON/pickle-friendly copy of an intrinsics dict for ``FrameRef.info``."""
    if intr is None:
        return None
    return {"K": np.asarray(intr["K"]).tolist(), "width": intr.get("width"), "height": intr.get("height"),
            "extra": intr.get("extra", {}), "source": intr.get("source")}


def resolve_K(info_intr: dict | None, width: int, height: int, opts: IngestOptions,
              fallback: tuple[np.ndarray, str] | None = None) -> tuple[np.ndarray | None, str | None]:
    """Pick the intrinsics for an image of ``width x height``: explicit/folder intrinsics, then
    ``fallback`` (from the file's own metadata), then the documented default when the user opted in
    with ``--default-intrinsics``. Returns ``(None, None)`` when there is none (the frame is then
    quarantined with ``intrinsics_missing``)."""
    if info_intr is not None:
        intr = dict(info_intr, K=np.asarray(info_intr["K"], dtype=float))
        return K_for_size(intr, width, height), info_intr.get("source")
    if fallback is not None:
        return fallback
    if opts.default_intrinsics:
        return default_K(width, height), "default (--default-intrinsics): 26 mm-equivalent lens, centred principal point"
    return None, None


def frame_key(subject: str, frame: str) -> str:
    return f"{subject}-{sanitize_token(frame)}"


SIDECAR_FILES = ("ATTRIBUTION.md", "LICENSE", "intrinsics.json", "camera_intrinsics.json")


def scan_photo_files(source: Path, opts: IngestOptions, exts: tuple[str, ...] | set[str],
                     kind: str) -> list[FrameRef]:
    """Frames of a single-file photo format (one photo = one frame): ``source`` is a photo or a
    folder of them. Keys are ``{folder}-{stem}``; files with another extension become frames with
    the ``not_an_image`` error (quarantined), sidecar files (:data:`SIDECAR_FILES`) are skipped."""
    folder = source if is_dir(source) else source.parent
    intr = folder_intrinsics(folder, opts, patterns=()) if is_dir(source) or opts.intrinsics else None
    fname = sanitize_token(folder.resolve().name)
    files = sorted(folder.iterdir(), key=lambda p: p.name) if is_dir(source) else [source]
    refs = []
    for p in files:
        if p.name in SIDECAR_FILES:
            continue
        stem = p.name.rsplit(".", 1)[0] if "." in p.name else p.name
        key = f"{fname}-{sanitize_token(stem)}"
        err = None if p.suffix.lower() in exts else (
            "not_an_image", f"{display_path(p.name)}: not a {kind} file")
        refs.append(FrameRef(key, opts.subject_id or key, {"photo": str(p)}, {"intr": intr_to_info(intr)}, err))
    return refs


def _registry() -> dict[str, Reader]:
    from .dynamic_depth import DynamicDepthReader
    from .exr import ExrReader
    from .gdepth import GDepthReader
    from .heic import HeicReader
    from .kinect import KinectMMReader, RedwoodReader
    from .azure_kinect import AzureKinectReader
    from .misc import DiodeReader, KittiReader, PairsReader
    from .nyu_raw import NyuRawReader
    from .sunrgbd import SunRgbdReader
    from .tum import TumReader

    readers = [TumReader(), KinectMMReader(), RedwoodReader(), SunRgbdReader(), NyuRawReader(), DiodeReader(),
               KittiReader(), ExrReader(), GDepthReader(), DynamicDepthReader(), HeicReader(), PairsReader(),
               AzureKinectReader()]
    return {r.name: r for r in readers}


def all_readers() -> dict[str, Reader]:
    """Readers by name, in the order of ``--format`` choices."""
    return _registry()


FORMAT_NAMES = ("tum", "kinect-mm", "redwood", "sunrgbd", "nyu-raw", "diode", "kitti", "exr", "gdepth",
                "dynamic-depth", "heic", "image-depth-pairs", "azure-kinect")


def detect_format(source: Path, requested: str = "auto") -> Reader:
    """Return the reader for ``source``.

    With ``requested != "auto"`` that reader is returned. Otherwise every reader's ``detect`` runs;
    readers superseded by a more specific match are dropped.

    Raises:
        SourceError: the source does not exist, is an empty folder, matches no format, or matches
            several (the message lists the candidates and asks for ``--format``).
    """
    readers = all_readers()
    if not source.exists():
        raise SourceError(f"{display_path(source)}: no such file or folder")
    if is_dir(source):
        try:
            empty = not any(True for _ in source.iterdir())
        except OSError as exc:
            raise SourceError(f"{display_path(source)}: cannot list folder ({exc.strerror or exc})") from exc
        if empty:
            raise SourceError(f"{display_path(source)}: folder is empty, no frames to ingest")
    if requested != "auto":
        if requested not in readers:
            raise SourceError(f"unknown format {requested!r}; choose one of {', '.join(FORMAT_NAMES)}")
        reader = readers[requested]
        if not _safe_detect(reader, source):
            others = [r.name for r in readers.values() if r.name != requested and _safe_detect(r, source)]
            raise SourceError(f"{display_path(source)}: cannot be read as --format {requested} "
                              f"({reader.description}); formats tried: {requested}"
                              + (f"; the source looks like: {', '.join(others)}" if others else
                                 f"; no format recognises it (known: {', '.join(FORMAT_NAMES)})"))
        return reader
    found = [r for r in readers.values() if _safe_detect(r, source)]
    superseded = {s for r in found for s in r.supersedes}
    found = [r for r in found if r.name not in superseded]
    if len(found) == 1:
        return found[0]
    if not found:
        raise SourceError(f"{display_path(source)}: no known capture format recognised; formats tried: "
                          f"{', '.join(FORMAT_NAMES)}; pass --format to force one")
    raise SourceError(f"{display_path(source)}: format is ambiguous, candidates: "
                      f"{', '.join(r.name for r in found)}; pass --format to choose")


def _safe_detect(reader: Reader, source: Path) -> bool:
    try:
        return bool(reader.detect(source))
    except (OSError, ValueError):
        return False


__all__ = ["Reader", "all_readers", "detect_format", "FORMAT_NAMES", "walk_files", "folder_intrinsics",
           "resolve_K", "frame_key", "FrameError", "SourceError"]
