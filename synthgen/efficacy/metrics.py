"""Depth metrics and the non-learned baselines of ``synthgen efficacy`` (numpy only, no torch).

All metrics take the prediction and the truth on the same pixels (1-D arrays of the region's
values, both > 0) and return floats:

=====================  =================================================================================
``abs_rel_median``     AbsRel ``mean(|p' - g| / g)`` after median scaling ``p' = p * median(g) / median(p)``
``delta1_median``      fraction of pixels with ``max(p'/g, g/p') < 1.25``, same median scaling
``abs_rel_lsq``        AbsRel after a least-squares fit of scale and shift in log depth:
                       ``log p' = a log p + b`` minimising ``sum (a log p + b - log g)^2``
``delta1_lsq``         δ<1.25 after the same fit
``silog``              scale-invariant log error (Eigen et al. 2014, eq. 3 with λ = 1):
                       ``sqrt(mean(d^2) - mean(d)^2)``, ``d = log p - log g`` (the std of the log ratio)
``spearman``           Spearman rank correlation of p and g (ties get average ranks; 0 when either side
                       is constant, so a constant prediction scores 0)
``abs_rel_raw``        AbsRel without any alignment, only for metric truth (``depth.metric``), else None
``delta1_raw``         δ<1.25 without alignment, only for metric truth, else None
=====================  =================================================================================

Every metric except the ``*_raw`` pair is invariant to the scale of the truth, which is why
relative-depth evaluation data (``depth.metric == false``) is evaluated with them alone.
"""

from __future__ import annotations

import math

import numpy as np

METRICS = ("abs_rel_median", "delta1_median", "abs_rel_lsq", "delta1_lsq", "silog", "spearman",
           "abs_rel_raw", "delta1_raw")
HIGHER_IS_BETTER = {"delta1_median", "delta1_lsq", "spearman", "delta1_raw"}
DELTA = 1.25


def abs_rel(pred: np.ndarray, gt: np.ndarray) -> float:
    """``mean(|p - g| / g)``."""
    return float(np.mean(np.abs(pred - gt) / gt))


def delta1(pred: np.ndarray, gt: np.ndarray, threshold: float = DELTA) -> float:
    """Fraction of pixels with ``max(p/g, g/p) < threshold``."""
    return float(np.mean(np.maximum(pred / gt, gt / pred) < threshold))


def median_scale(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``p * median(g) / median(p)``."""
    return pred * (np.median(gt) / np.median(pred))


def lsq_log_fit(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(a, b)`` with ``log g ≈ a log p + b``; ``a = 0`` when ``log p`` is constant."""
    lp, lg = np.log(pred), np.log(gt)
    vp = float(np.var(lp))
    if vp <= 1e-12 * max(1.0, float(np.mean(lp * lp))):
        return 0.0, float(np.mean(lg))
    a = float(np.mean((lp - lp.mean()) * (lg - lg.mean())) / vp)
    return a, float(lg.mean() - a * lp.mean())


def lsq_log_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``exp(a log p + b)`` with ``(a, b)`` from :func:`lsq_log_fit`."""
    a, b = lsq_log_fit(pred, gt)
    return np.exp(a * np.log(pred) + b)


def silog(pred: np.ndarray, gt: np.ndarray) -> float:
    """``sqrt(mean(d^2) - mean(d)^2)`` with ``d = log p - log g`` (Eigen et al. 2014, λ = 1)."""
    d = np.log(pred) - np.log(gt)
    return float(math.sqrt(max(0.0, float(np.mean(d * d) - np.mean(d) ** 2))))


def rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``a`` (ties share their average rank), float64."""
    a = np.asarray(a).ravel()
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(s)]  # exclusive
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(a), np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(pred: np.ndarray, gt: np.ndarray) -> float:
    """Spearman's ρ (Pearson correlation of average ranks); 0 when either side is constant."""
    rp, rg = rankdata(pred), rankdata(gt)
    rp -= rp.mean()
    rg -= rg.mean()
    den = math.sqrt(float(np.dot(rp, rp)) * float(np.dot(rg, rg)))
    return 0.0 if den == 0 else float(np.dot(rp, rg) / den)


def depth_metrics(pred: np.ndarray, gt: np.ndarray, metric: bool) -> dict[str, float | None]:
    """All :data:`METRICS` for one sample.

    Args:
        pred: predicted depth on the region's pixels (> 0).
        gt: true depth on the same pixels (> 0).
        metric: whether ``gt`` is metric; the ``*_raw`` metrics are None otherwise.
    """
    pred = np.asarray(pred, np.float64).ravel()
    gt = np.asarray(gt, np.float64).ravel()
    if pred.shape != gt.shape or pred.size == 0:
        raise ValueError(f"need equally many (> 0) pixels, got {pred.shape} and {gt.shape}")
    if not (np.all(pred > 0) and np.all(gt > 0) and np.all(np.isfinite(pred)) and np.all(np.isfinite(gt))):
        raise ValueError("depth values must be finite and > 0")
    pm = median_scale(pred, gt)
    pl = lsq_log_align(pred, gt)
    return {
        "abs_rel_median": abs_rel(pm, gt), "delta1_median": delta1(pm, gt),
        "abs_rel_lsq": abs_rel(pl, gt), "delta1_lsq": delta1(pl, gt),
        "silog": silog(pred, gt), "spearman": spearman(pred, gt),
        "abs_rel_raw": abs_rel(pred, gt) if metric else None,
        "delta1_raw": delta1(pred, gt) if metric else None,
    }


def region_mask(depth: np.ndarray, mask: np.ndarray, region: str) -> np.ndarray:
    """Pixels that are scored: ``valid`` = depth > 0; ``mask`` = depth > 0 and mask > 0.5."""
    valid = np.isfinite(depth) & (depth > 0)
    if region == "valid":
        return valid
    if region == "mask":
        return valid & (mask > 0.5)
    raise ValueError(f"region {region!r}: expected 'mask' or 'valid'")


# ----------------------------------------------------------------------------- baselines

ELLIPSOID_FAR = 1.0
ELLIPSOID_BUMP = 0.2


def constant_depth(shape: tuple[int, int], value: float = 1.0) -> np.ndarray:
    """The constant baseline: ``value`` everywhere (after median scaling it is ``median(g)``)."""
    return np.full(shape, float(value), np.float32)


def ellipsoid_depth(mask: np.ndarray, box: tuple[int, int, int, int] | None = None,
                    far: float = ELLIPSOID_FAR, bump: float = ELLIPSOID_BUMP) -> np.ndarray:
    """The ellipsoid baseline: a half-ellipsoid bump centred on the mask, nearest in the middle.

    Centre = mask-weighted centroid of ``mask > 0.5``; semi-axes = twice the standard deviation of
    the mask's x and y coordinates (the extent of a uniform ellipse). Depth is
    ``far - bump * sqrt(1 - r^2)`` inside (``r`` the normalised elliptic radius) and ``far`` outside.
    Without mask pixels the ellipse fills ``box`` (``(y0, y1, x0, x1)``, default the whole image).
    """
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    sel = mask > 0.5
    if sel.sum() >= 2:
        cy, cx = yy[sel].mean(), xx[sel].mean()
        ay, ax = 2 * max(yy[sel].std(), 0.5), 2 * max(xx[sel].std(), 0.5)
    else:
        y0, y1, x0, x1 = box or (0, h, 0, w)
        cy, cx = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2
        ay, ax = max((y1 - y0) / 2, 0.5), max((x1 - x0) / 2, 0.5)
    r2 = ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2
    return (far - bump * np.sqrt(np.clip(1 - r2, 0, 1))).astype(np.float32)

