"""The DSPO instance weight: the one rule the pair stage and the emitted dataset both use."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def instance_weights(instance_index: Sequence[int], areas: Sequence[int]) -> list[float]:
    """Per pair: w_m = area_m / sum of the kept instances' areas (the DSPO instance weight),
    shared equally by the instance's pairs (pair.top_k > 1 gives several), summing to 1.

    ``instance_index`` and ``areas`` are parallel, one item per pair."""
    area_of = dict(zip(instance_index, areas))
    pairs_of = Counter(instance_index)
    total = float(sum(area_of.values()))
    return [area_of[i] / total / pairs_of[i] for i in instance_index]
