"""Studies per model, run to an exact budget across interruptions, workers and machines.

How a campaign runs (every worker, on any machine, does the same):

1. Under the campaign lock, create or open one study per model (``<campaign>/<model>``), refuse it
   if it was created for a different experiment, fail trials whose worker stopped heart-beating,
   and enqueue one WAITING trial — with the slot's fixed params — for every slot that has no live
   or settled trial (see :mod:`.slots`).
2. Claim a WAITING trial by moving it to RUNNING: the storage does this atomically, so two workers
   never both win the same trial. A claimant that then sees another live or settled trial for the
   same slot (only possible after a race between two sweeps on a backend without a lock) aborts
   before training: no slot ever completes twice.
3. Train, heart-beating all along; tell the result; repeat. When nothing is left to claim but other
   workers still run trials, wait: if one of them dies, its slot comes back here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import optuna
import sqlalchemy
import torch
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from ml_rnn_names import __version__
from ml_rnn_names.data import Splits, load_splits
from ml_rnn_names.errors import MlRnnNamesError, NonFiniteLossError, StorageError, StudyMismatchError
from ml_rnn_names.study import slots as slot_mod
from ml_rnn_names.study.config import CampaignConfig
from ml_rnn_names.study.objective import EpochProgress, run_trial
from ml_rnn_names.study.space import slot_params, space_distributions
from ml_rnn_names.study.storage import (
    campaign_lock,
    check_sqlite_file_unchanged,
    is_transient,
    open_storage,
    redact,
    redact_text,
    with_retries,
)
from ml_rnn_names.utils import available_cpus, set_threads

log = logging.getLogger(__name__)

ATTR = "ml_rnn_names"  # the study user attribute holding what the study was created for

optuna.logging.set_verbosity(optuna.logging.WARNING)
# The heartbeat API we build resume on is marked experimental; we pin its behaviour with tests instead.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) arrived: record the running trial as interrupted and exit cleanly.

    A ``KeyboardInterrupt`` so that whatever handles Ctrl-C (the CLI's exit 130, a notebook) handles
    SIGTERM the same way, without a traceback.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def versions() -> dict[str, str]:
    return {"ml_rnn_names": __version__, "torch": torch.__version__, "optuna": optuna.__version__}


def make_pruner(config: CampaignConfig) -> optuna.pruners.BasePruner:
    if config.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=config.pruner_startup_trials, n_warmup_steps=config.pruner_warmup_steps
        )
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, config.pruner_warmup_steps))
    return optuna.pruners.NopPruner()


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(stored) | set(wanted)):
        if json.dumps(stored.get(key), sort_keys=True) != json.dumps(wanted.get(key), sort_keys=True):
            if key == "search_space":
                old = {p["name"]: p for p in stored.get(key) or []}
                new = {p["name"]: p for p in wanted.get(key) or []}
                for name in sorted(set(old) | set(new)):
                    if old.get(name) != new.get(name):
                        out.append(
                            f"search space param {name}: stored {_brief(old.get(name))}, "
                            f"now {_brief(new.get(name))}"
                        )
            else:
                out.append(f"{key}: stored {stored.get(key)!r}, now {wanted.get(key)!r}")
    return out


def _brief(param: dict[str, Any] | None) -> str:
    if param is None:
        return "absent"
    if param["kind"] == "categorical":
        return f"choices {param['choices']}"
    if param["kind"] == "fixed":
        return f"fixed {param['value']!r}"
    return f"{param['kind']} [{param['low']}, {param['high']}]" + (" log" if param.get("log") else "")


@dataclass(frozen=True)
class SlotPlan:
    """What every slot of one study is: its params, its training seed and extra trial attributes.

    The search's plan draws params per slot (:func:`search_plan`); finalize's plan gives every slot the
    best trial's params and one finalize seed. Both run through the same claim / heartbeat / resume code.
    """

    n_slots: int
    params: Callable[[int], dict[str, Any]]
    seed: Callable[[int], int]
    attrs: Callable[[int], dict[str, Any]] = lambda slot: {}
    first_slot: int = 0  # slots below are history (earlier finalize rounds): never re-run
    errors_since: datetime | None = None  # see SlotView.errors_since
    #: The distribution of every param, so a slot's trial is stored with its params already set: the
    #: objective's ``suggest_*`` calls then read them instead of writing one row each (5 writes, about a
    #: fifth of a trial's storage time).
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)

    def views(self, trials: list[FrozenTrial]) -> list[slot_mod.SlotView]:
        return slot_mod.slot_views(trials, self.n_slots, errors_since=self.errors_since)[self.first_slot :]


def search_plan(config: CampaignConfig, model: str) -> SlotPlan:
    space = config.model(model).params
    return SlotPlan(
        n_slots=config.n_trials,
        params=lambda slot: slot_params(space, config.sampler_seed, slot),
        seed=lambda slot: config.base_seed + slot,
        distributions=space_distributions(space),
    )


@dataclass
class CampaignStudies:
    """The open studies of one campaign (by model name, in model order) and their slot plans."""

    config: CampaignConfig
    storage: optuna.storages.BaseStorage
    url: str
    studies: dict[str, optuna.Study]
    fingerprint: str
    plans: dict[str, SlotPlan] = field(default_factory=dict)


def open_studies(
    config: CampaignConfig, url: str, fingerprint: str, *, heartbeat: bool = True, create: bool = True
) -> CampaignStudies:
    """Create or open every model's study, checking it is the same experiment, and sweep its slots."""
    storage = open_storage(
        url,
        heartbeat_interval=config.heartbeat_interval if heartbeat else None,
        grace_period=config.grace_period if heartbeat else None,
    )
    studies: dict[str, optuna.Study] = {}
    with _locked(config, url):
        for model in config.model_names:
            studies[model] = _open_study(config, storage, model, fingerprint, create=create)
        plans = {model: search_plan(config, model) for model in config.model_names}
        opened = CampaignStudies(config, storage, url, studies, fingerprint, plans)
        if create:
            for model in config.model_names:
                sweep(opened, model)
    return opened


