"""Writing one byte-reproducible WebDataset shard (a POSIX tar file).

Reproducibility: members are written sample by sample in plan order and, within a sample, as
``rgb``, ``depth``, ``mask``, the optional extra members listed in the record (e.g.
``depth_sensor.exr``, by name; packed unchanged in both encodings), ``json`` (so WebDataset groups
them into one sample). Headers, padding and the end of the archive are :mod:`.tarformat`'s
(``mtime = 0``, ``uid = gid = 0``, mode ``0o444``, pax/ustar).

The tar stream is laid out here rather than through ``tarfile.TarFile.addfile`` (which copies
every member through a small buffer); it is byte-identical to ``tarfile``'s. Tests compare the
output with ``tarfile``'s and read it back with the stock ``webdataset`` reader.

Throughput (see docs/shard.md, "Benchmark"): each input file is read **once** (``readinto`` a
reused buffer); those very bytes are (a) checked against the sha256 in the sample record
(``check_inputs``), (b) written to the shard with one ``writev`` per sample and (c) fed to the
shard's sha256, in stream order. The work is split over two threads (``hashlib`` and file I/O
release the GIL), see :func:`write_shard`. Writeback to disk is started every 8 MiB
(``sync_file_range`` on Linux) so that the single ``fsync`` per shard, when it is complete, has
little left to wait for.

Memory: at most ``max_pending`` bytes of samples (default 16 MiB, at least one sample) are read
but not yet written and hashed; ``train`` also holds one decoded sample. The shard is written under
a ``.tmp-*`` name in the output folder and renamed when complete
(:func:`synthgen.atomic.atomic_path`), so an interrupted run never leaves a partial shard.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from ..atomic import atomic_path
from ..contract import MEMBERS
from ..errors import ShardInputError
from .codec import encode_sample, member_names
from .plan import ShardPlan, keys_digest
from .scan import Item
from .tarformat import _tarinfo, tar_end, tar_header, tar_member  # noqa: F401 (_tarinfo, tar_header re-exported)

MAX_PENDING = 16 << 20


def _writev_all(fd: int, pieces: Sequence[bytes]) -> None:
    views = [memoryview(p) for p in pieces if len(p)]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    """``sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE)`` from the C library (Linux;
    not in :mod:`os`), or None where unavailable."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int

    def start_writeback(fd: int, offset: int, nbytes: int) -> None:
        fn(fd, offset, nbytes, 2)  # SYNC_FILE_RANGE_WRITE: start writeback, do not wait; errors: fsync reports

    return start_writeback


_start_writeback = _load_sync_file_range()
WRITEBACK_CHUNK = 8 << 20


def _read_sample(store: str, it: Item, buf: bytearray) -> list[memoryview]:
    """Read the files of ``it`` (rgb, depth, mask, optional extras, json: :meth:`Item.member_sizes`)
    back to back into ``buf``; return a view of each. One ``readinto`` per file, no allocation.

    Raises:
        ShardInputError: a file is unreadable or its size differs from the scan (names the sample).
    """
    mv = memoryview(buf)
    views, off = [], 0
    for ext, size in it.member_sizes():
        name = f"{it.key}.{ext}"
        try:
            with open(os.path.join(store, name), "rb", buffering=0) as fh:
                got = os.fstat(fh.fileno()).st_size
                if got == size:
                    view = mv[off:off + size]
                    n = 0
                    while n < size and (k := fh.readinto(view[n:])):
                        n += k
                    got = n if n < size else got
        except OSError as exc:
            raise ShardInputError(f"sample {it.key} in {store}: cannot read {name} ({exc.strerror or exc})") from exc
        if got != size:
            raise ShardInputError(f"sample {it.key} in {store}: {name} changed since the scan "
                                  f"({got} bytes, expected {size})")
        views.append(mv[off:off + size])
        off += size
    return views


