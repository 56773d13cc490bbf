"""assess() on synthetic scans of the quality phantom (white noise, no simulator): halves by scan,
methods without noise or without edges, and JSON-safe records."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from vagan.evaluation.quality_run import FULL_DOSE, QualityOutcome
from vagan.evaluation.report_quality import (
    dose_statements,
    dose_table,
    equivalent_dose,
    quality_record,
    quality_tables,
)
from vagan.physics.quality_phantom import make_quality_phantom
from vagan.physics.simulate import SimulationConfig
from vagan.quality.assessment import QualityImages, assess
from vagan.quality.config import QualityConfig
from vagan.quality.setup import QualitySetup
from vagan.study.stats import Interval

PHANTOM = make_quality_phantom(256, 1.4, (5, 10), (20, 60), (100,))


def scans(k: int, sigma: float, seed: int = 0) -> QualityImages:
    rng = np.random.default_rng(seed)
    present, absent = PHANTOM.render(True), PHANTOM.render(False)
    return QualityImages(present + rng.normal(0, sigma, (k, 256, 256)).astype(np.float32),
                         absent + rng.normal(0, sigma, (k, 256, 256)).astype(np.float32))


def test_white_noise_scans_give_their_noise_and_unbiased_ct_numbers():
    result = assess(scans(8, 20.0), PHANTOM, channels=2, resamples=200)
    assert result.noise_std_hu == pytest.approx(20.0, rel=0.05)
    assert result.nps.values.std() / result.nps.values.mean() < 0.2  # white: flat
    for tissue, bias in result.ct_bias_hu.items():
        assert bias.low < 0 < bias.high, tissue
    d = {name: obs["cho"].d_prime.estimate for name, obs in result.detectability.items()}
    assert d["10 mm / 60 HU"] > d["5 mm / 20 HU"] > 0


def test_an_odd_number_of_scans_splits_by_whole_scans():
    copies = len(PHANTOM.lesions_of(PHANTOM.lesion_types[0]))
    result = assess(scans(5, 20.0), PHANTOM, channels=2, resamples=50)
    found = result.detectability["5 mm / 20 HU"]["cho"]
    assert (found.n_train, found.n_test) == (2 * copies, 3 * copies)


def test_a_method_that_removes_all_noise_and_every_edge_is_reported_not_fatal():
    flat = np.full((4, 256, 256), 40.0, np.float32)
    result = assess(QualityImages(flat, flat.copy()), PHANTOM, channels=2, resamples=50)
    assert result.noise_std_hu == 0 and np.isnan(result.nps.mean_frequency)
    assert all(t is None for t in result.ttf.values())
    setup = QualitySetup(PHANTOM, 0.25, SimulationConfig(), "test")
    full = assess(scans(4, 10.0), PHANTOM, channels=2, resamples=50)
    outcome = QualityOutcome(setup, QualityConfig(enabled=True, realisations=4), {FULL_DOSE: full, "flat": result})
    json.dumps(quality_record(outcome), allow_nan=False)  # no NaN or infinity reaches summary.json
    cells = [row for table in quality_tables(outcome) for row in table.rows]
    assert any("no edge left" in cell for row in cells for cell in row)


def test_doubling_the_noise_reads_as_a_quarter_of_the_dose_and_full_dose_reaches_itself():
    """d' ∝ 1/σ ∝ √dose: scans with twice full dose's white noise are a quarter-dose scan, so their
    median CHO d' is about half of full dose's and the equivalent dose about 25%."""
    full = assess(scans(12, 10.0, seed=1), PHANTOM, channels=2, resamples=20)
    quarter = assess(scans(12, 20.0, seed=2), PHANTOM, channels=2, resamples=20)
    setup = QualitySetup(PHANTOM, 0.25, SimulationConfig(), "test")
    outcome = QualityOutcome(setup, QualityConfig(enabled=True, realisations=12),
                             {FULL_DOSE: full, "quarter": quarter, "oracle": full})
    rows = {row[0]: row for row in dose_table(outcome).rows}
    assert float(rows["quarter"][1]) == pytest.approx(0.5, abs=0.1)
    assert 15 <= float(rows["quarter"][2].rstrip("%")) <= 36
    assert rows["quarter"][3] == "none"
    assert float(rows["oracle"][1]) == 1.0 and rows["oracle"][2] == "100%"
    assert rows["oracle"][3].count("mm") == len(PHANTOM.lesion_types)  # every lesion reaches full dose
    statements = dose_statements(outcome)
    assert any(s.startswith("quarter at 25% dose: median CHO d' 0.") for s in statements)
    assert any(s.startswith("oracle at 25% dose reaches the CHO d' of full dose for") for s in statements)
    assert not any(s.startswith("No method") for s in statements)


def test_equivalent_dose_is_the_squared_d_prime_ratio():
    assert equivalent_dose(0.5) == pytest.approx(0.25)
    assert equivalent_dose(1.2) == pytest.approx(1.44)
    assert equivalent_dose(-0.3) == 0.0  # a method that hides the lesion sees as well as no scan


def _with_cho(result, d_primes: dict[str, Interval]):
    """``result`` with its CHO d' replaced per lesion (the rest of the record kept)."""
    detect = {lesion: {**obs, "cho": replace(obs["cho"], d_prime=d_primes[lesion])}
              for lesion, obs in result.detectability.items()}
    return replace(result, detectability=detect)


def test_dose_equivalence_skips_lesions_full_dose_does_not_see_and_survives_infinite_d_prime():
    base = assess(scans(4, 20.0), PHANTOM, channels=2, resamples=10)
    lesions = list(base.detectability)  # 5/20, 5/60, 10/20, 10/60
    seen, noise = Interval(2.0, 1.5, 2.5, 10), Interval(0.05, -0.3, 0.4, 10)
    infinite = Interval(math.inf, math.inf, math.inf, 10)
    full = _with_cho(base, {lesions[0]: seen, lesions[1]: noise, lesions[2]: infinite, lesions[3]: noise})
    half = _with_cho(base, {lesions[0]: Interval(1.0, 0.5, 1.5, 10), lesions[1]: Interval(3.0, 2, 4, 10),
                            lesions[2]: Interval(1.0, 0.5, 1.5, 10), lesions[3]: Interval(3.0, 2, 4, 10)})
    perfect = _with_cho(base, {lesion: infinite for lesion in lesions})
    setup = QualitySetup(PHANTOM, 0.25, SimulationConfig(), "test")
    outcome = QualityOutcome(setup, QualityConfig(enabled=True, realisations=4),
                             {FULL_DOSE: full, "half": half, "perfect": perfect})
    rows = {row[0]: row for row in dose_table(outcome).rows}
    # only the first lesion is seen at full dose with a finite d': the junk ratios of 60 are ignored
    assert rows["half"][1:3] == ["0.50", "25%"]
    assert rows["perfect"][1:3] == ["inf", "> 100%"]
    blind = _with_cho(base, {lesion: noise for lesion in lesions})
    nothing = QualityOutcome(setup, QualityConfig(enabled=True, realisations=4), {FULL_DOSE: blind, "half": half})
    assert dose_table(nothing).rows[0][1:3] == ["n/a", "n/a"]
    # nor does a method "reach full dose" on lesions that full dose does not see
    assert dose_table(nothing).rows[0][3] == "none"
    assert dose_statements(nothing) == ["No method at 25% dose reaches the CHO d' of full dose for any lesion."]
    assert math.isnan(equivalent_dose(math.nan))
