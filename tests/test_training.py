"""Models and training: shapes, padding, determinism (in and across processes), callbacks, NaN guard."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from ml_rnn_names import training
from ml_rnn_names.data import Splits, load_splits
from ml_rnn_names.errors import ConfigError, NonFiniteLossError
from ml_rnn_names.model import CharGRU, CharLSTM, CharRNN, build_model
from ml_rnn_names.processing import encode_names, n_letters
from ml_rnn_names.training import evaluate_loss, set_seed, train

N_CLASSES = 4


@pytest.fixture(scope="module")
def splits(tiny_data_dir: Path) -> Splits:
    return load_splits(tiny_data_dir, seed=7)


def _model(model_type: str, seed: int, **params: int) -> torch.nn.Module:
    params = {"hidden_size": 8, "num_layers": 1, **params}
    return build_model(model_type, n_letters=n_letters, n_classes=N_CLASSES, seed=seed, **params)


def _run(splits: Splits, model_type: str = "LSTM", model_seed: int = 3, train_seed: int = 5, **kwargs):
    model = _model(model_type, model_seed)
    options = {"n_epoch": 2, "n_batch_size": 16, "learning_rate": 0.3, "seed": train_seed, **kwargs}
    return model, train(model, splits.train, splits.val, **options)


# ------------------------------------------------------------------------------------------ models


def _constructed(cls: type, hidden: int, layers: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if cls is CharRNN:
        return CharRNN(n_letters, hidden, N_CLASSES)
    return cls(n_letters, hidden, layers, N_CLASSES)


@pytest.mark.parametrize("cls", [CharRNN, CharLSTM, CharGRU])
def test_output_shape_and_log_softmax_rows(cls: type) -> None:
    model = _constructed(cls, hidden=8, layers=2)
    indices, lengths = encode_names(["Abe", "Kowalski", "O", "Nguyen", "Li"])
    out = model(indices, lengths)
    assert out.shape == (5, N_CLASSES)
    assert out.dtype == torch.float32
    assert (out <= 0).all()
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(5), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("cls", "layers"), [(CharRNN, 1), (CharLSTM, 1), (CharLSTM, 2), (CharGRU, 2)])
def test_padding_does_not_change_a_names_output(cls: type, layers: int) -> None:
    model = _constructed(cls, hidden=16, layers=layers).eval()
    alone = model(*encode_names(["Abe"]))
    first = model(*encode_names(["Abe", "Kowalski-Nowak"]))
    second = model(*encode_names(["Kowalski-Nowak", "Li", "Abe"]))
    torch.testing.assert_close(first[0], alone[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(second[2], alone[0], atol=1e-6, rtol=0)
    # Extra padding columns beyond the batch's longest name change nothing either.
    indices, lengths = encode_names(["Abe"])
    padded = torch.cat([indices, torch.zeros(1, 5, dtype=torch.int64)], dim=1)
    torch.testing.assert_close(model(padded, lengths)[0], alone[0], atol=1e-6, rtol=0)


def _reference_log_probs(
    model: torch.nn.Module, indices: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """The textbook computation: one-hot, packed, ``nn.RNN``/``nn.LSTM``/``nn.GRU``, last layer's h_n."""
    one_hot = F.one_hot(indices, n_letters).float()  # (B, T, n_letters)
    packed = pack_padded_sequence(one_hot, lengths, batch_first=True, enforce_sorted=False)
    _, hidden = model.rnn(packed)
    if isinstance(hidden, tuple):
        hidden = hidden[0]
    return F.log_softmax(model.h2o(hidden[-1]), dim=1)  # (B, n_classes)


