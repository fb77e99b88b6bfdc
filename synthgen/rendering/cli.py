"""``synthgen render``: the command line (argument parsing, exit codes, summary line).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Any

from ..contract import META_DIR
from ..store import read_store_meta
from .config import ConfigError, Job, content_hash, resolve_job
from .driver import run_render
from .ledger import describe_plan

log = logging.getLogger("synthgen.render")

def _parse_indices(s: str):
    """``0,3,5-9`` -> an :class:`~synthgen.rendering.planning.IndexSet` (ranges stay ranges, so
    ``0-999999999`` costs nothing). Raises ValueError on a malformed list."""
    from .planning import IndexSet

    ranges: list[tuple[int, int]] = []
    for part in s.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            ranges.append((int(a), int(b) + 1))
        elif part:
            ranges.append((int(part), int(part) + 1))
    return IndexSet(ranges)


def _parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``--set a.b=VALUE`` (VALUE parsed with ``yaml.safe_load``) -> ``{"a.b": value}``."""
    from .. import safeyaml

    out: dict[str, Any] = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", k.strip()):
            raise ConfigError(f"--set {safeyaml.bounded_repr(it)}: expected KEY=VALUE with a dotted key, "
                              "e.g. render.samples=1024")
        try:
            out[k.strip()] = safeyaml.load(v, f"--set {k.strip()}")
        except safeyaml.SafeYAMLError as exc:
            raise ConfigError(f"value is not usable YAML: {exc}") from None
    return out


def _parse_only(s: str) -> list[tuple[str, int, int]]:
    """``--only K1,K2`` -> [(job name, seed, index)]; keys are ``{name}_s{seed}_{index:06d}``."""
    out = []
    for key in (k.strip() for k in s.split(",")):
        if not key:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_-]+)_s(\d+)_(\d+)", key)
        if not m:
            raise ConfigError(f"--only: {key!r} is not a rendered sample key like portrait_s0_000042")
        out.append((m.group(1), int(m.group(2)), int(m.group(3))))
    if not out:
        raise ConfigError("--only: no key given")
    return out


def _load_job(args: argparse.Namespace, out_dir: str | None) -> tuple[Job, list[int] | None, bool]:
    """Resolve the job, the indices and whether to re-render complete samples from the CLI args."""
    overrides = _parse_sets(args.set)
    only = _parse_only(args.only) if args.only else None
    if only:
        if args.indices:
            raise ConfigError("--only and --indices cannot be combined")
        seeds = {s for _, s, _ in only}
        if len(seeds) > 1:
            raise ConfigError(f"--only: keys of different seeds {sorted(seeds)}; re-render one seed at a time")
        seed = seeds.pop()
        if args.seed is not None and args.seed != seed:
            raise ConfigError(f"--only: key seed {seed} disagrees with --seed {args.seed}")
        overrides["seed"] = seed
    if args.num_samples is not None:
        overrides["num_samples"] = args.num_samples
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.config:
        job = resolve_job(args.config, overrides)
    else:  # --resume without --config: the config recorded in the store
        if not out_dir:
            raise ConfigError("--resume without --config needs --out (the store to resume)")
        prev = read_store_meta(Path(out_dir).resolve())
        if prev is None:
            raise ConfigError(f"{Path(out_dir).resolve()}: nothing to resume (no _meta/store.json); pass --config")
        data = dict(prev["config"])
        job = resolve_job(prev["config_path"], overrides, data=data)
    if args.resume and args.config and out_dir and read_store_meta(Path(out_dir).resolve()) is None:
        raise ConfigError(f"--resume: {Path(out_dir).resolve()} has no _meta/store.json (nothing to resume)")
    n = job.config.num_samples
    indices = None
    if only:
        names = {nm for nm, _, _ in only}
        if names != {job.config.name}:
            raise ConfigError(f"--only: key job name(s) {sorted(names)} differ from the config's name {job.config.name!r}")
        indices = [i for _, _, i in only]
    elif args.indices:
        try:
            indices = _parse_indices(args.indices)
        except ValueError:
            raise ConfigError(f"--indices: {args.indices!r} is not a list like 0,3,5-9") from None
    if indices is not None:
        from .planning import IndexSet

        idx = indices if isinstance(indices, IndexSet) else IndexSet.of(indices)
        bad = [str(max(a, n)) if b - 1 <= max(a, n) else f"{max(a, n)}-{b - 1}" for a, b in idx.ranges if b > n]
        if bad:
            raise ConfigError(f"{'--only' if only else '--indices'}: sample index {', '.join(bad[:10])} outside [0, {n}) "
                              "(num_samples; raise it with --num-samples)")
    return job, indices, bool(only)


