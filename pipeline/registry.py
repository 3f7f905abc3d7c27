"""The stages in pipeline order, and what each reads and writes, derived from the stage classes.

``STAGE_CLASSES`` names each stage class once, in pipeline order. Its ``name``, ``input_tables``
and ``output_table`` class attributes are read from the class's source with ``ast`` instead of
importing it, so `pipeline --help` and `pipeline status` start without torch and pyiqa (which
several stage modules import); ``stage_class`` imports a class when a stage runs. A test checks
that what is read here equals the imported classes' attributes.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from pipeline.annotation import export_judgements
from pipeline.rundir import RunDir
from stages.base import Stage

STAGE_CLASSES = (
    "stages.ingest:IngestStage",
    "stages.degrade:DegradeStage",
    "stages.sample:SampleStage",
    "stages.segment:SegmentStage",
    "stages.score:ScoreStage",
    "stages.pair:PairStage",
    "stages.emit.stage:EmitStage",
)
# Tables that come from outside the pipeline, each with the one function that copies it into a
# run; a stage lists those it reads in ``Stage.external_tables``.
EXTERNAL_TABLES: dict[str, Callable[[DictConfig, RunDir], None]] = {"judgements": export_judgements}


class RegistryError(RuntimeError):
    """A stage class does not declare its contract as plain literals."""


@dataclass(frozen=True)
class StageInfo:
    """A stage's contract as its class declares it, and where the class lives (``module:Class``)."""

    name: str
    input_tables: tuple[str, ...]
    output_table: str
    target: str


CONTRACT = ("name", "input_tables", "output_table")


def read_stage_info(target: str) -> StageInfo:
    """The contract attributes of the class at ``target``, read from its source file."""
    module, class_name = target.split(":")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RegistryError(f"stage class {target}: module {module} not found")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    if node is None:
        raise RegistryError(f"stage class {target}: no class {class_name} in {spec.origin}")
    values = {}
    for statement in node.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            key, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            key, value = statement.target, statement.value
        else:
            continue
        if isinstance(key, ast.Name) and key.id in CONTRACT:
            try:
                values[key.id] = ast.literal_eval(value)
            except ValueError:
                raise RegistryError(
                    f"stage class {target}: '{key.id}' must be a literal (the registry reads it without importing)"
                ) from None
    missing = [key for key in CONTRACT if key not in values]
    if missing:
        raise RegistryError(f"stage class {target}: no literal {', '.join(missing)} in the class body")
    return StageInfo(values["name"], tuple(values["input_tables"]), values["output_table"], target)


STAGES: dict[str, StageInfo] = {info.name: info for info in map(read_stage_info, STAGE_CLASSES)}
ORDER = list(STAGES)
# Which stage writes each table (for "run stage X first" messages).
PRODUCERS = {info.output_table: name for name, info in STAGES.items()}
# The table whose shards drive each stage (its first input table).
PRIMARY_INPUT = {name: info.input_tables[0] for name, info in STAGES.items()}


def stage_class(name: str) -> type[Stage]:
    if name not in STAGES:
        raise KeyError(f"unknown stage '{name}'; stages: {', '.join(ORDER)} (or all)")
    module, class_name = STAGES[name].target.split(":")
    return getattr(importlib.import_module(module), class_name)
