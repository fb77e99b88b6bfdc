"""Depth EXRs read back exactly in the readers people use: OpenEXR, OpenCV, Blender, OpenImageIO
(`oiiotool`), imageio. Format 1's lone `Z` channel was read as zeros by OpenCV (kept here as the
control that shows the test can fail)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import OpenEXR
import pytest

from synthgen.contract import read_sample, write_sample
from synthgen.exr import DEPTH_CHANNEL, write_exr

H, W = 6, 9


@pytest.fixture(scope="module")
def depth_file(tmp_path_factory):
    """A real sample written through the contract: depth with a background 0, fractional metres."""
    store = tmp_path_factory.mktemp("readers")
    rng = np.random.default_rng(3)
    depth = (0.3 + 2.7 * rng.random((H, W))).astype(np.float32)
    depth[0, :3] = 0.0
    K = [[10.0, 0, (W - 1) / 2], [0, 10.0, (H - 1) / 2], [0, 0, 1]]
    c2w = np.eye(4)
    c2w[:3, 3] = [0.1, -1.0, 1.5]
    rec = {"source": "real", "subject_id": "s", "camera": {"K": K, "camera_to_world": c2w.tolist()},
           "depth": {"kind": "planar_z", "units": "metres", "metric": True, "invalid_value": 0.0},
           "mask": {}, "synthgen_version": "test"}
    write_sample(store, "k", np.zeros((H, W, 3), np.float32), depth, np.ones((H, W), np.float32), rec)
    return store / "k.depth.exr", depth, np.array(K), c2w


def test_openexr_package_and_header(depth_file):
    path, depth, K, c2w = depth_file
    with OpenEXR.File(str(path), separate_channels=True) as f:
        ch = f.channels()
        assert list(ch) == [DEPTH_CHANNEL] == ["Y"]
        assert np.array_equal(ch["Y"].pixels, depth) and ch["Y"].pixels.dtype == np.float32
        hdr = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in f.header().items()}
    assert np.allclose(hdr["intrinsicsK"], K)
    # OpenEXR convention: row vectors, camera looking down -Z, +Y up
    p_world = np.array([0.3, 2.0, 1.0, 1.0])
    p_cam_gl = p_world @ hdr["worldToCamera"]
    p_cam_cv = np.linalg.inv(c2w) @ p_world
    assert np.allclose(p_cam_gl[:3], p_cam_cv[:3] * [1, -1, -1], atol=1e-5)
    assert np.array_equal(read_sample(path.parent, "k").depth, depth)


def _cv2():
    os.environ["OPENCV_IO_ENABLE_OPENEXR"] = "1"
    return pytest.importorskip("cv2")


@pytest.mark.parametrize("flag", ["IMREAD_UNCHANGED", "IMREAD_ANYDEPTH"])
def test_opencv_reads_depth_exactly(depth_file, flag, tmp_path):
    cv2 = _cv2()
    path, depth, _, _ = depth_file
    got = cv2.imread(str(path), getattr(cv2, flag))
    assert got is not None and got.dtype == np.float32 and np.array_equal(got, depth)
    # control: the format-1 layout (a lone Z channel) is what OpenCV misreads
    legacy = tmp_path / "legacy.exr"
    write_exr(legacy, {"Z": depth})
    assert not np.array_equal(cv2.imread(str(legacy), getattr(cv2, flag)), depth)


def test_imageio_reads_depth_exactly(depth_file):
    _cv2()
    iio = pytest.importorskip("imageio.v3", reason="imageio is not installed")
    path, depth, _, _ = depth_file
    got = iio.imread(path, plugin="opencv", flags=-1)  # IMREAD_UNCHANGED
    assert np.array_equal(np.asarray(got), depth)


def test_blender_image_loader_reads_depth_exactly(depth_file):
    """Blender's own loader, in a fresh process (bpy), as a compositing user would load the file."""
    path, depth, _, _ = depth_file
    code = ("import bpy, numpy as np, sys; im = bpy.data.images.load(sys.argv[1]); "
            "a = np.empty(im.size[0] * im.size[1] * im.channels, np.float32); im.pixels.foreach_get(a); "
            "a = a.reshape(im.size[1], im.size[0], im.channels)[::-1, :, 0]; "
            "np.save(sys.argv[2], a); import os; os._exit(0)")
    out = path.parent / "blender.npy"
    res = subprocess.run([sys.executable, "-c", code, str(path), str(out)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert np.array_equal(np.load(out), depth)


def test_oiiotool_reads_depth_exactly(depth_file, tmp_path):
    """OpenImageIO's command-line tool (Debian `openimageio-tools`; its Python wheels need numpy 2,
    which bpy 4.5 cannot use): every pixel value printed by ``--dumpdata`` equals the array."""
    exe = shutil.which("oiiotool")
    if exe is None:
        pytest.skip("oiiotool not installed (apt-get install openimageio-tools)")
    path, depth, _, _ = depth_file
    res = subprocess.run([exe, "--dumpdata", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    vals = []
    for line in res.stdout.splitlines():
        if line.strip().startswith("Pixel ("):
            vals.append(float(line.split(":", 1)[1].split()[0]))
    assert np.allclose(np.array(vals, np.float32).reshape(H, W), depth, rtol=0, atol=1e-6)
