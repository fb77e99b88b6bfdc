"""Options of a ``synthgen efficacy`` run and their checks (no PyTorch import, so bad options fail fast)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SIZE_MULTIPLE = 16
"""The network halves the resolution four times: ``--size`` must be a multiple of 16."""


class RunError(ValueError):
    """Bad input or options (the CLI exits 2 with the message)."""


@dataclass
class Options:
    """Options of one run (the CLI flags, see ``synthgen efficacy --help``)."""

    train: list[str]
    eval: list[str]
    out: str
    steps: int = 2000
    seeds: int = 2
    size: int = 128
    batch_size: int = 8
    lr: float = 1e-3
    region: str = "mask"
    holdout: float = 0.2
    max_train: int | None = None
    min_spearman_gain: float | None = None
    device: str = "auto"
    threads: int | None = None
    exposure: float = 0.0
    tone: str = "clip"
    tiles: int = 12
    checkpoints: int = 10
    progress: bool = True
    command: str = ""

    def check(self) -> None:
        """Raise :class:`RunError` for options that cannot work (before any data or PyTorch is loaded)."""
        if self.size < SIZE_MULTIPLE or self.size % SIZE_MULTIPLE:
            raise RunError(f"--size {self.size}: must be a positive multiple of {SIZE_MULTIPLE}")
        if self.steps < 1 or self.seeds < 1 or self.batch_size < 1:
            raise RunError("--steps, --seeds and --batch-size must be >= 1")
        if not 0 <= self.holdout < 1:
            raise RunError(f"--holdout {self.holdout}: must be in [0, 1)")
        if self.region not in ("mask", "valid"):
            raise RunError(f"--region {self.region!r}: expected mask or valid")
        if self.max_train is not None and self.max_train < 1:
            raise RunError("--max-train must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise RunError("--threads must be >= 1")
        for what, paths in (("train", self.train), ("eval", self.eval)):
            for p in paths:
                if not Path(p).exists():
                    raise RunError(f"--{what} {p}: no such file or folder")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise RunError(f"--out {self.out}: exists and is not a folder")
