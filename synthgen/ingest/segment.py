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


@functools.lru_cache(maxsize=1)
def model_info() -> dict[str, Any]:
    """Name, version, bundled file and its sha256 of the segmentation model (for the records)."""
    private_mpl_config()
    import mediapipe as mp

    from ..contract import sha256_file

    path = os.path.join(os.path.dirname(os.path.dirname(mp.__file__)), MODEL_REL)
    return {"source": "mediapipe", "model": "selfie_segmentation (general, 256x256 input)",
            "mediapipe_version": mp.__version__, "model_file": MODEL_REL,
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
