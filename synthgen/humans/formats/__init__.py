"""Readers for MakeHuman's file formats (pure Python + numpy, no bpy).

Every reader accepts a plain file or its gzip-compressed form (a path ending in ``.gz``), because
the vendored data under :mod:`synthgen.humans.data` is stored gzip-compressed. Parse errors raise
``ValueError`` whose message starts with ``"<path>:<line>: "``.

Formats (MakeHuman 1.x, as read by ``makehuman/shared/proxy.py``, ``material.py``,
``files3d.py``/``wavefront.py`` and ``algos3d.py`` of makehumancommunity/makehuman, and by MPFB2):

- Wavefront OBJ (:func:`read_obj`): ``v x y z``, ``vt u v``, ``f a/ta b/tb c/tc [d/td]`` (1-based,
  negative = relative), ``g name`` (face groups), ``usemtl name``. MakeHuman meshes are in
  decimetres with +Y up and the figure facing +Z. The hm08 base mesh puts the body in group
  ``body`` and helper geometry (hidden in renders; used to fit proxies and rigs) in groups
  ``helper-*`` and ``joint-*`` (joint cubes: one small cube per rig joint).
- Target (:func:`read_target`, ``.target``/``.target.gz``): one line per moved vertex,
  ``vertex_index dx dy dz`` (decimetres, OBJ frame); ``#`` starts a comment line.
- Proxy fitting (:func:`read_mhclo`, ``.mhclo``): ``key value`` header lines (``name``, ``uuid``,
  ``obj_file``, ``material``, ``z_depth``, ``x_scale v1 v2 d`` / ``y_scale`` / ``z_scale``,
  ``delete_verts``, ``tag``, ``license``, ``author``...), then after ``verts 0`` one line per proxy
  vertex: either ``v1 v2 v3 w1 w2 w3 [dx dy dz]`` (three base vertices, barycentric weights,
  offset) or a single base-vertex index ``v`` (exact fit: weight 1, offset 0). ``delete_verts``
  is followed by lines of base-vertex indices and ranges ``a - b`` (inclusive). ``#`` lines are
  comments (MakeHuman reads licence info from them).
- Material (:func:`read_mhmat`, ``.mhmat``): ``key value...`` lines, ``#`` or ``//`` comments;
  colours are three floats, booleans ``True``/``False`` (case-insensitive), textures are paths
  relative to the ``.mhmat`` file.

Layout: :mod:`.text` (reading files, fast number parsing, error messages), :mod:`.obj`,
:mod:`.target`, :mod:`.mhclo`, :mod:`.mhmat` (one module per format).
"""

from .mhclo import Mhclo, read_mhclo
from .mhmat import Mhmat, read_mhmat
from .obj import ObjMesh, read_obj
from .target import Target, read_target
from .text import _decimal_tokens, read_bytes, read_text  # noqa: F401  (_decimal_tokens: tests)

__all__ = ["ObjMesh", "Target", "Mhclo", "Mhmat", "read_obj", "read_target", "read_mhclo", "read_mhmat",
           "read_text", "read_bytes"]
