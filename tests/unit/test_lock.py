"""One run at a time per run directory; a lock left by a dead run does not block the next."""

import json
import socket
import subprocess
import sys
import time

import pytest

from pipeline.lock import LOCK_FILE, RunDirLock, RunDirLockedError, RunDirLockLostError
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


# Six processes take the lock at the same instant, TRIALS times over, on a fresh run dir or one
# with a stale lock; each holder keeps the lock until every process has tried. Prints the number
# of holders of each trial.
RACE = """
import json, multiprocessing, os, sys
from pipeline.lock import LOCK_FILE, RunDirLock, RunDirLockedError
from pipeline.rundir import RunDir

root, stale, trials = sys.argv[1], sys.argv[2], int(sys.argv[3])

def contender(uri, start, tried, held):
    start.wait()
    lock = RunDirLock(RunDir(uri), lease_s=120)
    try:
        lock.acquire()
    except RunDirLockedError:
        tried.wait()
        return
    with held.get_lock():
        held.value += 1
    tried.wait()
    lock.release()

context = multiprocessing.get_context("fork")
for trial in range(trials):
    uri = os.path.join(root, str(trial))
    if stale:
        os.makedirs(os.path.join(uri, "_state"))
        with open(os.path.join(uri, LOCK_FILE), "w") as handle:
            handle.write(stale)
    start, tried, held = context.Barrier(6), context.Barrier(6), context.Value("i", 0)
    workers = [context.Process(target=contender, args=(uri, start, tried, held)) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
    print(held.value, flush=True)
"""


@pytest.mark.parametrize("stale", ["", "dead-pid"], ids=["fresh", "stale"])
def test_exactly_one_of_six_simultaneous_runs_gets_the_lock(tmp_path, stale):
    contents = ""
    if stale:
        contents = json.dumps({"token": "dead", "pid": _dead_pid(), "host": socket.gethostname(),
                               "started": "x", "command": "pipeline run", "lease_s": 120.0, "heartbeat": 0.0})
    done = subprocess.run([sys.executable, "-c", RACE, str(tmp_path), contents, "8"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"] * 8
    for trial in range(8):  # no temporary or set-aside lock files stay behind
        assert sorted(p.name for p in (tmp_path / str(trial) / "_state").iterdir()) == ["lock.mutex"]


@pytest.mark.parametrize("contents", [
    "null", "[]", '"a string"', "{}", "not json at all", "",
    '{"token": "x", "pid": 0, "host": "%s", "lease_s": 120, "heartbeat": 1e12}',
    '{"token": "x", "pid": -1, "host": "%s", "lease_s": 120, "heartbeat": 1e12}',
    '{"token": "x", "pid": 99999999999999999999, "host": "%s", "lease_s": 120, "heartbeat": 1e12}',
    '{"token": "x", "pid": 12, "host": "elsewhere", "lease_s": NaN, "heartbeat": 1e12}',
], ids=["null", "list", "string", "empty-object", "not-json", "empty-file", "pid-0", "pid-minus-1",
        "huge-pid", "nan-lease"])
def test_a_lock_file_that_holds_no_valid_record_blocks_nobody(tmp_path, contents):
    run = RunDir(str(tmp_path))
    run.write_bytes(LOCK_FILE, contents.replace("%s", socket.gethostname()).encode())
    with RunDirLock(run, lease_s=120) as lock:
        assert json.loads(run.read_bytes(LOCK_FILE))["token"] == lock.record["token"]
    assert not run.exists(LOCK_FILE)


@pytest.mark.parametrize("lease", [float("inf"), float("nan"), 0.0, -1.0])
def test_a_lease_that_is_not_a_positive_finite_number_is_refused(tmp_path, lease):
    with pytest.raises(ValueError, match="finite number of seconds"):
        RunDirLock(RunDir(str(tmp_path)), lease_s=lease)


def test_a_heartbeat_that_cannot_be_written_stops_the_run(tmp_path, monkeypatch):
    run = RunDir(str(tmp_path))
    lock = RunDirLock(run, lease_s=1)

    def disk_full() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(RunDirLockLostError, match="No space left on device"):
        with lock:
            monkeypatch.setattr(lock, "_write", disk_full)
            time.sleep(30)  # the heartbeat interrupts this after lease_s / 4
    assert lock.lost is not None


def test_a_heartbeat_that_finds_its_lock_taken_over_stops_the_run(tmp_path):
    run = RunDir(str(tmp_path))
    with pytest.raises(RunDirLockLostError, match="taken over by pid 1 on host"):
        with RunDirLock(run, lease_s=1):
            _write_lock(run, token="the-new-holder")
            time.sleep(30)
    assert json.loads(run.read_bytes(LOCK_FILE))["token"] == "the-new-holder"


def test_a_heartbeat_failure_after_the_work_ended_still_fails_the_run(tmp_path):
    run = RunDir(str(tmp_path))
    lock = RunDirLock(run, lease_s=120)
    with pytest.raises(RunDirLockLostError, match="boom"):
        with lock:
            lock.lost = "boom"  # as the heartbeat thread records it just before the block ends
