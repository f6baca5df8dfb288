"""Exact binomial tails, Clopper–Pearson intervals and fixed-sequence testing (numpy only).

The statistics of `boxguard calibrate` (Learn then Test, Angelopoulos et al. 2021) and of the
evaluation report's selective-risk interval. Exact: the binomial tail is a direct sum of
its terms in log space (numpy), no normal approximation and no scipy.

Example:
    >>> round(binomial_p_value(errors=0, n=22, alpha=0.1), 4)  # 0.9 ** 22
    0.0985
    >>> fixed_sequence([0.01, 0.04, 0.2, 0.01], delta=0.05)
    2
    >>> [round(x, 4) for x in clopper_pearson(0, 10)]
    [0.0, 0.3085]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import numpy as np

__all__ = [
    "binom_cdf",
    "binomial_p_value",
    "clopper_pearson",
    "fixed_sequence",
    "min_accepted",
    "upper_bound",
]


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(Bin(n, p) <= k), summed exactly in log space.

    Example:
        >>> round(binom_cdf(1, 2, 0.5), 12)
        0.75
    """
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    # log C(n, i) p^i q^(n-i) for i = 0..k, by the ratio of consecutive terms (one log each).
    i = np.arange(k)
    steps = np.log((n - i) / (i + 1)) + (math.log(p) - math.log1p(-p))
    logs = np.concatenate(([n * math.log1p(-p)], n * math.log1p(-p) + np.cumsum(steps)))
    top = float(logs.max())
    return min(1.0, math.exp(top) * math.fsum(np.exp(logs - top).tolist()))


def binomial_p_value(errors: int, n: int, alpha: float) -> float:
    """p-value of the null "risk > alpha" after `errors` wrong among `n` accepted: P(Bin(n, α) <=
    errors). Super-uniform under the null (Bin(n, r) with r > α is stochastically larger); 1 when
    nothing was accepted (no evidence).

    Example:
        >>> round(binomial_p_value(1, 3, 0.5), 12)
        0.5
    """
    if n == 0:
        return 1.0
    return binom_cdf(errors, n, alpha)


def upper_bound(errors: int, n: int, delta: float) -> float:
    """The one-sided (1 − δ) Clopper–Pearson upper bound on a risk: the smallest α whose p-value
    ``binomial_p_value(errors, n, α)`` is <= δ; 1 for n = 0.

    Example:
        >>> round(upper_bound(0, 22, 0.1), 4)  # 1 - 0.1 ** (1 / 22)
        0.0994
    """
    if n == 0 or errors >= n:
        return 1.0
    lo, hi = errors / n, 1.0
    for _ in range(60):  # bisection: P(Bin(n, a) <= errors) falls as a rises
        mid = (lo + hi) / 2
        if binom_cdf(errors, n, mid) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def clopper_pearson(errors: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided exact interval for a binomial proportion (errors of n), at `level`.

    Example:
        >>> [round(x, 4) for x in clopper_pearson(5, 10)]
        [0.1871, 0.8129]
    """
    if n == 0:
        return 0.0, 1.0
    tail = (1.0 - level) / 2
    upper = upper_bound(errors, n, tail)
    lower = 1.0 - upper_bound(n - errors, n, tail) if errors > 0 else 0.0
    return lower, upper


@functools.lru_cache(maxsize=256)
def min_accepted(alpha: float, delta: float, ratio: float = 0.5) -> int:
    """The fewest accepted samples at which an observed risk of ``ratio * alpha`` certifies
    risk <= α at δ (ratio 0: zero errors, n >= log δ / log(1 − α)).

    Example:
        >>> min_accepted(0.1, 0.1, ratio=0.0), min_accepted(0.1, 0.1)
        (22, 38)
    """
    n = max(1, math.ceil(math.log(delta) / math.log1p(-alpha) - 1e-12))
    while binom_cdf(math.floor(ratio * alpha * n), n, alpha) > delta:
        n += 1
    return n


def fixed_sequence(p_values: Iterable[float], delta: float) -> int:
    """Fixed-sequence testing: how many leading hypotheses are rejected at level δ.

    The hypotheses are tested in their given (pre-registered) order, each at the full δ, and
    testing stops at the first p-value above δ; the family-wise error rate is at most δ. A
    generator is consumed only up to that p-value.

    Example:
        >>> fixed_sequence([0.2, 0.01], delta=0.1)
        0
    """
    rejected = 0
    for p in p_values:
        if p > delta:
            break
        rejected += 1
    return rejected
