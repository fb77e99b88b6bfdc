"""Assets used by samples and their licences: the data behind dataset cards (:mod:`synthgen.card`).

Per sample record (:func:`record_assets`):

- synthetic: the scan (``render.scan``; licence from the ``ATTRIBUTION.md`` next to the scan file,
  e.g. ``scenes/NAME/ATTRIBUTION.md``), the HDRI (``render.hdri``; ``hdris/ATTRIBUTION.md``) and,
  for procedural people, every MakeHuman part in ``render.subject.assets[]`` (licence and source
  are in the record);
- real: the capture source (``capture.source_root``, ``format``, ``sensor``; licence from an
  ``ATTRIBUTION.md`` in the source folder or one of its two parents).

:class:`AssetResolver` finds licences (a store's ``_meta/assets.json`` first, then the files),
:class:`AssetCollector` gathers the unique assets of many records with sample counts. A licence that
cannot be found is ``unknown``.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from .store import META_DIR, read_store_meta

ASSETS_NAME = "assets.json"
UNKNOWN = "unknown"
ATTRIBUTION_FILES = ("ATTRIBUTION.md", "ATTRIBUTION.txt", "LICENSE.md", "LICENSE", "LICENSE.txt")

_LICENCE_LINE = re.compile(r"^\s*[-*]?\s*\**\s*licen[cs]e\s*\**\s*:\s*\**\s*(.+?)\s*$", re.I | re.M)
_LICENSED = re.compile(r"licen[cs]ed\s+(?:under\s+)?(?:the\s+)?([A-Za-z0-9][^;,\n(]*)", re.I)
_ORIGIN_LINE = re.compile(r"^\s*[-*]?\s*\**\s*(?:origin|source|sources)\s*\**\s*:\s*(.+?)\s*$", re.I | re.M)
_HF_LICENCES = [  # (pattern on the licence text, Hugging Face licence id)
    (r"\bcc0\b|public[- ]domain", "cc0-1.0"),
    (r"cc[- ]by[- ]nc[- ]sa[- ]?4", "cc-by-nc-sa-4.0"), (r"cc[- ]by[- ]nc[- ]?4", "cc-by-nc-4.0"),
    (r"cc[- ]by[- ]sa[- ]?4", "cc-by-sa-4.0"), (r"cc[- ]by[- ]sa[- ]?3", "cc-by-sa-3.0"),
    (r"cc[- ]by[- ]?4", "cc-by-4.0"), (r"cc[- ]by[- ]?3", "cc-by-3.0"), (r"cc[- ]by[- ]?2", "cc-by-2.0"),
    (r"\bmit\b", "mit"), (r"apache", "apache-2.0"), (r"\bbsd\b", "bsd"),
]


# ----------------------------------------------------------------------------- attribution files

def hf_licence_id(text: str | None) -> str:
    """Hugging Face licence id for a licence text (``"CC BY 4.0 (https://...)"`` -> ``cc-by-4.0``); ``other`` if unknown."""
    t = (text or "").lower().replace("_", " ")
    for pat, ident in _HF_LICENCES:
        if re.search(pat, t):
            return ident
    return "other"


@lru_cache(maxsize=256)
def _parse_attribution(path: str) -> dict[str, Any] | None:
    try:
        text = Path(path).read_text("utf-8", errors="replace")
    except OSError:
        return None
    m = _LICENCE_LINE.search(text)
    licence = _with_continuation(text, m) if m else None
    if licence is None and re.search(r"part of synthgen \(project licen[cs]e\)", text, re.I):
        licence = "Apache-2.0 (synthgen project licence; self-made, no third-party content)"
    if licence is None:
        m2 = _LICENSED.search(text)
        licence = m2.group(1).strip() if m2 else None
    if licence is None and Path(path).name.upper().startswith("LICENSE"):
        licence = text.strip().splitlines()[0].strip() if text.strip() else None
    origin = _ORIGIN_LINE.search(text)
    attribution = _with_continuation(text, origin) if origin else _first_sentence(text)
    return {"licence": (licence or UNKNOWN).rstrip("."), "attribution": attribution,
            "attribution_file": str(Path(path).resolve())}


def _with_continuation(text: str, m: re.Match) -> str:
    """The matched bullet's value plus its indented continuation lines, joined by spaces."""
    parts = [m.group(m.lastindex or 1).strip()]
    for ln in text[m.end():].splitlines()[1:]:
        if not ln.strip() or not ln[:1].isspace() or ln.lstrip()[:1] in "-*":
            break
        parts.append(ln.strip())
    return " ".join(parts)


def _first_sentence(text: str) -> str | None:
    """The first sentence of the first paragraph that is not a heading (at most 200 characters)."""
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(ln.strip() for ln in para.splitlines() if not ln.lstrip().startswith(("#", "|")))
        if para:
            m = re.match(r"(.+?[.;])(\s|$)", para)
            return (m.group(1) if m else para)[:200]
    return None


def find_attribution(start: str | os.PathLike, levels: int = 0) -> dict[str, Any] | None:
    """Parse the first attribution file (:data:`ATTRIBUTION_FILES`) in ``start`` (a folder, or the
    folder of a file) or up to ``levels`` parents; ``{"licence", "attribution", "attribution_file"}`` or None."""
    p = Path(start)
    folder = p if p.is_dir() else p.parent
    for _ in range(levels + 1):
        for name in ATTRIBUTION_FILES:
            f = folder / name
            if f.is_file():
                return _parse_attribution(str(f))
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


# ----------------------------------------------------------------------------- assets of records

