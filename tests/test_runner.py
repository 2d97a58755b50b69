"""Running a campaign: exact budget, slot determinism across workers and interruptions, a second run that
does nothing, refusing a changed experiment, settled failures, test isolation and what trials record."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

import ml_rnn_names.study.objective as objective_mod
import ml_rnn_names.study.runner as runner_mod
from ml_rnn_names.data import Splits, load_splits
from ml_rnn_names.errors import NonFiniteLossError, StudyMismatchError
from ml_rnn_names.study import Campaign, RunSummary
from ml_rnn_names.study.space import slot_params
from study_helpers import (
    TINY_MODELS,
    assert_exact_budget,
    assert_same_results,
    copy_names_dir,
    copy_sqlite,
    load_trials,
    slot_results,
    snapshot,
    sqlite_url,
    write_campaign,
)

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

N_TRIALS = 4
MODELS = list(TINY_MODELS)


@dataclass
class Reference:
    """One uninterrupted single-worker run of the standard tiny campaign."""

    toml: Path
    db: Path
    summary: RunSummary
    results: dict[tuple[str, int], Any]

    @property
    def url(self) -> str:
        return sqlite_url(self.db)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_data_dir: Path) -> Reference:
    folder = tmp_path_factory.mktemp("reference")
    toml = write_campaign(folder, data_dir=tiny_data_dir, n_trials=N_TRIALS)
    summary = Campaign.from_toml(toml).run()
    db = folder / "tiny.db"
    return Reference(toml, db, summary, slot_results(sqlite_url(db), "tiny", MODELS, N_TRIALS))


def _same_campaign(folder: Path, data_dir: Path, **kwargs: Any) -> Path:
    """The reference's campaign file in another folder (so its database lands there)."""
    return write_campaign(folder, data_dir=data_dir, n_trials=N_TRIALS, **kwargs)


# ------------------------------------------------------------------------------------- exact budget


def test_one_worker_runs_exactly_the_budget(reference: Reference, tiny_data_dir: Path) -> None:
    summary = reference.summary
    assert not summary.nothing_to_do
    assert summary.workers == 1 and summary.threads_per_worker == 1
    assert summary.before == {"RNN": N_TRIALS, "LSTM": N_TRIALS}
    trials = assert_exact_budget(reference.url, "tiny", MODELS, N_TRIALS)
    config = Campaign.from_toml(reference.toml).config
    for model, model_trials in trials.items():
        for trial in model_trials:
            slot = trial.user_attrs["slot"]
            assert trial.state == TrialState.COMPLETE
            assert trial.user_attrs["seed"] == config.base_seed + slot
            assert trial.user_attrs["attempt"] == 1
            assert trial.params == slot_params(config.model(model).params, config.sampler_seed, slot)
    for status in summary.after:
        assert (status.complete, status.running, status.waiting, status.failed_final) == (N_TRIALS, 0, 0, 0)
        assert status.remaining == 0 and status.failed_attempts == 0


