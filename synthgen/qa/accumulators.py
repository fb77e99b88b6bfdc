"""Streaming, bounded-memory accumulation of QA statistics over samples, and the gate verdicts.

One pass over the samples (:class:`QAAccumulator`, one :meth:`~QAAccumulator.add` per sample
occurrence) updates:

- fixed-bin histograms (per source: synthetic / real) of every per-sample metric in
  :data:`synthgen.qa.metrics.METRICS`, plus a per-pixel histogram of valid depth on log-spaced
  bins, with running count / sum / min / max — memory independent of the number of samples;
- counters of categorical fields (source, split, subject, sensor, HDRI, scan) — one entry per
  distinct value;
- per gate: element and unexpected counts, the first ``max_listed`` offenders, and a min-heap of
  the worst ``worst_n`` samples by a per-gate score (with a small contact-sheet thumbnail,
  :func:`contact_tile`);
- a reservoir sample (Vitter's algorithm R) of ``sample_n`` thumbnails for the random contact sheet;
- for the set-level gates: a 16-byte array digest per distinct content and the first split of
  every key (O(number of samples) small entries, no arrays — about 150 bytes per sample);
- the depth-sensor statistics (:class:`synthgen.qa.sensor.DepthSensorTally`).

:meth:`QAAccumulator.finish_gates` turns the tallies into Great-Expectations-like results.
"""

from __future__ import annotations

import heapq
import io
import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..colour import colourise_depth, srgb_encode
from .gates import EXPECTATION_TYPES, Gates, gate_names
from .metrics import METRIC_BY_NAME, METRICS, PIXEL_DEPTH_EDGES, measure, record_fields
from .samples import Decoded
from .sensor import DepthSensorTally


