"""Statistics of the comparison, from SciPy: summaries over seeds, Welch's t, exact McNemar.

With three seeds per model the honest statements are few: a mean ± std (``np.std``, as the seed
reported), a t-based confidence interval that is wide because n is small, Welch's t-test over the
seed accuracies, and — because both models classify the *same* test names — a paired test on the
names: exact McNemar on the seed-majority predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # population std (ddof=0), as the seed notebook's np.std
    ci_low: float | None  # t-interval of the mean (ddof=1); None with one value
    ci_high: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no values to summarize")
    mean = float(data.mean())
    if data.size < 2:
        return Summary(int(data.size), mean, 0.0, None, None)
    sem = float(stats.sem(data))
    if sem == 0.0:
        low = high = mean
    else:
        low, high = stats.t.interval(confidence, df=data.size - 1, loc=mean, scale=sem)
    return Summary(int(data.size), mean, float(data.std()), float(low), float(high))


@dataclass(frozen=True)
class Comparison:
    """``b`` minus ``a`` in test accuracy (positive: ``b`` is better)."""

    a: str
    b: str
    difference: float
    ci_low: float | None
    ci_high: float | None
    welch_t: float | None
    welch_df: float | None
    welch_p: float | None
    mcnemar_a_only: int  # names only a's majority vote gets right
    mcnemar_b_only: int
    mcnemar_p: float
    n_names: int
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self) -> str:
        pct = f"{self.confidence:.0%}"
        ci = (
            f"{pct} CI [{self.ci_low * 100:+.1f}, {self.ci_high * 100:+.1f}] pp"
            if self.ci_low is not None and self.ci_high is not None
            else "CI n/a"
        )
        welch = f"Welch's t p = {self.welch_p:.3g}" if self.welch_p is not None else "Welch's t n/a"
        return (
            f"{self.b} − {self.a}: {self.difference * 100:+.1f} pp test accuracy ({ci}; {welch} over seeds); "
            f"exact McNemar on seed-majority predictions over {self.n_names} test names: "
            f"{self.b} alone right on {self.mcnemar_b_only}, {self.a} alone right on {self.mcnemar_a_only}, "
            f"p = {self.mcnemar_p:.3g}"
        )


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def majority_vote(predictions: Sequence[Sequence[int]]) -> np.ndarray:
    """Per name, the label most seeds predicted (ties: the smallest label index)."""
    matrix = np.asarray(predictions, dtype=np.int64)  # (seeds, names)
    return stats.mode(matrix, axis=0, keepdims=False).mode


def compare(
    a: str,
    b: str,
    accuracies_a: Sequence[float],
    accuracies_b: Sequence[float],
    predictions_a: Sequence[Sequence[int]],
    predictions_b: Sequence[Sequence[int]],
    truth: Sequence[int],
    confidence: float = 0.95,
) -> Comparison:
    """Welch's t over seed accuracies (with its CI of the difference) and exact McNemar over names."""
    acc_a = np.asarray(accuracies_a, dtype=np.float64)
    acc_b = np.asarray(accuracies_b, dtype=np.float64)
    difference = float(acc_b.mean() - acc_a.mean())
    welch_t = welch_df = welch_p = ci_low = ci_high = None
    if acc_a.size >= 2 and acc_b.size >= 2 and (acc_a.std() > 0 or acc_b.std() > 0):
        result = stats.ttest_ind(acc_b, acc_a, equal_var=False)
        welch_t, welch_p = _finite(result.statistic), _finite(result.pvalue)
        welch_df = _finite(getattr(result, "df", float("nan")))
        interval = result.confidence_interval(confidence_level=confidence)
        ci_low, ci_high = _finite(interval.low), _finite(interval.high)
    truth_arr = np.asarray(truth, dtype=np.int64)
    right_a = majority_vote(predictions_a) == truth_arr
    right_b = majority_vote(predictions_b) == truth_arr
    a_only = int(np.sum(right_a & ~right_b))
    b_only = int(np.sum(right_b & ~right_a))
    mcnemar_p = float(stats.binomtest(b_only, a_only + b_only, 0.5).pvalue) if a_only + b_only else 1.0
    return Comparison(
        a,
        b,
        difference,
        ci_low,
        ci_high,
        welch_t,
        welch_df,
        welch_p,
        a_only,
        b_only,
        mcnemar_p,
        int(truth_arr.size),
        confidence,
    )
