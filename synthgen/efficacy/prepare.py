"""The efficacy run's data: read ``--train`` / ``--eval``, hold out training subjects, drop samples
without enough scored pixels, build the evaluation sets (no PyTorch)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from .data import Item, SourceError, load_source, split_by_subject
from .metrics import region_mask
from .options import Options, RunError

log = logging.getLogger("synthgen.efficacy")

MIN_PIXELS = 16
"""Evaluation samples with fewer scored pixels are skipped (listed under ``skipped``)."""


@dataclass
class EvalSet:
    """One evaluation set: items, their scored-pixel masks ((H, W) bool, one per item) and the index
    of the ``--eval`` folder each came from (0 for the held-back set)."""

    name: str
    items: list[Item]
    regions: list[np.ndarray]
    origin_index: list[int] = field(default_factory=list)


def _load_all(paths: list[str], opts: Options, what: str, limit: int | None = None) -> tuple[list[Item], list[int], list[dict]]:
    items, origin, info = [], [], []
    for i, p in enumerate(paths):
        left = None if limit is None else max(0, limit - len(items))
        try:
            got, problems = load_source(p, opts.size, exposure_ev=opts.exposure, tone=opts.tone, limit=left)
        except SourceError as exc:
            raise RunError(f"--{what} {exc}") from exc
        for msg in problems[:20]:
            log.warning("skipped unreadable sample: %s", msg)
        if len(problems) > 20:
            log.warning("... and %d more unreadable samples in %s", len(problems) - 20, p)
        n_metric = sum(it.metric for it in got)
        log.info("--%s %s: %d samples (%d metric, %d relative depth), %d subjects%s", what, p, len(got), n_metric,
                 len(got) - n_metric, len({it.subject_id for it in got}),
                 f", {len(problems)} unreadable" if problems else "")
        info.append({"path": str(p), "samples": len(got), "metric_samples": n_metric,
                     "subjects": len({it.subject_id for it in got}), "unreadable": problems,
                     "by_source": {s: sum(it.source == s for it in got) for s in sorted({it.source for it in got})}})
        items += got
        origin += [i] * len(got)
    return items, origin, info


def _eval_set(name: str, items: list[Item], origin: list[int], region: str, skipped: list[dict]) -> EvalSet:
    es = EvalSet(name, [], [], [])
    for it, o in zip(items, origin):
        r = region_mask(it.depth, it.mask, region)
        if int(r.sum()) < MIN_PIXELS:
            skipped.append({"set": name, "key": it.key, "origin": it.origin,
                            "reason": f"{int(r.sum())} scored pixels (< {MIN_PIXELS}) in region '{region}'"})
            continue
        es.items.append(it)
        es.regions.append(r)
        es.origin_index.append(o)
    return es


@dataclass
class RunData:
    """The loaded and split data: training items (hold-out removed, every one with valid pixels),
    evaluation sets (``eval`` first, then ``held_back`` when any), and what efficacy.json reports."""

    train_all: list[Item]
    train_items: list[Item]
    held_items: list[Item]
    held_subjects: list[str]
    sets: list[EvalSet]
    skipped: list[dict]
    leaked: list[str]
    train_info: list[dict]
    eval_info: list[dict]
    load_s: float


def _split_training(opts: Options, train_all: list[Item]) -> tuple[list[Item], list[Item], list[str]]:
    """``(items to train on, held-back items, held-back subjects)``; training items without valid
    subject pixels are left out."""
    if not train_all:
        raise RunError("--train: no readable samples")
    train_items, held_items, held_subjects = split_by_subject(train_all, opts.holdout)
    n_subj = len({it.subject_id for it in train_all})
    if held_items:
        log.info("held back %d of %d training subjects (%d samples) for the in-domain figure: %s; training on %d samples",
                 len(held_subjects), n_subj, len(held_items), ", ".join(held_subjects), len(train_items))
    else:
        log.warning("no in-domain hold-out (%s)", "--holdout 0" if opts.holdout <= 0 else
                    f"the training data has {n_subj} subject(s); need 2 or more")
    train_regions = [region_mask(it.depth, it.mask, "mask") for it in train_items]
    empty = sum(int(r.sum()) == 0 for r in train_regions)
    if empty:
        log.warning("%d training samples have no valid subject pixels (depth > 0 and mask > 0.5); left out", empty)
    train_items = [it for it, r in zip(train_items, train_regions) if r.any()]
    if not train_items:
        raise RunError("--train: no sample has valid subject pixels (depth > 0 and mask > 0.5)")
    return train_items, held_items, held_subjects


def _eval_sets(opts: Options, eval_items: list[Item], eval_origin: list[int],
               held_items: list[Item]) -> tuple[list[EvalSet], list[dict]]:
    """The evaluation sets and the samples not evaluated (too few scored pixels)."""
    skipped: list[dict] = []
    sets = [_eval_set("eval", eval_items, eval_origin, opts.region, skipped)]
    if not sets[0].items:
        raise RunError(f"--eval: no sample has >= {MIN_PIXELS} scored pixels in region '{opts.region}'")
    if held_items:
        hs = _eval_set("held_back", held_items, [0] * len(held_items), opts.region, skipped)
        if hs.items:
            sets.append(hs)
    for s in skipped[:20]:
        log.warning("not evaluated: %s %s: %s", s["set"], s["key"], s["reason"])
    if len(skipped) > 20:
        log.warning("... and %d more samples not evaluated (listed under data.skipped in efficacy.json)",
                    len(skipped) - 20)
    return sets, skipped


def load_data(opts: Options) -> RunData:
    """Read ``--train`` (up to ``--max-train`` samples) and ``--eval``, split and filter them.

    Raises:
        RunError: a source cannot be read, or no usable training or evaluation sample is left.
    """
    t0 = time.perf_counter()
    train_all, _, train_info = _load_all(opts.train, opts, "train", opts.max_train)
    eval_items, eval_origin, eval_info = _load_all(opts.eval, opts, "eval")
    load_s = time.perf_counter() - t0
    train_items, held_items, held_subjects = _split_training(opts, train_all)
    sets, skipped = _eval_sets(opts, eval_items, eval_origin, held_items)
    leaked = sorted({it.subject_id for it in sets[0].items} & {it.subject_id for it in train_all})
    if leaked:
        log.warning("%d evaluation subject(s) also occur in the training data (not an independent test): %s",
                    len(leaked), ", ".join(leaked[:10]) + (" ..." if len(leaked) > 10 else ""))
    return RunData(train_all=train_all, train_items=train_items, held_items=held_items, held_subjects=held_subjects,
                 sets=sets, skipped=skipped, leaked=leaked, train_info=train_info, eval_info=eval_info, load_s=load_s)
