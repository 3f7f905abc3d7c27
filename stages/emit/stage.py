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
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from omegaconf import OmegaConf

from common.extras import has_extra, missing_extra_text
from common.seeds import seed_for
from schemas import dataset
from schemas.dataset import CONFIG_DSPO, CONFIG_PAIRS, PAIRS_FEATURES, dspo_features
from schemas.scores import metrics_dict
from schemas.table import STATUS_FAILED
from stages.base import Batch, RunContext, Stage
from stages.emit.card import CardFacts, render_card
from stages.emit.files import ShardWriter, card_data, check_split_fractions, split_of, split_of_folder
from stages.emit.judgements import MergeReport, decide_pairs
from stages.emit.report import SamplePair, bar_chart, heatmap, histogram, render_report
from stages.emit.rows import assemble_dspo_rows, dspo_row_with, merge_instances, pairs_rows
from stages.pair_facts import PAIR_STATS, preference_facts

log = logging.getLogger(__name__)

UPSTREAM_TABLES = ("hr", "lq", "candidates", "instances")
DATASET_DIR = "dataset"
# Written here first, then swapped in as dataset/ when complete.
STAGING_DIR = "_state/emit/dataset-partial"


class EmitStage(Stage):
    name = "emit"
    input_tables = ("lq", "candidates", "instances", "pairs")
    output_table = "dspo"  # schemas.dataset.SPEC: the dspo config's rows, as the IQA labelled them
    external_tables = ("judgements",)

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        check_split_fractions(dict(self.settings.splits))  # before any stage runs, not after emit's shards

    def process(self, batch: Batch) -> pa.Table:
        rows = assemble_dspo_rows(batch, include_hr=bool(self.settings.include_hr))
        return dataset.SPEC.to_table(rows)

    def finalize(self, run: RunContext) -> dict[str, Any]:
        settings = self.settings
        fractions = check_split_fractions(dict(settings.splits))
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
        sources = {
            image_id: uri
            for shard in run.iter_table("hr", ["image_id", "source_uri"])
            for image_id, uri in zip(shard.column("image_id").to_pylist(), shard.column("source_uri").to_pylist())
        }
        # split_by=folder: the split of the nearest split-named folder, else the hash's.
        assigned = {}
        if settings.split_by == "folder":
            assigned = {i: split for i, uri in sources.items() if uri and (split := split_of_folder(uri))}
        splits = [s for s in dataset.SPLITS if s in fractions or s in set(assigned.values())]
        writers = self._writers(run, splits)
        tally = _Tally()
        samples = _SampleReservoir(int(settings.report_samples), self.seed)
        self._write_rows(run.iter_table(dataset.SPEC.name), merge, fractions, assigned, writers, tally, samples)
        pair_stats = _pair_stats(run)
        facts = self._card_facts(run, scores, writers, tally, merge, pair_stats, sources)
        header = card_data(writers, license=str(settings.license), pretty_name=facts.name)
        run.write_bytes(f"{STAGING_DIR}/README.md", render_card(header, facts).encode())
        report = self._report(facts, pairs, scores, tally, samples, pair_stats)
        run.write_bytes(f"{STAGING_DIR}/report.html", report.encode())
        run.replace_dir(STAGING_DIR, DATASET_DIR)
        if settings.push_to_hub:
            files = [path for splits in writers.values() for w in splits.values() for path in w.paths]
            _push_to_hub(run.local_path(DATASET_DIR), files, str(settings.push_to_hub), bool(settings.hub_private))
        return {
            "rows": {config: dict(counts) for config, counts in facts.split_rows.items()},
            "judgements": dict(facts.judgements),
            "dropped_images": tally.dropped_images,
        }

    def _write_rows(
        self,
        shards: Iterable[pa.Table],
        merge: MergeReport,
        fractions: dict[str, float],
        assigned: dict[str, str],
        writers: dict[str, dict[str, ShardWriter]],
        tally: _Tally,
        samples: _SampleReservoir,
    ) -> None:
        """Each IQA-labelled dspo row -> people's decisions applied -> its split of both configs
        (``assigned`` by image_id, else by the hash of ``fractions``)."""
        record_batches = (b for rows in shards for b in rows.to_batches(max_chunksize=max(1, self.batch_size)))
        for record_batch in record_batches:
            for row in record_batch.to_pylist():
                split = assigned.get(row["image_id"]) or split_of(row["image_id"], fractions)
                instances = merge_instances(row, merge.decisions, merge.undecided_notes)
                dspo_row = dspo_row_with(row, instances)
                if dspo_row is None:
                    tally.dropped_images += 1
                else:
                    if not self.settings.include_hr:
                        del dspo_row["hr"]
                    writers[CONFIG_DSPO][split].add(dspo_row)
                    tally.count_dspo(dspo_row)
                if CONFIG_PAIRS in writers:
                    for pair in pairs_rows(row, instances, self.seed):
                        writers[CONFIG_PAIRS][split].add(pair)
                        tally.count_pair(pair)
                samples.offer(row, instances)
        for splits in writers.values():
            for writer in splits.values():
                writer.close()

    def _writers(self, run: RunContext, splits: list[str]) -> dict[str, dict[str, ShardWriter]]:
        settings = self.settings
        features = {CONFIG_DSPO: dspo_features(bool(settings.include_hr))}
        if settings.pairs:
            features[CONFIG_PAIRS] = PAIRS_FEATURES
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
        sources: dict[str, str],
    ) -> CardFacts:
        failed = {name: _failed_rows(run, name) for name in UPSTREAM_TABLES}
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
            sources=sources,
            dropped_images=tally.dropped_images,
            config_yaml=OmegaConf.to_yaml(self.cfg),
            preferences=preference_facts(pair_stats),
            warning=pair_stats.get("warning"),
        )

    def _report(
        self,
        facts: CardFacts,
        pairs: pa.Table,
        scores: _ScoreSummary,
        tally: _Tally,
        samples: _SampleReservoir,
        pair_stats: dict[str, Any],
    ) -> str:
        rewards = scores.rewards
        margins = pairs.column("margin").to_pylist()
        agreement = _metric_agreement(pair_stats)
        notes = [f"Warning: {facts.warning}."] if facts.warning else []
        plots = []
        if not has_extra("report"):
            notes.append(f"No plots: {missing_extra_text('report')}.")
        else:
            plots = [
                histogram("reward-histogram", "IQA reward per (candidate, instance)", rewards, "reward"),
                histogram(
                    "margin-histogram", "Calibrated IQA margin per pair", margins, "margin (1 = just visible)"
                ),
                bar_chart(
                    "pairs-per-image",
                    "Instances (pairs) per image in dspo",
                    Counter(sorted(tally.pairs_per_image)),
                    "pairs in the image",
                ),
            ]
            if agreement:
                plots.append(heatmap("metric-agreement", "Metric agreement (from the pair stage)", agreement))
        if not agreement:
            notes.append("No metric agreement: the pair stage wrote no stats/pair.json with an agreement matrix.")
        summary: dict[str, Any] = {
            f"{config} rows": ", ".join(f"{s} {n}" for s, n in splits.items())
            for config, splits in facts.split_rows.items()
        }
        summary.update(
            {
                "label sources (dspo instances)": _counts_text(facts.instances),
                "human judgements": _counts_text(facts.judgements),
                "failed items": _counts_text(facts.failed),
                "backbones": ", ".join(facts.backbones),
                "segmenters": ", ".join(facts.segmenters),
                "metrics": ", ".join(facts.metrics),
                **facts.preferences,
            }
        )
        return render_report(facts.name, summary, plots, samples.samples(), notes)


