"""``synthgen shard``: pack sample stores into WebDataset shards with a manifest; ``synthgen shard verify``.

Output folder layout (see docs/shard.md)::

    DIR/{split}-{index:06d}.tar   WebDataset shards (POSIX tar, byte-reproducible)
    DIR/{split}.wids.json         wids shard list per split ("wids-shard-index-v1")
    DIR/samples.jsonl             one line per packed sample: key, split, shard, store, source,
                                  subject_id, record_sha256 and the full store record
    DIR/manifest.json             written last: shards (file, split, count, bytes, sha256), members
                                  and optional members (e.g. depth_sensor.exr),
                                  totals per split and source, per-subject counts, mix targets and
                                  achieved ratios, input stores, options, command line
    DIR/.shard-progress.jsonl     journal of finished shards while a run is in progress

Pipeline: scan the stores' records (:mod:`synthgen.shard_plan`), assign subjects to splits, apply
the source mix, shuffle each split with the seed, cut shards by bytes or count, then write each
shard atomically (:mod:`synthgen.shard_write`), locally or on Ray Data (:mod:`synthgen.shard_ray`).
An interrupted run resumes: finished shards (journal entry + file of the recorded size) are kept.

Readers: :func:`decode` (a ``webdataset`` decoder handler) and :func:`decode_sample` (a whole-sample
decoder for ``ray.data.read_webdataset(..., decoder=decode_sample)`` or ``WebDataset.map``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shlex
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from .. import __version__
from ..atomic import TMP_PREFIX, atomic_path, write_json_atomic
from ..contract import member_path
from .codec import decode, decode_member, decode_sample, encode_options, member_names  # noqa: F401 (public API)
from .plan import (SOURCES, Plan, ShardInputError, fingerprint, make_plan, parse_mix,
                         parse_size, parse_splits)
from .write import write_shard
from ..errors import ConfigError
from ..store import read_store_meta

log = logging.getLogger("synthgen.shard")

FORMAT = "synthgen.shards/1"
MANIFEST = "manifest.json"
PROGRESS = ".shard-progress.jsonl"
SAMPLES_INDEX = "samples.jsonl"
DEFAULT_SPLIT = "train=0.9,val=0.05,test=0.05"
DEFAULT_SHARD_SIZE = "512MB"

__all__ = ["pack", "verify", "decode", "decode_sample", "decode_member", "ShardInputError", "FORMAT"]


# ----------------------------------------------------------------------------- output folder state

def _read_progress(path: Path) -> tuple[str | None, dict[str, dict]]:
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


def _append_progress(path: Path, obj: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(obj, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _prepare_out(out: Path, fp: str) -> dict[str, dict]:
    """Check that ``out`` is empty or holds this very dataset; return shards already finished.

    Raises:
        ShardInputError: ``out`` is a file, or holds a different dataset or unrelated files.
    """
    if out.exists() and not out.is_dir():
        raise ShardInputError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict] = {}
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
        old_fp, prior = _read_progress(progress)
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


# ----------------------------------------------------------------------------- statistics

def _stats(plan: Plan, entries: dict[str, dict]) -> tuple[dict, dict]:
    splits: dict[str, Any] = {}
    total_by_src: Counter = Counter()
    total_bytes = 0
    for split, items in plan.by_split.items():
        by_src = Counter(it.source for it in items)
        subjects: dict[str, Counter] = defaultdict(Counter)
        for it in items:
            subjects[it.subject][it.source] += 1
        shards = [s for s in plan.shards if s.split == split]
        nbytes = sum(entries[s.name]["bytes"] for s in shards)
        n = len(items)
        achieved = {s: (by_src[s] / n if n else 0.0) for s in SOURCES}
        splits[split] = {
            "shards": len(shards), "samples": n, "bytes": nbytes,
            "fraction_target": plan.splits[split],
            "by_source": {s: by_src[s] for s in SOURCES},
            "subjects": {k: {s: v[s] for s in SOURCES if v[s]} for k, v in sorted(subjects.items())},
            "mix": {"target": plan.mix.get(split), "achieved": achieved},
            "wids": f"{split}.wids.json",
        }
        total_by_src.update(by_src)
        total_bytes += nbytes
    n_all = sum(v["samples"] for v in splits.values())
    for v in splits.values():
        v["fraction_achieved"] = v["samples"] / n_all if n_all else 0.0
    totals = {"samples": n_all, "shards": len(plan.shards), "bytes": total_bytes,
              "by_source": {s: total_by_src[s] for s in SOURCES},
              "subjects": len({it.subject for items in plan.by_split.values() for it in items}),
              "excluded_by_mix": len(plan.excluded), "skipped_unfinished": len(plan.skipped)}
    return splits, totals


def _write_samples_index(out: Path, plan: Plan) -> str:
    """Write samples.jsonl (streamed, atomic); return its sha256."""
    h = hashlib.sha256()
    with atomic_path(out / SAMPLES_INDEX) as tmp, open(tmp, "wb") as fh:
        for sh in plan.shards:
            for it in sh.items:
                store = plan.stores[it.store]
                raw = member_path(store, it.key, "json").read_bytes()
                if hashlib.sha256(raw).hexdigest() != it.record_sha256:
                    raise ShardInputError(f"sample {it.key} in {store}: record changed during the run")
                line = (json.dumps({"key": it.key, "split": sh.split, "shard": sh.name, "store": store,
                                    "source": it.source, "subject_id": it.subject,
                                    "record_sha256": it.record_sha256, "record": json.loads(raw)},
                                   sort_keys=True) + "\n").encode("utf-8")
                h.update(line)
                fh.write(line)
    return h.hexdigest()


def _store_meta(store: str) -> Any:
    try:
        return read_store_meta(store)
    except ConfigError:
        return None


def canonical_command(stores, out, options: dict, check_inputs: bool, engine: str) -> str:
    """The equivalent ``synthgen shard`` command line of a run (recorded in the manifest)."""
    args = ["synthgen", "shard", *map(str, stores), "--out", str(out),
            "--split", ",".join(f"{k}={v:g}" for k, v in options["splits"].items()), "--seed", str(options["seed"])]
    if options["samples_per_shard"] is not None:
        args += ["--samples-per-shard", str(options["samples_per_shard"])]
    else:
        args += ["--shard-size", f"{options['shard_bytes']}B"]
    for split, ratio in options["mix"].items():
        if ratio is not None:
            args += ["--mix", f"{split}:" + ",".join(f"{s}={ratio[s]:g}" for s in SOURCES)]
    enc = options["encode"]
    args += ["--encode", enc["name"]]
    if enc["name"] == "train":
        args += ["--rgb-format", enc["rgb"], "--depth-format", enc["depth"], "--exposure", f"{enc['exposure_ev']:g}",
                 "--tone", enc["tone"]]
    if not check_inputs:
        args.append("--no-check-inputs")
    if engine == "ray":
        args.append("--ray")
    return shlex.join(args)


# ----------------------------------------------------------------------------- pack

def pack(stores: list[str | os.PathLike], out: str | os.PathLike, *, split: str | dict[str, float] = DEFAULT_SPLIT,
         mix: list[str] | None = None, seed: int = 0, encode: dict[str, Any] | str = "exr",
         shard_size: int | str | None = None, samples_per_shard: int | None = None, check_inputs: bool = True,
         engine: str = "local", ray_address: str | None = None, progress: bool = True,
         command: str | None = None, on_shard: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Pack sample stores into WebDataset shards in ``out``; returns the manifest dict.

    Args:
        stores: sample store folders (see :mod:`synthgen.contract`).
        out: output folder: new, empty, or holding an unfinished/finished run of the same dataset.
        split: ``"train=0.9,val=0.05,test=0.05"`` or ``{split: fraction}``; fractions of samples,
            assigned by subject.
        mix: ``--mix`` specs (``"synthetic=0.7,real=0.3"`` or ``"val:real=1"``); None keeps all samples.
        seed: seed of the subject assignment, the mix down-sampling and the order.
        encode: ``"exr"``, ``"train"`` or a dict from :func:`synthgen.shard_codec.encode_options`.
        shard_size: target shard size in bytes (int or ``"512MB"``); default 512MB unless
            ``samples_per_shard`` is given.
        samples_per_shard: maximum samples per shard.
        check_inputs: verify every member's sha256 against its record while packing.
        engine: ``"local"`` (one process, streaming) or ``"ray"`` (Ray Data tasks, one per shard).
        ray_address: Ray cluster to join with ``engine="ray"`` (default: local cluster).
        progress: show tqdm progress bars.
        command: command line to record (default: the equivalent ``synthgen shard`` command).
        on_shard: called with each shard's manifest entry once it is renamed into place.

    Raises:
        ShardInputError: bad stores or samples, a split or mix that cannot be satisfied, bad options,
            or an output folder holding a different dataset. Nothing is written for errors found
            while planning; a member that fails its checksum aborts only the shard being written.
        KeyboardInterrupt: interrupted; finished shards stay and a rerun resumes.
    """
    stores = [str(Path(s).resolve()) for s in stores]
    out = Path(out).resolve()
    splits = parse_splits(split) if isinstance(split, str) else dict(split)
    mixes = parse_mix(mix, splits)
    if isinstance(encode, str):
        if encode not in ("exr", "train"):
            raise ShardInputError(f"--encode {encode!r}: expected exr or train")
        encode = encode_options(encode)
    if samples_per_shard is not None and shard_size is not None:
        raise ShardInputError("give either --shard-size or --samples-per-shard, not both")
    if samples_per_shard is not None and samples_per_shard < 1:
        raise ShardInputError(f"--samples-per-shard {samples_per_shard}: must be >= 1")
    shard_bytes = None
    if samples_per_shard is None:
        shard_bytes = parse_size(shard_size or DEFAULT_SHARD_SIZE) if not isinstance(shard_size, int) else shard_size
    if engine not in ("local", "ray"):
        raise ShardInputError(f"engine {engine!r}: expected local or ray")
    options = {"format": FORMAT, "splits": splits, "mix": mixes, "seed": int(seed), "encode": encode,
               "shard_bytes": shard_bytes, "samples_per_shard": samples_per_shard}

    plan = make_plan(stores, splits, mixes, int(seed), encode, shard_bytes, samples_per_shard, progress)
    fp = fingerprint(plan, options)
    done = _prepare_out(out, fp)
    todo = [s for s in plan.shards if s.name not in done]
    log.info("%d samples in %d shards (%d already finished) -> %s", sum(len(s.items) for s in plan.shards),
             len(plan.shards), len(plan.shards) - len(todo), out)
    progress_path = out / PROGRESS

    def finished(entry: dict) -> None:
        _append_progress(progress_path, entry)
        done[entry["file"]] = entry
        if on_shard is not None:
            on_shard(entry)

    if todo:
        if engine == "ray":
            from .ray_write import write_shards_ray

            write_shards_ray(todo, out, stores, encode, check_inputs, ray_address, finished, progress)
        else:
            n = sum(len(s.items) for s in todo)
            with tqdm(total=n, desc="shard", unit="sample", disable=not progress) as bar:
                for sh in todo:
                    finished(write_shard(out / sh.name, sh, stores, encode, check_inputs, bar.update))

    entries = {s.name: done[s.name] for s in plan.shards}
    for s in plan.shards:  # a journal entry from another plan would be a bug; be loud about it
        if entries[s.name]["keys_sha256"] != s.keys_sha256():
            raise ShardInputError(f"{out / s.name}: finished shard holds other samples than planned; "
                                  "delete the output folder and rerun")
    samples_sha = _write_samples_index(out, plan)
    for split in plan.by_split:
        wids = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": split,
                "shardlist": [{"url": s.name, "nsamples": entries[s.name]["count"],
                               "filesize": entries[s.name]["bytes"]} for s in plan.shards if s.split == split]}
        write_json_atomic(out / f"{split}.wids.json", wids)
    split_stats, totals = _stats(plan, entries)
    packed = Counter(it.store for sh in plan.shards for it in sh.items)
    manifest = {
        "format": FORMAT,
        "synthgen_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command or canonical_command(stores, out, options, check_inputs, engine),
        "fingerprint": fp,
        "options": options,
        "members": list(member_names(encode)),
        "optional_members": sorted({e[0] for sh in plan.shards for it in sh.items for e in it.extras}),
        "tar": {"mtime": 0, "uid": 0, "gid": 0, "uname": "", "gname": "", "mode": "0444", "format": "pax/ustar"},
        "inputs": [{"path": s, "samples": c, "packed": packed[i], "store_meta": _store_meta(s)}
                   for i, (s, c) in enumerate(zip(stores, plan.store_counts))],
        "samples_index": {"file": SAMPLES_INDEX, "sha256": samples_sha},
        "splits": split_stats,
        "totals": totals,
        "shards": [entries[s.name] for s in plan.shards],
        "excluded": plan.excluded,
        "skipped": plan.skipped,
    }
    write_json_atomic(out / MANIFEST, manifest)
    progress_path.unlink(missing_ok=True)
    return manifest


# ----------------------------------------------------------------------------- verify