@pytest.mark.parametrize(("model_type", "layers"), [("RNN", 1), ("LSTM", 1), ("LSTM", 3), ("GRU", 2)])
def test_model_matches_the_reference_recurrence_and_its_gradients(model_type: str, layers: int) -> None:
    """Whatever kernels a model uses, it computes nn.RNN/nn.LSTM/nn.GRU's function and gradients."""
    model = _model(model_type, seed=11, hidden_size=12, num_layers=layers)
    indices, lengths = encode_names(["Abe", "Kowalski", "O", "Nguyen", "Li", "Zhou", "Abe"])
    targets = torch.tensor([0, 1, 2, 3, 0, 1, 0])

    out = model(indices, lengths)
    reference = _reference_log_probs(model, indices, lengths)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)

    grads = torch.autograd.grad(F.nll_loss(out, targets), list(model.parameters()))
    reference_grads = torch.autograd.grad(F.nll_loss(reference, targets), list(model.parameters()))
    names = [name for name, _ in model.named_parameters()]
    for name, got, want in zip(names, grads, reference_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_build_model_is_seeded_and_leaves_global_rng_alone() -> None:
    before = torch.get_rng_state()
    a, b, c = _model("LSTM", 1), _model("LSTM", 1), _model("LSTM", 2)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))


def test_build_model_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'Transformer'; registered models: .*LSTM.*RNN"):
        build_model("Transformer", n_letters=n_letters, n_classes=2, seed=0, hidden_size=8)
    with pytest.raises(ConfigError, match=r"model LSTM needs params \['num_layers'\]"):
        build_model("LSTM", n_letters=n_letters, n_classes=2, seed=0, hidden_size=8)


# ------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("model_type", ["RNN", "LSTM"])
def test_same_seeds_give_bitwise_identical_training(splits: Splits, model_type: str) -> None:
    model_a, first = _run(splits, model_type)
    model_b, second = _run(splits, model_type)
    assert first == second  # exact float equality, not approximate
    assert len(first["train_losses"]) == len(first["val_losses"]) == 2
    assert all(math.isfinite(v) for v in first["train_losses"] + first["val_losses"])
    for (name, pa), pb in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize("model_type", ["RNN", "LSTM"])
