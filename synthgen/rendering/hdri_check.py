"""Preflight of HDRI files: decode every HDRI fully once, before any worker starts.

A truncated or corrupt environment map otherwise surfaces inside Blender on every worker (often as a
black or partial image, not an error). :func:`check_hdris` decodes each file completely:

- Radiance ``.hdr`` / ``.pic``: header, resolution line (any of the 8 orientations), then every
  scanline: new-style RLE (per-channel runs), old-style RLE (``1 1 1 n`` repeats) or flat RGBE,
  with the exact byte accounting of the format (a run past the line's end, a missing scanline,
  a bad ``2 2`` line header are errors naming the scanline);
- OpenEXR: every channel of every part read with the OpenEXR package (truncated chunks, bad
  compression data), and NaN pixels refused.

Results are cached by file content (sha256) under ``$SYNTHGEN_CACHE_DIR`` (default
``$XDG_CACHE_HOME/synthgen`` or ``~/.cache/synthgen``) in ``hdri-ok/``: one empty marker file per
verified content, so an unchanged HDRI is hashed, not decoded, on the next run. Only good files
are cached. Errors are :class:`ConfigError` naming the file (exit 2 in the CLI).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path

import numpy as np

from ..contract import sha256_file
from ..errors import ConfigError

log = logging.getLogger("synthgen.render")

CACHE_VERSION = "1"


def cache_dir() -> Path:
    base = os.environ.get("SYNTHGEN_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "synthgen"


_RES = re.compile(rb"^([-+])([XY]) (\d+) ([-+])([XY]) (\d+)$")


def decode_radiance(data: bytes, name: str = "<hdr>") -> tuple[int, int]:
    """Decode a Radiance RGBE file completely; returns (width, height) or raises ValueError.

    Only the structure is kept (no float image is built), but every byte of pixel data is walked
    exactly as a decoder must walk it.
    """
    if not data.startswith(b"#?"):
        raise ValueError("not a Radiance file (no #? signature)")
    end = data.find(b"\n\n")
    if end < 0:
        raise ValueError("header not terminated (no blank line)")
    header = data[:end].split(b"\n")
    fmt = [ln for ln in header if ln.startswith(b"FORMAT=")]
    if fmt and fmt[-1].strip() not in (b"FORMAT=32-bit_rle_rgbe", b"FORMAT=32-bit_rle_xyze"):
        raise ValueError(f"unsupported {fmt[-1].decode('latin-1')}")
    nl = data.find(b"\n", end + 2)
    if nl < 0:
        raise ValueError("truncated: no resolution line")
    m = _RES.match(data[end + 2:nl].strip())
    if not m:
        raise ValueError(f"bad resolution line {data[end + 2:nl][:40]!r}")
    n_lines, line_len = int(m.group(3)), int(m.group(6))
    if n_lines == 0 or line_len == 0:
        raise ValueError("image has no pixels")
    width, height = (line_len, n_lines) if m.group(2) == b"Y" else (n_lines, line_len)
    pos = nl + 1
    size = len(data)
    for y in range(n_lines):
        if pos + 4 > size:
            raise ValueError(f"truncated at scanline {y} of {n_lines}")
        if 8 <= line_len <= 0x7FFF and data[pos] == 2 and data[pos + 1] == 2 and not data[pos + 2] & 0x80:
            if (data[pos + 2] << 8 | data[pos + 3]) != line_len:
                raise ValueError(f"scanline {y}: run-length header says {data[pos + 2] << 8 | data[pos + 3]} "
                                 f"pixels, the image is {line_len} wide")
            pos += 4
            for c in range(4):
                x = 0
                while x < line_len:
                    if pos >= size:
                        raise ValueError(f"truncated at scanline {y} of {n_lines} (channel {c}, pixel {x})")
                    count = data[pos]
                    if count > 128:
                        count -= 128
                        need = 2
                    else:
                        need = 1 + count
                    if count == 0 or x + count > line_len:
                        raise ValueError(f"scanline {y}: corrupt run (length {count} at pixel {x} of {line_len})")
                    if pos + need > size:
                        raise ValueError(f"truncated at scanline {y} of {n_lines} (channel {c}, pixel {x})")
                    pos += need
                    x += count
        else:  # flat or old-style RLE pixels, 4 bytes each
            x = 0
            shift = 0
            while x < line_len:
                if pos + 4 > size:
                    raise ValueError(f"truncated at scanline {y} of {n_lines} (pixel {x})")
                r, g, b, e = data[pos], data[pos + 1], data[pos + 2], data[pos + 3]
                pos += 4
                if r == 1 and g == 1 and b == 1:  # repeat the previous pixel e << shift times
                    if x == 0:
                        raise ValueError(f"scanline {y}: repeat marker before any pixel")
                    n = e << shift
                    if x + n > line_len:
                        raise ValueError(f"scanline {y}: corrupt repeat of {n} at pixel {x} of {line_len}")
                    x += n
                    shift += 8
                else:
                    x += 1
                    shift = 0
    return width, height


def decode_exr(path: Path) -> tuple[int, int]:
    """Read every channel of every part of an EXR; returns (width, height) of the first part."""
    import OpenEXR

    with OpenEXR.File(str(path), separate_channels=True) as f:
        dims = None
        for k, part in enumerate(f.parts):
            if not part.channels:  # the OpenEXR package drops a part whose pixels fail to decode
                raise ValueError(f"part {k}: no pixel data could be decoded (truncated or corrupt file)")
            for name, ch in part.channels.items():
                px = np.asarray(ch.pixels)
                if px.size == 0:
                    raise ValueError(f"channel {name} has no pixels")
                if px.dtype.kind == "f":
                    nan = int(np.isnan(px).sum())
                    if nan:
                        raise ValueError(f"channel {name} holds {nan} NaN pixel(s)")
                if dims is None:
                    dims = (px.shape[1], px.shape[0])
        if dims is None:
            raise ValueError("no channels")
        return dims


def check_hdri(path: str | os.PathLike, use_cache: bool = True) -> str:
    """Decode ``path`` fully (or find its content in the cache); returns its sha256.

    Raises:
        ConfigError: unreadable, truncated or corrupt file (the message names it and says where).
    """
    p = Path(path)
    try:
        digest = sha256_file(p)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read HDRI ({exc.strerror or exc})") from exc
    marker = cache_dir() / "hdri-ok" / f"{digest}.v{CACHE_VERSION}"
    if use_cache and marker.exists():
        return digest
    try:
        if p.suffix.lower() == ".exr":
            decode_exr(p)
        else:
            decode_radiance(p.read_bytes(), str(p))
    except ConfigError:
        raise
    except Exception as exc:  # OpenEXR raises RuntimeError / OSError; ours ValueError
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{p}: unreadable HDRI: {msg}") from None
    if use_cache:
        with contextlib.suppress(OSError):
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    return digest


def check_hdris(job, use_cache: bool = True) -> None:
    """:func:`check_hdri` for every HDRI of ``job`` (all of them can be drawn)."""
    for h in job.hdris:
        check_hdri(h.path, use_cache=use_cache)
