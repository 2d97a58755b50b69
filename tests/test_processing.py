"""The alphabet, Unicode folding and the batch encoding every model reads."""

from __future__ import annotations

import string

import torch

from ml_rnn_names.processing import (
    UNKNOWN_CHAR,
    all_letters,
    encode_names,
    letter_to_index,
    line_to_tensor,
    n_letters,
    name_to_indices,
    unicode_to_ascii,
)


def test_alphabet_has_58_characters_with_unknown_slot() -> None:
    assert n_letters == len(all_letters) == 58
    assert all_letters.startswith(string.ascii_letters)
    assert len(set(all_letters)) == n_letters  # no character owns two indices
    assert UNKNOWN_CHAR in all_letters


def test_unicode_to_ascii_folds_accents_and_drops_the_rest() -> None:
    assert unicode_to_ascii("Ślusàrski") == "Slusarski"
    assert unicode_to_ascii("Müller") == "Muller"
    assert unicode_to_ascii("O'Néal, Jr.") == "O'Neal, Jr."
    assert unicode_to_ascii("王") == ""  # no ASCII form: vanishes
    assert unicode_to_ascii("Abbas-Smith") == "AbbasSmith"  # '-' is outside the alphabet


def test_letter_indices_and_unknown_characters() -> None:
    assert letter_to_index("a") == 0
    assert letter_to_index("A") == 26
    assert letter_to_index("'") == all_letters.index("'")
    unknown = all_letters.index("_")
    for ch in ("-", "é", "王", "1"):
        assert letter_to_index(ch) == unknown
    assert name_to_indices("Ab-") == [26, 1, unknown]


def test_line_to_tensor_is_one_hot_per_character() -> None:
    tensor = line_to_tensor("Ab?")
    assert tensor.shape == (3, 1, n_letters)
    assert torch.equal(tensor.sum(dim=2), torch.ones(3, 1))
    assert tensor[0, 0, 26] == 1 and tensor[1, 0, 1] == 1
    assert tensor[2, 0, all_letters.index("_")] == 1


def test_encode_names_pads_with_zeros_and_reports_lengths() -> None:
    indices, lengths = encode_names(["Abe", "Kowalski", "O", "Zö"])
    assert indices.dtype == torch.int64 and lengths.dtype == torch.int64
    assert indices.shape == (4, 8)
    assert lengths.tolist() == [3, 8, 1, 2]
    assert indices[0].tolist() == [*name_to_indices("Abe"), 0, 0, 0, 0, 0]
    assert indices[1].tolist() == name_to_indices("Kowalski")
    assert indices[2, 1:].eq(0).all()
    # 'ö' is not folded by encode_names (the data layer folds first): it encodes as unknown.
    assert indices[3, :2].tolist() == [all_letters.index("Z"), all_letters.index("_")]


def test_encode_names_of_nothing() -> None:
    indices, lengths = encode_names([])
    assert indices.shape == (0, 1)
    assert lengths.shape == (0,)
