"""Scanning sample stores for a shard plan: one :class:`Item` per complete sample, from records only.

No pixel data is read: a sample is indexed from its ``KEY.json`` record (validated against the
contract) and the sizes of its member files, which must match the ``bytes`` in the record. Memory
is one :class:`Item` (a few hundred bytes) per sample. Bad samples are collected and reported all
at once (:func:`scan_stores`); member files without a record (a sample still being written) are
skipped and listed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..contract import EXTRA_MEMBER_RE, MEMBERS, SampleRecord
from ..errors import ShardInputError
from ..store import list_store


@dataclass(slots=True)
class Item:
    """One sample of the plan (no pixels).

    ``sizes`` are the byte sizes of ``rgb.exr``, ``depth.exr``, ``mask.exr`` and ``json`` in the
    store; ``sha256`` are the member checksums from the record (same order, without json);
    ``record_sha256`` is the checksum of the ``KEY.json`` bytes; ``extras`` are the optional EXR
    members listed in the record's ``files`` (e.g. ``depth_sensor.exr``) as ``(name, bytes, sha256)``,
    sorted by name.
    """

    key: str
    store: int
    source: str
    subject: str
    width: int
    height: int
    sizes: tuple[int, int, int, int]
    sha256: tuple[str, str, str]
    record_sha256: str
    extras: tuple[tuple[str, int, str], ...] = ()

    def member_sizes(self) -> list[tuple[str, int]]:
        """``(member extension, bytes)`` in shard order: rgb, depth, mask, the extras, json."""
        return [(MEMBERS[0], self.sizes[0]), (MEMBERS[1], self.sizes[1]), (MEMBERS[2], self.sizes[2]),
                *((e[0], e[1]) for e in self.extras), ("json", self.sizes[3])]


def _member_size(sdir: str, store: Any, key: str, fname: str, meta: dict, problems: list[str]) -> int | None:
    """Size in bytes of member file ``fname`` of sample ``key``, or None (with the reason appended to
    ``problems``) when it is missing or its size differs from its record's ``bytes``."""
    try:
        size = os.stat(os.path.join(sdir, fname)).st_size
    except FileNotFoundError:
        problems.append(f"sample {key} in {store}: member {fname} is missing")
        return None
    if size != meta["bytes"]:
        problems.append(f"sample {key} in {store}: member {fname} has {size} bytes, "
                        f"its record says {meta['bytes']}")
        return None
    return size


def scan_store(store: str | os.PathLike, index: int, problems: list[str],
               skipped: list[dict[str, Any]], progress: bool = True) -> list[Item]:
    """Index the complete samples of one store (records only, no pixels).

    Bad samples (unreadable/invalid record, member missing or of the wrong size) are appended to
    ``problems``; member files without a record (an unfinished sample) are appended to ``skipped``.
    """
    store = Path(store)
    listing = list_store(store)
    for k, exts in listing.members.items():
        if "json" not in exts:
            skipped += [{"store": str(store), "file": f"{k}.{m}", "reason": "member without a record "
                         "(unfinished sample); not packed"} for m in exts if m in MEMBERS or EXTRA_MEMBER_RE.match(m)]
    items = []
    for key in tqdm(listing.keys, desc=f"scan {store.name}", unit="sample", disable=not progress, leave=False):
        it = _scan_sample(store, key, index, problems)
        if it is not None:
            items.append(it)
    return items


def _scan_sample(store: Path, key: str, index: int, problems: list[str]) -> Item | None:
    """The :class:`Item` of sample ``key`` of ``store``, or None with the reasons appended to ``problems``."""
    sdir = str(store)
    jp = os.path.join(sdir, f"{key}.json")
    try:
        with open(jp, "rb") as fh:
            raw = fh.read()
        rec = json.loads(raw)
        SampleRecord.model_validate(rec)
    except Exception as exc:  # JSON syntax or pydantic validation: name the file, keep going
        msg = str(exc).replace("\n", " ")
        problems.append(f"{jp}: broken record ({msg[:300]})")
        return None
    if rec["key"] != key:
        problems.append(f"{jp}: record key {rec['key']!r} does not match the file name")
        return None
    files = rec.get("files", {})
    sizes, shas, extras, bad = [], [], [], False
    for m in (*MEMBERS, *sorted(x for x in files if x not in MEMBERS)):  # required, then optional members
        meta = files.get(m)
        if meta is None:
            problems.append(f"sample {key} in {store}: member {m} not listed in its record")
            bad = True
            continue
        if m not in MEMBERS and not EXTRA_MEMBER_RE.match(m):
            problems.append(f"{jp}: files lists an invalid member name {m!r} (expected [a-z0-9_]+.exr)")
            bad = True
            continue
        size = _member_size(sdir, store, key, f"{key}.{m}", meta, problems)
        if size is None:
            bad = True
        elif m in MEMBERS:
            sizes.append(size)
            shas.append(meta["sha256"])
        else:
            extras.append((m, size, meta["sha256"]))
    if bad:
        return None
    return Item(key=key, store=index, source=rec["source"], subject=str(rec["subject_id"]),
                width=int(rec["image"]["width"]), height=int(rec["image"]["height"]),
                sizes=(sizes[0], sizes[1], sizes[2], len(raw)), sha256=tuple(shas),
                record_sha256=hashlib.sha256(raw).hexdigest(), extras=tuple(extras))


def scan_stores(stores: list[str | os.PathLike], progress: bool = True) -> tuple[list[Item], list[dict], list[int]]:
    """Scan all stores. Returns ``(items, skipped, per-store counts)``.

    Raises:
        ShardInputError: a store is missing/empty, a record is broken, a member is missing or has
            the wrong size, or a key occurs in two stores. All problems are listed at once.
    """
    problems: list[str] = []
    skipped: list[dict] = []
    items: list[Item] = []
    counts = []
    for i, s in enumerate(stores):
        if not Path(s).is_dir():
            problems.append(f"{s}: not a folder (expected a sample store)")
            counts.append(0)
            continue
        got = scan_store(s, i, problems, skipped, progress)
        if not got and not any(str(s) in p for p in problems):
            problems.append(f"{s}: holds no samples (no KEY.json records)")
        counts.append(len(got))
        items.extend(got)
    seen: dict[str, int] = {}
    for it in items:
        if it.key in seen:
            problems.append(f"sample key {it.key!r} occurs in {stores[seen[it.key]]} and in {stores[it.store]}; "
                            "keys must be unique across the stores of one dataset")
        else:
            seen[it.key] = it.store
    if problems:
        raise ShardInputError(problems)
    return items, skipped, counts
