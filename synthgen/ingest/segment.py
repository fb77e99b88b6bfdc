"""Person masks with MediaPipe selfie segmentation.

mediapipe 0.10.14 bundles the model inside the wheel
(``mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite``, the "general" 256x256 model),
so nothing is downloaded at run time. The output is a soft person probability in [0, 1] at the
input resolution. One segmenter is created lazily per process.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

_SEGMENTER = None


def private_mpl_config() -> None:
    """mediapipe imports matplotlib, which writes a font cache to ``$MPLCONFIGDIR`` or
    ``~/.config/matplotlib`` / ``~/.cache/matplotlib``. Ingest must not write outside ``--out``:
    :func:`synthgen.ingest.pipeline.ingest` points MPLCONFIGDIR into ``--out`` (removed after the
    run); a process that imports mediapipe here without it (a Ray worker, direct use) gets a private
    temporary directory, removed when the process exits."""
    import sys

    if os.environ.get("MPLCONFIGDIR") or "matplotlib" in sys.modules:
        return
    import atexit
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="synthgen-mplconfig-")
    os.environ["MPLCONFIGDIR"] = d
    atexit.register(shutil.rmtree, d, True)
MODEL_REL = "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"


def _site_root() -> str:
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    return os.path.dirname(os.path.dirname(spec.origin)) if spec and spec.origin else ""


def _mp_version() -> str:
    from importlib.metadata import version

    return version("mediapipe")


@functools.lru_cache(maxsize=1)
def model_info() -> dict[str, Any]:
    """Name, version, bundled file and its sha256 of the segmentation model (for the records).
    Reads the installed package's metadata without importing mediapipe (which imports matplotlib)."""
    from ..contract import sha256_file

    path = os.path.join(_site_root(), MODEL_REL)
    return {"source": "mediapipe", "model": "selfie_segmentation (general, 256x256 input)",
            "mediapipe_version": _mp_version(), "model_file": MODEL_REL,
            "model_sha256": sha256_file(path) if os.path.exists(path) else None,
            "api": "mediapipe.solutions.selfie_segmentation, model_selection=0"}


def person_mask(rgb8: np.ndarray) -> np.ndarray:
    """Soft person mask.

    Args:
        rgb8: ``(H, W, 3) uint8`` sRGB image.

    Returns:
        ``(H, W) float32`` in [0, 1] (probability of "person").
    """
    global _SEGMENTER
    if _SEGMENTER is None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        private_mpl_config()
        import mediapipe as mp

        _SEGMENTER = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
    res = _SEGMENTER.process(np.ascontiguousarray(rgb8))
    m = res.segmentation_mask
    if m is None:
        return np.zeros(rgb8.shape[:2], np.float32)
    return np.clip(np.asarray(m, dtype=np.float32), 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# person presence (issue 14 item 4): the selfie segmenter answers "which pixels would be the
# person" even when there is none (a desk, a dog), so every frame is first checked by detectors.

_FACE = None
_POSE = None
FACE_MODEL_REL = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
POSE_MODEL_RELS = ("mediapipe/modules/pose_detection/pose_detection.tflite",
                   "mediapipe/modules/pose_landmark/pose_landmark_full.tflite")
POSE_SCORE = 0.5
"""Evidence credited to a BlazePose detection: its acceptance threshold (``min_detection_confidence``),
a lower bound of the detector's score, which the legacy API does not return."""


@functools.lru_cache(maxsize=1)
def detector_info() -> dict[str, Any]:
    """Names, files and sha256 of the bundled person/face detectors (for the records)."""
    from ..contract import sha256_file

    root = _site_root()

    def sha(rel):
        p = os.path.join(root, rel)
        return sha256_file(p) if os.path.exists(p) else None

    return {"face": {"api": "mediapipe.solutions.face_detection, model_selection=0 (short range)",
                     "model_file": FACE_MODEL_REL, "model_sha256": sha(FACE_MODEL_REL)},
            "pose": {"api": f"mediapipe.solutions.pose, static_image_mode, model_complexity=1, "
                            f"min_detection_confidence={POSE_SCORE}",
                     "model_files": list(POSE_MODEL_RELS), "model_sha256": [sha(r) for r in POSE_MODEL_RELS]},
            "mediapipe_version": _mp_version(),
            "combination": "person_present = 1 - (1 - face)(1 - pose): face = top face-detection score, pose = "
                           f"{POSE_SCORE} when BlazePose finds a body (its acceptance threshold), else 0; the pose "
                           "model runs only when it can change the verdict"}


def person_evidence(rgb8: np.ndarray, min_confidence: float) -> dict[str, Any]:
    """Person-presence evidence for an ``(H, W, 3) uint8`` sRGB image.

    Returns ``{"person_present": p, "face_score": f, "pose_detected": bool | None}`` with
    ``p = 1 - (1 - f)(1 - POSE_SCORE * pose)``. The pose model (the expensive one) runs only when its
    answer can move ``p`` across ``min_confidence`` (``pose_detected`` is None otherwise).
    """
    global _FACE, _POSE
    os.environ.setdefault("GLOG_minloglevel", "2")
    private_mpl_config()
    import mediapipe as mp

    img = np.ascontiguousarray(rgb8)
    if _FACE is None:
        _FACE = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.3)
    res = _FACE.process(img)
    face = max((float(d.score[0]) for d in (res.detections or [])), default=0.0)
    pose = None
    if face < min_confidence <= 1 - (1 - face) * (1 - POSE_SCORE):
        if _POSE is None:
            _POSE = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False,
                                           min_detection_confidence=POSE_SCORE)
        pose = _POSE.process(img).pose_landmarks is not None
    p = 1 - (1 - face) * (1 - (POSE_SCORE if pose else 0.0))
    return {"person_present": round(float(p), 4), "face_score": round(face, 4), "pose_detected": pose}
