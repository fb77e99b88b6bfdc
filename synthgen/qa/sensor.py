"""Depth-sensor statistics of a QA report: the simulated sensor of renders versus real sensors.

For synthetic samples with a ``depth_sensor.exr`` member (the simulated sensor depth) and for real
samples with metric depth (their depth *is* a sensor's), per group (synthetic / real by capture
sensor): hole fraction inside the subject mask (mask >= 0.5) and overall (synthetic: over pixels
with a clean depth; real: over all pixels), and the noise versus depth by
:func:`synthgen.rendering.sensor_fit.noise_moments` (horizontal second differences of smooth valid
pixels; 0.25 m bins) — the estimators the sensor model was fitted with. Memory is bounded: fixed
bins per group.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .metrics import field_at
from .samples import Decoded

HOLE_EDGES = np.linspace(0, 1, 51)


class _SensorGroup:
    __slots__ = ("source", "sensor", "samples", "holes_all", "pixels_all", "holes_subject", "pixels_subject",
                 "hist_subject", "hist_all", "noise_sq", "noise_n")

    def __init__(self, source: str, sensor: str):
        from ..rendering.sensor_fit import NOISE_EDGES_M

        self.source, self.sensor = source, sensor
        self.samples = 0
        self.holes_all = self.pixels_all = self.holes_subject = self.pixels_subject = 0
        self.hist_subject = np.zeros(len(HOLE_EDGES) - 1, np.int64)
        self.hist_all = np.zeros(len(HOLE_EDGES) - 1, np.int64)
        self.noise_sq = np.zeros(len(NOISE_EDGES_M) - 1)
        self.noise_n = np.zeros(len(NOISE_EDGES_M) - 1, np.int64)


class DepthSensorTally:
    """Streaming depth-sensor statistics (bounded memory: fixed bins per group).

    Groups: ``("synthetic", "simulated")`` for ``depth_sensor.exr`` members and ``("real", SENSOR)``
    for real samples with metric depth (``SENSOR`` = the record's capture sensor, else ``"unknown"``);
    at most ``max_groups`` real sensors, the rest pooled as ``"other"``. Also counts the sensor-model
    parameter sets of the synthetic records (``render.depth_sensor.params``).
    """

    def __init__(self, max_groups: int = 8):
        self.groups: dict[tuple[str, str], _SensorGroup] = {}
        self.max_groups = max_groups
        self.params: Counter = Counter()
        self.unusable: list[str] = []
        self.n_unusable = 0

    def add(self, d: Decoded, fields: dict[str, Any]) -> None:
        from ..rendering.sensor_fit import noise_moments

        if d.depth is None:
            return
        rec = d.record if isinstance(d.record, dict) else {}
        if fields["source"] == "synthetic":
            if d.sensor_depth is None:
                if d.sensor_problem:
                    self.n_unusable += 1
                    if len(self.unusable) < 20:
                        self.unusable.append(f"{d.raw.location}: {d.raw.key}.depth_sensor.exr: {d.sensor_problem}")
                return
            key = ("synthetic", "simulated")
            z = d.sensor_depth
            base = np.isfinite(d.depth) & (d.depth > 0)  # surfaces the simulated sensor could see
            p = field_at(rec, "render", "depth_sensor", "params")
            if isinstance(p, dict) and len(self.params) < 50:
                self.params[tuple(sorted((k, v) for k, v in p.items() if isinstance(v, (int, float))))] += 1
        elif fields["source"] == "real" and field_at(rec, "depth", "metric") is not False:
            sensor = fields["sensor"] or "unknown"
            if ("real", sensor) not in self.groups and sum(1 for g in self.groups if g[0] == "real") >= self.max_groups:
                sensor = "other"
            key = ("real", sensor)
            z = d.depth
            base = np.ones(z.shape, bool)
        else:
            return
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = _SensorGroup(*key)
        hole = ~(np.isfinite(z) & (z > 0))
        subj = np.nan_to_num(d.mask, nan=0.0) >= 0.5
        g.samples += 1
        n_all, h_all = int(base.sum()), int((hole & base).sum())
        n_sub, h_sub = int(subj.sum()), int((hole & subj).sum())
        g.pixels_all += n_all
        g.holes_all += h_all
        g.pixels_subject += n_sub
        g.holes_subject += h_sub
        for hist, h, n in ((g.hist_all, h_all, n_all), (g.hist_subject, h_sub, n_sub)):
            if n:
                hist[min(int(h / n * (len(HOLE_EDGES) - 1)), len(hist) - 1)] += 1
        sq, cnt = noise_moments(np.where(hole, 0.0, z))
        g.noise_sq += sq
        g.noise_n += cnt

    def result(self, min_count: int = 200) -> dict[str, Any]:
        """JSON-able summary: ``groups`` (per group: samples, hole fractions, per-sample hole fraction
        histograms, noise-vs-depth bins ``[{"z_m", "sigma_m", "pixels"}]`` with at least ``min_count``
        pixels, the ``sigma = a + b z²`` fit through them), ``model`` (the most common synthetic
        sensor parameters) and the unusable ``depth_sensor.exr`` members."""
        from ..rendering.sensor_fit import NOISE_EDGES_M, fit_sigma, sigma_from_moments

        groups = []
        for (src, sensor), g in sorted(self.groups.items(), key=lambda kv: (kv[0][0] != "synthetic", kv[0])):
            bins = sigma_from_moments(g.noise_sq, g.noise_n, NOISE_EDGES_M, min_count)
            fit = None
            if len(bins) >= 2:
                a, b = fit_sigma(bins)
                fit = {"sigma_a_m": a, "sigma_b_per_m": b}
            groups.append({
                "source": src, "sensor": sensor, "samples": g.samples,
                "hole_fraction_all": g.holes_all / g.pixels_all if g.pixels_all else None,
                "hole_fraction_all_over": "pixels with a clean depth" if src == "synthetic" else "all pixels",
                "hole_fraction_subject": g.holes_subject / g.pixels_subject if g.pixels_subject else None,
                "subject_pixels": g.pixels_subject,
                "per_sample_hole_fraction": {"bin_edges": [float(x) for x in HOLE_EDGES],
                                             "subject": g.hist_subject.tolist(), "all": g.hist_all.tolist()},
                "noise_vs_depth": [{"z_m": z, "sigma_m": s, "pixels": n} for z, s, n in bins],
                "noise_fit": fit,
            })
        model = None
        if self.params:
            p, n = self.params.most_common(1)[0]
            model = {**dict(p), "samples": n, "distinct_parameter_sets": len(self.params)}
        return {"groups": groups, "model": model, "unusable_members": self.unusable,
                "unusable_count": self.n_unusable}
