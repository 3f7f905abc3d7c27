"""Run shards on Ray: a pool of worker actors that outlives one stage, resources from config,
a shard whose worker died goes back to the queue on a fresh actor.

Joins the cluster at ``ray.address`` / ``$RAY_ADDRESS`` when set, else starts a local Ray whose
node registers under ``ray.node_ip_address`` (loopback by default) with the cores this process
may run on.

What a Ray run pays beyond the local executor, and how each cost is kept down (measured by
benchmarks/bench_ray_scaling.py):

* worker start: a worker process imports torch, diffusers and pyiqa (seconds each on a busy
  machine). The actors are kept from one stage to the next of a ``stage=all`` run (when the
  stages ask for the same resources), so each worker pays that once per run, not once per stage.
* model loads: a worker builds and sets up a stage once (``prepare``) and keeps it for every shard
  of that stage it runs; the previous stage's model is dropped first, so memory holds one.
* threads: an actor that asked for N CPUs runs torch and OpenCV with N threads, never with one
  per core of the node (N workers x all cores oversubscribes the node and runs slower).
* per-shard scheduling: each worker has up to ``PIPELINE_DEPTH`` shards queued, so it starts the
  next as soon as one ends instead of waiting for a round trip to the driver.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import ray
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from pipeline.errors import ShardFailedError, WorkerSetupError
from pipeline.executors.shard import run_shard, stages_failed
from pipeline.rundir import RunDir
from stages.base import Stage

log = logging.getLogger(__name__)

# Shards queued per worker: one running, one waiting, so no worker idles between two shards.
PIPELINE_DEPTH = 2


def actor_threads(num_cpus: float) -> int:
    """Threads for a worker that asked for ``num_cpus`` (at least one)."""
    return max(1, math.floor(num_cpus))


class PipelineWorker:
    """One Ray actor: imports the model libraries once, then runs shards of whichever stage it
    was last prepared for, holding that stage (and its model) between shards."""

    def __init__(self, threads: int) -> None:
        from common.logs import quiet_optional_kernel_warnings

        quiet_optional_kernel_warnings()
        self.threads = threads
        self.key: tuple[str, str, str] | None = None
        self.stage: Stage | None = None
        self.run: RunDir | None = None
        self.setup_error: str | None = None

    def prepare(self, stage_path: str, cfg: dict[str, Any], run_uri: str) -> None:
        """Build and set up the stage unless this worker already holds it with these settings."""
        key = (stage_path, repr(cfg), run_uri)
        if key == self.key:
            return
        self.stage, self.key, self.setup_error = None, key, None  # the old model goes first
        module, name = stage_path.split(":")
        self.stage = getattr(importlib.import_module(module), name)(OmegaConf.create(cfg))
        self._limit_threads()
        self.run = RunDir(run_uri)
        # A setting this node cannot honour (no GPU with on_missing_gpu=error, missing weights)
        # is kept and reported by the first shard, so the driver gets the message, not an actor
        # that died with a traceback.
        try:
            self.stage.setup()
        except (ValueError, FileNotFoundError) as err:
            self.setup_error = str(err)

    def _limit_threads(self) -> None:
        # Ray sets OMP_NUM_THREADS for an actor, but torch and OpenCV read their own settings.
        # Only libraries the stage imported are touched: a light stage (ingest) starts without torch.
        torch, cv2 = sys.modules.get("torch"), sys.modules.get("cv2")
        if torch is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        if cv2 is not None:
            cv2.setNumThreads(self.threads)

    def process_shard(self, shard: int) -> dict[str, Any]:
        if self.setup_error is not None:
            raise WorkerSetupError(self.setup_error)
        assert self.stage is not None and self.run is not None, "prepare() runs before any shard"
        return run_shard(self.stage, self.run, shard)

    def torch_threads(self) -> int:
        import torch

        self._limit_threads()
        return torch.get_num_threads()


@dataclass
class _Pool:
    """The live workers of this driver, for one resource shape on one Ray session."""

    session: tuple[str, str]
    shape: tuple[float, float]  # (num_cpus, num_gpus) per worker
    actors: list[Any] = field(default_factory=list)


_pool: _Pool | None = None


def _session() -> tuple[str, str]:
    context = ray.get_runtime_context()
    return context.get_job_id(), context.get_node_id()


def connect(cfg: DictConfig) -> None:
    if ray.is_initialized():
        return
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
    else:
        # address="local": always a fresh Ray of our own, never whatever cluster `ray start`
        # left running on this machine (set ray.address or $RAY_ADDRESS to join one). Its CPUs
        # are the cores this process may use (taskset, cgroups), not every core of the machine.
        ray.init(
            address="local",
            num_cpus=len(os.sched_getaffinity(0)),
            _node_ip_address=cfg.ray.node_ip_address,
            include_dashboard=False,
            logging_level=logging.WARNING,
        )


def worker_count(cfg: DictConfig, stage: Stage, shards: int) -> int:
    if cfg.ray.workers:
        return max(1, min(int(cfg.ray.workers), shards))
    totals = ray.cluster_resources()
    limits = [shards]
    if stage.resources.num_cpus > 0:
        limits.append(math.floor(totals.get("CPU", 1) / stage.resources.num_cpus))
    if stage.resources.num_gpus > 0:
        gpus = totals.get("GPU", 0)
        if gpus < stage.resources.num_gpus:
            raise ShardFailedError(
                f"stage {stage.name} asks for {stage.resources.num_gpus} GPU per worker "
                f"(resources.{stage.name}.gpus) but the cluster has {gpus}"
            )
        limits.append(math.floor(gpus / stage.resources.num_gpus))
    return max(1, min(limits))


def _fits(stage: Stage) -> bool:
    free = ray.available_resources()
    return free.get("CPU", 0) >= stage.resources.num_cpus and free.get("GPU", 0) >= stage.resources.num_gpus


def release() -> None:
    """End this driver's workers (the runner calls it after the last stage of a command)."""
    global _pool
    if _pool is not None and ray.is_initialized() and _pool.session == _session():
        for actor in _pool.actors:
            ray.kill(actor, no_restart=True)
    _pool = None


