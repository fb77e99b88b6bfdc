"""Dataset cards and asset lists: what a store or shard folder holds, and the licence of every asset used.

A *dataset card* is a ``README.md`` in the Hugging Face card format: YAML front matter (``license``,
``task_categories``, ``size_categories``, ``tags``, ...) followed by Markdown that states what a
sample holds (with units), the counts per split and source, the generator version and config hash,
how to load the data (webdataset, Ray Data, HF ``datasets``, PyTorch) and the licence and
attribution of every asset the samples use.

Assets and licences per sample come from :mod:`synthgen.assets` (scans, HDRIs, MakeHuman parts,
capture sources, each with the licence from its ``ATTRIBUTION.md`` or record). A licence that
cannot be found is listed as ``unknown`` and flagged in the card. The list is kept as data too: ``STORE/_meta/assets.json`` (:func:`write_store_card`) and the shard manifest's
``assets`` (written by ``synthgen shard``), so a shard run finds licences even when the asset files
are no longer reachable.

Entry points: :func:`write_store_card` (render driver and ingest call it at the end of a run) and
:func:`shard_card` (``synthgen shard`` writes ``DIR/_meta/README.md``).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

from . import __version__
from .assets import (ASSETS_NAME, UNKNOWN, AssetCollector, AssetResolver, find_attribution,  # noqa: F401
                     hf_licence_id, record_assets)
from .atomic import atomic_path, write_json_atomic
from .store import META_DIR, list_keys, read_store_meta

log = logging.getLogger("synthgen.card")

CARD_NAME = "README.md"


# ----------------------------------------------------------------------------- the card

def size_category(n: int) -> str:
    """Hugging Face ``size_categories`` bucket of ``n`` samples."""
    for lim, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                      (10_000_000, "1M<n<10M")):
        if n < lim:
            return name
    return "10M<n<100M"


def _yaml(doc: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)


def _md(v: Any) -> str:
    return str("-" if v is None else v).replace("|", "\\|").replace("\n", " ")


def sample_table(members: list[str] | None = None) -> str:
    """What a sample holds, with units (Markdown table)."""
    rows = [
        ("`KEY.rgb.exr`", "linear scene-referred RGB (Rec. 709 primaries), half float, channels R, G, B"),
        ("`KEY.rgb.png` / `.jpg`", "`--encode train`: 8-bit sRGB after the documented view transform"),
        ("`KEY.depth.exr`", "planar z-depth along the optical axis, **metres**, float32, channel `Y` "
                            "(`Z` in format 1); 0 = invalid / background"),
        ("`KEY.depth.png`", "`--encode train`: 16-bit grey, **millimetres** (`value / 1000` = metres); 0 = invalid"),
        ("`KEY.mask.exr` / `.png`", "subject coverage in [0, 1] (half float; PNG: 8-bit, `value / 255`)"),
        ("`KEY.NAME.exr`", "optional members, e.g. `depth_sensor.exr`: simulated sensor depth, metres, 0 = hole"),
        ("`KEY.json`", "the sample record: `source`, `subject_id`, camera `K` in pixels (OpenCV, centre of the "
                       "top-left pixel at (0, 0)), `camera_to_world` (4x4, metres, OpenCV axes, or null), "
                       "render parameters or capture information (docs/sample_format.md)"),
    ]
    if members is not None:
        exts = {m.split(".", 1)[-1] if m != "json" else "json" for m in members}
        rows = [r for r in rows if any(e in r[0] for e in exts) or "NAME" in r[0]]
    return "| member | content |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def assets_table(assets: list[dict[str, Any]]) -> str:
    if not assets:
        return "_No assets recorded._"
    lines = ["| kind | asset | licence | attribution | samples |", "|---|---|---|---|---|"]
    for a in assets:
        who = a.get("attribution") or ""
        if a.get("attribution_file"):
            who = f"{who} (`{a['attribution_file']}`)".strip()
        if a.get("kind") == "capture":
            who = f"{a.get('format') or ''} {a.get('sensor') or ''}: {who}".strip()
        tags = ", ".join(f"{k}={v}" for k, v in sorted((a.get("tags") or {}).items()))
        lines.append(f"| {_md(a['kind'])} | `{_md(a['id'])}`{' (' + _md(tags) + ')' if tags else ''} | "
                     f"{_md(a.get('licence'))} | {_md(who)} | "
                     f"{a.get('samples', '')} |")
    unknown = [a for a in assets if a.get("licence") in (None, UNKNOWN)]
    if unknown:
        lines.append("")
        lines.append(f"**{len(unknown)} asset(s) without a known licence** "
                     f"({', '.join(a['id'] for a in unknown[:5])}{' ...' if len(unknown) > 5 else ''}): add an "
                     "`ATTRIBUTION.md` with a `- Licence: ...` line next to the asset before sharing this dataset.")
    return "\n".join(lines)


def licence_ids(assets: list[dict[str, Any]]) -> list[str]:
    ids = sorted({a.get("hf_licence") or hf_licence_id(a.get("licence")) for a in assets})
    return ids or ["other"]


def loading_section(kind: str, splits: list[str], encode: str = "exr") -> str:
    """How to load the data (webdataset, Ray Data, HF datasets, PyTorch)."""
    if kind == "store":
        return """```python
import synthgen
store = synthgen.open_store(".")           # this folder
s = store[store.keys()[0]]                  # s.rgb (H,W,3) float32 linear, s.depth (H,W) metres, s.mask, s.K
```
Pack it into WebDataset shards for training: `synthgen shard STORE --out DIR --encode train`
(see docs/loading.md), or export it: `synthgen export STORE --to npz|diode --out DIR`."""
    sp = splits[0] if splits else "train"
    files = ", ".join(f'"{s}": "DIR/{s}-*.tar"' for s in splits) or '"train": "DIR/train-*.tar"'
    return f"""Shards are plain WebDataset tars at the top of the folder; index files are under `_meta/`.
