"""The alphabet and the name → tensor encodings (seed API: ``n_letters``).

Names are folded from Unicode to ASCII the way the PyTorch tutorial does (NFD, drop combining marks,
keep only the allowed characters). ``_`` stands for any character outside the alphabet, so a model
never sees an index it has no weight for.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Sequence

import torch

#: The characters a name may contain after folding; ``_`` is the "unknown character" slot.
all_letters: str = string.ascii_letters + " .,;'" + "_"
allowed_characters = all_letters  # the tutorial's name for the same string
n_letters: int = len(all_letters)
UNKNOWN_CHAR = "_"

_INDEX = {ch: i for i, ch in enumerate(all_letters)}
_UNKNOWN_INDEX = _INDEX[UNKNOWN_CHAR]


def unicode_to_ascii(text: str) -> str:
    """Fold ``text`` to the alphabet: ``'Ślusàrski'`` → ``'Slusarski'``; characters without an ASCII form
    vanish."""
    return "".join(
        ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn" and ch in _INDEX
    )


def letter_to_index(letter: str) -> int:
    """Index of ``letter`` in :data:`all_letters`; unknown characters map to ``_``."""
    return _INDEX.get(letter, _UNKNOWN_INDEX)


def name_to_indices(name: str) -> list[int]:
    """A name as a list of alphabet indices (the compact form the data layer stores)."""
    return [letter_to_index(ch) for ch in name]


def line_to_tensor(line: str) -> torch.Tensor:
    """One-hot tensor of shape ``(len(line), 1, n_letters)``, as the tutorial's ``lineToTensor``."""
    tensor = torch.zeros(len(line), 1, n_letters)
    for position, letter in enumerate(line):
        tensor[position][0][letter_to_index(letter)] = 1
    return tensor


def encode_names(names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode many names at once: ``(indices (N, max_len) int64, zero-padded; lengths (N,) int64)``.

    This is done once per dataset; batches then slice these two tensors, so the training loop never
    builds per-name tensors or runs a Python collate function.
    """
    lengths = torch.tensor([len(name) for name in names], dtype=torch.int64)
    max_len = int(lengths.max()) if len(names) else 0
    indices = torch.zeros(len(names), max(max_len, 1), dtype=torch.int64)
    for row, name in enumerate(names):
        if name:
            indices[row, : len(name)] = torch.tensor(name_to_indices(name), dtype=torch.int64)
    return indices, lengths
