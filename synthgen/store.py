"""A sample store: a folder of samples (see :mod:`synthgen.contract`) plus ``_meta/``.

One owner for everything about a store as a whole: listing its keys, reading ``_meta/store.json``
(the job that produced it), checking which samples are complete, removing ``.tmp-*`` leftovers of
killed writers, and :func:`open_store`, the read API for Python users::

    store = synthgen.open_store("out/portrait")
    for key in store.keys():
        s = store[key]            # Sample: rgb (H,W,3) float32 linear, depth (H,W) float32 metres, mask, K
        assert store.verify(key) == []
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .atomic import TMP_PREFIX
from .errors import ConfigError

META_DIR = "_meta"
"""Store-level files (``store.json``, ``ledger.jsonl``, ``run.json``, quarantine lists, previews)."""


@dataclass
class Listing:
    """One directory listing of a store, parsed (see :func:`list_store`).

    Attributes:
        keys: sorted keys that have a ``KEY.json`` record (complete or not).
        members: key -> sorted member extensions present (``rgb.exr``, ``json``, ...) for every
            valid key prefix, with or without a record.
        other: sorted names that are neither ``_meta``, ``.tmp-*`` leftovers nor ``KEY.ext`` files.
    """

    keys: list[str]
    members: dict[str, list[str]]
    other: list[str]


def list_store(store: str | os.PathLike) -> Listing:
    """List ``store`` once (``os.scandir``; plain strings, no per-file stat) and group its files by key.

    Raises:
        OSError: the folder cannot be listed.
    """
    from .contract import KEY_RE

    members: dict[str, list[str]] = {}
    other = []
    for name in sorted(e.name for e in os.scandir(store)):
        if name == META_DIR or name.startswith(TMP_PREFIX):
            continue
        key, dot, ext = name.partition(".")
        if dot and ext and KEY_RE.match(key):
            members.setdefault(key, []).append(ext)
        else:
            other.append(name)
    keys = [k for k, exts in members.items() if "json" in exts]
    return Listing(keys=keys, members=members, other=other)


def list_keys(store: str | os.PathLike) -> list[str]:
    """Sorted keys of all samples in ``store`` that have a JSON record (complete or not)."""
    return list_store(store).keys


def read_store_meta(store: str | os.PathLike) -> dict[str, Any] | None:
    """The store's ``_meta/store.json`` (the rendered job: resolved config, config hash, plan), or None.

    Raises:
        ConfigError: the file exists but cannot be read or parsed (the message names it).
    """
    p = Path(store) / META_DIR / "store.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: unreadable run ledger ({exc}); fix or remove it, or use a new --out") from exc


def clean_tmp(store: str | os.PathLike, min_age_s: float = 0.0) -> int:
    """Remove ``.tmp-*`` leftovers of killed writers from the store, ``_meta`` and previews; returns the count.

    Call it only while holding the store's lock (:class:`synthgen.storelock.StoreLock`): a
    ``.tmp-*`` file is an atomic write in progress (:mod:`synthgen.atomic`), and with the lock held
    no other driver, and none of its workers, writes into the store, so every such file that is
    not our own in-flight write is provably abandoned. ``synthgen render`` calls it before its
    workers start and after they have all stopped. ``min_age_s`` keeps files modified more recently
    than that: after taking over the lock of a driver that just died, whose workers on a joined
    cluster may take a few seconds to be stopped by Ray.
    """
    import time

    out = Path(store)
    n = 0
    now = time.time()
    for d in (out, out / META_DIR, out / META_DIR / "previews"):
        if d.is_dir():
            for p in d.glob(TMP_PREFIX + "*"):
                with contextlib.suppress(OSError):
                    if min_age_s and now - p.stat().st_mtime < min_age_s:
                        continue
                    p.unlink()
                    n += 1
    return n


def sample_problems(store: str | os.PathLike, key: str, chash: str | None = None) -> list[str]:
    """Why sample ``key`` is not complete: :func:`synthgen.contract.verify_sample`'s problems (missing
    record or member, sha256 mismatch, invalid record), or a ``render.config_hash`` other than
    ``chash`` (records without a hash, from older versions, are accepted); [] when complete."""
    from .contract import member_path, verify_sample

    out = Path(store)
    if not member_path(out, key, "json").exists():
        return [f"{member_path(out, key, 'json')}: record missing"]
    problems = verify_sample(out, key)
    if problems or chash is None:
        return problems
    try:
        rec = json.loads(member_path(out, key, "json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{member_path(out, key, 'json')}: unreadable ({exc})"]
    h = (rec.get("render") or {}).get("config_hash")
    if h is not None and h != chash:
        return [f"{member_path(out, key, 'json')}: rendered with another config (hash {str(h)[:12]}, "
                f"this job {chash[:12]})"]
    return []


def sample_complete(store: str | os.PathLike, key: str, chash: str) -> bool:
    """True when ``KEY.json`` exists, every member's sha256 matches it and its ``render.config_hash``
    is ``chash`` (records without a hash, from older versions, are accepted)."""
    return not sample_problems(store, key, chash)


def complete_keys(store: str | os.PathLike, keys: list[str], chash: str) -> set[str]:
    """The subset of ``keys`` complete in ``store`` (checksums verified on 8 threads)."""
    with ThreadPoolExecutor(8) as ex:
        flags = list(ex.map(lambda k: sample_complete(store, k, chash), keys))
    return {k for k, f in zip(keys, flags) if f}


def check_keys(store: str | os.PathLike, keys: list[str], chash: str) -> dict[str, list[str]]:
    """:func:`sample_problems` of each of ``keys`` (8 threads): key -> problems ([] when complete)."""
    with ThreadPoolExecutor(8) as ex:
        return dict(zip(keys, ex.map(lambda k: sample_problems(store, k, chash), keys)))


class Store:
    """Read access to a sample store (rendered or ingested). Made by :func:`open_store`.

    Attributes:
        path: the store folder.
        meta: ``_meta/store.json`` of a rendered store (resolved config, config hash, plan), or
            ``_meta/ingest_report.json`` for an ingested one; None when neither exists.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConfigError(f"{self.path}: not a sample store (no such folder)")
        self.meta = read_store_meta(self.path)
        if self.meta is None:
            ingest = self.path / META_DIR / "ingest_report.json"
            with contextlib.suppress(OSError, ValueError):
                self.meta = json.loads(ingest.read_text("utf-8"))

    def keys(self) -> list[str]:
        """Sorted sample keys (samples with a JSON record)."""
        return list_keys(self.path)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, key: object) -> bool:
        from .contract import member_path

        return isinstance(key, str) and member_path(self.path, key, "json").is_file()

    def __getitem__(self, key: str):
        """The sample ``key`` as :class:`synthgen.contract.Sample` (arrays, record, ``K``, ``camera_to_world``).

        Raises:
            KeyError: no such sample.
            ContractError / ExrError: the sample is damaged (the message names the file).
        """
        from .contract import read_sample

        if key not in self:
            raise KeyError(f"{self.path}: no sample {key!r}")
        return read_sample(self.path, key)

    def verify(self, key: str) -> list[str]:
        """Problems of sample ``key`` (missing members, sha256 mismatches, record errors); [] when intact."""
        from .contract import verify_sample

        return verify_sample(self.path, key)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, {len(self)} samples)"


def open_store(path: str | os.PathLike) -> Store:
    """Open the sample store at ``path`` for reading (see :class:`Store`).

    Raises:
        ConfigError: ``path`` is not a folder, or its ``_meta/store.json`` is unreadable.
    """
    return Store(path)