def cmd_render(args: argparse.Namespace) -> int:
    if not args.config and not args.resume:
        print("synthgen render: error: give --config (or --resume --out DIR to continue a store's job)",
              file=sys.stderr)
        return 2
    out_arg = args.out
    try:
        job, indices, rerender = _load_job(args, out_arg)
    except ConfigError as exc:
        print(f"synthgen render: error: {exc}", file=sys.stderr)
        return 2
    out_dir = out_arg or job.config.output.dir
    if args.dry_run:
        try:
            return _dry_run(job, indices, out_dir, args.workers, args.skip_bad_scans, not args.no_scan_check)
        except ConfigError as exc:
            print(f"synthgen render: error: {exc}", file=sys.stderr)
            return 2
    try:
        summary = run_render(job, out_dir, indices=indices, workers=args.workers, address=args.address,
                             progress=not args.no_progress, force=args.force, rerender=rerender,
                             force_unlock=args.force_unlock, skip_bad_scans=args.skip_bad_scans,
                             scan_check=not args.no_scan_check)
    except ConfigError as exc:
        print(f"synthgen render: error: {exc}", file=sys.stderr)
        return 2
    return _report(summary, Path(out_dir).resolve())


def _dry_run(job: Job, indices, out_dir: str, workers: int | None, skip_bad_scans: bool = False,
             scan_check: bool = True) -> int:
    """Print the resolved config, the plan (subject counts: exact, or estimated above
    planning.EXACT_LIMIT samples) and disk and time estimates; render nothing."""
    import yaml

    from .hdri_check import check_hdris
    from ..runtime import estimate_render, format_estimate
    from .planning import IndexSet, disk_estimate, human_bytes
    from .scan_check import check_scans, scan_summary

    check_hdris(job)
    if scan_check:
        job, scans = check_scans(job, skip_bad=skip_bad_scans)
        _print_scan_problems(scan_summary(scans))
    idx = (IndexSet.full(job.config.num_samples) if indices is None else
           indices if isinstance(indices, IndexSet) else IndexSet.of(indices))
    out = Path(out_dir).resolve()
    pl = describe_plan(job, idx)
    disk = disk_estimate(job, out, len(idx))
    est = estimate_render(job.config.model_dump(mode="json"), out, todo=len(idx), workers=workers)
    tm = {"seconds_per_sample": round(est["per_sample_s"], 3),
          "worker_hours": round(est["per_sample_s"] * len(idx) / 3600, 2),
          "wall_hours": round(est["seconds"] / 3600, 2), "workers": est["workers"], "basis": est["method"]}
    print(yaml.safe_dump({"config": job.config.model_dump(mode="json", exclude_none=True),
                          "out": str(out), "config_hash": content_hash(job),
                          "plan": pl, "estimate": {"disk": disk, "time": tm}}, sort_keys=False), end="")
    extra = f" (estimated from {pl['estimate_draws']} evenly spread samples)" if pl.get("estimated") else ""
    print(f"# dry run: {pl['num_samples']} samples over {len(pl['samples_per_scan'])} subject(s) "
          f"{pl['samples_per_scan']}{extra} and {len(pl['hdris'])} HDRI(s); nothing rendered")
    print(f"# disk: {human_bytes(disk['bytes_needed'])} ({human_bytes(disk['bytes_per_sample'])}/sample, "
          f"{disk['basis']}); {human_bytes(disk['bytes_free'])} free at {disk['path']}")
    print(format_estimate(est) + f"; {tm['worker_hours']:,.1f} worker-hours")
    return 0


EXIT_STOPPED = {"io_error": 3, "cluster_lost": 4, "no_workers": 4}
"""Exit codes of a run that stopped early (see docs/robustness.md): 3 storage error, 4 no cluster."""

_HINTS = {
    "io_error": "free space on (or repair) the store's file system, then run the same command again "
                "(or add --resume) to render the rest",
    "cluster_lost": "run the same command again (or add --resume) to render the rest",
    "no_workers": "check the cluster's free CPUs/GPUs (render.threads_per_worker, render.device), then "
                  "run the same command again (or add --resume) to render the rest",
}


def _print_scan_problems(summary: dict[str, Any], out: Path | None = None) -> None:
    """Scan preflight warnings and quarantined scans on stderr (at most 20 lines each)."""
    where = f" (all in {out / META_DIR / 'scans.json'})" if out else ""
    warns, bad = summary.get("scan_warnings", []), summary.get("scans_quarantined", [])
    if warns:
        print(f"synthgen render: {len(warns)} scan warning(s){where}:", file=sys.stderr)
        for w in warns[:20]:
            print(f"  {w}", file=sys.stderr)
    for q in bad[:20]:
        print(f"synthgen render: scan {q['id']} quarantined by --skip-bad-scans ({q['reason']}): {q['error']}",
              file=sys.stderr)


