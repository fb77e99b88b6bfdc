"""``synthgen ingest SOURCE --out DIR``: turn real RGB-D captures into synthgen samples.

Exit codes: 0 every frame ingested, 1 some frames quarantined (see the report), 2 bad input
(missing/empty source, unknown or ambiguous format, bad options or intrinsics file).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .common import SourceError
from .formats import FORMAT_NAMES

log = logging.getLogger("synthgen.ingest")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except for on/off flags, where "(default: True)" after ``--no-X`` reads as if
    the flag were on by default."""

    def _get_help_string(self, action):
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return action.help
        return super()._get_help_string(action)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ingest", help="ingest real RGB-D captures (TUM, Kinect mm, Redwood, DIODE, KITTI, EXR, depth photos)",
        description="Ingest real RGB-D captures into synthgen samples (KEY.rgb.exr, KEY.depth.exr, KEY.mask.exr, "
                    "KEY.json) with per-frame validation, quarantine and an ingest report in OUT/_meta/. "
                    "Exit 0: all frames ingested; 1: some quarantined; 2: bad input.",
        formatter_class=_HelpFormatter)
    p.add_argument("source", type=Path, help="capture folder or file")
    p.add_argument("--out", type=Path, required=True, help="output store folder")
    p.add_argument("--format", default="auto", choices=("auto",) + FORMAT_NAMES, help="capture format")
    p.add_argument("--intrinsics", type=Path, default=None,
                   help="intrinsics JSON (fx/fy/cx/cy, K, or Open3D intrinsic_matrix; optional width/height)")
    p.add_argument("--default-intrinsics", action="store_true",
                   help="where the source has no intrinsics, use the documented default (26 mm-equivalent lens, "
                        "centred principal point) instead of quarantining the frame")
    p.add_argument("--depth-scale", type=float, default=None,
                   help="raw depth units per metre (metres = raw / S); default per format: TUM 5000, kinect-mm and "
                        "redwood 1000, KITTI 256, EXR 1")
    p.add_argument("--max-time-diff", type=float, default=0.02,
                   help="TUM: largest RGB/depth timestamp difference (s) for association")
    p.add_argument("--no-segmentation", dest="segment", action="store_false",
                   help="skip MediaPipe person segmentation and person detection (segmentation is on by default; "
                        "with this flag masks are all ones, mask.source=none)")
    p.add_argument("--min-person-confidence", type=float, default=0.75,
                   help="frames whose person_present (face/pose detectors) is below this get an all-zero mask with "
                        "mask.kind none (or are quarantined, see --no-person)")
    p.add_argument("--no-person", choices=("empty-mask", "quarantine"), default="empty-mask",
                   help="frames without a confident person: write them with an all-zero mask, or quarantine them")
    p.add_argument("--address", default=None,
                   help="run the per-frame work on Ray: auto, HOST:PORT, ray://..., or local (an embedded local "
                        "Ray); default: this process, or --workers processes")
    p.add_argument("--subject-id", default=None, help="override the subject id (capture session) of all frames")
    p.add_argument("--workers", type=int, default=1, help="worker processes (not with --address)")
    p.add_argument("--relative-near", type=float, default=1.0, help="image-depth-pairs: nominal near for decoding")
    p.add_argument("--relative-far", type=float, default=10.0, help="image-depth-pairs: nominal far for decoding")
    g = p.add_argument_group("validation thresholds")
    g.add_argument("--max-holes", type=float, default=0.6, help="largest fraction of invalid depth pixels")
    g.add_argument("--max-out-of-range", type=float, default=0.02,
                   help="largest fraction of valid depth outside the sensor near/far")
    g.add_argument("--max-timestamp-skew", type=float, default=0.02, help="largest RGB/depth timestamp skew (s)")
    g.add_argument("--max-clipped", type=float, default=0.25, help="largest fraction of clipped (0 or 255) pixels")
    g.add_argument("--min-sharpness", type=float, default=15.0,
                   help="smallest variance of the Laplacian (blur check; 0 disables)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .options import IngestOptions, Thresholds
    from .pipeline import ingest, summary_text

    try:
        opts = IngestOptions(
            format=args.format, intrinsics=args.intrinsics, default_intrinsics=args.default_intrinsics,
            depth_scale=args.depth_scale, max_time_diff=args.max_time_diff, segment=args.segment,
            min_person_confidence=args.min_person_confidence, no_person=args.no_person.replace("-", "_"),
            address=args.address,
            subject_id=args.subject_id, workers=args.workers, relative_near=args.relative_near,
            relative_far=args.relative_far,
            thresholds=Thresholds(max_holes=args.max_holes, max_out_of_range=args.max_out_of_range,
                                  max_timestamp_skew_s=args.max_timestamp_skew, max_clipped=args.max_clipped,
                                  min_sharpness=args.min_sharpness))
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        print(f"synthgen ingest: bad option: {msgs}", file=sys.stderr)
        return 2
    if args.intrinsics is not None and not args.intrinsics.is_file():
        print(f"synthgen ingest: {args.intrinsics}: intrinsics file not found", file=sys.stderr)
        return 2
    try:
        report = ingest(args.source, args.out, opts, progress=not args.quiet)
    except SourceError as exc:
        print(f"synthgen ingest: error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(report))
    return 0 if report["counts"]["quarantined"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    """Run ``synthgen ingest`` alone (without the other subcommands), e.g. from tests."""
    parser = argparse.ArgumentParser(prog="synthgen")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["ingest", *(argv or [])])
    logging.basicConfig(level=logging.INFO)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
