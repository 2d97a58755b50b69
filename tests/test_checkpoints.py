"""Checkpoints: weights-only round trips, refusal of code-running pickles, clear errors, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ml_rnn_names.data import Splits, load_splits
from ml_rnn_names.errors import CheckpointError
from ml_rnn_names.processing import all_letters
from ml_rnn_names.study.checkpoints import (
    FORMAT,
    atomic_write,
    checkpoint_payload,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from ml_rnn_names.study.objective import train_params
from ml_rnn_names.training import predict_log_probs

PARAMS = {"hidden_size": 8, "num_layers": 1, "n_epoch": 2, "n_batch_size": 16, "learning_rate": 0.2}


@pytest.fixture(scope="module")
def splits(tiny_data_dir: Path) -> Splits:
    return load_splits(tiny_data_dir, seed=3)


def _payload(model: torch.nn.Module, model_name: str, splits: Splits) -> dict:
    return checkpoint_payload(
        model,
        model_name=model_name,
        params=PARAMS,
        labels=splits.labels,
        seed=7,
        data_fingerprint=splits.fingerprint,
        campaign="tiny",
        source_trial=4,
    )


@pytest.mark.parametrize("model_name", ["RNN", "LSTM"])
def test_round_trip_gives_identical_predictions(model_name: str, splits: Splits, tmp_path: Path) -> None:
    model, _ = train_params(model_name, PARAMS, train_set=splits.train, val_set=splits.val, seed=7)
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(_payload(model, model_name, splits), path)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left behind

    # plain data and tensors only: torch's own weights-only loader accepts the file as it is
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT
    payload = load_checkpoint(path)
    assert payload["model"] == model_name
    assert payload["params"] == PARAMS
    assert payload["labels"] == splits.labels
    assert payload["alphabet"] == all_letters
    assert (payload["seed"], payload["campaign"], payload["source_trial"]) == (7, "tiny", 4)
    assert payload["data_fingerprint"] == splits.fingerprint

    restored = model_from_checkpoint(payload)
    assert type(restored) is type(model)
    assert not restored.training
    for split in (splits.val, splits.train):
        assert torch.equal(predict_log_probs(restored, split), predict_log_probs(model, split))


def test_payload_detaches_to_cpu_and_copies_inputs(splits: Splits) -> None:
    model, _ = train_params("RNN", PARAMS, train_set=splits.train, val_set=splits.val, seed=1)
    params, labels = dict(PARAMS), list(splits.labels)
    payload = checkpoint_payload(model, model_name="RNN", params=params, labels=labels, seed=1)
    params["hidden_size"], labels[0] = 99, "changed"
    assert payload["params"]["hidden_size"] == 8 and payload["labels"][0] == splits.labels[0]
    assert all(not t.requires_grad and t.device.type == "cpu" for t in payload["state_dict"].values())


class _RunsShell:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OpensFile:
    """A pickle payload that would create a file when unpickled (no shell involved)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("evil", [_RunsShell, _OpensFile], ids=["os.system", "builtins.open"])
def test_code_running_pickle_is_refused_without_side_effect(evil: type, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "alphabet": all_letters, "state_dict": {}, "x": evil(marker)}, path)

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert "refused to load (weights_only=True)" in message
    assert "GLOBAL" in message  # names what was refused
    assert "tensors and plain data" in message
    # torch's generic advice ("re-running with weights_only=False will likely succeed") is not passed on
    assert "will likely succeed" not in message
    assert not marker.exists()

    # the payload is real: an unsafe load would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_corrupt_files_are_refused_with_a_clear_message(tmp_path: Path, splits: Splits) -> None:
    model, _ = train_params("RNN", PARAMS, train_set=splits.train, val_set=splits.val, seed=1)
    good = tmp_path / "good.pt"
    save_checkpoint(_payload(model, "RNN", splits), good)
    data = good.read_bytes()
    cases = {
        "truncated.pt": data[: len(data) // 2],
        "garbage.pt": b"not a checkpoint at all" * 20,
        "empty.pt": b"",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert message.startswith(f"{path}: corrupt or not a checkpoint file"), message
        assert "weights_only=True" in message and "finalize --force" in message
        assert "will likely succeed" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nowhere\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "nowhere.pt")


@pytest.mark.parametrize(
    "content",
    [{"state_dict": {}}, {"format": "someone-else/2", "state_dict": {}}, [1, 2, 3], torch.zeros(3)],
    ids=["no-format", "other-format", "list", "tensor"],
)
def test_wrong_format_is_refused(content: object, tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: not an ml_rnn_names checkpoint (format {FORMAT!r} expected)"


def test_other_alphabet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alphabet.pt"
    torch.save({"format": FORMAT, "alphabet": "abc", "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="different alphabet; predictions would be wrong"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------- atomic write


def test_atomic_write_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    atomic_write(path, lambda tmp: tmp.write_bytes(b"new"))
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize(
    "error",
    [OSError(28, "No space left on device"), KeyboardInterrupt()],
    ids=["disk-full", "interrupted"],
)
def test_failed_write_leaves_the_previous_file_and_no_temp_file(tmp_path: Path, error: BaseException) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"previous checkpoint")
    seen: list[Path] = []

    def writer(tmp: Path) -> None:
        seen.append(tmp)
        assert tmp.parent == path.parent  # same folder: the final rename is atomic
        with open(tmp, "wb") as f:
            f.write(b"half a checkp")  # a partial write, then the failure
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, writer)
    assert path.read_bytes() == b"previous checkpoint"
    assert not seen[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_save_checkpoint_failing_mid_write_keeps_the_old_checkpoint(
    tmp_path: Path, splits: Splits, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = train_params("RNN", PARAMS, train_set=splits.train, val_set=splits.val, seed=1)
    path = tmp_path / "model.pt"
    save_checkpoint(_payload(model, "RNN", splits), path)
    before = path.read_bytes()

    real_save = torch.save

    def disk_full(obj: object, f: str | os.PathLike[str]) -> None:
        real_save(obj, f)
        with open(f, "r+b") as handle:
            handle.truncate(10)  # the write got this far
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        save_checkpoint({"format": FORMAT, "replacement": True}, path)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["model"] == "RNN"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_atomic_write_creates_missing_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.txt"
    atomic_write(path, lambda tmp: tmp.write_text("x"))
    assert path.read_text() == "x"
