"""Finalize (issue 4): best trial × seeds, test read once and audited, reruns, --force, fairness, resume.

Every campaign here is a tiny TOML written into a tmp folder (its SQLite storage and artifact folder
land beside it); the search runs once per module and is copied where a test needs to tamper with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from ml_rnn_names import cli
from ml_rnn_names.errors import FairnessError, MlRnnNamesError, StorageError
from ml_rnn_names.study import finalize, runner
from ml_rnn_names.study import slots as slot_mod
from ml_rnn_names.study.artifacts import artifact_dir
from ml_rnn_names.study.campaign import Campaign
from ml_rnn_names.study.checkpoints import load_checkpoint
from ml_rnn_names.study.finalize import (
    FinalizeResult,
    final_study_name,
    finalize_campaign,
    format_results,
    load_finalized,
)
from ml_rnn_names.study.storage import open_storage

SEEDS = (1, 2, 3)
MODELS = ("RNN", "LSTM")
N_AUDIT = len(SEEDS) * len(MODELS)


def write_campaign(
    folder: Path,
    data_dir: Path,
    *,
    name: str = "tiny",
    file: str | None = None,
    n_trials: int = 2,
    hidden: tuple[int, ...] = (4, 8),
    n_epoch: tuple[int, ...] = (1,),
    models: tuple[str, ...] = MODELS,
) -> Path:
    """A tiny campaign TOML in ``folder`` (its SQLite storage ``<name>.db`` lands beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "[campaign]",
        f'name = "{name}"',
        f"n_trials = {n_trials}",
        "[data]",
        f'dir = "{data_dir}"',
        "[search]",
        f"hidden_size = {{ choices = {list(hidden)} }}",
        "learning_rate = { low = 0.05, high = 0.3 }",
        "n_batch_size = { choices = [16] }",
        f"n_epoch = {{ choices = {list(n_epoch)} }}",
    ]
    for model in models:
        lines.append(f"[models.{model}]")
        if model == "LSTM":
            lines += ["[models.LSTM.search]", "num_layers = { choices = [1] }"]
    lines += [
        "[finalize]",
        f"seeds = {list(SEEDS)}",
        "[execution]",
        "threads_per_worker = 1",
        "heartbeat_interval = 1",
        "grace_period = 2",
    ]
    path = folder / (file or f"{name}.toml")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def copy_db(source: Path, target: Path) -> Path:
    """A consistent copy of a (WAL-mode) SQLite storage."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def final_trials(campaign: Campaign, model: str) -> list[FrozenTrial]:
    study = optuna.load_study(
        study_name=final_study_name(campaign.config, model), storage=open_storage(campaign.storage_url)
    )
    return study.get_trials(deepcopy=False)


def complete_by_slot(campaign: Campaign, model: str) -> dict[int, list[FrozenTrial]]:
    out: dict[int, list[FrozenTrial]] = {}
    for t in final_trials(campaign, model):
        if t.state == TrialState.COMPLETE:
            out.setdefault(t.user_attrs["slot"], []).append(t)
    return out


def per_seed(result: FinalizeResult, model: str, key: str) -> list[Any]:
    return [getattr(s, key) for s in result.models[model].seeds]


@dataclass
class Finalized:
    campaign: Campaign
    result: FinalizeResult
    pristine_db: Path  # a copy of the storage after the search, before finalize
    test_reads: int  # test evaluations counted during the first finalize
    test_names: list[str]


@pytest.fixture(scope="module")
def finalized(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Finalized:
    folder = tmp_path_factory.mktemp("finalize")
    toml = write_campaign(folder, tiny_data_dir)
    campaign = Campaign.from_toml(toml)
    campaign.run()
    pristine = copy_db(folder / "tiny.db", folder / "pristine.db")

    loaded: list[Any] = []
    reads: list[int] = []
    real_load, real_metrics = finalize.load_final_data, finalize.split_metrics

    def load(config: Any) -> Any:
        loaded.append(real_load(config))
        return loaded[-1]

    def metrics(model: Any, data: Any) -> dict[str, float]:
        if any(data is s.test for s in loaded):
            reads.append(1)
        return real_metrics(model, data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(finalize, "load_final_data", load)
        mp.setattr(finalize, "split_metrics", metrics)
        result = finalize_campaign(campaign)
    return Finalized(campaign, result, pristine, len(reads), loaded[0].test.names)


# ---------------------------------------------------------------------------------- the first finalize


def test_first_finalize_evaluates_test_once_per_model_and_seed(finalized: Finalized) -> None:
    result = finalized.result
    assert finalized.test_reads == N_AUDIT
    assert result.evaluated_now == N_AUDIT
    assert result.audit_count == N_AUDIT
    assert result.allow_incomplete is False and result.incomplete == {}
    assert list(result.models) == list(MODELS)
    assert {(row["model"], row["seed"]) for row in result.audit} == {(m, s) for m in MODELS for s in SEEDS}
    for model in MODELS:
        final = result.models[model]
        assert final.round == 0
        assert per_seed(result, model, "seed") == list(SEEDS)
        assert final.accuracy.n == len(SEEDS)
        assert final.accuracy.mean == pytest.approx(sum(per_seed(result, model, "test_accuracy")) / 3)
        assert final.loss.mean == pytest.approx(sum(per_seed(result, model, "test_loss")) / 3)
    assert [(c.a, c.b) for c in result.comparisons] == [("RNN", "LSTM")]
    assert result.comparisons[0].n_names == len(finalized.test_names) == len(result.truth)
    text = format_results(result)
    assert "FINAL RESULTS (Test Set)" in text
    assert f"test evaluations recorded: {N_AUDIT} ({N_AUDIT} in this run)" in text
    assert "INCOMPLETE" not in text


def test_best_search_trial_by_validation_loss_is_finalized(finalized: Finalized) -> None:
    campaign, result = finalized.campaign, finalized.result
    for model in MODELS:
        trials = campaign.studies[model].get_trials(states=(TrialState.COMPLETE,))
        best = min(trials, key=lambda t: (t.value, t.user_attrs["slot"]))
        final = result.models[model]
        assert (final.source_trial, final.source_slot) == (best.number, best.user_attrs["slot"])
        assert final.source_val_loss == best.value
        assert final.params == best.params
        for t in final_trials(campaign, model):
            assert t.params == best.params
            assert t.user_attrs["source_trial"] == best.number


def test_finalize_trials_record_test_results_and_upload_checkpoints(finalized: Finalized) -> None:
    campaign, result = finalized.campaign, finalized.result
    n_test, n_labels = len(finalized.test_names), len(result.labels)
    store = artifact_dir(campaign.config)
    assert store == campaign.config.source.parent / "tiny" / "artifacts"
    for model in MODELS:
        by_slot = complete_by_slot(campaign, model)
        round0 = {slot: by_slot[slot] for slot in range(len(SEEDS))}  # --force may have added round 1
        for slot, (t,) in round0.items():
            attrs = t.user_attrs
            assert (attrs["round"], attrs["seed"]) == (0, SEEDS[slot])
            assert t.value == attrs["test_loss"]
            assert attrs["data_fingerprint"] == result.fingerprint
            assert attrs["package_version"]
            assert attrs["test_evaluated_at"]
            predictions, confusion = attrs["test_predictions"], attrs["test_confusion"]
            assert len(predictions) == n_test
            assert len(confusion) == n_labels and all(len(row) == n_labels for row in confusion)
            assert sum(map(sum, confusion)) == n_test
            correct = sum(p == y for p, y in zip(predictions, result.truth, strict=True))
            assert attrs["test_accuracy"] == pytest.approx(correct / n_test)
            assert sum(confusion[i][i] for i in range(n_labels)) == correct
            checkpoint = store / attrs["checkpoint_artifact_id"]
            assert checkpoint.is_file()
            payload = load_checkpoint(checkpoint)  # weights only
            assert (payload["model"], payload["seed"]) == (model, SEEDS[slot])
            assert payload["source_trial"] == attrs["source_trial"]
            assert payload["labels"] == result.labels
            assert payload["data_fingerprint"] == result.fingerprint


def test_same_config_on_a_fresh_storage_gives_identical_numbers(
    finalized: Finalized, tiny_data_dir: Path, tmp_path: Path
) -> None:
    other = Campaign.from_toml(write_campaign(tmp_path / "again", tiny_data_dir))
    assert other.storage_url != finalized.campaign.storage_url
    other.run()
    result = finalize_campaign(other)
    first = finalized.result
    assert result.fingerprint == first.fingerprint
    for model in MODELS:
        assert result.models[model].params == first.models[model].params
        for key in ("seed", "test_accuracy", "test_loss", "test_macro_f1", "predictions", "confusion"):
            assert per_seed(result, model, key) == per_seed(first, model, key), (model, key)  # bitwise
    assert result.comparisons[0].as_dict() == first.comparisons[0].as_dict()


# --------------------------------------------------------------------------------- rerun and --force


@pytest.fixture
def no_test_evaluation(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any training or evaluation inside finalize is recorded (and fails the finalize trial)."""
    calls: list[str] = []

    def forbidden(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} called: finalize should have reused the recorded results")

        return call

    for name in ("split_metrics", "compute_confusion_matrix", "predict_log_probs", "train_params"):
        monkeypatch.setattr(finalize, name, forbidden(name))
    return calls


