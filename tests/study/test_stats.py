"""Study statistics on synthetic numbers with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vagan.study.stats import (
    bootstrap_mean,
    group_means,
    lowest,
    paired_difference,
    patient_interval,
)


def test_bootstrap_of_a_constant_is_the_constant() -> None:
    ci = bootstrap_mean([3.5] * 12)
    assert (ci.estimate, ci.low, ci.high, ci.n) == (3.5, 3.5, 3.5, 12)


def test_bootstrap_interval_matches_the_normal_theory_width() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(10.0, 2.0, 400)
    ci = bootstrap_mean(x, resamples=4000, seed=1)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)  # the mean's 95% interval for a large sample
    assert ci.estimate == pytest.approx(x.mean())
    assert (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.1)
    assert ci.low < ci.estimate < ci.high


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(3)
    hits = 0
    for i in range(200):
        ci = bootstrap_mean(rng.normal(0.0, 1.0, 30), resamples=500, seed=i)
        hits += ci.low <= 0.0 <= ci.high
    assert 0.88 <= hits / 200 <= 0.99  # percentile bootstrap undercovers a little at n = 30


def test_patient_means_weight_patients_equally() -> None:
    values = [1.0, 1.0, 1.0, 1.0, 5.0]  # patient A has four slices, B one
    patients = ["A", "A", "A", "A", "B"]
    assert group_means(values, patients) == {"A": 1.0, "B": 5.0}
    assert patient_interval(values, patients).estimate == 3.0  # not the slice mean 1.8
    with pytest.raises(ValueError, match="group labels"):
        group_means(values, patients[:-1])


def test_paired_difference_finds_a_known_shift_and_none_where_there_is_none() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(40.0, 2.0, 60)  # slices differ a lot from each other...
    shifted = base + 0.3 + rng.normal(0, 0.05, 60)  # ...the method differs by a small, consistent 0.3
    up = paired_difference(shifted, base)
    assert up.difference.estimate == pytest.approx(0.3, abs=0.02)
    assert up.verdict == "held" and up.p_value < 1e-6 and up.wins == 60 and up.losses == 0
    assert paired_difference(base, shifted).verdict == "reversed"
    noise = base + rng.normal(0, 0.5, 60)
    same = paired_difference(noise, base + rng.normal(0, 0.5, 60))
    assert same.verdict == "not resolved" and same.p_value > 0.01
    identical = paired_difference(base, base)
    assert identical.p_value == 1.0 and identical.verdict == "not resolved"


def test_lowest_value_verdict() -> None:
    assert lowest({"vagan": 0.5, "g_gan": 0.7, "ga_gan": 0.6}, "vagan") == "held"
    assert lowest({"vagan": 0.8, "g_gan": 0.7}, "vagan") == "reversed"
    with pytest.raises(ValueError):
        lowest({"vagan": 0.5}, "vagan")


def test_bad_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_mean([])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_mean([1.0, float("nan")])
    with pytest.raises(ValueError, match="shape"):
        paired_difference([1.0, 2.0], [1.0])


def test_seeded_difference_knows_a_constant_shift_and_widens_with_seed_spread() -> None:
    from vagan.study.stats import patient_interval, seeded_difference

    rng = np.random.default_rng(1)
    patients = [p for p in "ABCDE" for _ in range(4)]
    base = rng.normal(30, 2, size=len(patients))
    # a shift of exactly 1 dB on every slice and seed: no spread at all
    same = seeded_difference(np.stack([base + 1, base + 1]), np.stack([base, base]), patients)
    assert (same.estimate, same.low, same.high, same.n) == pytest.approx((1, 1, 1, 5))
    # seed 0 of a is 2 dB better, seed 1 no better: the mean is 1 and the interval reaches both seeds' values
    spread = seeded_difference(np.stack([base + 2, base]), np.stack([base, base]), patients, resamples=4000)
    assert spread.estimate == pytest.approx(1) and spread.low == pytest.approx(0) and spread.high == pytest.approx(2)
    # with one seed each it is the patient bootstrap of the paired differences
    noisy = base + rng.normal(0.5, 1, size=len(patients))
    one = seeded_difference(noisy[None], base[None], patients)
    plain = patient_interval(noisy - base, patients)
    assert one.estimate == pytest.approx(plain.estimate)
    assert one.high - one.low == pytest.approx(plain.high - plain.low, rel=0.25)
    with pytest.raises(ValueError, match="same 20 slices"):
        seeded_difference(np.stack([base]), np.stack([base[:-1]]), patients)
