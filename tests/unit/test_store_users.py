"""The users file (salted scrypt hashes) and the `pipeline users add` action."""

from __future__ import annotations

import io
import json
import stat

import pytest

from annotation_ui.app import DEFAULT_GUIDELINES
from annotation_ui.users import UsersFileError, add_user, is_admin, load_users, verify
from pipeline import annotation
from pipeline.config import load_config


def test_add_and_verify(tmp_path):
    path = tmp_path / "users.json"
    add_user(path, "alice", "s3cret-password")
    add_user(path, "boss", "another-password", admin=True)
    assert verify(path, "alice", "s3cret-password").admin is False
    assert verify(path, "boss", "another-password").admin is True
    assert verify(path, "alice", "s3cret-passwore") is None
    assert verify(path, "nobody", "s3cret-password") is None
    assert is_admin(path, "boss") and not is_admin(path, "alice") and not is_admin(path, "nobody")
    text = path.read_text()
    assert "s3cret-password" not in text
    entries = json.loads(text)["users"]
    assert entries["alice"]["salt"] != entries["boss"]["salt"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_same_password_different_hashes_and_replacing_a_password(tmp_path):
    path = tmp_path / "users.json"
    add_user(path, "a", "same-password")
    add_user(path, "b", "same-password")
    users = load_users(path)
    assert users["a"]["hash"] != users["b"]["hash"]
    add_user(path, "a", "new-password-1")
    assert verify(path, "a", "same-password") is None and verify(path, "a", "new-password-1")


@pytest.mark.parametrize(
    "name, password, message",
    [("bad name", "long-enough", "user name"), ("<b>", "long-enough", "user name"), ("ok", "short", "at least 8")],
)
def test_bad_users_are_refused(tmp_path, name, password, message):
    with pytest.raises(UsersFileError, match=message):
        add_user(tmp_path / "users.json", name, password)


def test_malformed_users_file(tmp_path):
    path = tmp_path / "users.json"
    path.write_text("{not json")
    with pytest.raises(UsersFileError, match="not valid JSON"):
        verify(path, "a", "whatever-pass")
    path.write_text("[]")
    with pytest.raises(UsersFileError, match="'users' mapping"):
        load_users(path)


def test_users_file_location(tmp_path, monkeypatch):
    monkeypatch.delenv(annotation.USERS_FILE_ENV, raising=False)
    cfg = load_config([f"run_dir={tmp_path}"])
    assert annotation.users_file_path(cfg) == tmp_path / "users.json"
    monkeypatch.setenv(annotation.USERS_FILE_ENV, str(tmp_path / "env.json"))
    assert annotation.users_file_path(cfg) == tmp_path / "env.json"
    configured = load_config([f"run_dir={tmp_path}", f"store.users_file={tmp_path / 'cfg.json'}"])
    assert annotation.users_file_path(configured) == tmp_path / "cfg.json"
    assert annotation.users_file_path(configured, str(tmp_path / "flag.json")) == tmp_path / "flag.json"


def test_guidelines_come_from_the_config_the_run_dir_or_the_bundle(tmp_path):
    cfg = load_config([f"run_dir={tmp_path}"])
    assert annotation.guidelines_text(cfg) == DEFAULT_GUIDELINES and "faithful" in DEFAULT_GUIDELINES.lower()
    (tmp_path / "guidelines.md").write_text("# Team rules\nPrefer texture.")
    assert annotation.guidelines_text(cfg) == "# Team rules\nPrefer texture."
    own = tmp_path / "ours.md"
    own.write_text("ours")
    assert annotation.guidelines_text(load_config([f"run_dir={tmp_path}", f"store.guidelines={own}"])) == "ours"
    with pytest.raises(FileNotFoundError, match="store.guidelines=.*missing.md: no such file"):
        annotation.guidelines_text(load_config([f"run_dir={tmp_path}", f"store.guidelines={tmp_path / 'missing.md'}"]))


def test_users_add_command_reads_the_password_from_stdin(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(annotation.USERS_FILE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("piped-password\n"))
    assert annotation.add_user(load_config([f"run_dir={tmp_path}"]), "carol", admin=True, users_file=None) == 0
    assert verify(tmp_path / "users.json", "carol", "piped-password").admin
    assert "admin carol saved" in capsys.readouterr().out
