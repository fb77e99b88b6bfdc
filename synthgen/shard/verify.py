"""``synthgen shard verify``: check a shard folder against its manifest (sizes, sha256, members, keys).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import ShardInputError
from .codec import load_record
from .layout import CARD, META, find_manifest
from .manifest import MANIFEST
from .plan import keys_digest
from .tarformat import member_problem

log = logging.getLogger("synthgen.shard")


class _HashingReader:
    def __init__(self, fh):
        self.fh = fh
        self.sha = hashlib.sha256()
        self.n = 0

    def read(self, size: int = -1) -> bytes:
        b = self.fh.read(size)
        self.sha.update(b)
        self.n += len(b)
        return b


def verify_shard(path: Path, entry: dict, members: list[str], optional: list[str] | tuple = ()) -> list[str]:
    """Check one shard against its manifest entry in a single read; returns problems (empty = ok).

    Checks: presence, size, sha256, readable tar, regular files with safe names only
    (:func:`synthgen.shard.tarformat.member_problem`), every sample has exactly the
    members ``members`` in a row plus the optional members (``optional``, from the manifest's
    ``optional_members``) that its record lists, sample count, order/identity of keys
    (``keys_sha256``), and each member's sha256 against the sample's JSON record (naming the damaged
    sample): every member for EXR shards, the optional members (packed unchanged; the record's
    ``source_files``) for ``train`` shards.
    """
    if not path.is_file():
        return ["missing"]
    problems = []
    size = path.stat().st_size
    if size != entry["bytes"]:
        problems.append(f"size {size} bytes, manifest says {entry['bytes']}")
    keys: list[str] = []
    with open(path, "rb") as fh:
        rd = _HashingReader(fh)
        try:
            with tarfile.open(fileobj=rd, mode="r|", bufsize=1 << 20) as tar:
                for key, sample in _samples(tar, keys, problems):
                    problems += _sample_problems(key, sample, members, optional)
        except (tarfile.TarError, OSError, EOFError) as exc:
            problems.append(f"unreadable tar after {len(keys)} sample(s): {exc}")
        while rd.read(1 << 20):  # hash whatever follows the end-of-archive marker
            pass
    if rd.sha.hexdigest() != entry["sha256"]:
        problems.append("sha256 does not match the manifest")
    if len(keys) != entry["count"]:
        problems.append(f"{len(keys)} samples, manifest says {entry['count']}")
    elif keys_digest(keys) != entry["keys_sha256"]:
        problems.append("sample keys differ from the manifest")
    return problems


def _samples(tar: tarfile.TarFile, keys: list[str], problems: list[str]):
    """Yield ``(key, {member extension: sha256 hex, or the parsed record for "json"})`` per sample
    of a streamed tar, in order; appends each new key to ``keys`` and tar-level problems (unsafe
    members, keys not contiguous, invalid JSON) to ``problems``."""
    cur_key: str | None = None
    cur: dict[str, Any] = {}
    for ti in tar:
        problem = member_problem(ti)
        if problem is not None:
            problems.append(problem)
            continue
        key, _, ext = ti.name.partition(".")
        if key != cur_key:
            if cur_key is not None:
                yield cur_key, cur
            if key in keys:
                problems.append(f"sample {key}: members not contiguous or key repeated")
            keys.append(key)
            cur_key, cur = key, {}
        f = tar.extractfile(ti)
        if ext == "json":
            try:
                cur[ext] = load_record(f.read())
            except (ValueError, TypeError):
                problems.append(f"sample {key}: json member is not valid JSON")
                cur[ext] = None
        else:
            h = hashlib.sha256()
            while block := f.read(1 << 20):
                h.update(block)
            cur[ext] = h.hexdigest()
    if cur_key is not None:
        yield cur_key, cur


def _sample_problems(key: str, cur: dict[str, Any], members: list[str], optional: list[str] | tuple) -> list[str]:
    """Problems of one sample: its members against ``members`` + ``optional`` and the members its
    record lists, and each member's sha256 against the record."""
    problems = []
    rec = cur.get("json")
    exr = "rgb.exr" in members
    files = {}
    if isinstance(rec, dict):
        # exr: the members as packed; train: the optional members, packed unchanged (source_files) or
        # resampled by --size (then listed under files)
        files = (rec.get("files") if exr else rec.get("files") or rec.get("source_files")) or {}
        files = files if isinstance(files, dict) else {}
    listed_extra = sorted(m for m in files if m not in ("rgb.exr", "depth.exr", "mask.exr"))
    got = sorted(cur)
    unknown = [m for m in got if m not in members and m not in optional]
    if unknown or any(m not in cur for m in members):
        problems.append(f"sample {key}: members {got}, expected {sorted(members)}"
                        + (f" plus optional {sorted(optional)}" if optional else ""))
    elif sorted(m for m in got if m not in members) != listed_extra and isinstance(rec, dict):
        problems.append(f"sample {key}: optional members {sorted(m for m in got if m not in members)} "
                        f"differ from those its record lists {listed_extra}")
    check = ("rgb.exr", "depth.exr", "mask.exr", *listed_extra) if exr else listed_extra
    for m in check:
        want = files.get(m, {}).get("sha256") if isinstance(files.get(m), dict) else None
        if m in cur and want is not None and cur[m] != want:
            problems.append(f"sample {key}: {m} does not match the sha256 in its record")
    return problems


def verify(out: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    """Verify every shard of ``out`` against ``out/_meta/manifest.json`` (format 1: ``out/manifest.json``).

    Returns:
        ``{"ok": bool, "shards": n, "samples": n, "bad": {file: [reasons]}, "warnings": [...]}``.

    Raises:
        ShardInputError: no readable manifest in ``out``.
    """
    out = Path(out)
    mpath = find_manifest(out) or out / MANIFEST
    try:
        m = json.loads(mpath.read_text("utf-8"))
        shards, members = m["shards"], m["members"]
        optional = m.get("optional_members", [])
    except FileNotFoundError as exc:
        raise ShardInputError(f"{mpath}: no manifest (not a synthgen shard folder, or the run did not finish)") from exc
    except Exception as exc:
        raise ShardInputError(f"{mpath}: unreadable manifest ({exc})") from exc
    bad: dict[str, list[str]] = {}
    for e in tqdm(shards, desc="verify", unit="shard", disable=not progress):
        problems = verify_shard(out / e["file"], e, members, optional)
        if problems:
            bad[e["file"]] = problems
    listed = {e["file"] for e in shards}
    warnings = [f"{p.name}: shard not listed in the manifest" for p in sorted(out.glob("*.tar")) if p.name not in listed]
    for split, st in m.get("splits", {}).items():
        rel = st.get("wids") if isinstance(st, dict) and st.get("wids") else f"{split}.wids.json"
        wp = out / rel
        try:
            wl = json.loads(wp.read_text("utf-8"))
            # urls are relative to the list (format 2: "../train-000000.tar" from _meta/)
            urls = [os.path.normpath(os.path.join(os.path.dirname(rel), s["url"])) for s in wl["shardlist"]]
            if urls != [e["file"] for e in shards if e["split"] == split]:
                bad[rel] = ["shard list differs from the manifest"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bad[rel] = [f"missing or unreadable wids shard list ({exc})"]
    if mpath.parent.name == META and not (out / CARD).is_file():
        warnings.append(f"{CARD}: no dataset card")
    return {"ok": not bad, "shards": len(shards), "samples": sum(e["count"] for e in shards), "bad": bad,
            "warnings": warnings}
