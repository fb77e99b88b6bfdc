"""``synthgen shard``: pack sample stores into WebDataset shards with a manifest (:func:`pack`).

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

Pipeline: scan the stores' records (:mod:`.scan`, :mod:`.plan`), assign subjects to splits, apply
the source mix, shuffle each split with the seed, cut shards by bytes or count, then write each
shard atomically (:mod:`.write`), locally or on Ray Data (:mod:`.ray_write`).
An interrupted run resumes: finished shards (journal entry + file of the recorded size) are kept
(:mod:`.resume`). The index files are written last (:mod:`.manifest`).

Checking the result: :mod:`.verify`. Readers: :mod:`.codec` (``decode``, a ``webdataset`` decoder
handler, and ``decode_sample``, a whole-sample decoder for ``ray.data.read_webdataset`` or
``WebDataset.map``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from ..errors import ShardInputError
from .codec import encode_options
from .manifest import FORMAT, canonical_command, write_index_files
from .options import DEFAULT_SHARD_SIZE, DEFAULT_SPLIT, parse_mix, parse_size, parse_splits
from .plan import ShardPlan, fingerprint, make_plan
from .resize import resize_options
from .resume import PROGRESS, append_progress, prepare_out
from .write import write_shard

log = logging.getLogger("synthgen.shard")


def pack(stores: list[str | os.PathLike], out: str | os.PathLike, *, split: str | dict[str, float] = DEFAULT_SPLIT,
         mix: list[str] | None = None, seed: int = 0, encode: dict[str, Any] | str = "exr",
         shard_size: int | str | None = None, samples_per_shard: int | None = None, check_inputs: bool = True,
         engine: str = "local", ray_address: str | None = None, progress: bool = True,
         command: str | None = None, on_shard: Callable[[dict], None] | None = None,
         size: str | tuple[int, int] | None = None, resize: str | None = None) -> dict[str, Any]:
    """Pack sample stores into WebDataset shards in ``out``; returns the manifest dict.

    Args:
        stores: sample store folders (see :mod:`synthgen.contract`).
        out: output folder: new, empty, or holding an unfinished/finished run of the same dataset.
        split: ``"train=0.9,val=0.05,test=0.05"`` or ``{split: fraction}``; fractions of samples,
            assigned by subject.
        mix: ``--mix`` specs (``"synthetic=0.7,real=0.3"`` or ``"val:real=1"``); None keeps all samples.
        seed: seed of the subject assignment, the mix down-sampling and the order.
        encode: ``"exr"``, ``"train"`` or a dict from :func:`synthgen.shard.codec.encode_options`.
        shard_size: target shard size in bytes (int or ``"512MB"``); default 512MB unless
            ``samples_per_shard`` is given.
        samples_per_shard: maximum samples per shard.
        check_inputs: verify every member's sha256 against its record while packing.
        engine: ``"local"`` (one process, streaming) or ``"ray"`` (Ray Data tasks, one per shard).
        ray_address: Ray cluster to join with ``engine="ray"`` (default: local cluster).
        progress: show tqdm progress bars.
        command: command line to record (default: the equivalent ``synthgen shard`` command).
        on_shard: called with each shard's manifest entry once it is renamed into place.
        size: ``"WxH"`` or ``(W, H)``: write every sample at this size (:mod:`.resize`; K follows
            exactly and each record gets a ``transform`` section).
        resize: ``"fit"`` (stretch), ``"crop"`` (cover, centre crop; default) or ``"pad"`` (contain,
            centre pad) with ``size``.

    Raises:
        ShardInputError: bad stores or samples, a split or mix that cannot be satisfied, bad options,
            or an output folder holding a different dataset. Nothing is written for errors found
            while planning; a member that fails its checksum aborts only the shard being written.
        KeyboardInterrupt: interrupted; finished shards stay and a rerun resumes.
    """
    stores = [str(Path(s).resolve()) for s in stores]
    out = Path(out).resolve()
    options = _options(split, mix, seed, encode, shard_size, samples_per_shard, engine, size, resize)
    encode = options["encode"]
    plan = make_plan(stores, options["splits"], options["mix"], options["seed"], encode, options["shard_bytes"],
                     samples_per_shard, progress)
    fp = fingerprint(plan, options)
    done = prepare_out(out, fp)
    todo = [s for s in plan.shards if s.name not in done]
    log.info("%d samples in %d shards (%d already finished) -> %s", sum(len(s.items) for s in plan.shards),
             len(plan.shards), len(plan.shards) - len(todo), out)
    progress_path = out / PROGRESS

    def finished(entry: dict) -> None:
        append_progress(progress_path, entry)
        done[entry["file"]] = entry
        if on_shard is not None:
            on_shard(entry)

    if todo:
        _write_shards(todo, out, stores, encode, check_inputs, engine, ray_address, finished, progress)
    entries = {s.name: done[s.name] for s in plan.shards}
    for s in plan.shards:  # a journal entry from another plan would be a bug; be loud about it
        if entries[s.name]["keys_sha256"] != s.keys_sha256():
            raise ShardInputError(f"{out / s.name}: finished shard holds other samples than planned; "
                                  "delete the output folder and rerun")
    manifest = write_index_files(out, plan, entries, options, fp,
                                 command or canonical_command(stores, out, options, check_inputs, engine))
    progress_path.unlink(missing_ok=True)
    return manifest


def _options(split: str | dict[str, float], mix: list[str] | None, seed: int, encode: dict[str, Any] | str,
             shard_size: int | str | None, samples_per_shard: int | None, engine: str,
             size: str | tuple[int, int] | None = None, resize: str | None = None) -> dict[str, Any]:
    """The run's canonical options (recorded in the manifest and part of the fingerprint).

    Raises:
        ShardInputError: a bad split, mix, encoding, shard size or engine.
    """
    splits = parse_splits(split) if isinstance(split, str) else dict(split)
    mixes = parse_mix(mix, splits)
    if isinstance(encode, str):
        if encode not in ("exr", "train"):
            raise ShardInputError(f"--encode {encode!r}: expected exr or train")
        encode = encode_options(encode)
    rs = resize_options(size, resize)
    if rs is not None:
        encode = {**encode, "resize": rs}
    if samples_per_shard is not None and shard_size is not None:
        raise ShardInputError("give either --shard-size or --samples-per-shard, not both")
    if samples_per_shard is not None and samples_per_shard < 1:
        raise ShardInputError(f"--samples-per-shard {samples_per_shard}: must be >= 1")
    shard_bytes = None
    if samples_per_shard is None:
        shard_bytes = parse_size(shard_size or DEFAULT_SHARD_SIZE) if not isinstance(shard_size, int) else shard_size
    if engine not in ("local", "ray"):
        raise ShardInputError(f"engine {engine!r}: expected local or ray")
    return {"format": FORMAT, "splits": splits, "mix": mixes, "seed": int(seed), "encode": encode,
            "shard_bytes": shard_bytes, "samples_per_shard": samples_per_shard}


def _write_shards(todo: list[ShardPlan], out: Path, stores: list[str], encode: dict[str, Any], check_inputs: bool,
                  engine: str, ray_address: str | None, finished: Callable[[dict], None], progress: bool) -> None:
    """Write the shards ``todo`` (locally, one after the other, or as Ray Data tasks); ``finished``
    is called with each shard's manifest entry once it is in place."""
    if engine == "ray":
        from .ray_write import write_shards_ray

        write_shards_ray(todo, out, stores, encode, check_inputs, ray_address, finished, progress)
        return
    n = sum(len(s.items) for s in todo)
    with tqdm(total=n, desc="shard", unit="sample", disable=not progress) as bar:
        for sh in todo:
            finished(write_shard(out / sh.name, sh, stores, encode, check_inputs, bar.update))
