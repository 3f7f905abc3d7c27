"""One run at a time per run directory; a lock left by a dead run does not block the next."""

import json
import socket
import subprocess
import sys
import time

import pytest

from pipeline.lock import LOCK_FILE, RunDirLock, RunDirLockedError
from pipeline.rundir import RunDir


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_lock(run: RunDir, **fields) -> None:
    record = {"token": "someone-else", "pid": 1, "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00",
              "command": "pipeline run", "lease_s": 120.0, "heartbeat": time.time(), **fields}
    run.write_bytes(LOCK_FILE, json.dumps(record).encode())


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_a_second_holder_is_refused_with_the_first_ones_pid_host_and_start(tmp_path, as_uri):
    uri = f"file://{tmp_path}" if as_uri else str(tmp_path)
    with RunDirLock(RunDir(uri), lease_s=120) as first:
        with pytest.raises(RunDirLockedError) as refused:
            RunDirLock(RunDir(uri), lease_s=120).acquire()
        message = str(refused.value)
        assert f"pid {first.record['pid']} on host {socket.gethostname()}" in message
        assert f"started {first.record['started']}" in message
    assert not (tmp_path / "_state" / "lock.json").exists()  # released on exit
    with RunDirLock(RunDir(uri), lease_s=120):  # free again
        pass


def test_a_lock_whose_process_is_gone_is_taken_over(tmp_path):
    run = RunDir(str(tmp_path))
    _write_lock(run, pid=_dead_pid())  # as a SIGKILLed run on this host leaves it
    with RunDirLock(run, lease_s=120) as lock:
        assert json.loads(run.read_bytes(LOCK_FILE))["token"] == lock.record["token"]


def test_a_live_process_on_this_host_keeps_its_lock_whatever_its_heartbeat(tmp_path):
    run = RunDir(str(tmp_path))
    _write_lock(run, pid=1, heartbeat=0)  # pid 1 is alive
    with pytest.raises(RunDirLockedError, match="pid 1 on host"):
        RunDirLock(run, lease_s=120).acquire()


def test_another_hosts_lock_holds_while_its_heartbeat_is_fresh_and_expires_after_the_lease(tmp_path):
    run = RunDir(str(tmp_path))
    _write_lock(run, host="elsewhere", pid=12345, heartbeat=time.time() - 5, lease_s=60)
    with pytest.raises(RunDirLockedError, match="pid 12345 on host elsewhere"):
        RunDirLock(run, lease_s=60).acquire()
    _write_lock(run, host="elsewhere", pid=12345, heartbeat=time.time() - 61, lease_s=60)
    with RunDirLock(run, lease_s=60) as lock:
        assert json.loads(run.read_bytes(LOCK_FILE))["host"] == lock.record["host"]


def test_the_holder_refreshes_its_heartbeat(tmp_path):
    run = RunDir(str(tmp_path))
    with RunDirLock(run, lease_s=1):
        first = json.loads(run.read_bytes(LOCK_FILE))["heartbeat"]
        deadline = time.time() + 10
        while json.loads(run.read_bytes(LOCK_FILE))["heartbeat"] == first and time.time() < deadline:
            time.sleep(0.05)
        assert json.loads(run.read_bytes(LOCK_FILE))["heartbeat"] > first


def test_release_leaves_a_lock_taken_over_by_another_run_alone(tmp_path):
    run = RunDir(str(tmp_path))
    lock = RunDirLock(run, lease_s=120)
    lock.acquire()
    _write_lock(run, token="the-new-holder")  # e.g. ours was judged stale and taken over
    lock.release()
    assert json.loads(run.read_bytes(LOCK_FILE))["token"] == "the-new-holder"
