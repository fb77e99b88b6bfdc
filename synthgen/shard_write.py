"""Writing one byte-reproducible WebDataset shard (a POSIX tar file) with :mod:`tarfile`.

Reproducibility: every member header has ``mtime = 0``, ``uid = gid = 0``, empty ``uname`` and
``gname``, mode ``0o444``; members are written sample by sample in plan order and, within a
sample, as ``rgb``, ``depth``, ``mask``, ``json`` (so WebDataset groups them into one sample).
The archive format is POSIX.1-2001 (pax); plain ustar headers are used whenever a name fits, which
is always the case for contract keys up to 90 characters. Format reference:
https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html#tag_20_92_13_06

Memory: one member at a time is held in memory (``exr``), or one decoded sample (``train``).
The shard is written under a ``.tmp-*`` name in the output folder and renamed when complete
(:func:`synthgen.atomic.atomic_path`), so an interrupted run never leaves a partial shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from .atomic import atomic_path
from .contract import MEMBERS, member_path
from .shard_codec import encode_train, member_names
from .shard_plan import Item, ShardInputError, ShardPlan, keys_digest

TAR_MTIME = 0
TAR_MODE = 0o444


class _HashingWriter:
    """File-object wrapper that counts what is written and sha256-hashes it in a helper thread.

    ``hashlib`` releases the GIL on large buffers, so hashing overlaps with reading and writing.
    Chunks are hashed in write order (one worker thread); at most ``max_pending`` chunks wait.
    """

    def __init__(self, fh, pool: ThreadPoolExecutor, max_pending: int = 8):
        self.fh = fh
        self.sha = hashlib.sha256()
        self.n = 0
        self.pool = pool
        self.pending: deque = deque()
        self.max_pending = max_pending

    def write(self, b) -> int:
        if not isinstance(b, bytes):
            b = bytes(b)  # the hash runs later: never hand it a buffer that may change
        self.fh.write(b)
        self.n += len(b)
        self.pending.append(self.pool.submit(self.sha.update, b))
        while len(self.pending) > self.max_pending:
            self.pending.popleft().result()
        return len(b)

    def tell(self) -> int:
        return self.n

    def flush(self) -> None:
        self.fh.flush()

    def hexdigest(self) -> str:
        while self.pending:
            self.pending.popleft().result()
        return self.sha.hexdigest()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = TAR_MTIME
    ti.mode = TAR_MODE
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    return ti


def _read_member(store: str, it: Item, idx: int) -> bytes:
    p = member_path(store, it.key, MEMBERS[idx] if idx < 3 else "json")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ShardInputError(f"sample {it.key} in {store}: cannot read {p.name} ({exc.strerror or exc})") from exc
    if len(data) != it.sizes[idx]:
        raise ShardInputError(f"sample {it.key} in {store}: {p.name} changed since the scan "
                              f"({len(data)} bytes, expected {it.sizes[idx]})")
    return data


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_shard(path: str | os.PathLike, shard: ShardPlan, stores: list[str], encode: dict[str, Any],
                check_inputs: bool = True, on_sample: Callable[[], None] | None = None) -> dict[str, Any]:
    """Write ``shard`` to ``path`` atomically and return its manifest entry.

    Args:
        path: final shard path (``.../{split}-{index:06d}.tar``).
        shard: the samples to pack, in order.
        stores: store folders, indexed by ``Item.store``.
        encode: encoding options (:func:`synthgen.shard_codec.encode_options`).
        check_inputs: verify each member's sha256 against the sample record (hashing runs in a
            helper thread, in parallel with writing).
        on_sample: called after each sample (progress bars).

    Returns:
        ``{"file", "split", "index", "count", "bytes", "sha256", "first_key", "last_key",
        "keys_sha256"}``.

    Raises:
        ShardInputError: a member is unreadable, changed size, or its sha256 does not match its
            record (message names the sample, store and member); no shard is left behind.
    """
    path = Path(path)
    names = member_names(encode)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh, ThreadPoolExecutor(1) as pool, \
            ThreadPoolExecutor(1) as out_pool:
        hw = _HashingWriter(fh, out_pool)
        tar = tarfile.open(fileobj=hw, mode="w", format=tarfile.PAX_FORMAT, copybufsize=1 << 20)
        for it in shard.items:
            store = stores[it.store]
            blobs = [_read_member(store, it, i) for i in range(4)]
            pending = pool.submit(lambda bs: [_sha(b) for b in bs], blobs) if check_inputs else None
            if encode["name"] == "exr":
                # written while the helper thread hashes; a mismatch aborts the whole shard below
                members = list(zip(names, blobs))
            else:
                rec = json.loads(blobs[3])
                if pending is not None:
                    _check(pending.result(), it, store)
                    pending = None
                try:
                    members = encode_train(it.key, dict(zip(MEMBERS, blobs[:3])), rec, encode)
                except ValueError as exc:
                    raise ShardInputError(f"sample {it.key} in {store}: {exc}") from exc
            for ext, data in members:
                tar.addfile(_tarinfo(f"{it.key}.{ext}", len(data)), io.BytesIO(data))
            tar.members.clear()  # write mode never needs them; keeps memory flat for huge shards
            if pending is not None:
                _check(pending.result(), it, store)
            if on_sample is not None:
                on_sample()
        tar.close()
        fh.flush()
        entry = {"file": path.name, "split": shard.split, "index": shard.index, "count": len(shard.items),
                 "bytes": hw.n, "sha256": hw.hexdigest(), "first_key": shard.items[0].key,
                 "last_key": shard.items[-1].key, "keys_sha256": keys_digest(i.key for i in shard.items)}
    return entry


def _check(shas: list[str], it: Item, store: str) -> None:
    if shas[3] != it.record_sha256:
        raise ShardInputError(f"sample {it.key} in {store}: {it.key}.json changed since the scan")
    for m, got, want in zip(MEMBERS, shas, it.sha256):
        if got != want:
            raise ShardInputError(f"sample {it.key} in {store}: {it.key}.{m} does not match the sha256 in "
                                  "its record (file changed or corrupt)")
