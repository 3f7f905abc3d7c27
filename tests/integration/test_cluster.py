"""Multi-node Ray: shards spread over two nodes, a killed node does not lose or duplicate rows,
and GPU workers land on the node that declares a GPU."""

import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from pipeline.rundir import RunDir
from tests.integration.ray_cluster import HEAD_IP, WORKER_IP, make_cluster

pytestmark = pytest.mark.slow
IMAGES = 40


@pytest.fixture
def cluster(tmp_path):
    cluster = make_cluster(tmp_path)
    cluster.start_head(cpus=1)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    for i in range(IMAGES):
        Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(
            folder / f"{i:03d}.png", compress_level=1)
    return folder


def pipeline_run(cluster, *args, **kw):
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "executor=ray", "progress=false", *args]
    env = dict(cluster.env, RAY_ADDRESS=cluster.address)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def rows_by_uri(run_dir):
    table = RunDir(str(run_dir)).read_table("hr")
    return table.column("source_uri").to_pylist()


def test_two_nodes_share_the_shards(cluster, images, tmp_path):
    cluster.add_worker(cpus=1)
    run_dir = tmp_path / "run"
    proc = pipeline_run(cluster, "stage=ingest", f"input={images}", f"run_dir={run_dir}",
                        "ingest.shard_size=2")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    nodes = {m["node_ip"] for m in RunDir(str(run_dir)).markers("ingest").values()}
    assert nodes == {HEAD_IP, WORKER_IP}
    uris = rows_by_uri(run_dir)
    assert len(uris) == len(set(uris)) == IMAGES


def test_killing_a_node_mid_run_loses_and_duplicates_nothing(cluster, images, tmp_path):
    cluster.add_worker(cpus=1)
    run_dir = tmp_path / "run"
    args = ("stage=ingest", f"input={images}", f"run_dir={run_dir}", "ingest.shard_size=1")
    proc = pipeline_run(cluster, *args)
    state = run_dir / "_state" / "ingest"
    run = RunDir(str(run_dir))
    deadline = time.time() + 300
    while time.time() < deadline:
        if state.exists() and any(m.get("node_ip") == WORKER_IP for m in run.markers("ingest").values()):
            break
        time.sleep(0.05)
    assert cluster.kill_node(WORKER_IP) > 0
    out, _ = proc.communicate(timeout=600)
    if proc.returncode != 0:  # the run may give up; a rerun must then finish the work
        rerun = pipeline_run(cluster, *args)
        out, _ = rerun.communicate(timeout=600)
        assert rerun.returncode == 0, out
    assert len(run.markers("ingest")) == IMAGES
    uris = rows_by_uri(run_dir)
    assert len(uris) == len(set(uris)) == IMAGES


def test_gpu_workers_go_to_the_gpu_node(cluster, tmp_path):
    # Ray lets a CPU machine declare a GPU; the stage's workers must be scheduled there.
    cluster.add_worker(cpus=1, gpus=1)
    run_dir = tmp_path / "run"
    proc = pipeline_run(cluster, "stage=ingest", "input=demo", "ingest.demo_count=4", f"run_dir={run_dir}",
                        "ingest.shard_size=1", "resources.ingest.gpus=1")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    nodes = {m["node_ip"] for m in RunDir(str(run_dir)).markers("ingest").values()}
    assert nodes == {WORKER_IP}


def test_sample_workers_use_the_gpu_node_and_fall_back_or_refuse_without_cuda(cluster, tmp_path):
    cluster.add_worker(cpus=1, gpus=1)
    run_dir = tmp_path / "run"
    small = ("input=demo", "ingest.demo_count=2", f"run_dir={run_dir}", "sample.num_candidates=2",
             "sample.device=cuda")
    for stage in ("ingest", "degrade"):
        subprocess.run([sys.executable, "-m", "pipeline.cli", "run", f"stage={stage}", "executor=local",
                        "progress=false", *small], check=True, capture_output=True, env=cluster.env)
    refuse = pipeline_run(cluster, "stage=sample", *small, "resources.sample.gpus=1",
                          "sample.on_missing_gpu=error", "ray.max_retries=0")
    out, _ = refuse.communicate(timeout=600)
    assert refuse.returncode == 2, out
    assert "sample.device=cuda but no such CUDA device is available" in out
    assert "Traceback" not in out.split("error:")[-1]

    fallback = pipeline_run(cluster, "stage=sample", *small, "resources.sample.gpus=1",
                            "sample.on_missing_gpu=fallback")
    out, _ = fallback.communicate(timeout=600)
    assert fallback.returncode == 0, out
    assert "no such CUDA device is available here: running on the CPU" in out
    nodes = {m["node_ip"] for m in RunDir(str(run_dir)).markers("sample").values()}
    assert nodes == {WORKER_IP}
