"""What `pipeline annotate` and `pipeline users add` do on the UI's side.

The caller (the `pipeline` CLI) resolves the run config into plain values: an open store, the
users file, the run's tables; nothing here reads a config file or a run directory.
"""

from __future__ import annotations

import getpass
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from omegaconf import DictConfig

from annotation_ui.app import launch
from annotation_ui.store import Store
from annotation_ui.tasks import import_from_tables
from annotation_ui.users import UsersFileError, require_users
from annotation_ui.users import add_user as add_user_to_file


@dataclass(frozen=True)
class RunTables:
    """A run's tables that annotation tasks are made from; ``where`` names them in messages."""

    pairs: pa.Table
    candidates: pa.Table
    instances: pa.Table
    where: str


def annotate(
    store: Store, users_file: Path, tables: RunTables | None, cfg: DictConfig, run_label: str, guidelines: str
) -> int:
    """Import ``tables``' pairs into ``store`` (new ones only; ``cfg.store`` and ``cfg.seed`` say
    which) and serve the annotation UI on ``cfg.host``:``cfg.port`` with ``guidelines`` (Markdown)."""
    require_users(users_file)
    if tables is not None:
        added = import_from_tables(store, tables.pairs, tables.candidates, tables.instances, cfg)
        print(f"imported {added} new task(s) from {tables.where}")
    counts = store.counts()
    print(f"store {store.dialect}: {counts['tasks']} tasks, {counts['judgements']} judgements")
    if counts["tasks"] == 0:
        print(f"warning: no tasks yet: run the pipeline up to stage=pair on run_dir={run_label}", file=sys.stderr)
    launch(
        store,
        users_file,
        host=str(cfg.host),
        port=int(cfg.port),
        guidelines=guidelines,
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


def add_user(users_file: Path, name: str, admin: bool) -> int:
    """Add ``name`` to ``users_file``; the password is read from stdin when piped, else prompted twice."""
    user = add_user_to_file(users_file, name, _read_password(name), admin=admin)
    print(f"{'admin' if user.admin else 'user'} {user.name} saved in {users_file}")
    return 0
