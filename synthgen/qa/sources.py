"""Reading samples for QA from sample stores and WebDataset shard folders, one sample at a time.

Inputs (see ``synthgen/contract.py`` for the sample format):

- **store**: a folder of ``KEY.rgb.exr``, ``KEY.depth.exr``, ``KEY.mask.exr``, ``KEY.json``. Its file
  names are listed once, sorted, and grouped by key (names sharing the prefix ``KEY.`` are contiguous
  in sorted order), so a sample with a missing member is still seen. The split of a store sample
  is the record's ``split`` field, else ``split`` in ``_meta/store.json``, else the ``SPLIT=`` prefix
  given on the command line (which overrides both), else ``"-"`` (unsplit).
- **shard folder**: a folder of WebDataset tars named ``{split}-{shard:06d}.tar`` (and usually a
  ``manifest.json``). Tars are streamed with :mod:`tarfile`; members are grouped into samples the
  way WebDataset does it: consecutive members with the same key (the member name up to the first
  dot of its base name). The split is the ``{split}`` prefix of the tar's file name.

Members may be EXR (the default) or the training encodings of ``synthgen shard --encode train``:
``rgb.png``/``rgb.jpg`` (sRGB 8-bit), ``depth.png`` (16-bit millimetres, 0 = invalid) and
``mask.png`` (8-bit). Optional extra EXR members (names ``[a-z0-9_]+.exr`` such as
``depth_sensor.exr``, the simulated sensor depth of renders) are read with their sample; only
``depth_sensor.exr`` is decoded (channel ``Z``), for the depth-sensor section of the report. They
play no part in the gates.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..contract import EXTRA_MEMBER_RE, KEY_RE, META_DIR, SampleRecord
from ..errors import QAInputError as InputError  # noqa: F401 (re-exported)
from ..colour import srgb_decode
from ..exr import DEPTH_CHANNEL, depth_channel, read_exr_bytes
from ..errors import ConfigError
from ..store import list_store, read_store_meta

log = logging.getLogger("synthgen.qa")

SHARD_RE = re.compile(r"^(?P<split>.+)-(?P<shard>\d{6})\.tar$")
MEMBER_KINDS = {
    "rgb": ("rgb.exr", "rgb.png", "rgb.jpg", "rgb.jpeg"),
    "depth": ("depth.exr", "depth.png"),
    "mask": ("mask.exr", "mask.png"),
    "json": ("json",),
}
KNOWN_EXTS = {ext: kind for kind, exts in MEMBER_KINDS.items() for ext in exts}
SENSOR_MEMBER = "depth_sensor.exr"
UNSPLIT = "-"


def is_member_ext(ext: str) -> bool:
    """A standard member extension (:data:`KNOWN_EXTS`) or an optional extra EXR member."""
    return ext in KNOWN_EXTS or bool(EXTRA_MEMBER_RE.match(ext))


class InputProblems:
    """Problems with the inputs themselves (not with one sample): ``errors`` (damaged or missing
    shards, manifest disagreements, unreadable lists; they fail the ``inputs_readable`` gate) and
    ``notes`` (informational: no manifest, non-standard names, unknown tar members)."""

    def __init__(self):
        self.errors: list[str] = []
        self.notes: list[str] = []

    def error(self, msg: str) -> None:
        self.errors.append(msg)

    def note(self, msg: str) -> None:
        self.notes.append(msg)


@dataclass
class InputSpec:
    """One command-line input: ``path``, optional split override, and its kind (store or shards)."""
    path: Path
    split: str | None
    kind: str  # "store" | "shards"

    @property
    def label(self) -> str:
        return str(self.path)


@dataclass
class RawSample:
    """The undecoded members of one sample occurrence.

    Attributes:
        location: the store folder or shard tar the sample was read from (for messages).
        split: split name (``"-"`` when unknown).
        key: sample key.
        members: member extension (``rgb.exr``...) -> file bytes.
        source_kind: ``"store"`` or ``"shard"``.
    """
    location: str
    split: str
    key: str
    members: dict[str, bytes]
    source_kind: str
    problems: list[str] = field(default_factory=list)


@dataclass
class Decoded:
    """A decoded sample: arrays (or None), record (or None) and the problems found while decoding.

    Arrays: ``rgb`` (H, W, 3) float32 linear; ``depth`` (H, W) float32 metres (0 invalid; NaN/inf
    kept as stored); ``mask`` (H, W) float32. ``problems`` holds ``(gate, message)`` pairs for the
    ``records_valid`` and ``members_complete`` gates. ``raw_hash`` is a digest of the arrays as
    stored (dtype and shape included). ``sensor_depth``: (H, W) float32 metres of the optional
    ``depth_sensor.exr`` member (None when absent); ``sensor_problem`` says why it could not be used.
    """
    raw: RawSample
    record: dict[str, Any] | None = None
    record_ok: bool = False
    rgb: np.ndarray | None = None
    depth: np.ndarray | None = None
    mask: np.ndarray | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)
    array_hash: bytes | None = None
    sensor_depth: np.ndarray | None = None
    sensor_problem: str | None = None


# --------------------------------------------------------------------------------------------
# discovery

def parse_input(arg: str) -> InputSpec:
    """Resolve a command-line input: ``PATH`` or ``SPLIT=PATH`` (split override for a store).

    Raises:
        InputError: the path does not exist or holds neither samples nor shards.
    """
    split = None
    path = Path(arg)
    m = re.match(r"^([A-Za-z0-9_-]+)=(.+)$", arg)
    if m and not path.exists():
        split, path = m.group(1), Path(m.group(2))
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix == ".tar":
        raise InputError(f"{path}: give the shard folder, not a single tar")
    if not path.is_dir():
        raise InputError(f"{path}: not a folder (expected a sample store or a shard folder)")
    names = os.listdir(path)
    tars = [n for n in names if n.endswith(".tar")]
    samples = [n for n in names if "." in n and n.split(".", 1)[1] in KNOWN_EXTS
               and (n.split(".", 1)[1] != "json" or not tars)]  # manifest.json is not a sample
    if tars and not samples:
        return InputSpec(path, split, "shards")
    if samples:
        if tars:
            log.warning("%s: holds both sample files and tars; reading it as a store (tars ignored)", path)
        return InputSpec(path, split, "store")
    if (path / "manifest.json").exists():
        return InputSpec(path, split, "shards")
    raise InputError(f"{path}: neither a sample store (KEY.rgb.exr, KEY.json, ...) nor a shard folder "
                     "({split}-{shard:06d}.tar)")


def _store_split(path: Path) -> str | None:
    try:
        s = (read_store_meta(path) or {}).get("split")
    except ConfigError:  # a broken store.json is reported by read_meta
        return None
    return s if isinstance(s, str) and s else None


def count_samples(spec: InputSpec) -> int | None:
    """Number of sample groups in a store (cheap: one listing), or the manifest total for shards."""
    if spec.kind == "store":
        return sum(any(e in KNOWN_EXTS for e in exts) for exts in list_store(spec.path).members.values())
    man = spec.path / "manifest.json"
    if man.exists():
        try:
            shards = json.loads(man.read_text("utf-8")).get("shards", [])
            return int(sum(int(s.get("samples", s.get("count", 0))) for s in shards)) or None
        except Exception:
            return None
    return None


def iter_store(spec: InputSpec, ignored: list[str]) -> Iterator[RawSample]:
    """Yield the samples of a store in key order; names that are not sample members are appended
    to ``ignored`` (temporary ``.tmp-*`` files and ``_meta`` are skipped silently)."""
    path = spec.path
    default_split = spec.split or _store_split(path)

    listing = list_store(path)
    ignored += [str(path / n) for n in listing.other]
    for key, exts in listing.members.items():
        ignored += [str(path / f"{key}.{e}") for e in exts if not is_member_ext(e)]
        members = {}
        for e in (e for e in exts if is_member_ext(e)):
            with open(path / f"{key}.{e}", "rb") as fh:
                members[e] = fh.read()
        if not members:
            continue
        split = spec.split or _record_split(members.get("json")) or default_split or UNSPLIT
        yield RawSample(str(path), split, key, members, "store")


def _record_split(js: bytes | None) -> str | None:
    if js is None:
        return None
    try:
        s = json.loads(js).get("split")
    except Exception:
        return None
    return s if isinstance(s, str) and s else None


def shard_files(path: Path) -> list[Path]:
    """Tars of a shard folder, sorted by name."""
    return sorted(p for p in path.iterdir() if p.suffix == ".tar" and p.is_file())


def iter_shards(spec: InputSpec, problems: InputProblems) -> Iterator[RawSample]:
    """Yield the samples of every tar in a shard folder, streaming each tar once.

    Damaged tars are reported as ``problems`` errors, members with unknown extensions as notes.
    """
    for tar_path in shard_files(spec.path):
        m = SHARD_RE.match(tar_path.name)
        if m:
            split = spec.split or m.group("split")
        else:
            split = spec.split or tar_path.stem
            problems.note(f"{tar_path}: name does not follow {{split}}-{{shard:06d}}.tar; split taken as {split!r}")
        try:
            with tarfile.open(tar_path, "r|*") as tf:
                cur_key, members, damaged = None, {}, []
                for ti in tf:
                    if not ti.isfile():
                        continue
                    base = ti.name.rsplit("/", 1)[-1]
                    k, _, ext = base.partition(".")
                    if not is_member_ext(ext) or not KEY_RE.match(k):
                        problems.note(f"{tar_path}: member {ti.name!r} is not a sample member; ignored")
                        continue
                    data = tf.extractfile(ti).read()
                    if k != cur_key or ext in members:  # new key, or the same key again: next sample
                        if cur_key is not None:
                            yield RawSample(str(tar_path), split, cur_key, members, "shard", damaged)
                        cur_key, members, damaged = k, {}, []
                    if len(data) != ti.size:
                        damaged.append(f"{tar_path}: member {ti.name} truncated ({len(data)} of {ti.size} bytes)")
                        problems.error(damaged[-1])
                    members[ext] = data
                if cur_key is not None:
                    yield RawSample(str(tar_path), split, cur_key, members, "shard", damaged)
                if tar_path.stat().st_size < tf.offset + 1024:
                    problems.error(f"{tar_path}: unreadable tar (ends without the end-of-archive marker: "
                                    "truncated?); samples after the damage are not read")
        except (tarfile.TarError, OSError, EOFError) as exc:
            problems.error(f"{tar_path}: unreadable tar ({exc}); samples after the damage are not read")


def read_meta(spec: InputSpec, problems: InputProblems) -> dict[str, Any]:
    """Store/shard-folder level information for the summary.

    Returns ``{"quarantine": Counter-like dict reason -> count, "manifest": {...} | None}``.
    Quarantine and failure lists are found in ``STORE/_meta/*.json`` / ``*.jsonl`` files whose name
    contains ``quarantine`` or ``fail``: every object in them with a ``reason`` or ``reasons`` (list)
    field counts once per reason (a reason object counts by its ``code``). For shard folders the
    manifest's ``excluded`` and ``skipped`` entries count too.
    """
    reasons: dict[str, int] = {}
    n_entries = 0
    meta = spec.path / META_DIR
    candidates = []
    if meta.is_dir():
        candidates += [p for p in sorted(meta.iterdir()) if p.is_file()]
    candidates += [p for p in sorted(spec.path.glob("*.json*")) if p.is_file()] if spec.kind == "shards" else []
    for p in candidates:
        low = p.name.lower()
        if not (("quarantin" in low or "fail" in low) and (low.endswith(".json") or low.endswith(".jsonl"))):
            continue
        try:
            text = p.read_text("utf-8")
            docs = [json.loads(line) for line in text.splitlines() if line.strip()] if low.endswith(".jsonl") \
                else [json.loads(text)]
        except Exception as exc:
            problems.error(f"{p}: unreadable quarantine/failure list ({exc})")
            continue
        n_entries += _count_reasons(docs, reasons)
    manifest = None
    if spec.kind == "shards":
        mp = spec.path / "manifest.json"
        if mp.exists():
            try:
                man = json.loads(mp.read_text("utf-8"))
                listed = [s.get("file") or s.get("name") for s in man.get("shards", []) if isinstance(s, dict)]
                missing = [f for f in listed if f and not (spec.path / f).exists()]
                for f in missing:
                    problems.error(f"{spec.path / f}: listed in manifest.json but missing")
                counts = {str(spec.path / (s.get("file") or s.get("name"))): s.get("samples", s.get("count"))
                          for s in man.get("shards", []) if isinstance(s, dict) and (s.get("file") or s.get("name"))}
                # samples the shard tool left out (``excluded`` / ``skipped``, each with a reason)
                n_entries += _count_reasons([man.get("excluded", []), man.get("skipped", [])], reasons)
                manifest = {"shards_listed": len(listed), "shards_missing": missing,
                            "totals": man.get("totals"), "samples_per_shard": counts}
            except Exception as exc:
                problems.error(f"{mp}: unreadable manifest ({exc})")
        else:
            problems.note(f"{spec.path}: no manifest.json in shard folder")
    return {"quarantine_entries": n_entries, "quarantine": reasons, "manifest": manifest}


def _reason_text(r: Any) -> str:
    if isinstance(r, dict):  # e.g. ingest's {"code": ..., "detail": ...}
        r = r.get("code") or r.get("reason") or json.dumps(r, sort_keys=True)
    return str(r)[:160]


def _count_reasons(docs: Any, reasons: dict[str, int]) -> int:
    """Count reasons of every object with ``reason`` or ``reasons`` in ``docs``; returns the number of entries."""
    n = 0
    for obj in _walk(docs):
        if isinstance(obj.get("reasons"), list):
            rs = obj["reasons"]
        elif isinstance(obj.get("reason"), (str, dict)):
            rs = [obj["reason"]]
        else:
            continue
        n += 1
        for r in rs:
            t = _reason_text(r)
            reasons[t] = reasons.get(t, 0) + 1
    return n


def _walk(obj: Any) -> Iterator[dict]:
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


# --------------------------------------------------------------------------------------------
# decoding

def _decode_member(kind: str, ext: str, data: bytes) -> tuple[np.ndarray, list[np.ndarray]]:
    """Decode one image member; returns (float32 array, arrays as stored for hashing)."""
    if ext.endswith("exr"):
        ch = read_exr_bytes(data)
        if kind == "depth":
            d = depth_channel(ch, "depth member")
            return d.astype(np.float32), [d]
        need = {"rgb": ["R", "G", "B"], "mask": ["Y"]}[kind]
        missing = [c for c in need if c not in ch]
        if missing:
            raise ValueError(f"missing channel(s) {missing}; found {sorted(ch)}")
        stored = [ch[c] for c in need]
        if kind == "rgb":
            return np.stack(stored, axis=-1).astype(np.float32), stored
        return stored[0].astype(np.float32), stored
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if kind == "rgb":
            a = np.asarray(im.convert("RGB"))
            return srgb_decode(a.astype(np.float32) / 255.0).astype(np.float32), [a]
        a = np.asarray(im)
    if kind == "depth":
        return a.astype(np.float32) / 1000.0, [a]  # 16-bit millimetres, 0 = invalid
    return a.astype(np.float32) / (65535.0 if a.dtype == np.uint16 else 255.0), [a]


def decode(raw: RawSample) -> Decoded:
    """Parse the record, check members and checksums, decode the arrays.

    Never raises for bad data: problems are recorded on the result as ``(gate, message)``.
    """
    import hashlib

    d = Decoded(raw)
    where = f"{raw.location}: {raw.key}"
    d.problems.extend(("records_valid", p) for p in raw.problems)
    mem = raw.members
    present = {}
    for kind, exts in MEMBER_KINDS.items():
        ext = next((e for e in exts if e in mem), None)
        if ext is None:
            d.problems.append(("members_complete", f"{where}.{exts[0]} missing"))
        else:
            present[kind] = ext
    if "json" in present:
        try:
            rec = json.loads(mem["json"])
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
            d.record = rec
        except Exception as exc:
            d.problems.append(("records_valid", f"{where}.json: not valid JSON ({exc})"))
        if d.record is not None:
            try:
                SampleRecord.model_validate(d.record)
                d.record_ok = True
            except Exception as exc:
                first = str(exc).splitlines()
                d.problems.append(("records_valid", f"{where}.json: does not follow the sample schema "
                                                    f"({'; '.join(first[:3])})"))
            if d.record.get("key") not in (None, raw.key):
                d.problems.append(("records_valid", f"{where}.json: record key {d.record.get('key')!r} "
                                                    "differs from the file name"))
            files = d.record.get("files") if isinstance(d.record.get("files"), dict) else {}
            for kind in ("rgb", "depth", "mask"):
                ext = present.get(kind)
                meta = files.get(ext) if ext else None
                if isinstance(meta, dict) and isinstance(meta.get("sha256"), str):
                    if hashlib.sha256(mem[ext]).hexdigest() != meta["sha256"]:
                        d.problems.append(("records_valid", f"{where}.{ext}: sha256 does not match the record"))
    h = hashlib.blake2b(digest_size=16)
    arrays = {}
    for kind in ("rgb", "depth", "mask"):
        ext = present.get(kind)
        if ext is None:
            continue
        try:
            arr, stored = _decode_member(kind, ext, mem[ext])
        except Exception as exc:
            d.problems.append(("records_valid", f"{where}.{ext}: cannot decode ({exc})"))
            continue
        arrays[kind] = arr
        for s in stored:
            h.update(f"{kind}{s.dtype.str}{s.shape}".encode())
            h.update(np.ascontiguousarray(s).tobytes())
    if len(arrays) == 3:
        shapes = {k: a.shape[:2] for k, a in arrays.items()}
        if len(set(shapes.values())) != 1:
            d.problems.append(("records_valid", f"{where}: member shapes disagree {shapes}"))
        else:
            d.rgb, d.depth, d.mask = arrays["rgb"], arrays["depth"], arrays["mask"]
            d.array_hash = h.digest()
    if SENSOR_MEMBER in mem and d.depth is not None:  # not part of the gates or the array hash
        try:
            sc = read_exr_bytes(mem[SENSOR_MEMBER])
            sd = sc.get(DEPTH_CHANNEL, sc.get("Z"))
            if sd is None:
                d.sensor_problem = "no Z channel"
            elif sd.shape != d.depth.shape:
                d.sensor_problem = f"shape {sd.shape} != depth {d.depth.shape}"
            else:
                d.sensor_depth = sd.astype(np.float32)
        except Exception as exc:
            d.sensor_problem = f"cannot decode ({exc})"
    return d
