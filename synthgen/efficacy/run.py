"""The ``synthgen efficacy`` run: load, split, train per seed, evaluate predictors, aggregate, gate.

Imports PyTorch (through :mod:`.model`); the CLI checks that it is importable first.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import sys
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import model as M
from .data import SYNTHGEN_VERSION
from .metrics import HIGHER_IS_BETTER, METRICS, constant_depth, depth_metrics, ellipsoid_depth, region_mask
from .options import Options, RunError
from .prepare import EvalSet, RunData, load_data

log = logging.getLogger("synthgen.efficacy")

FORMAT = "synthgen.efficacy/1"
PREDICTORS = ("trained", "untrained", "constant", "ellipsoid")
BASELINES = ("untrained", "constant", "ellipsoid")
CHECKPOINT_SAMPLES = 32
"""Checkpoints during training score the first this many samples of each set."""


def _score(es: EvalSet, preds: np.ndarray | list[np.ndarray]) -> list[dict[str, float | None]]:
    return [depth_metrics(p[r], it.depth[r], it.metric) for it, r, p in zip(es.items, es.regions, preds)]


def _mean_metrics(rows: list[dict[str, float | None]]) -> dict[str, float | None]:
    out = {}
    for m in METRICS:
        vals = [r[m] for r in rows if r.get(m) is not None]
        out[m] = float(np.mean(vals)) if vals else None
    return out


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)


def _aggregate(per_sample: list[dict], indices: list[int], seeds: list[int]) -> dict[str, Any]:
    """results[predictor] = {per_seed: [{metric: mean over samples}], mean: {...}, std: {...}}."""
    res = {}
    for pred in PREDICTORS:
        per_seed = [_mean_metrics([per_sample[i]["metrics"][pred][k] for i in indices]) for k in range(len(seeds))]
        mean, std = {}, {}
        for m in METRICS:
            mean[m], std[m] = _mean_std([ps[m] for ps in per_seed])
        res[pred] = {"per_seed": per_seed, "mean": mean, "std": std}
    return res


def _environment(device: torch.device) -> dict[str, Any]:
    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "device": str(device), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "platform": platform.platform(), "synthgen": SYNTHGEN_VERSION}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _pick_device(opts: Options) -> torch.device:
    """The torch device of ``--device``, with ``--threads`` applied; warns when the CPU is busy."""
    try:
        device = M.pick_device(opts.device)
    except RuntimeError as exc:
        raise RunError(str(exc)) from exc
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if device.type == "cpu" and hasattr(os, "getloadavg") and torch.get_num_threads() > 1:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        if load > cores:
            log.warning("the machine is busy (load %.1f on %d cores): PyTorch's %d CPU threads may slow down a lot "
                        "waiting for each other; --threads 1 is often faster then", load, cores,
                        torch.get_num_threads())
    return device


def _per_sample_rows(sets: list[EvalSet]) -> dict[str, list[dict]]:
    """Per evaluation sample: identification and ``metrics[predictor]``, a list filled once per seed."""
    return {es.name: [{"key": it.key, "origin": it.origin, "subject_id": it.subject_id, "source": it.source,
                       "metric": it.metric, "pixels": int(r.sum()), "metrics": {p: [] for p in PREDICTORS}}
                      for it, r in zip(es.items, es.regions)]
            for es in sets}


def _fixed_baselines(sets: list[EvalSet]) -> tuple[dict[str, dict], dict[str, dict]]:
    """``(predictions, metric rows)`` per set and baseline of the non-learned ``constant`` and ``ellipsoid``."""
    fixed_preds, fixed_rows = {}, {}
    for es in sets:
        const = [constant_depth(it.depth.shape) for it in es.items]
        ell = [ellipsoid_depth(it.mask, it.box) for it in es.items]
        fixed_preds[es.name] = {"constant": const, "ellipsoid": ell}
        fixed_rows[es.name] = {"constant": _score(es, const), "ellipsoid": _score(es, ell)}
    return fixed_preds, fixed_rows


def _predict_set(net, es: EvalSet, device: torch.device) -> np.ndarray:
    return M.predict(net, np.stack([it.rgb for it in es.items]), device)


def _score_before_training(net, sets: list[EvalSet], per_sample: dict[str, list[dict]],
                           fixed_rows: dict[str, dict], device: torch.device) -> None:
    """Append this seed's ``untrained`` rows and (the same for every seed) the fixed baselines' rows."""
    for es in sets:
        rows = _score(es, _predict_set(net, es, device))
        for ps, row in zip(per_sample[es.name], rows):
            ps["metrics"]["untrained"].append(row)
        for name, rows in fixed_rows[es.name].items():  # deterministic: the same rows for every seed
            for ps, row in zip(per_sample[es.name], rows):
                ps["metrics"][name].append(row)


def _checkpoint_scorer(net, sets: list[EvalSet], device: torch.device):
    """``on_checkpoint(step) -> {set: {spearman, silog}}`` for :func:`M.train`."""
    def on_checkpoint(step: int, net=net) -> dict:
        cp = {}
        for es in sets:  # the first CHECKPOINT_SAMPLES of each set (the final evaluation uses all)
            sub = EvalSet(es.name, es.items[:CHECKPOINT_SAMPLES], es.regions[:CHECKPOINT_SAMPLES])
            rows = _score(sub, _predict_set(net, sub, device))
            cp[es.name] = {"spearman": float(np.mean([r["spearman"] for r in rows])),
                           "silog": float(np.mean([r["silog"] for r in rows]))}
        return cp
    return on_checkpoint


def _fit(net, data, opts: Options, seed: int, device: torch.device, sets: list[EvalSet], checkpoint_every: int):
    """Train ``net`` for ``opts.steps`` (progress bar on stderr); ``RunError`` when the loss diverges."""
    with tqdm(total=opts.steps, desc=f"train seed {seed}", unit="step", disable=not opts.progress,
              file=sys.stderr, dynamic_ncols=True) as bar:
        try:
            return M.train(net, data, steps=opts.steps, batch_size=opts.batch_size, lr=opts.lr, seed=seed,
                           checkpoint_every=checkpoint_every, on_checkpoint=_checkpoint_scorer(net, sets, device),
                           progress=bar)
        except M.Diverged as exc:
            raise RunError(f"seed {seed}: {exc}; try a lower --lr") from exc


def _run_record(seed: int, res, opts: Options, eval_seconds: float) -> dict[str, Any]:
    """efficacy.json's ``runs[]`` entry of one seed."""
    k = max(1, min(50, len(res.losses) // 10))
    return {"seed": seed, "train_seconds": round(res.seconds, 3),
            "steps_per_second": round(opts.steps / max(res.seconds, 1e-9), 3),
            "eval_seconds": round(eval_seconds, 3),
            "loss_first": float(np.mean(res.losses[:k])), "loss_last": float(np.mean(res.losses[-k:])),
            "losses": [round(x, 6) for x in res.losses], "checkpoints": res.checkpoints}


def _train_seeds(opts: Options, device: torch.device, d: RunData, seeds: list[int], per_sample: dict[str, list[dict]],
                 fixed_rows: dict[str, dict]) -> tuple[list[dict], dict[str, np.ndarray], int | None, float]:
    """Per seed: a fresh network scored untrained, trained, scored again (rows appended to
    ``per_sample``). Returns ``(runs, first seed's predictions per set, parameter count, initial log depth)``."""
    train_items, sets = d.train_items, d.sets
    train_depth = np.concatenate([it.depth[r] for it, r in zip(train_items, [region_mask(i.depth, i.mask, "mask")
                                                                             for i in train_items])])
    init_log = float(np.median(np.log(train_depth)))
    runs, tiles_preds = [], {}
    data = M.TrainData.from_items(train_items, device, lambda it: region_mask(it.depth, it.mask, "mask"))
    checkpoint_every = max(1, opts.steps // opts.checkpoints) if opts.checkpoints > 0 else 0
    n_params = None
    for seed in seeds:
        M.set_determinism(seed, device)
        net = M.DepthUNet(init_log_depth=init_log).to(device)
        n_params = M.count_parameters(net)
        _score_before_training(net, sets, per_sample, fixed_rows, device)
        cp0 = {es.name: {m: float(np.mean([ps["metrics"]["untrained"][-1][m]
                                           for ps in per_sample[es.name][:CHECKPOINT_SAMPLES]]))
                         for m in ("spearman", "silog")} for es in sets}
        log.info("seed %d: training %s parameters for %d steps (batch %d, %dx%d, %s)", seed, f"{n_params:,}",
                 opts.steps, opts.batch_size, opts.size, opts.size, device)
        res = _fit(net, data, opts, seed, device, sets, checkpoint_every)
        res.checkpoints.insert(0, dict(cp0, step=0, loss=None))
        t_eval = time.perf_counter()
        for es in sets:
            preds = _predict_set(net, es, device)
            if seed == seeds[0]:
                tiles_preds[es.name] = preds
            for ps, row in zip(per_sample[es.name], _score(es, preds)):
                ps["metrics"]["trained"].append(row)
        runs.append(_run_record(seed, res, opts, time.perf_counter() - t_eval))
        log.info("seed %d: %.1f s (%.2f steps/s), loss %.4f -> %.4f; eval Spearman %.3f", seed, res.seconds,
                 opts.steps / max(res.seconds, 1e-9), runs[-1]["loss_first"], runs[-1]["loss_last"],
                 res.checkpoints[-1]["eval"]["spearman"] if res.checkpoints else float("nan"))
    return runs, tiles_preds, n_params, init_log


def _results(opts: Options, sets: list[EvalSet], per_sample: dict[str, list[dict]], seeds: list[int]) -> dict[str, Any]:
    """Aggregates per set, and per ``--eval`` folder (``eval/NAME``) when there are several."""
    results: dict[str, Any] = {}
    for es in sets:
        results[es.name] = _aggregate(per_sample[es.name], list(range(len(es.items))), seeds)
    if len(opts.eval) > 1:
        names = _short_names(opts.eval)
        for i, nm in enumerate(names):
            idx = [j for j, o in enumerate(sets[0].origin_index) if o == i]
            if idx:
                results[f"eval/{nm}"] = _aggregate(per_sample["eval"], idx, seeds)
    return results


def _rows_by_metric(sets: list[EvalSet], per_sample: dict[str, list[dict]]) -> None:
    """In place: ``metrics[predictor]`` from a list of per-seed rows to ``{metric: [value per seed]}``."""
    for es in sets:
        for ps in per_sample[es.name]:
            for p in PREDICTORS:
                rows = ps["metrics"][p]
                ps["metrics"][p] = {m: [r[m] for r in rows] for m in METRICS}


def run(opts: Options) -> tuple[dict[str, Any], dict[str, Any]]:
    """Do the whole run. Returns ``(doc, extras)``: ``doc`` is efficacy.json's content, ``extras``
    holds what the report needs beyond it (items, predictions for the tiles, loss curves).

    Raises:
        RunError: bad options or unusable data.
    """
    t_start = time.perf_counter()
    opts.check()
    device = _pick_device(opts)
    d = load_data(opts)
    sets = d.sets
    per_sample = _per_sample_rows(sets)
    fixed_preds, fixed_rows = _fixed_baselines(sets)
    seeds = list(range(opts.seeds))
    runs, tiles_preds, n_params, init_log = _train_seeds(opts, device, d, seeds, per_sample, fixed_rows)
    results = _results(opts, sets, per_sample, seeds)
    gate = _gate(results["eval"], seeds, opts.min_spearman_gain)
    _rows_by_metric(sets, per_sample)  # drops the per-seed repetition of the deterministic baselines

    doc = {
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": opts.command,
        "options": {k: v for k, v in asdict(opts).items() if k not in ("progress", "command")},
        "environment": _environment(device),
        "model": {"name": "DepthUNet", "parameters": n_params, "widths": list(M.WIDTHS), "bottleneck": M.BOTTLENECK,
                  "output": "log depth", "init_log_depth": init_log,
                  "loss": f"SILog (Eigen et al. 2014 eq. 4), lambda {M.SILOG_LAMBDA} (1 for relative-depth samples), "
                          "on depth > 0 and mask > 0.5"},
        "data": {"train": d.train_info, "eval": d.eval_info, "train_samples": len(d.train_items),
                 "held_back_samples": len(d.held_items), "held_back_subjects": d.held_subjects,
                 "train_subjects": sorted({it.subject_id for it in d.train_items}),
                 "eval_samples": len(sets[0].items), "eval_subjects_in_train": d.leaked, "skipped": d.skipped,
                 "load_seconds": round(d.load_s, 3)},
        "seeds": seeds,
        "metrics": list(METRICS),
        "higher_is_better": sorted(HIGHER_IS_BETTER),
        "results": results,
        "gate": gate,
        "runs": runs,
        "per_sample": per_sample,
        "wall_seconds": round(time.perf_counter() - t_start, 3),
    }
    extras = {"sets": sets, "preds": tiles_preds, "fixed": fixed_preds}
    return doc, extras


def _short_names(paths: list[str]) -> list[str]:
    names, seen = [], {}
    for p in paths:
        base = os.path.basename(os.path.normpath(p)) or "eval"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def _gate(res: dict[str, Any], seeds: list[int], min_gain: float | None) -> dict[str, Any]:
    """Spearman gain of ``trained`` over the best baseline on the pooled eval set, per seed then averaged."""
    gains, best_per_seed = [], []
    for k in range(len(seeds)):
        b = max(BASELINES, key=lambda p: res[p]["per_seed"][k]["spearman"])
        best_per_seed.append(b)
        gains.append(res["trained"]["per_seed"][k]["spearman"] - res[b]["per_seed"][k]["spearman"])
    mean, std = _mean_std(gains)
    best = max(BASELINES, key=lambda p: res[p]["mean"]["spearman"])
    return {"metric": "spearman", "set": "eval", "min_gain": min_gain, "best_baseline": best,
            "best_baseline_per_seed": best_per_seed, "best_baseline_spearman": res[best]["mean"]["spearman"],
            "trained_spearman": res["trained"]["mean"]["spearman"], "gain_per_seed": gains, "gain": mean,
            "gain_std": std, "passed": None if min_gain is None else bool(mean >= min_gain)}
