"""Run shards on Ray: one actor per worker (one model load each), resources from config,
a shard whose worker died goes back to the queue on a fresh actor.

Joins the cluster at ``ray.address`` / ``$RAY_ADDRESS`` when set, else starts a local Ray whose
node registers under ``ray.node_ip_address`` (loopback by default).
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from collections import deque
from typing import Any

import ray
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from pipeline.errors import ShardFailedError, WorkerSetupError
from pipeline.executors.shard import run_shard, stages_failed
from pipeline.rundir import RunDir
from stages.base import Stage

log = logging.getLogger(__name__)


class StageWorker:
    """Holds one stage instance (and its model) for the life of the actor."""

    def __init__(self, stage_path: str, cfg: dict[str, Any], run_uri: str) -> None:
        module, name = stage_path.split(":")
        self.stage = getattr(importlib.import_module(module), name)(OmegaConf.create(cfg))
        self.run = RunDir(run_uri)
        # A setting this node cannot honour (no GPU with on_missing_gpu=error, missing weights)
        # is kept and reported by the first shard, so the driver gets the message, not an actor
        # that died with a traceback.
        self.setup_error: str | None = None
        try:
            self.stage.setup()
        except (ValueError, FileNotFoundError) as err:
            self.setup_error = str(err)

    def process_shard(self, shard: int) -> dict[str, Any]:
        if self.setup_error is not None:
            raise WorkerSetupError(self.setup_error)
        return run_shard(self.stage, self.run, shard)


def connect(cfg: DictConfig) -> None:
    if ray.is_initialized():
        return
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
    else:
        # address="local": always a fresh Ray of our own, never whatever cluster `ray start`
        # left running on this machine (set ray.address or $RAY_ADDRESS to join one).
        ray.init(
            address="local",
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


def execute(stage: Stage, cfg: DictConfig, run: RunDir, shards: list[int], total_rows: int) -> list[dict[str, Any]]:
    connect(cfg)
    actor_class = ray.remote(
        num_cpus=stage.resources.num_cpus, num_gpus=stage.resources.num_gpus, max_restarts=0
    )(StageWorker)
    container = OmegaConf.to_container(cfg, resolve=True)

    def new_actor() -> Any:
        return actor_class.remote(f"{type(stage).__module__}:{type(stage).__qualname__}", container, run.uri)

    queue = deque(shards)
    attempts = dict.fromkeys(shards, 0)
    idle = [new_actor() for _ in range(worker_count(cfg, stage, len(shards)))]
    running: dict[Any, tuple[Any, int]] = {}
    results, failed = [], []
    with tqdm(total=len(shards), desc=f"{stage.name} (ray)", unit="shard", disable=not cfg.progress) as bar:
        while queue or running:
            while queue and idle:
                actor, shard = idle.pop(), queue.popleft()
                running[actor.process_shard.remote(shard)] = (actor, shard)
            done, _ = ray.wait(list(running), num_returns=1)
            actor, shard = running.pop(done[0])
            try:
                results.append(ray.get(done[0]))
                idle.append(actor)
                bar.update(1)
            except ray.exceptions.RayError as err:
                cause = getattr(err, "cause", None)
                if isinstance(cause, WorkerSetupError):
                    raise WorkerSetupError(str(cause)) from None
                if isinstance(cause, ShardFailedError):
                    # The stage failed the shard (a bug, too many bad items), its worker is fine,
                    # and a retry would fail the same way.
                    failed.append(str(cause))
                    idle.append(actor)
                    bar.update(1)
                    continue
                attempts[shard] += 1
                if attempts[shard] > cfg.ray.max_retries:
                    raise ShardFailedError(
                        f"stage {stage.name} shard {shard} failed {attempts[shard]} times; last error: {err}"
                    ) from None
                log.warning("stage %s shard %d: worker failed (%s); retrying", stage.name, shard, type(err).__name__)
                ray.kill(actor, no_restart=True)
                queue.append(shard)
                # Replace the worker only where it can start now (a lost node takes its
                # resources with it); otherwise the surviving workers take over its shards.
                if (not idle and not running) or _fits(stage):
                    idle.append(new_actor())
    for actor in idle:
        ray.kill(actor, no_restart=True)
    if failed:
        raise ShardFailedError(stages_failed(stage.name, failed))
    return results
