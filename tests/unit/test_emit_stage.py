"""The emit stage on a synthetic run: judgements merged into the files, config switches, errors."""

from __future__ import annotations

import glob
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from common.extras import EXTRAS
from pipeline.rundir import RunDir
from schemas import dataset
from stages.emit.files import SplitConfigError
from stages.emit.rows import EmitInputError
from stages.emit.stage import EmitStage
from stages.pair_facts import PAIR_INSTANCES
from tests.emit_tables import build_run, emit_config, finalize_pairs, judgements_table, run_emit


def read_config(root: str, config: str) -> pa.Table:
    files = sorted(glob.glob(os.path.join(root, "dataset", "data", config, "*.parquet")))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


@pytest.fixture()
def synthetic(tmp_path):
    return build_run(str(tmp_path), n_images=4)


def test_judgements_from_the_run_reach_every_config(synthetic):
    pairs = synthetic.tables["pairs"].to_pylist()
    confirm, overturn, tie, bad = pairs[0], pairs[1], pairs[2], pairs[3]
    votes = [
        {"pair_id": confirm["pair_id"], "annotator": "a", "choice": "left",
         "left_was": confirm["win_candidate_id"], "description": "crisp edges"},
        {"pair_id": overturn["pair_id"], "annotator": "a", "choice": "right",
         "left_was": overturn["win_candidate_id"], "description": "less noise"},
        {"pair_id": tie["pair_id"], "annotator": "a", "choice": "tie", "left_was": tie["win_candidate_id"]},
        {"pair_id": bad["pair_id"], "annotator": "a", "choice": "both_bad", "left_was": bad["win_candidate_id"]},
    ]
    synthetic.run.write_shard("judgements", 0, judgements_table(votes))
    stats = run_emit(synthetic)
    assert stats["judgements"] == {"confirm": 1, "overturn": 1, "tie": 1, "both_bad": 1,
                                   "undecided": 0, "unknown_pair": 0}
    root = synthetic.run.root
    instances = {}
    for row in read_config(root, "dspo").to_pylist():
        for k, pid in enumerate(row["pair_id"]):
            instances[pid] = {name: row[name][k] for name in dataset.INSTANCE_COLUMNS}
    assert instances[confirm["pair_id"]]["label_source"] == "human"
    assert instances[confirm["pair_id"]]["win_index"] == confirm["win_index"]
    assert instances[confirm["pair_id"]]["description"] == "crisp edges"
    assert instances[overturn["pair_id"]]["win_index"] == overturn["lose_index"]
    assert instances[overturn["pair_id"]]["margin"] == pytest.approx(-overturn["margin"])
    assert tie["pair_id"] not in instances and bad["pair_id"] not in instances
    assert len(instances) == len(pairs) - 2
    pairs_rows = {r["pair_id"]: r for r in read_config(root, "pairs_instances").to_pylist()}
    assert pairs_rows[tie["pair_id"]]["label_0"] == 0.5
    assert bad["pair_id"] not in pairs_rows and len(pairs_rows) == len(pairs) - 1
    assert pairs_rows[overturn["pair_id"]]["caption"] == "less noise"
    card = open(os.path.join(root, "dataset", "README.md"), encoding="utf-8").read()
    assert "confirm 1, overturn 1, tie 1, both_bad 1" in card
    assert "human 2" in card
    assert "(score.mode): map (" in card


def test_descriptions_reach_the_dataset_with_the_candidate_they_describe(synthetic):
    """Five described pairs: decided, overturned, tied, undecided (1:1), can't tell. Every
    description is emitted on its instance, tagged winner/loser by the candidate it is about."""
    pairs = synthetic.tables["pairs"].to_pylist()
    confirm, overturn, tie, split, unsure = pairs[:5]

    def vote(pair, annotator, choice, described, text):
        return {"pair_id": pair["pair_id"], "annotator": annotator, "choice": choice,
                "left_was": pair["win_candidate_id"], "description": text,
                "described_candidate": pair[f"{described}_candidate_id"] if described else ""}

    votes = [
        vote(confirm, "a", "left", "win", "fine hair"),
        vote(overturn, "a", "right", "win", "plastic skin"),  # about the IQA winner, now the loser
        vote(tie, "a", "tie", "lose", "both soft, this one less"),
        vote(split, "a", "left", "win", "sharper"),
        vote(split, "b", "right", None, "hard to say"),
        vote(unsure, "a", "cant_tell", None, "no visible difference"),
    ]
    synthetic.run.write_shard("judgements", 0, judgements_table(votes))
    stats = run_emit(synthetic)
    assert stats["judgements"]["undecided"] == 1 and stats["judgements"]["cant_tell"] == 1
    root = synthetic.run.root
    dspo = {}
    for row in read_config(root, "dspo").to_pylist():
        for k, pid in enumerate(row["pair_id"]):
            dspo[pid] = {name: row[name][k] for name in dataset.INSTANCE_COLUMNS}
    captions = {r["pair_id"]: r for r in read_config(root, "pairs_instances").to_pylist()}
    assert dspo[confirm["pair_id"]]["description"] == "winner: fine hair"
    assert dspo[overturn["pair_id"]]["description"] == "loser: plastic skin"
    assert dspo[split["pair_id"]]["description"] == "winner: sharper\nhard to say"
    assert dspo[split["pair_id"]]["label_source"] == "iqa"  # undecided: the IQA label stays
    assert dspo[unsure["pair_id"]]["description"] == "no visible difference"
    assert dspo[unsure["pair_id"]]["label_source"] == "iqa"  # can't tell is no preference
    assert captions[tie["pair_id"]]["caption"] == "loser: both soft, this one less"
    assert captions[unsure["pair_id"]]["label_0"] in (0.0, 1.0)  # never 0.5 unless configured
    run_emit(synthetic, "emit.judgements.cant_tell_as_tie=true")
    captions = {r["pair_id"]: r for r in read_config(root, "pairs_instances").to_pylist()}
    assert captions[unsure["pair_id"]]["label_0"] == 0.5


