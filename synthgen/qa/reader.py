"""Reading the samples of a QA input one at a time, undecoded (:class:`~synthgen.qa.samples.RawSample`).

- **store**: its file names are listed once, sorted, and grouped by key (names sharing the prefix
  ``KEY.`` are contiguous in sorted order), so a sample with a missing member is still seen.
- **shard folder**: tars are streamed with :mod:`tarfile`; members are grouped into samples the way
  WebDataset does it: consecutive members with the same key (the member name up to the first dot
  of its base name). Members that no sample member may be — links and other non-regular members,
  absolute names, names with a ``..`` component — are input errors, by the same rule as
  ``synthgen shard verify`` (:func:`synthgen.shard.tarformat.member_problem`), and are not read.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Iterator

from ..card import CARD_NAME
from ..contract import KEY_RE
from ..errors import ConfigError
from ..shard.tarformat import member_problem
from ..store import list_store, read_store_meta
from .inputs import InputProblems, InputSpec
from .samples import RawSample, is_member_ext

SHARD_RE = re.compile(r"^(?P<split>.+)-(?P<shard>\d{6})\.tar$")
UNSPLIT = "-"


def _store_split(path: Path) -> str | None:
    try:
        s = (read_store_meta(path) or {}).get("split")
    except ConfigError:  # a broken store.json is reported by read_meta
        return None
    return s if isinstance(s, str) and s else None


def iter_store(spec: InputSpec, ignored: list[str]) -> Iterator[RawSample]:
    """Yield the samples of a store in key order; names that are not sample members are appended
    to ``ignored`` (temporary ``.tmp-*`` files and ``_meta`` are skipped silently)."""
    path = spec.path
    default_split = spec.split or _store_split(path)

    listing = list_store(path)
    ignored += [str(path / n) for n in listing.other]
    for key, exts in listing.members.items():
        ignored += [str(path / f"{key}.{e}") for e in exts if not is_member_ext(e)
                    and f"{key}.{e}" != CARD_NAME]  # the dataset card is reported with the inputs
        members = {}
        for e in (e for e in exts if is_member_ext(e)):
            with open(path / f"{key}.{e}", "rb") as fh:
                members[e] = fh.read()
        if not members:
            continue
        split = spec.split or _record_split(members.get("json")) or default_split or UNSPLIT
        yield RawSample(str(path), split, key, members, "store")


def _record_split(js: bytes | None) -> str | None:
    if js is None:
        return None
    try:
        s = json.loads(js).get("split")
    except Exception:
        return None
    return s if isinstance(s, str) and s else None


def shard_files(path: Path) -> list[Path]:
    """Tars of a shard folder, sorted by name."""
    return sorted(p for p in path.iterdir() if p.suffix == ".tar" and p.is_file())


def iter_shards(spec: InputSpec, problems: InputProblems) -> Iterator[RawSample]:
    """Yield the samples of every tar in a shard folder, streaming each tar once.

    Damaged tars and members that are not safe to read (:func:`synthgen.shard.tarformat.member_problem`)
    are reported as ``problems`` errors, members with unknown extensions as notes.
    """
    for tar_path in shard_files(spec.path):
        m = SHARD_RE.match(tar_path.name)
        if m:
            split = spec.split or m.group("split")
        else:
            split = spec.split or tar_path.stem
            problems.note(f"{tar_path}: name does not follow {{split}}-{{shard:06d}}.tar; split taken as {split!r}")
        try:
            yield from _iter_tar(tar_path, split, problems)
        except (tarfile.TarError, OSError, EOFError) as exc:
            problems.error(f"{tar_path}: unreadable tar ({exc}); samples after the damage are not read")


def _iter_tar(tar_path: Path, split: str, problems: InputProblems) -> Iterator[RawSample]:
    """The samples of one tar, in order (see :func:`iter_shards`).

    Raises:
        tarfile.TarError, OSError, EOFError: the tar cannot be read on.
    """
    with tarfile.open(tar_path, "r|*") as tf:
        cur_key, members, damaged = None, {}, []
        for ti in tf:
            problem = member_problem(ti)
            if problem is not None:
                problems.error(f"{tar_path}: {problem}")
                continue
            base = ti.name.rsplit("/", 1)[-1]
            k, _, ext = base.partition(".")
            if not is_member_ext(ext) or not KEY_RE.match(k):
                problems.note(f"{tar_path}: member {ti.name!r} is not a sample member; ignored")
                continue
            data = tf.extractfile(ti).read()
            if k != cur_key or ext in members:  # new key, or the same key again: next sample
                if cur_key is not None:
                    yield RawSample(str(tar_path), split, cur_key, members, "shard", damaged)
                cur_key, members, damaged = k, {}, []
            if len(data) != ti.size:
                damaged.append(f"{tar_path}: member {ti.name} truncated ({len(data)} of {ti.size} bytes)")
                problems.error(damaged[-1])
            members[ext] = data
        if cur_key is not None:
            yield RawSample(str(tar_path), split, cur_key, members, "shard", damaged)
        if tar_path.stat().st_size < tf.offset + 1024:
            problems.error(f"{tar_path}: unreadable tar (ends without the end-of-archive marker: "
                           "truncated?); samples after the damage are not read")
