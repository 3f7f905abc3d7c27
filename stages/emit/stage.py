"""emit: the run's tables -> a Hugging Face dataset in ``<run_dir>/dataset/`` (Parquet, two configs,
a dataset card) and ``report.html``.

``process`` assembles each shard's dspo rows as the IQA labelled them (table ``dspo``);
``finalize`` merges people's judgements, splits by image, writes the Parquet shards of both
configs, the card and the report into a staging folder and swaps it in as ``dataset/`` (so a kill
or a full disk leaves the previous dataset whole), and optionally uploads to the Hub. It reads
the run shard by shard, and the tables with images only through column projections without
them, so its memory does not grow with the dataset.
"""

from __future__ import annotations

import heapq
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import OmegaConf

from common.extras import has_extra, missing_extra_text
from common.seeds import seed_for
from schemas import dataset
from schemas.dataset import (
    CONFIG_DSPO,
    CONFIG_PAIRS,
    CONFIG_PAIRS_INSTANCES,
    PAIRS_FEATURES,
    PAIRS_INSTANCES_FEATURES,
    dspo_features,
    pairs_label_conflicts,
)
from schemas.scores import metrics_dict
from stages.base import Batch, RunContext, Stage
from stages.emit.card import LICENSE_FILE, CardFacts, hub_metadata, license_text, render_card, validate_card
from stages.emit.files import (
    ShardWriter,
    card_data,
    check_split_fractions,
    split_of,
    split_of_folder,
    zero_share_remedy,
)
from stages.emit.judgements import MergeReport, decide_pairs
from stages.emit.report import (
    Plot,
    SamplePair,
    bar_chart,
    delta_histograms,
    heatmap,
    histogram,
    render_report,
    scatter,
)
from stages.emit.rows import (
    DROP_AWAITING_REVIEW,
    assemble_dspo_rows,
    dspo_row_with,
    instance_pair_rows,
    merge_instances,
    whole_image_pair_row,
)
from stages.failures import FailureReason, failure_reasons
from stages.pair_facts import (
    DROP_AGREEMENT,
    DROP_AREA,
    DROP_MARGIN,
    PAIR_INSTANCES,
    PAIR_STATS,
    UNITS,
    preference_facts,
)

log = logging.getLogger(__name__)

UPSTREAM_TABLES = ("hr", "lq", "candidates", "instances")
STAGE_OF_TABLE = {"hr": "ingest", "lq": "degrade", "candidates": "sample", "instances": "segment"}
DATASET_DIR = "dataset"
# Written here first, then swapped in as dataset/ when complete.
STAGING_DIR = "_state/emit/dataset-partial"
# Why the last emit published nothing (`pipeline status` prints it); removed by an emit that publishes.
EMPTY_STATE = "_state/emit/empty.json"
REPORT_POINTS = 20_000  # instances drawn (seeded) for the report's histograms and scatter
DROP_LABELS = {
    DROP_AREA: "area < pair.min_area",
    DROP_MARGIN: "margin < pair.min_margin",
    DROP_AGREEMENT: "agreement < pair.min_agreement",
}
PUBLISHED = "published"
PEOPLE_TIE = "people: tie (pairs_instances only)"


class EmptyDatasetError(RuntimeError):
    """Emit had nothing to publish; the message says why and what to do next."""

    exit_code = 3  # `pipeline run`: the run worked, its dataset is empty (2: bad input, 1: a bug)