@contextlib.contextmanager
def _locked(config: CampaignConfig, url: str) -> Iterator[None]:
    """The campaign lock. Database errors, from the lock or the work under it, become a
    :class:`StorageError` with the password hidden."""
    try:
        with campaign_lock(url, config.name):
            yield
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise StorageError(redact_text(f"storage {redact(url)}: {str(exc).splitlines()[0]}", url)) from None


def _stored_config(config: CampaignConfig) -> dict[str, Any]:
    """The resolved config as stored on a study, which anyone with the dashboard can read: no password."""
    resolved = config.resolved()
    resolved["campaign"]["storage"] = redact(resolved["campaign"]["storage"])
    return resolved


def _open_study(
    config: CampaignConfig,
    storage: optuna.storages.BaseStorage,
    model: str,
    fingerprint: str,
    *,
    create: bool,
) -> optuna.Study:
    name = config.study_name(model)
    if not create:
        try:
            return optuna.load_study(study_name=name, storage=storage, pruner=make_pruner(config))
        except KeyError:
            raise StorageError(
                f"no study {name} in {redact(str(getattr(storage, 'url', '')))}: run the campaign first"
            ) from None
    study = with_retries(
        lambda: optuna.create_study(
            study_name=name,
            storage=storage,
            direction="minimize",
            load_if_exists=True,
            sampler=optuna.samplers.RandomSampler(seed=config.sampler_seed),
            pruner=make_pruner(config),
        ),
        what=f"create study {name}",
    )
    wanted = {**config.identity(model), "data_fingerprint": fingerprint}
    stored = study.user_attrs.get(ATTR)
    if stored is None:
        study.set_user_attr(
            ATTR,
            {
                "campaign": config.name,
                "model": model,
                "identity": wanted,
                "config_hash": config.config_hash(),
                "config": _stored_config(config),
                "versions": versions(),
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
        study.set_user_attr("config_hash", config.config_hash())
        study.set_user_attr("data_fingerprint", fingerprint)
        return study
    diffs = _differences(stored.get("identity", {}), wanted)
    if diffs:
        raise StudyMismatchError(
            f"study {name} already exists for a different experiment "
            f"(config hash {stored.get('config_hash')}, now {config.config_hash()}):\n  - "
            + "\n  - ".join(diffs)
            + "\nNothing was changed. Revert the change, give the campaign a new name, "
            "or use another --storage."
        )
    return study


def _trials(study: optuna.Study, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
    return with_retries(lambda: study.get_trials(deepcopy=False, states=states), what="read trials")


def sweep(opened: CampaignStudies, model: str) -> int:
    """Fail stale trials and enqueue a WAITING trial for every slot that needs one; returns how many."""
    study = opened.studies[model]
    plan = opened.plans[model]
    with_retries(lambda: optuna.storages.fail_stale_trials(study), what="fail stale trials")
    added = 0
    for view in plan.views(_trials(study)):
        if view.state != "missing":
            continue
        params = plan.params(view.slot)
        attrs = {
            "slot": view.slot,
            "seed": plan.seed(view.slot),
            "attempt": view.next_attempt,
            **plan.attrs(view.slot),
        }
        with_retries(lambda p=params, a=attrs: _enqueue(study, plan, p, a), what="enqueue trial")
        added += 1
    if added:
        log.info("%s: enqueued %d slot(s)", study.study_name, added)
    return added


def _enqueue(study: optuna.Study, plan: SlotPlan, params: dict[str, Any], attrs: dict[str, Any]) -> None:
    """One WAITING trial with the slot's params (and their distributions) and attributes, in one write."""
    if set(params) <= set(plan.distributions):
        trial = optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=params,
            distributions={name: plan.distributions[name] for name in params},
            user_attrs=attrs,
        )
        study.add_trial(trial)
    else:  # a param without a known distribution: Optuna's fixed-params queue still pins its value
        study.enqueue_trial(params, user_attrs=attrs)


@dataclass
class Claim:
    model: str
    study: optuna.Study
    trial_id: int
    number: int
    slot: int
    seed: int


def claim_next(opened: CampaignStudies) -> Claim | None:
    """Claim the lowest-slot WAITING trial of any study (models interleaved, so partial runs compare)."""
    candidates = []
    for order, (model, study) in enumerate(opened.studies.items()):
        for trial in _trials(study, (TrialState.WAITING,)):
            candidates.append((trial.user_attrs.get("slot", 1 << 30), order, trial.number, model, trial))
    for slot, _, _, model, trial in sorted(candidates, key=lambda c: c[:3]):
        study = opened.studies[model]
        # Beat before claiming too: a worker killed between the claim and its first beat would leave a
        # RUNNING trial without a heartbeat, which the stale check never fails (resume would wait forever).
        with contextlib.suppress(Exception):
            opened.storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
        won = with_retries(
            lambda t=trial: _try_running(opened.storage, t._trial_id), what=f"claim trial {trial.number}"
        )
        if not won:
            continue
        with contextlib.suppress(Exception):
            opened.storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
        claim = Claim(model, study, trial._trial_id, trial.number, int(slot), int(trial.user_attrs["seed"]))
        if _is_duplicate(opened, claim):
            continue
        return claim
    return None


def _try_running(storage: optuna.storages.BaseStorage, trial_id: int) -> bool:
    try:
        return storage.set_trial_state_values(trial_id, TrialState.RUNNING)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def _is_duplicate(opened: CampaignStudies, claim: Claim) -> bool:
    """True (and the claimed trial failed as a duplicate) when the slot is already handled elsewhere."""
    others = [
        t for t in _trials(claim.study) if t.user_attrs.get("slot") == claim.slot and t.number != claim.number
    ]
    plan = opened.plans.get(claim.model)
    # The same view of the slot as the sweep that enqueued this trial (finalize ignores errors of earlier
    # invocations): with a stricter view, a retried slot would count as settled, be failed as a
    # duplicate, be enqueued again by the next sweep, and so on forever.
    view = slot_mod.SlotView(claim.slot, others, errors_since=plan.errors_since if plan else None)
    busy = view.settled or any(t.state == TrialState.RUNNING for t in view.real_trials)
    if not busy:
        return False
    storage = opened.storage
    storage.set_trial_user_attr(claim.trial_id, "fail_kind", slot_mod.FAIL_DUPLICATE)
    storage.set_trial_user_attr(claim.trial_id, "fail_reason", f"slot {claim.slot} is already handled")
    storage.set_trial_state_values(claim.trial_id, TrialState.FAIL)
    log.info("%s trial %d: slot %d already handled; not run", claim.model, claim.number, claim.slot)
    return True


class _Heartbeat:
    """Records the claimed trial's heartbeat every ``interval`` seconds in a daemon thread."""

    def __init__(self, storage: Any, trial_id: int, interval: int) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id, interval), daemon=True)

    def _beat(self, storage: Any, trial_id: int, interval: int) -> None:
        while not self._stop.wait(interval):
            try:
                storage.record_heartbeat(trial_id)
            except Exception as exc:  # a missed beat is survivable; a dead worker is what the check is for
                log.warning("heartbeat for trial %d failed: %s", trial_id, str(exc).splitlines()[0])

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _finish_failed(opened: CampaignStudies, claim: Claim, kind: str, reason: str) -> None:
    storage = opened.storage

    def write() -> None:
        # already finished: another worker failed it as stale (see _preempted); nothing to add
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_user_attr(claim.trial_id, "fail_kind", kind)
            storage.set_trial_user_attr(claim.trial_id, "fail_reason", reason[:2000])
            storage.set_trial_state_values(claim.trial_id, TrialState.FAIL)

    with_retries(write, what=f"record failure of trial {claim.number}")


