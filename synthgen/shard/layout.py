"""Where things live in a shard folder (format ``synthgen.shards/2``).

Only the shards themselves sit at the top level, so that stock readers given the folder read tars
and nothing else: ``ray.data.read_webdataset(DIR)`` lists files recursively but skips every path
that starts with ``.`` or ``_`` (Ray's default ``exclude_prefixes``), and a glob such as
``DIR/train-*.tar`` matches shards only::

    DIR/{split}-{index:06d}.tar      WebDataset shards
    DIR/_meta/manifest.json          written last: the run is complete when it exists
    DIR/_meta/samples.jsonl          one line per packed sample, with its full store record
    DIR/_meta/{split}.wids.json      wids shard lists (urls relative to the list: ../{split}-*.tar)
    DIR/_meta/README.md              dataset card (Hugging Face card format)
    DIR/.shard-progress.jsonl        journal while a run is in progress (hidden: readers skip it)

Format 1 (``synthgen.shards/1``) kept ``manifest.json``, ``samples.jsonl`` and the wids lists at
the top level; :func:`find_manifest` still finds such a manifest so that ``synthgen shard verify``
and ``synthgen qa`` read old folders.
"""

from __future__ import annotations

import os
from pathlib import Path

META = "_meta"
MANIFEST_NAME = "manifest.json"
SAMPLES_INDEX_NAME = "samples.jsonl"
CARD_NAME = "README.md"

MANIFEST = f"{META}/{MANIFEST_NAME}"
"""The manifest's path relative to the shard folder."""
SAMPLES_INDEX = f"{META}/{SAMPLES_INDEX_NAME}"
CARD = f"{META}/{CARD_NAME}"


def manifest_path(out: str | os.PathLike) -> Path:
    return Path(out) / MANIFEST


def find_manifest(out: str | os.PathLike) -> Path | None:
    """The manifest of shard folder ``out``: ``_meta/manifest.json`` (format 2), else a format-1
    ``manifest.json`` at the top level; None when there is neither."""
    for p in (Path(out) / MANIFEST, Path(out) / MANIFEST_NAME):
        if p.is_file():
            return p
    return None


def legacy_manifest(out: str | os.PathLike) -> Path | None:
    """A format-1 top-level ``manifest.json`` in ``out``, or None."""
    p = Path(out) / MANIFEST_NAME
    return p if p.is_file() else None


def wids_relpath(split: str) -> str:
    """The wids shard list of ``split``, relative to the shard folder."""
    return f"{META}/{split}.wids.json"


def wids_url(shard_file: str) -> str:
    """A shard's url inside a wids list (relative to the list, which lives in ``_meta/``)."""
    return f"../{shard_file}"


def card_path(out: str | os.PathLike) -> Path:
    return Path(out) / CARD