@pytest.mark.parametrize("workers", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_several_workers_run_the_budget_with_the_same_results(
    workers: int,
    reference: Reference,
    tmp_path: Path,
    tiny_data_dir: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Spawned workers on one SQLite file: no slot twice, none lost, no lock errors, and each slot's
    value is bitwise the single worker's (same seeds, one thread each)."""
    toml = _same_campaign(tmp_path, tiny_data_dir)
    summary = Campaign.from_toml(toml).run(workers=workers)
    err = capfd.readouterr().err
    assert summary.exit_codes == [0] * workers
    assert "database is locked" not in err
    assert "Traceback" not in err
    url = sqlite_url(tmp_path / "tiny.db")
    assert_exact_budget(url, "tiny", MODELS, N_TRIALS)
    assert_same_results(slot_results(url, "tiny", MODELS, N_TRIALS), reference.results)
    assert all(s.complete == N_TRIALS and s.remaining == 0 for s in summary.after)


def test_stopped_then_resumed_gives_the_same_results(
    reference: Reference, tmp_path: Path, tiny_data_dir: Path
) -> None:
    toml = _same_campaign(tmp_path, tiny_data_dir)
    first = Campaign.from_toml(toml).run(max_trials=3)
    # claims go by lowest slot, models interleaved: RNN 0, LSTM 0, RNN 1
    counts = {s.model: (s.complete, s.running, s.waiting, s.remaining) for s in first.after}
    assert counts == {"RNN": (2, 0, 2, 2), "LSTM": (1, 0, 3, 3)}
    url = sqlite_url(tmp_path / "tiny.db")
    assert [len(load_trials(url, f"tiny/{m}")) for m in MODELS] == [N_TRIALS, N_TRIALS]  # all enqueued

    second = Campaign.from_toml(toml).run()
    assert not second.nothing_to_do
    assert second.before == {"RNN": 2, "LSTM": 3}
    assert_exact_budget(url, "tiny", MODELS, N_TRIALS)
    assert_same_results(slot_results(url, "tiny", MODELS, N_TRIALS), reference.results)


def test_a_second_run_does_nothing(reference: Reference, tmp_path: Path) -> None:
    db = copy_sqlite(reference.db, tmp_path / "copy.db")
    url = sqlite_url(db)
    before = snapshot(url, [f"tiny/{m}" for m in MODELS])
    for workers in (1, 3):
        summary = Campaign.from_toml(reference.toml, storage=url).run(workers=workers)
        assert summary.nothing_to_do
        assert summary.exit_codes == []  # no worker was started
        assert all(s.complete == N_TRIALS and s.remaining == 0 for s in summary.after)
    assert snapshot(url, [f"tiny/{m}" for m in MODELS]) == before


# ------------------------------------------------------------------------------------------ mismatch


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (["search.hidden_size.choices=[4, 16]"], "search space param hidden_size: stored choices [4, 8]"),
        (["models.LSTM.search.num_layers.choices=[1, 3]"], "search space param num_layers"),
        (["search.learning_rate.low=0.01"], "search space param learning_rate: stored float [0.05, 0.3]"),
        ([f"campaign.n_trials={N_TRIALS + 1}"], f"n_trials: stored {N_TRIALS}, now {N_TRIALS + 1}"),
        (["campaign.sampler_seed=1"], "sampler_seed: stored 0, now 1"),
        ("data", "data_fingerprint: stored"),
    ],
)
def test_reopening_a_changed_experiment_is_refused(
    change: list[str] | str, expected: str, reference: Reference, tmp_path: Path, tiny_data_dir: Path
) -> None:
    db = copy_sqlite(reference.db, tmp_path / "copy.db")
    url = sqlite_url(db)
    names = [f"tiny/{m}" for m in MODELS]
    before = snapshot(url, names)
    if change == "data":
        changed = copy_names_dir(tiny_data_dir, tmp_path / "names", rename=("Alpha", "Zzyzx"))
        overrides = [f"data.dir={json.dumps(str(changed))}"]
    else:
        overrides = list(change)
    campaign = Campaign.from_toml(reference.toml, overrides=overrides, storage=url)
    with pytest.raises(StudyMismatchError) as info:
        campaign.run()
    message = str(info.value)
    assert expected in message, message
    assert "already exists for a different experiment" in message
    assert "Nothing was changed" in message
    assert snapshot(url, names) == before


# ------------------------------------------------------------------------------------------ failures