@dataclass
class TrialResult:
    model: str
    slot: int
    number: int
    state: str
    value: float | None = None
    reason: str = ""


#: ``objective(trial, claim) -> value`` for a claimed trial.
ClaimObjective = Callable[[optuna.Trial, Claim], float]


def search_objective(
    config: CampaignConfig, splits: Splits, progress: EpochProgress | None = None
) -> ClaimObjective:
    def objective(trial: optuna.Trial, claim: Claim) -> float:
        return run_trial(
            trial,
            model_name=claim.model,
            space=config.model(claim.model).params,
            train_set=splits.train,
            val_set=splits.val,
            seed=claim.seed,
            device=config.device,
            prune=config.pruner != "none",
            progress=progress,
        )

    return objective


def execute_claim(opened: CampaignStudies, claim: Claim, objective: ClaimObjective) -> TrialResult:
    """Run a claimed trial to COMPLETE, PRUNED or FAIL (with ``fail_kind`` and ``fail_reason``)."""
    config = opened.config
    trial = optuna.Trial(claim.study, claim.trial_id)
    result = TrialResult(claim.model, claim.slot, claim.number, "RUNNING")
    with _Heartbeat(opened.storage, claim.trial_id, config.heartbeat_interval):
        try:
            with _interruptible():
                value = objective(trial, claim)
        except optuna.TrialPruned as exc:
            _check_file(opened, claim)
            with_retries(lambda: claim.study.tell(trial, state=TrialState.PRUNED), what="tell pruned")
            result.state, result.reason = "PRUNED", str(exc)
            return result
        except NonFiniteLossError as exc:
            _finish_failed(opened, claim, slot_mod.FAIL_NON_FINITE, str(exc))
            result.state, result.reason = "FAIL", str(exc)
            log.warning("%s slot %d failed: %s", claim.model, claim.slot, exc)
            return result
        except (Interrupted, KeyboardInterrupt) as exc:
            name = exc.args[0] if isinstance(exc, Interrupted) else "SIGINT"
            _finish_failed(
                opened, claim, slot_mod.FAIL_INTERRUPTED, f"interrupted by {name}; the slot will re-run"
            )
            raise
        except StorageError as exc:
            with contextlib.suppress(Exception):
                _finish_failed(opened, claim, slot_mod.FAIL_STORAGE, str(exc))
            raise
        except optuna.exceptions.UpdateFinishedTrialError:  # reporting an epoch of a trial failed elsewhere
            return _preempted(claim, result)
        except Exception as exc:
            if is_transient(exc):  # the database went away mid-trial (restart, failover): re-run the slot
                reason = f"storage: {str(exc.__cause__ or exc).splitlines()[0]}"
                _finish_failed(opened, claim, slot_mod.FAIL_STORAGE, redact_text(reason, opened.url))
                log.warning("%s slot %d: storage lost mid-trial; the slot re-runs", claim.model, claim.slot)
                result.state, result.reason = "FAIL", reason
                return result
            reason = f"{type(exc).__name__}: {exc}"
            _finish_failed(opened, claim, slot_mod.FAIL_ERROR, reason)
            log.exception("%s slot %d failed", claim.model, claim.slot)
            result.state, result.reason = "FAIL", reason
            return result
        _check_file(opened, claim)
        try:
            with_retries(lambda: claim.study.tell(trial, value), what=f"tell trial {claim.number}")
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):  # "Cannot tell a FAIL trial"
            if opened.storage.get_trial(claim.trial_id).state == TrialState.RUNNING:
                raise
            return _preempted(claim, result)
    result.state, result.value = "COMPLETE", value
    return result


