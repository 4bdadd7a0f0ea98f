"""Accuracy statistics: mean and std over seeds, paired bootstrap CI of a difference.

The bootstrap pairs two methods on the same (seed, question) units, resamples those units
with replacement, and reads the percentile interval of the mean difference. It is seeded, so
the same records always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

Unit = tuple[int, str]  # (seed, question id)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value).

    >>> mean_std([0.5, 0.7, 0.6])
    (0.6, 0.1)
    >>> mean_std([0.4])
    (0.4, 0.0)
    """
    if not values:
        raise ValueError("mean_std needs at least one value")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return round(mean, 12), 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return round(mean, 12), round(math.sqrt(var), 12)


@dataclass(frozen=True)
class PairedCI:
    """Mean difference (a minus b) over paired units with its bootstrap percentile interval."""

    diff: float
    ci_low: float
    ci_high: float
    n_pairs: int
    confidence: float
    samples: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def paired_bootstrap(
    a: Mapping[Unit, bool],
    b: Mapping[Unit, bool],
    samples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedCI:
    """Bootstrap CI of mean(a) - mean(b) over the units both methods answered.

    >>> a = {(0, "q1"): True, (0, "q2"): True, (0, "q3"): False}
    >>> b = {(0, "q1"): True, (0, "q2"): False, (0, "q3"): False}
    >>> ci = paired_bootstrap(a, b, samples=2000, seed=1)
    >>> round(ci.diff, 4), ci.n_pairs, ci.ci_low >= 0.0, ci.ci_high <= 1.0
    (0.3333, 3, True, True)
    """
    units = sorted(set(a) & set(b))
    if not units:
        raise ValueError("paired_bootstrap: the two methods share no (seed, question) units")
    d = np.array([float(a[u]) - float(b[u]) for u in units])
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    step = max(1, 4_000_000 // len(d))  # bound memory: ~4M indices per batch
    for start in range(0, samples, step):
        stop = min(samples, start + step)
        idx = rng.integers(0, len(d), size=(stop - start, len(d)))
        means[start:stop] = d[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return PairedCI(
        diff=float(d.mean()),
        ci_low=float(low),
        ci_high=float(high),
        n_pairs=len(d),
        confidence=confidence,
        samples=samples,
    )
