"""Training throughput of ``ml_rnn_names.training.train`` against the seed project's recipe.

Why this exists: the study service trains hundreds of models, so names/s of ``train()`` is the budget
of a campaign. The speed must not come from changing the experiment, so the REFERENCE below is the
seed's recipe written the way the seed wrote it (per-name one-hot tensors in a ``Dataset``, a shuffling
``DataLoader`` with a padding collate, ``pack_padded_sequence(enforce_sorted=False)``, ``nn.RNN`` /
``nn.LSTM``, SGD, mean NLL, gradient clipping at 3, batch-wise val loss every epoch), and both sides
get the same data, split, initial weights, hyperparameters, seed (hence the same shuffles) and
thread count. Runs are interleaved (ref, ours, ref, ours, ...) so drift in machine speed hits both;
the table reports medians, and the final val losses show the two did the same training.

Run ``python benchmarks/train_throughput.py --help``; see ``benchmarks/README.md`` for figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from ml_rnn_names.data import NamesDataset, load_splits
from ml_rnn_names.model import build_model
from ml_rnn_names.processing import line_to_tensor, n_letters
from ml_rnn_names.training import GRAD_CLIP_NORM, train


@dataclass(frozen=True)
class Config:
    label: str
    model_type: str
    hidden_size: int
    num_layers: int
    batch_size: int = 64
    learning_rate: float = 0.1


CONFIGS = [
    Config("RNN h128", "RNN", 128, 1),
    Config("LSTM h256x3", "LSTM", 256, 3),
    Config("LSTM h64x2", "LSTM", 64, 2),
]
FLOPS_CONFIG = "LSTM h256x3"
RSS_CONFIG = Config("LSTM h256x4 b128", "LSTM", 256, 4, batch_size=128)


# ----------------------------------------------------------------------------------------------------
# The reference: the seed's recipe, as the seed wrote it.
# ----------------------------------------------------------------------------------------------------
class RefNamesDataset(Dataset):
    """One one-hot tensor ``(T, 1, n_letters)`` per name, built once, as the seed's dataset did."""

    def __init__(self, data: NamesDataset) -> None:
        self.tensors = [line_to_tensor(name) for name in data.names]
        self.targets = [torch.tensor([int(t)], dtype=torch.long) for t in data.targets]

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tensors[i], self.targets[i]


def ref_collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """Pad to ``(T_max, B, n_letters)``; lengths ``(B,)``; targets ``(B,)``."""
    xs = [x.squeeze(1) for x, _ in batch]  # each (T_i, n_letters)
    lengths = torch.tensor([x.shape[0] for x in xs], dtype=torch.long)
    return pad_sequence(xs), lengths, torch.cat([y for _, y in batch])


class RefModel(nn.Module):
    """``nn.RNN`` / ``nn.LSTM`` over packed one-hots → top layer's final hidden → linear → log-softmax.

    Parameter names match ours (``rnn.*``, ``h2o.*``) so both start from the same state dict.
    """

    def __init__(self, config: Config, n_classes: int) -> None:
        super().__init__()
        if config.model_type == "RNN":
            self.rnn: nn.RNNBase = nn.RNN(n_letters, config.hidden_size)
        else:
            self.rnn = nn.LSTM(n_letters, config.hidden_size, num_layers=config.num_layers)
        self.h2o = nn.Linear(config.hidden_size, n_classes)

    def forward(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(padded, lengths, enforce_sorted=False)
        _, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):
            hidden = hidden[0]
        return F.log_softmax(self.h2o(hidden[-1]), dim=1)  # (B, n_classes)


class EpochPermutationSampler(Sampler[int]):
    """A fresh seeded permutation of ``range(n)`` per epoch (``RandomSampler`` without its extra draws)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


def ref_train(
    model: RefModel,
    train_ds: RefNamesDataset,
    val_ds: RefNamesDataset,
    config: Config,
    epochs: int,
    seed: int,
) -> list[float]:
    """The seed's loop; returns the val loss after each epoch."""
    # A shuffling DataLoader with a seeded generator: one torch.randperm(n, generator) per epoch, exactly
    # what our train() draws, so both sides see the same batches and the val losses compare the math
    # rather than the luck of the shuffle. (RandomSampler draws a second, empty permutation at the end of
    # each epoch and DataLoader(generator=...) draws a base seed from it: either shifts later epochs.)
    loader = DataLoader(
        train_ds,
        batch_size=config.batch_size,
        sampler=EpochPermutationSampler(len(train_ds), seed),
        collate_fn=ref_collate,
    )
    val_loader = DataLoader(val_ds, batch_size=config.batch_size, shuffle=False, collate_fn=ref_collate)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate)
    criterion = nn.NLLLoss()
    val_losses = []
    for _ in range(epochs):
        model.train()
        total = 0.0
        for padded, lengths, targets in loader:
            loss = criterion(model(padded, lengths), targets)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
            optimizer.step()
            total += loss.item()
        model.eval()
        val_total, val_n = 0.0, 0
        with torch.no_grad():
            for padded, lengths, targets in val_loader:
                val_total += criterion(model(padded, lengths), targets).item() * len(targets)
                val_n += len(targets)
        val_losses.append(val_total / val_n)
    return val_losses


