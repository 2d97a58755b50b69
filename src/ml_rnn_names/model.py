"""Character-level classifiers and the registry the study service builds them from (seed API).

Every model reads a batch of names as alphabet indices, runs a recurrent layer over the one-hot
characters, and classifies from the **final hidden state of the last layer**:
final hidden → linear → log-softmax. Padding never reaches the recurrence: sequences are packed.

The parameters are always those of an ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (same names, same
initialisation). On CUDA the packed batch runs through that module (cuDNN). On the CPU, RNN and LSTM
run the same math through :class:`_PackedLayer`, about 1.3-2x faster per training step (see
``benchmarks/README.md``): the one-hot input projection becomes a gather, upper layers project all
steps in one GEMM, and the backward is hand-written so each weight gradient is one large GEMM.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ml_rnn_names.errors import ConfigError


@dataclass(frozen=True)
class _PackedLayout:
    """Where each (name, timestep) lives when a batch is packed time-major, longest name first.

    Rows of step ``t`` are ``offsets[t] : offsets[t] + batch_sizes[t]`` and are the names ranked
    ``0 .. batch_sizes[t]-1`` by length (descending), so the names still running at ``t`` are always a
    prefix of those running at ``t-1``. This is the layout of ``PackedSequence`` / cuDNN; we build it
    ourselves so the recurrence can read precomputed input projections by slicing.
    """

    batch_sizes: list[int]  # (T,) names still running at each step, non-increasing
    offsets: list[int]  # (T,) first packed row of each step
    packed_tokens: torch.Tensor  # (N,) alphabet index of each packed row, N = sum of lengths
    final_rows: torch.Tensor  # (B,) packed row of each name's last character, in the caller's order
    prev_rows: torch.Tensor  # (N - B,) for rows of steps t ≥ 1: the row of the same name at t-1

    @staticmethod
    def build(indices: torch.Tensor, lengths: torch.Tensor) -> _PackedLayout:
        # The index bookkeeping runs in NumPy: on ~64-element arrays a NumPy op costs ~1 µs and a torch
        # op ~5-10 µs, and this runs once per batch (it was ~10% of an RNN step's time in torch).
        lens = lengths.detach().to("cpu", torch.int64).numpy()  # (B,)
        if lens.size == 0 or lens.min() < 1:
            raise ValueError("every name needs at least one character (lengths must be ≥ 1)")
        width = indices.shape[1]
        if lens.max() > width:
            raise ValueError(f"a length of {lens.max()} exceeds the {width} columns of indices")
        order = np.argsort(-lens, kind="stable")  # (B,) caller rows, longest first
        sorted_lens = lens[order]  # (B,)
        running = np.arange(sorted_lens[0])[:, None] < sorted_lens[None, :]  # (T, B)
        batch_sizes = running.sum(1)  # (T,)
        offsets = np.cumsum(batch_sizes) - batch_sizes  # (T,)
        step, rank = np.nonzero(running)  # (N,) each, in packed (time-major) order
        rank_of = np.empty_like(order)
        rank_of[order] = np.arange(order.size)  # (B,) rank of each caller row
        later = step > 0
        flat_rows = order[rank] * width + step  # (N,) position of each packed character in indices
        device = indices.device
        return _PackedLayout(
            batch_sizes=batch_sizes.tolist(),
            offsets=offsets.tolist(),
            packed_tokens=indices.reshape(-1).index_select(0, torch.from_numpy(flat_rows).to(device)),
            final_rows=torch.from_numpy(offsets[lens - 1] + rank_of).to(device),
            prev_rows=torch.from_numpy(offsets[step[later] - 1] + rank[later]).to(device),
        )


def _tanh_via_sigmoid_(z2: torch.Tensor, two: torch.Tensor, one: torch.Tensor) -> torch.Tensor:
    """In place: ``z2`` holds ``2z``; leaves ``tanh(z) = 2·sigmoid(2z) - 1`` in it.

    ``torch.tanh`` on the CPU costs ~6x ``torch.sigmoid`` per element (it dominated the recurrence);
    this identity is exact in real arithmetic and within ~1e-7 absolute in float32. ``two`` and ``one``
    are 0-dim tensors of ``z2``'s dtype: a Python scalar costs a conversion op on every call.
    """
    return z2.sigmoid_().mul_(two).sub_(one)


class _PackedLayer(torch.autograd.Function):
    """One recurrent layer over packed rows, input projection included, with a hand-written backward.

    ``inputs`` is either the packed alphabet indices ``(N,)`` of layer 0 (then the projection of a
    one-hot is a gather of ``W_ihᵀ`` rows: no one-hot GEMM) or the packed outputs ``(N, H_in)`` of the
    layer below (one GEMM for all steps). Both biases are added to the projection. Why by hand: autograd
    through a per-step loop (or ATen's packed RNN) accumulates ``dW_hh`` and ``dW_ih`` with skinny GEMMs
    per step and records many graph nodes per step; here the backward runs one GEMM per step (for
    ``dh_{t-1}``) and every weight gradient is one large GEMM over all rows. ``h_0 = c_0 = 0``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        inputs: torch.Tensor,
        w_ih: torch.Tensor,
        w_hh: torch.Tensor,
        b_ih: torch.Tensor,
        b_hh: torch.Tensor,
        layout: _PackedLayout,
        lstm: bool,
    ) -> torch.Tensor:
        hidden = w_hh.shape[1]
        bias = b_ih + b_hh  # (G·H,)
        if inputs.dtype == torch.int64:
            # (n_letters, G·H) table, made row-major on purpose: ``w_ih.t() + bias`` keeps w_ih's
            # column-major strides, and gathering rows from that is 3-10x slower.
            table = w_ih.t().contiguous().add_(bias)
            x = table.index_select(0, inputs)  # (N, G·H)
        else:
            x = torch.addmm(bias, inputs, w_ih.t())  # (N, G·H)
        # tanh via 2·sigmoid(2z) - 1 needs the tanh pre-activations doubled (the RNN's, the LSTM's g
        # gate). Doubling is exact in floating point, so where it happens does not change a bit. The
        # RNN doubles x and a copy of W_hh once per batch (cheap at its size); the LSTM doubles its g
        # block after each step's GEMM, because copying a (4H, H) W_hh per batch costs more.
        two, one = x.new_tensor(2.0), x.new_tensor(1.0)
        g_cols = slice(2 * hidden, 3 * hidden)
        if lstm:
            w_step_t = w_hh.t()  # (H, 4H)
        else:
            w_scaled = w_hh.clone()  # (H, H)
            x.mul_(two)
            w_scaled.mul_(two)
            w_step_t = w_scaled.t()
        sizes = layout.batch_sizes
        # (N, H): h_t of every row; the RNN's pre-activations turn into h_t in place.
        out = x.new_empty(x.shape[0], hidden) if lstm else x
        xs, outs = x.split(sizes), out.split(sizes)  # per-step views (bs, G·H), (bs, H)
        if lstm:
            cell = x.new_empty(x.shape[0], hidden)  # (N, H): c_t
            cells = cell.split(sizes)
            tanh_cell = x.new_empty(x.shape[0], hidden)  # (N, H): tanh(c_t)
            tanh_cells = tanh_cell.split(sizes)
        for t, bs in enumerate(sizes):
            g = xs[t]  # (bs, G·H) pre-activations, accumulated in place: no copy
            if t:
                torch.addmm(g, outs[t - 1][:bs], w_step_t, out=g)
            if not lstm:
                _tanh_via_sigmoid_(g, two, one)
                continue
            g[:, g_cols].mul_(two)
            g.sigmoid_()  # i, f, o are done; g's column block holds sigmoid(2z)
            i, f, gg, o = g.view(bs, 4, hidden).unbind(1)  # (bs, H) each
            gg.mul_(two).sub_(one)  # = tanh(z)
            c = torch.mul(i, gg, out=cells[t])
            if t:
                c.addcmul_(f, cells[t - 1][:bs])
            tc = _tanh_via_sigmoid_(torch.mul(c, two, out=tanh_cells[t]), two, one)
            torch.mul(o, tc, out=outs[t])
        ctx.layout, ctx.lstm = layout, lstm
        if lstm:
            ctx.save_for_backward(inputs, w_ih, w_hh, x, cell, tanh_cell, out)
        else:
            ctx.save_for_backward(inputs, w_ih, w_hh, out)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        layout: _PackedLayout = ctx.layout
        sizes, first = layout.batch_sizes, layout.batch_sizes[0]
        if ctx.lstm:
            inputs, w_ih, w_hh, gates, cell, tanh_cell, out = ctx.saved_tensors
            grad_x = _lstm_backward_steps(grad_out, w_hh, gates, cell, tanh_cell, layout)
        else:
            inputs, w_ih, w_hh, out = ctx.saved_tensors
            # (N, H): tanh' = 1 - h² of every row at once, in one fused pass; becomes dL/d(pre-activation)
            grad_x = torch.addcmul(out.new_ones(()), out, out, value=-1)
            carry = out.new_zeros(first, out.shape[1])  # (B, H): dL/dh_t from step t+1
            grads, grad_outs = grad_x.split(sizes), grad_out.split(sizes)
            for t in range(len(sizes) - 1, -1, -1):
                bs = sizes[t]
                g = grads[t].mul_(torch.add(grad_outs[t], carry[:bs]))
                if t:
                    torch.mm(g, w_hh, out=carry[:bs])  # dL/dh_{t-1} of the names still running at t
        # Weight gradients, each one GEMM over all rows (step 0 has h_{-1} = 0: no dW_hh term).
        grad_w_hh = grad_x[first:].t() @ out.index_select(0, layout.prev_rows)  # (G·H, H)
        grad_bias = grad_x.sum(0)  # (G·H,)
        if inputs.dtype == torch.int64:
            grad_w_ih = grad_x.new_zeros(w_ih.shape[1], w_ih.shape[0]).index_add_(0, inputs, grad_x).t()
            grad_inputs = None
        else:
            grad_w_ih = grad_x.t() @ inputs  # (G·H, H_in)
            grad_inputs = grad_x @ w_ih if ctx.needs_input_grad[0] else None  # (N, H_in)
        return grad_inputs, grad_w_ih, grad_w_hh, grad_bias, grad_bias, None, None


