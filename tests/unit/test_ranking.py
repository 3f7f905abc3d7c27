"""Bradley–Terry ranking of candidates (stages.ranking, on choix)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import spearmanr

from stages.ranking import bradley_terry, comparison_matrix, rank, with_votes


def simulated_wins(strengths: np.ndarray, games: int, rng: np.random.Generator) -> np.ndarray:
    """Win counts from ``games`` comparisons of every two items under the Bradley–Terry model."""
    wins = np.zeros((len(strengths), len(strengths)))
    for a, b in itertools.combinations(range(len(strengths)), 2):
        p_a = 1.0 / (1.0 + np.exp(strengths[b] - strengths[a]))
        won = rng.binomial(games, p_a)
        wins[a, b] += won
        wins[b, a] += games - won
    return wins


def test_bradley_terry_recovers_a_known_ranking_from_simulated_comparisons() -> None:
    truth = np.array([0.3, -1.2, 1.5, 0.0, -0.4, 0.9])
    fitted = bradley_terry(simulated_wins(truth, games=400, rng=np.random.default_rng(7)))
    assert rank(fitted) == rank(truth) == [2, 5, 0, 3, 4, 1]
    assert spearmanr(fitted, truth).statistic == pytest.approx(1.0)
    # Strengths are log-odds: the fitted gaps come close to the true ones (regularisation shrinks a little).
    assert np.abs((fitted - fitted.mean()) - (truth - truth.mean())).max() < 0.25


def test_ties_give_equal_strengths_and_index_order() -> None:
    tied = np.full((4, 4), 5.0)
    np.fill_diagonal(tied, 0.0)
    assert bradley_terry(tied) == pytest.approx(np.zeros(4), abs=1e-9)
    assert rank(bradley_terry(tied)) == [0, 1, 2, 3]
    # Two items tied at the top, one clearly below: the tied pair gets one strength.
    wins = np.array([[0, 10, 19], [10, 0, 19], [1, 1, 0]], dtype=float)
    strengths = bradley_terry(wins)
    assert strengths[0] == pytest.approx(strengths[1]) and strengths[2] < strengths[0] - 1.0


def test_a_candidate_winning_everything_gets_a_finite_top_strength() -> None:
    wins = np.array([[0, 3, 3], [0, 0, 3], [0, 0, 0]], dtype=float)
    strengths = bradley_terry(wins)
    assert np.all(np.isfinite(strengths)) and rank(strengths) == [0, 1, 2]


def test_metric_comparisons_are_soft_below_the_visibility_scale() -> None:
    # psnr (scale 0.5 dB): +0.25 dB is a 75/25 outcome, +1 dB a certain win; gmsd lower is better.
    values = {"psnr": np.array([30.25, 30.0, 31.0]), "gmsd": np.array([0.1, 0.1, 0.1])}
    wins = comparison_matrix(values, {"psnr": False, "gmsd": True}, {"psnr": 0.5, "gmsd": 0.5},
                             {"psnr": 0.5, "gmsd": 0.01})
    assert wins[0, 1] == pytest.approx(0.5 * 0.75 + 0.5 * 0.5)
    assert wins[1, 0] == pytest.approx(0.5 * 0.25 + 0.5 * 0.5)
    assert wins[2, 1] == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    assert np.diag(wins) == pytest.approx(np.zeros(3))
    assert rank(bradley_terry(wins)) == [2, 0, 1]
    # A metric with a NaN on this instance is left out.
    values["gmsd"] = np.array([0.1, np.nan, 0.1])
    only_psnr = comparison_matrix(values, {"psnr": False, "gmsd": True}, {"psnr": 0.5, "gmsd": 0.5},
                                  {"psnr": 0.5, "gmsd": 0.01})
    assert only_psnr[0, 1] == pytest.approx(0.5 * 0.75)


def test_people_votes_refit_the_strengths() -> None:
    iqa = np.array([1.0, -1.0, 0.0])
    # One vote for candidate 1 over 0 outweighs the IQA's preference for 0 over 1.
    refit = with_votes(iqa, 1, 0, 1.0, 0.0)
    assert refit[1] > refit[0]
    # A confirming vote only strengthens the IQA order; no vote keeps it.
    confirmed = with_votes(iqa, 0, 1, 1.0, 0.0)
    assert confirmed[0] - confirmed[1] > 1.5
    assert rank(with_votes(iqa, 0, 1, 0.0, 0.0)) == rank(iqa)
