"""One writer per run directory: `pipeline run` holds ``_state/lock.json`` while it works.

The lock file records who holds it (pid, host, start time, a random token) and a heartbeat the
holder refreshes every ``lease_s / 4`` seconds. A lock is stale, and is taken over, when its
holder is a process on this host that no longer exists (a run killed with SIGKILL), when its
heartbeat is older than ``lease_s`` (a holder on another host that died, or a host that went
away), or when the file is not a lock record at all (garbage: another program wrote it).

On a local disk (a path or ``file://``) every look at the lock file and every change to it
(take, take over, heartbeat, release) happens while holding an advisory ``flock`` on
``_state/lock.mutex``, so the check and the act cannot interleave between processes, and the
kernel drops that flock when its process dies, so it never blocks anyone. The lock file itself is
written whole to a temporary name and renamed into place: a reader never sees it half-written.
The temporary files of a killed holder are removed by the next one to take the lock.

Object stores have neither flock nor exclusive create: there the lock is written, then read
back after a pause, and the run proceeds only when it still holds its own token; two runs racing
within that pause can, rarely, both proceed (each heartbeat re-checks the token, so the one
that lost stops at its next heartbeat).

A heartbeat that cannot be written, or that finds the lock taken over, stops the run: the main
thread gets a SIGINT and the ``with`` block ends in ``RunDirLockLostError``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from pipeline.rundir import TEMPORARY_MARK, RunDir

LOCK_FILE = "_state/lock.json"
MUTEX_FILE = "_state/lock.mutex"
# Object stores only: how long a written lock must survive before the writer trusts it.
_SETTLE_S = 1.0
# Largest pid any kernel hands out (Linux: 2**22); a larger one is not a process.
_MAX_PID = 2**22


class RunDirLockedError(RuntimeError):
    """Another live run holds the run directory."""


class RunDirLockLostError(RuntimeError):
    """The run's lock could not be kept (its heartbeat failed, or another run took it over)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user: it exists
        return True
    return True


def holder_text(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}, "
            f"command: {holder.get('command', '?')}")


def valid_holder(value: Any) -> dict[str, Any] | None:
    """``value`` (a parsed lock file) when it is a lock record this module wrote, else None:
    a dict with a string token and host, a pid that can be a process, a finite heartbeat and
    lease. Anything else (null, a list, pid 0 or -1, which os.kill reads as process groups)
    blocks nobody."""
    if not isinstance(value, dict):
        return None
    pid, token, host = value.get("pid"), value.get("token"), value.get("host")
    numbers = [value.get("heartbeat"), value.get("lease_s")]
    if not (isinstance(token, str) and token and isinstance(host, str)):
        return None
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= _MAX_PID:
        return None
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n) for n in numbers):
        return None
    return value if value["lease_s"] > 0 else None


