"""A render store's run ledger: the job recorded in ``_meta/store.json``, the event log
``_meta/ledger.jsonl`` and the quarantine list ``_meta/quarantine.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..atomic import write_json_atomic
from ..contract import META_DIR
from ..errors import StoreMismatchError
from ..safeyaml import bounded_repr
from ..store import read_store_meta
from .config import RUN_ONLY_KEYS, Job
from .planning import IndexSet

log = logging.getLogger("synthgen.render")

def describe_plan(job: Job, indices) -> dict[str, Any]:
    """The plan of ``indices`` (an :class:`~synthgen.rendering.planning.IndexSet` or any iterable of
    indices): see :func:`synthgen.rendering.planning.describe_plan`."""
    from .planning import describe_plan as _describe

    return _describe(job, indices)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, {"c": 2}]}}`` -> ``{"a.b[0]": 1, "a.b[1].c": 2}``."""
    out: dict[str, Any] = {}
    if isinstance(d, dict) and d:
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, list) and d and any(isinstance(v, (dict, list)) for v in d):
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = d
    return out


def _config_diff(old: dict, new: dict, limit: int = 6) -> list[str]:
    skip = tuple(RUN_ONLY_KEYS)
    a, b = _flatten(old), _flatten(new)
    diffs = []
    for k in sorted(set(a) | set(b)):
        if k.startswith(skip) and any(k == s or k.startswith(s + ".") for s in skip):
            continue
        va, vb = a.get(k, "<unset>"), b.get(k, "<unset>")
        if va != vb:
            ra, rb = bounded_repr(va, 70), bounded_repr(vb, 70)
            diffs.append(f"{k}: {ra} -> {rb}")
    return diffs[:limit] + ([f"... and {len(diffs) - limit} more"] if len(diffs) > limit else [])


def check_store(job: Job, out: Path, chash: str, force: bool = False) -> dict[str, Any] | None:
    """Check that ``out`` is empty or holds this job (same :func:`content_hash`).

    Returns the previous ``store.json`` (or None). Raises :class:`StoreMismatchError` naming the
    folder, both hashes and the differing config keys, unless ``force``.
    """
    prev = read_store_meta(out)
    if prev is None:
        if out.is_dir() and any(out.glob("*.json")):
            log.warning("%s holds sample records but no _meta/store.json; only samples with this job's "
                        "config hash count as complete", out)
        return None
    old_hash = prev.get("config_hash")
    if old_hash == chash:
        return prev
    what = (f"{out} already holds another job (_meta/store.json: job {prev.get('config', {}).get('name')!r}, "
            f"seed {prev.get('seed', prev.get('config', {}).get('seed'))}, "
            f"{prev.get('num_samples', prev.get('plan', {}).get('num_samples'))} samples, config hash "
            f"{(old_hash or 'none (written by an older synthgen)')[:12]}, from {prev.get('config_path')}); "
            f"this config hashes to {chash[:12]}")
    diff = _config_diff(prev.get("config", {}), job.config.model_dump(mode="json"))
    if not diff:
        diff = ["(same settings; a scan or HDRI file differs in path or size)"]
    if not force:
        raise StoreMismatchError(
            what + ".\n  differences:\n    " + "\n    ".join(diff) +
            "\n  Use a new --out, or --force to render this job into the folder (its planned samples "
            "are then re-rendered; samples of the old job with other keys stay).")
    log.warning("--force: %s; re-rendering its planned samples", what)
    return prev


def write_store_meta(job: Job, out: Path, chash: str, prev: dict[str, Any] | None) -> dict[str, Any]:
    """Write ``_meta/store.json``: resolved config, config hash, seed, planned sample count, plan.

    The planned count only grows: a run with fewer samples (or ``--indices``) renders a subset of
    the recorded plan.
    """
    cfg = job.config
    n = cfg.num_samples
    history = []
    if prev is not None:
        history = list(prev.get("previous_config_hashes", []))
        if prev.get("config_hash") == chash:
            n = max(n, int(prev.get("num_samples", 0)))
        elif prev.get("config_hash"):
            history.append(prev["config_hash"])
    doc = {
        "kind": "synthgen.store/1", "source": "synthetic", "synthgen_version": __version__,
        "config_hash": chash, "name": cfg.name, "seed": cfg.seed, "num_samples": n,
        "config_path": job.config_path,
        "config": cfg.model_dump(mode="json") | {"num_samples": n},
        "plan": describe_plan(job, IndexSet.full(n)),
        "created": (prev.get("created") if prev and prev.get("config_hash") == chash else None) or time.time(),
        "updated": time.time(),
    }
    if history:
        doc["previous_config_hashes"] = history
    write_json_atomic(out / META_DIR / "store.json", doc)
    return doc


class Ledger:
    """Append-only event log ``_meta/ledger.jsonl`` (one JSON object per line, with ``t`` = unix time).

    Events: ``run_start``, ``worker_start``, ``sample_done``, ``sample_retry``, ``sample_quarantined``,
    ``worker_died``, ``worker_recycled``, ``run_stopping``, ``run_end``. It is informative;
    completeness is always decided from the samples themselves. A write that fails (disk full,
    I/O error) is reported once and the log stops (:attr:`error`); the run goes on.
    """

    def __init__(self, path: Path):
        self.path = path
        self.error: OSError | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")

    def event(self, kind: str, **fields: Any) -> bool:
        """Append one event; False when it could not be written."""
        if self.error is not None:
            return False
        try:
            self._fh.write(json.dumps({"t": round(time.time(), 3), "event": kind, **fields}, sort_keys=True) + "\n")
            self._fh.flush()
        except OSError as exc:
            self.error = exc
            log.error("%s: cannot append to the run ledger (%s); no further events are written", self.path,
                      exc.strerror or exc)
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()


def update_quarantine(meta: Path, entries: list[dict], settled: Callable[[dict], bool]) -> None:
    """Merge this run's quarantined samples into ``_meta/quarantine.json``: earlier entries stay
    unless quarantined again now or ``settled(entry)`` (complete now, or attempted again by a run
    that went to its end); the file is removed when nothing stays quarantined.

    Raises:
        OSError: the file cannot be written.
    """
    p = meta / "quarantine.json"
    old: list[dict] = []
    if p.exists():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            old = json.loads(p.read_text("utf-8")).get("quarantined", [])
    new_keys = {e.get("key") for e in entries}
    keep = [e for e in old if isinstance(e, dict) and e.get("key") not in new_keys and not settled(e)]
    merged = sorted(keep + entries, key=lambda e: e.get("index", 0))
    if merged:
        write_json_atomic(p, {"kind": "synthgen.render_quarantine/1", "quarantined": merged})
    elif p.exists():
        p.unlink()
