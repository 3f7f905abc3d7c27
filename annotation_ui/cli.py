"""What `pipeline annotate` and `pipeline users add` do (the `pipeline` CLI parses, we act)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from annotation_ui.app import DEFAULT_GUIDELINES, launch
from annotation_ui.store import open_store
from annotation_ui.tasks import import_from_tables
from annotation_ui.users import UsersFileError, require_users
from annotation_ui.users import add_user as add_user_to_file
from pipeline.config import load_config
from pipeline.rundir import RunDir

USERS_FILE_ENV = "SRPREFS_USERS_FILE"


def users_file_path(cfg: DictConfig, explicit: str | None = None) -> Path:
    """--users-file, else store.users_file, else $SRPREFS_USERS_FILE, else <run_dir>/users.json."""
    chosen = explicit or cfg.store.users_file or os.environ.get(USERS_FILE_ENV)
    if chosen:
        return Path(chosen)
    if "://" in str(cfg.run_dir):
        raise UsersFileError(f"run_dir={cfg.run_dir} is remote: name a local users file with store.users_file=...")
    return Path(str(cfg.run_dir)) / "users.json"


def guidelines_text(cfg: DictConfig) -> str:
    """store.guidelines, else <run_dir>/guidelines.md when present, else the bundled guidelines."""
    chosen = cfg.store.guidelines
    if not chosen and "://" not in str(cfg.run_dir):
        in_run = Path(str(cfg.run_dir)) / "guidelines.md"
        chosen = str(in_run) if in_run.is_file() else None
    if not chosen:
        return DEFAULT_GUIDELINES
    path = Path(str(chosen))
    if not path.is_file():
        raise FileNotFoundError(f"store.guidelines={chosen}: no such file (write your guidelines in Markdown there)")
    return path.read_text(encoding="utf-8")


def annotate(overrides: list[str]) -> int:
    """Import the run's pairs into the store (new ones only) and serve the annotation UI."""
    cfg = load_config(overrides)
    users_file = users_file_path(cfg)
    require_users(users_file)
    store = open_store(cfg)
    run = RunDir(str(cfg.run_dir))
    if run.shards("pairs"):
        added = import_from_tables(
            store, run.read_table("pairs"), run.read_table("candidates"), run.read_table("instances"), cfg
        )
        print(f"imported {added} new task(s) from {run.path('tables/pairs')}")
    counts = store.counts()
    print(f"store {store.dialect}: {counts['tasks']} tasks, {counts['judgements']} judgements")
    if counts["tasks"] == 0:
        print(f"warning: no tasks yet: run the pipeline up to stage=pair on run_dir={cfg.run_dir}", file=sys.stderr)
    launch(
        store,
        users_file,
        host=str(cfg.host),
        port=int(cfg.port),
        guidelines=guidelines_text(cfg),
        session_goal=int(cfg.store.session_goal),
    )
    return 0


def _read_password(name: str) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != password:
        raise UsersFileError("the two passwords differ")
    return password


def add_user(args: argparse.Namespace) -> int:
    """`pipeline users add NAME [--admin] [--users-file PATH] [key=value ...]`; the password is
    read from stdin when piped, else prompted twice."""
    path = users_file_path(load_config(args.overrides), args.users_file)
    user = add_user_to_file(path, args.name, _read_password(args.name), admin=args.admin)
    print(f"{'admin' if user.admin else 'user'} {user.name} saved in {path}")
    return 0
