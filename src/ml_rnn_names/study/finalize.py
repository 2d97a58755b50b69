"""Finalize: retrain each model's best trial over the finalize seeds and touch the test set once.

Finalize trials live in a study of their own per model, ``<campaign>/<model>/finalize``: slot
``round * n_seeds + i`` retrains the best search trial with ``seeds[i]``. That reuses the search's
claim / heartbeat / resume machinery (a killed finalize re-runs only the missing (model, seed)
pairs), shows the results in optuna-dashboard, and makes the **test audit** exact: every COMPLETE
finalize trial is one recorded test evaluation (when, which search trial and seed, data
fingerprint, package version). Running finalize again reuses the latest round; ``--force`` starts
a new round, and the audit count grows.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ml_rnn_names import __version__
from ml_rnn_names.data import Splits
from ml_rnn_names.errors import FairnessError, MlRnnNamesError
from ml_rnn_names.evaluation import compute_confusion_matrix, per_class_report, split_metrics
from ml_rnn_names.study import runner, stats
from ml_rnn_names.study.checkpoints import checkpoint_payload, save_checkpoint
from ml_rnn_names.study.config import CampaignConfig
from ml_rnn_names.study.objective import train_params
from ml_rnn_names.study.space import params_from_trial, space_distributions
from ml_rnn_names.study.storage import open_storage, with_retries
from ml_rnn_names.training import predict_log_probs
from ml_rnn_names.utils import set_threads

if TYPE_CHECKING:
    from ml_rnn_names.study.campaign import Campaign

log = logging.getLogger(__name__)

FINAL_ATTR = "ml_rnn_names_finalize"


def final_study_name(config: CampaignConfig, model: str) -> str:
    return f"{config.study_name(model)}/finalize"


# ------------------------------------------------------------------------------------------ fairness


def fairness_problems(
    config: CampaignConfig, studies: dict[str, optuna.Study], fingerprint: str
) -> list[str]:
    """What makes the model studies unfair to compare (empty when they are comparable)."""
    problems: list[str] = []
    identities = {}
    for model, study in studies.items():
        stored = study.user_attrs.get(runner.ATTR)
        if not stored:
            problems.append(f"study {study.study_name} has no campaign record (was it created by this tool?)")
            continue
        identities[model] = stored["identity"]
        if stored["identity"].get("data_fingerprint") != fingerprint:
            problems.append(
                f"study {study.study_name} was searched on data "
                f"{str(stored['identity'].get('data_fingerprint'))[:12]}, "
                f"but the data is now {fingerprint[:12]}"
            )
    models = list(identities)
    for other in models[1:]:
        a, b = identities[models[0]], identities[other]
        for key in (
            "data_fingerprint",
            "n_trials",
            "sampler_seed",
            "split_seed",
            "validation_split",
            "dedupe",
            "pruner",
        ):
            if a.get(key) != b.get(key):
                problems.append(f"{key} differs: {models[0]} {a.get(key)!r}, {other} {b.get(key)!r}")
        space_a = {p["name"]: p for p in a.get("search_space", [])}
        space_b = {p["name"]: p for p in b.get("search_space", [])}
        for name in sorted(set(space_a) & set(space_b)):
            if space_a[name] != space_b[name]:
                problems.append(
                    f"shared param {name} differs: {models[0]} {space_a[name]}, {other} {space_b[name]}"
                )
    return problems


def incomplete_studies(config: CampaignConfig, studies: dict[str, optuna.Study]) -> dict[str, int]:
    """Model → COMPLETE slots, for studies with fewer than their budget."""
    from ml_rnn_names.study import slots as slot_mod

    out = {}
    for model, study in studies.items():
        views = slot_mod.slot_views(study.get_trials(deepcopy=False), config.n_trials)
        complete = sum(v.complete is not None for v in views)
        if complete < config.n_trials:
            out[model] = complete
    return out


# ------------------------------------------------------------------------------------------- rounds


@dataclass(frozen=True)
class FinalPlanSpec:
    """What one model's finalize round retrains (picklable: it travels to worker processes)."""

    model: str
    round: int
    source_number: int
    source_slot: int
    source_value: float
    params: dict[str, Any]
    search_complete: int = -1  # COMPLETE search slots when this round was planned
    allow_incomplete: bool = False
    started: datetime | None = None  # this finalize invocation: earlier errors are retried


