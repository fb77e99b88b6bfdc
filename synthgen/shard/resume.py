"""Resuming ``synthgen shard``: the state of the output folder and the journal of finished shards.

While a run is in progress, ``DIR/.shard-progress.jsonl`` (:data:`PROGRESS`) holds a first line
``{"format", "fingerprint"}`` and then one manifest entry per finished shard, appended (and
fsynced) as each shard is renamed into place. A rerun with the same fingerprint keeps every
finished shard whose file is present with the recorded size and writes the rest; a folder holding
another dataset (another fingerprint) or unrelated files is refused.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..atomic import TMP_PREFIX, atomic_path
from ..errors import ShardInputError
from .layout import legacy_manifest
from .manifest import FORMAT, MANIFEST

log = logging.getLogger("synthgen.shard")

PROGRESS = ".shard-progress.jsonl"


def read_progress(path: Path) -> tuple[str | None, dict[str, dict]]:
    """Journal -> (fingerprint, {shard file: entry}). A torn last line (killed mid-append) is ignored."""
    fp, entries = None, {}
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        return None, {}
    for i, line in enumerate(lines):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ShardInputError(f"{path}: corrupt journal line {i + 1}; delete the output folder and rerun")
        if i == 0:
            fp = obj.get("fingerprint")
        else:
            entries[obj["file"]] = obj
    return fp, entries


def append_progress(path: Path, obj: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(obj, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def prepare_out(out: Path, fp: str) -> dict[str, dict]:
    """Check that ``out`` is empty or holds this very dataset; return shards already finished.

    Raises:
        ShardInputError: ``out`` is a file, or holds a different dataset or unrelated files.
    """
    if out.exists() and not out.is_dir():
        raise ShardInputError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict] = {}
    old = legacy_manifest(out)
    if old is not None:
        raise ShardInputError(f"--out {out}: holds a shard folder of format 1 ({old.name} at the top level, "
                              "written by an older synthgen); choose another --out or delete that folder")
    manifest = out / MANIFEST
    progress = out / PROGRESS
    if manifest.exists():
        try:
            m = json.loads(manifest.read_text("utf-8"))
            old_fp = m["fingerprint"]
            prior = {e["file"]: e for e in m["shards"]}
        except Exception as exc:
            raise ShardInputError(f"{manifest}: unreadable manifest ({exc}); choose another --out") from exc
        if old_fp != fp:
            raise ShardInputError(
                f"--out {out}: holds a different dataset (manifest fingerprint {old_fp[:12]}, this run "
                f"{fp[:12]}: other inputs or options); choose another --out or delete that folder")
        done.update(prior)
    if progress.exists():
        old_fp, prior = read_progress(progress)
        if old_fp != fp:
            raise ShardInputError(
                f"--out {out}: holds an unfinished run of a different dataset (fingerprint "
                f"{str(old_fp)[:12]}, this run {fp[:12]}); choose another --out or delete that folder")
        done.update(prior)
    if not manifest.exists() and not progress.exists():
        other = sorted(p.name for p in out.iterdir() if not p.name.startswith(TMP_PREFIX))
        if other:
            raise ShardInputError(f"--out {out}: not empty and holds no synthgen shard dataset "
                                  f"({', '.join(other[:5])}{' ...' if len(other) > 5 else ''}); choose an empty folder")
    # keep only finished shards whose file is present with the recorded size
    kept = {}
    for name, e in done.items():
        p = out / name
        if p.is_file() and p.stat().st_size == e["bytes"]:
            kept[name] = e
        else:
            log.warning("%s: listed as finished but missing or of the wrong size; rewriting it", p)
    for p in out.glob(TMP_PREFIX + "*"):  # temp files of an interrupted run (ours: fingerprint matched)
        p.unlink(missing_ok=True)
    # start the journal afresh with what is kept (also drops a line torn by a kill mid-append)
    lines = [{"format": FORMAT, "fingerprint": fp}, *kept.values()]
    with atomic_path(progress) as tmp:
        tmp.write_text("".join(json.dumps(x, sort_keys=True) + "\n" for x in lines), "utf-8")
    return kept
