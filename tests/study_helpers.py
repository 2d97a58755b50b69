"""Helpers for the study-service tests: tiny campaign files, trial snapshots, budget checks, the CLI.

Test modules import this file by name (``from study_helpers import ...``); it holds no fixtures, so
pytest's import of ``conftest`` stays the only place fixtures are shared from.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

REPO_ROOT = Path(__file__).resolve().parents[1]
#: ``python -m ml_rnn_names.cli``: the venv's interpreter, whatever the cwd.
CLI = [sys.executable, "-m", "ml_rnn_names.cli"]

TINY_SEARCH: dict[str, Any] = {
    "hidden_size": {"choices": [4, 8]},
    "learning_rate": {"low": 0.05, "high": 0.3},
    "n_batch_size": {"choices": [16]},
    "n_epoch": {"choices": [1, 2]},
}
TINY_MODELS: dict[str, dict[str, Any]] = {"RNN": {}, "LSTM": {"num_layers": {"choices": [1, 2]}}}
TINY_EXECUTION: dict[str, Any] = {"threads_per_worker": 1, "heartbeat_interval": 1, "grace_period": 2}


def toml_value(value: Any) -> str:
    """A TOML literal for the plain values a campaign file holds (inline tables for param specs)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a TOML basic string for the ASCII paths and names used here
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML literal for {value!r}")


