"""Which sampler validation and dspo-eval use: the candidates', except where seeds would repeat."""

from __future__ import annotations

import pytest

from trainer.validation import SEED_DEPENDENT_STEPS, sampler_settings


def rows_made_with(**params):
    return [{"candidate_params": [params, {**params, "guidance": 9.0}]}]


def chosen(*args, seeds):
    settings = sampler_settings(*args, seeds=seeds)
    return settings.steps, settings.guidance, settings.strength


def test_the_first_candidates_settings_are_used_unless_overridden():
    rows = rows_made_with(steps=20, guidance=0.8, strength=0.7)
    assert chosen(None, None, None, rows, seeds=4) == (20, 0.8, 0.7)
    assert chosen(5, 1.0, 1.0, rows, seeds=4) == (5, 1.0, 1.0)


@pytest.mark.parametrize("seeds, steps", [(1, 1), (2, SEED_DEPENDENT_STEPS), (4, SEED_DEPENDENT_STEPS)])
def test_one_step_candidates_are_sampled_with_more_steps_only_when_seeds_must_differ(seeds, steps):
    settings = sampler_settings(None, None, None, rows_made_with(steps=1, guidance=0.4), seeds=seeds)
    assert (settings.steps, settings.guidance) == (steps, 0.4)
    assert ("do not depend on the seed" in settings.note) == (steps != 1)


def test_one_step_asked_for_is_kept():
    assert sampler_settings(1, None, None, rows_made_with(steps=1), seeds=4).steps == 1


def test_rows_without_candidate_settings_fall_back_to_the_defaults():
    assert chosen(None, None, None, [{}], seeds=2) == (10, 1.0, 1.0)
