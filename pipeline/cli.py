"""The `pipeline` command: run stages, show a run's status, run the demo, open the annotation UI."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from common.logs import quiet_optional_kernel_warnings
from pipeline.errors import ShardFailedError

# Exit statuses: 1 the work failed (a bug, too many bad items), 2 bad input or settings, 3 the run
# worked but its dataset has no rows or lacks a split (the message says why and what to do).
EXIT_EMPTY_DATASET = 3

# The keys `pipeline --help` shows; their defaults and meanings come from pipeline/defaults/*.yaml.
MAIN_KEYS = [
    "run_dir",
    "stage",
    "input",
    "executor",
    "seed",
    "degrade.preset",
    "sample.num_candidates",
    "sample.backbone.name",
    "resources.sample.gpus",
]


def _epilog() -> str:
    from pipeline.keys import format_keys

    return (
        "main keys (key=value; `pipeline keys` lists every key, `pipeline config` prints the resolved config):\n"
        f"{format_keys(MAIN_KEYS)}\n"
        "  config=my.yaml\n      a YAML file of overrides, applied before the key=value overrides\n"
    )


class _Parser(argparse.ArgumentParser):
    """Writes the main keys into the help only when help is printed: reading the YAML docs takes
    about half a second that `pipeline run` and `pipeline status` need not pay."""

    def __init__(self, *args, main_keys: bool = False, **kwargs) -> None:
        super().__init__(*args, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
        self.main_keys = main_keys

    def format_help(self) -> str:
        if self.main_keys:
            self.epilog = _epilog()
        return super().format_help()


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pipeline",
        description="Build instance-level preference datasets for diffusion super-resolution.",
        main_keys=True,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in [
        ("run", "run stage=<name>|all on run_dir=... (finished shards are skipped)"),
        ("status", "per stage: shards done/total, rows ok/failed, seconds"),
        ("demo", "every stage on the bundled demo images, then where to find the results"),
        ("config", "print the resolved config, each key marked default, frozen (run_dir/config.yaml), file or command line"),
        ("annotate", "open the annotation UI on run_dir=... [store.url=...] [port=...]"),
    ]:
        sub = commands.add_parser(name, help=text, description=text, main_keys=True)
        sub.add_argument("overrides", nargs="*", metavar="key=value")
    text = ("delete the outputs of stage=X and of every later stage in run_dir=..., so that `run` redoes "
            "them (asks first unless --yes; people's judgements are kept)")
    reset = commands.add_parser("reset", help=text, description=text)
    reset.add_argument("--yes", action="store_true", help="do not ask")
    reset.add_argument("overrides", nargs="*", metavar="key=value")
    text = "every config key (or those under PREFIX, e.g. sample or sample.backbone): default and meaning"
    keys = commands.add_parser("keys", help=text, description=text)
    keys.add_argument("prefixes", nargs="*", metavar="PREFIX")
    users = commands.add_parser("users", help="manage annotation UI users", description="manage annotation UI users")
    users_cmd = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_cmd.add_parser("add", help="add a user (password read from stdin or prompted)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may see the admin tab")
    add.add_argument("--users_file", default=None, help="default: <run_dir>/users.json or $SRPREFS_USERS_FILE")
    add.add_argument("overrides", nargs="*", metavar="key=value")
    return parser


def _run(overrides: list[str]) -> int:
    from pipeline.config import load_config
    from pipeline.registry import ORDER

    cfg = load_config(overrides)
    if cfg.stage not in ORDER and cfg.stage != "all":
        raise ValueError(f"stage={cfg.stage!r}: choose one of {', '.join(ORDER)} or all")
    run = _run_and_show(cfg, cfg.stage)
    return _dataset_check(run) if cfg.stage in ("all", "emit") else 0


def _run_and_show(cfg, stage: str):
    """Run the stages and print the run's status, also when emit found nothing to publish."""
    from pipeline.rundir import RunDir
    from pipeline.runner import format_status, run_stages

    run = RunDir(cfg.run_dir)
    try:
        run_stages(cfg, stage)
    except Exception as err:
        if _empty_dataset(err):
            print(format_status(run))  # the failure reasons per stage, before the error line
        raise
    print(format_status(run))
    return run


