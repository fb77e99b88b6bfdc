"""QA report writers: ``report.json`` (Great-Expectations-like) and a self-contained ``report.html``.

The HTML page is rendered with Jinja2 with autoescaping on, so every key, file name and record
string is HTML-escaped; a Content-Security-Policy meta tag (``default-src 'none'``) forbids
scripts, frames, fonts and remote loads, so nothing from the data can execute even if it slipped
through. All images (matplotlib plots, contact-sheet tiles) are embedded as ``data:image/png``
URIs, so the page opens from disk without companion files.

``report.json`` shape (after Great Expectations' ``ExpectationSuiteValidationResult``)::

    {"success": bool,
     "statistics": {"evaluated_expectations", "successful_expectations",
                    "unsuccessful_expectations", "success_percent", "samples", ...},
     "results": [{"success", "expectation_config": {"expectation_type", "kwargs", "meta"},
                  "result": {"element_count", "unexpected_count", "unexpected_percent",
                             "observed_value", "partial_unexpected_list"},
                  "exception_info": {...}}, ...],
     "summary": {...}, "distributions": {...},
     "depth_sensor": {"groups": [{"source", "sensor", "samples", "hole_fraction_subject",
                                  "hole_fraction_all", "noise_vs_depth": [{"z_m", "sigma_m", "pixels"}],
                                  "noise_fit", ...}], "model": {...}},
     "meta": {...}}
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_bytes_atomic, write_json_atomic
from .accumulators import QAAccumulator, Tile

SOURCE_COLOURS = {"synthetic": "#1f77b4", "real": "#ff7f0e", "unknown": "#7f7f7f"}
PLOT_GROUPS = [
    ("Camera: focal length and field of view", ["focal_35mm", "focal_mm", "fov_x_deg", "fov_y_deg"]),
    ("Camera: pose and distance", ["yaw_deg", "pitch_deg", "roll_deg", "camera_distance_m", "subject_depth_m"]),
    ("Subject coverage", ["mask_fraction"]),
    ("Depth", ["depth_min_m", "depth_max_m", "pixel_depth_m", "invalid_fraction"]),
    ("Exposure and brightness", ["exposure_ev", "brightness", "clipped_fraction"]),
]


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _fig_uri(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return _png_uri(buf.getvalue())


def plot_distribution(label: str, edges: np.ndarray, by_source: dict[str, Any], log: bool) -> str | None:
    """One histogram plot, all sources on the same axes, each normalised to its own sample count
    (fraction per bin), so synthetic and real compare directly. Returns a PNG data URI or None."""
    from matplotlib.figure import Figure

    series = {s: np.asarray(v["counts"], float) for s, v in by_source.items() if v["count"]}
    if not series:
        return None
    nz = np.flatnonzero(np.sum([c for c in series.values()], axis=0))
    lo, hi = max(int(nz[0]) - 2, 0), min(int(nz[-1]) + 3, len(edges) - 1)
    fig = Figure(figsize=(3.9, 2.5))
    ax = fig.add_subplot(111)
    for src in ("synthetic", "real", "unknown"):
        if src not in series:
            continue
        c = series[src]
        frac = c / c.sum()
        col = SOURCE_COLOURS[src]
        ax.stairs(frac, edges, fill=True, alpha=0.3, color=col)
        ax.stairs(frac, edges, color=col, linewidth=1.4, label=f"{src} (n={int(by_source[src]['count'])})")
    if log:
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        if edges[hi] / edges[lo] < 30:  # less than ~1.5 decades: label 2x and 5x too
            ax.xaxis.set_minor_formatter(FuncFormatter(
                lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        else:
            ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(edges[lo], edges[hi])
    ax.set_xlabel(label, fontsize=8)
    ax.set_ylabel("fraction", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.19, top=0.96)
    return _fig_uri(fig)


def plot_usage(title: str, counter: dict[tuple[str, str], int], top: int = 25) -> str | None:
    """Horizontal bar chart of category usage (e.g. HDRI ids), stacked by source. PNG data URI or None."""
    from matplotlib.figure import Figure

    if not counter:
        return None
    totals: dict[str, int] = {}
    for (name, _src), n in counter.items():
        totals[name] = totals.get(name, 0) + n
    names = sorted(totals, key=lambda k: (-totals[k], k))[:top][::-1]
    fig = Figure(figsize=(3.9, max(1.6, 0.22 * len(names) + 0.9)))
    ax = fig.add_subplot(111)
    left = np.zeros(len(names))
    n_src = 0
    for src in ("synthetic", "real", "unknown"):
        vals = np.array([counter.get((n, src), 0) for n in names], float)
        if vals.any():
            ax.barh(range(len(names)), vals, left=left, color=SOURCE_COLOURS[src], label=src)
            left += vals
            n_src += 1
    ax.set_yticks(range(len(names)))
    # data strings reach matplotlib as plain text: escape "$" so mathtext never parses them
    ax.set_yticklabels([(n if len(n) <= 28 else n[:27] + "…").replace("$", r"\$") for n in names], fontsize=7)
    ax.set_xlabel(f"{title} — samples" + (f" (top {top})" if len(totals) > top else ""), fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    if n_src > 1:
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    fig.tight_layout()
    return _fig_uri(fig)


def build_plots(dist: dict[str, Any], acc: QAAccumulator) -> list[dict[str, Any]]:
    """Plot groups for the page: ``[{"title", "plots": [{"name", "label", "uri" | None}]}]``."""
    groups = []
    for title, names in PLOT_GROUPS:
        plots = []
        for n in names:
            d = dist[n]
            uri = plot_distribution(d["label"], np.asarray(d["bin_edges"]), d["by_source"], d["log_bins"])
            plots.append({"name": n, "label": d["label"], "uri": uri})
        groups.append({"title": title, "plots": plots})
    usage = []
    for field, title in (("hdri", "HDRI usage"), ("scan", "scan usage")):
        usage.append({"name": field, "label": title, "uri": plot_usage(title, dict(acc.counts[field]))})
    groups.append({"title": "HDRI and scan usage", "plots": usage})
    return groups


REAL_SENSOR_COLOURS = ("#ff7f0e", "#d62728", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#9467bd", "#7f7f7f", "#2ca02c")


def _sensor_colours(groups: list[dict[str, Any]]) -> list[str]:
    out, i = [], 0
    for g in groups:
        if g["source"] == "synthetic":
            out.append(SOURCE_COLOURS["synthetic"])
        else:
            out.append(REAL_SENSOR_COLOURS[i % len(REAL_SENSOR_COLOURS)])
            i += 1
    return out


def _group_label(g: dict[str, Any]) -> str:
    name = "synthetic (simulated sensor)" if g["source"] == "synthetic" else f"real: {g['sensor']}"
    return name.replace("$", r"\$")


def plot_sensor_noise(ds: dict[str, Any]) -> str | None:
    """Noise sigma (mm) versus depth (m) per depth-sensor group, with the model curve
    ``a + b z²`` of the synthetic records' sensor parameters. PNG data URI or None without data."""
    from matplotlib.figure import Figure

    groups = [g for g in ds["groups"] if g["noise_vs_depth"]]
    if not groups:
        return None
    fig = Figure(figsize=(4.6, 3.0))
    ax = fig.add_subplot(111)
    zmax = 0.0
    for g, col in zip(groups, _sensor_colours(groups)):
        z = [b["z_m"] for b in g["noise_vs_depth"]]
        sig = [1000 * b["sigma_m"] for b in g["noise_vs_depth"]]
        zmax = max(zmax, max(z))
        ax.plot(z, sig, "s" if g["source"] == "synthetic" else "o", mfc="none" if g["source"] == "synthetic" else col,
                color=col, ms=4, label=f"{_group_label(g)} (n={g['samples']})")
    m = ds.get("model")
    if m and "sigma_a_m" in m and "sigma_b_per_m" in m:
        zz = np.linspace(0.0, max(zmax, 1.0) + 0.25, 60)
        ax.plot(zz, 1000 * (m["sigma_a_m"] + m["sigma_b_per_m"] * zz ** 2), "-", color="k", lw=1,
                label="model a + b z² (synthetic records)")
    return _sensor_plot_uri(fig, ax, "depth (m)", "noise sigma (mm)")