def _final_trials(study: optuna.Study) -> list[FrozenTrial]:
    return with_retries(lambda: study.get_trials(deepcopy=False), what="read finalize trials")


def _plan(config: CampaignConfig, spec: FinalPlanSpec) -> runner.SlotPlan:
    seeds = config.finalize_seeds
    n = len(seeds)
    return runner.SlotPlan(
        n_slots=(spec.round + 1) * n,
        params=lambda slot: dict(spec.params),
        seed=lambda slot: seeds[slot % n],
        attrs=lambda slot: {
            "round": slot // n,
            "source_trial": spec.source_number,
            "source_slot": spec.source_slot,
            "source_val_loss": spec.source_value,
            "search_complete_slots": spec.search_complete,
            "allow_incomplete": spec.allow_incomplete,
        },
        first_slot=spec.round * n,
        errors_since=spec.started,
        distributions=space_distributions(config.model(spec.model).params),
    )


def open_final_studies(
    config: CampaignConfig,
    url: str,
    specs: dict[str, FinalPlanSpec],
    fingerprint: str,
    *,
    heartbeat: bool = True,
) -> runner.CampaignStudies:
    storage = open_storage(
        url,
        heartbeat_interval=config.heartbeat_interval if heartbeat else None,
        grace_period=config.grace_period if heartbeat else None,
    )
    studies = {}
    with runner._locked(config, url):
        for model in specs:
            study = with_retries(
                lambda m=model: optuna.create_study(
                    study_name=final_study_name(config, m),
                    storage=storage,
                    direction="minimize",
                    load_if_exists=True,
                ),
                what="create finalize study",
            )
            if FINAL_ATTR not in study.user_attrs:
                study.set_user_attr(
                    FINAL_ATTR,
                    {
                        "campaign": config.name,
                        "model": model,
                        "seeds": list(config.finalize_seeds),
                        "value": "test loss (mean NLL) of the retrained best trial",
                    },
                )
            studies[model] = study
        opened = runner.CampaignStudies(
            config, storage, url, studies, fingerprint, {m: _plan(config, s) for m, s in specs.items()}
        )
        if heartbeat:
            for model in specs:
                runner.sweep(opened, model)
    return opened


def _latest_round(trials: list[FrozenTrial]) -> tuple[int, int | None]:
    """(latest round, its source trial number) over the non-duplicate trials; (-1, None) when none."""
    real = [t for t in trials if t.user_attrs.get("fail_kind") != "duplicate" and "round" in t.user_attrs]
    if not real:
        return -1, None
    latest = max(int(t.user_attrs["round"]) for t in real)
    sources = {t.user_attrs.get("source_trial") for t in real if t.user_attrs["round"] == latest}
    return latest, next(iter(sources)) if len(sources) == 1 else None


# ------------------------------------------------------------------------------------------ objective


