"""Training with the seed project's recipe, fast and deterministic (seed API: ``train``, ``set_seed``).

The recipe: shuffled mini-batches (a fresh permutation each epoch), mean NLL loss, SGD, gradient-norm
clipping at 3, and the validation loss after every epoch. ``train(seed=...)`` draws its permutations
from its own ``torch.Generator`` and never touches global RNG state, so a search loop that samples
hyperparameters from NumPy's global RNG is not rewound by each call (the seed's bug: its trials 0
and 1 came out identical).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import TypedDict

import numpy as np
import torch
from torch import nn

from ml_rnn_names.data import NamesDataset
from ml_rnn_names.errors import NonFiniteLossError

log = logging.getLogger(__name__)

GRAD_CLIP_NORM = 3.0
EVAL_BATCH_SIZE = 4096

#: ``on_epoch(epoch, train_loss, val_loss)`` after every epoch (1-based). It may raise to stop training
#: (the study layer raises ``optuna.TrialPruned`` through it).
EpochCallback = Callable[[int, float, float], None]


class TrainResult(TypedDict):
    train_losses: list[float]
    val_losses: list[float]


def set_seed(seed: int, device: torch.device | str | None = None) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (the notebook's search samples from NumPy's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.manual_seed_all(seed)


class _ClippedSGD:
    """Plain SGD with gradient-norm clipping: ``clip_grad_norm_(params, 3)`` then ``SGD.step()``.

    Why not those two calls: on small models they cost more than the arithmetic. Both regroup the
    parameters by device and dtype on every call (about 120 µs per batch for an RNN h128, 10 % of
    the whole training step). Here the parameter list is built once (a model's parameters share one
    device and dtype, which the ``_foreach`` ops require), and each step runs the same arithmetic
    (per-tensor norms, their norm, one clamped scale, ``p -= lr * g``), so the result is bitwise
    equal (``tests/test_training.py`` checks it).
    """

    def __init__(self, params: list[nn.Parameter], lr: float, max_norm: float) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr = float(lr)
        self.max_norm = float(max_norm)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        with_grad = [p for p in self.params if p.grad is not None]
        if not with_grad:
            return
        grads = [p.grad for p in with_grad]
        norms = torch._foreach_norm(grads)
        total = torch.linalg.vector_norm(torch.stack(norms))
        torch._foreach_mul_(grads, torch.clamp(self.max_norm / (total + 1e-6), max=1.0))
        torch._foreach_add_(with_grad, grads, alpha=-self.lr)


def _batch(data: NamesDataset, rows: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Slice one batch out of the pre-encoded tensors, trimmed to the batch's longest name."""
    # index_select, not advanced indexing (``t[rows]``): on these small gathers it is ~4x cheaper.
    lengths = data.lengths.index_select(0, rows.cpu())
    width = int(lengths.max())
    on_data = rows.to(data.indices.device)
    indices = data.indices[:, :width].index_select(0, on_data).to(device, non_blocking=True)
    targets = data.targets.index_select(0, on_data.to(data.targets.device)).to(device, non_blocking=True)
    return indices, lengths, targets


def predict_log_probs(
    model: nn.Module, data: NamesDataset, *, batch_size: int = EVAL_BATCH_SIZE
) -> torch.Tensor:
    """Log-probabilities ``(N, n_classes)`` for every name, in large batches under inference mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.inference_mode():
            for start in range(0, len(data), batch_size):
                rows = torch.arange(start, min(start + batch_size, len(data)))
                indices, lengths, _ = _batch(data, rows, device)
                outputs.append(model(indices, lengths))
    finally:
        model.train(was_training)
    if not outputs:
        return torch.empty(0, 0)
    return torch.cat(outputs)


def evaluate_loss(model: nn.Module, data: NamesDataset, *, batch_size: int = EVAL_BATCH_SIZE) -> float:
    """Mean NLL of ``model`` over ``data``."""
    log_probs = predict_log_probs(model, data, batch_size=batch_size)
    targets = data.targets.to(log_probs.device)
    return float(nn.functional.nll_loss(log_probs, targets))


def train(
    model: nn.Module,
    training_data: NamesDataset,
    validation_data: NamesDataset | None = None,
    n_epoch: int = 10,
    n_batch_size: int = 64,
    learning_rate: float = 0.2,
    device: torch.device | str | None = None,
    seed: int = 0,
    report_every: int = 1,
    *,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train ``model`` in place; return the per-epoch mean train loss and validation loss.

    Raises :class:`NonFiniteLossError` as soon as a batch loss is NaN or infinite.
    """
    if n_epoch < 1 or n_batch_size < 1 or not learning_rate > 0:
        raise ValueError(
            f"need n_epoch ≥ 1, n_batch_size ≥ 1, learning_rate > 0; got {n_epoch}, {n_batch_size}, "
            f"{learning_rate}"
        )
    if len(training_data) == 0:
        raise ValueError("training_data is empty")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    generator = torch.Generator().manual_seed(int(seed))
    optimizer = _ClippedSGD(list(model.parameters()), learning_rate, GRAD_CLIP_NORM)
    criterion = nn.NLLLoss()
    result: TrainResult = {"train_losses": [], "val_losses": []}
    n = len(training_data)

    for epoch in range(1, n_epoch + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        total, n_batches = 0.0, 0
        for batch_no, start in enumerate(range(0, n, n_batch_size)):
            indices, lengths, targets = _batch(training_data, order[start : start + n_batch_size], device)
            loss = criterion(model(indices, lengths), targets)
            value = loss.item()
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"training loss became {value} at epoch {epoch}, batch {batch_no} "
                    f"(learning_rate={learning_rate}); lower the learning rate",
                    epoch=epoch,
                    batch=batch_no,
                    value=value,
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()  # clips the gradient norm to GRAD_CLIP_NORM, then p -= lr * grad
            total += value
            n_batches += 1
        train_loss = total / n_batches
        val_loss = evaluate_loss(model, validation_data) if validation_data is not None else math.nan
        if validation_data is not None and not math.isfinite(val_loss):
            raise NonFiniteLossError(
                f"validation loss became {val_loss} at epoch {epoch} (learning_rate={learning_rate})",
                epoch=epoch,
                batch=None,
                value=val_loss,
            )
        result["train_losses"].append(train_loss)
        result["val_losses"].append(val_loss)
        if report_every and (epoch % report_every == 0 or epoch == n_epoch):
            log.info("epoch %d/%d: train loss %.4f, val loss %.4f", epoch, n_epoch, train_loss, val_loss)
        if on_epoch is not None:
            on_epoch(epoch, train_loss, val_loss)
    return result
