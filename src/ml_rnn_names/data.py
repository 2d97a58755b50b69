"""The names data: find it, read it strictly, split it reproducibly, fingerprint and summarise it.

A dataset is a folder of ``<Label>.txt`` UTF-8 files, one name per line. Labels are sorted, so label
indices are the same in every process (the origin project used ``list(set(...))`` and they were not).
Each split is encoded into tensors once (:class:`NamesDataset`); the training loop slices them.

Where the data comes from, first match wins: the ``data_dir`` argument, ``$ML_RNN_NAMES_DATA``,
``./data/names``, else the PyTorch tutorial's ``data.zip`` downloaded into a cache folder and verified
file by file against the SHA-256 list shipped with this package (see :mod:`ml_rnn_names.download`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml_rnn_names.errors import DataError
from ml_rnn_names.processing import encode_names, line_to_tensor, unicode_to_ascii

log = logging.getLogger(__name__)

DATA_ENV = "ML_RNN_NAMES_DATA"
DEFAULT_LOCAL_DIR = Path("data") / "names"
#: Longest name accepted after folding. Real surnames are under 25 characters; a longer line is
#: almost always a corrupt file, and one huge line would pad every batch it lands in.
MAX_NAME_LENGTH = 100


@dataclass
class NamesDataset:
    """One split, encoded once: ``indices (N, T)`` int64 zero-padded, ``lengths (N,)``, ``targets (N,)``."""

    names: list[str]
    targets: torch.Tensor
    labels: list[str]
    indices: torch.Tensor = field(repr=False)
    lengths: torch.Tensor = field(repr=False)

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, int]], labels: list[str]) -> NamesDataset:
        names = [name for name, _ in pairs]
        indices, lengths = encode_names(names)
        targets = torch.tensor([label for _, label in pairs], dtype=torch.int64)
        return cls(names=names, targets=targets, labels=labels, indices=indices, lengths=lengths)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, str, str]:
        """The tutorial's item: ``(label_tensor, one_hot_name (T, 1, n_letters), label, name)``."""
        target = int(self.targets[i])
        return (
            torch.tensor([target], dtype=torch.long),
            line_to_tensor(self.names[i]),
            self.labels[target],
            self.names[i],
        )

    def to(self, device: torch.device | str) -> NamesDataset:
        """A copy whose tensors live on ``device`` (lengths stay on the CPU, as packing needs them)."""
        return NamesDataset(
            names=self.names,
            targets=self.targets.to(device),
            labels=self.labels,
            indices=self.indices.to(device),
            lengths=self.lengths,
        )


@dataclass
class RawNames:
    """Every kept (name, label index) pair in file order, plus what reading them found."""

    pairs: list[tuple[str, int]]
    labels: list[str]
    source: Path
    lines_read: int
    dropped_empty: dict[str, int]
    folded_changed: int
    #: Distinct lines (byte for byte, before stripping or folding) that occur more than once anywhere in
    #: the folder, under one label or several: the tutorial data's "685 duplicated lines"
    #: (``cat *.txt | sort | uniq -d | wc -l``). The fold-aware counts are in the summary.
    repeated_lines: int = 0


@dataclass
class Splits:
    """The three splits of one dataset with the fingerprint and summary that identify them.

    ``test`` is ``None`` when loaded with ``include_test=False``: the search never holds test data,
    yet its fingerprint still covers test membership.
    """

    train: NamesDataset
    val: NamesDataset
    test: NamesDataset | None
    labels: list[str]
    fingerprint: str
    summary: dict[str, Any]


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the data is: argument, ``$ML_RNN_NAMES_DATA``, ``./data/names``, else a verified download."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    if DEFAULT_LOCAL_DIR.is_dir():
        return DEFAULT_LOCAL_DIR.resolve()
    from ml_rnn_names.download import ensure_downloaded

    return ensure_downloaded()


