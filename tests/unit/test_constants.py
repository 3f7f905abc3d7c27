"""schemas/constants.py: the one definition of values that settings, schemas and stages share."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from pipeline.config import load_config
from pipeline.settings.emit import Splits
from schemas import constants
from schemas.dataset import SPLITS
from schemas.scores import COMPOSITE, MAP
from stages.emit.judgements import RULES
from stages.pair import UNCERTAIN
from stages.segmenters import SEGMENTERS


def test_every_user_reads_the_one_definition():
    assert (MAP, COMPOSITE) == constants.SCORE_MODES
    assert RULES is constants.JUDGEMENT_RULES and UNCERTAIN is constants.UNCERTAIN_PAIRS
    assert SEGMENTERS is constants.SEGMENTERS and SPLITS is constants.SPLITS
    assert tuple(f.name for f in dataclasses.fields(Splits)) == constants.SPLITS
    assert tuple(load_config().emit.splits) == constants.SPLITS  # the shipped defaults too


def test_the_settings_refuse_what_the_constants_leave_out():
    for key, good in (("score.mode", "composite"), ("pair.uncertain", "review"), ("segment.segmenter", "sam"),
                      ("emit.judgements.rule", "dawid_skene"), ("sample.on_missing_gpu", "error")):
        load_config([f"{key}={good}"])
        try:
            load_config([f"{key}=nonsense"])
        except ValueError as err:
            assert key in str(err)
        else:
            raise AssertionError(f"{key}=nonsense was accepted")
    load_config([f"sample.num_candidates={constants.MAX_CANDIDATES}"])
    try:
        load_config([f"sample.num_candidates={constants.MAX_CANDIDATES + 1}"])
    except ValueError as err:
        assert "sample.num_candidates" in str(err)
    else:
        raise AssertionError("sample.num_candidates above MAX_CANDIDATES was accepted")


def test_constants_import_nothing():
    """Light: reading them loads no table module (nor the datasets library under those)."""
    code = "import sys, schemas.constants\nprint(sorted(m for m in sys.modules if m.startswith(('datasets', 'schemas.'))))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['schemas.constants']"
