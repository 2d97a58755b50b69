"""Predict languages for names with the finalized models (averaged over the finalize seeds)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from ml_rnn_names.data import NamesDataset
from ml_rnn_names.errors import MlRnnNamesError
from ml_rnn_names.processing import unicode_to_ascii
from ml_rnn_names.study.artifacts import artifact_store
from ml_rnn_names.study.checkpoints import load_checkpoint, model_from_checkpoint
from ml_rnn_names.study.storage import open_storage
from ml_rnn_names.training import predict_log_probs


@dataclass
class Prediction:
    name: str
    folded: str
    top: list[tuple[str, float]]  # (language, probability), most likely first


def load_final_models(campaign: object, model: str) -> tuple[list[torch.nn.Module], list[str]]:
    """The latest finalize round's seed models of ``model``, from the artifact store (weights only)."""
    from ml_rnn_names.study.finalize import final_study_name

    config = campaign.config  # type: ignore[attr-defined]
    config.model(model)  # an unknown model is a ConfigError naming the campaign's models, not "not finalized"
    storage = open_storage(campaign.storage_url)  # type: ignore[attr-defined]
    try:
        study = optuna.load_study(study_name=final_study_name(config, model), storage=storage)
    except KeyError:
        raise MlRnnNamesError(f"{model} is not finalized: run `ml-rnn-names finalize` first") from None
    trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not trials:
        raise MlRnnNamesError(f"{model} is not finalized: run `ml-rnn-names finalize` first")
    latest = max(int(t.user_attrs["round"]) for t in trials)
    chosen = sorted(
        (t for t in trials if t.user_attrs["round"] == latest), key=lambda t: t.user_attrs["seed"]
    )
    store = artifact_store(config)
    models, labels = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for t in chosen:
            artifact_id = t.user_attrs.get("checkpoint_artifact_id")
            if not artifact_id:
                raise MlRnnNamesError(f"{study.study_name} trial {t.number} has no checkpoint")
            path = Path(tmp) / f"{artifact_id}.pt"
            try:
                optuna.artifacts.download_artifact(
                    artifact_store=store, file_path=str(path), artifact_id=artifact_id
                )
            except Exception as exc:
                raise MlRnnNamesError(
                    f"checkpoint {artifact_id} of {study.study_name} trial {t.number} is missing from the "
                    "artifact "
                    f"store ({exc}); is the artifact folder shared with the machine that ran finalize?"
                ) from None
            payload = load_checkpoint(path)
            models.append(model_from_checkpoint(payload))
            labels = payload["labels"]
    return models, labels


def predict(campaign: object, names: list[str], *, model: str, top: int = 3) -> list[Prediction]:
    """Top-``top`` languages per name: probabilities averaged over the seed models."""
    models, labels = load_final_models(campaign, model)
    folded = [unicode_to_ascii(n).strip() for n in names]
    empty = [n for n, f in zip(names, folded, strict=True) if not f]
    if empty:
        raise MlRnnNamesError(f"these names have no letters left after folding to ASCII: {empty}")
    data = NamesDataset.from_pairs([(f, 0) for f in folded], labels)
    probs = torch.stack([predict_log_probs(m, data).exp() for m in models]).mean(dim=0)  # (N, C)
    k = max(1, min(top, len(labels)))
    values, indices = probs.topk(k, dim=1)
    return [
        Prediction(name, f, [(labels[i], float(p)) for p, i in zip(vals.tolist(), idx.tolist(), strict=True)])
        for name, f, vals, idx in zip(names, folded, values, indices, strict=True)
    ]
