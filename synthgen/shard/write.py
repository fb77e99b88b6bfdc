"""Writing one byte-reproducible WebDataset shard (a POSIX tar file).

Reproducibility: every member header has ``mtime = 0``, ``uid = gid = 0``, empty ``uname`` and
``gname``, mode ``0o444``; members are written sample by sample in plan order and, within a
sample, as ``rgb``, ``depth``, ``mask``, the optional extra members listed in the record (e.g.
``depth_sensor.exr``, by name; packed unchanged in both encodings), ``json`` (so WebDataset groups
them into one sample).
The archive format is POSIX.1-2001 (pax); plain ustar headers are used whenever a name fits, which
is always the case for contract keys up to 90 characters. Format reference:
https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html#tag_20_92_13_06

The tar stream is laid out here rather than through ``tarfile.TarFile.addfile`` (which copies
every member through a small buffer): headers are :meth:`tarfile.TarInfo.tobuf` (or a byte-identical
ustar template, :func:`tar_header`) and the stream is exactly what ``tarfile.open(mode="w",
format=PAX_FORMAT)`` + ``addfile`` + ``close`` write: per member a header, the data, NUL padding
to a 512-byte block; then two NUL blocks and NUL padding to a multiple of
:data:`tarfile.RECORDSIZE` (10240 bytes). Tests compare the output with ``tarfile``'s and read it
back with the stock ``webdataset`` reader.

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
import tarfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from ..atomic import atomic_path
from ..contract import MEMBERS
from .codec import encode_train, member_names
from .plan import Item, ShardInputError, ShardPlan, keys_digest

TAR_MTIME = 0
TAR_MODE = 0o444
TAR_ENCODING = "utf-8"  # member names are contract keys (ASCII); fixed so bytes do not depend on the locale
BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240
_NUL = bytes(RECORD)
MAX_PENDING = 16 << 20


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = TAR_MTIME
    ti.mode = TAR_MODE
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    return ti


def tar_header(name: str, size: int) -> bytes:
    """The header block(s) of one regular-file member, byte-identical to
    ``_tarinfo(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")``.

    Fast path (ASCII name of at most 100 bytes, size below 8 GiB: no pax extended header is
    needed): a ustar header made from a template by patching the name, size and checksum fields
    (ustar layout: name at 0..100, size at 124..136 as 11 octal digits + NUL, checksum at 148..156
    as 6 octal digits + NUL + space over the header with that field read as spaces). Anything else
    goes through :meth:`tarfile.TarInfo.tobuf`.
    """
    if not name.isascii() or len(name) > 100 or size >= 0o77777777777:
        return _tarinfo(name, size).tobuf(tarfile.PAX_FORMAT, TAR_ENCODING, "surrogateescape")
    nb = name.encode("ascii")
    buf = bytearray(_HEADER_TEMPLATE)
    buf[0:len(nb)] = nb
    buf[124:136] = b"%011o\0" % size
    buf[148:155] = b"%06o\0" % sum(buf)  # the template's checksum field holds 8 spaces
    return bytes(buf)


def _header_template() -> bytes:
    hdr = bytearray(_tarinfo("", 0).tobuf(tarfile.PAX_FORMAT, TAR_ENCODING, "surrogateescape"))
    assert len(hdr) == BLOCK and hdr[0:100] == bytes(100)
    hdr[148:156] = b" " * 8
    return bytes(hdr)


_HEADER_TEMPLATE = _header_template()


def tar_member(name: str, data) -> list:
    """The tar pieces of one regular-file member: ``[header, data, NUL padding]`` (padding may be
    empty); ``data`` is bytes or a buffer. Header: :func:`tar_header`."""
    return [tar_header(name, len(data)), data, _NUL[: -len(data) % BLOCK]]


def tar_end(offset: int) -> bytes:
    """End-of-archive bytes after ``offset`` bytes of members: two NUL blocks, then NUL padding to
    a multiple of ``tarfile.RECORDSIZE`` (what ``TarFile.close`` writes)."""
    offset += 2 * BLOCK
    return bytes(2 * BLOCK + (-offset % RECORD))


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
        encode: encoding options (:func:`synthgen.shard_codec.encode_options`).
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
    exr = encode["name"] == "exr"
    # exr + check: this thread reads and hashes inputs, the helper writes and hashes the shard;
    # otherwise this thread reads (and encodes) and writes, the helper hashes the shard
    helper_writes = exr and check_inputs
    pending: deque[tuple[Future, int, bytearray | None]] = deque()  # (helper's job, bytes, buffer)
    pending_bytes = emitted = 0
    pool = _BufferPool()

    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0))
        sink = _Sink(fd)
        helper = ThreadPoolExecutor(1, "shard-writer")

        def emit(pieces: list, buf: bytearray | None) -> None:
            """Append ``pieces`` to the shard (the helper has one worker: stream order is kept)."""
            nonlocal pending_bytes, emitted
            if helper_writes:
                job = helper.submit(sink.write, pieces)
            else:
                job = helper.submit(sink.hash, pieces)
                sink.put(pieces)
            n = sum(len(p) for p in pieces)
            pending.append((job, n, buf))
            pending_bytes += n
            emitted += n

        def settle(keep: int, limit: int) -> None:
            """Wait for the oldest jobs until at most ``keep`` jobs or ``limit`` bytes are pending."""
            nonlocal pending_bytes
            while len(pending) > keep and pending_bytes > limit:
                job, n, buf = pending.popleft()
                job.result()  # re-raises the helper's OSError
                pending_bytes -= n
                if buf is not None:
                    pool.put(buf)  # written and hashed: reusable

        try:
            for it in shard.items:
                store = stores[it.store]
                layout = it.member_sizes()
                buf = pool.get(sum(size for _, size in layout))
                blobs = _read_sample(store, it, buf)
                if exr:
                    exts = [*names[:3], *(e[0] for e in it.extras), names[3]]
                    emit([p for ext, data in zip(exts, blobs) for p in tar_member(f"{it.key}.{ext}", data)], buf)
                    if check_inputs:  # while the helper writes; a mismatch aborts the whole shard
                        _check([hashlib.sha256(b).hexdigest() for b in blobs], it, store)
                else:
                    if check_inputs:
                        _check([hashlib.sha256(b).hexdigest() for b in blobs], it, store)
                    raw = [bytes(b) for b in blobs]
                    pool.put(buf)
                    try:
                        members = encode_train(it.key, dict(zip(MEMBERS, raw[:3])), json.loads(raw[-1]), encode)
                    except ValueError as exc:
                        raise ShardInputError(f"sample {it.key} in {store}: {exc}") from exc
                    extra = [(e[0], data) for e, data in zip(it.extras, raw[3:-1])]  # packed unchanged
                    members = members[:3] + extra + members[3:]
                    emit([p for ext, data in members for p in tar_member(f"{it.key}.{ext}", data)], None)
                settle(1, max_pending)
                if on_sample is not None:
                    on_sample()
            emit([tar_end(emitted)], None)
            settle(0, -1)
            os.fsync(fd)  # the data went to the disk during writing (see _Sink): this waits for the rest
        finally:
            helper.shutdown(wait=True, cancel_futures=True)  # no job may touch fd once it is closed
            os.close(fd)
        entry = {"file": path.name, "split": shard.split, "index": shard.index, "count": len(shard.items),
                 "bytes": sink.written, "sha256": sink.sha.hexdigest(), "first_key": shard.items[0].key,
                 "last_key": shard.items[-1].key, "keys_sha256": keys_digest(i.key for i in shard.items)}
    return entry


def _check(shas: list[str], it: Item, store: str) -> None:
    """``shas`` in :meth:`Item.member_sizes` order (json last)."""
    if shas[-1] != it.record_sha256:
        raise ShardInputError(f"sample {it.key} in {store}: {it.key}.json changed since the scan")
    want_all = [*zip(MEMBERS, it.sha256), *((e[0], e[2]) for e in it.extras)]
    for (m, want), got in zip(want_all, shas[:-1]):
        if got != want:
            raise ShardInputError(f"sample {it.key} in {store}: {it.key}.{m} does not match the sha256 in "
                                  "its record (file changed or corrupt)")
