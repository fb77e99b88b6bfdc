"""``DIR/efficacy.json``, ``DIR/index.html``, ``DIR/training_curve.png`` and ``DIR/tiles/SET/KEY.png``.

Every file is written atomically (temporary file in the folder, then rename). The HTML links the
PNGs by relative path, so the folder can be moved or served as a whole. Tiles from an earlier run
that this run did not write again are removed from ``DIR/tiles``.

A tile is five panels of ``max(S, 128)`` pixels: input sRGB | truth | trained network (first seed) |
ellipsoid baseline | AbsRel error of the trained network. Predictions are shown after the least-squares
log alignment to the truth (the ``*_lsq`` metrics), so all three depth panels share the truth's colour
scale (matplotlib ``turbo``, 2nd-98th percentile of the scored truth). The error panel maps
``|p' - g| / g`` from 0 to 0.25 with ``magma``. Pixels outside the scored region are grey.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .data import write_bytes_atomic, write_json_atomic
from .metrics import lsq_log_fit

log = logging.getLogger("synthgen.efficacy")

GREY = np.array([110, 110, 110], np.uint8)
ERROR_MAX = 0.25
LABELS = {"trained": "trained network", "untrained": "untrained network", "constant": "constant depth",
          "ellipsoid": "ellipsoid bump"}
METRIC_LABELS = {"abs_rel_median": "AbsRel (median)", "delta1_median": "δ<1.25 (median)",
                 "abs_rel_lsq": "AbsRel (lsq log)", "delta1_lsq": "δ<1.25 (lsq log)", "silog": "SILog",
                 "spearman": "Spearman ρ", "abs_rel_raw": "AbsRel (raw, metric only)",
                 "delta1_raw": "δ<1.25 (raw, metric only)"}


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _colour(values: np.ndarray, region: np.ndarray, lo: float, hi: float, cmap: str) -> np.ndarray:
    from matplotlib import colormaps

    t = np.clip((values - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = (colormaps[cmap](np.nan_to_num(t))[..., :3] * 255 + 0.5).astype(np.uint8)
    rgb[~region] = GREY
    return rgb


def tile_image(rgb8: np.ndarray, depth: np.ndarray, region: np.ndarray, trained: np.ndarray,
               ellipsoid: np.ndarray) -> np.ndarray:
    """(P, 5P, 3) uint8 tile (see the module docstring)."""
    g = depth[region].astype(np.float64)
    lo, hi = np.percentile(g, [2, 98])

    def aligned(p: np.ndarray) -> np.ndarray:
        a, b = lsq_log_fit(p[region].astype(np.float64), g)
        return np.exp(a * np.log(np.maximum(p.astype(np.float64), 1e-9)) + b)

    pt, pe = aligned(trained), aligned(ellipsoid)
    err = np.zeros_like(pt)
    err[region] = np.abs(pt[region] - g) / g
    panels = [rgb8, _colour(depth, region, lo, hi, "turbo"), _colour(pt, region, lo, hi, "turbo"),
              _colour(pe, region, lo, hi, "turbo"), _colour(err, region, 0.0, ERROR_MAX, "magma")]
    strip = np.concatenate(panels, axis=1)
    s = rgb8.shape[0]
    k = max(1, -(-128 // s))
    return np.repeat(np.repeat(strip, k, 0), k, 1) if k > 1 else strip


def plot_curves(doc: dict[str, Any]) -> bytes:
    """Training loss per seed (raw and moving average) and checkpoint Spearman per set."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.8))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for i, r in enumerate(doc["runs"]):
        c = colours[i % len(colours)]
        y = np.asarray(r["losses"], float)
        x = np.arange(1, len(y) + 1)
        ax1.plot(x, y, color=c, alpha=0.25, lw=0.6)
        w = max(1, len(y) // 50)
        if len(y) >= w:
            ax1.plot(x[w - 1:], np.convolve(y, np.ones(w) / w, mode="valid"), color=c, lw=1.5,
                     label=f"seed {r['seed']}" + (f" (mean of {w})" if w > 1 else ""))
        steps = [cp["step"] for cp in r["checkpoints"]]
        for name, ls in (("eval", "-"), ("held_back", "--")):
            vals = [cp.get(name, {}).get("spearman") for cp in r["checkpoints"]]
            if steps and all(v is not None for v in vals):
                ax2.plot(steps, vals, ls, color=c, marker="o", ms=3, label=f"seed {r['seed']} {name}")
    ax1.set_xlabel("step")
    ax1.set_ylabel("SILog training loss")
    ax1.set_title("training loss")
    ax1.legend(fontsize=8)
    best = doc["gate"]["best_baseline"]
    ax2.axhline(doc["gate"]["best_baseline_spearman"], color="k", lw=1, ls=":",
                label=f"best baseline on eval ({best})")
    ax2.set_xlabel("step")
    ax2.set_ylabel("mean Spearman ρ")
    ax2.set_title("during training (first 32 samples per set)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _fmt(mean: float | None, std: float | None, nseeds: int) -> str:
    if mean is None:
        return "–"
    return f"{mean:.3f}" + (f" ± {std:.3f}" if nseeds > 1 and std is not None else "")


def _tables(doc: dict[str, Any]) -> list[dict[str, Any]]:
    tables = []
    n = len(doc["seeds"])
    for name, res in doc["results"].items():
        rows = []
        for pred, r in res.items():
            rows.append({"predictor": LABELS.get(pred, pred), "trained": pred == "trained",
                         "cells": [_fmt(r["mean"][m], r["std"][m], n) for m in doc["metrics"]]})
        samples = (doc["data"]["held_back_samples"] if name == "held_back" else None)
        tables.append({"name": name, "rows": rows, "samples": samples})
    return tables


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>synthgen efficacy — {{ verdict }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1500px; padding: 12px 24px; color: #222; font-size: 14px; }
h1 { font-size: 22px; margin: 8px 0; } h2 { font-size: 18px; border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 28px; }
.verdict { display: inline-block; padding: 3px 12px; border-radius: 4px; color: #fff; font-weight: bold; }
.pass { background: #2e7d32; } .fail { background: #c62828; } .skip { background: #888; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; font-size: 13px; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.trained td { font-weight: bold; background: #f4f9ff; }
.tiles { display: flex; flex-direction: column; gap: 10px; }
.tile { font-size: 12px; } .tile img { display: block; image-rendering: pixelated; max-width: 100%; height: auto; }
.muted { color: #777; } code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
</style>
</head>
<body>
<h1>synthgen efficacy <span id="verdict" class="verdict {{ verdict_class }}">{{ verdict }}</span></h1>
<p class="muted">created {{ doc.created }} · synthgen {{ doc.environment.synthgen }} · torch {{ doc.environment.torch }} on {{ doc.environment.device }}{% if doc.environment.get("gpu") %} ({{ doc.environment.gpu }}){% endif %} · {{ doc.environment.torch_threads }} threads · {{ "%.0f"|format(doc.wall_seconds) }} s</p>
<p><code>{{ doc.command }}</code></p>

<h2 id="gate">Gate: Spearman gain over the best baseline</h2>
<p>Trained network ρ {{ "%.3f"|format(gate.trained_spearman) }} vs best baseline <b>{{ gate.best_baseline }}</b>
ρ {{ "%.3f"|format(gate.best_baseline_spearman) }} on the evaluation set: gain
<b>{{ "%.3f"|format(gate.gain) }}</b>{% if doc.seeds|length > 1 %} ± {{ "%.3f"|format(gate.gain_std) }} (std over {{ doc.seeds|length }} seeds){% endif %}.
{% if gate.min_gain is none %}No gate set (<code>--min-spearman-gain</code>).{% else %}Required: ≥ {{ gate.min_gain }} → {{ "passed" if gate.passed else "FAILED" }}.{% endif %}</p>

<h2 id="data">Data</h2>
<table>
<tr><th>role</th><th>path</th><th class="num">samples</th><th class="num">metric depth</th><th class="num">subjects</th><th class="num">unreadable</th></tr>
{% for s in doc.data.train %}<tr><td>train</td><td><code>{{ s.path }}</code></td><td class="num">{{ s.samples }}</td><td class="num">{{ s.metric_samples }}</td><td class="num">{{ s.subjects }}</td><td class="num">{{ s.unreadable|length }}</td></tr>
{% endfor %}{% for s in doc.data.eval %}<tr><td>eval</td><td><code>{{ s.path }}</code></td><td class="num">{{ s.samples }}</td><td class="num">{{ s.metric_samples }}</td><td class="num">{{ s.subjects }}</td><td class="num">{{ s.unreadable|length }}</td></tr>
{% endfor %}</table>
<p>Trained on {{ doc.data.train_samples }} samples ({{ doc.data.train_subjects|length }} subjects);
{% if doc.data.held_back_samples %}held back {{ doc.data.held_back_samples }} samples of subject(s) {{ doc.data.held_back_subjects|join(", ") }} for the in-domain figure;{% else %}no in-domain hold-out;{% endif %}
{{ doc.data.eval_samples }} evaluation samples scored{% if doc.data.skipped %}, {{ doc.data.skipped|length }} skipped (see efficacy.json){% endif %}.
Region: <code>{{ doc.options.region }}</code>; resolution {{ doc.options.size }}×{{ doc.options.size }};
{{ doc.options.steps }} steps × batch {{ doc.options.batch_size }} per seed; seeds {{ doc.seeds|join(", ") }};
model {{ "{:,}".format(doc.model.parameters) }} parameters.</p>

<h2 id="results">Results</h2>
<p class="muted">Mean over samples, then mean ± std over seeds (baselines other than the untrained network do not depend on the seed).
AbsRel and SILog: lower is better; δ&lt;1.25 and Spearman: higher is better. “median”: after median scaling; “lsq log”: after a
least-squares scale and shift in log depth; “raw”: unaligned, metric-depth samples only.</p>
{% for t in tables %}
<h3>{{ t.name }}{% if t.name == "held_back" %} (in-domain: held-back training subjects){% elif t.name == "eval" %} (all evaluation samples){% endif %}</h3>
<table>
<tr><th>predictor</th>{% for m in doc.metrics %}<th>{{ metric_labels[m] }}</th>{% endfor %}</tr>
{% for r in t.rows %}<tr{% if r.trained %} class="trained"{% endif %}><td>{{ r.predictor }}</td>{% for c in r.cells %}<td class="num">{{ c }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endfor %}

<h2 id="curve">Training</h2>
<img src="training_curve.png" alt="training loss and checkpoint Spearman">
<table>
<tr><th>seed</th><th class="num">train s</th><th class="num">steps/s</th><th class="num">loss first</th><th class="num">loss last</th></tr>
{% for r in doc.runs %}<tr><td>{{ r.seed }}</td><td class="num">{{ "%.1f"|format(r.train_seconds) }}</td><td class="num">{{ "%.2f"|format(r.steps_per_second) }}</td><td class="num">{{ "%.4f"|format(r.loss_first) }}</td><td class="num">{{ "%.4f"|format(r.loss_last) }}</td></tr>
{% endfor %}</table>

<h2 id="tiles">Samples</h2>
<p class="muted">input | truth | trained network (seed {{ doc.seeds[0] }}) | ellipsoid baseline | AbsRel error of the trained network (0–{{ error_max }}).
Predictions after the least-squares log alignment; grey: not scored.</p>
{% for group in tiles %}
<h3>{{ group.name }}</h3>
<div class="tiles">
{% for t in group.tiles %}<div class="tile"><img src="{{ t.src }}" alt="{{ t.key }}"><span>{{ t.key }} — ρ {{ "%.3f"|format(t.spearman) }}, AbsRel(lsq) {{ "%.3f"|format(t.abs_rel) }}, {{ t.pixels }} px{% if not t.metric %}, relative depth{% endif %}</span></div>
{% endfor %}</div>
{% endfor %}
</body>
</html>
"""


def render_html(doc: dict[str, Any], tiles: list[dict[str, Any]]) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    gate = doc["gate"]
    if gate["passed"] is None:
        verdict, cls = "NO GATE", "skip"
    else:
        verdict, cls = ("PASS", "pass") if gate["passed"] else ("FAIL", "fail")
    return env.from_string(TEMPLATE).render(doc=doc, gate=gate, verdict=verdict, verdict_class=cls,
                                            tables=_tables(doc), tiles=tiles, metric_labels=METRIC_LABELS,
                                            error_max=ERROR_MAX)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def write_report(out: str | os.PathLike, doc: dict[str, Any], extras: dict[str, Any], max_tiles: int) -> None:
    """Write tiles, the curve, ``index.html`` and finally ``efficacy.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()
    groups = []
    for es in extras["sets"]:
        preds = extras["preds"].get(es.name)
        if preds is None or max_tiles <= 0:
            continue
        group = {"name": es.name, "tiles": []}
        rows = doc["per_sample"][es.name]
        for i, (it, r) in enumerate(zip(es.items[:max_tiles], es.regions)):
            rel = Path("tiles") / _safe(es.name) / f"{_safe(it.key)}-{i:04d}.png"
            img = tile_image(it.rgb, it.depth, r, preds[i], extras["fixed"][es.name]["ellipsoid"][i])
            write_bytes_atomic(out / rel, _png(img))
            written.add((out / rel).resolve())
            m = rows[i]["metrics"]["trained"]
            group["tiles"].append({"src": rel.as_posix(), "key": it.key, "spearman": m["spearman"][0],
                                   "abs_rel": m["abs_rel_lsq"][0], "pixels": rows[i]["pixels"], "metric": it.metric})
        groups.append(group)
    tiles_dir = out / "tiles"
    if tiles_dir.is_dir():
        for p in tiles_dir.rglob("*.png"):
            if p.resolve() not in written:
                p.unlink()
    write_bytes_atomic(out / "training_curve.png", plot_curves(doc))
    write_bytes_atomic(out / "index.html", render_html(doc, groups).encode("utf-8"))
    write_json_atomic(out / "efficacy.json", doc)