def _workers(stage: Stage, count: int) -> list[Any]:
    """``count`` workers for ``stage``: the pool's, when they were made for the same resources
    in this Ray session, topped up with new ones; a pool of another shape is ended first, so
    its workers hold no CPU or GPU the new ones need."""
    global _pool
    shape = (float(stage.resources.num_cpus), float(stage.resources.num_gpus))
    if _pool is None or _pool.session != _session() or _pool.shape != shape:
        release()
        _pool = _Pool(_session(), shape)
    while len(_pool.actors) < count:
        _new_worker()
    return _pool.actors[:count]


def _new_worker() -> Any:
    """A new worker of the pool's shape, added to the pool."""
    assert _pool is not None
    cpus, gpus = _pool.shape
    actor = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0)(PipelineWorker).remote(actor_threads(cpus))
    _pool.actors.append(actor)
    return actor


def _drop_worker(actor: Any) -> None:
    ray.kill(actor, no_restart=True)
    if _pool is not None and actor in _pool.actors:
        _pool.actors.remove(actor)


def execute(stage: Stage, cfg: DictConfig, run: RunDir, shards: list[int], total_rows: int) -> list[dict[str, Any]]:
    connect(cfg)
    stage_path = f"{type(stage).__module__}:{type(stage).__qualname__}"
    container = OmegaConf.to_container(cfg, resolve=True)

    def prepared(actor: Any) -> Any:
        # Calls to one actor run in the order they were sent, so its shards follow this.
        actor.prepare.remote(stage_path, container, run.uri)
        return actor

    queue = deque(shards)
    attempts = dict.fromkeys(shards, 0)
    workers = [prepared(a) for a in _workers(stage, worker_count(cfg, stage, len(shards)))]
    load = {actor: 0 for actor in workers}  # shards sent to each worker and not yet answered
    running: dict[Any, tuple[Any, int]] = {}
    results, failed = [], []

    def send() -> None:
        # Fill every worker up to PIPELINE_DEPTH, least loaded first.
        for _ in range(PIPELINE_DEPTH):
            for actor in sorted(load, key=load.get):
                if queue and load[actor] < PIPELINE_DEPTH:
                    shard = queue.popleft()
                    running[actor.process_shard.remote(shard)] = (actor, shard)
                    load[actor] += 1

    with tqdm(total=len(shards), desc=f"{stage.name} (ray)", unit="shard", disable=not cfg.progress) as bar:
        while queue or running:
            send()
            done, _ = ray.wait(list(running), num_returns=1)
            actor, shard = running.pop(done[0])
            if actor in load:
                load[actor] -= 1
            try:
                results.append(ray.get(done[0]))
                bar.update(1)
            except ray.exceptions.RayError as err:
                cause = getattr(err, "cause", None)
                if isinstance(cause, WorkerSetupError):
                    raise WorkerSetupError(str(cause)) from None
                if isinstance(cause, ShardFailedError):
                    # The stage failed the shard (a bug, too many bad items), its worker is fine,
                    # and a retry would fail the same way.
                    failed.append(str(cause))
                    bar.update(1)
                    continue
                # The worker died: this shard (and any other it held, as their answers come in)
                # goes back to the queue.
                attempts[shard] += 1
                if attempts[shard] > cfg.ray.max_retries:
                    raise ShardFailedError(
                        f"stage {stage.name} shard {shard} failed {attempts[shard]} times; last error: {err}"
                    ) from None
                log.warning("stage %s shard %d: worker failed (%s); retrying", stage.name, shard, type(err).__name__)
                queue.append(shard)
                if actor in load:
                    del load[actor]
                    _drop_worker(actor)
                    # Replace the worker only where it can start now (a lost node takes its
                    # resources with it); otherwise the surviving workers take over its shards.
                    if not load or _fits(stage):
                        load[prepared(_new_worker())] = 0
    if failed:
        raise ShardFailedError(stages_failed(stage.name, failed))
    return results
