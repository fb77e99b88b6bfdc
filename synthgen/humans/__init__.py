"""Procedural MakeHuman people (pure numpy; no bpy, no ray).

Public API:

- :class:`HumansSpec` (config entry ``kind: makehuman``), :func:`sample_identity` ->
  :class:`Identity` (``to_record()``), :func:`build_human` -> :class:`HumanModel`;
- readers :func:`read_obj`, :func:`read_target`, :func:`read_mhclo`, :func:`read_mhmat`;
- :func:`macro_target_weights` (phenotype -> MakeHuman target weights);
- skin/hair colour models :func:`skin_albedo`, :func:`hair_albedo`.

The Blender side is :mod:`synthgen.rendering.blender.human`. See ``docs/humans.md``.
"""

from .build import HumanModel, MaterialDesc, MeshPart, Rig, build_human
from .formats import Mhclo, Mhmat, ObjMesh, Target, read_mhclo, read_mhmat, read_obj, read_target
from .identity import HUMANS_STREAM, HairColour, Identity, Phenotype, SkinParams, sample_identity
from .macro import MacroSliders, age_years_to_slider, macro_target_weights
from .skin import hair_albedo, skin_albedo
from .spec import HumansSpec

__all__ = ["HumanModel", "MaterialDesc", "MeshPart", "Rig", "build_human", "Mhclo", "Mhmat", "ObjMesh", "Target",
           "read_mhclo", "read_mhmat", "read_obj", "read_target", "HUMANS_STREAM", "HairColour", "Identity",
           "Phenotype", "SkinParams", "sample_identity", "MacroSliders", "age_years_to_slider",
           "macro_target_weights", "hair_albedo", "skin_albedo", "HumansSpec"]
