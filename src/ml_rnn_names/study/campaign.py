"""The Python API for study scripts: ``Campaign.from_toml(path).run(workers=2)``.

>>> campaign = Campaign.from_toml("studies/smoke.toml")     # doctest: +SKIP
>>> campaign.run(workers=2)                                 # doctest: +SKIP
>>> campaign.best()["LSTM"].params                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ml_rnn_names.data import Splits
from ml_rnn_names.errors import MlRnnNamesError
from ml_rnn_names.study import runner
from ml_rnn_names.study import slots as slot_mod
from ml_rnn_names.study.config import CampaignConfig, load_campaign
from ml_rnn_names.study.progress import ProgressMonitor
from ml_rnn_names.study.storage import redact, resolve_storage_url

log = logging.getLogger(__name__)


@dataclass
class StudyStatus:
    model: str
    study_name: str
    n_trials: int
    complete: int = 0
    pruned: int = 0
    failed_final: int = 0
    running: int = 0
    waiting: int = 0
    failed_attempts: int = 0
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_number: int | None = None
    best_slot: int | None = None

    @property
    def remaining(self) -> int:
        return self.n_trials - self.complete - self.pruned - self.failed_final


@dataclass
class RunSummary:
    nothing_to_do: bool
    wall_time_s: float
    workers: int
    threads_per_worker: int
    before: dict[str, int]
    after: list[StudyStatus]
    exit_codes: list[int] = field(default_factory=list)


class Campaign:
    """One campaign file: its config, its storage, and its studies."""

    def __init__(self, config: CampaignConfig, storage: str | None = None) -> None:
        self.config = config
        self.storage_url = resolve_storage_url(config.storage, storage)

    @classmethod
    def from_toml(
        cls, path: str | Path, *, overrides: list[str] | None = None, storage: str | None = None
    ) -> Campaign:
        return cls(load_campaign(path, overrides), storage)

    def __repr__(self) -> str:
        return f"Campaign({self.config.name!r}, storage={redact(self.storage_url)!r})"

    @cached_property
    def search_data(self) -> Splits:
        return runner.load_search_data(self.config)

    def open(self, *, create: bool = True, heartbeat: bool = True) -> runner.CampaignStudies:
        """Open (and by default create and sweep) every model's study."""
        fingerprint = self.search_data.fingerprint if create else ""
        return runner.open_studies(
            self.config, self.storage_url, fingerprint, heartbeat=heartbeat, create=create
        )

    @property
    def studies(self) -> dict[str, optuna.Study]:
        """The existing studies, by model name (raises if the campaign never ran)."""
        return self.open(create=False, heartbeat=False).studies

    def run(self, workers: int = 1, *, progress: bool = False, max_trials: int | None = None) -> RunSummary:
        """Run every study to its exact budget; returns what was done. Safe to call again (resumes)."""
        if workers < 1:
            raise MlRnnNamesError(f"workers must be ≥ 1, got {workers}")
        if max_trials is not None and workers > 1:
            raise MlRnnNamesError("max_trials (stop after k trials) needs workers=1")
        started = time.perf_counter()
        opened = self.open()
        before = runner.remaining_slots(opened)
        threads = runner.threads_for(self.config, workers)
        if not any(before.values()) and not runner.campaign_has_running(opened):
            return RunSummary(True, 0.0, workers, threads, before, self.status(opened))
        codes: list[int] = []
        with ProgressMonitor(opened, enabled=progress):
            if workers == 1:
                previous = signal.getsignal(signal.SIGTERM)
                in_main = _in_main_thread()
                if in_main:
                    signal.signal(signal.SIGTERM, runner._raise_interrupted)
                try:
                    runner.work(
                        self.config,
                        self.storage_url,
                        threads=threads,
                        splits=self.search_data,
                        max_trials=max_trials,
                    )
                finally:
                    if in_main:
                        signal.signal(signal.SIGTERM, previous)
            else:
                codes = self._run_processes(workers)
        return RunSummary(
            False, time.perf_counter() - started, workers, threads, before, self.status(), exit_codes=codes
        )

    def _run_processes(
        self, workers: int, target: Any = None, kwargs: dict[str, Any] | None = None
    ) -> list[int]:
        level = logging.getLogger().getEffectiveLevel()
        processes = runner.spawn_workers(
            self.config, self.storage_url, workers, log_level=level, target=target, kwargs=kwargs
        )

        def forward(signum: int, frame: object) -> None:
            for process in processes:
                if process.is_alive() and process.pid:
                    with contextlib.suppress(OSError):
                        os.kill(process.pid, signum)

        in_main = _in_main_thread()
        previous = signal.getsignal(signal.SIGTERM) if in_main else None
        if in_main:
            signal.signal(signal.SIGTERM, forward)
        try:
            for process in processes:
                process.join()
        except KeyboardInterrupt:
            for process in processes:
                process.join(timeout=30)
            raise
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
        codes = [p.exitcode if p.exitcode is not None else -1 for p in processes]
        if any(codes):
            failed = [f"worker{i} exit {c}" for i, c in enumerate(codes) if c]
            if any(c == 130 for c in codes):
                raise KeyboardInterrupt
            raise MlRnnNamesError(
                f"{', '.join(failed)}; the completed trials are stored: run again to resume the rest"
            )
        return codes

    def status(self, opened: runner.CampaignStudies | None = None) -> list[StudyStatus]:
        """Per study: complete / running / failed / remaining, and the best trial so far."""
        opened = opened or self.open(create=False, heartbeat=False)
        out = []
        for model, study in opened.studies.items():
            trials = study.get_trials(deepcopy=False)
            views = slot_mod.slot_views(trials, self.config.n_trials)
            st = StudyStatus(model, study.study_name, self.config.n_trials)
            for view in views:
                state = view.state
                st.complete += state == "complete"
                st.pruned += state == "pruned"
                st.failed_final += state == "failed"
                st.running += state == "running"
                st.waiting += state == "waiting"
            st.failed_attempts = sum(
                t.state == TrialState.FAIL and slot_mod.fail_kind(t) != slot_mod.FAIL_DUPLICATE
                for t in trials
            )
            best = self._best_of(views)
            if best is not None:
                st.best_value, st.best_params = best.value, dict(best.params)
                st.best_number, st.best_slot = best.number, best.user_attrs.get("slot")
            out.append(st)
        return out

    @staticmethod
    def _best_of(views: list[slot_mod.SlotView]) -> FrozenTrial | None:
        done = [v.complete for v in views if v.complete is not None and v.complete.value is not None]
        if not done:
            return None
        return min(done, key=lambda t: (t.value, t.user_attrs.get("slot", 0)))  # ties: lowest slot

    def best(self) -> dict[str, FrozenTrial]:
        """The best COMPLETE trial of each study by validation loss (ties: lowest slot)."""
        opened = self.open(create=False, heartbeat=False)
        out = {}
        for model, study in opened.studies.items():
            best = self._best_of(slot_mod.slot_views(study.get_trials(deepcopy=False), self.config.n_trials))
            if best is not None:
                out[model] = best
        return out


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
