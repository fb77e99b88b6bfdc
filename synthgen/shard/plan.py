"""Planning a sharded dataset: scan stores, split by subject, mix sources, shuffle, cut shards.

Everything here is pure bookkeeping on sample *records* (no pixel data is read), so memory is
O(number of samples) with a small constant (one :class:`Item` of a few hundred bytes per sample),
independent of image sizes. The plan is a deterministic function of the inputs and the options:
the same stores, options and seed always give the same splits, the same order and the same shard
boundaries, which is what makes shards byte-reproducible and runs resumable.

Randomness comes from :func:`rng_for` (numpy PCG64 seeded from ``sha256(seed, purpose)``), so it
does not depend on Python's hash randomisation or on the order stores were listed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tqdm import tqdm

from ..contract import EXTRA_MEMBER_RE, MEMBERS, SampleRecord
from ..errors import ShardInputError  # noqa: F401 (re-exported)
from ..store import list_store

log = logging.getLogger("synthgen.shard")

SOURCES = ("synthetic", "real")
SPLIT_RE = re.compile(r"^[a-z0-9_]+$")
TAR_BLOCK = 512
TAR_RECORD = 20 * 512  # tarfile.RECORDSIZE: archives are padded to a multiple of this


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


@dataclass
class ShardPlan:
    """One shard to write: file name, split, running index within the split, and its samples."""

    name: str
    split: str
    index: int
    items: list[Item]

    def keys_sha256(self) -> str:
        return keys_digest(i.key for i in self.items)


@dataclass
class Plan:
    """The whole dataset plan. ``excluded`` holds samples left out by ``--mix`` with the reason."""

    stores: list[str]
    store_counts: list[int]
    splits: dict[str, float]
    mix: dict[str, dict[str, float] | None]
    by_split: dict[str, list[Item]]
    shards: list[ShardPlan]
    excluded: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    subject_split: dict[str, str] = field(default_factory=dict)


def keys_digest(keys: Iterable[str]) -> str:
    """sha256 of the keys joined by newlines (each followed by ``\\n``), in shard order."""
    h = hashlib.sha256()
    for k in keys:
        h.update(k.encode("utf-8") + b"\n")
    return h.hexdigest()


def rng_for(seed: int, *purpose: str) -> np.random.Generator:
    """A numpy Generator seeded from ``sha256(f"{seed}/{purpose...}")`` (stable across runs)."""
    digest = hashlib.sha256("/".join([str(int(seed)), *purpose]).encode("utf-8")).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


# ----------------------------------------------------------------------------- option parsing

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


# ----------------------------------------------------------------------------- scanning

def tar_member_bytes(size: int) -> int:
    """Bytes one tar member of ``size`` bytes takes: a 512-byte header plus data padded to 512."""
    return TAR_BLOCK + -(-size // TAR_BLOCK) * TAR_BLOCK



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
    items = []
    listing = list_store(store)
    keys = listing.keys
    for k, exts in listing.members.items():
        if "json" not in exts:
            skipped += [{"store": str(store), "file": f"{k}.{m}", "reason": "member without a record "
                         "(unfinished sample); not packed"} for m in exts if m in MEMBERS or EXTRA_MEMBER_RE.match(m)]
    sdir = str(store)
    for key in tqdm(keys, desc=f"scan {store.name}", unit="sample", disable=not progress, leave=False):
        jp = os.path.join(sdir, f"{key}.json")
        try:
            with open(jp, "rb") as fh:
                raw = fh.read()
            rec = json.loads(raw)
            SampleRecord.model_validate(rec)
        except Exception as exc:  # JSON syntax or pydantic validation: name the file, keep going
            msg = str(exc).replace("\n", " ")
            problems.append(f"{jp}: broken record ({msg[:300]})")
            continue
        if rec["key"] != key:
            problems.append(f"{jp}: record key {rec['key']!r} does not match the file name")
            continue
        sizes, shas, bad = [], [], False
        for m in MEMBERS:
            fname = f"{key}.{m}"
            meta = rec.get("files", {}).get(m)
            if meta is None:
                problems.append(f"sample {key} in {store}: member {m} not listed in its record")
                bad = True
                continue
            size = _member_size(sdir, store, key, fname, meta, problems)
            if size is None:
                bad = True
                continue
            sizes.append(size)
            shas.append(meta["sha256"])
        extras = []
        for m in sorted(x for x in rec.get("files", {}) if x not in MEMBERS):  # optional members
            meta = rec["files"][m]
            if not EXTRA_MEMBER_RE.match(m):
                problems.append(f"{jp}: files lists an invalid member name {m!r} (expected [a-z0-9_]+.exr)")
                bad = True
                continue
            size = _member_size(sdir, store, key, f"{key}.{m}", meta, problems)
            if size is None:
                bad = True
                continue
            extras.append((m, size, meta["sha256"]))
        if bad:
            continue
        items.append(Item(key=key, store=index, source=rec["source"], subject=str(rec["subject_id"]),
                          width=int(rec["image"]["width"]), height=int(rec["image"]["height"]),
                          sizes=(sizes[0], sizes[1], sizes[2], len(raw)), sha256=tuple(shas),
                          record_sha256=hashlib.sha256(raw).hexdigest(), extras=tuple(extras)))
    return items


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


# ----------------------------------------------------------------------------- splits and mixing

def assign_splits(items: list[Item], splits: dict[str, float], seed: int) -> dict[str, str]:
    """Assign every subject (``subject_id``) to one split; returns ``{subject_id: split}``.

    Subjects are atomic, so no subject can appear in two splits. Algorithm: subjects are put in a
    seeded random order, then stably sorted by sample count (largest first). If there are at least
    as many subjects as splits, each split is first given one subject (the smallest remaining ones
    go to the smallest splits); the rest go one by one to the split with the largest deficit
    ``sum over sources of n_subject_src * (fraction * N_src - assigned_src) / N_src``.

    Raises:
        ShardInputError: fewer subjects than splits.
    """
    per_subject: dict[str, Counter] = defaultdict(Counter)
    for it in items:
        per_subject[it.subject][it.source] += 1
    names = sorted(per_subject)
    if len(names) < len(splits):
        raise ShardInputError(
            f"--split {','.join(f'{k}={v:g}' for k, v in splits.items())} cannot be satisfied: "
            f"{len(splits)} splits but only {len(names)} subject(s) ({', '.join(names[:10])}); "
            "a subject never crosses splits, so use fewer splits or add subjects")
    perm = rng_for(seed, "split").permutation(len(names))
    order = [names[i] for i in perm]
    order.sort(key=lambda s: -sum(per_subject[s].values()))
    n_src = Counter(it.source for it in items)
    assigned: dict[str, Counter] = {s: Counter() for s in splits}
    result: dict[str, str] = {}

    def give(subject: str, split: str) -> None:
        result[subject] = split
        assigned[split].update(per_subject[subject])

    # seed every split with one subject: smallest fractions get the smallest subjects
    for split in sorted(splits, key=lambda s: splits[s]):
        give(order.pop(), split)
    split_index = {s: i for i, s in enumerate(splits)}
    for subject in order:
        counts = per_subject[subject]

        def score(sp: str) -> tuple[float, int]:
            d = sum(n * (splits[sp] * n_src[src] - assigned[sp][src]) / n_src[src] for src, n in counts.items())
            return (d, -split_index[sp])

        give(subject, max(splits, key=score))
    return result


def apply_mix(split: str, items: list[Item], ratio: dict[str, float] | None, seed: int,
              stores: list[str]) -> tuple[list[Item], list[dict[str, Any]]]:
    """Down-sample the over-represented source of one split to reach ``ratio`` (source -> fraction).

    Keeps as many samples as possible: with ``T = min over sources of available_src / ratio_src``
    each source keeps ``min(available_src, round(ratio_src * T))`` samples; which samples are
    dropped is a seeded random choice. Returns ``(kept, excluded)`` where excluded entries carry the reason.

    Raises:
        ShardInputError: the split lacks a source that the ratio asks for.
    """
    if ratio is None:
        return items, []
    by_src: dict[str, list[Item]] = {s: [] for s in SOURCES}
    for it in items:
        by_src[it.source].append(it)
    missing = [s for s in SOURCES if ratio[s] > 0 and not by_src[s]]
    if missing:
        have = ", ".join(f"{s}={len(v)}" for s, v in by_src.items())
        raise ShardInputError(
            f"--mix for split {split!r} cannot be satisfied: it asks for "
            f"{', '.join(f'{s}={ratio[s]:g}' for s in SOURCES)} but the split has no {' or '.join(missing)} "
            f"samples ({have})")
    total = min(len(by_src[s]) / ratio[s] for s in SOURCES if ratio[s] > 0)
    keep = {s: min(len(by_src[s]), int(math.floor(ratio[s] * total + 0.5))) for s in SOURCES}
    kept, excluded = [], []
    target = ", ".join(f"{s}={ratio[s]:g}" for s in SOURCES)
    for s in SOURCES:
        group = sorted(by_src[s], key=lambda it: it.key)
        chosen = set(rng_for(seed, "mix", split, s).permutation(len(group))[: keep[s]].tolist())
        for i, it in enumerate(group):
            if i in chosen:
                kept.append(it)
            else:
                excluded.append({"key": it.key, "store": stores[it.store], "source": it.source,
                                 "subject_id": it.subject, "split": split,
                                 "reason": f"--mix: split {split} target {target}"})
    return kept, excluded


def shuffle(items: list[Item], seed: int, split: str) -> list[Item]:
    """Deterministic shuffle of one split: key-sorted, then a seeded permutation."""
    items = sorted(items, key=lambda it: it.key)
    perm = rng_for(seed, "order", split).permutation(len(items))
    return [items[i] for i in perm]


# ----------------------------------------------------------------------------- shard cutting

def sample_tar_bytes(it: Item, encode: dict[str, Any]) -> int:
    """Bytes a sample takes in a shard. Exact for ``exr``; for ``train`` an upper-bound estimate
    from the uncompressed encoded pixels (8-bit RGB, 16-bit depth or the source EXR, 8-bit mask).
    Optional extra members are packed as they are in both encodings."""
    extras = sum(tar_member_bytes(e[1]) for e in it.extras)
    if encode["name"] == "exr":
        return sum(tar_member_bytes(s) for s in it.sizes) + extras
    px = it.width * it.height
    depth = 2 * px + 1024 if encode.get("depth") == "png16" else it.sizes[1]
    return sum(tar_member_bytes(s) for s in (3 * px + 1024, depth, px + 1024, it.sizes[3] + 2048)) + extras


def cut_shards(by_split: dict[str, list[Item]], encode: dict[str, Any], shard_bytes: int | None,
               samples_per_shard: int | None) -> list[ShardPlan]:
    """Cut each split's ordered samples into shards ``{split}-{index:06d}.tar``.

    A new shard starts when the next sample would exceed ``samples_per_shard`` or push the shard
    past ``shard_bytes`` (a shard always holds at least one sample; samples are never split).
    """
    shards = []
    for split, items in by_split.items():
        cur: list[Item] = []
        size = 2 * TAR_BLOCK
        n = 0
        for it in items:
            b = sample_tar_bytes(it, encode)
            full = (samples_per_shard is not None and len(cur) >= samples_per_shard) or (
                shard_bytes is not None and cur and size + b > shard_bytes)
            if full:
                shards.append(ShardPlan(f"{split}-{n:06d}.tar", split, n, cur))
                n += 1
                cur, size = [], 2 * TAR_BLOCK
            cur.append(it)
            size += b
        if cur:
            shards.append(ShardPlan(f"{split}-{n:06d}.tar", split, n, cur))
    return shards


def make_plan(stores: list[str], splits: dict[str, float], mix: dict[str, dict[str, float] | None],
              seed: int, encode: dict[str, Any], shard_bytes: int | None, samples_per_shard: int | None,
              progress: bool = True) -> Plan:
    """Scan ``stores`` and build the full deterministic :class:`Plan`.

    Raises:
        ShardInputError: bad stores/samples (see :func:`scan_stores`), or a split or mix that
            cannot be satisfied.
    """
    items, skipped, counts = scan_stores(stores, progress)
    subject_split = assign_splits(items, splits, seed)
    grouped: dict[str, list[Item]] = {s: [] for s in splits}
    for it in items:
        grouped[subject_split[it.subject]].append(it)
    by_split: dict[str, list[Item]] = {}
    excluded: list[dict] = []
    problems = []
    for split in splits:
        try:
            kept, ex = apply_mix(split, grouped[split], mix.get(split), seed, stores)
        except ShardInputError as exc:
            problems.extend(exc.problems)
            continue
        excluded.extend(ex)
        by_split[split] = shuffle(kept, seed, split)
    if problems:
        raise ShardInputError(problems)
    shards = cut_shards(by_split, encode, shard_bytes, samples_per_shard)
    return Plan(stores=stores, store_counts=counts, splits=splits, mix=mix, by_split=by_split,
                shards=shards, excluded=excluded, skipped=skipped, subject_split=subject_split)


def fingerprint(plan: Plan, options: dict[str, Any]) -> str:
    """sha256 identifying the dataset: the format, the options and every (key, record sha256) in
    plan order. Store paths are not part of it, so moved stores still resume."""
    h = hashlib.sha256()
    h.update(json.dumps(options, sort_keys=True).encode("utf-8"))
    for sh in plan.shards:
        h.update(f"\n#{sh.name}\n".encode("utf-8"))
        for it in sh.items:
            h.update(f"{it.key} {it.record_sha256}\n".encode("utf-8"))
    return h.hexdigest()