def _empty_dataset(err: BaseException) -> bool:
    """stages.emit.stage.EmptyDatasetError (recognised by its exit code: the CLI imports no stage)."""
    return getattr(err, "exit_code", None) == EXIT_EMPTY_DATASET


def _dataset_check(run) -> int:
    """EXIT_EMPTY_DATASET, with why on stderr, when the dataset just emitted lacks rows or a split."""
    from pipeline.runner import emit_problem

    problem = emit_problem(run)
    if problem is None:
        return 0
    print(f"error: {problem}", file=sys.stderr)
    return EXIT_EMPTY_DATASET


def _demo(overrides: list[str]) -> int:
    from pipeline.config import load_config

    cfg = load_config(["input=demo", "stage=all", *overrides])
    run = _run_and_show(cfg, "all")
    if _dataset_check(run):
        return EXIT_EMPTY_DATASET
    print(f"\ndataset:  {run.path('dataset')}   (datasets.load_dataset('{run.path('dataset')}'))")
    print(f"report:   {run.path('dataset/report.html')}")
    print(f"label it: pipeline annotate run_dir={cfg.run_dir}   (add a user first: pipeline users add NAME)")
    return 0


def _status(overrides: list[str]) -> int:
    from pipeline.config import load_config
    from pipeline.rundir import RunDir
    from pipeline.runner import format_status

    cfg = load_config(overrides)
    run = RunDir(cfg.run_dir)
    if not run.is_run_dir():
        raise FileNotFoundError(f"run_dir {cfg.run_dir} does not exist; `pipeline run run_dir=...` creates it")
    print(format_status(run))
    return 0


def _config(overrides: list[str]) -> int:
    from pipeline.config import resolve_config, to_yaml_with_sources
    from pipeline.frozen import refused_keys
    from pipeline.rundir import RunDir

    resolved = resolve_config(overrides)
    refused = refused_keys(RunDir(str(resolved.cfg.run_dir)), resolved.cfg)
    print(to_yaml_with_sources(resolved, refused), end="")
    return 0


def _keys(prefixes: list[str]) -> int:
    from pipeline.keys import format_keys, keys_under

    print(format_keys(keys_under(prefixes) if prefixes else None))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    # key=value overrides may follow options (`users add dave --admin run_dir=x`), which plain
    # argparse refuses for a positional list that came before them.
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if "=" not in item or item.startswith("-")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if args.command == "keys":
        if extra:
            parser.error(f"keys takes key prefixes, not key=value: {' '.join(extra)}")
    else:
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_optional_kernel_warnings()
    try:
        code = _dispatch(args)
        # Short output sits in stdout's buffer until exit, where a reader that went away would
        # make the interpreter complain; flushing here lets the handler below see it.
        sys.stdout.flush()
        return code
    except ShardFailedError as err:  # the work failed (a bug, or too many bad items), not the command
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished shards are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return quiet_broken_pipe()
    except Exception as err:  # every expected failure ends here as one clear line
        if os.environ.get("SRPREFS_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        if _empty_dataset(err):
            return EXIT_EMPTY_DATASET
        print("(set SRPREFS_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args.overrides)
    if args.command == "demo":
        return _demo(args.overrides)
    if args.command == "status":
        return _status(args.overrides)
    if args.command == "config":
        return _config(args.overrides)
    if args.command == "keys":
        return _keys(args.prefixes)
    from pipeline.config import load_config

    if args.command == "reset":
        from pipeline.reset import reset

        return reset(load_config(args.overrides), args.yes)
    from pipeline import annotation

    cfg = load_config(args.overrides)
    if args.command == "annotate":
        return annotation.annotate(cfg)
    return annotation.add_user(cfg, args.name, args.admin, args.users_file)


def quiet_broken_pipe() -> int:
    """The reader of our output went away (``pipeline keys | head``): that is the reader's choice,
    not a failure. Point stdout at /dev/null so that the interpreter's final flush of what is
    still buffered does not raise again, and exit 0 without a word."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


if __name__ == "__main__":
    sys.exit(main())
