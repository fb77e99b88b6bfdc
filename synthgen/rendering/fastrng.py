"""Vectorised first draws of many numpy random streams (for planning jobs of any size).

:func:`synthgen.rendering.sampling.subject_for` seeds one ``numpy.random.Generator`` per view from
``SeedSequence(entropy=seed, spawn_key=(view, Stream.SUBJECT))`` and draws one double (the weighted
subject choice) and, for generated subjects, one bounded integer (the identity). Doing that in a
Python loop costs 10-100 µs per view, i.e. hours for 1e9 samples. This module computes the same
numbers for arrays of views with numpy integer arithmetic:

- numpy's ``SeedSequence`` entropy mixing and ``generate_state`` (32-bit hash mixing; the hash
  constants advance independently of the data, so every step is one vectorised operation);
- ``PCG64`` seeding (128-bit LCG, ``pcg_setseq_128_srandom_r``) and its ``XSL-RR`` output;
- ``Generator.random()`` (``(next64 >> 11) * 2**-53``) and ``Generator.integers(0, n)`` for
  ``n <= 2**32`` (Lemire's bounded draw on the low 32 bits of the next 64-bit output; the rare
  rejected draws are redone with numpy itself).

:func:`self_check` compares against numpy for a few streams; callers fall back to the loop when it
fails (a numpy whose algorithms differ), so results never depend on this module being right.
"""

from __future__ import annotations

import functools

import numpy as np

_U32 = np.uint32
_U64 = np.uint64
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF

INIT_A, MULT_A = 0x43B0D7E5, 0x931E8875
INIT_B, MULT_B = 0x8B51F9DD, 0x58F38DED
MIX_MULT_L, MIX_MULT_R = 0xCA01F9DD, 0x4973F715
POOL = 4
PCG_MULT_HI, PCG_MULT_LO = 0x2360ED051FC65DA4, 0x4385DF649FCCF645


def _words(x: int) -> list[int]:
    """numpy's ``_coerce_to_uint32_array`` of one non-negative int: 32-bit words, little end first."""
    if x == 0:
        return [0]
    out = []
    while x:
        out.append(x & _M32)
        x >>= 32
    return out


class _HashConst:
    def __init__(self, init: int, mult: int):
        self.v, self.mult = init, mult

    def next(self) -> int:  # the constant used now, then advance
        v = self.v
        self.v = (self.v * self.mult) & _M32
        return v


def _hashmix(value, hc: _HashConst):
    h = hc.v
    hc.v = (hc.v * MULT_A) & _M32
    value = (value ^ _U32(h)) * _U32(hc.v)
    return value ^ (value >> _U32(16))


def _mix(x, y):
    r = _U32(MIX_MULT_L) * x - _U32(MIX_MULT_R) * y
    return r ^ (r >> _U32(16))


def seed_states(seed: int, views: np.ndarray, key2: int) -> np.ndarray:
    """``SeedSequence(entropy=seed, spawn_key=(view, key2)).generate_state(4, uint64)`` for every
    view: a (len(views), 4) uint64 array. Views must be < 2**32."""
    views = np.asarray(views, dtype=np.uint64)
    n = len(views)
    run = _words(int(seed))
    run = run + [0] * max(0, POOL - len(run))  # padded to the pool size when there is a spawn key
    spawn = [views.astype(_U32)] + [np.full(n, w, _U32) for w in _words(int(key2))]
    entropy = [np.full(n, w, _U32) for w in run] + spawn
    with np.errstate(over="ignore"):
        hc = _HashConst(INIT_A, MULT_A)
        mixer = [_hashmix(entropy[i] if i < len(entropy) else np.zeros(n, _U32), hc) for i in range(POOL)]
        for i_src in range(POOL):
            for i_dst in range(POOL):
                if i_src != i_dst:
                    mixer[i_dst] = _mix(mixer[i_dst], _hashmix(mixer[i_src], hc))
        for i_src in range(POOL, len(entropy)):
            for i_dst in range(POOL):
                mixer[i_dst] = _mix(mixer[i_dst], _hashmix(entropy[i_src], hc))
        hb = _HashConst(INIT_B, MULT_B)
        words = []
        for i in range(8):
            h = hb.v
            hb.v = (hb.v * MULT_B) & _M32
            d = (mixer[i % POOL] ^ _U32(h)) * _U32(hb.v)
            words.append(d ^ (d >> _U32(16)))
    w = [x.astype(_U64) for x in words]
    return np.stack([w[2 * k] | (w[2 * k + 1] << _U64(32)) for k in range(4)], axis=1)


