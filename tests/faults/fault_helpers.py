"""Helpers for the fault-injection tests: the campaign they share, killing a CLI at an exact point,
and what "nothing lost, nothing twice" means when read back from the storage.

Imported by name (``from fault_helpers import ...``); fixtures live in this folder's ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from study_helpers import CLI, complete_by_slot, load_trials, trial_record, write_campaign

HERE = Path(__file__).resolve().parent
PAUSE_CLI = HERE / "pause_cli.py"

N_TRIALS = 3
MODELS = ("RNN", "LSTM")
SEEDS = (1, 2)
#: LSTM with one layer only (the brief's tiny space): a trial takes well under a second.
FAULT_MODELS: dict[str, dict[str, Any]] = {"RNN": {}, "LSTM": {"num_layers": {"choices": [1]}}}


def fault_campaign(folder: Path, data_dir: Path, **kwargs: Any) -> Path:
    """The campaign every fault test runs: 2 models × 3 slots, finalize seeds (1, 2), 1 thread,
    heartbeat 1 s, grace 2 s. Its SQLite file (``tiny.db``) lands in ``folder`` unless ``--storage``."""
    kwargs.setdefault("n_trials", N_TRIALS)
    return write_campaign(
        folder,
        data_dir=data_dir,
        models=FAULT_MODELS,
        sections={"finalize": {"seeds": list(SEEDS)}},
        **kwargs,
    )


def cli_env() -> dict[str, str]:
    """The test environment for a child CLI, without a storage override from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if k != "ML_RNN_NAMES_STORAGE"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start(args: Iterable[str | Path], log: Path, *, cwd: Path) -> subprocess.Popen[bytes]:
    """Start a child process with stdout and stderr going to ``log`` (a pipe could fill and block it)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(a) for a in args], cwd=cwd, env=cli_env(), stdout=out, stderr=subprocess.STDOUT
        )


def start_cli(*args: str | Path, log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """``python -m ml_rnn_names.cli ARGS``, unmodified."""
    return start([*CLI, *args], log, cwd=cwd)


def start_paused(
    point: str, skip: int, marker: Path, *args: str | Path, log: Path
) -> subprocess.Popen[bytes]:
    """The real CLI, frozen the ``skip + 1``-th time it reaches ``point`` (see ``pause_cli.py``)."""
    return start([sys.executable, PAUSE_CLI, point, str(skip), marker, *args], log, cwd=marker.parent)


def wait_for_marker(
    proc: subprocess.Popen[bytes], marker: Path, log: Path, timeout: float = 240
) -> dict[str, Any]:
    """Wait until the paused child wrote ``marker``; returns where it stopped."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"the child ended (rc {proc.returncode}) before its kill point:\n{tail(log)}"
            )
        if time.monotonic() > deadline:
            sigkill(proc)
            raise AssertionError(f"no kill point within {timeout}s:\n{tail(log)}")
        time.sleep(0.05)
    return dict(json.loads(marker.read_text(encoding="utf-8")))


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap: no handler runs, nothing is flushed or recorded by the child."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def wait_ok(procs: Iterable[subprocess.Popen[bytes]], logs: Iterable[Path], timeout: float = 280) -> None:
    """Wait for every child; fail with their output unless all exited 0."""
    deadline = time.monotonic() + timeout
    procs, logs = list(procs), list(logs)
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                sigkill(p)
            raise AssertionError("children still running:\n" + "\n".join(tail(x) for x in logs)) from None
    codes = [p.returncode for p in procs]
    assert codes == [0] * len(procs), f"exit codes {codes}:\n" + "\n".join(tail(x) for x in logs)


def tail(log: Path, n: int = 4000) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else "(no output)"
    return f"--- {log.name} ---\n{text[-n:]}"


# ------------------------------------------------------------------------------ reading the storage


def study_names(url: str) -> list[str]:
    return sorted(optuna.get_all_study_names(url))


def all_trials(url: str, names: Iterable[str]) -> dict[tuple[str, int], FrozenTrial]:
    """(study, number) → trial over the given studies (missing studies count as empty)."""
    existing = set(study_names(url))
    return {(name, t.number): t for name in names if name in existing for t in load_trials(url, name)}


def search_names(campaign: str = "tiny") -> list[str]:
    return [f"{campaign}/{m}" for m in MODELS]


def final_names(campaign: str = "tiny") -> list[str]:
    return [f"{campaign}/{m}/finalize" for m in MODELS]


def assert_unchanged(before: Mapping[tuple[str, int], FrozenTrial], url: str) -> None:
    """Every trial that was COMPLETE before the fault is still there, byte for byte."""
    after = all_trials(url, sorted({name for name, _ in before}))
    for key, trial in before.items():
        if trial.state == TrialState.COMPLETE:
            assert key in after, f"{key} disappeared"
            assert trial_record(after[key]) == trial_record(trial), f"{key} changed"


def assert_budget_after_kill(
    url: str, names: Iterable[str], n_slots: int, killed: Iterable[tuple[str, int]]
) -> None:
    """One COMPLETE trial per slot; nothing live; the only other trials are the killed ones, now FAIL
    (failed as stale by the heartbeat check): a kill costs at most the trial it interrupted."""
    killed = set(killed)
    for name in names:
        trials = load_trials(url, name)
        complete_by_slot(trials, n_slots)
        others = {(name, t.number): t for t in trials if t.state != TrialState.COMPLETE}
        assert set(others) == {k for k in killed if k[0] == name}, (
            f"{name}: unexpected non-COMPLETE trials "
            f"{[(n, t.state.name, t.user_attrs.get('fail_kind')) for (_, n), t in others.items()]}"
        )
        for trial in others.values():
            assert trial.state == TrialState.FAIL
            assert trial.user_attrs.get("fail_kind", "stale") == "stale", trial.user_attrs
        trained = {}
        for trial in trials:
            if "val_losses" in trial.user_attrs and trial.state == TrialState.COMPLETE:
                slot = trial.user_attrs["slot"]
                assert slot not in trained, f"{name}: slot {slot} trained to COMPLETE twice"
                trained[slot] = trial.number


def final_results(url: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (model, finalize seed): the COMPLETE finalize trial's numbers (what resume must reproduce)."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for model in MODELS:
        for trial in load_trials(url, f"tiny/{model}/finalize"):
            if trial.state != TrialState.COMPLETE:
                continue
            key = (model, int(trial.user_attrs["seed"]))
            assert key not in out, f"{key} evaluated on test twice"
            out[key] = {
                "value": trial.value,
                "params": trial.params,
                "source_trial": trial.user_attrs["source_trial"],
                **{
                    k: trial.user_attrs[k]
                    for k in (
                        "test_loss",
                        "test_accuracy",
                        "test_macro_f1",
                        "test_predictions",
                        "test_confusion",
                        "val_losses",
                        "train_losses",
                    )
                },
            }
    return out