def _lstm_backward_steps(
    grad_out: torch.Tensor,
    w_hh: torch.Tensor,
    gates: torch.Tensor,
    cell: torch.Tensor,
    tanh_cell: torch.Tensor,
    layout: _PackedLayout,
) -> torch.Tensor:
    """dL/d(pre-activation gates) ``(N, 4H)`` of one LSTM layer, given dL/dh_t of every row ``(N, H)``."""
    n, hidden = tanh_cell.shape
    sizes, first = layout.batch_sizes, layout.batch_sizes[0]
    i, f, g, o = gates.view(n, 4, hidden).unbind(1)  # (N, H) each, activated
    # Everything that does not depend on the incoming gradient, for all rows at once (a few large ops
    # instead of many small ones per step):
    #   dL/dc_t = dc_carry + dh · o·(1 - tanh²c)                                   → dc_factor
    #   dL/d(i, f, g pre-act.) = dL/dc_t · (g·i(1-i), c_{t-1}·f(1-f), i·(1-g²))     → ifg_factor
    #   dL/d(o pre-act.)       = dh · tanh c · o(1-o)                               → o_factor
    dc_factor = o * (1 - tanh_cell * tanh_cell)  # (N, H)
    o_factor = tanh_cell * (o - o * o)  # (N, H)
    ifg_factor = gates.new_empty(n, 3, hidden)  # (N, 3, H)
    torch.mul(g, i - i * i, out=ifg_factor[:, 0])
    ifg_factor[:first, 1] = 0  # c_{-1} = 0: the first step's forget gate had nothing to forget
    torch.mul(cell.index_select(0, layout.prev_rows), (f - f * f)[first:], out=ifg_factor[first:, 1])
    torch.mul(i, 1 - g * g, out=ifg_factor[:, 2])
    grad_gates = torch.empty_like(gates)  # (N, 4H)
    dh_carry = gates.new_zeros(first, hidden)  # (B, H): dL/dh_t from step t+1
    dc_carry = gates.new_zeros(first, hidden)  # (B, H): dL/dc_t from step t+1
    steps = zip(
        grad_gates.split(sizes),
        grad_out.split(sizes),
        dc_factor.split(sizes),
        o_factor.split(sizes),
        ifg_factor.split(sizes),
        f.split(sizes),
        strict=True,
    )
    for t, (dg, dh_out, dcf, of, ifg, ft) in reversed(list(enumerate(steps))):
        bs = dg.shape[0]
        dh = torch.add(dh_out, dh_carry[:bs])  # (bs, H)
        dc = dc_carry[:bs].addcmul_(dh, dcf)  # (bs, H)
        torch.mul(dh, of, out=dg[:, 3 * hidden :])
        torch.mul(dc.unsqueeze(1), ifg, out=dg[:, : 3 * hidden].view(bs, 3, hidden))
        if t:
            dc.mul_(ft)  # dL/dc_{t-1}
            torch.mm(dg, w_hh, out=dh_carry[:bs])  # dL/dh_{t-1}
    return grad_gates