def contact_tile(rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray, height: int = 96) -> bytes:
    """PNG bytes of a contact-sheet tile: sRGB colour | colourised depth | mask overlay.

    Colour uses the default view transform (clip to [0, 1], sRGB encode); depth uses turbo between
    the 1st and 99th percentile of valid depth, black = invalid (0), magenta = NaN/inf; the overlay
    tints subject pixels green in proportion to the mask. Panels are resized to ``height`` pixels
    (nearest-neighbour when enlarging, so tiny images stay crisp).
    """
    from PIL import Image

    rgb = np.nan_to_num(rgb, nan=0.0, posinf=1.0, neginf=0.0)
    c = (srgb_encode(rgb) * 255 + 0.5).astype(np.uint8)
    nonfinite = ~np.isfinite(depth)
    dep = colourise_depth(np.where(nonfinite, 0.0, depth))
    dep[nonfinite] = (255, 0, 255)
    mk = np.clip(np.nan_to_num(mask), 0, 1)[..., None] * 0.6
    ov = (c * (1 - mk) + np.array([40, 230, 90], np.float32) * mk + 0.5).astype(np.uint8)
    gap = np.full((c.shape[0], max(1, c.shape[1] // 32), 3), 255, np.uint8)
    strip = np.concatenate([c, gap, dep, gap, ov], axis=1)
    im = Image.fromarray(strip)
    h, w = strip.shape[:2]
    new_w = max(1, round(w * height / h))
    im = im.resize((new_w, height), Image.NEAREST if height >= h else Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


class _Hist:
    __slots__ = ("counts", "n", "sum", "min", "max")

    def __init__(self, nbins: int):
        self.counts = np.zeros(nbins, np.int64)
        self.n, self.sum, self.min, self.max = 0, 0.0, math.inf, -math.inf


@dataclass
class Tile:
    """A contact-sheet entry: where the sample is, why it is shown, and its PNG thumbnail."""
    key: str
    location: str
    split: str
    source: str
    subject: str | None
    score: float
    observed: str
    failed: bool
    png: bytes


class _GateTally:
    def __init__(self, worst_n: int, max_listed: int):
        self.element = 0
        self.unexpected = 0
        self.listed: list[dict[str, Any]] = []
        self.heap: list[tuple[float, int, Tile]] = []
        self.worst_n, self.max_listed = worst_n, max_listed
        self.observed: dict[str, Any] = {}

    def list(self, entry: dict[str, Any]):
        if len(self.listed) < self.max_listed:
            self.listed.append(entry)


class QAAccumulator:
    """Streaming QA statistics. Call :meth:`add` once per decoded sample occurrence, then :meth:`result`.

    Args:
        gates: thresholds.
        sample_n: size of the random contact sheet (reservoir).
        worst_n: tiles kept per gate.
        max_listed: offenders listed per gate in the JSON report.
        seed: seed of the reservoir's random generator.
        tile_height: contact-sheet tile height in pixels.
    """

    def __init__(self, gates: Gates, sample_n: int = 24, worst_n: int = 8, max_listed: int = 100,
                 seed: int = 0, tile_height: int = 96):
        self.gates = gates
        self.sample_n, self.worst_n, self.tile_height = sample_n, worst_n, tile_height
        self.rng = random.Random(seed)
        self.seq = 0
        self.n_occurrences = 0
        self.n_decoded = 0
        self.counts: dict[str, Counter] = {k: Counter() for k in
                                           ("source", "split_source", "subject", "sensor", "hdri", "scan", "location")}
        self.hists: dict[str, dict[str, _Hist]] = {m.name: {} for m in METRICS}
        self.pixel_depth: dict[str, np.ndarray] = {}
        self.tally = {g: _GateTally(worst_n, max_listed) for g in gate_names()}
        self.reservoir: list[Tile] = []
        self.n_reservoir_seen = 0
        self._key_first: dict[str, str] = {}
        self._key_splits: dict[str, Counter] = {}
        self._hash_first: dict[bytes, str] = {}
        self._hash_groups: dict[bytes, set] = {}
        self._subject_splits: dict[str, Counter] = {}
        self.sensor = DepthSensorTally()
        self.max_listed = max_listed
        self.render_warnings: list[dict[str, Any]] = []
        self.n_render_warnings = 0
        self.scan_tags: Counter = Counter()

    # -- helpers
    def _tile(self, d: Decoded, fields, score: float, observed: str, failed: bool) -> Tile | None:
        if d.depth is None:
            return None
        return Tile(d.raw.key, d.raw.location, d.raw.split, fields["source"], fields["subject"], float(score),
                    observed, failed, contact_tile(d.rgb, d.depth, d.mask, self.tile_height))

    def _offer_worst(self, gate: str, d: Decoded, fields, score: float, observed: str, failed: bool):
        t = self.tally[gate]
        if self.worst_n <= 0 or score <= 0:  # score 0: nothing wrong to show
            return
        if len(t.heap) < self.worst_n or score > t.heap[0][0]:
            tile = self._tile(d, fields, score, observed, failed)
            if tile is None:
                return
            self.seq += 1
            item = (score, self.seq, tile)
            if len(t.heap) < self.worst_n:
                heapq.heappush(t.heap, item)
            else:
                heapq.heapreplace(t.heap, item)

    def _unexpected(self, gate: str, d: Decoded, observed: str, count: int = 1):
        t = self.tally[gate]
        t.unexpected += count
        t.list({"location": d.raw.location, "split": d.raw.split, "key": d.raw.key, "observed": observed})

    # -- main entry
    def add(self, d: Decoded) -> None:
        """Account for one sample occurrence (decoded or not)."""
        self.n_occurrences += 1
        fields = record_fields(d.record)
        self._count(d, fields)
        # records / members gates: every occurrence
        for gate in ("records_valid", "members_complete"):
            self.tally[gate].element += 1
            msgs = [msg for g, msg in d.problems if g == gate]
            if msgs:
                self._unexpected(gate, d, "; ".join(msgs))
        # per-sample measurements
        metrics, checks, pix = measure(d, self.gates)
        self._add_metrics(fields["source"], metrics, pix)
        self.sensor.add(d, fields)
        for gate, (failed, score, observed) in checks.items():
            if not getattr(self.gates, gate).enabled:
                continue
            t = self.tally[gate]
            t.element += 1
            if failed:
                self._unexpected(gate, d, observed)
            self._offer_worst(gate, d, fields, score, observed, failed)
        if d.depth is not None:
            self.n_decoded += 1
            self._offer_reservoir(d, fields)
        self._set_checks(d, fields)
        self._note_render_warnings(d, fields)

    def _note_render_warnings(self, d: Decoded, fields: dict[str, Any]) -> None:
        """Count the scan tags of a sample (``render.scan.tags``, from a scan manifest) and list samples
        whose record carries an auto-exposure warning (``render.exposure.warning``: a clamped or
        out-of-bound factor, usually a broken material or a wrong HDRI)."""
        render = d.record.get("render") if isinstance(d.record, dict) else None
        tags = render.get("scan", {}).get("tags") if isinstance(render, dict) and isinstance(render.get("scan"), dict) else None
        if isinstance(tags, dict):
            self.scan_tags.update((str(k), str(v)) for k, v in tags.items())
        exp = render.get("exposure") if isinstance(render, dict) else None
        if not isinstance(exp, dict) or not exp.get("warning"):
            return
        self.n_render_warnings += 1
        if len(self.render_warnings) < self.max_listed:
            self.render_warnings.append({"location": d.raw.location, "key": d.raw.key, "subject": fields["subject"],
                                         "scan": fields["scan"], "hdri": fields["hdri"], "factor": exp.get("factor"),
                                         "warning": exp["warning"]})

    def _count(self, d: Decoded, fields: dict[str, Any]) -> None:
        """Count the categorical fields of one occurrence."""
        raw, src, c = d.raw, fields["source"], self.counts
        c["source"][src] += 1
        c["split_source"][(raw.split, src)] += 1
        c["location"][raw.location] += 1
        for f in ("subject", "sensor", "hdri", "scan"):
            if fields[f] is not None:
                c[f][(fields[f], src)] += 1

    def _add_metrics(self, src: str, metrics: dict[str, float | None], pix: np.ndarray | None) -> None:
        """Add one sample's metrics (and per-pixel depth counts) to the histograms of source ``src``."""
        for name, v in metrics.items():
            if v is None:
                continue
            h = self.hists[name].get(src)
            if h is None:
                h = self.hists[name][src] = _Hist(len(METRIC_BY_NAME[name].edges) - 1)
            edges = METRIC_BY_NAME[name].edges
            i = int(np.searchsorted(edges, v, side="right")) - 1
            h.counts[min(max(i, 0), len(h.counts) - 1)] += 1
            h.n += 1
            h.sum += v
            h.min, h.max = min(h.min, v), max(h.max, v)
        if pix is not None:
            acc = self.pixel_depth.get(src)
            self.pixel_depth[src] = pix if acc is None else acc + pix

    def _offer_reservoir(self, d: Decoded, fields: dict[str, Any]) -> None:
        """Reservoir sample (algorithm R) of the random contact sheet."""
        self.n_reservoir_seen += 1
        if len(self.reservoir) < self.sample_n:
            self.reservoir.append(self._tile(d, fields, 0.0, "", False))
        else:
            j = self.rng.randrange(self.n_reservoir_seen)
            if j < self.sample_n:
                self.reservoir[j] = self._tile(d, fields, 0.0, "", False)

    def _set_checks(self, d: Decoded, fields) -> None:
        raw = d.raw
        where = f"{raw.split}:{raw.location}"
        # keys
        for g in ("keys_unique", "keys_disjoint_across_splits"):
            self.tally[g].element += 1
        first = self._key_first.get(raw.key)
        if first is None:
            self._key_first[raw.key] = raw.split
        else:
            ks = self._key_splits.get(raw.key)
            if ks is None:
                ks = self._key_splits[raw.key] = Counter({first: 1})
            new_split = raw.split not in ks
            ks[raw.split] += 1
            if not new_split:
                n = 2 if ks[raw.split] == 2 else 1
                obs = f"key occurs {ks[raw.split]}x in split {raw.split!r}"
                self._unexpected("keys_unique", d, obs, n)
                self._offer_worst("keys_unique", d, fields, float(ks[raw.split]), obs, True)
            else:
                n = 1 + (ks[first] if len(ks) == 2 else 0)
                obs = f"key in splits {sorted(ks)}"
                self._unexpected("keys_disjoint_across_splits", d, obs, n)
                self._offer_worst("keys_disjoint_across_splits", d, fields, float(len(ks)), obs, True)
        # subjects
        if fields["subject"] is not None:
            self.tally["subjects_disjoint_across_splits"].element += 1
            ss = self._subject_splits.setdefault(fields["subject"], Counter())
            new_split = raw.split not in ss
            ss[raw.split] += 1
            if new_split and len(ss) > 1:
                obs = f"subject {fields['subject']!r} in splits {sorted(ss)}"
                self._offer_worst("subjects_disjoint_across_splits", d, fields, float(len(ss)), obs, True)
        # exact duplicates (different keys, identical arrays)
        if d.array_hash is not None:
            self.tally["no_exact_duplicates"].element += 1
            fk = self._hash_first.get(d.array_hash)
            if fk is None:
                self._hash_first[d.array_hash] = raw.key
            elif fk != raw.key:
                grp = self._hash_groups.setdefault(d.array_hash, {fk})
                n = 2 if len(grp) == 1 else 1
                grp.add(raw.key)
                obs = f"identical arrays to key {fk!r} ({where})"
                self._unexpected("no_exact_duplicates", d, obs, n)
                self._offer_worst("no_exact_duplicates", d, fields, float(len(grp)), obs, True)
        del where

    # -- results
    def subject_leaks(self) -> dict[str, dict[str, int]]:
        """Subjects seen in more than one split -> {split: sample count}."""
        return {s: dict(c) for s, c in self._subject_splits.items() if len(c) > 1}

    def finish_gates(self, n_input_files: int = 0, input_errors: list[str] | None = None) -> list[dict[str, Any]]:
        """Evaluate every gate; returns Great-Expectations-like result dicts in report order.

        ``n_input_files`` (store folders + tars) and ``input_errors`` feed the ``inputs_readable`` gate.
        """
        ti = self.tally["inputs_readable"]
        ti.element = max(n_input_files, len(input_errors or []))
        ti.unexpected = len(input_errors or [])
        ti.listed = [{"key": None, "location": e.split(": ", 1)[0], "split": None, "observed": e}
                     for e in (input_errors or [])][: ti.max_listed]

        leaks = self.subject_leaks()
        t = self.tally["subjects_disjoint_across_splits"]
        t.unexpected = sum(sum(c.values()) for c in leaks.values())
        t.listed = [{"subject": s, "splits": c} for s, c in sorted(leaks.items())][: t.max_listed]
        self.tally["no_exact_duplicates"].observed = {"duplicate_groups": len(self._hash_groups)}
        self.tally["keys_unique"].observed = {
            "keys_repeated_within_a_split": sum(1 for c in self._key_splits.values() if max(c.values()) > 1)}
        self.tally["keys_disjoint_across_splits"].observed = {
            "keys_in_several_splits": sum(1 for c in self._key_splits.values() if len(c) > 1)}
        t.observed = {"subjects_in_several_splits": len(leaks)}
        return [_gate_result(name, getattr(self.gates, name), self.tally[name]) for name in gate_names()]

    def worst_tiles(self, gate: str) -> list[Tile]:
        """The kept worst tiles of ``gate``, worst first."""
        return [t for _, _, t in sorted(self.tally[gate].heap, key=lambda x: (-x[0], x[1]))]

    def distributions(self) -> dict[str, Any]:
        """Histogram data per metric and source (JSON-able)."""
        out = {}
        for m in METRICS:
            per = {}
            for src, h in self.hists[m.name].items():
                per[src] = {"count": h.n, "mean": h.sum / h.n if h.n else None,
                            "min": h.min if h.n else None, "max": h.max if h.n else None,
                            "counts": h.counts.tolist()}
            out[m.name] = {"label": m.label, "bin_edges": [float(x) for x in m.edges], "log_bins": m.log,
                           "by_source": per}
        out["pixel_depth_m"] = {"label": "per-pixel valid depth (m)",
                                "bin_edges": [float(x) for x in PIXEL_DEPTH_EDGES], "log_bins": True,
                                "by_source": {s: {"count": int(c.sum()), "counts": c.tolist()}
                                              for s, c in self.pixel_depth.items()}}
        return out


def _gate_result(name: str, cfg: Any, tl: _GateTally) -> dict[str, Any]:
    """The Great-Expectations-like result of gate ``name`` (settings ``cfg``) from its tally."""
    kwargs = cfg.model_dump(exclude={"enabled"})
    if not cfg.enabled:
        return {"success": True, "skipped": True,
                "expectation_config": {"expectation_type": EXPECTATION_TYPES[name],
                                       "kwargs": kwargs, "meta": {"gate": name, "enabled": False,
                                                                "description": "disabled in the gates file"}},
                "result": {}, "exception_info": {"raised_exception": False}}
    el, un = tl.element, tl.unexpected
    pass_frac = (el - un) / el if el else 1.0
    success = pass_frac >= cfg.mostly - 1e-12
    res = {"element_count": el, "unexpected_count": un,
           "unexpected_percent": (100.0 * un / el) if el else 0.0,
           "observed_value": {"passing_fraction": pass_frac, **tl.observed},
           "partial_unexpected_list": tl.listed,
           "partial_unexpected_list_truncated": un > len(tl.listed) and name != "subjects_disjoint_across_splits"}
    return {
        "success": bool(success),
        "skipped": False,
        "expectation_config": {"expectation_type": EXPECTATION_TYPES[name], "kwargs": kwargs,
                               "meta": {"gate": name, "enabled": True,
                                        "description": " ".join((type(cfg).__doc__ or "").replace("``", "").split())}},
        "result": res,
        "exception_info": {"raised_exception": False, "exception_message": None,
                           "exception_traceback": None},
    }