def _preempted(claim: Claim, result: TrialResult) -> TrialResult:
    """Another worker failed this trial as stale while it ran: its heartbeats came later than
    ``grace_period`` (a stopped, suspended or starved process looks dead), and the slot was re-enqueued
    there. Drop this result and carry on: telling it would not fit a finished trial, and crashing
    would cost the worker."""
    result.state = "FAIL"
    result.reason = "preempted: failed as stale by another worker while running (late heartbeat)"
    log.warning(
        "%s slot %d (trial %d): %s; the slot re-runs", claim.model, claim.slot, claim.number, result.reason
    )
    return result


def _check_file(opened: CampaignStudies, claim: Claim) -> None:
    check_sqlite_file_unchanged(
        opened.storage,
        f"the result of trial {claim.number} ({claim.model} slot {claim.slot}) could not be stored",
    )


def load_campaign_data(config: CampaignConfig, *, include_test: bool) -> Splits:
    """The campaign's data and split, as its ``[data]`` table says."""
    return load_splits(
        config.data_dir,
        validation_split=config.validation_split,
        seed=config.split_seed,
        dedupe=config.dedupe,
        include_test=include_test,
    )


def load_search_data(config: CampaignConfig) -> Splits:
    """Train and validation splits only (``include_test=False``): the search never holds test data."""
    return load_campaign_data(config, include_test=False)


