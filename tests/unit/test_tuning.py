"""Hyper-parameter search on the validation split."""

from __future__ import annotations

import pandas as pd
import pytest

from mfrec.training.config import ALS_EXPLICIT, ALS_IMPLICIT, TrainingConfig
from mfrec.training.synthetic import synthetic_ratings
from mfrec.training.tuning import SEARCH_SPACES, format_trials, tune


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_ratings(120, 80, 4_000, factors=4, seed=5)


def test_returns_the_best_of_its_trials(frame: pd.DataFrame) -> None:
    result = tune(frame, "rating", ALS_EXPLICIT, trials=4, seed=3)
    assert len(result.trials) == 4
    best = min(result.trials, key=lambda trial: trial.value)
    assert result.best == best.config
    assert all(trial.metric == "rmse" for trial in result.trials)


def test_the_first_trial_is_the_defaults(frame: pd.DataFrame) -> None:
    result = tune(frame, "rating", ALS_EXPLICIT, trials=2, seed=3)
    defaults = TrainingConfig(algorithm=ALS_EXPLICIT, seed=3, validation_fraction=0.0).resolved()
    assert result.trials[0].config == defaults


def test_draws_stay_in_the_search_space_and_repeat_for_a_seed(frame: pd.DataFrame) -> None:
    first = tune(frame, "rating", ALS_EXPLICIT, trials=3, seed=8)
    second = tune(frame, "rating", ALS_EXPLICIT, trials=3, seed=8)
    assert [t.config for t in first.trials] == [t.config for t in second.trials]
    assert [t.value for t in first.trials] == [t.value for t in second.trials]
    space = SEARCH_SPACES[ALS_EXPLICIT]
    for trial in first.trials[1:]:
        assert trial.config.regularization in space["regularization"]
        assert trial.config.factors in space["factors"]


def test_ranking_protocol_maximizes_ndcg(frame: pd.DataFrame) -> None:
    result = tune(frame, "ranking", ALS_IMPLICIT, trials=3, seed=1)
    best = max(result.trials, key=lambda trial: trial.value)
    assert result.best == best.config and best.metric == "ndcg@10"


def test_format_trials_marks_the_best(frame: pd.DataFrame) -> None:
    result = tune(frame, "rating", ALS_EXPLICIT, trials=3, seed=2)
    table = format_trials(result).splitlines()
    assert "rmse" in table[0] and len(table) == 4
    assert table[1].startswith("*") and all(not line.startswith("*") for line in table[2:])


def test_rejects_what_it_cannot_score(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="ranking"):
        tune(frame, "rating", ALS_IMPLICIT)
    with pytest.raises(ValueError, match="protocol"):
        tune(frame, "clicks", ALS_EXPLICIT)
    with pytest.raises(ValueError, match="trials"):
        tune(frame, "rating", ALS_EXPLICIT, trials=0)
