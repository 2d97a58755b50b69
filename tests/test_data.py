"""The data layer: strict reading, sorted labels, reproducible splits, fingerprint and summary."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from ml_rnn_names import download as download_module
from ml_rnn_names.data import (
    MAX_NAME_LENGTH,
    NamesDataset,
    load_data,
    load_splits,
    read_names_folder,
    resolve_data_dir,
)
from ml_rnn_names.errors import DataError
from ml_rnn_names.processing import n_letters

# ---------------------------------------------------------------------------------------- reading


def test_labels_are_sorted_whatever_the_file_creation_order(make_names_dir) -> None:
    folder = make_names_dir({"Zulu": ["Zed", "Zak"], "Alpha": ["Abe"], "Mike": ["Max", "Mo"]})
    raw = read_names_folder(folder)
    assert raw.labels == ["Alpha", "Mike", "Zulu"]
    assert ("Abe", 0) in raw.pairs and ("Zed", 2) in raw.pairs and ("Max", 1) in raw.pairs


def test_folding_and_lines_that_fold_to_nothing_are_counted(make_names_dir, tiny_files, tiny_names) -> None:
    folder = make_names_dir(
        {
            "Alpha": ["Ślusàrski", "王", "", "---", "  Abe  "],
            "Beta": ["Bob", "Bill"],
        }
    )
    raw = read_names_folder(folder)
    assert raw.lines_read == 7
    assert raw.pairs == [("Slusarski", 0), ("Abe", 0), ("Bob", 1), ("Bill", 1)]
    assert raw.dropped_empty == {"Alpha": 3, "Beta": 0}
    assert raw.folded_changed == 1  # 'Ślusàrski'; stripping whitespace is not folding

    splits = load_splits(
        make_names_dir({**tiny_files(10), "Alpha": ["Ślusàrski", "王", "---", *tiny_names("Alpha", 10)]}, "b")
    )
    s = splits.summary
    assert s["lines_read"] == 43
    assert s["names_kept"] == 41
    assert s["dropped_empty_after_folding"] == 2
    assert s["dropped_per_file"] == {"Alpha": 2}
    assert s["names_changed_by_folding"] == 1
    assert "Slusarski" in splits.train.names + splits.val.names + splits.test.names


def test_utf8_bom_is_not_part_of_the_first_name(make_names_dir) -> None:
    folder = make_names_dir({"Alpha": "\ufeffAbe\nAda\n".encode(), "Beta": ["Bob"]})
    assert read_names_folder(folder).pairs[0] == ("Abe", 0)


# ------------------------------------------------------------------------------------------ bad data


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        read_names_folder(missing)
    message = str(info.value)
    assert str(missing) in message and "does not exist" in message
    assert "ML_RNN_NAMES_DATA" in message


def test_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "names.txt"
    path.write_text("Abe\n")
    with pytest.raises(DataError, match=re.escape(f"data folder {path} is not a directory")):
        read_names_folder(path)


def test_folder_without_txt_files(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("no names here\n")
    with pytest.raises(DataError) as info:
        read_names_folder(tmp_path)
    assert str(info.value) == f"data folder {tmp_path} has no <Label>.txt files"


def test_a_single_label_is_refused(make_names_dir) -> None:
    folder = make_names_dir({"Alpha": ["Abe"]})
    with pytest.raises(DataError, match=r"only Alpha\.txt: a classifier needs at least 2 labels"):
        read_names_folder(folder)


def test_non_utf8_byte_names_file_line_and_column(make_names_dir) -> None:
    folder = make_names_dir({"Alpha": ["Abe"], "Bad": b"Bob\nBill\nBj\xf6rn\nBo\n"})
    with pytest.raises(DataError) as info:
        read_names_folder(folder)
    message = str(info.value)
    assert f"{folder / 'Bad.txt'}:3:" in message
    assert "0xf6" in message and "column 3" in message
    assert "not valid UTF-8" in message and "re-save the file as UTF-8" in message


def test_non_utf8_byte_on_first_line(make_names_dir) -> None:
    folder = make_names_dir({"Alpha": ["Abe"], "Bad": b"\xffBob\nBill\n"})
    with pytest.raises(DataError, match=re.escape(f"{folder / 'Bad.txt'}:1: byte 0xff at column 1")):
        read_names_folder(folder)


def test_empty_file(make_names_dir) -> None:
    folder = make_names_dir({"Alpha": ["Abe"], "Empty": b"\n  \n"})
    with pytest.raises(DataError) as info:
        read_names_folder(folder)
    assert str(info.value).startswith(f"{folder / 'Empty.txt'}: file is empty")


def test_a_label_whose_lines_all_fold_to_nothing(make_names_dir) -> None:
    folder = make_names_dir({"Alpha": ["Abe"], "Chinese": ["王", "李明", "---"]})
    with pytest.raises(DataError) as info:
        read_names_folder(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'Chinese.txt'}: all 3 lines fold to nothing")
    assert "the label would have no names" in message


def test_labels_differing_only_in_case(make_names_dir) -> None:
    folder = make_names_dir({"Foo": ["Abe"], "foo": ["Bob"], "Bar": ["Cid"]})
    if len(list(folder.glob("*.txt"))) < 3:
        pytest.skip("case-insensitive file system: Foo.txt and foo.txt are one file")
    with pytest.raises(DataError) as info:
        read_names_folder(folder)
    message = str(info.value)
    assert "Foo.txt and foo.txt" in message and "differ only in case" in message
    assert "merge or rename one" in message


def test_a_10000_character_line(make_names_dir) -> None:
    folder = make_names_dir({"Alpha": ["Abe", "Ada"], "Beta": ["Bob", "x" * 10_000, "Bill"]})
    with pytest.raises(DataError) as info:
        read_names_folder(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'Beta.txt'}:2: line is 10000 characters long")
    assert f"limit {MAX_NAME_LENGTH}" in message


def test_a_name_at_the_length_limit_is_kept(make_names_dir) -> None:
    folder = make_names_dir({"Alpha": ["A" * MAX_NAME_LENGTH], "Beta": ["Bob"]})
    assert read_names_folder(folder).pairs[0] == ("A" * MAX_NAME_LENGTH, 0)


def test_too_few_names_to_split(make_names_dir) -> None:
    folder = make_names_dir({"Alpha": ["Abe", "Ada"], "Beta": ["Bob"]})
    with pytest.raises(DataError, match=re.escape("3 names are too few to split with validation_split=0.15")):
        load_splits(folder)


@pytest.mark.parametrize("bad", [0.0, 0.5, -0.1])
def test_validation_split_out_of_range(tiny_data_dir: Path, bad: float) -> None:
    with pytest.raises(DataError, match=re.escape(f"validation_split must be in (0, 0.5), got {bad}")):
        load_splits(tiny_data_dir, validation_split=bad)


# ------------------------------------------------------------------------------------------ splits


def _pairs(dataset: NamesDataset) -> list[tuple[str, int]]:
    return list(zip(dataset.names, dataset.targets.tolist(), strict=True))


def test_split_sizes_are_70_15_15_and_cover_every_name_once(make_names_dir, tiny_files) -> None:
    folder = make_names_dir(tiny_files(25))  # 100 names
    splits = load_splits(folder)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (70, 15, 15)
    assert splits.summary["split_sizes"] == {"train": 70, "val": 15, "test": 15}
    everything = Counter(_pairs(splits.train) + _pairs(splits.val) + _pairs(splits.test))
    assert everything == Counter(read_names_folder(folder).pairs)


def test_split_is_deterministic_given_the_seed(tiny_data_dir: Path) -> None:
    first, second = load_splits(tiny_data_dir, seed=7), load_splits(tiny_data_dir, seed=7)
    for part in ("train", "val", "test"):
        a, b = getattr(first, part), getattr(second, part)
        assert a.names == b.names
        assert torch.equal(a.targets, b.targets) and torch.equal(a.indices, b.indices)
    other = load_splits(tiny_data_dir, seed=8)
    assert other.train.names != first.train.names
    assert sorted(other.train.names + other.val.names) != sorted(first.train.names + first.val.names)


def test_fingerprint_identifies_names_and_split(tiny_data_dir: Path, make_names_dir, tiny_files) -> None:
    base = load_splits(tiny_data_dir).fingerprint
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert load_splits(tiny_data_dir).fingerprint == base
    assert load_splits(tiny_data_dir, include_test=False).fingerprint == base
    assert load_splits(tiny_data_dir, seed=1).fingerprint != base

    files = tiny_files()
    assert load_splits(make_names_dir(files, "same")).fingerprint == base  # same content, other folder
    files["Gamma"][5] = files["Gamma"][5] + "e"
    assert load_splits(make_names_dir(files, "changed")).fingerprint != base


def test_include_test_false_holds_no_test_data(tiny_data_dir: Path) -> None:
    full = load_splits(tiny_data_dir)
    search = load_splits(tiny_data_dir, include_test=False)
    assert search.test is None
    assert search.train.names == full.train.names and search.val.names == full.val.names
    assert search.summary["split_sizes"]["test"] == len(full.test)


def test_summary_counts_duplicates_shared_names_and_leakage(make_names_dir, tiny_names) -> None:
    files = {
        "Alpha": ["Same"] * 10 + ["Abe", "Abe", "Cid"] + tiny_names("Alpha", 20),
        "Beta": ["Same"] * 10 + ["Cid"] + tiny_names("Beta", 20),
        "Gamma": ["Abe", *tiny_names("Gamma", 20)],
    }
    splits = load_splits(make_names_dir(files))
    s = splits.summary
    assert s["names_kept"] == 85
    # 'Same' 9 extra in Alpha and in Beta, 'Abe' 1 extra in Alpha.
    assert s["duplicate_lines_within_class"] == 19
    assert s["distinct_duplicated_names"] == 3
    assert s["most_repeated"] == [["Same", "Alpha", 10], ["Same", "Beta", 10], ["Abe", "Alpha", 2]]
    assert s["most_repeated_per_label"] == {"Alpha": [["Same", 10], ["Abe", 2]], "Beta": [["Same", 10]]}
    assert s["names_under_several_labels"] == 3  # Abe, Cid, Same
    # Byte-identical lines seen more than once anywhere: 'Same', 'Abe', 'Cid' (the tutorial's 685 count).
    assert s["distinct_lines_repeated"] == 3
    assert s["examples_under_several_labels"] == [
        ["Abe", ["Alpha", "Gamma"]],
        ["Cid", ["Alpha", "Beta"]],
        ["Same", ["Alpha", "Beta"]],
    ]
    train_names, train_pairs = set(splits.train.names), set(_pairs(splits.train))
    expected = {
        "val_names_in_train": sum(n in train_names for n in splits.val.names),
        "test_names_in_train": sum(n in train_names for n in splits.test.names),
        "val_pairs_in_train": sum(p in train_pairs for p in _pairs(splits.val)),
        "test_pairs_in_train": sum(p in train_pairs for p in _pairs(splits.test)),
    }
    assert {k: s[k] for k in expected} == expected
    # 20 copies of 'Same' cannot all land outside train: the leak is real and must be reported.
    assert s["val_names_in_train"] + s["test_names_in_train"] > 0
    assert s["dedupe"] is False and s["removed_by_dedupe"] == 0


def test_dedupe_removes_exact_duplicates_before_splitting(make_names_dir, tiny_names) -> None:
    files = {
        "Alpha": ["Same"] * 10 + ["Abe", "Abe"] + tiny_names("Alpha", 20),
        "Beta": ["Same"] * 10 + tiny_names("Beta", 20),
        "Gamma": ["Abe", *tiny_names("Gamma", 20)],
    }
    folder = make_names_dir(files)
    deduped = load_splits(folder, dedupe=True)
    s = deduped.summary
    assert s["dedupe"] is True and s["removed_by_dedupe"] == 19
    n = 83 - 19
    assert sum(s["split_sizes"].values()) == n == len(deduped.train) + len(deduped.val) + len(deduped.test)
    everything = _pairs(deduped.train) + _pairs(deduped.val) + _pairs(deduped.test)
    assert len(set(everything)) == n  # no (name, label) pair twice anywhere
    assert s["val_pairs_in_train"] == 0 and s["test_pairs_in_train"] == 0
    # The same name under two labels is not a duplicate: both 'Same's and both 'Abe's stay.
    assert {p for p in everything if p[0] in ("Same", "Abe")} == {
        ("Same", 0),
        ("Same", 1),
        ("Abe", 0),
        ("Abe", 2),
    }
    # What was read is still reported, and the fingerprint says the data differs.
    assert s["duplicate_lines_within_class"] == 19
    assert deduped.fingerprint != load_splits(folder).fingerprint


# --------------------------------------------------------------------------------------- load_data


def test_load_data_returns_encoded_splits_and_prints_a_summary(
    tiny_data_dir: Path, capsys, tiny_names
) -> None:
    train_set, val_set, test_set, labels = load_data("cpu", data_dir=tiny_data_dir)
    assert labels == ["Alpha", "Beta", "Delta", "Gamma"]
    assert (len(train_set), len(val_set), len(test_set)) == (84, 18, 18)
    for dataset in (train_set, val_set, test_set):
        assert isinstance(dataset, NamesDataset)
        assert dataset.labels == labels
        assert dataset.indices.dtype == torch.int64 and dataset.indices.shape[0] == len(dataset)
        assert dataset.indices.shape[1] == int(dataset.lengths.max())
        assert dataset.targets.dtype == torch.int64 and dataset.targets.shape == (len(dataset),)
        assert dataset.lengths.tolist() == [len(name) for name in dataset.names]
    out = capsys.readouterr().out
    assert f"Loaded 120 names in 4 classes from {tiny_data_dir}: train 84, val 18, test 18;" in out
    assert "0 duplicate lines within classes" in out

    label_tensor, one_hot, label, name = train_set[0]
    assert label_tensor.tolist() == [labels.index(label)]
    assert name == train_set.names[0]
    assert one_hot.shape == (len(name), 1, n_letters)
    assert name in tiny_names(label)


def test_load_data_matches_load_splits(tiny_data_dir: Path) -> None:
    train_set, val_set, test_set, labels = load_data(data_dir=tiny_data_dir, seed=3)
    splits = load_splits(tiny_data_dir, seed=3)
    assert labels == splits.labels
    assert (train_set.names, val_set.names, test_set.names) == (
        splits.train.names,
        splits.val.names,
        splits.test.names,
    )


# ------------------------------------------------------------------------------------ where from


def test_resolve_argument_beats_environment(tiny_data_dir, make_names_dir, monkeypatch, tiny_files) -> None:
    other = make_names_dir(tiny_files(), "other")
    monkeypatch.setenv("ML_RNN_NAMES_DATA", str(other))
    assert resolve_data_dir(tiny_data_dir) == tiny_data_dir
    assert load_splits(tiny_data_dir).summary["source"] == str(tiny_data_dir)


def test_resolve_environment_beats_local_folder(tiny_data_dir, tmp_path, monkeypatch) -> None:
    (tmp_path / "data" / "names").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ML_RNN_NAMES_DATA", str(tiny_data_dir))
    assert resolve_data_dir() == tiny_data_dir
    assert load_splits().summary["source"] == str(tiny_data_dir)


def test_resolve_local_folder_beats_download(make_names_dir, tiny_files, tmp_path, monkeypatch) -> None:
    local = make_names_dir(tiny_files(), "data/names")
    monkeypatch.chdir(tmp_path)

    def no_download(*args, **kwargs):
        raise AssertionError("must not download when ./data/names exists")

    monkeypatch.setattr(download_module, "ensure_downloaded", no_download)
    assert resolve_data_dir() == local.resolve()
    assert load_splits().summary["source"] == str(local.resolve())


def test_resolve_downloads_when_nothing_else(tiny_data_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_download(*args, **kwargs):
        calls.append((args, kwargs))
        return tiny_data_dir

    monkeypatch.setattr(download_module, "ensure_downloaded", fake_download)
    assert resolve_data_dir() == tiny_data_dir
    assert len(calls) == 1
    assert load_splits().summary["source"] == str(tiny_data_dir)
    assert len(calls) == 2
