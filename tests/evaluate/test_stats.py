"""Seed statistics and the paired bootstrap."""

import doctest

import pytest

import malt.evaluate.stats as stats_mod
from malt.evaluate.stats import mean_std, paired_bootstrap


def test_doctests():
    assert doctest.testmod(stats_mod).failed == 0


def test_mean_std_matches_sample_std():
    mean, std = mean_std([0.6, 0.7, 0.8, 0.9])
    assert mean == pytest.approx(0.75)
    assert std == pytest.approx(0.1290994449, abs=1e-9)


def units(values, seed=0):
    return {(seed, f"q{i}"): bool(v) for i, v in enumerate(values)}


def test_identical_methods_have_a_zero_interval():
    a = units([1, 0, 1, 1, 0, 1])
    ci = paired_bootstrap(a, dict(a), samples=500, seed=3)
    assert (ci.diff, ci.ci_low, ci.ci_high) == (0.0, 0.0, 0.0)


def test_pairs_only_shared_units_and_is_seeded():
    a = {**units([1] * 30 + [0] * 10), (9, "extra"): True}
    b = units([1] * 20 + [0] * 20)
    ci = paired_bootstrap(a, b, samples=3000, seed=7)
    assert ci.n_pairs == 40 and ci.diff == pytest.approx(0.25)
    assert 0.0 < ci.ci_low < 0.25 < ci.ci_high < 0.5
    again = paired_bootstrap(a, b, samples=3000, seed=7)
    assert again == ci
    other = paired_bootstrap(a, b, samples=3000, seed=8)
    assert abs(other.ci_low - ci.ci_low) <= 0.05 and abs(other.ci_high - ci.ci_high) <= 0.05


def test_pairing_narrows_the_interval():
    # b = a except on 4 of 200 questions: the paired CI is tight although accuracy is ~50%.
    a = units([i % 2 for i in range(200)])
    b = dict(a)
    for i in range(1, 9, 2):
        b[(0, f"q{i}")] = False
    ci = paired_bootstrap(a, b, samples=2000, confidence=0.9, seed=0)
    assert ci.diff == pytest.approx(0.02)
    assert ci.ci_high - ci.ci_low < 0.05 and ci.ci_low >= 0.0


def test_seeds_are_separate_units():
    a = {**units([1, 1]), **units([1, 0], seed=1)}
    b = {**units([0, 1]), **units([0, 0], seed=1)}
    assert paired_bootstrap(a, b, samples=100).n_pairs == 4


def test_no_shared_units_is_an_error():
    with pytest.raises(ValueError, match="share no"):
        paired_bootstrap(units([1]), units([1], seed=5), samples=10)
