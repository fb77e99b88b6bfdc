"""MakeHuman materials (``.mhmat``); format in :mod:`synthgen.humans.formats`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .text import _err, read_text

@dataclass(frozen=True, eq=False)
class Mhmat:
    """A MakeHuman material (``.mhmat``). Texture paths are as written (relative to the file).

    Attributes:
        path, name: the file and its ``name``.
        diffuse_color, specular_color: (r, g, b) floats (MakeHuman default 1,1,1 / 1,1,1).
        shininess: 0..1 (MakeHuman default 0.5); :attr:`roughness` is ``1 - shininess`` (the
            MPFB conversion).
        opacity: 0..1 (default 1).
        transparent: ``transparent`` flag: the diffuse texture's alpha cuts the surface.
        alpha_to_coverage, backface_cull: flags (defaults True / True).
        diffuse_texture, normalmap_texture, bump_texture, specular_texture, transparency_texture,
            ao_texture: texture file names or ``None``.
        normalmap_intensity: float (default 1).
        sss_enabled: subsurface flag.
        values: every ``key -> value string`` read, for reference.
    """

    path: str
    name: str
    diffuse_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    specular_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shininess: float = 0.5
    opacity: float = 1.0
    transparent: bool = False
    alpha_to_coverage: bool = True
    backface_cull: bool = True
    diffuse_texture: str | None = None
    normalmap_texture: str | None = None
    bump_texture: str | None = None
    specular_texture: str | None = None
    transparency_texture: str | None = None
    ao_texture: str | None = None
    normalmap_intensity: float = 1.0
    sss_enabled: bool = False
    values: dict[str, str] = field(default_factory=dict)

    @property
    def roughness(self) -> float:
        """``1 - shininess`` clamped to [0, 1] (MPFB's mhmat -> Principled conversion)."""
        return float(min(1.0, max(0.0, 1.0 - self.shininess)))


_MHMAT_COLOURS = {"diffuseColor": "diffuse_color", "specularColor": "specular_color"}
_MHMAT_FLOATS = {"shininess": "shininess", "opacity": "opacity", "normalmapIntensity": "normalmap_intensity"}
_MHMAT_BOOLS = {"transparent": "transparent", "alphaToCoverage": "alpha_to_coverage",
                "backfaceCull": "backface_cull", "sssEnabled": "sss_enabled"}
_MHMAT_TEXTURES = {"diffuseTexture": "diffuse_texture", "normalmapTexture": "normalmap_texture",
                   "bumpTexture": "bump_texture", "specularTexture": "specular_texture",
                   "transparencyTexture": "transparency_texture", "aomapTexture": "ao_texture"}


def read_mhmat(path: str | os.PathLike) -> Mhmat:
    """Read a ``.mhmat`` material file (see :class:`Mhmat`).

    Raises:
        ValueError: a colour without three numbers, a non-numeric float or a boolean other than
            true/false, naming file and line.
    """
    path = os.fspath(path)
    text = read_text(path)
    kw: dict[str, Any] = {}
    values: dict[str, str] = {}
    name = os.path.basename(path).split(".")[0]
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#") or s.startswith("//"):
            continue
        words = s.split(None, 1)
        key, val = words[0], (words[1].strip() if len(words) > 1 else "")
        values[key] = val
        try:
            if key == "name":
                name = val
            elif key in _MHMAT_COLOURS:
                c = [float(x) for x in val.split()]
                if len(c) != 3:
                    raise ValueError(f"{key} needs 3 numbers")
                kw[_MHMAT_COLOURS[key]] = tuple(c)
            elif key in _MHMAT_FLOATS:
                kw[_MHMAT_FLOATS[key]] = float(val)
            elif key in _MHMAT_BOOLS:
                if val.lower() not in ("true", "false"):
                    raise ValueError(f"{key} must be True or False")
                kw[_MHMAT_BOOLS[key]] = val.lower() == "true"
            elif key in _MHMAT_TEXTURES:
                kw[_MHMAT_TEXTURES[key]] = val or None
        except ValueError as exc:
            raise _err(path, lineno, f"{exc}: {s[:80]!r}") from None
    return Mhmat(path=path, name=name, values=values, **kw)
