"""Slot bookkeeping: which slots of a study are done, live, failed for good, or need a trial.

Every trial carries ``slot``, ``seed`` and ``attempt`` in its user attributes. A slot is *settled*
when it has a COMPLETE (or PRUNED) trial, or a failure that re-running cannot fix (a non-finite loss
is deterministic: same params, same seed, same NaN) or that already failed ``MAX_ERROR_ATTEMPTS``
times. Transient failures — an interrupted or killed worker, a lost database connection — are
re-run with the same params and seed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from optuna.trial import FrozenTrial, TrialState

#: fail_kind values. "stale" is what a trial failed by the heartbeat check (its worker died) means.
FAIL_NON_FINITE = "non_finite"
FAIL_ERROR = "error"
FAIL_INTERRUPTED = "interrupted"
FAIL_STORAGE = "storage"
FAIL_DUPLICATE = "duplicate"
FAIL_STALE = "stale"
FINAL_FAIL_KINDS = {FAIL_NON_FINITE}
MAX_ERROR_ATTEMPTS = 2


def fail_kind(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get("fail_kind", FAIL_STALE))


@dataclass
class SlotView:
    slot: int
    trials: list[FrozenTrial] = field(default_factory=list)
    #: Only errors that ended at or after this time count towards settling the slot (finalize sets it
    #: to its own start: an error of an earlier invocation, e.g. a disk that was full, is retried).
    errors_since: datetime | None = None

    @property
    def real_trials(self) -> list[FrozenTrial]:
        """Trials that ran or are meant to run (claims aborted as duplicates do not count)."""
        return [t for t in self.trials if not (t.state == TrialState.FAIL and fail_kind(t) == FAIL_DUPLICATE)]

    @property
    def complete(self) -> FrozenTrial | None:
        return next((t for t in self.trials if t.state == TrialState.COMPLETE), None)

    @property
    def state(self) -> str:
        """``complete`` | ``pruned`` | ``failed`` (settled) | ``running`` | ``waiting`` | ``missing``."""
        real = self.real_trials
        if any(t.state == TrialState.COMPLETE for t in real):
            return "complete"
        if any(t.state == TrialState.PRUNED for t in real):
            return "pruned"
        failures = [t for t in real if t.state == TrialState.FAIL]
        if any(fail_kind(t) in FINAL_FAIL_KINDS for t in failures):
            return "failed"
        errors = [t for t in failures if fail_kind(t) == FAIL_ERROR]
        if self.errors_since is not None:
            errors = [t for t in errors if t.datetime_complete and t.datetime_complete >= self.errors_since]
        if len(errors) >= MAX_ERROR_ATTEMPTS:
            return "failed"
        if any(t.state == TrialState.RUNNING for t in real):
            return "running"
        if any(t.state == TrialState.WAITING for t in real):
            return "waiting"
        return "missing"

    @property
    def settled(self) -> bool:
        return self.state in ("complete", "pruned", "failed")

    @property
    def next_attempt(self) -> int:
        return len(self.real_trials) + 1


def slot_views(
    trials: Iterable[FrozenTrial], n_trials: int, *, errors_since: datetime | None = None
) -> list[SlotView]:
    """One view per slot ``0..n_trials-1`` (trials without a slot, or beyond the budget, are ignored)."""
    by_slot: dict[int, list[FrozenTrial]] = defaultdict(list)
    for trial in trials:
        slot = trial.user_attrs.get("slot")
        if isinstance(slot, int) and 0 <= slot < n_trials:
            by_slot[slot].append(trial)
    return [
        SlotView(slot, sorted(by_slot[slot], key=lambda t: t.number), errors_since)
        for slot in range(n_trials)
    ]
