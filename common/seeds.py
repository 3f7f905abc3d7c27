"""Deterministic seeds and ids: every random draw in srprefs is seeded from (config seed, stage,
row id, ...), and every id is derived from content, so reruns and merges line up."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def seed_for(seed: int, stage: str, row_id: str, *extra: Any) -> int:
    """A 63-bit seed from (config seed, stage, row id, ...): the same inputs, the same draw."""
    text = "|".join(str(p) for p in (seed, stage, row_id, *extra))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def rng_for(seed: int, stage: str, row_id: str, *extra: Any) -> np.random.Generator:
    return np.random.default_rng(seed_for(seed, stage, row_id, *extra))


def content_id(*parts: Any, length: int = 16) -> str:
    """Content-derived id: first ``length`` hex chars of sha256 over the parts."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:length]
