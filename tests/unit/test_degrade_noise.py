"""The noise fields: the table-driven Poisson sampler against the Poisson law, and seeding."""

import numpy as np
import pytest
from scipy import stats

from stages.degradations.noise import gaussian_field, poisson_counts


@pytest.mark.parametrize(("levels", "level"), [(1, 255), (4, 30), (64, 3), (256, 10), (256, 200)])
def test_poisson_counts_follow_the_poisson_law_of_their_rate(levels, level):
    rate = level * levels / 255
    counts = poisson_counts(np.full(200_000, level, dtype=np.uint8), levels, seed=level)
    observed = np.bincount(counts)
    expected = stats.poisson.pmf(np.arange(observed.size), rate) * counts.size
    kept = expected > 5  # the chi-square approximation needs >= 5 expected per cell
    assert observed[~kept].sum() <= 0.01 * counts.size
    scaled = expected[kept] * observed[kept].sum() / expected[kept].sum()
    assert stats.chisquare(observed[kept], scaled).pvalue > 1e-3
    assert counts.mean() == pytest.approx(rate, rel=0.02, abs=0.01)


def test_far_tail_counts_are_drawn_too():
    # Rate 0.5: counts >= 5 have probability 1.7e-4 and fall in probability bins spanning
    # several counts, which the sampler resolves against the whole CDF row.
    counts = poisson_counts(np.full(1_000_000, 128, dtype=np.uint8), 1, seed=3)
    tail = (counts >= 5).mean()
    assert tail == pytest.approx(stats.poisson.sf(4, 128 / 255), rel=0.25)


def test_each_pixel_draws_at_its_own_level_and_zero_rate_gives_zero():
    values = np.array([[0, 255], [128, 0]], dtype=np.uint8).repeat(50_000, axis=0)
    counts = poisson_counts(values, 16, seed=1)
    assert (counts[values == 0] == 0).all()
    assert counts[values == 255].mean() == pytest.approx(16, rel=0.02)
    assert counts[values == 128].mean() == pytest.approx(128 * 16 / 255, rel=0.02)


def test_fields_depend_on_the_seed_alone():
    values = np.random.default_rng(0).integers(0, 256, (3, 40, 40)).astype(np.uint8)
    assert np.array_equal(poisson_counts(values, 256, 7), poisson_counts(values, 256, 7))
    assert not np.array_equal(poisson_counts(values, 256, 7), poisson_counts(values, 256, 8))
    assert gaussian_field((3, 8, 8), 5).equal(gaussian_field((3, 8, 8), 5))
    assert not gaussian_field((3, 8, 8), 5).equal(gaussian_field((3, 8, 8), 6))