def test_train_steps_are_exactly_clip_grad_norm_then_sgd(
    splits: Splits, model_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train()'s own optimizer step is the seed's recipe, bit for bit: per-epoch shuffles from the seed,
    ``clip_grad_norm_`` then ``torch.optim.SGD.step()``. A tiny clip norm makes every step clip."""
    monkeypatch.setattr(training, "GRAD_CLIP_NORM", 0.05)
    seed, lr, batch, epochs = 5, 0.3, 16, 2
    ours = _model(model_type, 3)
    train(ours, splits.train, None, n_epoch=epochs, n_batch_size=batch, learning_rate=lr, seed=seed)

    model = _model(model_type, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    clipped = 0
    for _ in range(epochs):
        order = torch.randperm(len(splits.train), generator=generator)
        for start in range(0, len(splits.train), batch):
            indices, lengths, targets = training._batch(
                splits.train, order[start : start + batch], torch.device("cpu")
            )
            loss = F.nll_loss(model(indices, lengths), targets)
            optimizer.zero_grad()
            loss.backward()
            clipped += float(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)) > 0.05
            optimizer.step()
    assert clipped > 0
    for (name, got), want in zip(ours.named_parameters(), model.parameters(), strict=True):
        assert torch.equal(got, want), name


def test_different_seeds_give_different_training(splits: Splits) -> None:
    _, base = _run(splits)
    _, other_init = _run(splits, model_seed=4)
    _, other_order = _run(splits, train_seed=6)
    assert other_init["train_losses"] != base["train_losses"]
    assert other_order["train_losses"] != base["train_losses"]


def test_train_leaves_global_rng_state_untouched(splits: Splits) -> None:
    set_seed(123)
    torch_before, np_before, py_before = torch.get_rng_state(), np.random.get_state(), random.getstate()
    _run(splits, n_epoch=1)
    assert torch.equal(torch.get_rng_state(), torch_before)
    np_after = np.random.get_state()
    assert np_after[0] == np_before[0] and np.array_equal(np_after[1], np_before[1])
    assert np_after[2:] == np_before[2:]
    assert random.getstate() == py_before


def test_set_seed_seeds_every_global_rng() -> None:
    set_seed(99)
    first = (random.random(), float(np.random.uniform()), float(torch.rand(1)))
    set_seed(99)
    assert (random.random(), float(np.random.uniform()), float(torch.rand(1))) == first


_CHILD = """
import sys, torch
torch.set_num_threads(1)
from ml_rnn_names.data import load_splits
from ml_rnn_names.model import build_model
from ml_rnn_names.processing import n_letters
from ml_rnn_names.training import train
s = load_splits(sys.argv[1], seed=7)
m = build_model("LSTM", n_letters=n_letters, n_classes=len(s.labels), seed=3, hidden_size=8, num_layers=1)
r = train(m, s.train, s.val, n_epoch=2, n_batch_size=16, learning_rate=0.3, seed=5)
print(repr(r["train_losses"] + r["val_losses"]))
"""


def test_training_is_identical_across_processes(splits: Splits, tiny_data_dir: Path) -> None:
    """Two fresh interpreters (different hash seeds) and this one print the very same loss floats."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tiny_data_dir)],
            env={**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for hash_seed in ("1", "2")
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out.strip().splitlines()[-1])
    assert outputs[0] == outputs[1]
    _, here = _run(splits)  # same data seed, model seed, train seed and options as _CHILD
    assert outputs[0] == repr(here["train_losses"] + here["val_losses"])


# ---------------------------------------------------------------------------- callback and errors


def test_on_epoch_is_called_once_per_epoch_with_the_losses(splits: Splits) -> None:
    calls: list[tuple[int, float, float]] = []
    _, result = _run(splits, n_epoch=3, on_epoch=lambda *args: calls.append(args))
    assert [c[0] for c in calls] == [1, 2, 3]
    assert [c[1] for c in calls] == result["train_losses"]
    assert [c[2] for c in calls] == result["val_losses"]


def test_an_exception_in_on_epoch_stops_training(splits: Splits) -> None:
    class Stop(Exception):
        pass

    calls: list[int] = []

    def on_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
        calls.append(epoch)
        if epoch == 2:
            raise Stop("pruned")

    with pytest.raises(Stop, match="pruned"):
        _run(splits, n_epoch=5, on_epoch=on_epoch)
    assert calls == [1, 2]


def test_validation_loss_is_nan_without_validation_data(splits: Splits) -> None:
    model = _model("RNN", 0)
    result = train(model, splits.train, None, n_epoch=1, n_batch_size=32, learning_rate=0.1)
    assert math.isnan(result["val_losses"][0]) and math.isfinite(result["train_losses"][0])


@pytest.mark.parametrize("model_type", ["RNN", "LSTM"])
def test_huge_learning_rate_raises_non_finite_loss_error(splits: Splits, model_type: str) -> None:
    with pytest.raises(NonFiniteLossError) as info:
        _run(splits, model_type, learning_rate=1e38, n_epoch=3)
    error = info.value
    assert error.epoch == 1
    assert isinstance(error.batch, int) and error.batch >= 1
    assert not math.isfinite(error.value)
    message = str(error)
    assert f"at epoch 1, batch {error.batch}" in message
    assert "learning_rate=1e+38" in message and "lower the learning rate" in message


def test_non_finite_validation_loss_raises_with_epoch(splits: Splits, monkeypatch) -> None:
    losses = iter([1.5, float("nan")])
    monkeypatch.setattr(training, "evaluate_loss", lambda *args, **kwargs: next(losses))
    with pytest.raises(NonFiniteLossError, match=r"validation loss became nan at epoch 2") as info:
        _run(splits, n_epoch=4)
    assert info.value.epoch == 2 and info.value.batch is None


@pytest.mark.parametrize(
    ("option", "value"),
    [("n_epoch", 0), ("n_batch_size", 0), ("learning_rate", 0.0), ("learning_rate", -1.0)],
)
def test_invalid_training_options(splits: Splits, option: str, value: float) -> None:
    with pytest.raises(ValueError, match="need n_epoch ≥ 1, n_batch_size ≥ 1, learning_rate > 0"):
        _run(splits, **{option: value})


def test_evaluate_loss_is_the_mean_nll(splits: Splits) -> None:
    model = _model("RNN", 0).eval()
    with torch.no_grad():
        expected = F.nll_loss(model(splits.val.indices, splits.val.lengths), splits.val.targets)
    assert evaluate_loss(model, splits.val) == pytest.approx(float(expected), abs=1e-6)
    assert evaluate_loss(model, splits.val, batch_size=5) == pytest.approx(float(expected), abs=1e-6)
