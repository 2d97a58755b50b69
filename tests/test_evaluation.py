"""Metrics: accuracy, split metrics, the confusion matrix (normalised in place as the notebook does), plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from ml_rnn_names.data import Splits, load_splits
from ml_rnn_names.evaluation import (
    compute_accuracy,
    compute_confusion_matrix,
    evaluate_model,
    normalize_rows,
    per_class_report,
    plot_confusion_matrix,
    split_metrics,
)
from ml_rnn_names.model import build_model
from ml_rnn_names.processing import n_letters
from ml_rnn_names.training import train


@pytest.fixture(scope="module")
def splits(tiny_data_dir: Path) -> Splits:
    return load_splits(tiny_data_dir, seed=7)


@pytest.fixture(scope="module")
def model(splits: Splits) -> torch.nn.Module:
    """A briefly trained RNN: its predictions are neither all right nor all one class."""
    model = build_model("RNN", n_letters=n_letters, n_classes=4, seed=0, hidden_size=16)
    train(model, splits.train, splits.val, n_epoch=3, n_batch_size=8, learning_rate=0.5, seed=0)
    return model.eval()


def _manual_predictions(model: torch.nn.Module, data) -> torch.Tensor:
    with torch.no_grad():
        return model(data.indices, data.lengths).argmax(dim=1)


def test_compute_accuracy_matches_a_manual_argmax(model, splits: Splits) -> None:
    for data in (splits.train, splits.val, splits.test):
        predicted = _manual_predictions(model, data)
        assert compute_accuracy(model, data) == int((predicted == data.targets).sum()) / len(data)
    # The fixture model is neither trivial nor perfect, so the comparison above means something.
    train_predictions = _manual_predictions(model, splits.train)
    assert len(set(train_predictions.tolist())) > 1
    assert 0.0 < compute_accuracy(model, splits.train) < 1.0


def test_evaluate_model_keys_and_values(model, splits: Splits) -> None:
    metrics = evaluate_model(model, splits.train, splits.val, splits.test)
    assert set(metrics) == {
        f"{split}_{metric}"
        for split in ("train", "val", "test")
        for metric in ("accuracy", "loss", "macro_f1")
    }
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["test_accuracy"] == pytest.approx(compute_accuracy(model, splits.test))
    with torch.no_grad():
        loss = F.nll_loss(model(splits.test.indices, splits.test.lengths), splits.test.targets).item()
    assert metrics["test_loss"] == pytest.approx(loss, abs=1e-6)
    assert 0.0 <= metrics["test_macro_f1"] <= 1.0

    only_val = evaluate_model(model, None, splits.val, None)
    assert set(only_val) == {"val_accuracy", "val_loss", "val_macro_f1"}
    assert only_val["val_loss"] == metrics["val_loss"]


def test_macro_f1_counts_absent_labels_as_zero(model, splits: Splits) -> None:
    report = per_class_report(model, splits.val)
    assert list(report) == splits.labels
    assert sum(row["support"] for row in report.values()) == len(splits.val)
    mean_f1 = np.mean([row["f1"] for row in report.values()])
    assert split_metrics(model, splits.val)["macro_f1"] == pytest.approx(mean_f1)


def test_confusion_matrix_counts_and_in_place_row_normalisation(model, splits: Splits) -> None:
    data = splits.test
    confusion = compute_confusion_matrix(model, data, len(splits.labels))
    assert isinstance(confusion, torch.Tensor) and confusion.dtype.is_floating_point
    assert confusion.shape == (4, 4)
    assert confusion.sum().item() == len(data)
    expected = torch.zeros(4, 4)
    for truth, predicted in zip(
        data.targets.tolist(), _manual_predictions(model, data).tolist(), strict=True
    ):
        expected[truth, predicted] += 1
    assert torch.equal(confusion, expected)
    assert confusion.sum(dim=1).tolist() == torch.bincount(data.targets, minlength=4).float().tolist()

    # The notebook's loop: confusion[i] = confusion[i] / denom must work on the returned tensor.
    normalised = normalize_rows(confusion)
    for i in range(4):
        denom = confusion[i].sum()
        if denom > 0:
            confusion[i] = confusion[i] / denom
    torch.testing.assert_close(confusion.sum(dim=1), torch.ones(4))
    np.testing.assert_allclose(confusion.numpy(), normalised, rtol=1e-6)


def test_normalize_rows_leaves_empty_rows_at_zero() -> None:
    matrix = normalize_rows(torch.tensor([[2.0, 2.0], [0.0, 0.0]]))
    assert matrix.tolist() == [[0.5, 0.5], [0.0, 0.0]]


def test_plot_confusion_matrix_returns_a_labelled_figure(model, splits: Splits) -> None:
    import matplotlib.pyplot as plt

    assert matplotlib.get_backend().lower() == "agg"
    confusion = compute_confusion_matrix(model, splits.test, len(splits.labels))
    fig = plot_confusion_matrix(confusion, splits.labels, title="LSTM (test)")
    try:
        assert isinstance(fig, Figure)
        ax = fig.axes[0]
        assert ax.get_title() == "LSTM (test)"
        assert [t.get_text() for t in ax.get_xticklabels()] == splits.labels
        assert [t.get_text() for t in ax.get_yticklabels()] == splits.labels
        image = ax.get_images()[0].get_array()
        np.testing.assert_allclose(image, normalize_rows(confusion))
    finally:
        plt.close(fig)

    fig, ax = plt.subplots()
    try:
        assert plot_confusion_matrix(confusion, splits.labels, normalize=False, ax=ax) is fig
        np.testing.assert_allclose(ax.get_images()[0].get_array(), confusion.numpy())
    finally:
        plt.close(fig)
