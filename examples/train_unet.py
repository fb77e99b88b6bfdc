"""Train a tiny depth + mask U-Net for a few steps on synthgen shards (PyTorch DataLoader example).

Usage::

    synthgen shard out/render out/ingest --out data/v1 --encode train
    python examples/train_unet.py data/v1 --split train --steps 50

Needs PyTorch (``pip install torch``) besides synthgen. Works with both encodings: ``--encode train``
shards (8-bit sRGB PNG, 16-bit millimetre depth PNG, 8-bit mask PNG) and the default EXR shards
(linear RGB is passed through the same documented view transform, ``synthgen.shard.codec.view_transform``).

The pipeline is stock WebDataset: ``wds.WebDataset(urls).shuffle(n).decode(synthgen.shard.decode)``
yields numpy arrays (depth in metres, mask in [0, 1]); ``to_tensors`` turns them into
(image (3,S,S) float [0,1], depth (1,S,S) metres, mask (1,S,S) [0,1]) and a ``torch`` DataLoader
batches them. The loss is an L1 on valid depth pixels (depth > 0) plus a BCE on the mask.
Prints the loss per step and exits non-zero if the loss does not go down.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import webdataset as wds

from synthgen.shard import decode
from synthgen.shard.codec import view_transform


def to_tensors(sample: dict, size: int):
    """Decoded sample -> (image (3,S,S) float32 [0,1] sRGB, depth (1,S,S) metres, mask (1,S,S) [0,1])."""
    if "rgb.exr" in sample:
        rgb = view_transform(sample["rgb.exr"])  # linear -> sRGB-encoded [0, 1]
    else:
        rgb = sample.get("rgb.png", sample.get("rgb.jpg")).astype(np.float32) / 255.0
    depth = sample.get("depth.exr", sample.get("depth.png"))
    mask = sample.get("mask.exr", sample.get("mask.png"))
    img = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    d = torch.from_numpy(np.ascontiguousarray(depth))[None]
    m = torch.from_numpy(np.ascontiguousarray(mask))[None]
    img = F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    d = F.interpolate(d[None], size=(size, size), mode="nearest")[0]  # never blend valid with invalid (0)
    m = F.interpolate(m[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    return img, d, m


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class TinyUNet(nn.Module):
    """Two-level U-Net: image (B,3,S,S) -> depth (B,1,S,S) metres (softplus) and mask logits (B,1,S,S)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.enc1, self.enc2 = block(3, width), block(width, 2 * width)
        self.mid = block(2 * width, 4 * width)
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * width, 2 * width, 2, stride=2), block(4 * width, 2 * width)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * width, width, 2, stride=2), block(2 * width, width)
        self.head = nn.Conv2d(width, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        out = self.head(d1)
        return F.softplus(out[:, :1]), out[:, 1:]


def loss_fn(pred_depth, mask_logits, depth, mask):
    valid = depth > 0
    l_depth = (pred_depth - depth).abs()[valid].mean() if valid.any() else pred_depth.sum() * 0
    return l_depth + F.binary_cross_entropy_with_logits(mask_logits, mask)


def shard_urls(root: Path, split: str) -> list[str]:
    mp = root / "_meta" / "manifest.json"   # synthgen.shards/2; format 1 kept it at the top level
    manifest = json.loads((mp if mp.exists() else root / "manifest.json").read_text())
    urls = [str(root / e["file"]) for e in manifest["shards"] if e["split"] == split]
    if not urls:
        sys.exit(f"{root}: no shards for split {split!r} (splits: {', '.join(manifest['splits'])})")
    return urls


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("shards", type=Path, help="folder written by 'synthgen shard'")
    ap.add_argument("--split", default="train")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--size", type=int, default=64, help="train resolution (multiple of 4)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)

    urls = shard_urls(args.shards, args.split)
    dataset = (wds.WebDataset(urls, shardshuffle=len(urls), nodesplitter=wds.split_by_node, empty_check=False,
                              seed=args.seed)
               .shuffle(64)
               .decode(decode)
               .map(lambda s: to_tensors(s, args.size)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)

    model = TinyUNet()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    losses = []
    step = 0
    while step < args.steps:
        for img, depth, mask in loader:
            pred_depth, mask_logits = model(img)
            loss = loss_fn(pred_depth, mask_logits, depth, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            print(f"step {step:4d}  batch {tuple(img.shape)}  loss {loss.item():.4f}", flush=True)
            step += 1
            if step >= args.steps:
                break
    k = max(1, min(5, len(losses) // 3))
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    print(f"loss: first {k} steps {first:.4f} -> last {k} steps {last:.4f}")
    ok = all(math.isfinite(x) for x in losses) and last < first
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
