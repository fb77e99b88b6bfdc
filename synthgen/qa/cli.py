"""``synthgen qa PATH [PATH ...] --out REPORT_DIR [--gates gates.yaml] [--sample N]``.

Exit codes: 0 every gate passed, 1 some gate failed, 2 bad input (missing path, not a store or
shard folder, invalid gates file, no samples at all).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..atomic import is_storage_error
from .. import __version__

log = logging.getLogger("synthgen.qa")


def run_qa(paths: list[str], out: str | Path, gates_file: str | None = None, sample_n: int = 24,
           worst_n: int = 8, seed: int = 0, progress: bool = True, command: str | None = None,
           max_listed: int = 100, html: bool = True) -> dict[str, Any]:
    """Build a QA report for ``paths`` into ``out`` in one streaming pass.

    Args:
        paths: store folders, shard folders, or ``SPLIT=PATH`` (split override for a store).
        out: report folder (created); receives ``report.html`` and ``report.json``.
        gates_file: gates YAML (None: defaults, see :mod:`synthgen.qa.gates`).
        sample_n: random contact-sheet size (reservoir sample).
        worst_n: contact-sheet tiles per gate.
        seed: reservoir seed (same inputs + seed = same pictures).
        html: also write ``report.html`` (plots and contact sheets); False writes only ``report.json``.

    Returns:
        The ``report.json`` document.

    Raises:
        synthgen.qa.inputs.InputError: a path is missing or not a store / shard folder, or no samples.
        synthgen.qa.gates.GatesError: invalid gates file.
    """
    from tqdm import tqdm

    from .gates import load_gates
    from .report import build_summary, write_report
    from .accumulators import QAAccumulator
    from .inputs import InputError, InputProblems, count_samples, parse_input, read_meta
    from .reader import iter_shards, iter_store
    from .samples import decode

    gates = load_gates(gates_file)
    specs = [parse_input(p) for p in paths]
    acc = QAAccumulator(gates, sample_n=sample_n if html else 0, worst_n=worst_n if html else 0, seed=seed,
                        max_listed=max_listed)
    problems = InputProblems()
    n_files = 0
    ignored: list[str] = []
    inputs = []
    t0 = time.perf_counter()
    totals = [count_samples(s) for s in specs]
    total = sum(t for t in totals if t) if all(totals) else None
    with tqdm(total=total, unit="sample", desc="qa", disable=not progress, dynamic_ncols=True) as bar:
        for spec in specs:
            meta = read_meta(spec, problems)
            before = acc.n_occurrences
            it = iter_store(spec, ignored) if spec.kind == "store" else iter_shards(spec, problems)
            for raw in it:
                acc.add(decode(raw))
                bar.update(1)
            n_files += 1 if spec.kind == "store" else _check_shard_counts(spec, meta, acc, problems)
            inputs.append({"path": str(spec.path), "kind": spec.kind, "split": spec.split,
                           "samples": acc.n_occurrences - before, **meta})
    if acc.n_occurrences == 0:
        raise InputError("no samples found in " + ", ".join(str(s.path) for s in specs))
    results = acc.finish_gates(n_files, problems.errors)
    summary = build_summary(acc, inputs, problems.errors + problems.notes, ignored, results)
    meta = {"synthgen_version": __version__,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": command or "synthgen qa " + " ".join(shlex.quote(p) for p in paths),
            "inputs": [str(s.path) for s in specs], "gates_file": str(gates_file) if gates_file else None,
            "gates": gates.model_dump(), "sample_n": sample_n, "worst_n": worst_n, "seed": seed,
            "scan_seconds": round(time.perf_counter() - t0, 3)}
    doc = write_report(out, acc, results, summary, meta, html=html)
    return doc


def _check_shard_counts(spec, meta: dict[str, Any], acc, problems) -> int:
    """Compare the samples read from each tar of a shard folder with its ``manifest.json``
    (disagreements are ``problems`` errors); returns the number of input files (tars, and shards the
    manifest lists that are missing) for the ``inputs_readable`` gate."""
    from .reader import shard_files

    tars = shard_files(spec.path)
    expected = (meta["manifest"] or {}).get("samples_per_shard", {})
    for t in tars:
        want, got = expected.get(str(t)), acc.counts["location"].get(str(t), 0)
        if want is not None and int(want) != got:
            problems.error(f"{t}: manifest.json lists {want} samples, read {got}")
        elif meta["manifest"] is not None and str(t) not in expected:
            problems.error(f"{t}: not listed in manifest.json")
    return len(tars) + len((meta["manifest"] or {}).get("shards_missing", []))


def print_summary(doc: dict[str, Any], out: Path, stream=sys.stdout) -> None:
    """Short terminal summary: counts, one line per gate, the report paths."""
    s, st = doc["summary"], doc["statistics"]
    src = ", ".join(f"{k} {v}" for k, v in s["by_source"].items())
    spl = ", ".join(f"{k} {sum(v.values())}" for k, v in s["by_split_source"].items())
    print(f"QA: {st['samples']} samples ({src}); splits: {spl}", file=stream)
    if s["input_problem_count"]:
        print(f"  {s['input_problem_count']} input problem(s), first: {s['input_problems'][0]}", file=stream)
    for i in s.get("inputs", []):
        card = i.get("dataset_card")
        if card:
            lic: dict[str, int] = {}
            for a in card["assets"]:
                name = "UNKNOWN" if a.get("licence") in (None, "unknown") else str(a.get("hf_licence") or a["licence"])
                lic[name] = lic.get(name, 0) + 1
            print(f"  {i['path']}: card {card['card'] or '(none)'}; {len(card['assets'])} asset(s)"
                  + (": " + ", ".join(f"{k} x{v}" for k, v in sorted(lic.items())) if lic else ""), file=stream)
    if s.get("scan_tags"):
        print("  scan tags (samples): " + "; ".join(f"{k}: " + ", ".join(f"{v} {n}" for v, n in vals.items())
                                                    for k, vals in s["scan_tags"].items()), file=stream)
    if s.get("exposure_warning_count"):
        w = s["exposure_warnings"][0]
        print(f"  {s['exposure_warning_count']} sample(s) with auto-exposure warnings (broken material or wrong "
              f"HDRI?), e.g. {w['key']} ({w['subject']}, factor {w['factor']:.3g})", file=stream)
    for r in doc["results"]:
        g = r["expectation_config"]["meta"]["gate"]
        if r.get("skipped"):
            print(f"  OFF   {g}", file=stream)
            continue
        res = r["result"]
        line = f"  {'PASS' if r['success'] else 'FAIL'}  {g}: {res['unexpected_count']}/{res['element_count']} unexpected"
        if not r["success"] and res["partial_unexpected_list"]:
            u = res["partial_unexpected_list"][0]
            ident = u.get("key") or u.get("subject")
            line += f" (e.g. {ident + ': ' if ident else ''}{u.get('observed', u.get('splits'))})"
        print(line, file=stream)
    verdict = "PASS" if doc["success"] else "FAIL"
    files = " and ".join(str(out / f) for f in ("report.html", "report.json") if (out / f).exists())
    print(f"{verdict}: {st['successful_expectations']}/{st['evaluated_expectations']} gates passed; "
          f"report: {files}", file=stream)


def _cmd(args: argparse.Namespace) -> int:
    from .gates import GatesError, dump_gates, load_gates
    from .inputs import InputError

    if args.print_gates:
        try:
            sys.stdout.write(dump_gates(load_gates(args.gates)))
        except GatesError as exc:
            print(f"synthgen qa: {exc}", file=sys.stderr)
            return 2
        return 0
    if not args.paths or args.out is None:
        print("synthgen qa: give at least one PATH and --out REPORT_DIR (see synthgen qa --help)", file=sys.stderr)
        return 2
    if args.sample < 0 or args.worst < 0:
        print("synthgen qa: --sample and --worst must be >= 0", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        doc = run_qa(args.paths, out, args.gates, sample_n=args.sample, worst_n=args.worst, seed=args.seed,
                     progress=not args.no_progress, html=not args.no_html,
                     command="synthgen " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    except (InputError, GatesError) as exc:
        print(f"synthgen qa: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the report folder cannot be written (disk full: exit 3)
        print(f"synthgen qa: error: cannot write {exc.filename or out} ({exc.strerror or exc})", file=sys.stderr)
        return 3 if is_storage_error(exc) else 2
    print_summary(doc, out)
    return 0 if doc["success"] else 1


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``synthgen qa``."""
    p = subparsers.add_parser(
        "qa", help="dataset QA report (HTML + JSON gates) for sample stores and shard folders",
        description="Write REPORT_DIR/report.html (for people: summary, distributions with synthetic and "
                    "real side by side, contact sheets of random and worst samples) and REPORT_DIR/report.json "
                    "(Great-Expectations-like gate results for CI) in one streaming pass. Exits 1 when any "
                    "gate fails, 2 on bad input.",
        epilog="PATH is a sample store, a shard folder ({split}-{shard:06d}.tar + manifest.json), or "
               "SPLIT=PATH to assign a split to a store. Print the default gates with --print-gates.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="sample store, shard folder, or SPLIT=STORE")
    p.add_argument("--out", metavar="REPORT_DIR", help="report folder (created)")
    p.add_argument("--gates", metavar="GATES_YAML", help="gate thresholds (YAML); unspecified fields keep defaults")
    p.add_argument("--sample", type=int, default=24, metavar="N",
                   help="random contact sheet drawn from a reservoir sample of N (default 24)")
    p.add_argument("--worst", type=int, default=8, metavar="N", help="worst samples shown per gate (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random sample (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-html", action="store_true",
                   help="write only report.json (gates and statistics; faster, for CI)")
    p.add_argument("--print-gates", action="store_true", help="print the effective gates as YAML and exit")
    p.set_defaults(func=_cmd)
    return p
