"""One writer per run directory: `pipeline run` holds ``_state/lock.json`` while it works.

The lock file records who holds it (pid, host, start time) and a heartbeat the holder refreshes
every ``lease_s / 4`` seconds. A lock is stale, and is taken over, when its holder is a process
on this host that no longer exists (a run killed with SIGKILL), or when its heartbeat is older
than ``lease_s`` (a holder on another host that died, or a host that went away).

On a local disk (a path or ``file://``) the lock is created with O_CREAT|O_EXCL, so two runs
starting at the same instant cannot both get it. Object stores have no exclusive create: there
the lock is written, then read back after a pause, and the run proceeds only when it still holds
its own token; two runs racing within that pause can, rarely, both proceed.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from pipeline.rundir import RunDir

LOCK_FILE = "_state/lock.json"
# Object stores only: how long a written lock must survive before the writer trusts it.
_SETTLE_S = 1.0


class RunDirLockedError(RuntimeError):
    """Another live run holds the run directory."""


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


class RunDirLock:
    """Context manager: take the lock of ``run`` (or raise RunDirLockedError), keep its heartbeat
    fresh while held, and remove it on exit."""

    def __init__(self, run: RunDir, lease_s: float, command: str = "pipeline run") -> None:
        self.run = run
        self.lease_s = float(lease_s)
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

    # -- reading --------------------------------------------------------------------------------

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.run.read_bytes(LOCK_FILE))
        except FileNotFoundError:
            return None
        except ValueError:  # half-written by a holder killed mid-write (object stores)
            return {}

    def _is_stale(self, holder: dict[str, Any]) -> bool:
        if not holder:
            return True
        if holder.get("host") == self.record["host"] and isinstance(holder.get("pid"), int):
            return not _pid_alive(holder["pid"])
        lease = float(holder.get("lease_s", self.lease_s))
        return time.time() - float(holder.get("heartbeat", 0)) > lease

    # -- taking and releasing ---------------------------------------------------------------------

    def _payload(self) -> bytes:
        return json.dumps({**self.record, "heartbeat": time.time()}, indent=1).encode()

    def _create_exclusive(self) -> bool:
        """Create the lock file if there is none; False when one exists."""
        if self.run.is_local:
            path = self.run.local_path(LOCK_FILE)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(self._payload())
            return True
        if self._read() is not None:
            return False
        self.run.write_bytes(LOCK_FILE, self._payload())
        time.sleep(_SETTLE_S)
        holder = self._read()
        return bool(holder) and holder.get("token") == self.record["token"]

    def acquire(self) -> None:
        for _ in range(3):
            if self._create_exclusive():
                self._start_heartbeat()
                return
            holder = self._read()
            if holder is None:
                continue  # released between our two looks
            if not self._is_stale(holder):
                raise RunDirLockedError(
                    f"run_dir {self.run.uri} is in use by another run ({holder_text(holder)}); wait for it to "
                    f"finish. If that run is gone, its lock expires {self.lease_s:g} s after its last "
                    f"heartbeat, or delete {self.run.path(LOCK_FILE)}."
                )
            self._take_over(holder)
        raise RunDirLockedError(f"run_dir {self.run.uri}: could not take the lock {self.run.path(LOCK_FILE)}")

    def _take_over(self, stale: dict[str, Any]) -> None:
        # Move the stale lock aside under a name of our own: of two runs taking it over at once,
        # only one move succeeds on a local disk, and the other finds the new holder's lock.
        aside = f"{LOCK_FILE}.stale-{self.record['token'][:8]}"
        try:
            self.run.fs.move(self.run.path(LOCK_FILE), self.run.path(aside))
        except (FileNotFoundError, OSError):
            return
        self.run.delete_file(aside)

    def _start_heartbeat(self) -> None:
        self._beat = threading.Thread(target=self._heartbeat, name="run-dir-lock", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            self.run.write_bytes(LOCK_FILE, self._payload())

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        holder = self._read()
        if holder and holder.get("token") == self.record["token"]:
            self.run.delete_file(LOCK_FILE)

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
