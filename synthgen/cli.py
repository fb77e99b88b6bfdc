"""``synthgen`` command line. Each subcommand lives in its own module that provides
``add_parser(subparsers)`` (registering an argparse sub-parser whose ``func`` takes the parsed
args and returns an exit code). Register new subcommands in :data:`SUBCOMMANDS`.

Exit codes: 0 success, 1 some samples failed, 2 bad input (config, paths, assets), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__

SUBCOMMANDS = [
    "synthgen.rendering.cli",
    "synthgen.rendering.scans_cli",
    "synthgen.ingest.cli",
    "synthgen.qa",
    "synthgen.shard.cli",
    "synthgen.export",
    "synthgen.efficacy.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthgen",
        description="Make training data for portrait depth estimation and segmentation: "
                    "render synthetic samples with Blender on Ray, ingest real RGB-D captures, "
                    "pack WebDataset shards and write QA reports.",
    )
    parser.add_argument("--version", action="version", version=f"synthgen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in SUBCOMMANDS:
        importlib.import_module(mod).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # e.g. `synthgen render --dry-run | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("synthgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
