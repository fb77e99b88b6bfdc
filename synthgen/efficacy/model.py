"""The small depth U-Net, the SILog loss and the training loop (needs PyTorch: ``synthgen[train]``).

Network: a 4-level U-Net (widths 16-32-64-96, bottleneck 144; two 3x3 convolutions with GroupNorm
and ReLU per block, max-pool down, transposed-conv up, skip connections), 1.01 M parameters.
It maps an sRGB image (B, 3, S, S) in [0, 1] (normalised to ``(x - 0.5) / 0.25``) to log depth
(B, 1, S, S); ``S`` must be a multiple of 16. The output bias starts at the median log depth of the
training pixels, so the untrained network predicts a plausible constant-ish scale.

Loss: scale-invariant log loss (Eigen, Puhrsch & Fergus 2014, eq. 4) per image on the valid subject
pixels (depth > 0 and mask > 0.5), ``L = mean(d^2) - λ mean(d)^2`` with ``d = log p - log g`` and
``λ = 0.5`` (the paper's training value), averaged over the images of the batch that have pixels.
Samples whose depth is only relative (``depth.metric == false``) use ``λ = 1`` (fully scale-invariant).

Training: Adam, learning rate with a 5 % linear warm-up then cosine decay to 10 %, uniform sampling
with replacement and random horizontal flips from a ``torch.Generator`` seeded per run, so one seed
on one device and thread count reproduces its numbers.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (16, 32, 64, 96)
BOTTLENECK = 144
MULTIPLE = 2 ** len(WIDTHS)  # == options.SIZE_MULTIPLE
SILOG_LAMBDA = 0.5
LOG_DEPTH_CLAMP = 20.0
"""Predictions are clamped to exp(±20) so every metric stays finite."""


def _block(cin: int, cout: int) -> nn.Sequential:
    g = 8 if cout % 8 == 0 else 1
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(g, cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(g, cout), nn.ReLU(inplace=True))


class DepthUNet(nn.Module):
    """U-Net: sRGB (B,3,S,S) in [0,1] -> log depth (B,1,S,S)."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS, bottleneck: int = BOTTLENECK, init_log_depth: float = 0.0):
        super().__init__()
        self.enc = nn.ModuleList()
        cin = 3
        for w in widths:
            self.enc.append(_block(cin, w))
            cin = w
        self.mid = _block(cin, bottleneck)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        cin = bottleneck
        for w in reversed(widths):
            self.up.append(nn.ConvTranspose2d(cin, w, 2, stride=2))
            self.dec.append(_block(2 * w, w))
            cin = w
        self.head = nn.Conv2d(cin, 1, 1)
        nn.init.constant_(self.head.bias, float(init_log_depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.25
        skips = []
        for blk in self.enc:
            x = blk(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.mid(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], 1))
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def silog_loss(pred_log: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor,
               lam: torch.Tensor | float = SILOG_LAMBDA) -> torch.Tensor:
    """Eigen et al. 2014 eq. 4 per image, mean over images with valid pixels.

    Args:
        pred_log: (B,1,S,S) predicted log depth.
        depth: (B,1,S,S) true depth (> 0 where valid).
        valid: (B,1,S,S) bool, pixels in the loss.
        lam: λ, a float or a (B,) tensor (1 for relative-depth samples).
    """
    v = valid.float()
    d = (pred_log - torch.log(depth.clamp_min(1e-6))) * v
    n = v.flatten(1).sum(1)
    has = n > 0
    n = n.clamp_min(1)
    m1 = d.flatten(1).sum(1) / n
    m2 = (d * d).flatten(1).sum(1) / n
    lam_t = lam if torch.is_tensor(lam) else torch.full_like(m1, float(lam))
    per = m2 - lam_t * m1 * m1
    if not bool(has.any()):
        return pred_log.sum() * 0
    return per[has].mean()


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available to PyTorch")
    return torch.device(name)


def set_determinism(seed: int, device: torch.device) -> None:
    """Seed torch; on CUDA also ask for deterministic kernels. (CPU kernels are deterministic for a
    fixed thread count already, and ``use_deterministic_algorithms`` costs seconds of imports.)"""
    torch.manual_seed(seed)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass
class TrainData:
    """Training tensors on the device: rgb uint8 (N,3,S,S), depth (N,1,S,S), valid bool, λ (N,)."""

    rgb: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    lam: torch.Tensor

    @classmethod
    def from_items(cls, items, device: torch.device, region_fn: Callable) -> TrainData:
        rgb = torch.from_numpy(np.stack([it.rgb for it in items])).permute(0, 3, 1, 2).contiguous()
        depth = torch.from_numpy(np.stack([it.depth for it in items]))[:, None]
        valid = torch.from_numpy(np.stack([region_fn(it) for it in items]))[:, None]
        lam = torch.tensor([SILOG_LAMBDA if it.metric else 1.0 for it in items], dtype=torch.float32)
        return cls(rgb.to(device), depth.to(device), valid.to(device), lam.to(device))

    def __len__(self) -> int:
        return self.rgb.shape[0]


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    checkpoints: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def lr_at(step: int, steps: int, lr: float) -> float:
    warm = max(1, int(0.05 * steps))
    if step < warm:
        return lr * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def train(model: DepthUNet, data: TrainData, *, steps: int, batch_size: int, lr: float, seed: int,
          checkpoint_every: int = 0, on_checkpoint: Callable[[int], dict] | None = None,
          progress=None) -> TrainResult:
    """Train ``model`` in place for ``steps`` steps; returns the per-step losses and checkpoints.

    ``on_checkpoint(step)`` is called every ``checkpoint_every`` steps and after the last one (model
    in eval mode, no grad); its dicts are collected in ``checkpoints``. ``progress`` is a tqdm bar.
    """
    device = data.rgb.device
    gen = torch.Generator().manual_seed(10_000 + seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    res = TrainResult()
    t0 = time.perf_counter()
    n = len(data)
    for step in range(steps):
        model.train()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr)
        idx = torch.randint(n, (batch_size,), generator=gen)
        flip = torch.rand(batch_size, generator=gen) < 0.5
        idx_d, flip_d = idx.to(device), flip.to(device)
        x = data.rgb[idx_d].float() / 255.0
        d, v = data.depth[idx_d], data.valid[idx_d]
        if bool(flip.any()):
            f = flip_d[:, None, None, None]
            x, d, v = torch.where(f, x.flip(-1), x), torch.where(f, d.flip(-1), d), torch.where(f, v.flip(-1), v)
        loss = silog_loss(model(x), d, v, data.lam[idx_d])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        res.losses.append(float(loss.detach()))
        if not math.isfinite(res.losses[-1]):
            raise Diverged(f"training diverged: loss {res.losses[-1]} at step {step}")
        if progress is not None:
            progress.update(1)
            if step % 10 == 0 or step == steps - 1:
                progress.set_postfix(loss=f"{res.losses[-1]:.4f}")
        last = step == steps - 1
        if on_checkpoint is not None and ((checkpoint_every and (step + 1) % checkpoint_every == 0) or last):
            res.seconds += time.perf_counter() - t0
            model.eval()
            with torch.no_grad():
                cp = on_checkpoint(step + 1)
            res.checkpoints.append(dict(cp, step=step + 1, loss=float(np.mean(res.losses[-max(1, checkpoint_every or 1):]))))
            t0 = time.perf_counter()
    res.seconds += time.perf_counter() - t0
    model.eval()
    return res


@torch.no_grad()
def predict(model: DepthUNet, rgb: np.ndarray, device: torch.device, batch_size: int = 16) -> np.ndarray:
    """Depth (N,S,S) float32 for rgb uint8 (N,S,S,3)."""
    model.eval()
    out = []
    for i in range(0, len(rgb), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(rgb[i:i + batch_size])).permute(0, 3, 1, 2).to(device).float() / 255.0
        log_d = torch.nan_to_num(model(x)[:, 0].float(), nan=0.0).clamp(-LOG_DEPTH_CLAMP, LOG_DEPTH_CLAMP)
        out.append(torch.exp(log_d).cpu().numpy())
    return np.concatenate(out, 0) if out else np.zeros((0,) + rgb.shape[1:3], np.float32)