def campaign_has_running(opened: CampaignStudies) -> bool:
    return any(_trials(study, (TrialState.RUNNING,)) for study in opened.studies.values())


@dataclass
class WorkerReport:
    results: list[TrialResult] = field(default_factory=list)
    interrupted: bool = False


def work(
    config: CampaignConfig,
    url: str,
    *,
    threads: int,
    on_trial_start: Callable[[Claim], None] | None = None,
    on_trial_end: Callable[[TrialResult], None] | None = None,
    progress: EpochProgress | None = None,
    splits: Splits | None = None,
    max_trials: int | None = None,
) -> WorkerReport:
    """One search worker: claim and run trials until every slot of every study is settled."""
    set_threads(threads)
    splits = splits or load_search_data(config)
    opened = open_studies(config, url, splits.fingerprint)
    return work_loop(
        opened,
        search_objective(config, splits, progress),
        on_trial_start=on_trial_start,
        on_trial_end=on_trial_end,
        max_trials=max_trials,
    )


def work_loop(
    opened: CampaignStudies,
    objective: ClaimObjective,
    *,
    on_trial_start: Callable[[Claim], None] | None = None,
    on_trial_end: Callable[[TrialResult], None] | None = None,
    max_trials: int | None = None,
) -> WorkerReport:
    """Claim and run trials of ``opened``'s studies until every slot is settled (search and finalize)."""
    config, url = opened.config, opened.url
    report = WorkerReport()
    while max_trials is None or len(report.results) < max_trials:
        _raise_pending()  # safe point: nothing claimed
        check_sqlite_file_unchanged(opened.storage, "no further trial was claimed")
        claim = claim_next(opened)
        if claim is None:
            with _locked(config, url):
                added = sum(sweep(opened, model) for model in opened.studies)
            if added:
                continue
            if campaign_has_running(opened):
                time.sleep(min(config.heartbeat_interval, 5))
                continue
            break
        if on_trial_start:
            on_trial_start(claim)
        try:
            result = execute_claim(opened, claim, objective)
        except (Interrupted, KeyboardInterrupt):
            with contextlib.suppress(Exception), _locked(config, url):
                sweep(opened, claim.model)  # puts the interrupted slot back in the queue at once
            report.interrupted = True
            raise
        report.results.append(result)
        log.info(
            "%s slot %d (trial %d): %s%s%s",
            opened.studies[claim.model].study_name,
            claim.slot,
            claim.number,
            result.state,
            f", value {result.value:.4f}" if result.value is not None else "",
            f" ({result.reason})" if result.reason else "",
        )
        if on_trial_end:
            on_trial_end(result)
    _gate.pending = None  # a signal that came after the last trial stops nothing; do not keep it
    return report


