"""A real two-node Ray cluster on loopback (head 127.0.0.2, worker 127.0.0.3) for tests.

Each node is a separate `ray start` process tree, optionally pinned to one core (taskset). Token
authentication is on, with one token generated for the cluster and handed to every node and
driver in the environment (RAY_AUTH_TOKEN), as docker-compose.yml does; nothing relies on a
token file in the home folder. Teardown kills only this cluster's processes (matched by its GCS
port), never other Ray instances on the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil

RAY = os.path.join(os.path.dirname(sys.executable), "ray")
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HEAD_IP, 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{self.port}"

    def _ray_start(self, *args: str, core: int | None = None) -> None:
        # A node started under taskset keeps its raylet and every worker on that core.
        pin = ["taskset", "-c", str(core)] if core is not None else []
        subprocess.run([*pin, RAY, "start", *args, "--disable-usage-stats"], env=self.env, check=True,
                       capture_output=True, timeout=180)

    def start_head(self, cpus: int = 1, core: int | None = None) -> None:
        self._ray_start("--head", "--node-ip-address", HEAD_IP, "--port", str(self.port),
                        "--num-cpus", str(cpus), "--num-gpus", "0", "--include-dashboard", "false", core=core)

    def add_worker(self, cpus: int = 1, gpus: int = 0, ip: str = WORKER_IP, core: int | None = None) -> None:
        self._ray_start("--address", self.address, "--node-ip-address", ip,
                        "--num-cpus", str(cpus), "--num-gpus", str(gpus), core=core)

    def processes(self, ip: str | None = None) -> list[psutil.Process]:
        """This cluster's processes (optionally only those of the node at ``ip``)."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if str(self.port) not in cmdline:
                continue
            if ip is None or f"node_ip_address={ip}" in cmdline or f"node-ip-address={ip}" in cmdline:
                found.append(proc)
        return found

    def kill_node(self, ip: str) -> int:
        victims = self.processes(ip)
        for proc in victims:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        return len(victims)

    def stop(self) -> None:
        for _ in range(3):
            procs = self.processes()
            if not procs:
                return
            for proc in procs:
                try:
                    proc.send_signal(signal.SIGKILL)
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.5)


def make_cluster(tmp_path=None) -> Cluster:
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    assert shutil.which(RAY) or os.path.exists(RAY), "the ray CLI is installed with the project"
    return Cluster(free_port(), env)