# ----------------------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------------------
def subset(data: NamesDataset, fraction: float) -> NamesDataset:
    """The first ``fraction`` of a split (the split is already shuffled)."""
    if fraction >= 1.0:
        return data
    n = max(1, int(len(data) * fraction))
    return NamesDataset(
        names=data.names[:n],
        targets=data.targets[:n],
        labels=data.labels,
        indices=data.indices[:n],
        lengths=data.lengths[:n],
    )


def lstm_flops(config: Config, train_chars: int, val_chars: int, epochs: int) -> float:
    """GEMM FLOPs of the recipe: per char per layer 2·(in+H)·4H forward, ×3 for forward+backward."""
    h = config.hidden_size
    per_char_fwd = sum(
        2 * ((n_letters if layer == 0 else h) + h) * 4 * h for layer in range(config.num_layers)
    )
    return epochs * (3 * per_char_fwd * train_chars + per_char_fwd * val_chars)


def mm_ceiling_gflops(m: int = 64, k: int = 512, n: int = 1024, seconds: float = 2.0) -> float:
    """Best-of GFLOP/s of ``torch.mm`` at the LSTM step's shape ``(B, in+H) @ (in+H, 4H)``."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    for _ in range(50):
        torch.mm(a, b, out=out)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        reps = 200
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9)
    return best


def peak_rss_probe(args: argparse.Namespace) -> None:
    """Child process: train the largest config for one epoch, print its peak RSS as JSON."""
    torch.set_num_threads(args.threads)
    splits = load_splits(args.data_dir, include_test=False)
    train_set, val_set = subset(splits.train, args.subset), subset(splits.val, args.subset)
    c = RSS_CONFIG
    model = build_model(
        c.model_type,
        n_letters=n_letters,
        n_classes=len(splits.labels),
        seed=args.seed,
        hidden_size=c.hidden_size,
        num_layers=c.num_layers,
    )
    train(
        model,
        train_set,
        val_set,
        n_epoch=1,
        n_batch_size=c.batch_size,
        learning_rate=c.learning_rate,
        seed=args.seed,
        report_every=0,
    )
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="names folder (default: $ML_RNN_NAMES_DATA, ...)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side per config; median reported")
    parser.add_argument("--subset", type=float, default=1.0, help="fraction of train/val to use (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", nargs="*", default=None, help="labels to run (default: all)")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak-RSS probe")
    parser.add_argument("--rss-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_probe:
        peak_rss_probe(args)
        return

    torch.set_num_threads(args.threads)
    splits = load_splits(args.data_dir, include_test=False)
    train_set, val_set = subset(splits.train, args.subset), subset(splits.val, args.subset)
    ref_train_ds, ref_val_ds = RefNamesDataset(train_set), RefNamesDataset(val_set)
    n_classes = len(splits.labels)
    train_chars, val_chars = int(train_set.lengths.sum()), int(val_set.lengths.sum())
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, train {len(train_set)} names "
        f"({train_chars} chars), val {len(val_set)}, epochs {args.epochs}, repeats {args.repeats}",
        flush=True,
    )

    rows = []
    configs = [c for c in CONFIGS if args.configs is None or c.label in args.configs]
    for c in configs:
        arch = {"hidden_size": c.hidden_size, "num_layers": c.num_layers}
        times: dict[str, list[float]] = {"ref": [], "ours": []}
        cpu_times: dict[str, list[float]] = {"ref": [], "ours": []}
        final: dict[str, float] = {}
        # Untimed warm-up of both sides: the first run in a process pays one-off costs (oneDNN / MKL
        # initialisation, allocator growth) that would otherwise land on whichever side runs first.
        warm_train, warm_val = subset(train_set, 256 / len(train_set)), subset(val_set, 64 / len(val_set))
        model = build_model(c.model_type, n_letters=n_letters, n_classes=n_classes, seed=args.seed, **arch)
        ref = RefModel(c, n_classes)
        ref.load_state_dict(model.state_dict())
        ref_train(ref, RefNamesDataset(warm_train), RefNamesDataset(warm_val), c, 1, args.seed)
        train(
            model,
            warm_train,
            warm_val,
            n_epoch=1,
            n_batch_size=c.batch_size,
            learning_rate=c.learning_rate,
            seed=args.seed,
            report_every=0,
        )
        for _ in range(args.repeats):
            for side in ("ref", "ours"):
                model = build_model(
                    c.model_type, n_letters=n_letters, n_classes=n_classes, seed=args.seed, **arch
                )
                ref = RefModel(c, n_classes)
                ref.load_state_dict(model.state_dict())  # identical initial weights
                start, cpu_start = time.perf_counter(), time.process_time()
                if side == "ref":
                    val_losses = ref_train(ref, ref_train_ds, ref_val_ds, c, args.epochs, args.seed)
                else:
                    result = train(
                        model,
                        train_set,
                        val_set,
                        n_epoch=args.epochs,
                        n_batch_size=c.batch_size,
                        learning_rate=c.learning_rate,
                        seed=args.seed,
                        report_every=0,
                    )
                    val_losses = result["val_losses"]
                times[side].append(time.perf_counter() - start)
                cpu_times[side].append(time.process_time() - cpu_start)
                final[side] = val_losses[-1]
                print(
                    f"  {c.label:12s} {side:4s} {times[side][-1]:7.2f} s wall "
                    f"{cpu_times[side][-1]:6.2f} s cpu  val {val_losses[-1]:.4f}",
                    flush=True,
                )
        names = len(train_set) * args.epochs
        ref_t, ours_t = statistics.median(times["ref"]), statistics.median(times["ours"])
        cpu_ratio = statistics.median(cpu_times["ref"]) / statistics.median(cpu_times["ours"])
        rows.append((c, names / ref_t, names / ours_t, ref_t, ours_t, final["ref"], final["ours"], cpu_ratio))

    print()
    print(
        f"{'config':14s} {'ref names/s':>12s} {'ours names/s':>13s} {'ratio':>6s} "
        f"{'cpu ratio':>9s} {'ref val':>8s} {'ours val':>9s} {'diff':>8s}"
    )
    for c, ref_rate, ours_rate, _, _, ref_val, ours_val, cpu_ratio in rows:
        print(
            f"{c.label:14s} {ref_rate:12.0f} {ours_rate:13.0f} {ours_rate / ref_rate:5.2f}x "
            f"{cpu_ratio:8.2f}x {ref_val:8.4f} {ours_val:9.4f} {ours_val - ref_val:+8.4f}"
        )
    print("(names/s and ratio from median wall time; cpu ratio from median process CPU time)")

    flops_rows = [r for r in rows if r[0].label == FLOPS_CONFIG]
    if flops_rows:
        c, _, _, ref_t, ours_t, *_ = flops_rows[0]
        ceiling_shape = (c.batch_size, 2 * c.hidden_size, 4 * c.hidden_size)
        ceiling = mm_ceiling_gflops(*ceiling_shape)
        flops = lstm_flops(c, train_chars, val_chars, args.epochs)
        print()
        print(
            f"{c.label}: {flops / 1e9:.0f} GFLOP of recurrent GEMMs (fwd+bwd train, fwd val); "
            f"torch.mm ceiling {ceiling:.1f} GFLOP/s at {ceiling_shape[0]}x{ceiling_shape[1]} @ "
            f"{ceiling_shape[1]}x{ceiling_shape[2]}"
        )
        for side, t in (("ref", ref_t), ("ours", ours_t)):
            rate = flops / t / 1e9
            print(f"  {side:4s} {rate:6.1f} GFLOP/s = {100 * rate / ceiling:5.1f}% of ceiling")

    if not args.skip_rss:
        probe = [
            sys.executable,
            __file__,
            "--rss-probe",
            "--threads",
            str(args.threads),
            "--seed",
            str(args.seed),
            "--subset",
            str(args.subset),
        ] + (["--data-dir", args.data_dir] if args.data_dir else [])
        out = (
            subprocess.run(probe, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        )
        peak = json.loads(out)["peak_rss_mb"]
        print()
        print(
            f"peak RSS training {RSS_CONFIG.label} for 1 epoch (fresh process): {peak:.0f} MB "
            f"({'OK' if peak < 1536 else 'OVER'} the 1.5 GB limit)"
        )


if __name__ == "__main__":
    main()
