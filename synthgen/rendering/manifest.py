"""Scan manifests: ``scans: {manifest: library.csv, balance: [...], tag_weights: {...}}``.

A manifest is a CSV file (UTF-8, header row) with one scan per row. Columns (only ``path`` is
required; an empty cell is "not given"):

- ``path`` (file or glob, relative to the manifest's folder), ``id``;
- the size rule: ``height_m``, ``unit`` or ``scale`` (exactly one), ``measure`` (``all``,
  ``largest_part`` or object-name patterns separated by ``|``);
- orientation: ``up_axis``, ``forward_axis``; ``head_height_m``;
- material: ``texture``, ``normal_map`` (relative to the manifest), ``base_color`` (``"r g b"``,
  linear), ``roughness``;
- ``exclude_objects`` (patterns separated by ``|``), ``weight``;
- ``licence``, ``attribution`` (recorded in every sample and the dataset card);
- tags: any column ``tag_NAME`` (e.g. ``tag_sex``, ``tag_age_band``, ``tag_skin_tone``,
  ``tag_clothing``), recorded as ``render.scan.tags`` and counted by ``synthgen qa``.

Sampling weights: a row's ``weight`` (default 1) times ``tag_weights[NAME][value]`` for each tag
(a value not listed, or no value, counts 1; ``"*"`` sets the default for a tag), then, for each
tag NAME in ``balance``, divided by the number of rows sharing the row's value of NAME, so that
every value gets the same total weight (rows without the tag form their own group).

:func:`expand_manifest` turns the mapping into the ordinary list of scan entries before
validation, so the resolved config recorded in ``_meta/store.json`` lists every scan.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import ConfigError

COLUMNS = {"path", "id", "height_m", "unit", "scale", "measure", "up_axis", "forward_axis", "head_height_m",
           "texture", "normal_map", "base_color", "roughness", "exclude_objects", "weight", "licence",
           "attribution"}
KEYS = {"manifest", "balance", "tag_weights"}


def _num(v: str, where: str, col: str) -> float:
    try:
        return float(v)
    except ValueError:
        raise ConfigError(f"{where}: column {col}: {v!r} is not a number") from None


def _row(row: dict[str, str], base: Path, where: str) -> dict[str, Any]:
    """One manifest row -> a scan entry of the config (paths absolute)."""
    g = {k: (v or "").strip() for k, v in row.items() if k is not None}
    if not g.get("path"):
        raise ConfigError(f"{where}: the path column is empty")
    sc: dict[str, Any] = {"path": str(base / g["path"]) if not os.path.isabs(g["path"]) else g["path"]}
    size: dict[str, Any] = {}
    for col in ("height_m", "scale"):
        if g.get(col):
            size[col] = _num(g[col], where, col)
    if g.get("unit"):
        size["unit"] = g["unit"]
    if g.get("measure"):
        size["measure"] = g["measure"] if g["measure"] in ("all", "largest_part") else g["measure"].split("|")
    sc["size"] = size
    for col in ("id", "up_axis", "forward_axis", "licence", "attribution"):
        if g.get(col):
            sc[col] = g[col]
    for col in ("texture", "normal_map"):
        if g.get(col):
            sc[col] = str(base / g[col])
    for col in ("head_height_m", "roughness", "weight"):
        if g.get(col):
            sc[col] = _num(g[col], where, col)
    if g.get("base_color"):
        sc["base_color"] = [_num(x, where, "base_color") for x in g["base_color"].replace(",", " ").split()]
    if g.get("exclude_objects"):
        sc["exclude_objects"] = [p for p in g["exclude_objects"].split("|") if p]
    tags = {k[4:]: v for k, v in g.items() if k.startswith("tag_") and v}
    if tags:
        sc["tags"] = tags
    return sc


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The rows of a manifest as scan entries. Raises ConfigError naming the file, row and column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            bad = [c for c in header if c not in COLUMNS and not (c.startswith("tag_") and len(c) > 4)]
            if "path" not in header:
                raise ConfigError(f"{path}: a scan manifest needs a header row with a path column (got {header})")
            if bad:
                raise ConfigError(f"{path}: unknown column(s) {bad}; known: {sorted(COLUMNS)} and tag_NAME")
            rows = [_row(r, path.parent, f"{path}, row {i + 2}") for i, r in enumerate(reader)]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the scan manifest ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows:
        raise ConfigError(f"{path}: the scan manifest has no rows")
    return rows


def _weights(rows: list[dict[str, Any]], balance: list[str], tag_weights: dict[str, dict[str, float]]) -> None:
    for r in rows:
        w = float(r.get("weight", 1.0))
        for name, table in tag_weights.items():
            w *= float(table.get(r.get("tags", {}).get(name, ""), table.get("*", 1.0)))
        r["weight"] = w
    for name in balance:
        counts = Counter(r.get("tags", {}).get(name, "") for r in rows)
        for r in rows:
            r["weight"] /= counts[r.get("tags", {}).get(name, "")]


def expand_manifest(data: dict[str, Any], config_path: Path) -> None:
    """Replace ``data["scans"]`` given as ``{manifest, balance?, tag_weights?}`` by the list of its
    rows' scan entries, with their sampling weights (see the module docstring). A list is left as is.

    Raises:
        ConfigError: unknown keys, an unreadable manifest, a bad cell, a weight that is not positive.
    """
    spec = data.get("scans")
    if not isinstance(spec, dict):
        return
    unknown = sorted(set(spec) - KEYS)
    if unknown or "manifest" not in spec:
        raise ConfigError(f"{config_path}: scans: as a mapping it takes manifest (a CSV file), balance and "
                          f"tag_weights{'; unknown key(s) ' + str(unknown) if unknown else '; manifest is missing'}")
    balance = spec.get("balance") or []
    tag_weights = spec.get("tag_weights") or {}
    if not isinstance(balance, list) or not all(isinstance(b, str) for b in balance):
        raise ConfigError(f"{config_path}: scans.balance: expected a list of tag names, got {balance!r}")
    if not isinstance(tag_weights, dict) or not all(
            isinstance(t, dict) and all(isinstance(w, (int, float)) and w >= 0 for w in t.values())
            for t in tag_weights.values()):
        raise ConfigError(f"{config_path}: scans.tag_weights: expected {{tag: {{value: weight >= 0}}}}, "
                          f"got {tag_weights!r}")
    path = Path(spec["manifest"])
    path = path if path.is_absolute() else config_path.parent / path
    rows = read_manifest(path.resolve())
    _weights(rows, balance, tag_weights)
    zero = [r.get("id", r["path"]) for r in rows if r["weight"] <= 0]
    if zero:
        raise ConfigError(f"{path}: scans.tag_weights gives weight 0 to {zero[:10]}; remove those rows instead")
    data["scans"] = rows