def campaign_text(
    *,
    name: str = "tiny",
    data_dir: str | Path | None = None,
    n_trials: int = 3,
    storage: str | None = None,
    search: Mapping[str, Any] | None = None,
    models: Mapping[str, Mapping[str, Any]] | None = None,
    execution: Mapping[str, Any] | None = None,
    campaign: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """A campaign TOML text: the tiny search space, both models, short heartbeats, 1 thread."""
    camp: dict[str, Any] = {"name": name, "n_trials": n_trials, "sampler_seed": 0, "base_seed": 0}
    if storage is not None:
        camp["storage"] = storage
    camp.update(campaign or {})
    data_table: dict[str, Any] = {"split_seed": 2024, "validation_split": 0.15}
    if data_dir is not None:
        data_table["dir"] = str(data_dir)
    data_table.update(data or {})
    tables: dict[str, Mapping[str, Any]] = {
        "campaign": camp,
        "data": data_table,
        "search": TINY_SEARCH if search is None else search,
        "execution": TINY_EXECUTION if execution is None else execution,
        **(sections or {}),
    }
    lines: list[str] = []
    for section, table in tables.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
        lines.append("")
    for model, own in (TINY_MODELS if models is None else models).items():
        if own:
            lines.append(f"[models.{model}.search]")
            lines.extend(f"{key} = {toml_value(value)}" for key, value in own.items())
        else:
            lines.append(f"[models.{model}]")
        lines.append("")
    return "\n".join(lines)


def write_campaign(folder: Path, filename: str | None = None, **kwargs: Any) -> Path:
    """Write :func:`campaign_text` to ``folder/<name>.toml`` (the folder is created); returns the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (filename or f"{kwargs.get('name', 'tiny')}.toml")
    path.write_text(campaign_text(**kwargs), encoding="utf-8")
    return path


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def copy_sqlite(source: Path, target: Path) -> Path:
    """A consistent copy of a (WAL-mode, possibly open) SQLite database, via SQLite's backup API."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    return target


def copy_names_dir(source: Path, target: Path, *, rename: tuple[str, str] | None = None) -> Path:
    """Copy a names folder; ``rename=(label, new_name)`` replaces that label's first name."""
    shutil.copytree(source, target)
    if rename is not None:
        label, new_name = rename
        path = target / f"{label}.txt"
        lines = path.read_text(encoding="utf-8").splitlines()
        assert new_name not in lines
        lines[0] = new_name
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return target


def load_trials(url: str, study_name: str) -> list[FrozenTrial]:
    """Every trial of a study, read with plain Optuna (what any other reader of the storage sees)."""
    study = optuna.load_study(study_name=study_name, storage=url)
    return sorted(study.get_trials(deepcopy=True), key=lambda t: t.number)


def trial_record(trial: FrozenTrial) -> tuple[Any, ...]:
    """A trial as comparable data: what "unchanged" means for a stored trial."""
    return (
        trial.number,
        trial.state.name,
        json.dumps(trial.params, sort_keys=True),
        trial.value,
        json.dumps(trial.user_attrs, sort_keys=True, default=str),
        json.dumps(sorted(trial.intermediate_values.items())),
        str(trial.datetime_start),
        str(trial.datetime_complete),
    )


def snapshot(url: str, study_names: Iterable[str]) -> dict[str, list[tuple[Any, ...]]]:
    """What a study holds, comparable with ``==``: to prove a refused reopen changed nothing."""
    out = {}
    for name in study_names:
        study = optuna.load_study(study_name=name, storage=url)
        out[name] = [
            trial_record(t) for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        ] + [("study", json.dumps(study.user_attrs, sort_keys=True, default=str))]
    return out


def slot_of(trial: FrozenTrial) -> int:
    slot = trial.user_attrs.get("slot")
    assert isinstance(slot, int), f"trial {trial.number} has no integer slot attribute: {trial.user_attrs}"
    return slot


def complete_by_slot(trials: Iterable[FrozenTrial], n_trials: int) -> dict[int, FrozenTrial]:
    """The exact-budget invariant: exactly one COMPLETE trial per slot 0..n-1, none outside the range."""
    done: dict[int, list[FrozenTrial]] = {}
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            done.setdefault(slot_of(trial), []).append(trial)
    assert sorted(done) == list(range(n_trials)), f"COMPLETE slots {sorted(done)}, wanted 0..{n_trials - 1}"
    twice = {slot: [t.number for t in ts] for slot, ts in done.items() if len(ts) > 1}
    assert not twice, f"slots completed more than once: {twice}"
    return {slot: ts[0] for slot, ts in done.items()}


def assert_exact_budget(
    url: str, campaign: str, models: Iterable[str], n_trials: int, *, extra: Mapping[str, int] | None = None
) -> dict[str, list[FrozenTrial]]:
    """Each study: one COMPLETE trial per slot and ``n_trials + extra[model]`` trials in all (no extras,
    no WAITING or RUNNING leftovers). Returns the trials by model."""
    out = {}
    for model in models:
        trials = load_trials(url, f"{campaign}/{model}")
        complete_by_slot(trials, n_trials)
        expected = n_trials + (extra or {}).get(model, 0)
        states = [(t.number, t.state.name, t.user_attrs.get("slot")) for t in trials]
        assert len(trials) == expected, f"{model}: {len(trials)} trials, wanted {expected}: {states}"
        live = [s for s in states if s[1] in ("WAITING", "RUNNING")]
        assert not live, f"{model}: trials left unfinished: {live}"
        out[model] = trials
    return out


def slot_results(url: str, campaign: str, models: Iterable[str], n_trials: int) -> dict[tuple[str, int], Any]:
    """Per (model, slot): the COMPLETE trial's params, seed, value and losses — what determinism covers."""
    out: dict[tuple[str, int], Any] = {}
    for model in models:
        for slot, trial in complete_by_slot(load_trials(url, f"{campaign}/{model}"), n_trials).items():
            out[(model, slot)] = {
                "params": trial.params,
                "seed": trial.user_attrs["seed"],
                "value": trial.value,
                "val_losses": trial.user_attrs["val_losses"],
                "train_losses": trial.user_attrs["train_losses"],
                "intermediate": dict(trial.intermediate_values),
            }
    return out


def assert_same_results(got: Mapping[tuple[str, int], Any], want: Mapping[tuple[str, int], Any]) -> None:
    """Bitwise: floats compared with ``==`` (same code, same seeds, same thread count)."""
    assert sorted(got) == sorted(want)
    for key in sorted(want):
        assert got[key] == want[key], f"{key}: {got[key]} != {want[key]}"
        assert all(math.isfinite(v) for v in got[key]["val_losses"])


def run_cli(
    *args: str | Path, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``ml-rnn-names ARGS`` in a subprocess (cwd as given), text output captured."""
    return subprocess.run(
        [*CLI, *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(*args: str | Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *map(str, args)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_mid_trial(
    proc: subprocess.Popen[str], db: Path, study_names: Iterable[str], *, timeout: float = 90
) -> tuple[str, FrozenTrial]:
    """Poll the storage until a trial is RUNNING with at least one epoch reported and two still to go;
    returns its study name and the trial as seen then."""
    names = list(study_names)
    deadline = time.monotonic() + timeout
    storage = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(
                f"the run ended (rc {proc.returncode}) before a trial was seen mid-way:\n{err}"
            )
        # Open the storage only once the run has created its studies: opening it earlier would make
        # this reader create the schema too, racing the run's own creation of it.
        if storage is None and _studies_exist(db, names):
            storage = optuna.storages.RDBStorage(sqlite_url(db))
        if storage is not None:
            for name in names:
                try:
                    study = optuna.load_study(study_name=name, storage=storage)
                    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                except Exception:  # the study is not created yet
                    continue
                for trial in running:
                    n_epoch = int(trial.params.get("n_epoch", 0))
                    if 1 <= len(trial.intermediate_values) < n_epoch - 1:
                        return name, trial
        time.sleep(0.02)
    stop(proc, signal.SIGKILL)
    raise AssertionError(f"no trial was seen mid-way within {timeout}s")


def _studies_exist(db: Path, names: list[str]) -> bool:
    """Read-only peek: are all ``names`` in Optuna's ``studies`` table yet?"""
    if not db.exists():
        return False
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            found = {row[0] for row in conn.execute("SELECT study_name FROM studies")}
    except sqlite3.Error:
        return False
    return set(names) <= found


def stop(proc: subprocess.Popen[str], signum: int, timeout: float = 60) -> tuple[str, str]:
    """Send ``signum``; wait for the process; return its stdout and stderr."""
    if proc.poll() is None:
        proc.send_signal(signum)
    return proc.communicate(timeout=timeout)
