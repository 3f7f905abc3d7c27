"""The pair stage's statistics file and what it says in real units: light (no torch, no metrics),
so `pipeline status`, the dataset card and the report can read it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

PAIR_STATS = "stats/pair.json"  # where the pair stage's finalize writes its statistics, in the run directory
# One row per scored instance (``INSTANCE_FACTS_SCHEMA``): its best against its worst candidate and
# why it gave no pair, for the report's plots (written by the pair stage's finalize).
PAIR_INSTANCES = "stats/pair_instances.parquet"
INSTANCE_FACTS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("instance_index", pa.int32()),
        ("area_share", pa.float64()),  # instance area / image pixels
        ("margin", pa.float64()),  # best vs worst candidate; null when it was never compared
        ("deltas", pa.struct([("name", pa.list_(pa.string())), ("value", pa.list_(pa.float64()))])),
        ("reason", pa.string()),  # why no pair was kept (DROP_*); null when one was
    ]
)
# Why an instance gave no pair, in the order the pair stage checks.
DROP_AREA, DROP_MARGIN, DROP_AGREEMENT = "area", "margin", "agreement"
# Units of the per-metric differences, for people reading the card and the report.
UNITS = {"psnr": " dB"}


def preference_facts(stats: Mapping[str, Any]) -> dict[str, str]:
    """How strong the preferences are, in real units, from the pair stage's statistics
    (stats/pair.json): label -> text, for the card and the report."""
    facts: dict[str, str] = {}
    extremes, kept = stats.get("best_vs_worst") or {}, stats.get("kept") or {}
    for label, summary in (("kept pairs", kept), ("best vs worst candidate of every instance", extremes)):
        if summary.get("margin"):
            facts[f"{label}: calibrated margin (1 = just visible)"] = _spread(summary["margin"], "")
        for name, spread in sorted((summary.get("deltas") or {}).items()):
            if spread:
                facts[f"{label}: {name} difference (winner - loser)"] = _spread(spread, UNITS.get(name, ""))
    if kept.get("agreement"):
        facts["kept pairs: share of metrics preferring the winner"] = _spread(kept["agreement"], "")
    if extremes.get("instances"):
        facts["instances whose candidates are indistinguishable (best vs worst below visibility)"] = (
            f"{extremes['indistinguishable']:.0%} of {extremes['instances']}"
        )
    if "pairs" in stats:
        facts["pairs kept (confident / for review)"] = (
            f"{stats['pairs']} ({stats.get('confident', 0)} / {stats['pairs'] - stats.get('confident', 0)}); "
            f"instances dropped: " + ", ".join(f"{k} {v}" for k, v in (stats.get("dropped") or {}).items())
        )
    if stats.get("scales"):
        facts["visibility scales (pair.scales)"] = ", ".join(
            f"{n} {v:g}{UNITS.get(n, '')}" for n, v in sorted(stats["scales"].items())
        )
    return facts


def _spread(summary: Mapping[str, float], unit: str) -> str:
    return f"median {summary['median']:.4g}{unit} (10th-90th percentile {summary['p10']:.4g} to {summary['p90']:.4g})"