def _mul64(a, b):
    """Full 64x64 -> 128-bit product of uint64 arrays: (hi, lo)."""
    m32 = _U64(_M32)
    a0, a1 = a & m32, a >> _U64(32)
    b0, b1 = b & m32, b >> _U64(32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> _U64(32)) + (p01 & m32) + (p10 & m32)
    lo = (p00 & m32) | ((mid & m32) << _U64(32))
    hi = p11 + (p01 >> _U64(32)) + (p10 >> _U64(32)) + (mid >> _U64(32))
    return hi, lo


def _add128(ah, al, bh, bl):
    lo = al + bl
    carry = (lo < al).astype(_U64)
    return ah + bh + carry, lo


def _step(sh, sl, ih, il):
    """state * PCG multiplier + inc (mod 2**128)."""
    mh, ml = _U64(PCG_MULT_HI), _U64(PCG_MULT_LO)
    hi, lo = _mul64(sl, np.full_like(sl, ml))
    hi = hi + sh * ml + sl * mh
    return _add128(hi, lo, ih, il)


def _output(sh, sl):
    """PCG XSL-RR 128/64: rotr64(hi ^ lo, hi >> 58)."""
    x = sh ^ sl
    r = sh >> _U64(58)
    return (x >> r) | (x << ((_U64(64) - r) & _U64(63)))


class Streams:
    """PCG64 states of many streams seeded like ``default_rng(SeedSequence(seed, spawn_key=(v, key2)))``."""

    def __init__(self, seed: int, views: np.ndarray, key2: int):
        st = seed_states(seed, views, key2)
        with np.errstate(over="ignore"):
            ih = (st[:, 2] << _U64(1)) | (st[:, 3] >> _U64(63))
            il = (st[:, 3] << _U64(1)) | _U64(1)
            zh = np.zeros_like(ih)
            sh, sl = _step(zh, zh, ih, il)
            sh, sl = _add128(sh, sl, st[:, 0], st[:, 1])
            self.sh, self.sl = _step(sh, sl, ih, il)
        self.ih, self.il = ih, il

    def next64(self) -> np.ndarray:
        with np.errstate(over="ignore"):
            self.sh, self.sl = _step(self.sh, self.sl, self.ih, self.il)
            return _output(self.sh, self.sl)

    def random(self) -> np.ndarray:
        """``Generator.random()`` of every stream."""
        return (self.next64() >> _U64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)

    def integers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``Generator.integers(0, n)`` (int64, ``2 <= n <= 2**32``) of every stream, as
        (values, ok): ``ok`` is False where Lemire's method would reject and redraw (redo those
        with numpy)."""
        low32 = self.next64() & _U64(_M32)
        with np.errstate(over="ignore"):
            m = low32 * _U64(n)
        left = m & _U64(_M32)
        threshold = (2**32 - n) % n
        ok = ~((left < _U64(n)) & (left < _U64(threshold)))
        return (m >> _U64(32)).astype(np.int64), ok


def weighted_index(u: np.ndarray, weights: list[float]) -> np.ndarray:
    """``Generator.choice(len(weights), p=weights / sum)`` from the uniform draw ``u`` (numpy's
    cdf and ``searchsorted(side="right")``)."""
    p = np.asarray(weights, float) / sum(weights)
    cdf = p.cumsum()
    cdf /= cdf[-1]
    return cdf.searchsorted(u, side="right")


@functools.lru_cache(maxsize=None)
def self_check() -> bool:
    """True when this module reproduces numpy's streams here (a few seeds, views and bounds)."""
    try:
        views = np.array([0, 1, 2, 3, 255, 65536, 123456789, 2**32 - 1], dtype=np.uint64)
        for seed in (0, 7, 2**32 + 5, 2**70 + 3):
            s = Streams(seed, views, 0)
            u = s.random()
            ints, ok = s.integers(1000)
            for k, v in enumerate(views):
                g = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(int(v), 0))))
                if g.random() != u[k] or (ok[k] and int(g.integers(0, 1000)) != ints[k]):
                    return False
        return True
    except Exception:  # pragma: no cover (a numpy without these semantics)
        return False
