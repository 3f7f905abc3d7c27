"""`pipeline run` refuses a run_dir another run holds, and takes it over once that run is killed."""

import signal
import subprocess
import sys

import yaml

from pipeline.rundir import RunDir

HOLD = """
import sys, time
from pipeline.lock import RunDirLock
from pipeline.rundir import RunDir
with RunDirLock(RunDir(sys.argv[1]), lease_s=120, command="pipeline run sample.num_candidates=4"):
    print("held", flush=True)
    time.sleep(600)
"""


def pipeline(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True)


def test_a_second_run_is_refused_until_the_holder_is_killed(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = pipeline("run", "stage=ingest", "input=demo", "ingest.demo_count=2", "sample.num_candidates=2",
                          "progress=false", f"run_dir={run_dir}")
        assert second.returncode == 2, second.stderr
        assert f"is in use by another run (pid {holder.pid} on host" in second.stderr
        assert "command: pipeline run sample.num_candidates=4" in second.stderr
        assert "Traceback" not in second.stderr
        assert not (run_dir / "config.yaml").exists() and not (run_dir / "tables").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The killed holder's lock is stale: the next run takes it over, runs, and lets it go.
    third = pipeline("run", "stage=ingest", "input=demo", "ingest.demo_count=2", "sample.num_candidates=2",
                     "progress=false", f"run_dir={run_dir}")
    assert third.returncode == 0, third.stderr
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["sample"]["num_candidates"] == 2
    assert RunDir(str(run_dir)).read_table("hr").num_rows == 2
    assert not (run_dir / "_state" / "lock.json").exists()
