"""Bounds and choices of config keys, declared on the settings dataclasses' fields and checked
once the config is resolved, before any stage does any work.

A field declared ``num_candidates: int = bounded(2, 64)`` must lie in [2, 64]; a list field's
bounds apply to every element (and the list may not be empty); ``choices`` lists the allowed
values of a string key. ``None`` passes (keys typed ``X | None`` use it to mean "not set").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from omegaconf import MISSING

BOUNDS = "bounds"


@dataclasses.dataclass(frozen=True)
class Bounds:
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    # The low end itself is not allowed (e.g. a strength in (0, 1]).
    low_open: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is out of bounds, or None when it is fine."""
        if self.choices and value not in self.choices:
            return f"expected one of {', '.join(map(str, self.choices))}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None  # nan and inf are refused for every key (pipeline/config.py)
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and value > self.high
        if too_low or too_high:
            low = "-inf" if self.low is None else f"{self.low:g}"
            high = "inf" if self.high is None else f"{self.high:g}"
            return f"must lie in {'(' if self.low_open else '['}{low}, {high}]"
        return None


def bounded(low: float | None = None, high: float | None = None, *, choices: Sequence[Any] = (),
            low_open: bool = False) -> Any:
    """A settings field (value from the YAML defaults) that must lie in [low, high] or in ``choices``."""
    bounds = Bounds(low, high, tuple(choices), low_open)
    return dataclasses.field(default=MISSING, metadata={BOUNDS: bounds})


def bound_problems(settings_type: type, values: Any, prefix: str) -> list[str]:
    """Every out-of-bounds value of ``values`` (a config section of type ``settings_type``), as
    "key=value: problem" lines."""
    problems = []
    for field in dataclasses.fields(settings_type):
        key, value = f"{prefix}{field.name}", values[field.name]
        if dataclasses.is_dataclass(field.default_factory):  # a nested section
            problems += bound_problems(field.default_factory, value, key + ".")  # type: ignore[arg-type]
            continue
        bounds = field.metadata.get(BOUNDS)
        if bounds is None or value is None:
            continue
        if isinstance(value, (str, int, float)):
            items = [value]
        else:
            items = list(value)
            if not items:
                problems.append(f"{key}=[]: give at least one value")
        for item in items:
            problem = bounds.problem(item)
            if problem:
                shown = item if items == [value] else f"{list(value)} (element {item!r})"
                problems.append(f"{key}={shown}: {problem}")
    return problems