def plot_sensor_holes(ds: dict[str, Any], which: str = "subject") -> str | None:
    """Per-sample hole fraction (``which``: ``subject`` or ``all``) per depth-sensor group, each
    normalised to its sample count. PNG data URI or None without data."""
    from matplotlib.figure import Figure

    groups = [g for g in ds["groups"] if sum(g["per_sample_hole_fraction"][which])]
    if not groups:
        return None
    fig = Figure(figsize=(4.6, 3.0))
    ax = fig.add_subplot(111)
    hi = 0
    for g, col in zip(groups, _sensor_colours(groups)):
        c = np.asarray(g["per_sample_hole_fraction"][which], float)
        edges = np.asarray(g["per_sample_hole_fraction"]["bin_edges"])
        hi = max(hi, int(np.flatnonzero(c)[-1]) + 2)
        ax.stairs(c / c.sum(), edges, fill=True, alpha=0.3, color=col)
        ax.stairs(c / c.sum(), edges, color=col, linewidth=1.4, label=f"{_group_label(g)} (n={int(c.sum())})")
    ax.set_xlim(0, edges[min(max(hi, 5), len(edges) - 1)])
    return _sensor_plot_uri(fig, ax, "hole fraction per sample, "
                            + ("inside the subject mask" if which == "subject" else "overall"), "fraction of samples")


