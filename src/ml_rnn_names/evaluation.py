"""Metrics on a trained model (seed API): accuracy, loss, macro-F1, confusion matrix and its plot.

Predictions come from one batched pass under ``torch.inference_mode``; the metrics themselves are
scikit-learn's, so they mean what readers expect them to mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ml_rnn_names.data import NamesDataset
from ml_rnn_names.training import predict_log_probs

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _predictions(model: nn.Module, data: NamesDataset) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    log_probs = predict_log_probs(model, data).cpu()
    return log_probs, data.targets.cpu().numpy(), log_probs.argmax(dim=1).numpy()


def compute_accuracy(model: nn.Module, data: NamesDataset) -> float:
    """Fraction of names whose most likely label is the true one."""
    _, truth, predicted = _predictions(model, data)
    return float((truth == predicted).mean()) if len(truth) else float("nan")


def split_metrics(model: nn.Module, data: NamesDataset) -> dict[str, float]:
    """Accuracy, mean NLL loss and macro-F1 (over all labels, absent ones scoring 0) of one split."""
    log_probs, truth, predicted = _predictions(model, data)
    from sklearn.metrics import f1_score  # on first use: status/config/dashboard never import sklearn

    n_classes = len(data.labels)
    return {
        "accuracy": float((truth == predicted).mean()),
        "loss": float(nn.functional.nll_loss(log_probs, torch.from_numpy(truth))),
        "macro_f1": float(
            f1_score(truth, predicted, labels=list(range(n_classes)), average="macro", zero_division=0)
        ),
    }


def evaluate_model(
    model: nn.Module,
    train_data: NamesDataset | None,
    val_data: NamesDataset | None,
    test_data: NamesDataset | None,
) -> dict[str, float]:
    """``{train,val,test}_{accuracy,loss,macro_f1}`` for every split given (``None`` splits are skipped)."""
    metrics: dict[str, float] = {}
    for prefix, data in (("train", train_data), ("val", val_data), ("test", test_data)):
        if data is not None:
            metrics.update({f"{prefix}_{k}": v for k, v in split_metrics(model, data).items()})
    return metrics


def per_class_report(model: nn.Module, data: NamesDataset) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of every label."""
    from sklearn.metrics import precision_recall_fscore_support

    _, truth, predicted = _predictions(model, data)
    labels = list(range(len(data.labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    return {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(data.labels, precision, recall, f1, support, strict=True)
    }


def compute_confusion_matrix(model: nn.Module, data: NamesDataset, n_classes: int) -> torch.Tensor:
    """Counts ``(n_classes, n_classes)`` as a float tensor: row = true label, column = prediction.

    Float so that the notebook can normalise rows in place.
    """
    from sklearn.metrics import confusion_matrix

    _, truth, predicted = _predictions(model, data)
    counts = confusion_matrix(truth, predicted, labels=list(range(n_classes)))
    return torch.from_numpy(counts.astype(np.float32))


def normalize_rows(confusion: torch.Tensor | np.ndarray) -> np.ndarray:
    """Each row divided by its total (recall per true label); empty rows stay zero."""
    matrix = np.asarray(confusion, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def plot_confusion_matrix(
    confusion: torch.Tensor | np.ndarray,
    labels: Sequence[str],
    *,
    title: str = "Confusion matrix",
    normalize: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """Draw a (row-normalised) confusion matrix with every label readable; returns the figure."""
    import matplotlib.pyplot as plt

    matrix = normalize_rows(confusion) if normalize else np.asarray(confusion, dtype=np.float64)
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 7), layout="constrained")
    else:
        fig = ax.figure  # type: ignore[assignment]
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0 if normalize else None)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colorbar.set_label("fraction of the true label's names" if normalize else "names")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels=list(labels), rotation=90, fontsize=8)
    ax.set_yticks(ticks, labels=list(labels), fontsize=8)
    ax.set_xlabel("predicted language")
    ax.set_ylabel("true language")
    ax.set_title(title)
    return fig  # type: ignore[return-value]


def as_serializable(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics with NumPy scalars turned into Python numbers (for JSON and Optuna attributes)."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}
