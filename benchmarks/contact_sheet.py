"""Contact sheet of generated identities from the default job, rendered through the CLI as a user does.

Runs ``synthgen render --config configs/portrait.yaml`` (a fresh process, embedded Ray) into
``--out``, then tiles the PNG previews (RGB | depth | mask) of the first ``--identities`` samples
whose subject is a generated person (distinct identities) into a JPEG::

    python benchmarks/contact_sheet.py --out out/contact --identities 24 --size 256
    # -> docs/images/contact_sheet.jpg

Prints the render summary line and, per tile, the sample key, identity, camera profile, age, sex
and hair, so what is seen can be checked against the records.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "out" / "contact"), help="render store")
    ap.add_argument("--identities", type=int, default=24)
    ap.add_argument("--num-samples", type=int, default=34, help="samples to render (about 80%% are people)")
    ap.add_argument("--size", type=int, default=256, help="render width and height")
    ap.add_argument("--samples", type=int, default=64, help="Cycles samples per pixel")
    ap.add_argument("--columns", type=int, default=4)
    ap.add_argument("--sheet", default=str(ROOT / "docs" / "images" / "contact_sheet.jpg"))
    args = ap.parse_args()

    exe = Path(sys.executable).with_name("synthgen")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "synthgen.cli"]),
           "render", "--config", str(ROOT / "configs" / "portrait.yaml"), "--out", args.out,
           "--num-samples", str(args.num_samples), "--set", f"render.width={args.size}",
           "--set", f"render.height={args.size}", "--set", f"render.samples={args.samples}", "--no-progress"]
    print(" ".join(cmd), flush=True)
    res = subprocess.run(cmd, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if res.returncode not in (0, 1):
        return res.returncode
    out = Path(args.out)
    tiles, seen = [], set()
    for rec_path in sorted(out.glob("*.json")):
        rec = json.loads(rec_path.read_text())
        sub = rec["render"].get("subject")
        if not sub or rec["subject_id"] in seen:
            continue
        seen.add(rec["subject_id"])
        ph = sub["phenotype"]
        hair = next((a["name"] for a in sub["assets"] if a["kind"] == "hair"), "bald")
        print(f"{rec['key']}: {rec['subject_id']} profile={rec['render']['camera'].get('profile')} "
              f"age={ph['age_years']:.0f} sex={ph['sex']:.2f} height={ph['height_m']:.2f} m hair={hair} "
              f"melanin={sub['skin'].get('melanin', float('nan')):.2f}")
        tiles.append(Image.open(out / "_meta" / "previews" / f"{rec['key']}.png").convert("RGB"))
        if len(tiles) == args.identities:
            break
    if len(tiles) < args.identities:
        print(f"only {len(tiles)} generated identities among the samples; raise --num-samples", file=sys.stderr)
    w, h = tiles[0].size
    cols = args.columns
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * h), "white")
    for k, t in enumerate(tiles):
        sheet.paste(t, ((k % cols) * w, (k // cols) * h))
    Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.sheet, quality=85)
    print(f"wrote {args.sheet} ({len(tiles)} identities, {sheet.size[0]}x{sheet.size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
