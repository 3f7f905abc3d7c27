"""benchmarks/device_check.py at small sizes on the CPU: every check of the GPU table runs and passes
here, so a CUDA machine's run fails only for what differs on the device."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ["sample, embedded", "sample, SD x4 upscaler (tiny)", "degrade", "score", "dspo steps", "cpu = device"]


def test_device_check_runs_every_check_on_the_cpu():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--device", "cpu", "--small"],
                            capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("device: cpu")
    # Columns: check, setting, result, peak MiB, ok [, note], two or more spaces apart.
    rows = {parts[0]: parts for parts in (re.split(r"\s{2,}", line.strip()) for line in lines[2:])}
    assert sorted(rows) == sorted(CHECKS)
    for check in CHECKS:
        assert rows[check][4] == "yes", rows[check]
    for check in ("sample, embedded", "sample, SD x4 upscaler (tiny)", "degrade", "score"):
        assert float(rows[check][2].split()[0]) > 0, rows[check]  # a throughput
        assert float(rows[check][3]) > 0  # peak memory
    assert float(rows["dspo steps"][2].split()[0]) > 0 and rows["dspo steps"][5].startswith("loss")