class RunDirLock:
    """Context manager: take the lock of ``run`` (or raise RunDirLockedError), keep its heartbeat
    fresh while held, and remove it on exit."""

    def __init__(self, run: RunDir, lease_s: float, command: str = "pipeline run") -> None:
        self.lease_s = float(lease_s)
        if not (math.isfinite(self.lease_s) and self.lease_s > 0):
            raise ValueError(f"lock lease {lease_s!r} s: give a finite number of seconds above 0")
        self.run = run
        self.record = {
            "token": uuid.uuid4().hex,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "lease_s": self.lease_s,
        }
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.lost: str | None = None  # why the heartbeat stopped the run

    # -- the local mutex ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the run dir's lock mutex (local disks; object stores have none)."""
        if not self.run.is_local:
            yield
            return
        path = self.run.local_path(MUTEX_FILE)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing drops the flock

    # -- reading and writing ------------------------------------------------------------------

    def _read(self) -> dict[str, Any] | None:
        """The lock file's record; None when there is none, {} when it holds no valid record."""
        try:
            data = self.run.read_bytes(LOCK_FILE)
        except FileNotFoundError:
            return None
        try:
            return valid_holder(json.loads(data)) or {}
        except ValueError:  # not JSON (or half-written by a holder killed mid-write, object stores)
            return {}

    def _is_stale(self, holder: dict[str, Any]) -> bool:
        if not holder:
            return True
        if holder["host"] == self.record["host"]:
            return not _pid_alive(holder["pid"])
        return time.time() - float(holder["heartbeat"]) > float(holder["lease_s"])

    def _payload(self) -> bytes:
        return json.dumps({**self.record, "heartbeat": time.time()}, indent=1).encode()

    def _write(self) -> None:
        """Put our record in place whole: a temporary file of our own, renamed over the lock."""
        if not self.run.is_local:
            self.run.write_bytes(LOCK_FILE, self._payload())
            return
        target = self.run.local_path(LOCK_FILE)
        temporary = f"{target}{TEMPORARY_MARK}{self.record['token'][:8]}"
        try:
            with open(temporary, "wb") as handle:
                handle.write(self._payload())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def _remove_leftovers(self) -> None:
        """Temporary and set-aside lock files of earlier holders (only called under the mutex,
        where no other process is writing one)."""
        folder = self.run.local_path(LOCK_FILE).rsplit("/", 1)[0]
        name = LOCK_FILE.rsplit("/", 1)[1]
        for entry in os.listdir(folder):
            if entry.startswith(name) and entry != name:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, entry))

    # -- taking and releasing -------------------------------------------------------------------

    def _refusal(self, holder: dict[str, Any]) -> RunDirLockedError:
        return RunDirLockedError(
            f"run_dir {self.run.uri} is in use by another run ({holder_text(holder)}); wait for it to "
            f"finish. If that run is gone, its lock expires {float(holder['lease_s']):g} s after its "
            f"last heartbeat, or delete {self.run.path(LOCK_FILE)}."
        )

    def acquire(self) -> None:
        if self.run.is_local:
            with self._exclusive():
                holder = self._read()
                if holder is not None and not self._is_stale(holder):
                    raise self._refusal(holder)
                self._write()  # creates the lock, or replaces a stale one, in one rename
                self._remove_leftovers()
        else:
            self._acquire_unlocked()
        self._start_heartbeat()

    def _acquire_unlocked(self) -> None:
        """Object stores: write, wait, and trust the lock only if it still holds our token."""
        for _ in range(3):
            holder = self._read()
            if holder is not None and not self._is_stale(holder):
                raise self._refusal(holder)
            self._write()
            time.sleep(_SETTLE_S)
            if (self._read() or {}).get("token") == self.record["token"]:
                return
        raise RunDirLockedError(f"run_dir {self.run.uri}: could not take the lock {self.run.path(LOCK_FILE)}")

    def _start_heartbeat(self) -> None:
        self._beat = threading.Thread(target=self._heartbeat, name="run-dir-lock", daemon=True)
        self._beat.start()

    def beat(self) -> None:
        """Refresh the heartbeat; RunDirLockLostError when the lock is no longer ours."""
        with self._exclusive():
            holder = self._read()
            if not holder or holder.get("token") != self.record["token"]:
                taker = f" by {holder_text(holder)}" if holder else ""
                raise RunDirLockLostError(f"the lock {self.run.path(LOCK_FILE)} was taken over{taker}")
            self._write()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                self.beat()
            except Exception as err:  # a full disk, a lost lock: the run cannot go on unlocked
                self.lost = (f"run_dir {self.run.uri}: stopped, the run's lock could not be kept: "
                             f"{type(err).__name__}: {err}")
                # A real SIGINT, so that a main thread asleep or waiting in C wakes up too.
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                return

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            try:
                self._beat.join()
            except KeyboardInterrupt:  # the heartbeat's own interrupt, landing here: finish releasing
                if self.lost is None:
                    raise
                self._beat.join()
        with self._exclusive():
            holder = self._read()
            if holder and holder.get("token") == self.record["token"]:
                self.run.delete_file(LOCK_FILE)

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self.release()
        # The heartbeat interrupts the main thread (KeyboardInterrupt) to stop the run; a run
        # that finished before the interrupt landed must not report success either.
        if self.lost is not None and (kind is None or issubclass(kind, KeyboardInterrupt)):
            raise RunDirLockLostError(self.lost) from None