def _decode(path: Path, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            f"{path}:{line}: byte 0x{raw[exc.start]:02x} at column {column} is not valid UTF-8; "
            "re-save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def read_names_folder(folder: str | os.PathLike[str]) -> RawNames:
    """Read every ``<Label>.txt`` in ``folder`` strictly; errors name the file and line and the fix."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(
            f"data folder {folder} does not exist; pass data_dir=..., set ${DATA_ENV}, "
            "or remove both to download the tutorial data"
        )
    if not folder.is_dir():
        raise DataError(f"data folder {folder} is not a directory")
    files = sorted(folder.glob("*.txt"), key=lambda p: p.stem)
    if not files:
        raise DataError(f"data folder {folder} has no <Label>.txt files")
    seen_casefold: dict[str, Path] = {}
    for path in files:
        other = seen_casefold.setdefault(path.stem.casefold(), path)
        if other is not path:
            raise DataError(
                f"{other.name} and {path.name} in {folder} differ only in case: they would be two labels "
                "on one file system and one on another; merge or rename one"
            )
    if len(files) < 2:
        raise DataError(
            f"data folder {folder} has only {files[0].name}: a classifier needs at least 2 labels"
        )

    labels = [path.stem for path in files]
    pairs: list[tuple[str, int]] = []
    dropped: dict[str, int] = {}
    lines_read = 0
    folded_changed = 0
    line_counts: Counter[str] = Counter()
    for label_index, path in enumerate(files):
        raw = path.read_bytes()
        if not raw.strip():
            raise DataError(f"{path}: file is empty; every label needs at least one name")
        kept = 0
        dropped[path.stem] = 0
        for line_no, line in enumerate(_decode(path, raw).splitlines(), start=1):
            lines_read += 1
            line_counts[line] += 1  # as written: ' Abe' and 'Abe' are two different lines here
            original = line.strip()
            name = unicode_to_ascii(original).strip()
            if not name:
                dropped[path.stem] += 1
                continue
            if len(name) > MAX_NAME_LENGTH:
                raise DataError(
                    f"{path}:{line_no}: line is {len(name)} characters long (limit {MAX_NAME_LENGTH}); "
                    "a names file has one short name per line: is this file corrupt?"
                )
            folded_changed += name != original
            pairs.append((name, label_index))
            kept += 1
        if kept == 0:
            raise DataError(
                f"{path}: all {dropped[path.stem]} lines fold to nothing (no ASCII letters left after "
                "removing accents); the label would have no names"
            )
    repeated_lines = sum(1 for line, count in line_counts.items() if line and count > 1)
    return RawNames(pairs, labels, folder, lines_read, dropped, folded_changed, repeated_lines)


def split_indices(n: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded 70/15/15-style split of ``range(n)``: val and test each get ``round(n * validation_split)``."""
    if not 0.0 < validation_split < 0.5:
        raise DataError(f"validation_split must be in (0, 0.5), got {validation_split}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * validation_split)
    n_test = round(n * validation_split)
    if n - n_val - n_test < 1 or n_val < 1 or n_test < 1:
        raise DataError(f"{n} names are too few to split with validation_split={validation_split}")
    return order[: n - n_val - n_test], order[n - n_val - n_test : n - n_test], order[n - n_test :]


def fingerprint_splits(labels: list[str], parts: dict[str, list[tuple[str, int]]]) -> str:
    """SHA-256 over labels, names and split membership (in order): equal iff the experiment data is equal."""
    payload = json.dumps({"labels": labels, "splits": parts}, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def summarize(
    raw: RawNames, parts: dict[str, list[tuple[str, int]]], removed_by_dedupe: int
) -> dict[str, Any]:
    """What a careful reader wants to know about the data before trusting a comparison on it."""
    labels = raw.labels
    pair_counts = Counter(raw.pairs)
    repeated = sorted(
        ((name, labels[label], count) for (name, label), count in pair_counts.items() if count > 1),
        key=lambda row: (-row[2], row[0], row[1]),
    )
    labels_of: dict[str, set[int]] = defaultdict(set)
    for name, label in raw.pairs:
        labels_of[name].add(label)
    multi = sorted(name for name, owners in labels_of.items() if len(owners) > 1)
    # The overall top 10 is all Arabic on the tutorial data; per label, scraping junk such as
    # Russian's 'To The First Page' (×24 after folding) shows up too.
    repeated_per_label: dict[str, list[list[Any]]] = defaultdict(list)
    for name, label_name, count in repeated:
        if len(repeated_per_label[label_name]) < 3:
            repeated_per_label[label_name].append([name, count])
    train_names = {name for name, _ in parts["train"]}
    train_pairs = set(parts["train"])
    per_class = Counter(label for _, label in raw.pairs)
    return {
        "source": str(raw.source),
        "labels": labels,
        "lines_read": raw.lines_read,
        "names_kept": len(raw.pairs),
        "dropped_empty_after_folding": sum(raw.dropped_empty.values()),
        "dropped_per_file": {k: v for k, v in raw.dropped_empty.items() if v},
        "names_changed_by_folding": raw.folded_changed,
        "distinct_lines_repeated": raw.repeated_lines,
        "names_per_class": {labels[i]: per_class[i] for i in range(len(labels))},
        "duplicate_lines_within_class": sum(count - 1 for _, _, count in repeated),
        "distinct_duplicated_names": len(repeated),
        "most_repeated": [list(row) for row in repeated[:10]],
        "most_repeated_per_label": {lab: rows for lab in labels if (rows := repeated_per_label.get(lab))},
        "names_under_several_labels": len(multi),
        "examples_under_several_labels": [
            [name, sorted(labels[i] for i in labels_of[name])] for name in multi[:10]
        ],
        "dedupe": removed_by_dedupe > 0,
        "removed_by_dedupe": removed_by_dedupe,
        "split_sizes": {part: len(rows) for part, rows in parts.items()},
        "val_names_in_train": sum(name in train_names for name, _ in parts["val"]),
        "test_names_in_train": sum(name in train_names for name, _ in parts["test"]),
        "val_pairs_in_train": sum(pair in train_pairs for pair in parts["val"]),
        "test_pairs_in_train": sum(pair in train_pairs for pair in parts["test"]),
    }


def load_splits(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    validation_split: float = 0.15,
    seed: int = 2024,
    dedupe: bool = False,
    include_test: bool = True,
) -> Splits:
    """Read, optionally dedupe, split and encode the data; the core of :func:`load_data`."""
    raw = read_names_folder(resolve_data_dir(data_dir))
    pairs = raw.pairs
    removed = 0
    if dedupe:
        pairs = list(dict.fromkeys(pairs))  # keeps the first occurrence, in file order
        removed = len(raw.pairs) - len(pairs)
    train_idx, val_idx, test_idx = split_indices(len(pairs), validation_split, seed)
    parts = {
        "train": [pairs[i] for i in train_idx],
        "val": [pairs[i] for i in val_idx],
        "test": [pairs[i] for i in test_idx],
    }
    fingerprint = fingerprint_splits(raw.labels, parts)
    summary = summarize(raw, parts, removed)
    summary.update(fingerprint=fingerprint, split_seed=seed, validation_split=validation_split)
    if summary["duplicate_lines_within_class"]:
        top = ", ".join(f"{n!r}×{c} ({lab})" for n, lab, c in summary["most_repeated"][:3])
        log.info(
            "data %s: %d duplicate lines within classes (most repeated: %s); %d names under several labels%s",
            raw.source,
            summary["duplicate_lines_within_class"],
            top,
            summary["names_under_several_labels"],
            f"; dedupe removed {removed}" if dedupe else "",
        )
    return Splits(
        train=NamesDataset.from_pairs(parts["train"], raw.labels),
        val=NamesDataset.from_pairs(parts["val"], raw.labels),
        test=NamesDataset.from_pairs(parts["test"], raw.labels) if include_test else None,
        labels=raw.labels,
        fingerprint=fingerprint,
        summary=summary,
    )


def load_data(
    device: torch.device | str = "cpu",
    validation_split: float = 0.15,
    seed: int = 2024,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    dedupe: bool = False,
) -> tuple[NamesDataset, NamesDataset, NamesDataset, list[str]]:
    """Seed API: ``train_set, val_set, test_set, labels`` (70/15/15 from ``seed``), tensors on ``device``.

    Prints a one-line data summary (the notebook's reader must see the data's flaws, not a log file).
    """
    splits = load_splits(data_dir, validation_split=validation_split, seed=seed, dedupe=dedupe)
    assert splits.test is not None
    s = splits.summary
    print(
        f"Loaded {s['names_kept']} names in {len(splits.labels)} classes from {s['source']}: "
        f"train {len(splits.train)}, val {len(splits.val)}, test {len(splits.test)}; "
        f"{s['distinct_lines_repeated']} distinct lines occur more than once, "
        f"{s['duplicate_lines_within_class']} duplicate lines within classes, "
        f"{s['names_under_several_labels']} names under several labels, "
        f"{s['test_names_in_train']} test names also in train (fingerprint {splits.fingerprint[:12]})"
    )
    return splits.train.to(device), splits.val.to(device), splits.test.to(device), splits.labels
