"""Planning a sharded dataset: split by subject, mix sources, shuffle, cut shards.

The plan is made from the scanned sample *records* (:mod:`.scan`; no pixel data is read), so
memory is O(number of samples) with a small constant (one :class:`Item` of a few hundred bytes per
sample), independent of image sizes. The plan is a deterministic function of the inputs and the
options: the same stores, options and seed always give the same splits, the same order and the
same shard boundaries, which is what makes shards byte-reproducible and runs resumable.

Randomness comes from :func:`rng_for` (numpy PCG64 seeded from ``sha256(seed, purpose)``), so it
does not depend on Python's hash randomisation or on the order stores were listed in.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..errors import ShardInputError
from .options import SOURCES, parse_mix, parse_size, parse_splits  # noqa: F401 (re-exported)
from .scan import Item, scan_stores  # noqa: F401 (Item re-exported)
from .tarformat import BLOCK, tar_member_bytes


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
    """Bytes a sample takes in a shard. Exact for ``exr``; for ``train`` and for resized samples an
    upper-bound estimate from the uncompressed encoded pixels (8-bit RGB, 16-bit depth or the source
    EXR, 8-bit mask; resized EXR: half RGB, float depth, half mask). Optional extra members are
    packed as they are in both encodings (resampled with a resize)."""
    extras = sum(tar_member_bytes(e[1]) for e in it.extras)
    rs = encode.get("resize")
    if rs:  # resized: an upper bound from the target size (uncompressed pixels)
        px = rs["width"] * rs["height"]
        extras = sum(tar_member_bytes(4 * px + 2048) for _ in it.extras)
        if encode["name"] == "exr":
            return sum(tar_member_bytes(s) for s in (6 * px + 2048, 4 * px + 2048, 2 * px + 2048,
                                                      it.sizes[3] + 4096)) + extras
        depth = 2 * px + 1024 if encode.get("depth") == "png16" else 4 * px + 2048
        return sum(tar_member_bytes(s) for s in (3 * px + 1024, depth, px + 1024, it.sizes[3] + 4096)) + extras
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
        size = 2 * BLOCK
        n = 0
        for it in items:
            b = sample_tar_bytes(it, encode)
            full = (samples_per_shard is not None and len(cur) >= samples_per_shard) or (
                shard_bytes is not None and cur and size + b > shard_bytes)
            if full:
                shards.append(ShardPlan(f"{split}-{n:06d}.tar", split, n, cur))
                n += 1
                cur, size = [], 2 * BLOCK
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
