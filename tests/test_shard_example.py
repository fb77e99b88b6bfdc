"""examples/train_unet.py trains on real shards (skipped when PyTorch is not installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from _shard_stores import make_real_store, make_synthetic_store
from synthgen.shard import pack

pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_unet.py"


def test_train_unet_example_runs_and_loss_goes_down(tmp_path):
    stores = [make_synthetic_store(tmp_path / "syn"), make_real_store(tmp_path / "real")]
    pack(stores, tmp_path / "ds", split="train=0.8,val=0.2", encode="train", samples_per_shard=8, progress=False)
    proc = subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path / "ds"), "--steps", "20", "--size", "16"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "step   19" in proc.stdout and "loss: first" in proc.stdout
