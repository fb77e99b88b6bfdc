"""Distributions for randomized parameters, as pydantic models selected by the ``dist`` key.

YAML forms (a bare number or string means ``constant``)::

    focal_length_mm: 50                                   # constant
    focal_length_mm: {dist: uniform, low: 24, high: 85}
    yaw_deg: {dist: normal, mean: 0, std: 20, low: -60, high: 60}   # low/high optional: truncation
    strength: {dist: loguniform, low: 0.5, high: 2.0}
    background: {dist: choice, values: [visible, transparent], weights: [3, 1]}

Every distribution draws with a caller-supplied ``numpy.random.Generator``, so a value depends only
on the generator's seed (see :mod:`synthgen.sampling`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator, BeforeValidator

_MAX_REJECTIONS = 10_000


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def bounds(self) -> tuple[float, float]:
        """(lowest, highest) value the distribution can produce (may be infinite)."""
        raise NotImplementedError


class Constant(_Dist):
    dist: Literal["constant"] = "constant"
    value: Any

    def sample(self, rng: np.random.Generator):
        return self.value

    def bounds(self):
        return (self.value, self.value)


class Uniform(_Dist):
    dist: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _check(self):
        if not self.low <= self.high:
            raise ValueError(f"uniform needs low <= high, got low={self.low}, high={self.high}")
        return self

    def sample(self, rng):
        return float(rng.uniform(self.low, self.high))

    def bounds(self):
        return (self.low, self.high)


class Normal(_Dist):
    """Normal(mean, std), optionally truncated to [low, high] by rejection sampling."""

    dist: Literal["normal"]
    mean: float
    std: float = Field(ge=0)
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _check(self):
        lo = -math.inf if self.low is None else self.low
        hi = math.inf if self.high is None else self.high
        if not lo < hi and not (lo == hi == self.mean):
            raise ValueError(f"normal truncation needs low < high, got low={self.low}, high={self.high}")
        if self.std > 0 and not (lo - 4 * self.std <= self.mean <= hi + 4 * self.std):
            raise ValueError("normal mean lies more than 4 std outside [low, high]; truncation would never accept")
        return self

    def sample(self, rng):
        lo, hi = self.bounds()
        for _ in range(_MAX_REJECTIONS):
            x = float(rng.normal(self.mean, self.std))
            if lo <= x <= hi:
                return x
        return float(np.clip(self.mean, lo, hi))

    def bounds(self):
        return (-math.inf if self.low is None else self.low, math.inf if self.high is None else self.high)


class LogUniform(_Dist):
    """Uniform in log space between low > 0 and high."""

    dist: Literal["loguniform"]
    low: float = Field(gt=0)
    high: float = Field(gt=0)

    @model_validator(mode="after")
    def _check(self):
        if not self.low <= self.high:
            raise ValueError(f"loguniform needs low <= high, got low={self.low}, high={self.high}")
        return self

    def sample(self, rng):
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def bounds(self):
        return (self.low, self.high)


class Choice(_Dist):
    """Weighted choice among ``values`` (uniform when ``weights`` is omitted)."""

    dist: Literal["choice"]
    values: list[Any] = Field(min_length=1)
    weights: list[float] | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(f"choice has {len(self.values)} values but {len(self.weights)} weights")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("choice weights must be >= 0 with a positive sum")
        return self

    def sample(self, rng):
        p = None
        if self.weights is not None:
            p = np.asarray(self.weights, float) / sum(self.weights)
        return self.values[int(rng.choice(len(self.values), p=p))]

    def bounds(self):
        try:
            return (min(self.values), max(self.values))
        except TypeError:
            return (None, None)


def _scalar_to_constant(v):
    if isinstance(v, (int, float, str, bool)) or v is None:
        return {"dist": "constant", "value": v}
    if isinstance(v, dict) and "dist" not in v:
        raise ValueError(f"a distribution needs a 'dist' key (constant, uniform, normal, loguniform, choice); got keys {sorted(v)}")
    return v


Distribution = Annotated[
    Union[Constant, Uniform, Normal, LogUniform, Choice],
    Field(discriminator="dist"),
    BeforeValidator(_scalar_to_constant),
]
"""Any of the distributions above; a bare scalar is a :class:`Constant`."""


def describe(d: _Dist) -> str:
    """Short human-readable form, e.g. ``uniform(24, 85)``."""
    fields = d.model_dump(exclude={"dist"}, exclude_none=True)
    if isinstance(d, Constant):
        return repr(d.value)
    return f"{d.dist}(" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"
