"""Loading a render job: YAML read safely, ``--set`` overrides, validation errors worded for people,
asset resolution (globs, header sniffing) and the config hash that identifies a job.

Errors are raised as :class:`ConfigError`, whose message names the file, the key path
(e.g. ``camera.focal_length_mm.low``), the bad value and what was expected. The CLI maps it to exit 2.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from .. import safeyaml
from ..errors import ConfigError  # noqa: F401 (re-exported)
from ..safeyaml import bounded_repr
from .manifest import expand_manifest
from .config import HDRI_EXTENSIONS, SCAN_EXTENSIONS, HdriAsset, Job, RenderConfig, ScanAsset


def _fmt_loc(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("constant", "uniform", "normal", "loguniform", "choice", "function-after[_check(), Normal]"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration ({exc.error_count()} error(s)):"]
    for err in exc.errors():
        loc = _fmt_loc([p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))])
        val_s = bounded_repr(err.get("input"), 80)  # never repr() a whole value: it may be huge
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {loc}: {msg} (got {val_s})")
    return "\n".join(lines)


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping with :func:`synthgen.safeyaml.load_file` (safe tags only; size, nesting
    and alias expansion bounded; UTF-8). Raises ConfigError naming the file and, when known, the line."""
    p = Path(path)
    try:
        data = safeyaml.load_file(p)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror or exc})") from exc
    except safeyaml.SafeYAMLError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def set_override(data: dict, dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted='a.b'`` (creating mappings as needed)."""
    parts = dotted.split(".")
    cur = data
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"override {dotted}: {p} is not a mapping")
    cur[parts[-1]] = value


def _sniff(path: Path, kind: str) -> None:
    """Cheap readability check of a scan or HDRI file by its header bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {kind} ({exc.strerror})") from exc
    ext = path.suffix.lower()
    ok = {
        ".glb": head.startswith(b"glTF"),
        ".gltf": head.lstrip()[:1] == b"{",
        ".fbx": head.startswith(b"Kaydara FBX Binary") or head.lstrip().startswith(b";"),
        ".obj": len(head) > 0 and b"\x00" not in head,
        ".ply": head.startswith(b"ply"),
        ".hdr": head.startswith(b"#?RADIANCE") or head.startswith(b"#?RGBE"),
        ".exr": head.startswith(b"\x76\x2f\x31\x01"),
    }[ext]
    if not ok:
        raise ConfigError(f"{path}: unreadable {kind}: content is not a valid {ext} file")
    size = path.stat().st_size
    if ext == ".glb":  # header: magic, version, total length (little-endian uint32)
        declared = int.from_bytes(head[8:12], "little")
        if declared != size:
            raise ConfigError(f"{path}: unreadable {kind}: GLB header declares {declared} bytes, file has {size} (truncated?)")
    if ext == ".hdr" and b"\n\n" not in head and size < 64:
        raise ConfigError(f"{path}: unreadable {kind}: Radiance header is incomplete")


def _expand(pattern: str, base: Path, key: str, exts: set[str], kind: str) -> list[Path]:
    full = pattern if os.path.isabs(pattern) else str(base / pattern)
    matches = sorted(Path(p).resolve() for p in glob.glob(full, recursive=True))
    if not matches:
        raise ConfigError(f"{key}: {pattern!r} matches no {kind} files (looked in {base})")
    out = []
    for m in matches:
        if m.suffix.lower() not in exts:
            if glob.has_magic(pattern):
                continue
            raise ConfigError(f"{key}: {m} is not a supported {kind} (expected one of {sorted(exts)})")
        _sniff(m, kind)
        out.append(m)
    if not out:
        raise ConfigError(f"{key}: {pattern!r} matches no {kind} files with extensions {sorted(exts)}")
    return out


def _image_path(value: str | None, base: Path, key: str, config_path: Path) -> str | None:
    """A scan's texture or normal map resolved against the config folder; ConfigError naming the
    key and the file when it is not a readable file (a typo would otherwise turn every sample grey)."""
    if not value:
        return None
    p = (base / value).resolve()
    if not p.is_file():
        why = "is a folder, not an image file" if p.is_dir() else "does not exist"
        raise ConfigError(f"{config_path}: {key}: {value!r} ({p}) {why} (relative paths resolve against {base})")
    if not os.access(p, os.R_OK):
        raise ConfigError(f"{config_path}: {key}: {p} is not readable by this user")
    return str(p)


def resolve_job(config_path: str | os.PathLike, overrides: dict[str, Any] | None = None,
                data: dict | None = None) -> Job:
    """Load, validate and resolve a config file into a :class:`Job`.

    Args:
        config_path: YAML file; relative paths inside the config resolve against its folder.
        overrides: dotted key -> value, applied before validation (CLI flags).
        data: the config mapping itself (e.g. the resolved config recorded in a store's
            ``_meta/store.json``); when given, ``config_path`` is not read, only used as the base
            for relative paths and in messages.

    Raises:
        ConfigError: malformed YAML, unknown keys, bad values, globs matching nothing, unreadable assets.
    """
    import copy

    config_path = Path(config_path).resolve()
    data = load_yaml(config_path) if data is None else copy.deepcopy(data)
    for k, v in (overrides or {}).items():
        set_override(data, k, v)
    expand_manifest(data, config_path)  # scans: {manifest: library.csv} -> the list of its rows
    try:
        cfg = RenderConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(config_path))) from None
    base = config_path.parent

    scans: list[ScanAsset] = []
    for i, sc in enumerate(cfg.scans):
        files = _expand(sc.path, base, f"scans[{i}].path", SCAN_EXTENSIONS, "scan")
        for f in files:
            sid = sc.id if (sc.id and len(files) == 1) else (f"{sc.id}_{f.stem}" if sc.id else None)
            if sid is None:
                sid = f.parent.name if len(files) == 1 else f"{f.parent.name}_{f.stem}"
            sid = "".join(ch if (ch.isalnum() or ch in "_-") else "_" for ch in sid)
            tex = _image_path(sc.texture, base, f"scans[{i}].texture", config_path)
            nrm = _image_path(sc.normal_map, base, f"scans[{i}].normal_map", config_path)
            scans.append(ScanAsset(id=sid, path=str(f), texture=tex, normal_map=nrm, size=sc.size,
                                   base_color=sc.base_color, roughness=sc.roughness,
                                   head_height_m=sc.head_height_m, weight=sc.weight,
                                   exclude_objects=sc.exclude_objects, up_axis=sc.up_axis,
                                   forward_axis=sc.forward_axis, tags=sc.tags, licence=sc.licence,
                                   attribution=sc.attribution))
    ids = [s.id for s in scans]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"{config_path}: scans: duplicate scan id(s) {dup}; set distinct `id` keys")
    for h in cfg.subjects:
        clash = [i for i in ids if i == h.id or i.startswith(h.id + "_")]
        if clash:
            raise ConfigError(f"{config_path}: subjects: id {h.id!r} clashes with scan id(s) {clash} "
                              f"(generated subjects are named {h.id}_00000, {h.id}_00001, ...)")

    hdris: list[HdriAsset] = []
    seen = set()
    for i, pat in enumerate(cfg.hdris.paths):
        for f in _expand(pat, base, f"hdris.paths[{i}]", HDRI_EXTENSIONS, "HDRI"):
            if f in seen:
                continue
            seen.add(f)
            hid = "".join(ch if (ch.isalnum() or ch in "_-") else "_" for ch in f.stem)
            hdris.append(HdriAsset(id=hid, path=str(f)))
    return Job(config=cfg, config_path=str(config_path), scans=scans, hdris=hdris)