class EmitStage(Stage):
    name = "emit"
    input_tables = ("lq", "candidates", "instances", "pairs")
    output_table = "dspo"  # schemas.dataset.SPEC: the dspo config's rows, as the IQA labelled them
    external_tables = ("judgements",)

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        check_split_fractions(dict(self.settings.splits))  # before any stage runs, not after emit's shards

    def process(self, batch: Batch) -> pa.Table:
        return dataset.SPEC.to_table(assemble_dspo_rows(batch))

    def finalize(self, run: RunContext) -> dict[str, Any]:
        settings = self.settings
        fractions = check_split_fractions(dict(settings.splits))
        run.delete_file(EMPTY_STATE)
        pairs, scores = run.read_table("pairs"), _ScoreSummary(run)
        merge = decide_pairs(
            pairs,
            run.read_table("judgements"),
            rule=settings.judgements.rule,
            min_agreement=float(settings.judgements.min_agreement),
            min_votes=int(settings.judgements.min_votes),
            cant_tell_as_tie=bool(settings.judgements.cant_tell_as_tie),
        )
        run.delete_dir(STAGING_DIR)  # what a killed emit left
        # split_by=folder: the split of the nearest split-named folder, else the hash's.
        assigned = {}
        if settings.split_by == "folder":
            sources = [
                (image_id, uri)
                for shard in run.iter_table("hr", ["image_id", "source_uri"])
                for image_id, uri in zip(shard.column("image_id").to_pylist(), shard.column("source_uri").to_pylist())
            ]
            assigned = {image_id: split for image_id, uri in sources if uri and (split := split_of_folder(uri))}
            if len(assigned) == len(sources):
                # Every file sits in a split folder: the shares decide nothing, so a split without
                # a folder is not missing (a held-out set has no train split).
                fractions = {}
        splits = [s for s in dataset.SPLITS if s in fractions or s in set(assigned.values())]
        writers = self._writers(run, splits)
        tally = _Tally(self.seed, int(settings.report_samples))
        self._write_rows(run.iter_table(dataset.SPEC.name), merge, fractions, assigned, writers, tally)
        pair_stats = _pair_stats(run)
        survey = _InstanceSurvey.of(run, self.seed)
        failures = failure_reasons(run, UPSTREAM_TABLES)
        facts = self._card_facts(run, scores, writers, tally, merge, pair_stats, failures)
        empty = _empty_reason(facts, failures, survey, tally, merge, self.cfg)
        facts.warnings = _warnings(facts, failures, tally, fractions)
        header = card_data(
            writers,
            pretty_name=facts.name,
            **hub_metadata(
                facts.sources,
                sum(facts.split_rows.get(CONFIG_DSPO, {}).values()),
                human_labels=bool(facts.instances.get("human")),
                configured_license=str(settings.license),
            ),
        )
        card = render_card(header, facts)
        validate_card(card)
        run.write_bytes(f"{STAGING_DIR}/README.md", card.encode())
        if header.to_dict().get("license_link") == LICENSE_FILE:
            run.write_bytes(f"{STAGING_DIR}/{LICENSE_FILE}", license_text(facts.sources).encode())
        report = self._report(facts, pairs, tally, survey, pair_stats)
        run.write_bytes(f"{STAGING_DIR}/report.html", report.encode())
        if empty is not None:
            message = f"{empty}; see {_where(run, STAGING_DIR + '/report.html')} (dataset/ was left as it was)"
            run.write_bytes(EMPTY_STATE, json.dumps({"reason": message}).encode())
            raise EmptyDatasetError(f"emit published no rows: {message}")
        run.replace_dir(STAGING_DIR, DATASET_DIR)
        if settings.push_to_hub:
            files = [path for splits in writers.values() for w in splits.values() for path in w.paths]
            _push_to_hub(run.local_path(DATASET_DIR), files, str(settings.push_to_hub), bool(settings.hub_private))
        return {
            "rows": {config: dict(counts) for config, counts in facts.split_rows.items()},
            "judgements": dict(facts.judgements),
            "dropped_images": tally.dropped_images,
            "empty_splits": _empty_splits(facts, fractions),
            "pairs_instances_conflicts": tally.crop_conflicts,
        }

    def _write_rows(
        self,
        shards: Iterable[pa.Table],
        merge: MergeReport,
        fractions: dict[str, float],
        assigned: dict[str, str],
        writers: dict[str, dict[str, ShardWriter]],
        tally: _Tally,
    ) -> None:
        """Each IQA-labelled dspo row -> people's decisions applied -> its split of every config
        (``assigned`` by image_id, else by the hash of ``fractions``)."""
        record_batches = (b for rows in shards for b in rows.to_batches(max_chunksize=max(1, self.batch_size)))
        for record_batch in record_batches:
            for row in record_batch.to_pylist():
                split = assigned.get(row["image_id"]) or split_of(row["image_id"], fractions)
                instances = merge_instances(row, merge.decisions, merge.undecided_notes, tally.drops)
                tally.drops[PEOPLE_TIE] += sum(item["tie"] for item in instances)
                dspo_row = dspo_row_with(row, instances)
                if dspo_row is None:
                    tally.dropped_images += 1
                else:
                    tally.count_dspo(dspo_row)
                    if CONFIG_PAIRS in writers:
                        pair = whole_image_pair_row(dspo_row, self.seed)
                        if pair is None:
                            tally.no_whole_image_preference += 1
                        else:
                            writers[CONFIG_PAIRS][split].add(pair)
                    if not self.settings.include_hr:
                        del dspo_row["hr"]
                    writers[CONFIG_DSPO][split].add(dspo_row)
                if CONFIG_PAIRS_INSTANCES in writers:
                    crops = instance_pair_rows(row, instances, self.seed)
                    for pair in crops:
                        writers[CONFIG_PAIRS_INSTANCES][split].add(pair)
                        tally.count_pair(pair)
                    tally.crop_conflicts += pairs_label_conflicts(crops)["contradicting"]
        for splits in writers.values():
            for writer in splits.values():
                writer.close()

    def _writers(self, run: RunContext, splits: list[str]) -> dict[str, dict[str, ShardWriter]]:
        settings = self.settings
        features = {CONFIG_DSPO: dspo_features(bool(settings.include_hr))}
        if settings.pairs:
            features[CONFIG_PAIRS] = PAIRS_FEATURES
            features[CONFIG_PAIRS_INSTANCES] = PAIRS_INSTANCES_FEATURES
        return {
            config: {
                split: ShardWriter(
                    run, STAGING_DIR, config, split, feats, int(settings.row_group_size), int(settings.max_shard_bytes)
                )
                for split in splits
            }
            for config, feats in features.items()
        }

    def _card_facts(
        self,
        run: RunContext,
        scores: _ScoreSummary,
        writers: dict[str, dict[str, ShardWriter]],
        tally: _Tally,
        merge: MergeReport,
        pair_stats: dict[str, Any],
        failures: dict[str, tuple[int, list[FailureReason]]],
    ) -> CardFacts:
        failed = {name: failures[name][0] if name in failures else 0 for name in UPSTREAM_TABLES}
        outcomes = Counter(d.outcome for d in merge.decisions.values())
        outcomes.update(undecided=merge.undecided, unknown_pair=merge.unknown_pairs)
        return CardFacts(
            name=f"srprefs DSPO preferences ({os.path.basename(str(self.cfg.run_dir).rstrip('/'))})",
            split_rows={c: {s: w.rows for s, w in splits.items()} for c, splits in writers.items()},
            instances=dict(tally.label_sources),
            pairs_labels=dict(tally.pair_labels),
            judgements=dict(outcomes),
            judgement_rule=_rule_text(self.settings.judgements),
            degradations=sorted(
                {
                    f"{d['preset']} x{d['scale']}"
                    for shard in run.iter_table("lq", ["degradation"])
                    for d in shard.column("degradation").to_pylist()
                    if d
                }
            ),
            backbones=sorted(tally.backbones),
            segmenters=sorted(
                {s for shard in run.iter_table("instances", ["segmenter"]) for s in shard.column("segmenter").to_pylist() if s}
            ),
            metrics=sorted(scores.metrics),
            score_modes=sorted(scores.modes),
            candidates_per_image=sorted(tally.candidates_per_image),
            failed=failed,
            sources={
                image_id: uri
                for shard in run.iter_table("hr", ["image_id", "source_uri"])
                for image_id, uri in zip(shard.column("image_id").to_pylist(), shard.column("source_uri").to_pylist())
            },
            dropped_images=tally.dropped_images,
            config_yaml=OmegaConf.to_yaml(self.cfg),
            preferences=preference_facts(pair_stats),
            warning=pair_stats.get("warning"),
            no_whole_image_preference=tally.no_whole_image_preference,
            crop_conflicts=tally.crop_conflicts,
        )

    def _report(
        self,
        facts: CardFacts,
        pairs: pa.Table,
        tally: _Tally,
        survey: _InstanceSurvey,
        pair_stats: dict[str, Any],
    ) -> str:
        warnings = list(facts.warnings)
        plots = []
        if has_extra("report"):  # matplotlib: the optional [report] extra
            plots = self._plots(facts, pairs, tally, survey, pair_stats)
        else:
            warnings.append(f"No plots: {missing_extra_text('report')}.")
        images = len(facts.sources)
        rows = "; ".join(
            f"{config}: " + (", ".join(f"{s} {n}" for s, n in splits.items()) or "none")
            for config, splits in facts.split_rows.items()
        )
        scored = (
            f"of {survey.scored} scored" if survey.available
            else f"(the pair stage left no {PAIR_INSTANCES}: the plots show the published pairs only)"
        )
        counts = f"{images} source images; rows {rows}; {sum(facts.instances.values())} instances published {scored}."
        details: dict[str, Any] = {
            "label sources (dspo instances)": _counts_text(facts.instances),
            "human judgements": _counts_text(facts.judgements),
            "failed items": _counts_text(facts.failed),
            "backbones": ", ".join(facts.backbones),
            "segmenters": ", ".join(facts.segmenters),
            "metrics": ", ".join(facts.metrics),
            **facts.preferences,
        }
        return render_report(facts.name, counts, warnings, plots, tally.top.samples(), details, UNITS)

    def _plots(
        self,
        facts: CardFacts,
        pairs: pa.Table,
        tally: _Tally,
        survey: _InstanceSurvey,
        pair_stats: dict[str, Any],
    ) -> list[Plot]:
        scales = {str(k): float(v) for k, v in self.cfg.pair.scales.items()}
        min_margin = float(self.cfg.pair.min_margin)
        drops = {PUBLISHED: sum(facts.instances.values())}
        drops.update({DROP_LABELS[r]: n for r, n in survey.reasons.items() if n})
        drops.update({reason: n for reason, n in tally.drops.items() if n})
        plots: list[Plot] = [
            delta_histograms(
                "delta-histograms", "Winner - loser per metric", survey.deltas, tally.kept.deltas, scales, UNITS,
                caption="Grey: every scored instance, its best against its worst candidate; blue: the published "
                "pairs; dashed: the metric's visibility scale (pair.scales). Positive = the winner is better "
                "(lower-is-better metrics such as gmsd are flipped).",
            ),
            bar_chart(
                "drops", "Scored instances by outcome", drops,
                caption="Published, or why not: the pair stage's thresholds, then people's decisions.",
            ),
            scatter(
                "margin-vs-area", "Margin vs instance area", survey.by_outcome(DROP_LABELS, PUBLISHED),
                "instance area / image area", "margin (1 = just visible)",
                threshold=min_margin if min_margin > 0 else None,
                caption="Each scored instance's calibrated margin (best vs worst candidate) against its share "
                "of the image, by outcome; dashed: pair.min_margin.",
            ),
            bar_chart(
                "label-sources", "Label sources",
                {
                    **{f"instances: {k}": v for k, v in sorted(facts.instances.items())},
                    **{f"judgements: {k}": v for k, v in facts.judgements.items() if v},
                },
                caption="Who labelled the published instances (IQA metrics or people), and people's judgements "
                "by outcome.",
            ),
            histogram(
                "margin-histogram", "Margin per pair", pairs.column("margin").to_pylist(), "margin (1 = just visible)",
                caption="Calibrated IQA margin of every pair the pair stage kept.",
            ),
        ]
        agreement = _metric_agreement(pair_stats)
        if agreement:
            plots.append(heatmap(
                "metric-agreement", "Metric agreement (Kendall tau)", agreement,
                caption="Kendall tau between two metrics' rankings of each instance's candidates, averaged over "
                "the instances (1 = same order, 0 = unrelated, -1 = reversed).",
            ))
        return plots


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def _rule_text(judgements: Any) -> str:
    if judgements.rule == "majority":
        return (
            f"majority, min_agreement {judgements.min_agreement}, min_votes {judgements.min_votes}"
        )
    if judgements.rule == "dawid_skene":
        return (
            f"dawid_skene (votes weighted by each annotator's estimated reliability), min posterior "
            f"{judgements.min_agreement}, min_votes {judgements.min_votes}"
        )
    return f"{judgements.rule}, min_votes {judgements.min_votes}"


