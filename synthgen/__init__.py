"""synthgen: synthetic and real training data for portrait depth estimation and segmentation.

Subpackages and modules:

- :mod:`synthgen.contract` — the sample format (file names, record schema, read/write), consumed by
  render, ingest, shard and QA.
- :mod:`synthgen.exr` — OpenEXR read/write with the ``OpenEXR`` package.
- :mod:`synthgen.camera` — pinhole camera maths (intrinsics K, field of view, look-at extrinsics).
- :mod:`synthgen.config` — pydantic config models and distributions.
- :mod:`synthgen.sampling` — per-sample parameter sampling from (seed, index).
- :mod:`synthgen.render` — Ray orchestration; :mod:`synthgen.blender` is the only module importing ``bpy``.
"""

__version__ = "0.1.0"