# Settings that change how a job runs but not what any sample contains; they are left out of
# :func:`content_hash`, so they may differ between a run and its resumption.
RUN_ONLY_KEYS = ("num_samples", "workers", "output", "render.threads_per_worker", "render.max_retries",
                 "render.recycle_after_samples", "render.max_worker_rss_mb",
                 "render.persistent_data", "render.max_wait_for_workers_s")


def content_hash(job: Job) -> str:
    """sha256 (hex) of everything that determines the content of a job's samples.

    Hashed: the resolved config as canonical JSON without :data:`RUN_ONLY_KEYS` (so ``num_samples``
    may grow and workers, threads, retries and memory limits may change between runs), plus every
    resolved scan and HDRI file by id, path relative to the config folder and size in bytes (a
    replaced or re-exported asset changes the hash; contents are not read, to stay cheap for large
    scans). The seed and the job name are part of the config and therefore of the hash.
    """
    import hashlib
    import json

    cfg = job.config.model_dump(mode="json")
    for sc in cfg.get("scans", []):  # placement keys at their defaults: the same hash as before they existed
        for k, default in (("up_axis", "+Z"), ("forward_axis", "-Y"), ("tags", {}), ("licence", None),
                           ("attribution", None)):
            if sc.get(k) == default:
                sc.pop(k)
        if sc.get("size", {}).get("measure") == "all":
            sc["size"].pop("measure")
    if cfg.get("render", {}).get("exposure_warn_factor") == 32.0:  # a warning, not content; default as before
        cfg["render"].pop("exposure_warn_factor")
    for dotted in RUN_ONLY_KEYS:
        *parents, leaf = dotted.split(".")
        cur = cfg
        for p in parents:
            cur = cur.get(p, {})
        cur.pop(leaf, None)
    base = Path(job.config_path).parent

    def asset(a_id: str, path: str) -> dict[str, Any]:
        try:
            size = os.path.getsize(path)
        except OSError:
            size = None
        return {"id": a_id, "file": os.path.relpath(path, base), "bytes": size}

    doc = {"config": cfg,
           "scans": [asset(s.id, s.path) for s in job.scans],
           "hdris": [asset(h.id, h.path) for h in job.hdris]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