class _ScoreSummary:
    """What the card needs of the scores table (one row per candidate and instance): the metric
    names and the score modes, read shard by shard (the table holds no images)."""

    def __init__(self, run: RunContext) -> None:
        self.metrics: set[str] = set()
        self.modes: set[str] = set()
        for shard in run.iter_table("scores"):
            self.metrics.update(n for m in shard.column("metrics").to_pylist() for n in metrics_dict(m))
            # Scores written before schema v2 have no mode column: composite was the only mode then.
            self.modes.update(shard.column("mode").to_pylist() if "mode" in shard.column_names else ["composite"])


class _Reservoir:
    """Keeps the ``size`` items with the smallest seeded hash of their key: a uniform,
    deterministic sample taken in one pass."""

    def __init__(self, size: int, seed: int, salt: str) -> None:
        self.size, self.seed, self.salt = size, seed, salt
        self._heap: list[tuple[int, str, Any]] = []  # max-heap by negated key

    def offer(self, key: str, item: Any) -> None:
        rank = seed_for(self.seed, self.salt, key)
        if len(self._heap) >= self.size and -self._heap[0][0] <= rank:
            return
        heapq.heappush(self._heap, (-rank, key, item))
        if len(self._heap) > self.size:
            heapq.heappop(self._heap)

    def items(self) -> list[Any]:
        return [entry[2] for entry in sorted(self._heap, key=lambda e: e[1])]