def finalize_objective(config: CampaignConfig, splits: Splits, store: Any) -> runner.ClaimObjective:
    """Retrain on train with the slot's seed, then evaluate on test once and record it on the trial."""
    if splits.test is None:
        raise MlRnnNamesError("finalize needs the test split")
    test = splits.test

    def objective(trial: optuna.Trial, claim: runner.Claim) -> float:
        params = params_from_trial(trial, config.model(claim.model).params)
        model, history = train_params(
            claim.model,
            params,
            train_set=splits.train,
            val_set=splits.val,
            seed=claim.seed,
            device=config.device,
        )
        # ---- the only place test data is read: one evaluation per COMPLETE finalize trial ----
        metrics = split_metrics(model, test)
        confusion = compute_confusion_matrix(model, test, len(test.labels))
        classes = per_class_report(model, test)
        predictions = predict_log_probs(model, test).argmax(dim=1).tolist()
        evaluated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        val = split_metrics(model, splits.val)
        attrs = {
            "test_evaluated_at": evaluated_at,
            "test_accuracy": metrics["accuracy"],
            "test_loss": metrics["loss"],
            "test_macro_f1": metrics["macro_f1"],
            "val_accuracy": val["accuracy"],
            "val_loss": val["loss"],
            "test_confusion": confusion.long().tolist(),
            "test_per_class": classes,
            "test_predictions": predictions,
            "train_losses": history["train_losses"],
            "val_losses": history["val_losses"],
            "data_fingerprint": splits.fingerprint,
            "package_version": __version__,
        }
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        payload = checkpoint_payload(
            model,
            model_name=claim.model,
            params=params,
            labels=test.labels,
            seed=claim.seed,
            data_fingerprint=splits.fingerprint,
            campaign=config.name,
            source_trial=int(trial.user_attrs.get("source_trial", -1)),
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{config.name}-{claim.model}-seed{claim.seed}.pt"
            save_checkpoint(payload, path)
            artifact_id = optuna.artifacts.upload_artifact(
                artifact_store=store,
                file_path=str(path),
                study_or_trial=trial,
                mimetype="application/octet-stream",
            )
        trial.set_user_attr("checkpoint_artifact_id", artifact_id)
        return metrics["loss"]

    return objective


def load_final_data(config: CampaignConfig) -> Splits:
    """All three splits: finalize is the only reader of the test split."""
    return runner.load_campaign_data(config, include_test=True)


def finalize_work(
    config: CampaignConfig,
    url: str,
    *,
    threads: int,
    specs: dict[str, FinalPlanSpec],
    splits: Splits | None = None,
) -> runner.WorkerReport:
    """One finalize worker (in-process or spawned): run unsettled (model, seed) slots of this round."""
    from ml_rnn_names.study.artifacts import artifact_store

    set_threads(threads)
    splits = splits or load_final_data(config)
    opened = open_final_studies(config, url, specs, splits.fingerprint)
    return runner.work_loop(opened, finalize_objective(config, splits, artifact_store(config)))


# ------------------------------------------------------------------------------------------- results


@dataclass
class SeedResult:
    seed: int
    trial_number: int
    test_accuracy: float
    test_loss: float
    test_macro_f1: float
    evaluated_at: str
    checkpoint_artifact_id: str | None
    predictions: list[int] = field(repr=False)
    confusion: list[list[int]] = field(repr=False)
    per_class: dict[str, dict[str, float]] = field(repr=False)


@dataclass
class ModelFinal:
    model: str
    source_trial: int
    source_slot: int
    source_val_loss: float
    params: dict[str, Any]
    round: int
    seeds: list[SeedResult]
    accuracy: stats.Summary
    loss: stats.Summary
    macro_f1: stats.Summary


@dataclass
class FinalizeResult:
    campaign: str
    models: dict[str, ModelFinal]
    comparisons: list[stats.Comparison]
    audit: list[dict[str, Any]]
    labels: list[str]
    truth: list[int]
    fingerprint: str
    allow_incomplete: bool
    incomplete: dict[str, int]
    evaluated_now: int
    wall_time_s: float

    @property
    def audit_count(self) -> int:
        return len(self.audit)

    def to_json(self) -> dict[str, Any]:
        """Plain data for report.json (predictions left out: they are in the storage)."""
        return {
            "campaign": self.campaign,
            "fingerprint": self.fingerprint,
            "allow_incomplete": self.allow_incomplete,
            "incomplete": self.incomplete,
            "audit_count": self.audit_count,
            "audit": self.audit,
            "models": {
                name: {
                    "source_trial": m.source_trial,
                    "source_slot": m.source_slot,
                    "source_val_loss": m.source_val_loss,
                    "params": m.params,
                    "round": m.round,
                    "accuracy": m.accuracy.as_dict(),
                    "loss": m.loss.as_dict(),
                    "macro_f1": m.macro_f1.as_dict(),
                    "seeds": [
                        {k: v for k, v in s.__dict__.items() if k not in ("predictions", "confusion")}
                        for s in m.seeds
                    ],
                }
                for name, m in self.models.items()
            },
            "comparisons": [c.as_dict() for c in self.comparisons],
        }


def collect_results(
    config: CampaignConfig,
    final_studies: dict[str, optuna.Study],
    specs: dict[str, FinalPlanSpec],
    splits_truth: list[int],
    labels: list[str],
) -> tuple[dict[str, ModelFinal], list[dict[str, Any]]]:
    """Read the latest round's results and the whole audit trail from the storage."""
    models: dict[str, ModelFinal] = {}
    audit: list[dict[str, Any]] = []
    n = len(config.finalize_seeds)
    for model, study in final_studies.items():
        trials = _final_trials(study)
        for t in trials:
            if t.state == TrialState.COMPLETE and "test_evaluated_at" in t.user_attrs:
                audit.append(
                    {
                        "model": model,
                        "finalize_trial": t.number,
                        "round": t.user_attrs.get("round"),
                        "seed": t.user_attrs.get("seed"),
                        "source_trial": t.user_attrs.get("source_trial"),
                        "evaluated_at": t.user_attrs["test_evaluated_at"],
                        "data_fingerprint": t.user_attrs.get("data_fingerprint"),
                        "package_version": t.user_attrs.get("package_version"),
                    }
                )
        spec = specs[model]
        seeds = []
        for slot in range(spec.round * n, (spec.round + 1) * n):
            done = [t for t in trials if t.user_attrs.get("slot") == slot and t.state == TrialState.COMPLETE]
            if not done:
                failed = [
                    t for t in trials if t.user_attrs.get("slot") == slot and t.state == TrialState.FAIL
                ]
                why = (
                    f" (last failure: {failed[-1].user_attrs.get('fail_reason', 'unknown')})"
                    if failed
                    else ""
                )
                raise MlRnnNamesError(
                    f"{study.study_name}: seed {config.finalize_seeds[slot % n]} has no result{why}; "
                    "fix the cause and run finalize again (it retries the missing seeds)"
                )
            t = done[-1]
            seeds.append(
                SeedResult(
                    seed=int(t.user_attrs["seed"]),
                    trial_number=t.number,
                    test_accuracy=float(t.user_attrs["test_accuracy"]),
                    test_loss=float(t.user_attrs["test_loss"]),
                    test_macro_f1=float(t.user_attrs["test_macro_f1"]),
                    evaluated_at=str(t.user_attrs["test_evaluated_at"]),
                    checkpoint_artifact_id=t.user_attrs.get("checkpoint_artifact_id"),
                    predictions=list(t.user_attrs["test_predictions"]),
                    confusion=t.user_attrs["test_confusion"],
                    per_class=t.user_attrs["test_per_class"],
                )
            )
        models[model] = ModelFinal(
            model=model,
            source_trial=spec.source_number,
            source_slot=spec.source_slot,
            source_val_loss=spec.source_value,
            params=spec.params,
            round=spec.round,
            seeds=seeds,
            accuracy=stats.summarize([s.test_accuracy for s in seeds], config.confidence),
            loss=stats.summarize([s.test_loss for s in seeds], config.confidence),
            macro_f1=stats.summarize([s.test_macro_f1 for s in seeds], config.confidence),
        )
    audit.sort(key=lambda row: (row["evaluated_at"], row["model"], row["finalize_trial"]))
    return models, audit


def comparisons(
    config: CampaignConfig, models: dict[str, ModelFinal], truth: list[int]
) -> list[stats.Comparison]:
    """Every other model against the first one (the campaign's baseline, e.g. LSTM vs RNN)."""
    names = list(models)
    out = []
    for other in names[1:]:
        a, b = models[names[0]], models[other]
        out.append(
            stats.compare(
                a.model,
                b.model,
                [s.test_accuracy for s in a.seeds],
                [s.test_accuracy for s in b.seeds],
                [s.predictions for s in a.seeds],
                [s.predictions for s in b.seeds],
                truth,
                config.confidence,
            )
        )
    return out


def finalize_campaign(
    campaign: Campaign,
    *,
    workers: int = 1,
    force: bool = False,
    allow_incomplete: bool = False,
) -> FinalizeResult:
    """Check fairness, retrain best trials × seeds where no result is recorded, evaluate test, compare."""
    config = campaign.config
    started = time.perf_counter()
    invocation_started = datetime.now()  # naive local time, as Optuna stores datetime_complete
    splits = load_final_data(config)
    opened = campaign.open(create=False, heartbeat=False)
    problems = fairness_problems(config, opened.studies, splits.fingerprint)
    if problems:
        raise FairnessError(
            "refusing to finalize: the studies are not a fair comparison:\n  - " + "\n  - ".join(problems)
        )
    incomplete = incomplete_studies(config, opened.studies)
    if incomplete and not allow_incomplete:
        detail = ", ".join(f"{m} has {c}/{config.n_trials}" for m, c in incomplete.items())
        raise FairnessError(
            f"refusing to finalize: not every study has its budget of COMPLETE trials ({detail}); "
            "run the search to the end, or pass --allow-incomplete (the report will say so)"
        )
    best = campaign.best()
    missing = [m for m in config.model_names if m not in best]
    if missing:
        raise FairnessError(f"no COMPLETE trial to finalize for {missing}")

    specs: dict[str, FinalPlanSpec] = {}
    existing = open_final_studies(
        config,
        campaign.storage_url,
        {m: FinalPlanSpec(m, 0, best[m].number, 0, 0.0, {}) for m in config.model_names},
        splits.fingerprint,
        heartbeat=False,
    ).studies
    for model in config.model_names:
        trial = best[model]
        latest, source = _latest_round(_final_trials(existing[model]))
        if latest < 0:
            round_ = 0
        elif force or source != trial.number:
            round_ = latest + 1
            if not force:
                log.warning(
                    "%s: the best trial changed (%s → %s): finalizing it in round %d",
                    model,
                    source,
                    trial.number,
                    round_,
                )
        else:
            round_ = latest
        specs[model] = FinalPlanSpec(
            model,
            round_,
            trial.number,
            int(trial.user_attrs.get("slot", -1)),
            float(trial.value),
            dict(trial.params),
            search_complete=incomplete.get(model, config.n_trials),
            allow_incomplete=bool(incomplete),
            started=invocation_started,
        )

    before = sum(
        1
        for s in existing.values()
        for t in _final_trials(s)
        if t.state == TrialState.COMPLETE and "test_evaluated_at" in t.user_attrs
    )
    if workers <= 1:
        finalize_work(
            config, campaign.storage_url, threads=runner.threads_for(config, 1), specs=specs, splits=splits
        )
    else:
        campaign._run_processes(workers, target=finalize_work, kwargs={"specs": specs})

    final = open_final_studies(
        config, campaign.storage_url, specs, splits.fingerprint, heartbeat=False
    ).studies
    result = _assemble(config, final, specs, splits, allow_incomplete=bool(incomplete), incomplete=incomplete)
    result.evaluated_now = len(result.audit) - before
    result.wall_time_s = time.perf_counter() - started
    return result


def _assemble(
    config: CampaignConfig,
    studies: dict[str, optuna.Study],
    specs: dict[str, FinalPlanSpec],
    splits: Splits,
    *,
    allow_incomplete: bool,
    incomplete: dict[str, int],
) -> FinalizeResult:
    """The recorded per-seed results of ``specs``' rounds, summarised and compared."""
    if splits.test is None:
        raise MlRnnNamesError("finalize results need the test split; load the data with include_test=True")
    truth = splits.test.targets.tolist()
    models, audit = collect_results(config, studies, specs, truth, splits.labels)
    return FinalizeResult(
        campaign=config.name,
        models=models,
        comparisons=comparisons(config, models, truth),
        audit=audit,
        labels=splits.labels,
        truth=truth,
        fingerprint=splits.fingerprint,
        allow_incomplete=allow_incomplete,
        incomplete=incomplete,
        evaluated_now=0,
        wall_time_s=0.0,
    )


def load_finalized(campaign: Campaign) -> FinalizeResult:
    """The recorded finalize results, from the storage alone (no training, no test evaluation)."""
    config = campaign.config
    splits = load_final_data(config)
    specs: dict[str, FinalPlanSpec] = {}
    storage = open_storage(campaign.storage_url)
    probe: dict[str, optuna.Study] = {}
    for model in config.model_names:
        try:  # load, never create: reading results must not leave empty finalize studies behind
            probe[model] = optuna.load_study(study_name=final_study_name(config, model), storage=storage)
        except KeyError:
            raise MlRnnNamesError(
                f"{final_study_name(config, model)} does not exist: run `ml-rnn-names finalize` first"
            ) from None
    for model, study in probe.items():
        trials = [t for t in _final_trials(study) if t.state == TrialState.COMPLETE]
        if not trials:
            raise MlRnnNamesError(f"{study.study_name} has no results: run `ml-rnn-names finalize` first")
        latest = max(int(t.user_attrs["round"]) for t in trials)
        t = next(t for t in trials if t.user_attrs["round"] == latest)
        specs[model] = FinalPlanSpec(
            model,
            latest,
            int(t.user_attrs["source_trial"]),
            int(t.user_attrs.get("source_slot", -1)),
            float(t.user_attrs.get("source_val_loss", float("nan"))),
            dict(t.params),
            search_complete=int(t.user_attrs.get("search_complete_slots", config.n_trials)),
            allow_incomplete=bool(t.user_attrs.get("allow_incomplete", False)),
        )
    # what finalize ran with (recorded on its trials), not how complete the search is now
    incomplete = {m: s.search_complete for m, s in specs.items() if s.search_complete < config.n_trials}
    return _assemble(
        config,
        probe,
        specs,
        splits,
        allow_incomplete=any(s.allow_incomplete for s in specs.values()),
        incomplete=incomplete,
    )


def format_results(result: FinalizeResult) -> str:
    """The seed notebook's final table, plus the comparison and the audit count."""
    lines = [
        "=" * 70,
        "FINAL RESULTS (Test Set)",
        "=" * 70,
        f"{'Model':<10} {'Accuracy':<25} {'Loss':<25}",
        "-" * 70,
    ]
    for name, m in result.models.items():
        acc = f"{m.accuracy.mean * 100:.1f}% +/- {m.accuracy.std * 100:.1f}%"
        loss = f"{m.loss.mean:.4f} +/- {m.loss.std:.4f}"
        lines.append(f"{name:<10} {acc:<25} {loss:<25}")
    lines.append("")
    for c in result.comparisons:
        lines.append(c.sentence())
    lines.append(
        f"test evaluations recorded: {result.audit_count} ({result.evaluated_now} in this run)"
        + ("; INCOMPLETE studies: " + json.dumps(result.incomplete) if result.allow_incomplete else "")
    )
    lines.append("\nBest hyperparameters used:")
    for name, m in result.models.items():
        lines.append(
            f"\n{name}: (search trial {m.source_trial}, slot {m.source_slot}, "
            f"val loss {m.source_val_loss:.4f})"
        )
        for k, v in m.params.items():
            lines.append(f"  {k}: {v}")
    return "\n".join(lines)
