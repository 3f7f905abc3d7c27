import subprocess
import sys

from pipeline.cli import main
from pipeline.registry import ORDER


def test_help_lists_stages_and_main_keys(capsys):
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    out = capsys.readouterr().out
    for name in ORDER:
        assert name in out
    for key in ("run_dir=", "stage=", "input=", "executor=", "sample.num_candidates", "status", "annotate", "keys"):
        assert key in out
    # Defaults and meanings come from pipeline/defaults/*.yaml (pipeline/keys.py), not a copy.
    assert "  sample.num_candidates=4\n      Candidates (N) per LQ image" in out


def test_expected_errors_are_one_line_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "stage=polish", f"run_dir={tmp_path}"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "error: stage='polish': choose one of ingest, degrade" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_key_from_the_command_line(capsys, tmp_path):
    assert main(["run", f"run_dir={tmp_path}", "ingest.shardsize=2"]) == 2
    assert "unknown config key 'ingest.shardsize'" in capsys.readouterr().err


def test_status_of_a_fresh_run_dir(capsys, tmp_path):
    assert main(["status", f"run_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"run {tmp_path}"
    assert "ingest" in out and "emit" in out


def test_help_and_status_do_not_import_torch(tmp_path):
    # The registry reads the stage classes' contracts without importing their modules (torch, pyiqa).
    code = (
        "import contextlib, io, sys\n"
        "from pipeline.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        f"assert main(['status', 'run_dir={tmp_path}']) == 0\n"
        "print(sorted(m for m in ('torch', 'pyiqa', 'gradio', 'sqlalchemy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "[]"


def test_broken_pipe_exits_quietly():
    """`pipeline status | head` closing its end early is the reader's choice: exit 0, no word."""
    code = ("import sys\nfrom pipeline import cli\n"
            "def cut(prefixes):\n    raise BrokenPipeError(32, 'Broken pipe')\n"
            "cli._keys = cut\nsys.exit(cli.main(['keys']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")
    # Short output waits in stdout's buffer until the end: a reader gone by then is quiet too.
    code = ("import os, sys\nfrom pipeline import cli\n"
            "r, w = os.pipe()\nos.close(r)\nos.dup2(w, sys.stdout.fileno())\n"  # a pipe nobody reads
            "cli._keys = lambda prefixes: print('seed=0') or 0\nsys.exit(cli.main(['keys']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")
    # and through a real pipe whose reader leaves after one line
    piped = subprocess.run(["bash", "-o", "pipefail", "-c", f"'{sys.executable}' -m pipeline.cli keys | head -1"],
                           capture_output=True, text=True)
    assert piped.returncode == 0 and piped.stdout.startswith("  seed=")
    assert "Broken pipe" not in piped.stderr and "Traceback" not in piped.stderr
