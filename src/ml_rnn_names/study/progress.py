"""Progress bars for a running campaign, drawn from the storage (so they work for any worker count).

A poller reads the studies every second: one bar per model (settled slots of the budget, with an
ETA), and a line per running trial with its epoch. Workers never talk to the parent process; the
storage is the single source of truth, which is also what makes several machines look the same.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from optuna.trial import TrialState
from tqdm.auto import tqdm

from ml_rnn_names.study import slots as slot_mod


class ProgressMonitor:
    """Draws one bar per model in a thread until exit; ``enabled=False`` makes it a no-op (quiet mode)."""

    def __init__(self, opened: Any, *, enabled: bool = True, interval: float = 1.0) -> None:
        self.opened = opened
        self.enabled = enabled
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._bars: dict[str, tqdm] = {}

    def __enter__(self) -> ProgressMonitor:
        if self.enabled:
            n = self.opened.config.n_trials
            width = max(len(m) for m in self.opened.studies)
            for position, (model, study) in enumerate(self.opened.studies.items()):
                # initial: slots settled before this run do not count towards its rate; smoothing=0:
                # trials last from seconds to minutes, so the ETA uses this run's average, not the
                # last interval's (which made one finished trial look like one per second).
                done = sum(v.settled for v in slot_mod.slot_views(study.get_trials(deepcopy=False), n))
                self._bars[model] = tqdm(
                    total=n,
                    initial=done,
                    desc=f"{model:>{width}}",
                    unit="trial",
                    position=position,
                    dynamic_ncols=True,
                    smoothing=0,
                )
            self.refresh()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self.refresh()
        for bar in self._bars.values():
            bar.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # a missed refresh (locked DB, lost connection) only delays the bar
                continue

    def refresh(self) -> None:
        n = self.opened.config.n_trials
        for model, study in self.opened.studies.items():
            trials = study.get_trials(deepcopy=False)
            views = slot_mod.slot_views(trials, n)
            bar = self._bars[model]
            bar.update(sum(v.settled for v in views) - bar.n)
            parts = []
            best = [
                v.complete.value for v in views if v.complete is not None and v.complete.value is not None
            ]
            if best:
                parts.append(f"best {min(best):.4f}")
            for trial in trials:
                if trial.state == TrialState.RUNNING:
                    n_epoch = trial.params.get("n_epoch", "?")
                    parts.append(
                        f"slot {trial.user_attrs.get('slot')}: "
                        f"epoch {len(trial.intermediate_values)}/{n_epoch}"
                    )
            bar.set_postfix_str(", ".join(parts), refresh=True)
