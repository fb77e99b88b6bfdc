"""``synthgen shard`` and ``synthgen shard verify``: the command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..atomic import is_storage_error
from ..errors import ShardInputError
from .codec import encode_options
from .manifest import MANIFEST
from .options import DEFAULT_SHARD_SIZE, DEFAULT_SPLIT, SOURCES
from .pack import pack
from .verify import verify

log = logging.getLogger("synthgen.shard")


def _print_summary(manifest: dict, out: Path) -> None:
    rows = [("split", "shards", "samples", "synthetic", "real", "subjects", "MB", "mix target", "mix achieved")]
    for split, s in manifest["splits"].items():
        tgt = s["mix"]["target"]
        rows.append((split, str(s["shards"]), str(s["samples"]), str(s["by_source"]["synthetic"]),
                     str(s["by_source"]["real"]), str(len(s["subjects"])), f"{s['bytes'] / 1e6:.1f}",
                     "-" if tgt is None else "/".join(f"{tgt[k]:.2f}" for k in SOURCES),
                     "/".join(f"{s['mix']['achieved'][k]:.2f}" for k in SOURCES)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    t = manifest["totals"]
    print(f"{t['samples']} samples in {t['shards']} shards ({t['bytes'] / 1e6:.1f} MB) -> {out}")
    if t["excluded_by_mix"]:
        print(f"{t['excluded_by_mix']} samples left out by --mix (listed under 'excluded' in {MANIFEST})")
    if t["skipped_unfinished"]:
        print(f"{t['skipped_unfinished']} member files without a record skipped (listed under 'skipped')")


def cmd_shard(args: argparse.Namespace) -> int:
    if not args.out:
        print("synthgen shard: error: --out DIR is required", file=sys.stderr)
        return 2
    if args.encode == "train":
        enc = encode_options("train", args.rgb_format, args.depth_format, args.exposure, args.tone)
    else:
        enc = encode_options("exr")
    try:
        manifest = pack(args.stores, args.out, split=args.split, mix=args.mix, seed=args.seed, encode=enc,
                        shard_size=args.shard_size, samples_per_shard=args.samples_per_shard,
                        check_inputs=not args.no_check_inputs, engine="ray" if args.ray else "local",
                        ray_address=args.address, progress=not args.no_progress, size=args.size,
                        resize=args.resize)
    except ShardInputError as exc:
        for p in exc.problems:
            print(f"synthgen shard: error: {p}", file=sys.stderr)
        return 2
    except OSError as exc:  # the output cannot be written (disk full, read-only, ...): no partial shard is kept
        code = 3 if is_storage_error(exc) else 2
        print(f"synthgen shard: error: cannot write {exc.filename or args.out} ({exc.strerror or exc}); "
              f"finished shards are kept in {args.out}"
              + ("; free space and rerun the same command to resume" if code == 3 else ""), file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print(f"synthgen shard: interrupted; finished shards are kept in {args.out}; "
              "rerun the same command to resume", file=sys.stderr)
        raise
    _print_summary(manifest, Path(args.out))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        res = verify(args.dir, progress=not args.no_progress)
    except ShardInputError as exc:
        print(f"synthgen shard verify: error: {exc}", file=sys.stderr)
        return 2
    for w in res["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    if res["bad"]:
        for name, problems in res["bad"].items():
            print(f"BAD {name}: " + "; ".join(problems))
        print(f"{len(res['bad'])} bad file(s) out of {res['shards']} shards in {args.dir}")
        return 1
    print(f"OK: {res['shards']} shards, {res['samples']} samples match {Path(args.dir) / MANIFEST}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "shard", help="pack stores into WebDataset shards (and 'shard verify DIR')",
        description="Pack sample stores into WebDataset tar shards {split}-{index:06d}.tar with a manifest, "
                    "wids shard lists and leakage-free splits by subject (see docs/shard.md). "
                    "'synthgen shard verify DIR' checks shards against the manifest.",
        epilog="examples:\n"
               "  synthgen shard out/render out/ingest --out data/v1 --mix synthetic=0.7,real=0.3 --seed 1\n"
               "  synthgen shard out/render --out data/small --samples-per-shard 256 --split train=0.8,val=0.2\n"
               "  synthgen shard out/render --out data/train8 --encode train --exposure 0.5 --tone reinhard\n"
               "  synthgen shard out/render --out data/v1 --mix synthetic=0.7,real=0.3 --mix test:real=1\n"
               "  synthgen shard out/render out/ingest --out data/256 --encode train --size 256x256 --resize crop\n"
               "  synthgen shard verify data/v1\n"
               "rerun an interrupted command unchanged to resume it.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stores", nargs="+", metavar="STORE", help="sample store folders (render or ingest output)")
    p.add_argument("--out", metavar="DIR", help="output folder (new, empty, or an unfinished run of the same command)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--shard-size", metavar="SIZE", help=f"target shard size, e.g. 512MB, 1GiB (default {DEFAULT_SHARD_SIZE})")
    size.add_argument("--samples-per-shard", type=int, metavar="N", help="samples per shard (instead of a size)")
    p.add_argument("--split", default=DEFAULT_SPLIT, help=f"split fractions by samples, assigned per subject (default {DEFAULT_SPLIT})")
    p.add_argument("--mix", action="append", metavar="[SPLIT:]SRC=W,...",
                   help="target synthetic/real ratio, e.g. synthetic=0.7,real=0.3 (all splits) or test:real=1; "
                        "repeatable; the majority source is down-sampled (default: keep everything)")
    p.add_argument("--seed", type=int, default=0, help="seed for subject assignment, mixing and order (default 0)")
    p.add_argument("--encode", choices=("exr", "train"), default="exr",
                   help="exr: store members as they are (default); train: 8-bit sRGB, 16-bit mm depth, 8-bit mask")
    p.add_argument("--rgb-format", choices=("png", "jpeg"), default="png", help="--encode train: RGB format (default png)")
    p.add_argument("--depth-format", choices=("png16", "exr"), default="png16",
                   help="--encode train: depth as 16-bit millimetre PNG (default) or the float EXR")
    p.add_argument("--exposure", type=float, default=0.0, metavar="EV", help="--encode train: exposure in stops (default 0)")
    p.add_argument("--tone", choices=("clip", "reinhard"), default="clip", help="--encode train: tone curve (default clip)")
    p.add_argument("--size", metavar="WxH",
                   help="write every sample at WxH pixels; K follows exactly, the record gets a 'transform' "
                        "(RGB Lanczos on linear values, depth nearest, mask area average)")
    p.add_argument("--resize", choices=("fit", "crop", "pad"),
                   help="with --size: fit = stretch each axis, crop = cover and centre-crop (default), "
                        "pad = contain and centre-pad with invalid pixels")
    p.add_argument("--no-check-inputs", action="store_true", help="skip the sha256 check of members against records")
    p.add_argument("--ray", action="store_true", help="write shards as Ray Data tasks (one per shard)")
    p.add_argument("--address", help="with --ray: Ray cluster address to join (default: start a local one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_shard)

    vp = argparse.ArgumentParser(prog=f"{p.prog} verify",
                                 description="Check every shard in DIR against DIR/manifest.json: presence, size, "
                                             "sha256, readable tar, members of each sample, sample keys. Exit 1 "
                                             "naming the corrupt or missing shards, 2 if DIR has no manifest.")
    vp.add_argument("dir", metavar="DIR", help="shard folder written by 'synthgen shard'")
    vp.add_argument("--no-progress", action="store_true", help="no progress bar")
    vp.set_defaults(func=cmd_verify)
    pack_parse = p.parse_known_args

    def parse_known_args(args=None, namespace=None):
        # 'synthgen shard verify DIR' is a sub-action; any other first word is a store
        if args and args[0] == "verify":
            return vp.parse_known_args(args[1:], namespace)
        return pack_parse(args, namespace)

    p.parse_known_args = parse_known_args