class CharRecurrentClassifier(nn.Module):
    """Shared body of the models: one-hot → recurrence → last layer's final hidden → classes.

    On CUDA (and for recurrences without a CPU kernel here: GRU, tanh-less RNNs) the one-hot batch is
    packed and run by the ``nn`` module (cuDNN). On the CPU, RNN and LSTM run a packed recurrence of
    their own over the same parameters, with the same math, faster: the one-hot input projection is a
    gather of ``W_ih``'s columns (no one-hot GEMM), each upper layer's input projection is one GEMM
    over all steps, only the top layer's final states are read, and the backward is hand-written (see
    :class:`_PackedLayer`). Either way padding never reaches the recurrence: each name's final hidden
    state is read at its own last character.
    """

    rnn: nn.RNNBase

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.h2o = nn.Linear(hidden_size, output_size)

    def _fast_cpu_path(self, indices: torch.Tensor) -> bool:
        """Whether :class:`_PackedLayer` implements this recurrence on this device."""
        rnn = self.rnn
        if indices.device.type != "cpu" or rnn.bidirectional or not rnn.bias or rnn.proj_size:
            return False
        return rnn.mode == "LSTM" or rnn.mode == "RNN_TANH"

    def final_hidden(self, indices: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Final hidden state of the last layer, ``(B, hidden_size)``.

        ``indices`` is ``(B, T)`` int64 (zero-padded past each name's length), ``lengths`` is ``(B,)``.
        """
        if self._fast_cpu_path(indices):
            return self._final_hidden_packed(indices, lengths)
        one_hot = F.one_hot(indices, self.input_size).to(self.h2o.weight.dtype)  # (B, T, n_letters)
        packed = pack_padded_sequence(one_hot, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):  # LSTM returns (h_n, c_n)
            hidden = hidden[0]
        return hidden[-1]  # (num_layers, B, H) → (B, H); already in the caller's batch order

    def _final_hidden_packed(self, indices: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rnn = self.rnn
        layout = _PackedLayout.build(indices, lengths)
        lstm = rnn.mode == "LSTM"
        out = layout.packed_tokens  # (N,) layer 0 reads alphabet indices
        for layer in range(rnn.num_layers):
            if layer and self.training and rnn.dropout:
                out = F.dropout(out, rnn.dropout)
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            weights = [getattr(rnn, f"{name}_l{layer}") for name in names]
            out = _PackedLayer.apply(out, *weights, layout, lstm)  # (N, H)
        return out.index_select(0, layout.final_rows)  # (B, H) in the caller's order

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
