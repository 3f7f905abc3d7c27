"""The pipeline's side of the annotation UI: where a run's task store and users file are, the
run's pairs into the store (`pipeline annotate`), and the store's judgements back into the run
(table ``judgements``, which emit reads).

The UI never loads a config file or opens the run directory: this module resolves them into
plain values (an open store, a users file path, the run's tables) and hands those over with the
resolved settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from annotation_ui.users import UsersFileError
from common.extras import require_extra
from pipeline.rundir import RunDir
from schemas import judgements

if TYPE_CHECKING:  # SQLAlchemy and Gradio load only when a command needs the UI
    from annotation_ui.store import Store

USERS_FILE_ENV = "SRPREFS_USERS_FILE"
SQLITE_STORE = "annotations.db"


def store_url(cfg: DictConfig) -> str:
    """``store.url``, or SQLite at ``<run_dir>/annotations.db`` when it is null."""
    if cfg.store.url:
        return str(cfg.store.url)
    if "://" in str(cfg.run_dir):
        raise ValueError(
            f"run_dir={cfg.run_dir} is remote; the SQLite store needs a local folder, so set store.url "
            f"(e.g. postgresql+psycopg://user@host:5432/db)"
        )
    run_dir = Path(str(cfg.run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{run_dir.resolve() / SQLITE_STORE}"


def users_file_path(cfg: DictConfig, explicit: str | None = None) -> Path:
    """--users_file, else store.users_file, else $SRPREFS_USERS_FILE, else <run_dir>/users.json."""
    chosen = explicit or cfg.store.users_file or os.environ.get(USERS_FILE_ENV)
    if chosen:
        return Path(chosen)
    if "://" in str(cfg.run_dir):
        raise UsersFileError(f"run_dir={cfg.run_dir} is remote: name a local users file with store.users_file=...")
    return Path(str(cfg.run_dir)) / "users.json"


def open_store(cfg: DictConfig) -> Store:
    """The store a run config names (``store.url``, ``store.db_schema``, ``store.lease_ttl_s``)."""
    require_extra("ui")
    from annotation_ui.store import Store

    return Store(store_url(cfg), db_schema=cfg.store.db_schema, lease_ttl_s=cfg.store.lease_ttl_s)


def guidelines_text(cfg: DictConfig) -> str:
    """store.guidelines, else <run_dir>/guidelines.md when present, else the bundled guidelines."""
    chosen = cfg.store.guidelines
    if not chosen and "://" not in str(cfg.run_dir):
        in_run = Path(str(cfg.run_dir)) / "guidelines.md"
        chosen = str(in_run) if in_run.is_file() else None
    if not chosen:
        from annotation_ui.app import DEFAULT_GUIDELINES

        return DEFAULT_GUIDELINES
    path = Path(str(chosen))
    if not path.is_file():
        raise FileNotFoundError(f"store.guidelines={chosen}: no such file (write your guidelines in Markdown there)")
    return path.read_text(encoding="utf-8")


def annotate(cfg: DictConfig) -> int:
    """`pipeline annotate`: import the run's new pairs into the store and serve the UI."""
    require_extra("ui")
    from annotation_ui import cli

    users_file = users_file_path(cfg)
    run = RunDir(str(cfg.run_dir))
    tables = None
    if run.shards("pairs"):
        tables = cli.RunTables(
            pairs=run.read_table("pairs"),
            candidates=run.read_table("candidates"),
            instances=run.read_table("instances"),
            where=run.path("tables/pairs"),
        )
    return cli.annotate(
        open_store(cfg), users_file, tables, cfg, run_label=str(cfg.run_dir), guidelines=guidelines_text(cfg)
    )


def add_user(cfg: DictConfig, name: str, admin: bool, users_file: str | None) -> int:
    """`pipeline users add NAME [--admin] [--users_file PATH]`."""
    from annotation_ui import cli

    return cli.add_user(users_file_path(cfg, users_file), name, admin=admin)


def export_judgements(cfg: DictConfig, run: RunDir) -> None:
    """Copy the store's judgements into ``tables/judgements`` (shard 0, replaced each time).

    A run without a store (no ``store.url`` and no SQLite file in the run dir) has none to copy.
    """
    if not cfg.store.url and not (run.is_local and run.exists(SQLITE_STORE)):
        return
    store = open_store(cfg)
    try:
        table = store.export_judgements()
    finally:
        store.close()
    run.write_shard("judgements", 0, judgements.SPEC.conform(table))