def test_non_finite_loss_is_a_settled_failure(
    tmp_path: Path, tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slot 1 diverges (deterministically: same params, same seed): FAIL non_finite, never re-run;
    the other slots complete."""
    real_train = objective_mod.train

    def diverging(model: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs["seed"] == 1:
            raise NonFiniteLossError(
                "training loss became nan at epoch 1, batch 0 (learning_rate=0.1); lower the learning rate",
                epoch=1,
                batch=0,
                value=math.nan,
            )
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(objective_mod, "train", diverging)
    toml = write_campaign(tmp_path, data_dir=tiny_data_dir, n_trials=3)
    summary = Campaign.from_toml(toml).run()
    url = sqlite_url(tmp_path / "tiny.db")
    for model in MODELS:
        trials = load_trials(url, f"tiny/{model}")
        assert len(trials) == 3
        by_slot = {t.user_attrs["slot"]: t for t in trials}
        assert by_slot[1].state == TrialState.FAIL
        assert by_slot[1].user_attrs["fail_kind"] == "non_finite"
        assert "lower the learning rate" in by_slot[1].user_attrs["fail_reason"]
        assert by_slot[0].state == by_slot[2].state == TrialState.COMPLETE
    for status in summary.after:
        assert (status.complete, status.failed_final, status.remaining, status.waiting) == (2, 1, 0, 0)

    again = Campaign.from_toml(toml).run()
    assert again.nothing_to_do
    assert [len(load_trials(url, f"tiny/{m}")) for m in MODELS] == [3, 3]


def test_a_huge_learning_rate_really_diverges(tmp_path: Path, tiny_data_dir: Path) -> None:
    """No mock: with learning rate 1e38 the loss overflows on the tiny data, and the trial says so."""
    toml = write_campaign(tmp_path, data_dir=tiny_data_dir, n_trials=2, models={"RNN": {}})
    campaign = Campaign.from_toml(toml, overrides=["search.learning_rate=1e38"])
    summary = campaign.run()
    trials = load_trials(sqlite_url(tmp_path / "tiny.db"), "tiny/RNN")
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]  # each slot once, not retried
    for trial in trials:
        assert trial.user_attrs["fail_kind"] == "non_finite"
        reason = trial.user_attrs["fail_reason"]
        assert "became inf" in reason or "became nan" in reason, reason
    assert summary.after[0].failed_final == 2 and summary.after[0].best_value is None
    assert campaign.run().nothing_to_do


def test_an_error_is_retried_with_the_same_params_then_settles(
    tmp_path: Path, tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash (not a divergence) re-runs the slot with the same params and seed; a slot that keeps
    crashing settles as failed after two attempts instead of looping."""
    real_train = objective_mod.train
    calls: dict[int, int] = {}

    def flaky(model: Any, *args: Any, **kwargs: Any) -> Any:
        seed = kwargs["seed"]
        calls[seed] = calls.get(seed, 0) + 1
        if seed == 0 and calls[seed] == 1:
            raise RuntimeError("transient failure")
        if seed == 1:
            raise RuntimeError("always fails")
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(objective_mod, "train", flaky)
    toml = write_campaign(tmp_path, data_dir=tiny_data_dir, n_trials=2, models={"RNN": {}})
    summary = Campaign.from_toml(toml).run()
    trials = load_trials(sqlite_url(tmp_path / "tiny.db"), "tiny/RNN")
    slot0 = [t for t in trials if t.user_attrs["slot"] == 0]
    slot1 = [t for t in trials if t.user_attrs["slot"] == 1]
    assert [t.state for t in slot0] == [TrialState.FAIL, TrialState.COMPLETE]
    assert [t.user_attrs["attempt"] for t in slot0] == [1, 2]
    assert slot0[0].params == slot0[1].params and slot0[0].user_attrs["seed"] == slot0[1].user_attrs["seed"]
    assert slot0[0].user_attrs["fail_kind"] == "error"
    assert "transient failure" in slot0[0].user_attrs["fail_reason"]
    assert [t.state for t in slot1] == [TrialState.FAIL, TrialState.FAIL]
    assert [t.user_attrs["fail_kind"] for t in slot1] == ["error", "error"]
    status = summary.after[0]
    assert (status.complete, status.failed_final, status.remaining, status.failed_attempts) == (1, 1, 0, 3)
    assert Campaign.from_toml(toml).run().nothing_to_do


# ------------------------------------------------------------------------------------ test isolation


def test_the_objective_never_sees_test_data(
    tmp_path: Path, tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[dict[str, Any]] = []
    searched: list[Splits] = []
    seen: list[tuple[Any, Any]] = []
    real_load_splits, real_search_data, real_run_trial = (
        runner_mod.load_splits,
        runner_mod.load_search_data,
        runner_mod.run_trial,
    )

    def recording_load_splits(*args: Any, **kwargs: Any) -> Splits:
        loads.append(kwargs)
        return real_load_splits(*args, **kwargs)

    def recording_search_data(config: Any) -> Splits:
        splits = real_search_data(config)
        searched.append(splits)
        return splits

    def recording_run_trial(trial: Any, **kwargs: Any) -> float:
        assert not any("test" in key for key in kwargs), sorted(kwargs)
        seen.append((kwargs["train_set"], kwargs["val_set"]))
        return real_run_trial(trial, **kwargs)

    monkeypatch.setattr(runner_mod, "load_splits", recording_load_splits)
    monkeypatch.setattr(runner_mod, "load_search_data", recording_search_data)
    monkeypatch.setattr(runner_mod, "run_trial", recording_run_trial)
    toml = write_campaign(tmp_path, data_dir=tiny_data_dir, n_trials=1)
    Campaign.from_toml(toml).run()

    assert loads and all(kwargs.get("include_test") is False for kwargs in loads)
    assert searched and all(splits.test is None for splits in searched)
    assert len(seen) == 2  # one trial per model
    full = load_splits(tiny_data_dir, validation_split=0.15, seed=2024)
    assert full.test is not None

    def pairs(dataset: Any) -> set[tuple[str, int]]:
        return set(zip(dataset.names, dataset.targets.tolist(), strict=True))

    test_pairs = pairs(full.test)
    assert test_pairs
    for train_set, val_set in seen:
        assert pairs(train_set) == pairs(full.train) and pairs(val_set) == pairs(full.val)
        assert not (pairs(train_set) | pairs(val_set)) & test_pairs
        assert len(train_set) + len(val_set) + len(full.test) == 120


# ------------------------------------------------------------------------------ what trials record


def test_trials_record_curves_metrics_and_environment(reference: Reference) -> None:
    for model in MODELS:
        for trial in load_trials(reference.url, f"tiny/{model}"):
            attrs = trial.user_attrs
            n_epoch = trial.params["n_epoch"]
            assert len(attrs["train_losses"]) == len(attrs["val_losses"]) == n_epoch
            assert all(math.isfinite(v) and v > 0 for v in attrs["train_losses"] + attrs["val_losses"])
            assert trial.value == attrs["val_losses"][-1]
            # one intermediate value per epoch, as the dashboards' learning curves need
            assert trial.intermediate_values == {e: v for e, v in enumerate(attrs["val_losses"], start=1)}
            assert 0.0 <= attrs["val_accuracy"] <= 1.0 and 0.0 <= attrs["val_macro_f1"] <= 1.0
            assert attrs["wall_time_s"] > 0
            assert attrs["device"] == "cpu"
            assert attrs["threads"] == 1
            assert {"slot", "seed", "attempt"} <= set(attrs)


def test_status_reports_counts_and_the_best_trial(reference: Reference) -> None:
    campaign = Campaign.from_toml(reference.toml)
    rows = {row.model: row for row in campaign.status()}
    assert list(rows) == MODELS
    best = campaign.best()
    for model in MODELS:
        row = rows[model]
        assert row.study_name == f"tiny/{model}" and row.n_trials == N_TRIALS
        assert (row.complete, row.running, row.waiting, row.failed_final, row.remaining) == (
            N_TRIALS,
            0,
            0,
            0,
            0,
        )
        values = {slot: r["value"] for (m, slot), r in reference.results.items() if m == model}
        assert row.best_value == min(values.values())
        assert values[row.best_slot] == row.best_value
        assert best[model].value == row.best_value and best[model].params == row.best_params


def test_queued_slots_already_carry_their_params(tmp_path: Path, tiny_data_dir: Path) -> None:
    """A slot's WAITING trial is stored with its params and distributions, so the dashboard shows
    what is queued and the objective's suggest_* calls read them instead of writing a row each."""
    toml = write_campaign(tmp_path, data_dir=str(tiny_data_dir), n_trials=3)
    campaign = Campaign.from_toml(toml)
    opened = campaign.open()  # creates the studies and queues every slot; nothing runs
    for model, study in opened.studies.items():
        space = campaign.config.model(model).params
        waiting = sorted(study.get_trials(states=(TrialState.WAITING,)), key=lambda t: t.user_attrs["slot"])
        assert [t.user_attrs["slot"] for t in waiting] == [0, 1, 2]
        for trial in waiting:
            assert trial.params == slot_params(space, campaign.config.sampler_seed, trial.user_attrs["slot"])
            assert set(trial.distributions) == {spec.name for spec in space}
