"""What ``synthgen qa`` reads: resolving the command-line inputs and their folder-level information.

Inputs (see ``synthgen/contract.py`` for the sample format):

- **store**: a folder of ``KEY.rgb.exr``, ``KEY.depth.exr``, ``KEY.mask.exr``, ``KEY.json``. The
  split of a store sample is the record's ``split`` field, else ``split`` in ``_meta/store.json``,
  else the ``SPLIT=`` prefix given on the command line (which overrides both), else ``"-"``
  (unsplit).
- **shard folder**: a folder of WebDataset tars named ``{split}-{shard:06d}.tar`` (and usually a
  ``_meta/manifest.json``, or ``manifest.json`` at the top in format 1). The split is the ``{split}``
  prefix of the tar's file name.

Both may carry a dataset card (``README.md``; ``_meta/README.md`` in shard folders) and an asset list
with licences (``_meta/assets.json``; the shard manifest's ``assets``), shown in the report.

Reading their samples one at a time is :mod:`synthgen.qa.reader`'s; problems with the inputs
themselves (not with one sample) are collected in :class:`InputProblems`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import QAInputError as InputError  # noqa: F401 (re-exported)
from ..card import read_card_assets
from ..shard.layout import MANIFEST, find_manifest
from ..store import META_DIR, list_store
from .samples import KNOWN_EXTS

log = logging.getLogger("synthgen.qa")


class InputProblems:
    """Problems with the inputs themselves (not with one sample): ``errors`` (damaged or missing
    shards, manifest disagreements, unreadable lists; they fail the ``inputs_readable`` gate) and
    ``notes`` (informational: no manifest, non-standard names, unknown tar members)."""

    def __init__(self):
        self.errors: list[str] = []
        self.notes: list[str] = []

    def error(self, msg: str) -> None:
        self.errors.append(msg)

    def note(self, msg: str) -> None:
        self.notes.append(msg)


@dataclass
class InputSpec:
    """One command-line input: ``path``, optional split override, and its kind (store or shards)."""
    path: Path
    split: str | None
    kind: str  # "store" | "shards"

    @property
    def label(self) -> str:
        return str(self.path)


def parse_input(arg: str) -> InputSpec:
    """Resolve a command-line input: ``PATH`` or ``SPLIT=PATH`` (split override for a store).

    Raises:
        InputError: the path does not exist or holds neither samples nor shards.
    """
    split = None
    path = Path(arg)
    m = re.match(r"^([A-Za-z0-9_-]+)=(.+)$", arg)
    if m and not path.exists():
        split, path = m.group(1), Path(m.group(2))
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix == ".tar":
        raise InputError(f"{path}: give the shard folder, not a single tar")
    if not path.is_dir():
        raise InputError(f"{path}: not a folder (expected a sample store or a shard folder)")
    names = os.listdir(path)
    tars = [n for n in names if n.endswith(".tar")]
    samples = [n for n in names if "." in n and n.split(".", 1)[1] in KNOWN_EXTS
               and (n.split(".", 1)[1] != "json" or not tars)]  # manifest.json is not a sample
    if tars and not samples:
        return InputSpec(path, split, "shards")
    if samples:
        if tars:
            log.warning("%s: holds both sample files and tars; reading it as a store (tars ignored)", path)
        return InputSpec(path, split, "store")
    if find_manifest(path) is not None:
        return InputSpec(path, split, "shards")
    raise InputError(f"{path}: neither a sample store (KEY.rgb.exr, KEY.json, ...) nor a shard folder "
                     "({split}-{shard:06d}.tar)")


def count_samples(spec: InputSpec) -> int | None:
    """Number of sample groups in a store (cheap: one listing), or the manifest total for shards."""
    if spec.kind == "store":
        return sum(any(e in KNOWN_EXTS for e in exts) for exts in list_store(spec.path).members.values())
    man = find_manifest(spec.path)
    if man is not None:
        try:
            shards = json.loads(man.read_text("utf-8")).get("shards", [])
            return int(sum(int(s.get("samples", s.get("count", 0))) for s in shards)) or None
        except Exception:
            return None
    return None


def read_meta(spec: InputSpec, problems: InputProblems) -> dict[str, Any]:
    """Store/shard-folder level information for the summary.

    Returns ``{"quarantine": Counter-like dict reason -> count, "manifest": {...} | None}``.
    Quarantine and failure lists are found in ``STORE/_meta/*.json`` / ``*.jsonl`` files whose name
    contains ``quarantine`` or ``fail``: every object in them with a ``reason`` or ``reasons`` (list)
    field counts once per reason (a reason object counts by its ``code``). For shard folders the
    manifest's ``excluded`` and ``skipped`` entries count too.
    """
    reasons: dict[str, int] = {}
    n_entries = 0
    meta = spec.path / META_DIR
    candidates = []
    if meta.is_dir():
        candidates += [p for p in sorted(meta.iterdir()) if p.is_file()]
    candidates += [p for p in sorted(spec.path.glob("*.json*")) if p.is_file()] if spec.kind == "shards" else []
    for p in candidates:
        low = p.name.lower()
        if not (("quarantin" in low or "fail" in low) and (low.endswith(".json") or low.endswith(".jsonl"))):
            continue
        try:
            text = p.read_text("utf-8")
            docs = [json.loads(line) for line in text.splitlines() if line.strip()] if low.endswith(".jsonl") \
                else [json.loads(text)]
        except Exception as exc:
            problems.error(f"{p}: unreadable quarantine/failure list ({exc})")
            continue
        n_entries += _count_reasons(docs, reasons)
    manifest = None
    if spec.kind == "shards":
        mp = find_manifest(spec.path) or spec.path / MANIFEST
        if mp.exists():
            try:
                man = json.loads(mp.read_text("utf-8"))
                listed = [s.get("file") or s.get("name") for s in man.get("shards", []) if isinstance(s, dict)]
                missing = [f for f in listed if f and not (spec.path / f).exists()]
                for f in missing:
                    problems.error(f"{spec.path / f}: listed in manifest.json but missing")
                counts = {str(spec.path / (s.get("file") or s.get("name"))): s.get("samples", s.get("count"))
                          for s in man.get("shards", []) if isinstance(s, dict) and (s.get("file") or s.get("name"))}
                # samples the shard tool left out (``excluded`` / ``skipped``, each with a reason)
                n_entries += _count_reasons([man.get("excluded", []), man.get("skipped", [])], reasons)
                manifest = {"shards_listed": len(listed), "shards_missing": missing,
                            "totals": man.get("totals"), "samples_per_shard": counts}
            except Exception as exc:
                problems.error(f"{mp}: unreadable manifest ({exc})")
        else:
            problems.note(f"{spec.path}: no manifest.json in shard folder")
    return {"quarantine_entries": n_entries, "quarantine": reasons, "manifest": manifest,
            "dataset_card": read_card_assets(spec.path)}


def _reason_text(r: Any) -> str:
    if isinstance(r, dict):  # e.g. ingest's {"code": ..., "detail": ...}
        r = r.get("code") or r.get("reason") or json.dumps(r, sort_keys=True)
    return str(r)[:160]


def _count_reasons(docs: Any, reasons: dict[str, int]) -> int:
    """Count reasons of every object with ``reason`` or ``reasons`` in ``docs``; returns the number of entries."""
    n = 0
    for obj in _walk(docs):
        if isinstance(obj.get("reasons"), list):
            rs = obj["reasons"]
        elif isinstance(obj.get("reason"), (str, dict)):
            rs = [obj["reason"]]
        else:
            continue
        n += 1
        for r in rs:
            t = _reason_text(r)
            reasons[t] = reasons.get(t, 0) + 1
    return n


def _walk(obj: Any) -> Iterator[dict]:
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)
