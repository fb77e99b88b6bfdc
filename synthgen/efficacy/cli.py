"""``synthgen efficacy --train DATA... --eval REAL_STORE... --out DIR``.

Exit codes: 0 done (and the gate passed, when one is set), 1 the ``--min-spearman-gain`` gate failed,
2 bad input or options, or PyTorch is not installed (one-line hint, no traceback).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

log = logging.getLogger("synthgen.efficacy")

INSTALL_HINT = "pip install 'synthgen[train]'"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "efficacy", help="train a small depth U-Net on the data and score it on real captures (needs PyTorch)",
        description="Train a small depth U-Net (~1M parameters; CPU, or CUDA when present) on synthgen training "
                    "data, evaluate it on real captures ingested with 'synthgen ingest' against baselines "
                    "(constant depth, ellipsoid bump, untrained network) and on held-back training subjects, and "
                    "write DIR/efficacy.json and DIR/index.html (see docs/efficacy.md). Needs PyTorch: "
                    f"{INSTALL_HINT}. Exit 0: done (gate passed or unset); 1: gate failed; 2: bad input or no PyTorch.",
        epilog="examples:\n"
               "  synthgen efficacy --train out/render --eval out/real --out reports/efficacy\n"
               "  synthgen efficacy --train data/v1 --eval out/real1 out/real2 --out r --steps 500 --seeds 3\n"
               "  synthgen efficacy --train out/render --eval out/real --out r --min-spearman-gain 0.2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", nargs="+", required=True, metavar="DATA",
                   help="training data: sample store folders, shard folders (every split) or .tar shards")
    p.add_argument("--eval", nargs="+", required=True, metavar="REAL_STORE",
                   help="evaluation stores (real captures from 'synthgen ingest'); relative-depth samples are "
                        "scored with the alignment-invariant metrics only")
    p.add_argument("--out", required=True, metavar="DIR", help="report folder (created; our files are replaced)")
    p.add_argument("--steps", type=int, default=2000, help="training steps per seed (default 2000)")
    p.add_argument("--seeds", type=int, default=2, help="number of seeds 0..N-1; the spread is reported (default 2)")
    p.add_argument("--size", type=int, default=128, help="square network resolution, multiple of 16 (default 128)")
    p.add_argument("--batch-size", type=int, default=8, help="default 8")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--region", choices=("mask", "valid"), default="mask",
                   help="scored pixels: mask = valid depth inside the person mask (> 0.5), valid = all valid depth "
                        "(default mask)")
    p.add_argument("--holdout", type=float, default=0.2, metavar="FRACTION",
                   help="fraction of training subjects held back for the in-domain figure (at least one when "
                        "there are two or more; 0 disables; default 0.2)")
    p.add_argument("--max-train", type=int, default=None, metavar="N",
                   help="read at most N training samples (first in key/shard order)")
    p.add_argument("--min-spearman-gain", type=float, default=None, metavar="G",
                   help="gate: exit 1 unless the trained network's Spearman exceeds the best baseline's by >= G on "
                        "the evaluation set (mean over seeds), e.g. 0.2; default: no gate")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto = CUDA when available, else CPU (default auto)")
    p.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads (default: PyTorch's choice)")
    p.add_argument("--exposure", type=float, default=0.0, metavar="EV",
                   help="view transform for linear EXR RGB: exposure in stops (default 0, as 'shard --encode train')")
    p.add_argument("--tone", choices=("clip", "reinhard"), default="clip",
                   help="view transform tone curve for linear EXR RGB (default clip)")
    p.add_argument("--tiles", type=int, default=12, metavar="N", help="sample tiles per set in the report (default 12)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_efficacy)
    return p


def cmd_efficacy(args: argparse.Namespace) -> int:
    from .options import Options, RunError

    opts = Options(train=args.train, eval=args.eval, out=args.out, steps=args.steps, seeds=args.seeds, size=args.size,
                   batch_size=args.batch_size, lr=args.lr, region=args.region, holdout=args.holdout,
                   max_train=args.max_train, min_spearman_gain=args.min_spearman_gain, device=args.device,
                   threads=args.threads, exposure=args.exposure, tone=args.tone, tiles=args.tiles,
                   progress=not args.no_progress, command="synthgen " + shlex.join(sys.argv[1:]))
    try:
        opts.check()
    except RunError as exc:
        print(f"synthgen efficacy: error: {exc}", file=sys.stderr)
        return 2
    try:
        import torch  # noqa: F401
    except (ImportError, OSError) as exc:
        reason = (str(exc).splitlines() or [exc.__class__.__name__])[0]
        print(f"synthgen efficacy: PyTorch is not available ({reason}); install it with: {INSTALL_HINT}",
              file=sys.stderr)
        return 2
    from .report import write_report
    from .run import run

    try:
        doc, extras = run(opts)
    except RunError as exc:
        print(f"synthgen efficacy: error: {exc}", file=sys.stderr)
        return 2
    write_report(args.out, doc, extras, args.tiles)
    print(summary_text(doc, args.out))
    gate = doc["gate"]
    return 1 if gate["passed"] is False else 0


def summary_text(doc: dict, out: str) -> str:
    n = len(doc["seeds"])
    lines = [(f"synthgen efficacy: {doc['data']['train_samples']} training samples, {doc['data']['eval_samples']} "
              f"evaluation samples, {n} seed(s), {doc['options']['steps']} steps; region {doc['options']['region']}")]
    cols = ("spearman", "abs_rel_lsq", "delta1_lsq", "silog")
    for name, res in doc["results"].items():
        lines.append(f"  {name}:")
        lines.append("    " + f"{'predictor':<11}" + "".join(f"{c:>18}" for c in cols))
        for pred, r in res.items():
            cells = []
            for c in cols:
                m, s = r["mean"][c], r["std"][c]
                cells.append("–" if m is None else f"{m:.3f}" + (f" ± {s:.3f}" if n > 1 else ""))
            lines.append("    " + f"{pred:<11}" + "".join(f"{x:>18}" for x in cells))
    g = doc["gate"]
    gate = ("no gate" if g["passed"] is None else
            f"gate (>= {g['min_gain']}): {'PASS' if g['passed'] else 'FAIL'}")
    lines.append(f"  Spearman gain over the best baseline ({g['best_baseline']}): {g['gain']:+.3f}"
                 + (f" ± {g['gain_std']:.3f}" if n > 1 else "") + f"; {gate}")
    lines.append(f"  report: {out}/index.html, {out}/efficacy.json")
    return "\n".join(lines)
