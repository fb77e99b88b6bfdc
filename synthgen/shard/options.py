"""Parsing ``synthgen shard`` options: ``--split``, ``--mix`` and ``--shard-size``, and their defaults.

All parsers raise :class:`synthgen.errors.ShardInputError` with a message naming the option and the
offending text, so the command line can print it as it is.
"""

from __future__ import annotations

import math
import re
from typing import Iterable

from ..errors import ShardInputError

SOURCES = ("synthetic", "real")
SPLIT_RE = re.compile(r"^[a-z0-9_]+$")
DEFAULT_SPLIT = "train=0.9,val=0.05,test=0.05"
DEFAULT_SHARD_SIZE = "512MB"


def parse_size(text: str) -> int:
    """``"512MB"`` -> bytes. Units B, KB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB (1024)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?i?B?)\s*", text, re.IGNORECASE)
    if not m:
        raise ShardInputError(f"--shard-size {text!r}: expected a size like 512MB, 1GiB or 100000000")
    num, unit = float(m.group(1)), m.group(2).upper()
    mult = {"": 1, "B": 1}
    for i, p in enumerate("KMGT", start=1):
        mult[p] = mult[p + "B"] = 1000 ** i
        mult[p + "I"] = mult[p + "IB"] = 1024 ** i
    if unit not in mult:
        raise ShardInputError(f"--shard-size {text!r}: unknown unit {m.group(2)!r}")
    size = int(num * mult[unit])
    if size < 64_000:
        raise ShardInputError(f"--shard-size {text!r}: must be at least 64KB")
    return size


def _parse_weights(text: str, what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, val = part.partition("=")
        name = name.strip()
        try:
            w = float(val)
        except ValueError:
            w = float("nan")
        if not sep or not name or not math.isfinite(w) or w < 0:
            raise ShardInputError(f"{what} {text!r}: expected NAME=WEIGHT,... with weights >= 0, got {part!r}")
        if name in out:
            raise ShardInputError(f"{what} {text!r}: {name!r} given twice")
        out[name] = w
    if not out:
        raise ShardInputError(f"{what} {text!r}: empty")
    return out


def parse_splits(text: str) -> dict[str, float]:
    """``"train=0.9,val=0.05,test=0.05"`` -> ordered ``{split: fraction}`` (fractions sum to 1).

    Raises ShardInputError on bad names (``[a-z0-9_]+``), fractions <= 0 or a sum other than 1.
    """
    w = _parse_weights(text, "--split")
    for name, f in w.items():
        if not SPLIT_RE.match(name):
            raise ShardInputError(f"--split: split name {name!r} must match [a-z0-9_]+")
        if f <= 0:
            raise ShardInputError(f"--split: split {name!r} has fraction {f}; leave it out instead")
    total = sum(w.values())
    if abs(total - 1.0) > 1e-3:
        raise ShardInputError(f"--split {text!r}: fractions sum to {total:g}, not 1")
    return {k: v / total for k, v in w.items()}


def parse_mix(specs: list[str] | None, splits: Iterable[str]) -> dict[str, dict[str, float] | None]:
    """Parse ``--mix`` options into ``{split: {source: fraction} | None}`` (None: keep everything).

    Each spec is ``synthetic=0.7,real=0.3`` (all splits) or ``SPLIT:synthetic=0,real=1`` (one
    split; later specs override earlier ones). Weights are normalised to sum to 1.
    """
    splits = list(splits)
    out: dict[str, dict[str, float] | None] = {s: None for s in splits}
    for spec in specs or []:
        target, sep, rest = spec.partition(":")
        if sep and "=" not in target:
            if target not in out:
                raise ShardInputError(f"--mix {spec!r}: unknown split {target!r} (splits: {', '.join(splits)})")
            names, text = [target], rest
        else:
            names, text = splits, spec
        w = _parse_weights(text, "--mix")
        bad = [k for k in w if k not in SOURCES]
        if bad:
            raise ShardInputError(f"--mix {spec!r}: unknown source(s) {bad}; sources are synthetic, real")
        total = sum(w.values())
        if total <= 0:
            raise ShardInputError(f"--mix {spec!r}: weights sum to 0")
        ratio = {s: w.get(s, 0.0) / total for s in SOURCES}
        for n in names:
            out[n] = ratio
    return out
