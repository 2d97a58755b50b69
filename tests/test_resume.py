"""Killing a run and running it again: the exact budget, and the uninterrupted run's values.

The run under test is the CLI in a subprocess (``python -m ml_rnn_names.cli run CAMPAIGN -q``), killed
once a trial is RUNNING with some epochs reported and more to go; the storage is read with plain Optuna.
Heartbeats are short (1 s, grace 2 s) so the killed trial is found stale within seconds.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

import ml_rnn_names.study.runner as runner_mod
from ml_rnn_names.study import Campaign
from ml_rnn_names.study.slots import fail_kind
from ml_rnn_names.study.space import slot_params
from study_helpers import (
    TINY_MODELS,
    TINY_SEARCH,
    assert_exact_budget,
    assert_same_results,
    load_trials,
    slot_results,
    sqlite_url,
    start_cli,
    stop,
    wait_for_mid_trial,
    write_campaign,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]

N_TRIALS = 3
MODELS = list(TINY_MODELS)
NAMES = [f"tiny/{m}" for m in MODELS]
#: Enough epochs that a trial seen after its first epoch is still training when the signal lands.
SEARCH = {**TINY_SEARCH, "n_epoch": {"choices": [6, 8]}}


def _campaign(folder: Path, data_dir: Path) -> Path:
    return write_campaign(folder, data_dir=data_dir, n_trials=N_TRIALS, search=SEARCH)


@dataclass
class Reference:
    results: dict[tuple[str, int], Any]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_data_dir: Path) -> Reference:
    """The same campaign run once, uninterrupted, in a fresh database."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    Campaign.from_toml(_campaign(folder, tiny_data_dir)).run()
    return Reference(slot_results(sqlite_url(folder / "tiny.db"), "tiny", MODELS, N_TRIALS))


def _running(url: str, models: list[str] = MODELS) -> list[tuple[str, Any]]:
    return [
        (model, t)
        for model in models
        for t in load_trials(url, f"tiny/{model}")
        if t.state == TrialState.RUNNING
    ]


def _slot_trials(url: str, model: str, slot: int) -> list[Any]:
    return [t for t in load_trials(url, f"tiny/{model}") if t.user_attrs["slot"] == slot]


def test_sigkill_mid_trial_then_resume(reference: Reference, tmp_path: Path, tiny_data_dir: Path) -> None:
    toml = _campaign(tmp_path, tiny_data_dir)
    db = tmp_path / "tiny.db"
    url = sqlite_url(db)
    proc = start_cli("run", toml, "-q", cwd=tmp_path)
    name, seen = wait_for_mid_trial(proc, db, NAMES)
    stop(proc, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL

    # the killed worker left its trial RUNNING: nobody recorded anything for it
    running = _running(url)
    assert [t.number for _, t in running] == [seen.number], running
    model, killed = running[0]
    assert name == f"tiny/{model}"
    assert killed.intermediate_values and "fail_kind" not in killed.user_attrs
    slot = killed.user_attrs["slot"]

    summary = Campaign.from_toml(toml).run()
    assert not summary.nothing_to_do
    assert_exact_budget(url, "tiny", MODELS, N_TRIALS, extra={model: 1})
    assert_same_results(slot_results(url, "tiny", MODELS, N_TRIALS), reference.results)

    # the heartbeat check failed the killed trial; its slot re-ran with the same params and seed
    failed, redone = _slot_trials(url, model, slot)
    assert failed.number == killed.number
    assert failed.state == TrialState.FAIL and fail_kind(failed) == "stale"
    assert redone.state == TrialState.COMPLETE
    assert redone.params == failed.params == killed.params
    assert redone.user_attrs["seed"] == failed.user_attrs["seed"]
    assert (failed.user_attrs["attempt"], redone.user_attrs["attempt"]) == (1, 2)
    rows = {row.model: row for row in summary.after}
    assert rows[model].failed_attempts == 1 and rows[model].failed_final == 0
    assert all(row.complete == N_TRIALS and row.remaining == 0 for row in rows.values())


def test_sigterm_records_the_trial_as_interrupted_then_resume(
    reference: Reference, tmp_path: Path, tiny_data_dir: Path
) -> None:
    toml = _campaign(tmp_path, tiny_data_dir)
    db = tmp_path / "tiny.db"
    url = sqlite_url(db)
    proc = start_cli("run", toml, "-q", cwd=tmp_path)
    name, seen = wait_for_mid_trial(proc, db, NAMES)
    _, err = stop(proc, signal.SIGTERM)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert "interrupted" in err

    model = name.split("/")[1]
    assert not _running(url)  # nothing left RUNNING: the trial was closed, not abandoned
    slot = seen.user_attrs["slot"]
    interrupted = _slot_trials(url, model, slot)
    assert interrupted[0].number == seen.number
    assert interrupted[0].state == TrialState.FAIL
    assert interrupted[0].user_attrs["fail_kind"] == "interrupted"
    assert "SIGTERM" in interrupted[0].user_attrs["fail_reason"]
    assert [t.state for t in interrupted[1:]] == [TrialState.WAITING]  # already back in the queue

    summary = Campaign.from_toml(toml).run()
    assert not summary.nothing_to_do
    assert_exact_budget(url, "tiny", MODELS, N_TRIALS, extra={model: 1})
    assert_same_results(slot_results(url, "tiny", MODELS, N_TRIALS), reference.results)
    failed, redone = _slot_trials(url, model, slot)
    assert redone.state == TrialState.COMPLETE
    assert redone.params == failed.params
    assert redone.user_attrs["seed"] == failed.user_attrs["seed"]
    assert (failed.user_attrs["attempt"], redone.user_attrs["attempt"]) == (1, 2)
    assert Campaign.from_toml(toml).run().nothing_to_do


def test_a_worker_dying_right_after_its_claim_costs_only_that_trial(
    tmp_path: Path, tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The narrowest window: the trial is RUNNING but its worker never trained nor beat in execute_claim.
    It still carries a heartbeat (recorded before the claim), so the stale check frees its slot; without
    one it would stay RUNNING forever and every later run would wait for it."""

    class Died(BaseException):
        pass

    real_try_running = runner_mod._try_running

    def claim_then_die(storage: Any, trial_id: int) -> bool:
        real_try_running(storage, trial_id)
        raise Died

    monkeypatch.setattr(runner_mod, "_try_running", claim_then_die)
    toml = write_campaign(tmp_path, data_dir=tiny_data_dir, n_trials=2, models={"RNN": {}})
    with pytest.raises(Died):
        Campaign.from_toml(toml).run()
    monkeypatch.setattr(runner_mod, "_try_running", real_try_running)
    url = sqlite_url(tmp_path / "tiny.db")
    running = _running(url, ["RNN"])
    assert len(running) == 1
    dead = running[0][1]
    assert not dead.intermediate_values

    outcome: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: outcome.update(summary=Campaign.from_toml(toml).run()), daemon=True
    )
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the resumed run is still waiting for the dead worker's trial"
    assert "summary" in outcome  # the resumed run returned, it did not raise
    assert_exact_budget(url, "tiny", ["RNN"], 2, extra={"RNN": 1})
    failed, redone = _slot_trials(url, "RNN", dead.user_attrs["slot"])
    assert failed.number == dead.number and fail_kind(failed) == "stale"
    config = Campaign.from_toml(toml).config
    assert redone.state == TrialState.COMPLETE
    slot = failed.user_attrs["slot"]
    assert redone.params == slot_params(config.model("RNN").params, config.sampler_seed, slot)
    assert redone.user_attrs["seed"] == dead.user_attrs["seed"]
