"""Packing shards with Ray Data (``synthgen shard --ray``), for datasets beyond one machine.

The driver makes the same deterministic plan as the local engine (records only, a few hundred
bytes per sample). Each shard plan becomes one row of a Ray Dataset (``ray.data.from_items``);
``Dataset.map`` runs :func:`synthgen.shard.write.write_shard` on it in a Ray task, which reads the
members from the stores and writes the shard atomically into the output folder, and returns the
shard's manifest entry. The driver streams the entries back (``iter_rows``), journals them and
writes the manifest. Shards are therefore byte-identical to the local engine's.

Stock ``Dataset.write_webdataset`` is not used for writing because it stamps members with the
current time and chooses file names and shard boundaries per block, which would break
byte-reproducibility, ``{split}-{index:06d}.tar`` naming and the manifest; reading shards back with
``ray.data.read_webdataset(..., decoder=synthgen.shard.decode_sample)`` works as usual.

On a cluster the stores and the output folder must be on a filesystem every node mounts at the
same path. Memory per task is one shard's worth of bookkeeping plus one member (or one decoded
sample for ``--encode train``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from ..errors import ShardInputError
from .plan import ShardPlan
from .scan import Item
from ..raycluster import init_ray

log = logging.getLogger("synthgen.shard")


def _plan_to_json(sh: ShardPlan) -> str:
    return json.dumps({"name": sh.name, "split": sh.split, "index": sh.index, "items": [asdict(i) for i in sh.items]})


def _plan_from_json(text: str) -> ShardPlan:
    d = json.loads(text)
    items = [Item(**{**i, "sizes": tuple(i["sizes"]), "sha256": tuple(i["sha256"]),
                     "extras": tuple(tuple(e) for e in i.get("extras", ()))}) for i in d["items"]]
    return ShardPlan(d["name"], d["split"], d["index"], items)


def _write_row(row: dict[str, Any], out: str, stores: list[str], encode: dict, check_inputs: bool) -> dict[str, Any]:
    from .write import write_shard

    sh = _plan_from_json(row["plan"])
    entry = write_shard(Path(out) / sh.name, sh, stores, encode, check_inputs)
    return {"entry": json.dumps(entry)}


def _find_cause(exc: BaseException, kind: type) -> BaseException | None:
    """First exception of type ``kind`` in the chain of ``exc`` (Ray wraps task errors twice:
    ``RayTaskError.cause`` is a ``UserCodeException`` whose ``__cause__`` is the original)."""
    seen = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, kind):
            return e
        stack.extend([getattr(e, "cause", None), e.__cause__, e.__context__])
    return None


def write_shards_ray(shards: list[ShardPlan], out: Path, stores: list[str], encode: dict[str, Any],
                     check_inputs: bool, address: str | None, on_entry: Callable[[dict], None],
                     progress: bool = True) -> None:
    """Write ``shards`` with Ray Data tasks (one shard per row); call ``on_entry`` per finished shard.

    Uses the running Ray instance if there is one, else ``ray.init(address)`` (a local cluster when
    ``address`` is None) and shuts it down afterwards. Errors raised in a task (for example a
    member failing its checksum) are re-raised here as :class:`ShardInputError` when possible.
    """
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ShardInputError(f"--ray needs Ray Data (pip install 'ray[data]': pandas, pyarrow): {exc}") from exc

    started = init_ray(address)
    try:
        ctx = ray.data.DataContext.get_current()
        saved = (ctx.enable_progress_bars, ctx.raise_original_map_exception)
        ctx.enable_progress_bars = progress
        ctx.raise_original_map_exception = True  # surface ShardInputError, not a wrapped UserCodeException
        # a failing task is re-raised below with its cause; Ray Data would also log it with two
        # tracebacks of its internals, and log each execution's plan at INFO
        data_log = logging.getLogger("ray.data")
        saved_level = data_log.level
        data_log.setLevel(logging.CRITICAL)
        rows = [{"plan": _plan_to_json(sh)} for sh in shards]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map(_write_row, fn_kwargs={"out": str(out), "stores": stores, "encode": encode,
                                           "check_inputs": check_inputs})
        try:
            for row in ds.iter_rows():
                on_entry(json.loads(row["entry"]))
        except Exception as exc:
            cause = _find_cause(exc, ShardInputError)
            if cause is not None:
                raise ShardInputError(cause.problems) from exc
            raise
        finally:
            ctx.enable_progress_bars, ctx.raise_original_map_exception = saved
            data_log.setLevel(saved_level)
    finally:
        if started:
            ray.shutdown()
