"""Character-level classifiers and the registry the study service builds them from (seed API).

Every model reads a batch of names as alphabet indices, runs a recurrent layer over the one-hot
characters, and classifies from the **final hidden state of the last layer**:
final hidden → linear → log-softmax. Padding never reaches the recurrence: sequences are packed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ml_rnn_names.errors import ConfigError


class CharRecurrentClassifier(nn.Module):
    """Shared body of the models: one-hot → packed recurrence → last layer's final hidden → classes."""

    rnn: nn.RNNBase

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.h2o = nn.Linear(hidden_size, output_size)

    def final_hidden(self, indices: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Final hidden state of the last layer, ``(B, hidden_size)``.

        ``indices`` is ``(B, T)`` int64 (zero-padded past each name's length), ``lengths`` is ``(B,)``.
        """
        one_hot = F.one_hot(indices, self.input_size).to(self.h2o.weight.dtype)  # (B, T, n_letters)
        packed = pack_padded_sequence(one_hot, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):  # LSTM returns (h_n, c_n)
            hidden = hidden[0]
        return hidden[-1]  # (num_layers, B, H) → (B, H); already in the caller's batch order

    def forward(self, indices: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Log-probabilities over the classes, ``(B, output_size)``."""
        return F.log_softmax(self.h2o(self.final_hidden(indices, lengths)), dim=1)


class CharRNN(CharRecurrentClassifier):
    """A single-layer Elman RNN (tanh), as in the PyTorch tutorial."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__(input_size, hidden_size, output_size)
        self.num_layers = 1
        self.rnn = nn.RNN(input_size, hidden_size)


class CharLSTM(CharRecurrentClassifier):
    """A stacked LSTM; the classifier reads the top layer's final hidden state."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, output_size: int) -> None:
        super().__init__(input_size, hidden_size, output_size)
        self.num_layers = num_layers
        self.rnn = nn.LSTM(input_size, hidden_size, num_layers=num_layers)


class CharGRU(CharRecurrentClassifier):
    """A stacked GRU: not in the seed's comparison, registered to show what adding a model costs."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, output_size: int) -> None:
        super().__init__(input_size, hidden_size, output_size)
        self.num_layers = num_layers
        self.rnn = nn.GRU(input_size, hidden_size, num_layers=num_layers)


@dataclass(frozen=True)
class ModelSpec:
    """How the study service builds a model: its class and the architecture params it takes."""

    name: str
    build: Callable[..., CharRecurrentClassifier]  # build(n_letters, n_classes, **arch_params)
    arch_params: tuple[str, ...] = field(default=("hidden_size",))


MODEL_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (a campaign's ``[models.<NAME>]`` table refers to it by name)."""
    MODEL_REGISTRY[spec.name] = spec
    return spec


register_model(
    ModelSpec(
        "RNN",
        lambda n_in, n_out, hidden_size: CharRNN(n_in, hidden_size, n_out),
        ("hidden_size",),
    )
)
register_model(
    ModelSpec(
        "LSTM",
        lambda n_in, n_out, hidden_size, num_layers: CharLSTM(n_in, hidden_size, num_layers, n_out),
        ("hidden_size", "num_layers"),
    )
)
register_model(
    ModelSpec(
        "GRU",
        lambda n_in, n_out, hidden_size, num_layers: CharGRU(n_in, hidden_size, num_layers, n_out),
        ("hidden_size", "num_layers"),
    )
)


@contextlib.contextmanager
def _forked_torch_rng(seed: int) -> Iterator[None]:
    """Seed torch's global RNG for the block and restore it afterwards (weight init reads the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_model(
    model_type: str, *, n_letters: int, n_classes: int, seed: int, **params: object
) -> CharRecurrentClassifier:
    """Build a registered model with weights initialised from ``seed``, leaving global RNG state alone.

    Params the model does not take (``learning_rate``, ``n_epoch``, …) are ignored, so callers can
    pass a trial's whole parameter dict.
    """
    try:
        spec = MODEL_REGISTRY[model_type]
    except KeyError:
        known = ", ".join(sorted(MODEL_REGISTRY))
        raise ConfigError(f"unknown model {model_type!r}; registered models: {known}") from None
    missing = [name for name in spec.arch_params if name not in params]
    if missing:
        raise ConfigError(f"model {model_type} needs params {missing}; got {sorted(params)}")
    arch = {name: int(params[name]) for name in spec.arch_params}  # type: ignore[call-overload]
    with _forked_torch_rng(seed):
        return spec.build(n_letters, n_classes, **arch)
