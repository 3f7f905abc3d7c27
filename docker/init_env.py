"""``make compose-init``: write ``.env`` for docker compose from ``.env.example``, with a new random
value for each secret left empty. Run it again and it keeps every value already in ``.env`` (the
cluster's token and the database password must not change under running services); it only
fills secrets that are still empty or missing.

    python3 docker/init_env.py [--example .env.example] [--env .env]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

# Secret -> how a new value is made. Ray's own tokens are 32 random bytes in hex.
SECRETS = {
    "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(24),
    "RAY_AUTH_TOKEN": lambda: secrets.token_hex(32),
}
LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def read_values(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in map(LINE.match, text.splitlines()) if m}


def render(example: str, current: dict[str, str]) -> str:
    """``example`` with each variable set to its value in ``current`` when it has one, else a new
    secret for an empty secret, else the example's default; variables only in ``current`` are
    kept at the end."""
    lines, seen = [], set()
    for line in example.splitlines():
        match = LINE.match(line)
        if not match:
            lines.append(line)
            continue
        name, default = match.groups()
        seen.add(name)
        value = current.get(name) or default
        if name in SECRETS and not value:
            value = SECRETS[name]()
        lines.append(f"{name}={value}")
    lines += [f"{name}={value}" for name, value in current.items() if name not in seen]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--example", type=Path, default=root / ".env.example")
    parser.add_argument("--env", type=Path, default=root / ".env")
    args = parser.parse_args(argv)
    if not args.example.is_file():
        print(f"error: {args.example} not found", file=sys.stderr)
        return 2
    current = read_values(args.env.read_text()) if args.env.exists() else {}
    text = render(args.example.read_text(), current)
    # Readable by the owner only: it holds the database password and the cluster token.
    descriptor = os.open(args.env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(args.env, 0o600)
    made = [name for name in SECRETS if not current.get(name)]
    print(f"{args.env}: " + (f"new {', '.join(made)}" if made else "kept the existing secrets"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
