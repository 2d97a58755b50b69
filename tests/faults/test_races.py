"""Races between worker processes: several workers for the last slot, many processes creating the same
campaign at once. Nothing may run twice, nothing may be created twice, and the answer is unchanged.

Every worker is the real CLI (``python -m ml_rnn_names.cli run``) in its own process, started together.
On SQLite and, with ``$ML_RNN_NAMES_TEST_PG_URL``, PostgreSQL.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterable
from pathlib import Path

import optuna
import pytest
from fault_helpers import (
    MODELS,
    N_TRIALS,
    all_trials,
    assert_unchanged,
    fault_campaign,
    search_names,
    sigkill,
    start_cli,
    start_paused,
    study_names,
    wait_for_marker,
    wait_ok,
)
from optuna.trial import TrialState

from ml_rnn_names.study import Campaign
from ml_rnn_names.study.storage import open_storage
from study_helpers import assert_same_results, complete_by_slot, load_trials, slot_results, sqlite_url

pytestmark = pytest.mark.slow


PREEMPTED = re.compile(r"(\w+) slot (\d+) \(trial (\d+)\): preempted")


def preempted_in(logs: Iterable[Path]) -> set[tuple[str, int]]:
    """(study, trial number) of every trial a worker logged as preempted: failed as stale by another
    worker while it still ran (a starved or stopped worker looks dead once its heartbeat is late)."""
    out = set()
    for log in logs:
        for model, _, number in PREEMPTED.findall(log.read_text(encoding="utf-8", errors="replace")):
            out.add((f"tiny/{model}", int(number)))
    return out


def assert_nothing_twice(url: str, preempted: set[tuple[str, int]]) -> int:
    """One COMPLETE trial per slot, nothing left live; duplicate claims never trained; a trial that
    trained without completing is one its worker logged as preempted. Returns the duplicate count."""
    duplicates = 0
    for name in search_names():
        trials = load_trials(url, name)
        complete_by_slot(trials, N_TRIALS)
        for t in trials:
            trained = "val_losses" in t.user_attrs or bool(t.intermediate_values)
            if t.user_attrs.get("fail_kind") == "duplicate":
                duplicates += 1
                assert t.state == TrialState.FAIL and not trained, t.user_attrs
            elif trained and t.state != TrialState.COMPLETE:
                assert (name, t.number) in preempted, f"{name} trial {t.number} trained, then {t.state.name}"
        live = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        assert not live, f"{name}: unfinished trials {live}"
    return duplicates


def assert_clean_logs(logs: Iterable[Path]) -> None:
    for log in logs:
        text = log.read_text(encoding="utf-8", errors="replace")
        assert "database is locked" not in text and "Traceback" not in text, text


@pytest.mark.parametrize(
    ("last_slot", "workers"),
    [
        ("waiting", 3),  # enqueued, never claimed: the claim itself is the race
        ("interrupted", 2),  # failed by SIGTERM: the slot must be re-enqueued once, not per worker
        ("stale", 4),  # RUNNING with a dead worker: failed as stale once, re-enqueued once
    ],
)
def test_workers_racing_for_the_last_slot(
    last_slot: str,
    workers: int,
    storage_url: str,
    reference,
    tmp_path: Path,
    tiny_data_dir: Path,
) -> None:
    toml = fault_campaign(tmp_path, tiny_data_dir)
    # claims go by lowest slot, models interleaved: after 5 trials only LSTM slot 2 is left
    Campaign.from_toml(toml, storage=storage_url).run(max_trials=len(MODELS) * N_TRIALS - 1)
    (last,) = [t for t in load_trials(storage_url, "tiny/LSTM") if t.state == TrialState.WAITING]
    assert last.user_attrs["slot"] == N_TRIALS - 1
    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=2)
    if last_slot in ("interrupted", "stale"):
        assert storage.set_trial_state_values(last._trial_id, TrialState.RUNNING)
        storage.record_heartbeat(last._trial_id)  # a worker that beat once, then died
    if last_slot == "interrupted":
        storage.set_trial_user_attr(last._trial_id, "fail_kind", "interrupted")
        storage.set_trial_state_values(last._trial_id, TrialState.FAIL)
    storage.engine.dispose()
    before = all_trials(storage_url, search_names())

    logs = [tmp_path / f"worker{i}.log" for i in range(workers)]
    procs = [start_cli("run", toml, "--storage", storage_url, "-q", log=log, cwd=tmp_path) for log in logs]
    wait_ok(procs, logs)

    preempted = preempted_in(logs)
    duplicates = assert_nothing_twice(storage_url, preempted)
    assert_same_results(slot_results(storage_url, "tiny", MODELS, N_TRIALS), reference.search)
    assert_unchanged(before, storage_url)
    rnn, lstm = (load_trials(storage_url, name) for name in search_names())
    assert len(rnn) == N_TRIALS  # the finished study was not touched
    retried = 1 if last_slot in ("interrupted", "stale") else 0
    assert len(lstm) == N_TRIALS + retried + duplicates + len(preempted)
    attempts = sorted(t.user_attrs["attempt"] for t in lstm if t.user_attrs["slot"] == N_TRIALS - 1)
    assert attempts == list(range(1, len(attempts) + 1))  # each retry is the next attempt, none twice
    assert_clean_logs(logs)


def test_many_processes_start_the_same_campaign_at_once(
    reference, tmp_path: Path, tiny_data_dir: Path
) -> None:
    """Six processes on a fresh SQLite storage (no file yet: creating the file, the schema and the
    studies race too): one study per model, created once, every slot enqueued once and run once, the
    same values as one worker alone. PostgreSQL: tests/test_postgres.py::
    test_processes_starting_at_once_create_one_study_per_model."""
    toml = fault_campaign(tmp_path, tiny_data_dir)
    storage_url = sqlite_url(tmp_path / "tiny.db")
    assert not (tmp_path / "tiny.db").exists()
    logs = [tmp_path / f"worker{i}.log" for i in range(6)]
    procs = [start_cli("run", toml, "-q", log=log, cwd=tmp_path) for log in logs]  # the default storage
    wait_ok(procs, logs)

    assert study_names(storage_url) == sorted(search_names())
    preempted = preempted_in(logs)
    duplicates = assert_nothing_twice(storage_url, preempted)
    assert duplicates == 0  # slots are enqueued under the campaign lock: there is nothing to duplicate
    assert_same_results(slot_results(storage_url, "tiny", MODELS, N_TRIALS), reference.search)
    for name in search_names():
        trials = load_trials(storage_url, name)
        assert len(trials) == N_TRIALS + sum(k[0] == name for k in preempted)
        study = optuna.load_study(study_name=name, storage=storage_url)
        assert study.user_attrs["ml_rnn_names"]["campaign"] == "tiny"
    assert_clean_logs(logs)


def test_a_stopped_worker_declared_dead_is_preempted_and_carries_on(
    reference, tmp_path: Path, tiny_data_dir: Path
) -> None:
    """SIGSTOP a worker mid-training for longer than the grace period: it looks dead, so another worker
    fails its trial as stale and re-runs the slot. Continued (SIGCONT), the stopped worker must notice,
    drop its result and exit cleanly: no crash, no second COMPLETE, the same values."""
    toml = fault_campaign(tmp_path, tiny_data_dir)
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    marker, log_a, log_b = tmp_path / "marker.json", tmp_path / "stopped.log", tmp_path / "other.log"
    stopped = start_paused("search-epoch", 0, marker, "run", toml, "-q", log=log_a)
    try:
        where = wait_for_marker(stopped, marker, log_a)
        os.kill(stopped.pid, signal.SIGSTOP)  # heartbeat thread included: from outside it looks dead
        other = start_cli("run", toml, "-q", log=log_b, cwd=tmp_path)
        wait_ok([other], [log_b])
        (tmp_path / "marker.json.go").touch()
        os.kill(stopped.pid, signal.SIGCONT)
        wait_ok([stopped], [log_a], timeout=120)
    finally:
        sigkill(stopped)

    assert preempted_in([log_a]) == {("tiny/RNN", where["trial"])}
    assert not preempted_in([log_b])
    assert_nothing_twice(url, {("tiny/RNN", where["trial"])})
    assert_same_results(slot_results(url, "tiny", MODELS, N_TRIALS), reference.search)
    stopped_trial = load_trials(url, "tiny/RNN")[where["trial"]]
    assert stopped_trial.state == TrialState.FAIL and "val_losses" not in stopped_trial.user_attrs
    assert sorted(stopped_trial.intermediate_values) == [1]  # its late epoch 2 was refused, not stored
    assert [len(load_trials(url, name)) for name in search_names()] == [N_TRIALS + 1, N_TRIALS]
    assert_clean_logs([log_a, log_b])
