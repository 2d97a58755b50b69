"""One trial: params → model → train on *train* → validation loss per epoch.

This module is handed the train and validation splits only; the test split never reaches it (the
runner loads data with ``include_test=False``). It reports the validation loss every epoch so
dashboards draw learning curves, and records on the trial what a reader needs to trust its value.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna
import torch

from ml_rnn_names.data import NamesDataset
from ml_rnn_names.evaluation import split_metrics
from ml_rnn_names.model import build_model
from ml_rnn_names.processing import n_letters
from ml_rnn_names.study.config import ParamSpec
from ml_rnn_names.study.space import params_from_trial
from ml_rnn_names.training import train

#: ``progress(epoch, n_epoch)`` for the CLI's epoch bar.
EpochProgress = Callable[[int, int], None]


def train_params(
    model_name: str,
    params: dict[str, Any],
    *,
    train_set: NamesDataset,
    val_set: NamesDataset,
    seed: int,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> tuple[torch.nn.Module, dict[str, list[float]]]:
    """Build ``model_name`` with ``params`` (weights from ``seed``) and train it; shared with finalize."""
    model = build_model(model_name, n_letters=n_letters, n_classes=len(train_set.labels), seed=seed, **params)
    history = train(
        model,
        train_set,
        val_set,
        n_epoch=int(params["n_epoch"]),
        n_batch_size=int(params["n_batch_size"]),
        learning_rate=float(params["learning_rate"]),
        device=device,
        seed=seed,
        report_every=0,
        on_epoch=on_epoch,
    )
    return model, dict(history)


def run_trial(
    trial: optuna.Trial,
    *,
    model_name: str,
    space: Sequence[ParamSpec],
    train_set: NamesDataset,
    val_set: NamesDataset,
    seed: int,
    device: torch.device | str,
    prune: bool,
    progress: EpochProgress | None = None,
) -> float:
    """Train one trial and return its final-epoch validation loss (the value the study minimises)."""
    params = params_from_trial(trial, space)
    n_epoch = int(params["n_epoch"])
    started = time.perf_counter()

    def on_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
        trial.report(val_loss, step=epoch)
        if progress is not None:
            progress(epoch, n_epoch)
        if prune and trial.should_prune():
            trial.set_user_attr("pruned_at_epoch", epoch)
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with val loss {val_loss:.4f}")

    model, history = train_params(
        model_name, params, train_set=train_set, val_set=val_set, seed=seed, device=device, on_epoch=on_epoch
    )
    wall = time.perf_counter() - started
    metrics = split_metrics(model, val_set)
    for key, value in {
        "train_losses": history["train_losses"],
        "val_losses": history["val_losses"],
        "val_accuracy": metrics["accuracy"],
        "val_macro_f1": metrics["macro_f1"],
        "wall_time_s": round(wall, 3),
        "names_per_s": round(n_epoch * len(train_set) / wall, 1),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }.items():
        trial.set_user_attr(key, value)
    return history["val_losses"][-1]
