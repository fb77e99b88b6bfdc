"""Preflight of a render run, before anything is written: the output folder, the samples already
complete (and the damaged ones, named), and the free disk space against the planned samples."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..store import check_keys, list_store
from .config import Job
from .planning import IndexSet, disk_estimate, human_bytes
from .sampling import sample_key

log = logging.getLogger("synthgen.render")

DAMAGED_LOG_LIMIT = 20
"""Damaged samples named one per line when a run re-renders them (then a count)."""
SPACE_MARGIN_BYTES = 64 * 2**20
"""Free space kept beyond the estimate (the ledger, run files, file-system overhead); at most 2 %
of the file system's size."""


def check_out(out: Path) -> None:
    """Refuse an unusable output folder before anything runs: a file, a parent that is a file, a
    folder (or nearest existing parent) that cannot be written (permissions, read-only file system).

    Raises:
        ConfigError: the message names the path and the reason.
    """
    try:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file, not a folder; give a folder for the sample store")
        probe = out
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise ConfigError(f"--out {out}: {probe} is a file, so the folder cannot be created there")
        if not os.access(probe, os.W_OK | os.X_OK):
            ro = False
            with contextlib.suppress(OSError):
                ro = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
            what = "is on a read-only file system" if ro else "is not writable by this user"
            if probe == out:
                raise ConfigError(f"--out {out}: cannot write the sample store there: the folder {what}")
            raise ConfigError(f"--out {out}: cannot create the folder: {probe} {what}")
    except OSError as exc:
        raise ConfigError(f"--out {out}: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")) from None


def complete_indices(job: Job, out: Path, idx: IndexSet, chash: str) -> np.ndarray:
    """Sorted indices of ``idx`` whose samples are complete in ``out``; logs each planned sample
    that is there but damaged (named, with :func:`synthgen.store.sample_problems`' reason), since
    the run renders it again. Costs one listing plus a check of the planned samples present."""
    try:
        listing = list_store(out)
    except OSError:
        return np.zeros(0, np.int64)
    pat = re.compile(rf"^{re.escape(job.config.name)}_s{job.config.seed}_(\d{{6,}})$")
    present: dict[str, int] = {}
    for key in listing.members:
        m = pat.match(key)
        if m and int(m.group(1)) in idx and sample_key(job, int(m.group(1))) == key:
            present[key] = int(m.group(1))
    problems = check_keys(out, sorted(present), chash)
    done = sorted(present[k] for k, p in problems.items() if not p)
    damaged = [(k, p) for k, p in problems.items() if p]
    for k, p in damaged[:DAMAGED_LOG_LIMIT]:
        log.warning("re-rendering %s: %s", k, "; ".join(p[:3]))
    if len(damaged) > DAMAGED_LOG_LIMIT:
        log.warning("... and %d more damaged or incomplete sample(s) to re-render", len(damaged) - DAMAGED_LOG_LIMIT)
    return np.array(done, dtype=np.int64)


def check_space(job: Job, out: Path, n_todo: int, force: bool) -> dict[str, Any]:
    """Refuse (ConfigError) when the planned samples clearly cannot fit on the disk of ``out``."""
    est = disk_estimate(job, out, n_todo)
    free, need = est["bytes_free"], est["bytes_needed"]
    if free is None:
        return est
    # the pixel model is uncompressed: compressed samples may need half of it
    low = need if est["basis"] == "measured" else need // 2
    msg = (f"{n_todo} samples need about {human_bytes(need)} ({human_bytes(est['bytes_per_sample'])} each, "
           f"{'measured on the samples in the store' if est['basis'] == 'measured' else 'estimated from W x H, before compression'}); "
           f"{est['path']} has {human_bytes(free)} free")
    margin = SPACE_MARGIN_BYTES
    with contextlib.suppress(OSError):
        margin = min(margin, shutil.disk_usage(est["path"]).total // 50)
    if low + margin > free:
        if not force:
            raise ConfigError(f"--out {out}: not enough disk space: {msg}. Free space, lower num_samples, "
                              "use another --out, or --force to start anyway (the run then stops at the "
                              "first write that fails, exit 3)")
        log.warning("--force: %s; the run stops when the disk is full", msg)
    elif need > free:
        log.warning("the store may not fit: %s", msg)
    return est
