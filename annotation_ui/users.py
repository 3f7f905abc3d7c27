"""The annotators' logins: a JSON file of names with salted scrypt hashes and an admin flag.

The file never holds a password; ``verify`` recomputes the hash with the stored salt and
compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

# scrypt cost (RFC 7914 interactive-login parameters): ~50 ms and 16 MiB per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD_LENGTH = 8


class UsersFileError(ValueError):
    """The users file or a user entry is unusable; the message says which and why."""


@dataclass(frozen=True)
class User:
    name: str
    admin: bool


def _hash(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def load_users(path: str | Path) -> dict[str, dict]:
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UsersFileError(f"users file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
        raise UsersFileError(f"users file {path} must be an object with a 'users' mapping")
    return data["users"]


def require_users(path: str | Path) -> None:
    """Fail early, with the fix, when nobody could log in."""
    if not load_users(path):
        raise UsersFileError(f"no users in {path}: add one with `pipeline users add NAME [--admin]`")


def add_user(path: str | Path, name: str, password: str, admin: bool = False) -> User:
    """Add ``name`` (or replace their password and role) in the users file, written atomically
    and readable by the owner only."""
    if not NAME_PATTERN.match(name):
        raise UsersFileError(f"user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsersFileError(f"password for {name}: at least {MIN_PASSWORD_LENGTH} characters")
    path = Path(path)
    users = load_users(path)
    salt = secrets.token_bytes(16)
    users[name] = {
        "scrypt": {"n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
        "salt": salt.hex(),
        "hash": _hash(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P).hex(),
        "admin": bool(admin),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"users": users}, handle, indent=1, sort_keys=True)
    os.replace(temporary, path)
    return User(name=name, admin=bool(admin))


def verify(path: str | Path, name: str, password: str) -> User | None:
    """The user when ``password`` is theirs, else None (unknown names cost as much as known ones)."""
    entry = load_users(path).get(name)
    if entry is None:
        _hash(password, b"\0" * 16, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return None
    params = entry.get("scrypt", {})
    try:
        expected = bytes.fromhex(entry["hash"])
        actual = _hash(password, bytes.fromhex(entry["salt"]), params["n"], params["r"], params["p"])
    except (KeyError, ValueError) as err:
        raise UsersFileError(f"users file {path}: entry for {name!r} is malformed ({err})") from None
    if not hmac.compare_digest(expected, actual):
        return None
    return User(name=name, admin=bool(entry.get("admin", False)))


def is_admin(path: str | Path, name: str) -> bool:
    return bool(load_users(path).get(name, {}).get("admin", False))
