"""The local and Ray executors drive the same Stage objects and write identical tables."""

import pytest

from pipeline.config import load_config
from pipeline.rundir import RunDir
from pipeline.runner import run_stages


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(address="local", _node_ip_address="127.0.0.2", num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_local_and_ray_write_identical_tables(tmp_path, local_ray):
    common = ["input=demo", "ingest.demo_count=6", "ingest.shard_size=2", "progress=false"]
    local = load_config([*common, f"run_dir={tmp_path / 'local'}", "executor=local"])
    on_ray = load_config([*common, f"run_dir={tmp_path / 'ray'}", "executor=ray"])
    run_stages(local, "ingest")
    run_stages(on_ray, "ingest")
    local_run, ray_run = RunDir(local.run_dir), RunDir(on_ray.run_dir)
    assert local_run.shards("hr") == ray_run.shards("hr") == [0, 1, 2]
    for shard in (0, 1, 2):
        assert local_run.read_shard("hr", shard).equals(ray_run.read_shard("hr", shard))
    markers = ray_run.markers("ingest")
    assert {m["node_ip"] for m in markers.values()} == {"127.0.0.2"}


def test_ray_retries_a_shard_whose_worker_died(tmp_path, local_ray):
    from pipeline.executors import ray as ray_executor
    from pipeline.runner import ensure_sources
    from tests.integration.flaky_stage import DyingOnceIngest

    cfg = load_config(["input=demo", "ingest.demo_count=4", "ingest.shard_size=2", "progress=false",
                       f"run_dir={tmp_path / 'run'}", "executor=ray"])
    run = RunDir(cfg.run_dir)
    stage = DyingOnceIngest(cfg)
    ensure_sources(stage, cfg, run)
    ray_executor.execute(stage, cfg, run, [0, 1], 4)
    assert len(list((tmp_path / "run" / "flags").iterdir())) == 2  # each shard's first worker died
    table = run.read_table("hr")
    assert table.num_rows == 4 and set(table.column("status").to_pylist()) == {"ok"}


def test_ray_fails_a_buggy_shard_without_retrying_it(tmp_path, local_ray):
    from pipeline.errors import ShardFailedError
    from pipeline.executors import ray as ray_executor
    from pipeline.runner import ensure_sources
    from tests.integration.flaky_stage import BuggyIngest

    cfg = load_config(["input=demo", "ingest.demo_count=4", "ingest.shard_size=2", "progress=false",
                       f"run_dir={tmp_path / 'run'}", "executor=ray"])
    run = RunDir(cfg.run_dir)
    stage = BuggyIngest(cfg)
    ensure_sources(stage, cfg, run)
    with pytest.raises(ShardFailedError, match=r"stage ingest: 2 shard\(s\) failed") as failed:
        ray_executor.execute(stage, cfg, run, [0, 1], 4)
    assert "AttributeError: 'BuggyIngest' object has no attribute 'no_such_attribute'" in str(failed.value)
    assert len(list((tmp_path / "run" / "calls").iterdir())) == 2  # one call per shard: no retry
    assert run.markers("ingest") == {} and run.shards("hr") == []
    assert (tmp_path / "run" / "logs" / "ingest" / "shard-00001.log").is_file()