class _BufferPool:
    """Reusable sample buffers (a fresh ``bytes`` per file would page-fault and zero every byte)."""

    def __init__(self) -> None:
        self.free: list[bytearray] = []

    def get(self, size: int) -> bytearray:
        for i, b in enumerate(self.free):
            if len(b) >= size:
                return self.free.pop(i)
        if self.free:
            self.free.pop(0)  # too small: let it go
        return bytearray(size + (size >> 4))  # headroom: samples vary a little in size

    def put(self, buf: bytearray) -> None:
        self.free.append(buf)


class _Sink:
    """The shard's file descriptor and sha256. ``write`` appends pieces and hashes them (in the
    order of the calls), starting the disk writeback every :data:`WRITEBACK_CHUNK` bytes."""

    def __init__(self, fd: int):
        self.fd = fd
        self.sha = hashlib.sha256()
        self.written = 0
        self.flushed = 0

    def write(self, pieces: Sequence[bytes]) -> None:
        self.put(pieces)
        self.hash(pieces)

    def put(self, pieces: Sequence[bytes]) -> None:
        _writev_all(self.fd, pieces)
        self.written += sum(len(p) for p in pieces)
        if _start_writeback is not None and self.written - self.flushed >= WRITEBACK_CHUNK:
            _start_writeback(self.fd, self.flushed, self.written - self.flushed)  # the disk works meanwhile
            self.flushed = self.written

    def hash(self, pieces: Sequence[bytes]) -> None:
        for p in pieces:
            self.sha.update(p)


def write_shard(path: str | os.PathLike, shard: ShardPlan, stores: list[str], encode: dict[str, Any],
                check_inputs: bool = True, on_sample: Callable[[], None] | None = None,
                max_pending: int = MAX_PENDING) -> dict[str, Any]:
    """Write ``shard`` to ``path`` atomically and return its manifest entry.

    Work is split over two threads so that both cores of a small machine stay busy (``hashlib``
    and file I/O release the GIL): with ``check_inputs`` this thread reads each sample and checks
    its sha256s while a helper thread writes the previous samples and hashes the shard; without,
    this thread reads and writes while the helper hashes the shard.

    Args:
        path: final shard path (``.../{split}-{index:06d}.tar``).
        shard: the samples to pack, in order.
        stores: store folders, indexed by ``Item.store``.
        encode: encoding options (:func:`synthgen.shard.codec.encode_options`).
        check_inputs: verify each member's sha256 against the sample record, and the record's
            bytes against the scan, on the very bytes that are written.
        on_sample: called after each sample (progress bars).
        max_pending: bytes of samples read but not yet written and hashed (memory bound; at
            least one sample is always in flight).

    Returns:
        ``{"file", "split", "index", "count", "bytes", "sha256", "first_key", "last_key",
        "keys_sha256"}``; ``sha256`` and ``bytes`` describe the shard file as written.

    Raises:
        ShardInputError: a member is unreadable, changed size, or its sha256 does not match its
            record (message names the sample, store and member); no shard is left behind.
        OSError: the shard cannot be written (e.g. disk full); no shard is left behind.
    """
    path = Path(path)
    names = member_names(encode)
    # exr + check: this thread reads and hashes inputs, the helper writes and hashes the shard;
    # otherwise this thread reads (and encodes) and writes, the helper hashes the shard
    helper_writes = encode["name"] == "exr" and check_inputs

    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0))
        sink = _Sink(fd)
        pipe = _Pipeline(sink, helper_writes, _BufferPool())
        try:
            for it in shard.items:
                _emit_sample(pipe, it, stores[it.store], names, encode, check_inputs)
                pipe.settle(1, max_pending)
                if on_sample is not None:
                    on_sample()
            pipe.emit([tar_end(pipe.emitted)], None)
            pipe.settle(0, -1)
            os.fsync(fd)  # the data went to the disk during writing (see _Sink): this waits for the rest
        finally:
            pipe.shutdown()  # no job may touch fd once it is closed
            os.close(fd)
        entry = {"file": path.name, "split": shard.split, "index": shard.index, "count": len(shard.items),
                 "bytes": sink.written, "sha256": sink.sha.hexdigest(), "first_key": shard.items[0].key,
                 "last_key": shard.items[-1].key, "keys_sha256": keys_digest(i.key for i in shard.items)}
    return entry