def _report(summary: dict[str, Any], out: Path) -> int:
    """Print the summary line and problems; the exit code (0, 1 quarantined, 3/4 stopped, 130 interrupted)."""
    _print_scan_problems(summary, out)
    t = summary["timings"]
    peak = summary["peak_worker_rss_mb"]
    failed = summary["failed"]
    print(f"synthgen render: wrote {summary['written']} samples to {out} in "
          f"{summary['wall_s']:.1f} s ({summary['samples_per_min']:.1f} samples/min; "
          f"{summary['workers']} worker(s); Cycles {t['render_s']:.1f} s, setup {t['setup_s']:.1f} s, "
          f"write {t['write_s']:.1f} s summed over workers; {summary['resamples']} re-sample(s)); "
          f"{summary['skipped']} already complete (skipped), {summary['retried']} retried, "
          f"{len(failed)} failed; {summary['worker_deaths']} worker death(s), {summary['recycled']} recycled; "
          f"peak worker RSS {f'{peak:.0f} MiB' if peak else 'n/a'}")
    if summary.get("preview_errors"):
        print(f"synthgen render: {summary['preview_errors']} preview(s) could not be written (the samples are complete)",
              file=sys.stderr)
    if failed:
        where = out / META_DIR / "quarantine.json"
        print(f"synthgen render: {len(failed)} sample(s) quarantined"
              f"{'' if str(where) in summary.get('unsaved', []) else ' in ' + str(where)}:", file=sys.stderr)
        for e in failed[:10]:
            print(f"  {e['key']}: {e['reason']}: {e['error']}", file=sys.stderr)
    if summary["interrupted"]:
        print("synthgen render: interrupted; run the same command again (or add --resume) to render the rest",
              file=sys.stderr)
        return 130
    stopped = summary.get("stopped")
    if stopped:
        print(f"synthgen render: stopped early ({stopped['reason']}): {stopped['message'].rstrip('.')}; "
              f"{summary['not_rendered']} planned sample(s) not rendered. {_HINTS.get(stopped['reason'], '')}",
              file=sys.stderr)
        return EXIT_STOPPED.get(stopped["reason"], 1)
    return 1 if failed else 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "render", help="render synthetic samples with Blender on Ray",
        description="Render a job: each sample is KEY.rgb.exr, KEY.depth.exr, KEY.mask.exr and KEY.json "
                    "(see docs/sample_format.md). Runs on an embedded local Ray cluster unless --address is given. "
                    "Re-running into the same --out renders only samples that are missing or incomplete; a "
                    "different config into it is refused (exit 2) unless --force. Workers that die are replaced "
                    "and their samples retried (render.max_retries); samples that keep failing are quarantined in "
                    "OUT/_meta/quarantine.json (exit 1). One driver per --out (a second is refused, exit 2). "
                    "A run stopped by a full or failing disk exits 3; by a lost cluster or no worker for "
                    "render.max_wait_for_workers_s, 4; Ctrl-C, 130. See docs/robustness.md.",
        epilog="examples:\n  synthgen render --config configs/portrait.yaml\n"
               "  synthgen render --config configs/smoke.yaml --out /tmp/smoke --num-samples 2\n"
               "  synthgen render --resume --out /tmp/smoke        # continue with the config recorded there\n"
               "  synthgen render --config configs/portrait.yaml --dry-run\n"
               "  synthgen render --config configs/portrait.yaml --only portrait_s0_000042 \\\n"
               "      --set render.samples=1024 --out /tmp/ref        # re-render one sample, more samples\n"
               "  synthgen render --config configs/portrait.yaml --address auto   # inside a Ray cluster",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="job YAML (e.g. configs/portrait.yaml); optional with --resume")
    p.add_argument("--out", help="output store folder (default: output.dir of the config, relative to the current directory)")
    p.add_argument("--num-samples", type=int, help="override num_samples (may grow between runs into one store)")
    p.add_argument("--seed", type=int, help="override the global seed")
    p.add_argument("--workers", type=int, help="number of Blender workers (default: CPUs / render.threads_per_worker)")
    p.add_argument("--address", help="Ray cluster address to join (e.g. auto or ray://host:10001); default: start a local one")
    p.add_argument("--indices", help="render only these sample indices, e.g. 0,3,5-9 (same parameters as in a full run)")
    p.add_argument("--only", metavar="KEY[,KEY...]",
                   help="re-render these samples (even if complete) with their exact parameters, e.g. "
                        "portrait_s0_000042; combine with --set to change settings and --out for a new folder")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key (dotted path; VALUE is YAML), e.g. --set render.samples=1024; repeatable")
    p.add_argument("--resume", action="store_true",
                   help="continue the job recorded in --out (the config in _meta/store.json unless --config is given); "
                        "renders only missing samples, as a plain re-run does")
    p.add_argument("--force", action="store_true",
                   help="render into a folder that holds another job (its planned samples are re-rendered), "
                        "and start even when the disk space check says the samples will not fit")
    p.add_argument("--force-unlock", action="store_true",
                   help="take over the store's lock (_meta/lock) when its holder cannot be checked from this "
                        "host (another host, or an O_EXCL lock on NFS); never breaks a live driver on this host")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and the plan, render nothing")
    p.add_argument("--skip-bad-scans", action="store_true",
                   help="a scan that fails the preflight (import error, crash, implausible size) is quarantined "
                        "(its reason in OUT/_meta/scans.json) and the other subjects render; without it such a "
                        "scan stops the job with exit 2 before anything renders")
    p.add_argument("--no-scan-check", action="store_true",
                   help="skip the scan preflight (synthgen scans check); a scan that cannot be imported then "
                        "fails its samples on the workers (quarantined in OUT/_meta/quarantine.json, exit 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_render)
