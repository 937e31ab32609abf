"""Order statistics the reports share: exact nearest-rank percentiles, their intervals, and
the percentiles of samples moved by netem's uniform jitter."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def _rank(q: float, n: int) -> int:
    # the rank rounded first: 99.9 % of 1,000 is 999.0000000000001 in floating point
    return max(1, math.ceil(round(q * n / 100, 9)))


def percentiles(latencies: Sequence[float], wanted: Mapping[str, float]) -> dict:
    """Nearest rank: the smallest value with at least q % of the samples at or below it."""
    values = np.asarray(latencies, dtype=float)
    if values.size == 0:
        return dict.fromkeys(wanted, math.nan)
    ordered = np.sort(values)
    return {key: float(ordered[_rank(q, len(ordered)) - 1]) for key, q in wanted.items()}


def percentile_interval(samples: Sequence[float], q: float, z: float) -> tuple[float, float]:
    """A distribution-free confidence interval of the q-th percentile: the order statistics at
    ranks n·q/100 ∓ z·sqrt(n·q/100·(1 - q/100)) (the normal approximation of the binomial
    count of samples below the true percentile), rounded outward and one rank more above,
    clamped to the samples. NaN for none."""
    ordered = np.sort(np.asarray(samples, dtype=float))
    n = len(ordered)
    if n == 0:
        return math.nan, math.nan
    p = q / 100
    half = z * math.sqrt(n * p * (1 - p))
    low = min(n, max(1, math.floor(n * p - half)))
    high = min(n, max(1, math.ceil(n * p + half) + 1))
    return float(ordered[low - 1]), float(ordered[high - 1])


def wilson_interval(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval of a binomial proportion: sound at 0 and 1, unlike p ± z·sd."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # exactly 0 and 1 at the ends (the formula leaves a rounding error there)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _noise_cdf(x: float, jitter: float, ways: int) -> float:
    """P(sum of ``ways`` uniform(-jitter, jitter) <= x): uniform for one, triangular for two."""
    if ways == 1:
        return min(1.0, max(0.0, (x + jitter) / (2 * jitter)))
    width = 2 * jitter
    if x <= -width:
        return 0.0
    if x >= width:
        return 1.0
    if x <= 0:
        return (x + width) ** 2 / (2 * width * width)
    return 1 - (width - x) ** 2 / (2 * width * width)


def jittered_percentile(samples: Sequence[float], jitter: float, ways: int, q: float) -> float:
    """The q-th percentile of ``samples`` each moved by the sum of ``ways`` (1 or 2) uniform
    draws of ±``jitter`` (netem's jitter without a distribution table, once per direction):
    bisection on the mean of their smoothed distribution functions."""
    reach = jitter * ways
    low, high = min(samples) - reach, max(samples) + reach
    for _ in range(60):
        middle = (low + high) / 2
        below = sum(_noise_cdf(middle - value, jitter, ways) for value in samples) / len(samples)
        low, high = (middle, high) if below < q / 100 else (low, middle)
    return high
