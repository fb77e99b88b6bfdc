"""``synthgen scans check CONFIG``: the scan preflight of a render job on its own
(:mod:`synthgen.rendering.scan_check`; ``synthgen render`` and ``--dry-run`` run it too).

Exit codes: 0 every scan passed (warnings allowed; with ``--skip-bad-scans`` also when some would be
quarantined), 2 a bad config or a scan that fails the preflight (each named with its cause).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..atomic import write_json_atomic
from ..errors import ConfigError


def cmd_check(args: argparse.Namespace) -> int:
    from .cli import _parse_sets
    from .loading import resolve_job
    from .scan_check import check_scans, format_report

    try:
        job = resolve_job(args.config, _parse_sets(args.set))
        if not job.scans:
            print(f"synthgen scans check: {args.config} has no scans", file=sys.stderr)
            return 0
        _, report = check_scans(job, skip_bad=True, use_cache=not args.no_cache, need_subject=False,
                                sheets=Path(args.sheets) if args.sheets else None)
    except ConfigError as exc:
        print(f"synthgen scans check: error: {exc}", file=sys.stderr)
        return 2
    if not args.skip_bad_scans:
        report["quarantined"] = []
    print(format_report(report))
    if args.json:
        write_json_atomic(Path(args.json), report)
    bad = [e for e in report["scans"] if e["errors"]]
    n_warn = sum(bool(e["warnings"]) for e in report["scans"])
    print(f"# {len(report['scans'])} scan(s): {len(bad)} failed, {n_warn} with warnings"
          + (f"; quarantined by --skip-bad-scans: {[e['id'] for e in bad]}" if bad and args.skip_bad_scans else ""))
    if bad and not args.skip_bad_scans:
        for e in bad:
            print(f"synthgen scans check: error: scan {e['id']} ({e['path']}): {e['errors'][0]}", file=sys.stderr)
        return 2
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("scans", help="check the scans of a render job (preflight)",
                       description="Scan library tools. See docs/scans.md.")
    ssub = p.add_subparsers(dest="scans_command", metavar="SUBCOMMAND")
    ssub.required = True
    c = ssub.add_parser(
        "check", help="import every scan of a job once in its own Blender process and report it",
        description="Import each distinct scan of CONFIG once, in a separate Blender process, exactly as a "
                    "render worker would (orientation, exclusions, size rule, materials), and report: raw "
                    "bounding box and units, metric size after the size rule, what was measured, mesh and "
                    "material counts, missing or undecodable textures, untextured near-black or near-white "
                    "materials, rigs and bones, which pose joints match. Results are cached by file content "
                    "under $SYNTHGEN_CACHE_DIR/scan-check (default ~/.cache/synthgen/scan-check). Exit 2 "
                    "when a scan fails (import error, crash, implausible size) unless --skip-bad-scans.",
        epilog="example:\n  synthgen scans check configs/portrait.yaml --json /tmp/scans.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("config", help="render job YAML")
    c.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key (dotted path; VALUE is YAML), as in synthgen render; repeatable")
    c.add_argument("--skip-bad-scans", action="store_true",
                   help="exit 0 when some scans fail, listing them as quarantined (what synthgen render "
                        "--skip-bad-scans would do)")
    c.add_argument("--no-cache", action="store_true", help="import every scan again, ignoring (and not writing) the cache")
    c.add_argument("--json", metavar="FILE", help="also write the full report as JSON to FILE")
    c.add_argument("--sheets", metavar="DIR",
                   help="also write a contact sheet per scan, DIR/ID.png: rows front (yaw 0), side (yaw 90) and "
                        "head close-up, each RGB | depth | mask, lit by the job's first HDRI (re-imports the scans)")
    c.set_defaults(func=cmd_check)


__all__ = ["add_parser", "cmd_check"]
