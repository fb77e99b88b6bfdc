"""The index files of a shard folder, all under ``_meta/`` (:mod:`.layout`): ``manifest.json``,
``samples.jsonl``, ``{split}.wids.json`` and the dataset card ``README.md``.

``_meta/manifest.json`` (:data:`MANIFEST`, written last: its presence means the run finished) holds the
format (:data:`FORMAT`), the options and their fingerprint, the members, every shard's entry
(file, split, count, bytes, sha256, keys), totals per split and source, per-subject counts, mix
targets and achieved ratios, the input stores, the equivalent command line and the list of assets
(scans, HDRIs, MakeHuman parts, capture sources) the packed samples use, with their licences (see
docs/shard.md). ``_meta/samples.jsonl`` (:data:`SAMPLES_INDEX`) has one line per packed sample with
its full record; the wids lists follow ``wids-shard-index-v1`` (urls relative to the list).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shlex
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import atomic_path, write_json_atomic
from ..card import AssetCollector, shard_card
from ..contract import member_path
from ..errors import ConfigError, ShardInputError
from ..store import read_store_meta
from .codec import member_names
from .layout import CARD, MANIFEST, META, SAMPLES_INDEX, wids_relpath, wids_url  # noqa: F401 (re-exported)
from .options import SOURCES
from .plan import Plan

FORMAT = "synthgen.shards/2"
"""Format 2: index files under ``_meta/``; ``--encode train`` records packed as a JSON string."""
FORMATS = ("synthgen.shards/1", FORMAT)


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
            "wids": wids_relpath(split),
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


def write_samples_index(out: Path, plan: Plan, assets: AssetCollector | None = None) -> str:
    """Write ``_meta/samples.jsonl`` (streamed, atomic); return its sha256. Each record's assets go
    to ``assets`` (scans, HDRIs, MakeHuman parts, capture sources, with licences)."""
    h = hashlib.sha256()
    (out / META).mkdir(exist_ok=True)
    with atomic_path(out / SAMPLES_INDEX) as tmp, open(tmp, "wb") as fh:
        for sh in plan.shards:
            for it in sh.items:
                store = plan.stores[it.store]
                raw = member_path(store, it.key, "json").read_bytes()
                if hashlib.sha256(raw).hexdigest() != it.record_sha256:
                    raise ShardInputError(f"sample {it.key} in {store}: record changed during the run")
                rec = json.loads(raw)
                if assets is not None:
                    assets.add(rec, store, sh.split)
                line = (json.dumps({"key": it.key, "split": sh.split, "shard": sh.name, "store": store,
                                    "source": it.source, "subject_id": it.subject,
                                    "record_sha256": it.record_sha256, "record": rec},
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
    if enc.get("resize"):
        args += ["--size", f"{enc['resize']['width']}x{enc['resize']['height']}", "--resize", enc["resize"]["mode"]]
    if not check_inputs:
        args.append("--no-check-inputs")
    if engine == "ray":
        args.append("--ray")
    return shlex.join(args)


def write_index_files(out: Path, plan: Plan, entries: dict[str, dict], options: dict[str, Any], fp: str,
                      command: str) -> dict[str, Any]:
    """Write ``_meta/samples.jsonl``, the wids shard list of every split, the dataset card
    ``_meta/README.md`` and, last, ``_meta/manifest.json``.

    Args:
        out: the shard folder.
        plan: the plan the shards were written from.
        entries: shard file name -> its manifest entry (every shard of the plan).
        options: the run's options (``format``, ``splits``, ``mix``, ``seed``, ``encode``, ...).
        fp: the dataset fingerprint.
        command: the command line to record.

    Returns:
        The manifest dict.

    Raises:
        ShardInputError: a record changed during the run.
    """
    collector = AssetCollector()
    samples_sha = write_samples_index(out, plan, collector)
    for split in plan.by_split:
        wids = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": split,
                "shardlist": [{"url": wids_url(s.name), "nsamples": entries[s.name]["count"],
                               "filesize": entries[s.name]["bytes"]} for s in plan.shards if s.split == split]}
        write_json_atomic(out / wids_relpath(split), wids)
    split_stats, totals = _stats(plan, entries)
    packed = Counter(it.store for sh in plan.shards for it in sh.items)
    manifest = {
        "format": FORMAT,
        "synthgen_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "fingerprint": fp,
        "options": options,
        "members": list(member_names(options["encode"])),
        "optional_members": sorted({e[0] for sh in plan.shards for it in sh.items for e in it.extras}),
        "tar": {"mtime": 0, "uid": 0, "gid": 0, "uname": "", "gname": "", "mode": "0444", "format": "pax/ustar"},
        "inputs": [{"path": s, "samples": c, "packed": packed[i], "store_meta": _store_meta(s)}
                   for i, (s, c) in enumerate(zip(plan.stores, plan.store_counts))],
        "samples_index": {"file": SAMPLES_INDEX, "sha256": samples_sha},
        "splits": split_stats,
        "totals": totals,
        "shards": [entries[s.name] for s in plan.shards],
        "excluded": plan.excluded,
        "skipped": plan.skipped,
        "assets": collector.result(),
        "config_hashes": dict(sorted(collector.config_hashes.items())),
    }
    with atomic_path(out / CARD) as tmp:
        tmp.write_text(shard_card(manifest, name=out.name), "utf-8")
    write_json_atomic(out / MANIFEST, manifest)
    return manifest