def _sensor_plot_uri(fig, ax, xlabel: str, ylabel: str) -> str:
    """Axis labels, legend and margins of a depth-sensor plot; its PNG data URI."""
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.15, top=0.96)
    return _fig_uri(fig)


def sensor_view(ds: dict[str, Any]) -> dict[str, Any]:
    """Table rows and plots of the depth-sensor section (sigma at 1 m and 2 m from each group's fit)."""
    rows = []
    for g in ds["groups"]:
        f = g["noise_fit"]
        rows.append({"label": _group_label(g).replace(r"\$", "$"), "samples": g["samples"],
                     "subject": g["hole_fraction_subject"], "all": g["hole_fraction_all"],
                     "all_over": g["hole_fraction_all_over"],
                     "sigma1": None if f is None else 1000 * (f["sigma_a_m"] + f["sigma_b_per_m"]),
                     "sigma2": None if f is None else 1000 * (f["sigma_a_m"] + 4 * f["sigma_b_per_m"]),
                     "a": None if f is None else f["sigma_a_m"], "b": None if f is None else f["sigma_b_per_m"],
                     "bins": len(g["noise_vs_depth"])})
    plots = [{"name": "sensor_noise", "label": "noise vs depth", "uri": plot_sensor_noise(ds)},
             {"name": "sensor_holes_subject", "label": "hole fraction inside the subject",
              "uri": plot_sensor_holes(ds, "subject")},
             {"name": "sensor_holes_all", "label": "hole fraction overall", "uri": plot_sensor_holes(ds, "all")}]
    return {"rows": rows, "plots": plots, "model": ds.get("model"), "unusable": ds.get("unusable_members", []),
            "unusable_count": ds.get("unusable_count", 0)}


def _tile_view(t: Tile) -> dict[str, Any]:
    return {"key": t.key, "location": t.location, "split": t.split, "source": t.source,
            "subject": t.subject, "score": t.score, "observed": t.observed, "failed": t.failed,
            "uri": _png_uri(t.png)}


