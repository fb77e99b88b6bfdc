"""synthgen: synthetic and real training data for portrait depth estimation and segmentation.

The public Python API mirrors the command line (option names follow the CLI flags)::

    import synthgen

    job = synthgen.load_job("configs/smoke.yaml", overrides={"render.width": 32, "render.height": 32})
    p = synthgen.sample_params(job, 0)            # pure: parameters of sample 0
    summary = synthgen.render(job, "out/smoke")    # Ray workers with Blender, like `synthgen render`
    store = synthgen.open_store("out/smoke")
    s = store[store.keys()[0]]                     # s.rgb (H,W,3) float32 linear, s.depth (H,W) metres, s.K
    synthgen.ingest("captures/tum", "out/tum")     # like `synthgen ingest`
    synthgen.pack(["out/smoke", "out/tum"], "out/shards", samples_per_shard=8)   # `synthgen shard`
    synthgen.verify_shards("out/shards")           # `synthgen shard verify`
    report = synthgen.qa(["out/smoke"], "out/qa")  # `synthgen qa`

Importing :mod:`synthgen` is light: it imports neither ``bpy`` nor ``ray`` (the functions import
what they need when called). The package layout is described in ``docs/architecture.md``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from .rendering.config import Job
    from .rendering.sampling import SampleParams
    from .store import Store

__all__ = ["__version__", "load_job", "sample_params", "render", "open_store", "ingest", "pack",
           "verify_shards", "qa"]


def load_job(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Job:
    """Load and validate a render config (like ``synthgen render --config PATH --set KEY=VALUE``).

    Args:
        path: YAML config; relative paths inside it resolve against its folder.
        overrides: dotted config keys to values, e.g. ``{"render.samples": 16, "num_samples": 4}``.

    Returns:
        The resolved :class:`synthgen.rendering.config.Job` (config plus resolved scan and HDRI assets).

    Raises:
        ConfigError: unreadable YAML, unknown keys, bad values, missing or unreadable assets
            (the message names the file and key).
    """
    from .rendering.config import resolve_job

    return resolve_job(path, overrides=overrides)


def sample_params(job: Job, index: int, attempt: int = 0) -> SampleParams:
    """The randomized parameters of sample ``index`` (pure: they depend only on the job's seed,
    ``index`` and the framing ``attempt``); see :class:`synthgen.rendering.sampling.SampleParams`."""
    from .rendering.sampling import sample_params as _sample_params

    return _sample_params(job, index, attempt)


def render(job: Job, out: str | os.PathLike, *, indices: list[int] | None = None, workers: int | None = None,
           address: str | None = None, progress: bool = True, force: bool = False,
           skip_bad_scans: bool = False) -> dict[str, Any]:
    """Render ``job`` into the sample store ``out`` on Ray (like ``synthgen render``).

    Without ``address`` an embedded local Ray cluster is started and stopped; complete samples
    already in ``out`` are skipped (resume). Every planned sample ends written or quarantined in
    ``out/_meta/quarantine.json``.

    Args:
        indices: render only these sample indices (``--indices``).
        workers: Ray worker slots (``--workers``; default CPUs / ``render.threads_per_worker``).
        address: Ray cluster to join (``--address``, e.g. ``"auto"``).
        progress: show a progress bar (``--no-progress`` is ``progress=False``).
        force: render into a folder holding another job (``--force``).
        skip_bad_scans: leave out (quarantine) scans that fail the scan preflight instead of
            raising (``--skip-bad-scans``; see :mod:`synthgen.rendering.scan_check`).

    Returns:
        The run summary (written, skipped, failed with reasons, timings, worker memory; see
        :func:`synthgen.rendering.driver.run_render`).

    Raises:
        StoreMismatchError: ``out`` holds another job and not ``force``.
        GpuClusterError: ``render.device: gpu`` on a cluster without GPUs.
    """
    from .rendering.driver import run_render

    return run_render(job, out, indices=indices, workers=workers, address=address, progress=progress, force=force,
                      skip_bad_scans=skip_bad_scans)


def open_store(path: str | os.PathLike) -> Store:
    """Open a sample store (rendered or ingested) for reading: ``.keys()``, ``store[key]`` (a
    :class:`synthgen.contract.Sample` with ``rgb`` (H, W, 3) float32 linear, ``depth`` (H, W)
    float32 planar metres with 0 = invalid, ``mask`` (H, W) float32 in [0, 1], ``record``, ``K``
    (3, 3) pixels and ``camera_to_world`` (4, 4) OpenCV axes), ``.verify(key)`` and ``.meta``.

    Raises:
        ConfigError: ``path`` is not a folder or its ``_meta/store.json`` is unreadable.
    """
    from .store import open_store as _open_store

    return _open_store(path)


def _api_ingest(source: str | os.PathLike, out: str | os.PathLike, *, format: str = "auto",
           intrinsics: str | os.PathLike | None = None, default_intrinsics: bool = False,
           depth_scale: float | None = None, max_time_diff: float = 0.02, segmentation: bool = True,
           subject_id: str | None = None, workers: int = 1, progress: bool = True,
           **thresholds: float) -> dict[str, Any]:
    """Ingest real RGB-D captures into the sample store ``out`` (like ``synthgen ingest``).

    Args:
        format: reader name or ``"auto"`` (``--format``).
        intrinsics: JSON intrinsics file overriding the source's (``--intrinsics``).
        default_intrinsics: allow the documented default intrinsics (``--default-intrinsics``).
        depth_scale: raw depth units per metre (``--depth-scale``).
        max_time_diff: RGB/depth association tolerance in seconds (``--max-time-diff``).
        segmentation: MediaPipe person masks (``--no-segmentation`` is ``segmentation=False``).
        subject_id: subject id of every frame (``--subject-id``).
        workers: worker processes (``--workers``).
        thresholds: validation thresholds by their option names without dashes
            (``max_holes``, ``max_out_of_range``, ``max_timestamp_skew_s``, ``max_clipped``, ``min_sharpness``).

    Returns:
        The ingest report (also written to ``out/_meta/ingest_report.json``).

    Raises:
        SourceError: unusable source (missing, unknown or ambiguous format, no frames).
        pydantic.ValidationError: an option value is out of range.
    """
    from .ingest.options import IngestOptions, Thresholds
    from .ingest.pipeline import ingest as _ingest

    opts = IngestOptions(format=format, intrinsics=intrinsics, default_intrinsics=default_intrinsics,
                         depth_scale=depth_scale, max_time_diff=max_time_diff, segment=segmentation,
                         subject_id=subject_id, workers=workers, thresholds=Thresholds(**thresholds))
    return _ingest(source, out, opts, progress=progress)


def pack(stores: list[str | os.PathLike], out: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """Pack sample stores into WebDataset shards in ``out`` (like ``synthgen shard``); returns the manifest.

    Options (see :func:`synthgen.shard.pack.pack`): ``split``, ``mix``, ``seed``, ``encode``
    (``"exr"`` or ``"train"``), ``shard_size``, ``samples_per_shard``, ``check_inputs``,
    ``ray`` (bool, ``--ray``), ``address``, ``progress``.

    Raises:
        ShardInputError: bad inputs or options (every problem listed, each naming the file or key).
    """
    from .shard.pack import pack as _pack

    if "ray" in options:
        options["engine"] = "ray" if options.pop("ray") else "local"
    if "address" in options:
        options["ray_address"] = options.pop("address")
    return _pack(stores, out, **options)


def verify_shards(path: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    """Verify a shard folder against its manifest (like ``synthgen shard verify``): sizes, sha256,
    member names and keys. Returns ``{"ok": bool, "shards": n, "samples": n, "bad": {file: [problem, ...]}, ...}``.

    Raises:
        ShardInputError: no or unreadable ``manifest.json``.
    """
    from .shard.verify import verify

    return verify(path, progress=progress)


def _api_qa(paths: list[str | os.PathLike], out: str | os.PathLike, *, gates: str | os.PathLike | None = None,
       sample: int = 24, worst: int = 8, seed: int = 0, html: bool = True, progress: bool = True) -> dict[str, Any]:
    """Write a QA report for stores or shard folders into ``out`` (like ``synthgen qa``); returns
    the ``report.json`` document, whose ``success`` says whether every gate passed.

    Raises:
        QAInputError: a path is missing or neither a store nor a shard folder.
        GatesError: the gates file is invalid.
    """
    from .qa.cli import run_qa

    return run_qa([str(p) for p in paths], out, gates_file=None if gates is None else str(gates),
                  sample_n=sample, worst_n=worst, seed=seed, progress=progress, html=html)


# ``synthgen.ingest`` and ``synthgen.qa`` are also subpackages: importing e.g. ``synthgen.qa.cli``
# rebinds the attribute to the package module, which is made callable (synthgen/_callable.py), so
# ``synthgen.ingest(...)`` and ``synthgen.qa(...)`` work whatever was imported before.
ingest = _api_ingest
qa = _api_qa