def test_without_hr_without_pairs_with_a_test_split(tmp_path):
    synthetic = build_run(str(tmp_path), n_images=12)
    stats = run_emit(synthetic, "emit.include_hr=false", "emit.pairs=false",
                     "emit.splits.train=0.5", "emit.splits.validation=0.25", "emit.splits.test=0.25")
    assert list(stats["rows"]) == ["dspo"]
    assert set(stats["rows"]["dspo"]) == {"train", "validation", "test"}
    table = read_config(str(tmp_path), "dspo")
    assert "hr" not in table.column_names
    for config in ("pairs", "pairs_instances"):
        assert not os.path.exists(os.path.join(str(tmp_path), "dataset", "data", config))
    card = open(os.path.join(str(tmp_path), "dataset", "README.md"), encoding="utf-8").read()
    assert "config_name: pairs" not in card and "split: test" in card


def test_process_writes_validated_dspo_rows(synthetic):
    stage = EmitStage(emit_config(synthetic.run.root))
    batch = {name: synthetic.run.read_table(name) for name in EmitStage.input_tables}
    batch["lq"] = batch["lq"].filter(pa.compute.equal(batch["lq"].column("status"), "ok"))
    out = stage.process(batch)
    dataset.SPEC.validate(out)
    assert out.num_rows == 3  # four images, one failed at degrade
    assert out.schema.metadata[b"srprefs.table"] == b"dspo"


def test_process_rejects_pairs_that_point_at_the_wrong_candidate(synthetic):
    stage = EmitStage(emit_config(synthetic.run.root))
    batch = {name: synthetic.run.read_table(name) for name in EmitStage.input_tables}
    rows = batch["pairs"].to_pylist()
    rows[0]["win_index"] = rows[0]["lose_index"]
    batch["pairs"] = pa.Table.from_pylist(rows, schema=batch["pairs"].schema)
    with pytest.raises(EmitInputError, match=rf"image {rows[0]['image_id']} pair {rows[0]['pair_id']}: win_index"):
        stage.process(batch)


def test_bad_split_config_fails_before_writing(synthetic):
    with pytest.raises(SplitConfigError, match="sum to 1.1"):
        run_emit(synthetic, "emit.splits.validation=0.3")
    assert not RunDir(synthetic.run.root).exists("dataset/README.md")


def test_report_is_written_with_plots_and_samples(synthetic):
    run_emit(synthetic)
    page = open(os.path.join(synthetic.run.root, "dataset", "report.html"), encoding="utf-8").read()
    for key in ("delta-histograms", "drops", "margin-vs-area", "label-sources", "margin-histogram"):
        assert f'id="{key}"' in page
    assert 'id="metric-agreement"' not in page and "reward-histogram" not in page
    assert page.count('class="sample"') == 4  # emit.report_samples=4 in the test config
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    # The header comes before the plots; the run's details are folded away at the end.
    assert page.index('class="counts"') < page.index('class="plots"') < page.index("<details>")
    assert "lq 1" in page[page.index("<details>"):]  # the image that failed at degrade


def test_report_plots_the_pair_stages_metric_agreement(synthetic):
    synthetic.run.write_json("stats/pair.json", {"metric_agreement": {"niqe|psnr": {"kendall_tau": -0.2}}})
    run_emit(synthetic)
    page = open(os.path.join(synthetic.run.root, "dataset", "report.html"), encoding="utf-8").read()
    assert 'id="metric-agreement"' in page


def test_a_second_emit_lists_only_its_own_files(synthetic):
    root = synthetic.run.root
    run_emit(synthetic, "emit.max_shard_bytes=1", "emit.row_group_size=1")  # one file per row
    first = set(glob.glob(os.path.join(root, "dataset", "data", "*", "*.parquet")))
    run_emit(synthetic)
    card = DatasetCard.load(os.path.join(root, "dataset", "README.md"))
    listed = {path for config in card.data["configs"] for split in config["data_files"] for path in split["path"]}
    assert len(first) > len(listed) == len({p for p in listed if p.endswith("-00000.parquet")})
    assert all(os.path.exists(os.path.join(root, "dataset", p)) for p in listed)


