"""Slot → params: a pure function of (space, sampler seed, slot), shared across models, inside the space,
and the one function that turns a trial into params."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from ml_rnn_names.study.config import CampaignConfig, ParamSpec, load_campaign
from ml_rnn_names.study.space import distribution, params_from_trial, slot_params
from study_helpers import write_campaign

WIDE_SEARCH = {
    "hidden_size": {"choices": [4, 8, 16]},
    "learning_rate": {"low": 0.001, "high": 0.5, "log": True},
    "n_batch_size": {"low": 8, "high": 64, "step": 8},
    "n_epoch": 3,  # a fixed value
}
WIDE_MODELS = {"RNN": {}, "LSTM": {"num_layers": {"low": 1, "high": 4}}}


@pytest.fixture
def config(tmp_path: Path) -> CampaignConfig:
    return load_campaign(write_campaign(tmp_path, search=WIDE_SEARCH, models=WIDE_MODELS))


def _within(spec: ParamSpec, value: object) -> bool:
    if spec.kind == "fixed":
        return value == spec.value
    if spec.kind == "categorical":
        return value in spec.choices
    assert isinstance(value, int | float) and not isinstance(value, bool)
    if not spec.low <= value <= spec.high:  # type: ignore[operator]
        return False
    if spec.kind == "int":
        return isinstance(value, int) and (value - spec.low) % (spec.step or 1) == 0  # type: ignore[operator]
    return isinstance(value, float)


def test_slot_params_is_a_pure_function(config: CampaignConfig) -> None:
    space = config.model("LSTM").params
    first = [slot_params(space, 0, slot) for slot in range(20)]
    again = [slot_params(space, 0, slot) for slot in reversed(range(20))][::-1]
    assert first == again
    assert [slot_params(tuple(reversed(space)), 0, s) for s in range(20)] == first  # order of declaration


def test_slot_params_is_the_same_in_another_process(tmp_path: Path) -> None:
    """No hash randomisation or process state leaks in: another interpreter draws the same params
    and computes the same config hash."""
    path = write_campaign(tmp_path, search=WIDE_SEARCH, models=WIDE_MODELS)
    config = load_campaign(path)
    here = {
        "params": [slot_params(config.model(m).params, 7, s) for m in config.model_names for s in range(10)],
        "hash": config.config_hash(),
    }
    code = (
        "import json, sys\n"
        "from ml_rnn_names.study.config import load_campaign\n"
        "from ml_rnn_names.study.space import slot_params\n"
        "c = load_campaign(sys.argv[1])\n"
        "print(json.dumps({'params': [slot_params(c.model(m).params, 7, s) for m in c.model_names "
        "for s in range(10)], 'hash': c.config_hash()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},
        timeout=120,
    ).stdout
    there = json.loads(out)
    assert there["hash"] == here["hash"]
    assert there["params"] == json.loads(json.dumps(here["params"]))  # floats survive JSON exactly


def test_slots_differ_and_seeds_matter(config: CampaignConfig) -> None:
    space = config.model("RNN").params
    lrs = [slot_params(space, 0, slot)["learning_rate"] for slot in range(30)]
    assert len(set(lrs)) == 30  # a continuous param never repeats
    assert len({json.dumps(slot_params(space, 0, s), sort_keys=True) for s in range(30)}) == 30
    assert [slot_params(space, 1, s) for s in range(5)] != [slot_params(space, 0, s) for s in range(5)]
    with pytest.raises(ValueError, match="slot"):
        slot_params(space, 0, -1)


def test_values_lie_within_the_space(config: CampaignConfig) -> None:
    for model in config.model_names:
        space = config.model(model).params
        seen: dict[str, set[object]] = {p.name: set() for p in space}
        for slot in range(200):
            params = slot_params(space, 3, slot)
            assert sorted(params) == sorted(p.name for p in space)
            for spec in space:
                assert _within(spec, params[spec.name]), (spec, params[spec.name])
                assert not hasattr(params[spec.name], "dtype")  # plain Python values (JSON, storage)
                seen[spec.name].add(params[spec.name])
        by_name = {p.name: p for p in space}
        assert seen["hidden_size"] == {4, 8, 16}  # every choice is drawn
        assert seen["n_epoch"] == {3}
        assert seen["n_batch_size"] <= set(range(8, 65, 8)) and len(seen["n_batch_size"]) > 4
        lr = by_name["learning_rate"]
        assert min(seen["learning_rate"]) < 0.01 < 0.1 < max(seen["learning_rate"])  # log scale
        assert all(lr.low <= v <= lr.high for v in seen["learning_rate"])  # type: ignore[operator]


def test_shared_params_are_equal_across_models(config: CampaignConfig) -> None:
    rnn, lstm = config.model("RNN").params, config.model("LSTM").params
    for slot in range(20):
        a, b = slot_params(rnn, 0, slot), slot_params(lstm, 0, slot)
        assert {k: b[k] for k in a} == a
        assert set(b) - set(a) == {"num_layers"}


def test_adding_a_param_shifts_nothing_else(config: CampaignConfig) -> None:
    """One stream per param: a model-specific param (or a new one) leaves every other draw alone."""
    space = config.model("RNN").params
    more = (*space, ParamSpec("zz_extra", "categorical", choices=(1, 2)))
    for slot in range(10):
        base, with_extra = slot_params(space, 0, slot), slot_params(more, 0, slot)
        assert {k: with_extra[k] for k in base} == base


def test_params_from_a_fixed_trial_round_trip(config: CampaignConfig) -> None:
    for model in config.model_names:
        space = config.model(model).params
        for slot in range(10):
            params = slot_params(space, 0, slot)
            assert params_from_trial(optuna.trial.FixedTrial(params), space) == params


def test_params_from_an_enqueued_trial_round_trip(config: CampaignConfig) -> None:
    """The search path: a WAITING trial enqueued with the slot's params, asked for, gives them back."""
    space = config.model("LSTM").params
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=99))
    wanted = [slot_params(space, 0, slot) for slot in range(5)]
    for params in wanted:
        study.enqueue_trial(params)
    got = []
    for _ in wanted:
        trial = study.ask()
        got.append(params_from_trial(trial, space))
        study.tell(trial, 1.0)
    assert got == wanted
    assert [t.params for t in study.trials] == wanted
    for spec in space:  # the study records each param with the space's distribution
        assert study.trials[0].distributions[spec.name] == distribution(spec)
    assert all(math.isfinite(t.value) for t in study.trials)  # type: ignore[arg-type]
