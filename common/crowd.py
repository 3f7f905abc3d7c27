"""People's votes weighted by reliability: Dawid–Skene (crowd-kit) over (item, annotator, label).

Dawid–Skene estimates, by EM, each annotator's confusion matrix (how often they give label j
when the truth is i) and each item's posterior over the labels, so an annotator who is often
wrong, or who answers at random or against the others, counts for less than the majority rule
would give them. Items with a known answer (gold) pin their truth during EM (crowd-kit's
``true_labels``), which anchors the confusion matrices. An annotator's *reliability* is the
probability that their label is the true one, averaged over the estimated label priors.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from crowdkit.aggregation import DawidSkene

# EM iterations; the demo's few hundred votes converge in well under 100.
ITERATIONS = 100


@dataclass(frozen=True)
class CrowdEstimate:
    labels: dict[str, str]  # item -> most probable label
    confidence: dict[str, float]  # item -> posterior probability of that label
    reliability: dict[str, float]  # annotator -> P(their label is the true one)


def dawid_skene(votes: Sequence[tuple[str, str, str]], gold: Mapping[str, str] | None = None) -> CrowdEstimate:
    """Dawid–Skene over ``votes`` (item, annotator, label); ``gold``: item -> known label."""
    if not votes:
        return CrowdEstimate({}, {}, {})
    data = pd.DataFrame(votes, columns=["task", "worker", "label"])
    known = {item: label for item, label in (gold or {}).items() if item in set(data["task"])}
    with warnings.catch_warnings():
        # crowd-kit 1.4 uses pandas keywords (copy=, inplace=) that pandas 3 deprecates; its
        # results are unaffected, and hundreds of warnings per fit would bury real ones.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="crowdkit")
        warnings.filterwarnings("ignore", message=".*(copy|inplace) keyword.*")
        model = DawidSkene(n_iter=ITERATIONS).fit(data, true_labels=pd.Series(known, dtype=object) if known else None)
    probas = model.probas_
    labels = probas.idxmax(axis=1)
    priors = model.priors_
    reliability = {}
    for worker, errors in model.errors_.groupby(level="worker"):
        matrix = errors.droplevel("worker")
        reliability[str(worker)] = float(
            sum(priors[truth] * (matrix.loc[truth, truth] if truth in matrix.index else 0.0) for truth in priors.index)
        )
    return CrowdEstimate(
        labels={str(item): str(label) for item, label in labels.items()},
        confidence={str(item): float(probas.loc[item, label]) for item, label in labels.items()},
        reliability=reliability,
    )