class _InterruptGate:
    """Where SIGTERM may raise :class:`Interrupted`: only inside a trial's objective, whose trial is then
    recorded as interrupted. Anywhere else — claiming, telling, sweeping — raising could leave a claimed
    trial RUNNING with no record (and perhaps no heartbeat), so the signal waits for a safe point:
    the objective's start or the next claim."""

    open: bool = False
    pending: int | None = None


_gate = _InterruptGate()


def _raise_interrupted(signum: int, frame: object) -> None:
    if _gate.open:
        raise Interrupted(signum)
    _gate.pending = signum


def _raise_pending() -> None:
    if _gate.pending is not None:
        signum, _gate.pending = _gate.pending, None
        raise Interrupted(signum)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    _raise_pending()
    _gate.open = True
    try:
        yield
    finally:
        _gate.open = False


def worker_process_main(
    target: Callable[..., Any], kwargs: dict[str, Any], index: int, log_level: int
) -> None:
    """Entry point of a spawned worker process: ``target(**kwargs)`` (:func:`work`, or finalize's)."""
    logging.basicConfig(level=log_level, format=f"%(asctime)s worker{index} %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        target(**kwargs)
    except (Interrupted, KeyboardInterrupt):
        raise SystemExit(130) from None
    except MlRnnNamesError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


def threads_for(config: CampaignConfig, workers: int) -> int:
    return config.threads_per_worker or max(1, available_cpus() // max(1, workers))


def remaining_slots(opened: CampaignStudies) -> dict[str, int]:
    return {
        model: sum(not v.settled for v in opened.plans[model].views(_trials(study)))
        for model, study in opened.studies.items()
    }


def spawn_workers(
    config: CampaignConfig,
    url: str,
    workers: int,
    *,
    log_level: int,
    target: Callable[..., Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> list[Any]:
    """Start ``workers`` processes running ``target(config=, url=, threads=, **kwargs)`` (default: the
    search's :func:`work`). Spawned, not forked: no inherited torch thread pools or DB connections."""
    context = multiprocessing.get_context("spawn")
    call = {"config": config, "url": url, "threads": threads_for(config, workers), **(kwargs or {})}
    processes = []
    for index in range(workers):
        process = context.Process(
            target=worker_process_main, args=(target or work, call, index, log_level), name=f"worker{index}"
        )
        process.start()
        processes.append(process)
    return processes


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