def test_rerun_reuses_the_latest_round_without_reading_test(
    finalized: Finalized, no_test_evaluation: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    campaign = finalized.campaign
    before = load_finalized(campaign)
    trials_before = {m: len(final_trials(campaign, m)) for m in MODELS}

    again = finalize_campaign(campaign)
    assert no_test_evaluation == []
    assert again.evaluated_now == 0
    assert again.audit == before.audit
    assert {m: len(final_trials(campaign, m)) for m in MODELS} == trials_before
    for model in MODELS:
        for key in ("trial_number", "test_accuracy", "test_loss", "evaluated_at"):
            assert per_seed(again, model, key) == per_seed(before, model, key)

    assert cli.main(["finalize", str(campaign.config.source), "-q"]) == 0
    out = capsys.readouterr().out
    assert f"test evaluations recorded: {before.audit_count} (0 in this run)" in out
    assert no_test_evaluation == []


def test_force_starts_a_new_round_and_keeps_the_audit_trail(finalized: Finalized) -> None:
    campaign = finalized.campaign
    before = load_finalized(campaign)
    forced = finalize_campaign(campaign, force=True)
    assert forced.evaluated_now == N_AUDIT
    assert forced.audit_count == before.audit_count + N_AUDIT
    assert all(row in forced.audit for row in before.audit)
    for model in MODELS:
        assert forced.models[model].round == before.models[model].round + 1
        new_numbers = set(per_seed(forced, model, "trial_number"))
        assert new_numbers.isdisjoint(per_seed(before, model, "trial_number"))
        # same params, same seeds: the retrained models score exactly the same
        assert per_seed(forced, model, "test_loss") == per_seed(before, model, "test_loss")
        by_slot = complete_by_slot(campaign, model)
        n = len(SEEDS)
        old_round = range(before.models[model].round * n, (before.models[model].round + 1) * n)
        for slot, seed in zip(old_round, before.models[model].seeds, strict=True):
            (kept,) = by_slot[slot]  # the previous round's trial is still there, unchanged
            assert kept.number == seed.trial_number
            assert kept.user_attrs["test_evaluated_at"] == seed.evaluated_at
    # and a plain rerun after --force reuses the new round
    again = finalize_campaign(campaign)
    assert again.evaluated_now == 0
    assert again.audit_count == forced.audit_count
    assert {m.round for m in again.models.values()} == {before.models["RNN"].round + 1}


# -------------------------------------------------------------------------------------------- fairness


def _tampered(
    finalized: Finalized, tmp_path: Path, edit: Callable[[dict[str, optuna.Study]], None]
) -> Campaign:
    """The finalized campaign's config on a copy of its search-only storage, edited by ``edit``."""
    url = sqlite_url(copy_db(finalized.pristine_db, tmp_path / "tampered.db"))
    storage = open_storage(url)
    studies = {m: optuna.load_study(study_name=f"tiny/{m}", storage=storage) for m in MODELS}
    edit(studies)
    return Campaign(finalized.campaign.config, storage=url)


def _set_identity(study: optuna.Study, **changes: Any) -> None:
    record = study.user_attrs[runner.ATTR]
    record["identity"].update(changes)
    study.set_user_attr(runner.ATTR, record)


def _assert_refused_untouched(campaign: Campaign, *fragments: str) -> str:
    with pytest.raises(FairnessError) as info:
        finalize_campaign(campaign)
    message = str(info.value)
    assert message.startswith("refusing to finalize: the studies are not a fair comparison")
    for fragment in fragments:
        assert fragment in message, message
    names = {s.study_name for s in optuna.get_all_study_summaries(open_storage(campaign.storage_url))}
    assert not any(n.endswith("/finalize") for n in names)  # refused before any finalize study exists
    return message


def test_different_budget_is_refused(finalized: Finalized, tmp_path: Path) -> None:
    campaign = _tampered(finalized, tmp_path, lambda s: _set_identity(s["LSTM"], n_trials=3))
    _assert_refused_untouched(campaign, "n_trials differs: RNN 2, LSTM 3")


def test_different_data_is_refused(finalized: Finalized, tmp_path: Path) -> None:
    fingerprint = finalized.result.fingerprint
    campaign = _tampered(finalized, tmp_path, lambda s: _set_identity(s["RNN"], data_fingerprint="f" * 64))
    _assert_refused_untouched(
        campaign,
        f"study tiny/RNN was searched on data ffffffffffff, but the data is now {fingerprint[:12]}",
        f"data_fingerprint differs: RNN {'f' * 64!r}, LSTM {fingerprint!r}",
    )


def test_study_without_campaign_record_is_refused(finalized: Finalized, tmp_path: Path) -> None:
    campaign = _tampered(finalized, tmp_path, lambda s: s["LSTM"].set_user_attr(runner.ATTR, {}))
    _assert_refused_untouched(campaign, "study tiny/LSTM has no campaign record")


def test_studies_searched_with_different_shared_params_are_refused(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    # two campaign files with the same name (so the same storage and study names) searching different spaces
    one = {"n_trials": 1}
    rnn = write_campaign(tmp_path, tiny_data_dir, file="rnn.toml", models=("RNN",), hidden=(4, 8), **one)
    lstm = write_campaign(tmp_path, tiny_data_dir, file="lstm.toml", models=("LSTM",), hidden=(4, 16), **one)
    Campaign.from_toml(rnn).run()
    Campaign.from_toml(lstm).run()
    both = Campaign.from_toml(write_campaign(tmp_path, tiny_data_dir, file="both.toml", **one))
    message = _assert_refused_untouched(both, "shared param hidden_size differs: RNN ")
    assert "[4, 8]" in message and "[4, 16]" in message
    assert "num_layers" not in message  # a model's own params are not compared


def test_finalize_before_the_search_says_so(finalized: Finalized, tmp_path: Path) -> None:
    empty = Campaign(finalized.campaign.config, storage=sqlite_url(tmp_path / "empty.db"))
    with pytest.raises(StorageError, match=r"no study tiny/RNN in .*empty\.db: run the campaign first"):
        finalize_campaign(empty)


def test_incomplete_search_needs_allow_incomplete(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = write_campaign(tmp_path, tiny_data_dir)
    campaign = Campaign.from_toml(toml)
    campaign.run(max_trials=3)  # RNN slots 0 and 1, LSTM slot 0
    assert {s.model: s.complete for s in campaign.status()} == {"RNN": 2, "LSTM": 1}

    with pytest.raises(FairnessError) as info:
        finalize_campaign(campaign)
    message = str(info.value)
    assert "not every study has its budget of COMPLETE trials (LSTM has 1/2)" in message
    assert "--allow-incomplete" in message
    assert cli.main(["finalize", str(toml), "-q"]) == 2
    assert "--allow-incomplete" in capsys.readouterr().err

    result = finalize_campaign(campaign, allow_incomplete=True)
    assert result.allow_incomplete is True
    assert result.incomplete == {"LSTM": 1}
    assert result.models["LSTM"].source_slot == 0
    assert result.audit_count == N_AUDIT
    assert 'INCOMPLETE studies: {"LSTM": 1}' in format_results(result)
    assert load_finalized(campaign).allow_incomplete is True
    assert result.to_json()["incomplete"] == {"LSTM": 1}


# ------------------------------------------------------------------------------------- best selection


def _trial(
    slot: int, value: float | None, number: int, state: TrialState = TrialState.COMPLETE
) -> FrozenTrial:
    trial = optuna.trial.create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None, user_attrs={"slot": slot}
    )
    trial.number = number
    return trial


def test_best_is_lowest_validation_loss_ties_lowest_slot() -> None:
    trials = [
        _trial(3, 0.40, number=0),  # tied best, but a higher slot
        _trial(0, 0.90, number=1),
        _trial(2, 0.40, number=2),  # tied best, lowest slot → chosen despite its later number
        _trial(1, 0.10, number=3, state=TrialState.FAIL),  # failed attempts never count
        _trial(4, 0.41, number=4),
        _trial(9, 0.01, number=5),  # beyond the budget of 5 slots: ignored
    ]
    best = Campaign._best_of(slot_mod.slot_views(trials, 5))
    assert best is not None and (best.user_attrs["slot"], best.number) == (2, 2)
    assert Campaign._best_of(slot_mod.slot_views(list(reversed(trials)), 5)).number == 2
    assert Campaign._best_of(slot_mod.slot_views([_trial(0, 0.5, 0, TrialState.FAIL)], 1)) is None


def test_best_uses_the_complete_trial_of_a_retried_slot() -> None:
    trials = [_trial(0, None, 0, TrialState.FAIL), _trial(0, 0.3, 1), _trial(1, 0.3, 2)]
    best = Campaign._best_of(slot_mod.slot_views(trials, 2))
    assert best is not None and best.number == 1


# -------------------------------------------------------------------------------------------- resume


def _complete_finalize_trials(url: str) -> list[tuple[str, FrozenTrial]]:
    storage = open_storage(url)
    out = []
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name.endswith("/finalize"):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            out += [(summary.study_name, t) for t in study.get_trials(states=(TrialState.COMPLETE,))]
    return out


def _finalize_states(db: Path) -> dict[str, int]:
    """Finalize trials by state: a cheap read-only poll (opening an optuna storage costs CPU the
    killed run needs)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        rows = conn.execute(
            "SELECT trials.state, count(*) FROM trials JOIN studies USING (study_id) "
            "WHERE studies.study_name LIKE '%/finalize' GROUP BY trials.state"
        ).fetchall()
    return {str(state): int(count) for state, count in rows}


@pytest.fixture
def slow_campaign(tiny_data_dir: Path, tmp_path: Path) -> Iterator[Campaign]:
    # enough epochs that one finalize trial takes a noticeable fraction of a second
    campaign = Campaign.from_toml(
        write_campaign(tmp_path, tiny_data_dir, name="slow", n_trials=1, n_epoch=(25,))
    )
    campaign.run()
    yield campaign


@pytest.mark.slow
def test_killed_finalize_resumes_only_the_missing_seeds(slow_campaign: Campaign) -> None:
    campaign = slow_campaign
    url = campaign.storage_url
    db = campaign.config.source.parent / "slow.db"
    assert url == sqlite_url(db)
    env = {k: v for k, v in os.environ.items() if k != "ML_RNN_NAMES_STORAGE"}
    command = [sys.executable, "-m", "ml_rnn_names.cli", "finalize", str(campaign.config.source), "-q"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # kill it mid-trial: one (model, seed) done, the next one training
        deadline = time.monotonic() + 120
        while True:
            states = _finalize_states(db)
            if states.get("COMPLETE", 0) >= 1 and states.get("RUNNING", 0) == 1:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(
                    f"finalize ended (rc {process.returncode}) before a kill point {states}:\n{output}"
                )
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
        if process.stdout:
            process.stdout.close()
    assert process.returncode == -signal.SIGKILL

    done_before = {(name, t.number): t for name, t in _complete_finalize_trials(url)}
    killed = [
        (model, t.number, t.user_attrs["slot"])
        for model in MODELS
        for t in final_trials(campaign, model)
        if t.state == TrialState.RUNNING
    ]
    assert 1 <= len(done_before) < N_AUDIT
    assert len(killed) == 1  # left RUNNING by the dead process

    result = finalize_campaign(campaign)
    assert result.audit_count == N_AUDIT
    assert result.evaluated_now == N_AUDIT - len(done_before)
    for model in MODELS:
        by_slot = complete_by_slot(campaign, model)
        assert {slot: len(ts) for slot, ts in by_slot.items()} == {0: 1, 1: 1, 2: 1}
        leftovers = [
            (t.number, t.state) for t in final_trials(campaign, model) if t.state != TrialState.COMPLETE
        ]
        # the killed trial is failed (its heartbeat went stale) and its slot ran again
        assert leftovers == [(n, TrialState.FAIL) for m, n, _ in killed if m == model]
        assert per_seed(result, model, "seed") == list(SEEDS)
    ((model, number, slot),) = killed
    assert complete_by_slot(campaign, model)[slot][0].number > number
    for (name, number), before in done_before.items():
        model = name.split("/")[1]
        (after,) = complete_by_slot(campaign, model)[before.user_attrs["slot"]]
        assert after.number == number  # reused, not retrained
        assert after.user_attrs == before.user_attrs
        assert after.value == before.value
        assert number in per_seed(result, model, "trial_number")


def test_a_seed_that_keeps_failing_is_retried_by_the_next_finalize(
    finalized: Finalized, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seed that errors twice (say the disk stays full) leaves finalize without a result and says why;
    once the cause is fixed, running finalize again retries only that seed (earlier errors don't count)."""
    campaign = Campaign(
        finalized.campaign.config, storage=sqlite_url(copy_db(finalized.pristine_db, tmp_path / "retry.db"))
    )
    real_train = finalize.train_params
    attempts: list[int] = []

    def disk_full_for_one_seed(model: str, params: Any, **kwargs: Any) -> Any:
        if model == MODELS[0] and kwargs["seed"] == SEEDS[1]:
            attempts.append(kwargs["seed"])
            raise OSError(28, "No space left on device")
        return real_train(model, params, **kwargs)

    monkeypatch.setattr(finalize, "train_params", disk_full_for_one_seed)
    with pytest.raises(MlRnnNamesError) as failed:
        finalize_campaign(campaign)
    assert f"seed {SEEDS[1]} has no result" in str(failed.value)
    assert "No space left on device" in str(failed.value)
    assert len(attempts) == slot_mod.MAX_ERROR_ATTEMPTS  # bounded within one invocation

    monkeypatch.setattr(finalize, "train_params", real_train)
    result = finalize_campaign(campaign)
    assert result.evaluated_now == 1  # only the missing (model, seed) pair ran
    assert result.audit_count == N_AUDIT
    assert per_seed(result, MODELS[0], "test_accuracy") == per_seed(
        finalized.result, MODELS[0], "test_accuracy"
    )
