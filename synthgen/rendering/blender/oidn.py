"""Intel Open Image Denoise on numpy arrays, through the OIDN library that ships inside ``bpy``.

Cycles' own denoiser only denoises the Combined pass; the one-pass relights
(:mod:`synthgen.rendering.blender.relight`) denoise each light group's pass themselves, with the
same library and the same settings Cycles uses for Combined (``integrator/denoiser_oidn.cpp`` in
Blender 4.5): the ``RT`` filter with ``hdr`` on and ``srgb`` off, the render's Denoising Albedo
and Denoising Normal passes as guides, ``cleanAux`` on for the prefilter modes ``none`` and
``accurate``, and for ``accurate`` the guides first denoised by their own ``RT`` filters.

The library is loaded with :mod:`ctypes` from the ``bpy`` package's ``lib`` folder (Blender has
already loaded it into the process, so this adds nothing). OIDN's C API is stable across 2.x.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from typing import Any

import numpy as np

_FORMAT_FLOAT3 = 3
_DEVICE_CPU = 1
QUALITY = {"fast": 4, "balanced": 5, "high": 6}

_lock = threading.Lock()
_lib: Any = None


def _find() -> str:
    """Path of Blender's ``libOpenImageDenoise`` (the main library, not its device/core parts)."""
    import bpy

    def main_lib(path: str) -> bool:
        base = os.path.basename(path)
        return base.startswith(("libOpenImageDenoise.", "OpenImageDenoise.")) or base == "OpenImageDenoise.dll"

    try:  # already mapped into this process by bpy (Linux)
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.split()[-1]
                if main_lib(path) and os.path.isfile(path):
                    return path
    except OSError:
        pass
    d = os.path.dirname(os.path.abspath(bpy.__file__))
    for _ in range(6):  # bpy/4.5/scripts/modules/bpy -> bpy/lib
        found = sorted(p for p in glob.glob(os.path.join(d, "lib", "*OpenImageDenoise*")) if main_lib(p))
        if found:
            return found[0]
        d = os.path.dirname(d)
    raise RuntimeError("Blender's OpenImageDenoise library was not found next to bpy")


def _library():
    global _lib
    with _lock:
        if _lib is None:
            lib = ctypes.CDLL(_find())
            vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
            lib.oidnNewDevice.restype = vp
            lib.oidnNewDevice.argtypes = [ctypes.c_int]
            lib.oidnSetDeviceInt.argtypes = [vp, cp, ctypes.c_int]
            lib.oidnSetDeviceBool.argtypes = [vp, cp, ctypes.c_bool]
            lib.oidnCommitDevice.argtypes = [vp]
            lib.oidnReleaseDevice.argtypes = [vp]
            lib.oidnGetDeviceError.restype = ctypes.c_int
            lib.oidnGetDeviceError.argtypes = [vp, ctypes.POINTER(cp)]
            lib.oidnNewFilter.restype = vp
            lib.oidnNewFilter.argtypes = [vp, cp]
            lib.oidnSetSharedFilterImage.argtypes = [vp, cp, vp, ctypes.c_int, sz, sz, sz, sz, sz]
            lib.oidnSetFilterBool.argtypes = [vp, cp, ctypes.c_bool]
            lib.oidnSetFilterInt.argtypes = [vp, cp, ctypes.c_int]
            lib.oidnCommitFilter.argtypes = [vp]
            lib.oidnExecuteFilter.argtypes = [vp]
            lib.oidnReleaseFilter.argtypes = [vp]
            _lib = lib
    return _lib


class Denoiser:
    """An OIDN CPU device with ``threads`` threads (0: all), reused for every :meth:`denoise`."""

    def __init__(self, threads: int = 0):
        lib = _library()
        self._lib = lib
        self._device = lib.oidnNewDevice(_DEVICE_CPU)
        if not self._device:
            raise RuntimeError("OpenImageDenoise: cannot create a CPU device")
        if threads > 0:
            lib.oidnSetDeviceInt(self._device, b"numThreads", int(threads))
        lib.oidnSetDeviceBool(self._device, b"setAffinity", False)
        lib.oidnCommitDevice(self._device)
        self._check()

    def _check(self) -> None:
        msg = ctypes.c_char_p()
        err = self._lib.oidnGetDeviceError(self._device, ctypes.byref(msg))
        if err != 0:
            raise RuntimeError(f"OpenImageDenoise error {err}: {(msg.value or b'').decode(errors='replace')}")

    def _run(self, images: dict[str, np.ndarray], output: np.ndarray, quality: str, hdr: bool | None,
             clean_aux: bool) -> None:
        lib = self._lib
        h, w = output.shape[:2]
        f = lib.oidnNewFilter(self._device, b"RT")
        try:
            for name, a in images.items():
                lib.oidnSetSharedFilterImage(f, name.encode(), a.ctypes.data, _FORMAT_FLOAT3, w, h, 0, 0, 0)
            lib.oidnSetSharedFilterImage(f, b"output", output.ctypes.data, _FORMAT_FLOAT3, w, h, 0, 0, 0)
            if hdr is not None:
                lib.oidnSetFilterBool(f, b"hdr", hdr)
                lib.oidnSetFilterBool(f, b"srgb", False)
            if clean_aux:
                lib.oidnSetFilterBool(f, b"cleanAux", True)
            lib.oidnSetFilterInt(f, b"quality", QUALITY[quality])
            lib.oidnCommitFilter(f)
            lib.oidnExecuteFilter(f)
            self._check()
        finally:
            lib.oidnReleaseFilter(f)

    def guides(self, albedo: np.ndarray | None, normal: np.ndarray | None, prefilter: str,
               quality: str) -> dict[str, np.ndarray]:
        """The guiding images as OIDN takes them (contiguous float32 (H, W, 3)); with ``prefilter``
        ``accurate`` each is first denoised by its own filter, as Cycles does."""
        out: dict[str, np.ndarray] = {}
        for name, a in (("albedo", albedo), ("normal", normal)):
            if a is None:
                continue
            a = np.ascontiguousarray(a, np.float32)
            if prefilter == "accurate":
                b = np.empty_like(a)
                self._run({name: a}, b, quality, None, False)
                a = b
            out[name] = a
        if "normal" in out and "albedo" not in out:
            raise ValueError("OIDN needs the albedo guide whenever the normal guide is given")
        return out

    def denoise(self, color: np.ndarray, guides: dict[str, np.ndarray], prefilter: str = "none",
                quality: str = "high") -> np.ndarray:
        """Denoise linear HDR ``color`` (H, W, 3) with the ``guides`` of :meth:`guides`; returns a new array."""
        c = np.ascontiguousarray(color, np.float32)
        out = np.empty_like(c)
        self._run({"color": c, **guides}, out, quality, True, prefilter in ("none", "accurate") and bool(guides))
        return out

    def close(self) -> None:
        if self._device:
            self._lib.oidnReleaseDevice(self._device)
            self._device = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