class _Pipeline:
    """The shard's pieces in stream order, handed to one helper thread (so the order is kept).

    With ``helper_writes`` the helper writes and hashes them (:meth:`_Sink.write`); otherwise this
    thread writes them and the helper hashes them. Tracks the pieces in flight (``pending``: the
    helper's job, its bytes, the sample buffer to give back to ``pool`` once done) so that memory
    stays bounded (:meth:`settle`).
    """

    def __init__(self, sink: _Sink, helper_writes: bool, pool: _BufferPool):
        self.sink, self.helper_writes, self.pool = sink, helper_writes, pool
        self.helper = ThreadPoolExecutor(1, "shard-writer")
        self.pending: deque[tuple[Future, int, bytearray | None]] = deque()
        self.pending_bytes = 0
        self.emitted = 0

    def emit(self, pieces: list, buf: bytearray | None) -> None:
        """Append ``pieces`` to the shard; ``buf`` (their memory) is reused once they are written and hashed."""
        if self.helper_writes:
            job = self.helper.submit(self.sink.write, pieces)
        else:
            job = self.helper.submit(self.sink.hash, pieces)
            self.sink.put(pieces)
        n = sum(len(p) for p in pieces)
        self.pending.append((job, n, buf))
        self.pending_bytes += n
        self.emitted += n

    def settle(self, keep: int, limit: int) -> None:
        """Wait for the oldest jobs until at most ``keep`` jobs or ``limit`` bytes are pending."""
        while len(self.pending) > keep and self.pending_bytes > limit:
            job, n, buf = self.pending.popleft()
            job.result()  # re-raises the helper's OSError
            self.pending_bytes -= n
            if buf is not None:
                self.pool.put(buf)  # written and hashed: reusable

    def shutdown(self) -> None:
        self.helper.shutdown(wait=True, cancel_futures=True)


def _emit_sample(pipe: _Pipeline, it: Item, store: str, names: Sequence[str], encode: dict[str, Any],
                 check_inputs: bool) -> None:
    """Read sample ``it`` once and emit its members: as stored (``exr``) or re-encoded (``train``).

    Raises:
        ShardInputError: a member is unreadable, changed, fails its sha256 or cannot be encoded.
    """
    buf = pipe.pool.get(sum(size for _, size in it.member_sizes()))
    blobs = _read_sample(store, it, buf)
    if encode["name"] == "exr" and not encode.get("resize"):
        exts = [*names[:3], *(e[0] for e in it.extras), names[3]]
        pipe.emit([p for ext, data in zip(exts, blobs) for p in tar_member(f"{it.key}.{ext}", data)], buf)
        if check_inputs:  # while the helper writes; a mismatch aborts the whole shard
            _check([hashlib.sha256(b).hexdigest() for b in blobs], it, store)
        return
    if check_inputs:
        _check([hashlib.sha256(b).hexdigest() for b in blobs], it, store)
    raw = [bytes(b) for b in blobs]
    pipe.pool.put(buf)
    extras = [(e[0], data) for e, data in zip(it.extras, raw[3:-1])]
    try:  # train encoding and/or resize; extras packed unchanged unless resized
        members = encode_sample(it.key, dict(zip(MEMBERS, raw[:3])), extras, json.loads(raw[-1]), encode)
    except ValueError as exc:
        raise ShardInputError(f"sample {it.key} in {store}: {exc}") from exc
    pipe.emit([p for ext, data in members for p in tar_member(f"{it.key}.{ext}", data)], None)


def _check(shas: list[str], it: Item, store: str) -> None:
    """``shas`` in :meth:`Item.member_sizes` order (json last)."""
    if shas[-1] != it.record_sha256:
        raise ShardInputError(f"sample {it.key} in {store}: {it.key}.json changed since the scan")
    want_all = [*zip(MEMBERS, it.sha256), *((e[0], e[2]) for e in it.extras)]
    for (m, want), got in zip(want_all, shas[:-1]):
        if got != want:
            raise ShardInputError(f"sample {it.key} in {store}: {it.key}.{m} does not match the sha256 in "
                                  "its record (file changed or corrupt)")