@dataclass
class _Points:
    """Per-instance numbers for the report's plots (a seeded sample of at most REPORT_POINTS)."""

    area_share: list[float] = field(default_factory=list)
    margin: list[float] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    deltas: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def of(cls, sample: Iterable[tuple[float, float, str, dict[str, float]]]) -> _Points:
        points = cls()
        for share, margin, outcome, deltas in sample:
            points.area_share.append(share)
            points.margin.append(margin)
            points.outcome.append(outcome)
            for name, value in deltas.items():
                points.deltas.setdefault(name, []).append(value)
        return points


class _TopPairs:
    """The ``size`` published instances with the largest share of their image (ties: pair_id)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._heap: list[tuple[float, str, SamplePair]] = []  # min-heap: the smallest kept share on top

    def offer(self, row: dict[str, Any], instances: list[dict[str, Any]]) -> None:
        if self.size <= 0:
            return
        for item in instances:
            key = (item["area_share"], item["pair_id"])
            if len(self._heap) >= self.size and key <= self._heap[0][:2]:
                continue
            sample = SamplePair(
                pair_id=item["pair_id"],
                image_id=row["image_id"],
                lq=row["lq"]["bytes"],
                hr=(row.get("hr") or {}).get("bytes"),
                winner=row["candidates"][item["win_index"]]["bytes"],
                loser=row["candidates"][item["lose_index"]]["bytes"],
                mask=item["masks"],
                margin=item["margin"],
                weight=item["weight"],
                area_share=item["area_share"],
                deltas=metrics_dict(item["deltas"]),
                label_source=item["label_source"],
                tie=item["tie"],
                description=item["description"],
            )
            heapq.heappush(self._heap, (*key, sample))
            if len(self._heap) > self.size:
                heapq.heappop(self._heap)

    def samples(self) -> list[SamplePair]:
        return [entry[2] for entry in sorted(self._heap, key=lambda e: (-e[0], e[1]))]


class _Tally:
    """Counts and samples gathered while writing, for the card and the report."""

    def __init__(self, seed: int, samples: int) -> None:
        self.label_sources: Counter[str] = Counter()
        self.pair_labels: Counter[str] = Counter()
        self.backbones: set[str] = set()
        self.candidates_per_image: set[int] = set()
        self.dropped_images = 0
        self.no_whole_image_preference = 0
        # pairs_instances rows whose crops coincide with another instance's (same box, same two
        # candidates) but whose labels differ: only the mask tells them apart.
        self.crop_conflicts = 0
        self.drops: Counter[str] = Counter()  # instances left out by people's decisions, by reason
        self.top = _TopPairs(samples)
        self._kept = _Reservoir(REPORT_POINTS, seed, "emit-report-kept")

    def count_dspo(self, row: dict[str, Any]) -> None:
        self.label_sources.update(row["label_source"])
        self.backbones.update(p["backbone"] for p in row["candidate_params"] if p.get("backbone"))
        self.candidates_per_image.add(len(row["candidates"]))
        for k, pair_id in enumerate(row["pair_id"]):
            self._kept.offer(pair_id, (row["area_share"][k], row["margin"][k], PUBLISHED, metrics_dict(row["deltas"][k])))
        self.top.offer(row, [{name: row[name][k] for name in dataset.INSTANCE_COLUMNS} | {"tie": False}
                             for k in range(len(row["pair_id"]))])

    def count_pair(self, pair: dict[str, Any]) -> None:
        names = {1.0: "jpg_0 preferred", 0.0: "jpg_1 preferred", 0.5: "tie"}
        self.pair_labels[names[pair["label_0"]]] += 1

    @property
    def kept(self) -> _Points:
        return _Points.of(self._kept.items())


@dataclass
class _InstanceSurvey:
    """Every scored instance as the pair stage judged it (its best against its worst candidate,
    ``stats/pair_instances.parquet``): counts by outcome, and a seeded sample for the plots."""

    available: bool  # False: the pair stage left no per-instance facts (a run made before them)
    scored: int
    reasons: Counter[str]  # pair-stage drop reason -> instances
    points: _Points

    @classmethod
    def of(cls, run: RunContext, seed: int) -> _InstanceSurvey:
        if not run.exists(PAIR_INSTANCES):
            return cls(False, 0, Counter(), _Points())
        sample = _Reservoir(REPORT_POINTS, seed, "emit-report-all")
        reasons: Counter[str] = Counter()
        scored = 0
        facts = pq.ParquetFile(io.BytesIO(run.read_bytes(PAIR_INSTANCES)))
        for batch in facts.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                scored += 1
                if row["reason"]:
                    reasons[row["reason"]] += 1
                if row["margin"] is None or row["area_share"] is None:
                    continue
                outcome = row["reason"] or PUBLISHED
                key = f"{row['image_id']}:{row['instance_index']}"
                sample.offer(key, (row["area_share"], row["margin"], outcome, metrics_dict(row["deltas"])))
        return cls(True, scored, reasons, _Points.of(sample.items()))

    @property
    def deltas(self) -> dict[str, list[float]]:
        return self.points.deltas

    def by_outcome(self, labels: dict[str, str], kept_label: str) -> dict[str, tuple[list[float], list[float]]]:
        """Scatter groups: label -> (area shares, margins), the kept instances first."""
        groups: dict[str, tuple[list[float], list[float]]] = {}
        order = [kept_label, *labels]
        for share, margin, outcome in sorted(
            zip(self.points.area_share, self.points.margin, self.points.outcome), key=lambda p: order.index(p[2])
        ):
            if share <= 0:
                continue
            xs, ys = groups.setdefault("kept by the pair stage" if outcome == kept_label else labels[outcome], ([], []))
            xs.append(share)
            ys.append(margin)
        return groups


def _empty_splits(facts: CardFacts, fractions: dict[str, float]) -> list[str]:
    dspo = facts.split_rows.get(CONFIG_DSPO, {})
    if not sum(dspo.values()):
        return []
    return [split for split in fractions if not dspo.get(split)]


def _top_failure(failures: dict[str, tuple[int, list[FailureReason]]], table: str) -> str:
    count, reasons = failures[table]
    top = reasons[0]
    return f"{count} failed at {STAGE_OF_TABLE[table]}, most often '{top.message}' ({top.count} x, e.g. {top.example})"


def _empty_reason(
    facts: CardFacts,
    failures: dict[str, tuple[int, list[FailureReason]]],
    survey: _InstanceSurvey,
    tally: _Tally,
    merge: MergeReport,
    cfg: Any,
) -> str | None:
    """Why no image has a published preference, and what to do next; None when some have."""
    if sum(facts.split_rows.get(CONFIG_DSPO, {}).values()):
        return None
    if not facts.sources:
        return "the input listed no source images; check input=..."
    if sum(count for count, _ in failures.values()) >= len(facts.sources):
        where = "; ".join(_top_failure(failures, table) for table in UPSTREAM_TABLES if table in failures)
        return f"every item failed ({where}); fix or remove those inputs and rerun (`pipeline status` lists the reasons)"
    pair = cfg.pair
    if survey.scored and sum(survey.reasons.values()) >= survey.scored:
        reasons = ", ".join(f"{n} {DROP_LABELS[r]}" for r, n in survey.reasons.most_common())
        return (
            f"no instance of the {survey.scored} scored gave a pair ({reasons}; pair.min_margin={pair.min_margin}, "
            f"pair.min_agreement={pair.min_agreement}, pair.min_area={pair.min_area}); the candidates barely differ: "
            "sample more varied candidates (sample.num_candidates, sample.steps, sample.guidance), lower "
            "pair.min_margin, or set pair.uncertain=review and label the pairs (`pipeline annotate`)"
        )
    awaiting = tally.drops.get(DROP_AWAITING_REVIEW, 0)
    if awaiting:
        return f"all {awaiting} pairs await people's review (pair.uncertain=review): label them with `pipeline annotate`"
    if tally.dropped_images or merge.decisions:
        return (
            f"people's judgements left no preference ({_counts_text(dict(tally.drops))}); "
            "check emit.judgements or label more pairs"
        )
    return "no image has a scored, paired instance; run the earlier stages (`pipeline status`)"


def _warnings(
    facts: CardFacts,
    failures: dict[str, tuple[int, list[FailureReason]]],
    tally: _Tally,
    fractions: dict[str, float],
) -> list[str]:
    """What a reader must know before using the dataset, most serious first."""
    out = []
    for split in _empty_splits(facts, fractions):
        out.append(f"split '{split}' has no rows (emit.splits.{split}={fractions[split]:g}): add source images"
                   f"{zero_share_remedy([split])}")
    if facts.warning:
        out.append(f"{facts.warning} (pair stage)")
    out += [_top_failure(failures, table) for table in UPSTREAM_TABLES if table in failures]
    awaiting = tally.drops.get(DROP_AWAITING_REVIEW, 0)
    if awaiting:
        out.append(f"{awaiting} pairs await people's review and are not published yet")
    if tally.crop_conflicts:
        out.append(
            f"{tally.crop_conflicts} pairs_instances crop pairs appear with opposite labels (instances sharing a "
            "crop box): a trainer of that config must use its mask; pairs has none"
        )
    if tally.no_whole_image_preference:
        out.append(f"{tally.no_whole_image_preference} images have no whole-image preference and are not in pairs")
    return out


def _where(run: RunContext, relpath: str) -> str:
    try:
        return run.local_path(relpath)
    except ValueError:  # a remote run dir
        return relpath


def _pair_stats(run: RunContext) -> dict[str, Any]:
    """The pair stage's statistics (stats/pair.json) when that file exists on a local run dir."""
    try:
        path = run.local_path(PAIR_STATS)
    except ValueError:  # a remote run dir: card and report go without them
        return {}
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _metric_agreement(pair_stats: dict[str, Any]) -> dict[str, dict[str, float]] | None:
    """The pair stage's metric agreement (``{"a|b": {"kendall_tau": t}}``) as a symmetric matrix."""
    taus = pair_stats.get("metric_agreement") or {}
    matrix: dict[str, dict[str, float]] = {}
    for key, value in taus.items():
        a, b = key.split("|", 1)
        for x, y in ((a, b), (b, a)):
            matrix.setdefault(x, {x: 1.0})[y] = float(value["kendall_tau"])
    for name in matrix:
        matrix[name][name] = 1.0
    return matrix or None


def _push_to_hub(folder: str, data_files: list[str], repo_id: str, private: bool) -> None:
    """Upload the card, the report and this emit's data files to the Hub, replacing the repo's
    earlier data files (needs a token and network; not exercised offline)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=folder,
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=["README.md", "report.html", *data_files],
        delete_patterns=["data/**"],
        commit_message="srprefs emit",
    )
    log.info("emit: uploaded %s to https://huggingface.co/datasets/%s", folder, repo_id)
