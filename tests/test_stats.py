"""Comparison statistics: seed summaries, Welch's t against SciPy, exact McNemar on majority votes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ml_rnn_names.study.stats import Comparison, compare, majority_vote, summarize

# ------------------------------------------------------------------------------------------ summarize


def test_summarize_mean_population_std_and_t_interval() -> None:
    values = [0.61, 0.64, 0.70]
    s = summarize(values, 0.95)
    assert s.n == 3
    assert s.mean == pytest.approx(np.mean(values))
    assert s.std == pytest.approx(np.std(values))  # ddof=0, as the seed notebook reported
    assert s.std != pytest.approx(np.std(values, ddof=1))
    low, high = sps.t.interval(0.95, df=2, loc=np.mean(values), scale=sps.sem(values))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert s.ci_low < s.mean < s.ci_high
    assert s.as_dict() == {"n": 3, "mean": s.mean, "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high}


def test_summarize_interval_widens_with_fewer_seeds_and_higher_confidence() -> None:
    three = summarize([0.5, 0.6, 0.7])
    six = summarize([0.5, 0.6, 0.7, 0.5, 0.6, 0.7])  # same spread, twice the seeds
    assert three.std == pytest.approx(six.std)
    assert (three.ci_high - three.ci_low) > (six.ci_high - six.ci_low)
    assert six.ci_low < six.mean < six.ci_high
    wider = summarize([0.5, 0.6, 0.7], 0.99)
    assert (wider.ci_high - wider.ci_low) > (three.ci_high - three.ci_low)


def test_summarize_single_value_has_no_interval() -> None:
    s = summarize([0.42])
    assert (s.n, s.mean, s.std, s.ci_low, s.ci_high) == (1, 0.42, 0.0, None, None)


def test_summarize_identical_values_give_a_point_interval() -> None:
    s = summarize([0.5, 0.5, 0.5])
    assert (s.mean, s.std, s.ci_low, s.ci_high) == (0.5, 0.0, 0.5, 0.5)


def test_summarize_refuses_no_values() -> None:
    with pytest.raises(ValueError, match="no values"):
        summarize([])


# ------------------------------------------------------------------------------------------- compare


def _compare(acc_a, acc_b, truth=(0, 1), preds_a=None, preds_b=None, confidence=0.95) -> Comparison:
    preds_a = preds_a or [list(truth)] * len(acc_a)
    preds_b = preds_b or [list(truth)] * len(acc_b)
    return compare("RNN", "LSTM", acc_a, acc_b, preds_a, preds_b, list(truth), confidence)


def test_welch_matches_scipy() -> None:
    a, b = [0.60, 0.62, 0.65], [0.70, 0.74, 0.71]
    c = _compare(a, b)
    ref = sps.ttest_ind(b, a, equal_var=False)
    assert c.difference == pytest.approx(np.mean(b) - np.mean(a))
    assert c.welch_t == pytest.approx(ref.statistic)
    assert c.welch_p == pytest.approx(ref.pvalue)
    # Welch–Satterthwaite degrees of freedom, by hand
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 3
    assert c.welch_df == pytest.approx((va + vb) ** 2 / (va**2 / 2 + vb**2 / 2))
    interval = ref.confidence_interval(confidence_level=0.95)
    assert (c.ci_low, c.ci_high) == (pytest.approx(interval.low), pytest.approx(interval.high))
    assert c.ci_low < c.difference < c.ci_high
    assert c.ci_low > 0  # a clear difference: the interval excludes 0
    assert c.welch_p < 0.05


def test_welch_is_symmetric_and_respects_confidence() -> None:
    a, b = [0.60, 0.62, 0.65], [0.61, 0.66, 0.64]
    ab, ba = _compare(a, b), compare("LSTM", "RNN", b, a, [[0, 1]] * 3, [[0, 1]] * 3, [0, 1])
    assert ab.welch_p == pytest.approx(ba.welch_p)
    assert ab.difference == pytest.approx(-ba.difference)
    assert ab.welch_p > 0.05 and ab.ci_low < 0 < ab.ci_high
    wide = _compare(a, b, confidence=0.99)
    assert (wide.ci_high - wide.ci_low) > (ab.ci_high - ab.ci_low)


def test_welch_undefined_without_variance_or_with_one_seed() -> None:
    flat = _compare([0.5, 0.5, 0.5], [0.6, 0.6, 0.6])
    assert flat.difference == pytest.approx(0.1)
    assert (flat.welch_t, flat.welch_df, flat.welch_p, flat.ci_low, flat.ci_high) == (None,) * 5
    assert "Welch's t n/a" in flat.sentence() and "CI n/a" in flat.sentence()
    single = _compare([0.5], [0.6])
    assert single.welch_p is None and single.ci_low is None


def test_mcnemar_counts_and_exact_p_on_a_handcrafted_example() -> None:
    truth = [0, 1, 2, 0, 1, 2, 0, 1]
    # a (3 seeds): majority right on names 0-3, wrong on 4-7
    preds_a = [
        [0, 1, 2, 0, 0, 0, 1, 0],
        [0, 1, 2, 0, 0, 0, 1, 0],
        [1, 1, 0, 0, 1, 2, 0, 1],  # outvoted
    ]
    # b: majority right on names 2-7, wrong on 0-1
    preds_b = [
        [1, 0, 2, 0, 1, 2, 0, 1],
        [1, 0, 2, 0, 1, 2, 0, 1],
        [0, 1, 2, 0, 1, 2, 0, 1],  # outvoted
    ]
    c = compare("A", "B", [0.5, 0.4, 0.6], [0.7, 0.8, 0.6], preds_a, preds_b, truth)
    # a alone right: names 0, 1; b alone right: names 4, 5, 6, 7; both right: 2, 3
    assert (c.mcnemar_a_only, c.mcnemar_b_only, c.n_names) == (2, 4, 8)
    assert c.mcnemar_p == pytest.approx(sps.binomtest(4, 6, 0.5).pvalue)
    assert c.mcnemar_p == pytest.approx(2 * sum(math.comb(6, k) for k in range(3)) / 2**6)
    sentence = c.sentence()
    assert "B − A" in sentence and "B alone right on 4, A alone right on 2" in sentence
    assert "over 8 test names" in sentence
    assert c.as_dict()["mcnemar_b_only"] == 4


def test_mcnemar_without_discordant_names_has_p_one() -> None:
    c = _compare([0.5, 0.6], [0.5, 0.7], truth=(0, 1, 2))
    assert (c.mcnemar_a_only, c.mcnemar_b_only, c.mcnemar_p) == (0, 0, 1.0)


def test_mcnemar_all_one_sided() -> None:
    truth = [0] * 5
    c = compare("A", "B", [0.0], [1.0], [[1] * 5], [[0] * 5], truth)
    assert (c.mcnemar_a_only, c.mcnemar_b_only) == (0, 5)
    assert c.mcnemar_p == pytest.approx(2 * 0.5**5)


# --------------------------------------------------------------------------------------- majority vote


def test_majority_vote_takes_the_most_common_label() -> None:
    votes = majority_vote([[0, 2, 1], [0, 2, 3], [1, 2, 3]])
    assert votes.tolist() == [0, 2, 3]


def test_majority_vote_ties_go_to_the_smallest_label() -> None:
    # three seeds: name 0 gets 3, 1, 2 and name 1 gets 0, 2, 1 (three-way ties); then two-way ties
    assert majority_vote([[3, 0], [1, 2], [2, 1]]).tolist() == [1, 0]
    assert majority_vote([[4, 3], [2, 1]]).tolist() == [2, 1]
    assert majority_vote([[7]]).tolist() == [7]