def _failed_rows(run: RunContext, name: str) -> int:
    """Rows of a table with status failed, read shard by shard from the status column alone."""
    return sum(
        int(pc.sum(pc.equal(shard.column("status"), STATUS_FAILED)).as_py() or 0)
        for shard in run.iter_table(name, ["status"])
    )


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
    """What the card and the report need of the scores table (one row per candidate and
    instance): the metric names, the score modes and every reward, read shard by shard (the
    table holds no images)."""

    def __init__(self, run: RunContext) -> None:
        self.metrics: set[str] = set()
        self.modes: set[str] = set()
        self.rewards: list[float] = []
        for shard in run.iter_table("scores"):
            self.metrics.update(n for m in shard.column("metrics").to_pylist() for n in metrics_dict(m))
            self.rewards.extend(shard.column("reward").to_pylist())
            # Scores written before schema v2 have no mode column: composite was the only mode then.
            self.modes.update(shard.column("mode").to_pylist() if "mode" in shard.column_names else ["composite"])


class _Tally:
    """Counts gathered while writing, for the card and the report."""

    def __init__(self) -> None:
        self.label_sources: Counter[str] = Counter()
        self.pair_labels: Counter[str] = Counter()
        self.backbones: set[str] = set()
        self.candidates_per_image: set[int] = set()
        self.pairs_per_image: list[int] = []
        self.dropped_images = 0

    def count_dspo(self, row: dict[str, Any]) -> None:
        self.label_sources.update(row["label_source"])
        self.backbones.update(p["backbone"] for p in row["candidate_params"] if p.get("backbone"))
        self.candidates_per_image.add(len(row["candidates"]))
        self.pairs_per_image.append(len(row["masks"]))

    def count_pair(self, pair: dict[str, Any]) -> None:
        names = {1.0: "jpg_0 preferred", 0.0: "jpg_1 preferred", 0.5: "tie"}
        self.pair_labels[names[pair["label_0"]]] += 1


class _SampleReservoir:
    """Keeps the ``size`` pairs with the smallest seeded hash of pair_id: a uniform, deterministic
    sample taken in one pass without holding every image."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self._heap: list[tuple[int, str, SamplePair]] = []  # max-heap by negated key

    def offer(self, row: dict[str, Any], instances: list[dict[str, Any]]) -> None:
        if not instances or self.size <= 0:
            return
        total = float(sum(i["area"] for i in instances))
        for item in instances:
            key = seed_for(self.seed, "emit-report", item["pair_id"])
            if len(self._heap) >= self.size and -self._heap[0][0] <= key:
                continue
            sample = SamplePair(
                pair_id=item["pair_id"],
                image_id=row["image_id"],
                lq=row["lq"]["bytes"],
                winner=row["candidates"][item["win_index"]]["bytes"],
                loser=row["candidates"][item["lose_index"]]["bytes"],
                mask=item["masks"],
                margin=item["margin"],
                weight=item["area"] / total,
                label_source=item["label_source"],
                tie=item["tie"],
                description=item["description"],
            )
            heapq.heappush(self._heap, (-key, item["pair_id"], sample))
            if len(self._heap) > self.size:
                heapq.heappop(self._heap)

    def samples(self) -> list[SamplePair]:
        return [entry[2] for entry in sorted(self._heap, key=lambda e: (e[2].image_id, e[2].pair_id))]


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
