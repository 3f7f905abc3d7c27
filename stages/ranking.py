"""Bradley–Terry ranking of an instance's N candidates from pairwise outcomes (choix).

Each comparison source (an IQA metric on two candidates, a person's vote) splits its weight
between ``wins[a, b]`` and ``wins[b, a]``. A metric gives the whole weight to a when a is better
by at least the metric's visibility scale, half to each when they are equal, and shares in
between linearly: a difference the metric's own scale calls invisible is close to a coin toss,
not a certain win. The
Bradley–Terry strengths (log-scale, centred on 0) come from choix's iterative Luce spectral
ranking on that weighted count matrix, with a small regularisation ``ALPHA`` so that a candidate
that wins every comparison still gets a finite strength. Equal candidates get equal strengths.
"""

from __future__ import annotations

from collections.abc import Mapping

import choix
import numpy as np

# Prior pseudo-comparisons between every two candidates (choix's ``alpha``): keeps strengths
# finite when one candidate wins everything, without changing their order.
ALPHA = 0.1


def comparison_matrix(
    values: Mapping[str, np.ndarray],
    lower_better: Mapping[str, bool],
    weights: Mapping[str, float],
    scales: Mapping[str, float],
) -> np.ndarray:
    """[N, N] weighted win counts of candidates by the metrics: ``wins[a, b]`` sums, over the
    metrics, ``weight * (0.5 + 0.5 * clip((a - b) / scale, -1, 1))`` with a and b the metric's
    values oriented so that higher is better. ``values`` maps a metric to its (N,) raw values;
    a metric with a non-finite value on this instance says nothing about it."""
    count = len(next(iter(values.values())))
    wins = np.zeros((count, count))
    for name, raw in values.items():
        oriented = np.asarray(raw, dtype=np.float64) * (-1.0 if lower_better[name] else 1.0)
        if not np.all(np.isfinite(oriented)):
            continue
        visible = np.clip((oriented[:, None] - oriented[None, :]) / scales[name], -1.0, 1.0)
        wins += weights[name] * (0.5 + 0.5 * visible)
    np.fill_diagonal(wins, 0.0)
    return wins


def bradley_terry(wins: np.ndarray) -> np.ndarray:
    """Bradley–Terry strengths (N,) from weighted win counts ``wins[a, b]`` (a beat b)."""
    wins = np.asarray(wins, dtype=np.float64)
    count = len(wins)
    if count < 2 or not np.any(wins):
        return np.zeros(count)
    strengths = choix.ilsr_pairwise_dense(wins, alpha=ALPHA)
    return strengths - strengths.mean()


def rank(strengths: np.ndarray) -> list[int]:
    """Candidate indices from strongest to weakest; equal strengths keep index order, so reruns agree."""
    rounded = np.round(np.asarray(strengths, dtype=np.float64), 9)
    return sorted(range(len(rounded)), key=lambda i: (-rounded[i], i))


def with_votes(strengths: np.ndarray, first: int, second: int, for_first: float, for_second: float) -> np.ndarray:
    """Strengths refit after people compared candidates ``first`` and ``second``.

    The IQA evidence enters as the win probabilities its strengths imply, one comparison's worth
    per two candidates (the metrics' weights sum to 1). ``for_first`` / ``for_second`` count
    people's votes (a tie as half each way); each vote weighs N comparisons, as much as all the
    IQA evidence about either candidate, so what people decided about the two candidates holds
    against the metrics' transitive evidence through the other candidates.
    """
    strengths = np.asarray(strengths, dtype=np.float64)
    wins = 1.0 / (1.0 + np.exp(strengths[None, :] - strengths[:, None]))
    np.fill_diagonal(wins, 0.0)
    wins[first, second] += len(strengths) * for_first
    wins[second, first] += len(strengths) * for_second
    return bradley_terry(wins)