Decode members with `synthgen.shard.decode` / `decode_sample` (depth in metres, float32, writeable
arrays). Do **not** let generic image decoders (e.g. webdataset's `.decode("rgb8")`) touch `depth.png`:
they turn 16-bit millimetres into 8 bits silently; put `synthgen.shard.decode` first.

```python
import webdataset as wds, synthgen.shard
ds = wds.WebDataset("DIR/{sp}-{{000000..000009}}.tar").decode(synthgen.shard.decode)

import ray                                   # Ray Data: the stock call works on the folder
ds = ray.data.read_webdataset("DIR", decoder=synthgen.shard.decode_sample)

import datasets                              # Hugging Face datasets
ds = datasets.load_dataset("webdataset", data_files={{{files}}})
rec = synthgen.shard.load_record(ds["{sp}"][0]["json"])   # the record (a JSON string in train shards)

import wids                                  # random access
ds = wids.ShardListDataset("DIR/_meta/{sp}.wids.json", transformations=[synthgen.shard.decode_sample])
```
PyTorch: `examples/train_unet.py DIR --split {sp}`; samples of one size (`synthgen shard --size WxH`)
collate with `torch.utils.data.default_collate`."""


def _front_matter(name: str, n: int, assets: list[dict[str, Any]], sources: Iterable[str],
                  extra: dict[str, Any] | None = None) -> str:
    lic = licence_ids(assets)
    doc: dict[str, Any] = {"pretty_name": name, "license": lic[0] if len(lic) == 1 else lic}
    if "other" in lic:
        doc["license_name"] = "see-assets"
        doc["license_details"] = "Mixed or unknown asset licences; see the 'Licences and attribution' table."
    doc.update({"task_categories": ["depth-estimation", "image-segmentation"],
                "size_categories": [size_category(n)],
                "tags": ["depth", "metric-depth", "portrait", "segmentation", *sorted(set(sources)), "synthgen"]})
    doc.update(extra or {})
    return f"---\n{_yaml(doc)}---\n"


def _counts_table(rows: dict[str, Counter], sources=("synthetic", "real")) -> str:
    lines = ["| split | " + " | ".join(sources) + " | total |", "|---" * (len(sources) + 2) + "|"]
    for split, c in rows.items():
        lines.append(f"| {split} | " + " | ".join(str(c.get(s, 0)) for s in sources) + f" | {sum(c.values())} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- store cards

def collect_store(store: str | os.PathLike) -> dict[str, Any]:
    """Counts and assets of a store, from its records only: ``{"samples", "by_split_source",
    "subjects", "config_hashes", "versions", "assets", "meta"}``."""
    store = Path(store)
    coll = AssetCollector()
    by = defaultdict(Counter)
    subjects: Counter = Counter()
    hashes, versions = Counter(), Counter()
    n = 0
    for key in list_keys(store):
        try:
            rec = json.loads((store / f"{key}.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
        n += 1
        split = rec.get("split") or "-"
        by[split][rec.get("source", "?")] += 1
        subjects[str(rec.get("subject_id"))] += 1
        h = (rec.get("render") or {}).get("config_hash")
        if h:
            hashes[h] += 1
        versions[str(rec.get("synthgen_version"))] += 1
        coll.add(rec, store, split)
    try:
        meta = read_store_meta(store)
    except Exception:
        meta = None
    return {"samples": n, "by_split_source": dict(by), "subjects": len(subjects), "config_hashes": dict(hashes),
            "versions": dict(versions), "assets": coll.result(), "meta": meta}


def store_card(store: str | os.PathLike, info: dict[str, Any] | None = None) -> str:
    """The dataset card (Markdown with YAML front matter) of a store."""
    store = Path(store)
    info = info or collect_store(store)
    meta = info.get("meta") or {}
    name = meta.get("name") or store.name
    sources = {s for c in info["by_split_source"].values() for s in c}
    chash = meta.get("config_hash") or ", ".join(info["config_hashes"]) or "- (not a render)"
    ingest = (store / META_DIR / "ingest_report.json").is_file()
    body = [
        _front_matter(name, info["samples"], info["assets"], sources),
        f"# {name}\n",
        f"A synthgen sample store: {info['samples']} samples ({', '.join(sorted(sources)) or 'none'}) of "
        f"{info['subjects']} subject(s), for metric depth estimation and person segmentation. Each sample is a "
        "set of files `KEY.*` in this folder (docs/sample_format.md in synthgen).\n",
        "## What a sample holds\n", sample_table(["rgb.exr", "depth.exr", "mask.exr", "json"]), "",
        "## Counts\n", _counts_table(info["by_split_source"]), "",
        "## Provenance\n",
        f"- generator: synthgen {', '.join(info['versions']) or __version__} (card by synthgen {__version__})",
        f"- config hash: `{chash}`" + (f", job `{meta.get('name')}`, seed {meta.get('seed')}, "
                                       f"config `{meta.get('config_path')}`" if meta.get("name") else ""),
        "- ingest report: `_meta/ingest_report.json`" if ingest else "- run ledger: `_meta/` (store.json, run.json)",
        "",
        "## How to load\n", loading_section("store", []), "",
        "## Licences and attribution\n",
        "Every asset the samples use, with its licence (from the asset's `ATTRIBUTION.md`, or the record for "
        "MakeHuman parts). Also in `_meta/assets.json`.\n",
        assets_table(info["assets"]), "",
    ]
    return "\n".join(body)


def write_store_card(store: str | os.PathLike) -> Path:
    """Write ``STORE/README.md`` (the dataset card) and ``STORE/_meta/assets.json`` (the asset list as
    data); returns the card's path. Reads only the JSON records. Call it at the end of a render or
    ingest run.
    """
    store = Path(store)
    info = collect_store(store)
    (store / META_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(store / META_DIR / ASSETS_NAME, {"kind": "synthgen.assets/1", "synthgen_version": __version__,
                                                      "assets": info["assets"]})
    path = store / CARD_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(store_card(store, info), "utf-8")
    return path


# ----------------------------------------------------------------------------- shard cards

def shard_card(manifest: dict[str, Any], name: str | None = None) -> str:
    """The dataset card of a shard folder, from its manifest (``splits``, ``totals``, ``inputs``, ``assets``)."""
    splits = list(manifest.get("splits", {}))
    enc = (manifest.get("options") or {}).get("encode", {}).get("name", "exr")
    assets = manifest.get("assets", [])
    totals = manifest.get("totals", {})
    name = name or "synthgen shards"
    rows = {s: Counter(v.get("by_source", {})) for s, v in manifest.get("splits", {}).items()}
    sources = [s for s, n in (totals.get("by_source") or {}).items() if n]
    hashes = sorted(({(i.get("store_meta") or {}).get("config_hash") for i in manifest.get("inputs", [])}
                     | set(manifest.get("config_hashes") or {})) - {None})
    configs = [{"config_name": "default",
                "data_files": [{"split": s, "path": f"{s}-*.tar"} for s in splits]}]
    resize = ((manifest.get("options") or {}).get("encode") or {}).get("resize")
    body = [
        _front_matter(name, int(totals.get("samples", 0)), assets, sources, {"configs": configs}),
        f"# {name}\n",
        f"WebDataset shards written by `synthgen shard` ({manifest.get('format')}): {totals.get('samples')} samples "
        f"in {totals.get('shards')} shards, {totals.get('subjects')} subject(s); splits are by subject (no "
        f"subject is in two splits). Encoding: `{enc}`"
        + (f"; every sample resized to {resize['width']}x{resize['height']} ({resize['mode']})" if resize else "")
        + ".\n",
        "## What a sample holds\n", sample_table(manifest.get("members")), "",
        "## Counts\n", _counts_table(rows), "",
        "## Provenance\n",
        f"- generator: synthgen {manifest.get('synthgen_version')}",
        f"- config hash(es) of the rendered inputs: {', '.join(f'`{h}`' for h in hashes) or '-'}",
        f"- command: `{manifest.get('command')}`",
        f"- fingerprint: `{manifest.get('fingerprint')}`; manifest: `_meta/manifest.json`; "
        "per-sample records: `_meta/samples.jsonl`",
        "",
        "## How to load\n", loading_section("shards", splits, enc), "",
        "When publishing on the Hugging Face Hub, copy this card to the repository root as `README.md` (kept in "
        "`_meta/` here so that `ray.data.read_webdataset(DIR)` finds only tars).\n",
        "## Licences and attribution\n",
        "Every asset used by the samples in these shards (also in `_meta/manifest.json` under `assets`).\n",
        assets_table(assets), "",
    ]
    return "\n".join(body)


def read_card_assets(path: str | os.PathLike) -> dict[str, Any] | None:
    """The card and asset list of a store or shard folder, for ``synthgen qa``: ``{"card", "assets"}``
    (``card`` is the card's path or None; ``assets`` from the shard manifest or ``_meta/assets.json``), or None."""
    path = Path(path)
    assets = None
    card = None
    for c in (path / "_meta" / CARD_NAME, path / CARD_NAME):
        if c.is_file():
            card = str(c)
            break
    for f in (path / "_meta" / "manifest.json", path / "manifest.json", path / META_DIR / ASSETS_NAME):
        try:
            doc = json.loads(f.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc.get("assets"), list):
            assets = doc["assets"]
            break
    if card is None and assets is None:
        return None
    return {"card": card, "assets": assets or []}