def build_summary(acc: QAAccumulator, inputs: list[dict[str, Any]], input_problems: list[str],
                  ignored: list[str], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts for the summary section (JSON-able)."""
    c = acc.counts
    splits = sorted({s for s, _ in c["split_source"]})
    sources = [s for s in ("synthetic", "real", "unknown") if c["source"].get(s)]

    def per(field, top=None):
        totals: dict[str, dict[str, int]] = {}
        for (name, src), n in c[field].items():
            totals.setdefault(name, {})[src] = n
        items = sorted(totals.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        return {"distinct": len(items), "top": [{"name": k, "by_source": v, "total": sum(v.values())}
                                                for k, v in (items[:top] if top else items)]}

    quarantine: dict[str, int] = {}
    for i in inputs:
        for r, n in i["quarantine"].items():
            quarantine[r] = quarantine.get(r, 0) + n
    failures = [{"gate": r["expectation_config"]["meta"]["gate"], "unexpected": r["result"]["unexpected_count"],
                 "element_count": r["result"]["element_count"]}
                for r in results if not r["success"]]
    return {
        "samples": acc.n_occurrences,
        "decoded": acc.n_decoded,
        "by_source": {s: c["source"][s] for s in sources},
        "splits": splits,
        "sources": sources,
        "by_split_source": {sp: {s: c["split_source"].get((sp, s), 0) for s in sources} for sp in splits},
        "exposure_warning_count": acc.n_render_warnings,
        "scan_tags": {name: {v: n for (k, v), n in sorted(acc.scan_tags.items()) if k == name}
                      for name in sorted({k for k, _ in acc.scan_tags})},
        "exposure_warnings": acc.render_warnings,
        "subjects": per("subject", 30),
        "subject_leaks": acc.subject_leaks(),
        "sensors": per("sensor", 30),
        "hdris": per("hdri", 30),
        "scans": per("scan", 30),
        "inputs": inputs,
        "quarantine_reasons": dict(sorted(quarantine.items(), key=lambda kv: -kv[1])),
        "failed_gates": failures,
        "input_problems": input_problems[:200],
        "input_problem_count": len(input_problems),
        "ignored_files": ignored[:50],
        "ignored_file_count": len(ignored),
    }


def render_html(context: dict[str, Any]) -> str:
    """Render ``templates/report.html.j2`` with autoescaping on."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda x: f"{100.0 * x:.1f} %"
    return env.get_template("report.html.j2").render(**context)


def write_report(out_dir: str | os.PathLike, acc: QAAccumulator, results: list[dict[str, Any]],
                 summary: dict[str, Any], meta: dict[str, Any], html: bool = True) -> dict[str, Any]:
    """Write ``report.json`` and (when ``html``) ``report.html`` atomically into ``out_dir``;
    returns the JSON document."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dist = acc.distributions()
    evaluated = [r for r in results if not r.get("skipped")]
    stats = {
        "evaluated_expectations": len(evaluated),
        "successful_expectations": sum(1 for r in evaluated if r["success"]),
        "unsuccessful_expectations": sum(1 for r in evaluated if not r["success"]),
        "success_percent": 100.0 * sum(1 for r in evaluated if r["success"]) / len(evaluated) if evaluated else 100.0,
        "samples": acc.n_occurrences,
        "samples_decoded": acc.n_decoded,
        "samples_by_source": summary["by_source"],
        "samples_by_split": {sp: sum(v.values()) for sp, v in summary["by_split_source"].items()},
    }
    sensor = acc.sensor.result()
    doc = {"success": all(r["success"] for r in results), "statistics": stats, "results": results,
           "summary": summary, "distributions": dist, "depth_sensor": sensor, "meta": meta,
           "evaluation_parameters": {}}
    write_json_atomic(out / "report.json", doc)
    if not html:
        return doc

    gate_views = []
    for r in results:
        name = r["expectation_config"]["meta"]["gate"]
        gate_views.append({"name": name, "result": r, "worst": [_tile_view(t) for t in acc.worst_tiles(name)]})
    ctx = {
        "doc": doc, "summary": summary, "stats": stats, "meta": meta, "gates": gate_views,
        "plot_groups": build_plots(dist, acc),
        "sensor": sensor_view(sensor),
        "random_tiles": [_tile_view(t) for t in acc.reservoir if t is not None],
        "sample_n": acc.sample_n,
    }
    write_bytes_atomic(out / "report.html", render_html(ctx).encode("utf-8"))
    return doc


__all__ = ["write_report", "build_summary", "render_html", "plot_distribution", "plot_usage", "plot_sensor_noise",
           "plot_sensor_holes"]
