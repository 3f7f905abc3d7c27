import pyarrow as pa
import pytest
import yaml
from omegaconf import OmegaConf

from pipeline.config import load_config, settings_of
from pipeline.registry import (
    ORDER,
    PRIMARY_INPUT,
    PRODUCERS,
    STAGES,
    RegistryError,
    read_stage_info,
    stage_class,
)
from pipeline.rundir import RunDir
from pipeline.runner import NotReadyError, run_stages
from schemas import TABLES


def test_shards_round_trip_and_ignore_temporary_files(tmp_path):
    run = RunDir(str(tmp_path))
    table = pa.table({"image_id": ["a", "b"], "x": [1, 2]})
    run.write_shard("t", 3, table)
    (tmp_path / "tables" / "t" / "shard-00004.parquet.tmp-dead").write_bytes(b"half a shard")
    assert run.shards("t") == [3]
    assert run.read_shard("t", 3).equals(table)
    assert run.read_table("t").equals(table)


def test_markers_round_trip(tmp_path):
    run = RunDir(str(tmp_path))
    run.write_marker("ingest", 2, {"ok": 5})
    assert run.markers("ingest") == {2: {"ok": 5}}
    assert run.markers("degrade") == {}


def test_file_uri_run_dir(tmp_path):
    """run_dir may be any URI pyarrow's filesystems open; file:// is the offline-testable one."""
    uri = f"file://{tmp_path / 'run'}"
    cfg = load_config([f"run_dir={uri}", "input=demo", "ingest.demo_count=2", "progress=false"])
    run_stages(cfg, "ingest")
    run = RunDir(uri)
    assert not run.is_local or run.root == str(tmp_path / "run")
    assert run.read_table("hr").num_rows == 2
    assert (tmp_path / "run" / "tables" / "hr" / "shard-00000.parquet").is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_stage_refuses_to_run_before_its_input_exists(tmp_path):
    cfg = load_config([f"run_dir={tmp_path}", "progress=false"])
    with pytest.raises(NotReadyError, match="reads table 'hr', which stage 'ingest' has not finished"):
        run_stages(cfg, "degrade")


def test_registry_reads_each_stage_contract_as_the_class_declares_it():
    for name in ORDER:
        cls = stage_class(name)
        assert (cls.name, cls.input_tables, cls.output_table) == (
            name, STAGES[name].input_tables, STAGES[name].output_table
        )
        assert cls.input_tables[0] == PRIMARY_INPUT[name]
        assert cls.output_table in TABLES
    assert PRODUCERS == {"hr": "ingest", "lq": "degrade", "candidates": "sample", "instances": "segment",
                         "scores": "score", "pairs": "pair", "dspo": "emit"}


def test_registry_refuses_a_contract_it_cannot_read(tmp_path, monkeypatch):
    (tmp_path / "computed_stage.py").write_text(
        "class Computed:\n    name = 'x'\n    input_tables = ('a',)\n    output_table = 'b'.upper()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError, match="computed_stage:Computed: 'output_table' must be a literal"):
        read_stage_info("computed_stage:Computed")
    with pytest.raises(RegistryError, match="no class Missing"):
        read_stage_info("computed_stage:Missing")


def test_a_source_listing_cut_short_is_made_again_and_may_change_input(tmp_path):
    """Only _state/sources.json makes a listing count: a kill before it leaves nothing fixed."""
    cfg = load_config([f"run_dir={tmp_path}", "input=/photos/a", "progress=false"])
    run = RunDir(str(tmp_path))
    run.write_bytes("config.yaml", OmegaConf.to_yaml(settings_of(cfg)).encode())  # frozen by the killed run
    stray = pa.table({"image_id": ["f" * 16], "source_uri": ["/photos/a/1.png"], "data": pa.array([None], pa.binary())})
    run.write_shard("sources", 3, stray)  # its listing, cut short
    cfg = load_config([f"run_dir={tmp_path}", "input=demo", "ingest.demo_count=2", "progress=false"])
    run_stages(cfg, "ingest")
    assert run.shards("sources") == [0]
    assert run.read_json("_state/sources.json")["input"] == "demo"
    assert run.read_table("hr").num_rows == 2
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["input"] == "demo"


def test_temporary_files_of_a_killed_run_are_removed_by_the_next(tmp_path):
    left = [tmp_path / "tables" / "hr" / "shard-00007.parquet.tmp-1a2b3c4d", tmp_path / "_state" / "x.json.tmp-dead"]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    run_stages(load_config([f"run_dir={tmp_path}", "input=demo", "ingest.demo_count=1", "progress=false"]), "ingest")
    assert not any(path.exists() for path in left)
    assert not list(tmp_path.rglob("*.tmp-*"))


class _FullDisk:
    """A filesystem whose writes fail as on a full disk (everything else passes through)."""

    def __init__(self, fs):
        self.fs = fs

    def __getattr__(self, name):
        return getattr(self.fs, name)

    def open_output_stream(self, path):
        stream = self.fs.open_output_stream(path)

        class Failing:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                stream.close()

            def write(self, data):
                raise OSError(28, "No space left on device")

        return Failing()


def test_a_full_disk_names_the_file_and_leaves_no_half_of_it(tmp_path):
    run = RunDir(str(tmp_path))
    run.fs = _FullDisk(run.fs)
    with pytest.raises(OSError, match=rf"could not write {tmp_path}/tables/hr/shard-00000.parquet \(\d+ bytes\): "
                                      r"\[Errno 28\] No space left on device"):
        run.write_shard("hr", 0, pa.table({"image_id": ["a"]}))
    assert not list(tmp_path.rglob("*.tmp-*")) and not (tmp_path / "tables" / "hr" / "shard-00000.parquet").exists()


def test_status_of_a_missing_run_dir_is_an_error(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["status", f"run_dir={tmp_path / 'typo'}"]) == 2
    assert f"error: run_dir {tmp_path / 'typo'} does not exist" in capsys.readouterr().err