def record_assets(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The assets one sample record uses: ``[{"kind", "id", ...}]`` (unresolved: licences of scans,
    HDRIs and capture sources are looked up by :class:`AssetResolver`)."""
    out: list[dict[str, Any]] = []
    r = rec.get("render") or {}
    if rec.get("source") == "synthetic" or r:
        scan = r.get("scan") or {}
        if scan.get("id"):
            out.append({"kind": "scan", "id": str(scan["id"]), "file": scan.get("file"),
                        **{k: scan[k] for k in ("licence", "attribution", "tags") if scan.get(k)}})
        hdri = r.get("hdri") or {}
        if hdri.get("id"):
            out.append({"kind": "hdri", "id": str(hdri["id"]), "file": hdri.get("file")})
        subject = r.get("subject") or {}
        for a in subject.get("assets") or []:
            if isinstance(a, dict):
                out.append({"kind": f"makehuman_{a.get('kind', 'part')}", "id": str(a.get("name")),
                            "licence": a.get("licence") or UNKNOWN, "attribution": a.get("source")})
    cap = rec.get("capture") or {}
    if rec.get("source") == "real" or cap:
        root = cap.get("source_root") or cap.get("sequence") or rec.get("subject_id")
        out.append({"kind": "capture", "id": str(root), "format": cap.get("format"), "sensor": cap.get("sensor"),
                    "source_root": cap.get("source_root")})
    return out


class AssetResolver:
    """Looks up licence and attribution of assets for the records of one store (cached).

    Order: the store's ``_meta/assets.json`` (written by :func:`write_store_card`; lets shard runs
    work when asset files moved), then the asset files: scans and HDRIs by the absolute paths in
    ``_meta/store.json`` (``plan.scans`` / ``plan.hdris``), else the record's file relative to the
    config's folder, the store or as given; capture sources by ``capture.source_root``.
    """

    def __init__(self, store: str | os.PathLike | None):
        self.store = Path(store) if store else None
        self.known: dict[tuple[str, str], dict[str, Any]] = {}
        self.paths: dict[tuple[str, str], str] = {}
        self.config_dir: Path | None = None
        if self.store is None:
            return
        try:
            meta = read_store_meta(self.store) or {}
        except Exception:  # broken store.json: QA and shard report it; here licences are just not found there
            meta = {}
        plan = meta.get("plan") or {}
        for kind, entries in (("scan", plan.get("scans")), ("hdri", plan.get("hdris"))):
            for e in entries or []:
                if isinstance(e, dict) and e.get("id") and e.get("path"):
                    self.paths[(kind, str(e["id"]))] = e["path"]
        if meta.get("config_path"):
            self.config_dir = Path(meta["config_path"]).parent
        try:
            doc = json.loads((self.store / META_DIR / ASSETS_NAME).read_text("utf-8"))
            for a in doc.get("assets", []):
                if a.get("licence") not in (None, UNKNOWN):
                    self.known[(a["kind"], a["id"])] = {k: a.get(k) for k in ("licence", "attribution",
                                                                              "attribution_file")}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass

    def _candidates(self, kind: str, ident: str, file: str | None) -> Iterable[Path]:
        if (kind, ident) in self.paths:
            yield Path(self.paths[(kind, ident)])
        if file:
            f = Path(file)
            if f.is_absolute():
                yield f
            else:
                for base in (self.config_dir, self.store, Path.cwd()):
                    if base is not None:
                        yield base / f

    def resolve(self, ref: dict[str, Any]) -> dict[str, Any]:
        """``ref`` with ``licence``, ``hf_licence``, ``attribution`` and ``attribution_file`` filled in."""
        out = dict(ref)
        kind, ident = ref["kind"], ref["id"]
        info = None
        if ref.get("licence") not in (None, UNKNOWN):
            info = {"licence": ref["licence"], "attribution": ref.get("attribution"), "attribution_file": None}
        elif (kind, ident) in self.known:
            info = self.known[(kind, ident)]
        elif kind in ("scan", "hdri"):
            for c in self._candidates(kind, ident, ref.get("file")):
                if c.exists() or c.parent.is_dir():
                    info = find_attribution(c)
                    if info:
                        break
        elif kind == "capture" and ref.get("source_root"):
            info = find_attribution(ref["source_root"], levels=2)
        info = info or {"licence": UNKNOWN, "attribution": None, "attribution_file": None}
        out.update({k: v for k, v in info.items() if v is not None or k not in out})
        out["hf_licence"] = hf_licence_id(out.get("licence")) if out.get("licence") != UNKNOWN else "other"
        self.known.setdefault((kind, ident), {k: out.get(k) for k in ("licence", "attribution", "attribution_file")})
        return out


class AssetCollector:
    """Accumulates the assets of many records: unique by ``(kind, id)``, with sample counts per split."""

    def __init__(self):
        self.assets: dict[tuple[str, str], dict[str, Any]] = {}
        self.counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
        self.resolvers: dict[str, AssetResolver] = {}
        self.config_hashes: Counter = Counter()

    def add(self, rec: dict[str, Any], store: str | os.PathLike | None, split: str | None = None) -> None:
        key = str(store) if store is not None else ""
        res = self.resolvers.get(key)
        if res is None:
            res = self.resolvers[key] = AssetResolver(store)
        h = (rec.get("render") or {}).get("config_hash")
        if h:
            self.config_hashes[h] += 1
        for ref in record_assets(rec):
            k = (ref["kind"], ref["id"])
            if k not in self.assets:
                self.assets[k] = res.resolve(ref)
            self.counts[k][split or "-"] += 1

    def result(self) -> list[dict[str, Any]]:
        """Sorted by kind and id; each with ``samples`` (total) and ``samples_by_split``."""
        out = []
        for k in sorted(self.assets):
            a = dict(self.assets[k])
            a["samples"] = sum(self.counts[k].values())
            a["samples_by_split"] = dict(sorted(self.counts[k].items()))
            out.append(a)
        return out
