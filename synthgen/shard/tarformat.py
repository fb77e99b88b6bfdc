"""The tar format of shards: reproducible member headers, padding, sizes, and which members a reader accepts.

Writing (:mod:`.write`): every member header has ``mtime = 0``, ``uid = gid = 0``, empty ``uname``
and ``gname``, mode ``0o444``. The archive format is POSIX.1-2001 (pax); plain ustar headers are
used whenever a name fits, which is always the case for contract keys up to 90 characters. Format
reference: https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html#tag_20_92_13_06

The stream is exactly what ``tarfile.open(mode="w", format=PAX_FORMAT)`` + ``addfile`` + ``close``
write: per member a header (:func:`tar_header`), the data, NUL padding to a 512-byte block
(:func:`tar_member`); then two NUL blocks and NUL padding to a multiple of
:data:`tarfile.RECORDSIZE` (10240 bytes, :func:`tar_end`). :func:`tar_member_bytes` is the size of
one member in that stream (shard planning).

Reading (``synthgen shard verify`` and ``synthgen qa``): :func:`member_problem` is the one rule for
members that are not sample members of a shard and must be reported, never read: links and other
non-regular members, and names that are absolute or have a ``..`` component (they would point out
of the folder when extracted, and no synthgen shard has them).
"""

from __future__ import annotations

import tarfile

TAR_MTIME = 0
TAR_MODE = 0o444
TAR_ENCODING = "utf-8"  # member names are contract keys (ASCII); fixed so bytes do not depend on the locale
BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: archives are padded to a multiple of this
_NUL = bytes(RECORD)


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


def tar_member_bytes(size: int) -> int:
    """Bytes one tar member of ``size`` bytes takes: a 512-byte header plus data padded to 512."""
    return BLOCK + -(-size // BLOCK) * BLOCK


def member_problem(ti: tarfile.TarInfo) -> str | None:
    """Why tar member ``ti`` must not be read as a sample member, or None when it may be.

    Rejected: anything but a regular file (symbolic and hard links, folders, devices) and names
    that are absolute or have a ``..`` component. The message starts with ``member NAME:``; callers
    report it as a problem of the tar (``synthgen shard verify``: a bad shard; ``synthgen qa``: an
    ``inputs_readable`` error) and skip the member.
    """
    if not ti.isreg():
        return f"member {ti.name}: not a regular file"
    if ti.name.startswith("/") or ".." in ti.name.split("/"):
        return f"member {ti.name}: unsafe name (absolute or with a '..' component)"
    return None