def test_report_counts_every_scored_instance_from_the_pair_stage(synthetic):
    run_emit(synthetic)
    page = open(os.path.join(synthetic.run.root, "dataset", "report.html"), encoding="utf-8").read()
    assert "the pair stage left no stats/pair_instances.parquet" in page
    finalize_pairs(synthetic, "pair.min_margin=10")  # synthetic margins run from about 2 to 18
    facts = pq.read_table(os.path.join(synthetic.run.root, PAIR_INSTANCES)).to_pylist()
    scores = synthetic.tables["scores"]
    assert len(facts) == len(set(scores.column("instance_id").to_pylist()))  # every scored instance once
    stats = synthetic.run.read_json("stats/pair.json")
    assert sum(f["reason"] == "margin" for f in facts) == stats["dropped"]["margin"] > 0
    assert all(0 < f["area_share"] <= 1 for f in facts)
    run_emit(synthetic)
    page = open(os.path.join(synthetic.run.root, "dataset", "report.html"), encoding="utf-8").read()
    assert f"instances published of {len(facts)} scored." in page


def test_report_without_the_report_extra_names_the_install(synthetic, monkeypatch):
    # As if matplotlib were not installed: the report still has its samples, and says how to
    # get the plots.
    monkeypatch.setitem(EXTRAS, "report", (("srprefs_no_such_module",), "the plots in dataset/report.html"))
    run_emit(synthetic)
    page = open(os.path.join(synthetic.run.root, "dataset", "report.html"), encoding="utf-8").read()
    assert '<figure class="plot' not in page  # no plot rendered (the samples' crops stay)
    assert "pip install &#x27;srprefs[report]&#x27;" in page or "pip install 'srprefs[report]'" in page
    assert page.count('class="sample"') == 4


def test_split_by_folder_follows_the_nearest_split_folder_of_each_source(tmp_path):
    synthetic = build_run(str(tmp_path), n_images=5)
    folders = ["photos/test", "validation/crops", "train/validation", "no_split", "test"]  # the last one fails at degrade
    hr_table = synthetic.tables["hr"]
    uris = [f"file:///data/{folder}/img{n}.png" for n, folder in enumerate(folders)]
    synthetic.run.write_shard("hr", 0, hr_table.set_column(hr_table.schema.get_field_index("source_uri"), "source_uri", pa.array(uris)))
    stats = run_emit(synthetic, "emit.split_by=folder", "emit.splits.train=1.0", "emit.splits.validation=0")
    ids = hr_table.column("image_id").to_pylist()
    by_split = {
        split: {row["image_id"] for row in pq.read_table(path).to_pylist()}
        for path in glob.glob(os.path.join(str(tmp_path), "dataset", "data", "dspo", "*.parquet"))
        for split in [os.path.basename(path).split("-")[0]]
    }
    # img1's nearest split folder is none ('crops' is not one) -> 'validation' above it; img2's
    # nearest is 'validation'; img3 has none -> the hash of emit.splits (train only).
    assert by_split == {"test": {ids[0]}, "validation": {ids[1], ids[2]}, "train": {ids[3]}}
    assert stats["rows"]["dspo"] == {"train": 1, "validation": 2, "test": 1}
    # The pairs config follows the same split per image.
    pairs_splits = {os.path.basename(p).split("-")[0]
                    for p in glob.glob(os.path.join(str(tmp_path), "dataset", "data", "pairs", "*.parquet"))}
    assert pairs_splits == {"train", "validation", "test"}


def test_split_by_hash_ignores_folder_names(tmp_path):
    synthetic = build_run(str(tmp_path), n_images=3)
    hr_table = synthetic.tables["hr"]
    uris = [f"/data/test/img{n}.png" for n in range(3)]
    synthetic.run.write_shard("hr", 0, hr_table.set_column(hr_table.schema.get_field_index("source_uri"), "source_uri", pa.array(uris)))
    stats = run_emit(synthetic, "emit.splits.train=1.0", "emit.splits.validation=0")
    assert stats["rows"]["dspo"] == {"train": 2}


def test_split_by_folder_with_every_file_in_held_out_folders_makes_a_held_out_dataset(tmp_path):
    # An evaluation set: validation/ and test/ only. The shares (train 0.8 ...) decide nothing, so
    # no train split is asked for and the run is whole.
    synthetic = build_run(str(tmp_path), n_images=4)
    hr_table = synthetic.tables["hr"]
    uris = [f"/data/{split}/img{n}.png" for n, split in enumerate(["validation", "test", "test", "validation"])]
    synthetic.run.write_shard("hr", 0, hr_table.set_column(hr_table.schema.get_field_index("source_uri"), "source_uri", pa.array(uris)))
    stats = run_emit(synthetic, "emit.split_by=folder")
    assert set(stats["rows"]["dspo"]) == {"validation", "test"} and stats["empty_splits"] == []
