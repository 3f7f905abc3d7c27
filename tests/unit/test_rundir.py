import pyarrow as pa
import pytest

from pipeline.config import load_config
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
