"""SIGKILL a worker at five points of its life, resume, and find the campaign it would have been.

Each test runs the real CLI in a child process, kills it with SIGKILL (no handler, no cleanup) at one
exact point — mid-training, right after a trial is stored, right after a claim, mid-retraining in
finalize, right after finalize read the test split — then resumes and checks:

* exact budget: one COMPLETE trial per slot (per (model, seed) in finalize), nothing left RUNNING or
  WAITING, and the only extra trial is the killed one, failed as stale: a kill costs at most its trial;
* the same answer: every slot's params, seed, value and loss curves are bitwise those of an
  uninterrupted run (finalize: every seed's test loss, accuracy and predictions);
* nothing lost: every trial that was COMPLETE before the kill is unchanged.

On SQLite and, with ``$ML_RNN_NAMES_TEST_PG_URL``, PostgreSQL.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest
from fault_helpers import (
    MODELS,
    N_TRIALS,
    SEEDS,
    all_trials,
    assert_budget_after_kill,
    assert_unchanged,
    fault_campaign,
    final_names,
    final_results,
    search_names,
    sigkill,
    start_cli,
    start_paused,
    tail,
    wait_for_marker,
)
from optuna.trial import TrialState

from ml_rnn_names.study import Campaign
from ml_rnn_names.study.finalize import finalize_campaign
from ml_rnn_names.study.storage import sqlite_path
from storage_backends import backend_of
from study_helpers import assert_same_results, copy_sqlite, slot_results

pytestmark = pytest.mark.slow


def _live(trials: dict) -> dict:
    return {k: t for k, t in trials.items() if t.state in (TrialState.RUNNING, TrialState.WAITING)}


def _running(trials: dict) -> dict:
    return {k: t for k, t in trials.items() if t.state == TrialState.RUNNING}


# ------------------------------------------------------------------------------------------- search


def _on(backend: str, *args: object) -> object:
    """One (backend, case) parameter set; PostgreSQL ones are marked ``postgres``."""
    marks = [pytest.mark.postgres] if backend == "postgresql" else []
    return pytest.param(backend, *args, marks=marks, id="-".join(map(str, (backend, *args))))


@pytest.mark.parametrize(
    ("backend_url", "point", "skip"),
    [
        # the 2nd trial with epochs to go, after its 1st epoch (LSTM slot 0). On SQLite the same kill
        # (found by polling) is tests/test_resume.py::test_sigkill_mid_trial_then_resume
        _on("postgresql", "search-epoch", 1),
        # right after the 3rd result is stored as COMPLETE
        _on("sqlite", "search-told", 2),
        _on("postgresql", "search-told", 2),
        # the 3rd claim: WAITING → RUNNING done, training not started
        _on("sqlite", "claimed", 2),
        _on("postgresql", "claimed", 2),
    ],
    indirect=["backend_url"],
)
def test_sigkill_during_search_then_resume(
    point: str,
    skip: int,
    backend_url: str,
    reference,
    tmp_path: Path,
    tiny_data_dir: Path,
) -> None:
    toml = fault_campaign(tmp_path, tiny_data_dir)
    marker, log = tmp_path / "marker.json", tmp_path / "child.log"
    proc = start_paused(point, skip, marker, "run", toml, "--storage", backend_url, "-q", log=log)
    try:
        where = wait_for_marker(proc, marker, log)
    finally:
        sigkill(proc)
    assert proc.returncode == -9

    before = all_trials(backend_url, search_names())
    complete = [k for k, t in before.items() if t.state == TrialState.COMPLETE]
    running = _running(before)
    if point == "search-epoch":
        # killed mid-training: one RUNNING trial with epoch 1 of 2 reported
        ((_, trial),) = running.items()
        assert trial.number == where["trial"] and trial.params["n_epoch"] == 2
        assert sorted(trial.intermediate_values) == [1]
        assert len(complete) == 1
    elif point == "search-told":
        # killed right after a tell: that trial is COMPLETE and nothing runs
        assert not running and len(complete) == skip + 1
        assert any(t.number == where["trial"] and t.state == TrialState.COMPLETE for t in before.values())
    else:
        # killed right after a claim: RUNNING, nothing trained yet
        ((_, trial),) = running.items()
        assert not trial.intermediate_values and "val_losses" not in trial.user_attrs
        assert len(complete) == skip
    assert 0 < len(complete) < len(MODELS) * N_TRIALS

    started = time.monotonic()
    summary = Campaign.from_toml(toml, storage=backend_url).run()
    resumed_in = time.monotonic() - started
    assert not summary.nothing_to_do
    assert all(s.complete == N_TRIALS and s.remaining == 0 and s.running == 0 for s in summary.after)
    assert_budget_after_kill(backend_url, search_names(), N_TRIALS, killed=running)
    assert_same_results(slot_results(backend_url, "tiny", MODELS, N_TRIALS), reference.search)
    assert_unchanged(before, backend_url)
    assert resumed_in < 120, f"resume took {resumed_in:.0f}s"
    assert Campaign.from_toml(toml, storage=backend_url).run().nothing_to_do


def _complete_count(path: Path) -> int:
    """COMPLETE trials in an Optuna SQLite file, by one plain query: opening an Optuna storage per poll
    takes longer than a whole tiny trial, and the run would finish between two polls."""
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:  # the schema does not exist yet
        return 0


def test_sigkill_plain_cli_when_a_trial_completes(reference, tmp_path: Path, tiny_data_dir: Path) -> None:
    """The unmodified CLI, killed from outside as soon as the COMPLETE count rises (polling SQLite):
    wherever that lands — the next claim, the next trial's first batch — resume gives the same answer."""
    toml = fault_campaign(tmp_path, tiny_data_dir)
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    log = tmp_path / "child.log"
    proc = start_cli("run", toml, "-q", log=log, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before a kill point:\n{tail(log)}")
            assert time.monotonic() < deadline, tail(log)
            if _complete_count(tmp_path / "tiny.db") >= 2:
                break
            time.sleep(0.005)
    finally:
        sigkill(proc)
    assert proc.returncode == -9

    before = all_trials(url, search_names())
    assert 2 <= sum(t.state == TrialState.COMPLETE for t in before.values()) < len(MODELS) * N_TRIALS
    assert len(_running(before)) <= 1
    Campaign.from_toml(toml).run()
    assert_budget_after_kill(url, search_names(), N_TRIALS, killed=_running(before))
    assert_same_results(slot_results(url, "tiny", MODELS, N_TRIALS), reference.search)
    assert_unchanged(before, url)


# ----------------------------------------------------------------------------------------- finalize


@pytest.mark.parametrize(
    ("backend_url", "point", "skip"),
    [
        # retraining the 2nd (model, seed), after its first epoch
        *(_on(backend, "final-epoch", 1) for backend in ("sqlite", "postgresql")),
        # the 3rd (model, seed) has read the test split; nothing about it is recorded yet
        *(_on(backend, "final-tested", 2) for backend in ("sqlite", "postgresql")),
    ],
    indirect=["backend_url"],
)
def test_sigkill_during_finalize_then_resume(
    point: str,
    skip: int,
    backend_url: str,
    reference,
    tmp_path: Path,
    tiny_data_dir: Path,
) -> None:
    toml = fault_campaign(tmp_path, tiny_data_dir)
    path = sqlite_path(backend_url)
    if path is not None:
        copy_sqlite(reference.search_db, path)
    else:
        Campaign.from_toml(toml, storage=backend_url).run()
        assert_same_results(slot_results(backend_url, "tiny", MODELS, N_TRIALS), reference.search)

    marker, log = tmp_path / "marker.json", tmp_path / "child.log"
    proc = start_paused(point, skip, marker, "finalize", toml, "--storage", backend_url, "-q", log=log)
    try:
        wait_for_marker(proc, marker, log)
    finally:
        sigkill(proc)
    assert proc.returncode == -9

    before = all_trials(backend_url, final_names())
    complete = [k for k, t in before.items() if t.state == TrialState.COMPLETE]
    running = _running(before)
    assert len(complete) == skip and len(running) == 1
    ((_, killed),) = running.items()
    # the killed trial recorded no test result: the audit counts evaluations that produced results
    assert not any(k.startswith("test_") for k in killed.user_attrs), sorted(killed.user_attrs)

    campaign = Campaign.from_toml(toml, storage=backend_url)
    result = finalize_campaign(campaign)
    n_final = len(MODELS) * len(SEEDS)
    assert result.audit_count == n_final
    assert result.evaluated_now == n_final - skip
    assert_budget_after_kill(backend_url, final_names(), len(SEEDS), killed=running)
    assert final_results(backend_url) == reference.final
    assert_unchanged(before, backend_url)
    for model in MODELS:
        assert [s.seed for s in result.models[model].seeds] == list(SEEDS)
    # and finalize again evaluates nothing
    again = finalize_campaign(campaign)
    assert again.evaluated_now == 0 and again.audit_count == n_final
    assert not _live(all_trials(backend_url, final_names()))
    assert backend_of(backend_url) in ("sqlite", "postgresql")
