"""Predict: the finalized seed models' averaged probabilities, loaded weights-only from the artifact store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from ml_rnn_names import cli
from ml_rnn_names.data import NamesDataset, load_splits
from ml_rnn_names.errors import ConfigError, MlRnnNamesError
from ml_rnn_names.study.artifacts import artifact_dir
from ml_rnn_names.study.campaign import Campaign
from ml_rnn_names.study.checkpoints import load_checkpoint, model_from_checkpoint
from ml_rnn_names.study.finalize import final_study_name, finalize_campaign
from ml_rnn_names.study.predict import load_final_models, predict
from ml_rnn_names.study.storage import open_storage
from ml_rnn_names.training import predict_log_probs

SEEDS = (1, 2, 3)


def write_campaign(folder: Path, data_dir: Path, *, name: str = "pred") -> Path:
    """A tiny campaign trained long enough (12 epochs) for its predictions to mean something."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(
        f"""
[campaign]
name = "{name}"
n_trials = 1
[data]
dir = "{data_dir}"
[search]
hidden_size = {{ choices = [8] }}
learning_rate = {{ choices = [0.3] }}
n_batch_size = {{ choices = [16] }}
n_epoch = {{ choices = [12] }}
[models.RNN]
[models.LSTM.search]
num_layers = {{ choices = [1] }}
[finalize]
seeds = {list(SEEDS)}
[execution]
threads_per_worker = 1
heartbeat_interval = 1
grace_period = 2
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def campaign(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    campaign = Campaign.from_toml(write_campaign(tmp_path_factory.mktemp("predict"), tiny_data_dir))
    campaign.run()
    finalize_campaign(campaign)
    return campaign


def test_predictions_are_deterministic_sorted_and_probabilities(campaign: Campaign) -> None:
    names = ["Kakori", "Sonley", "Ślusarski"]
    first = predict(campaign, names, model="RNN", top=3)
    assert predict(campaign, names, model="RNN", top=3) == first
    assert [p.name for p in first] == names
    assert [p.folded for p in first] == ["Kakori", "Sonley", "Slusarski"]
    labels = load_splits(campaign.config.data_dir).labels
    for p in first:
        assert len(p.top) == 3
        probs = [prob for _, prob in p.top]
        assert probs == sorted(probs, reverse=True)
        assert all(0 < prob <= 1 for prob in probs)
        assert sum(probs) <= 1 + 1e-6
        assert len({label for label, _ in p.top}) == 3 and {label for label, _ in p.top} <= set(labels)

    everything = predict(campaign, names, model="RNN", top=50)  # clipped to the number of languages
    for p, few in zip(everything, first, strict=True):
        assert len(p.top) == len(labels)
        assert sum(prob for _, prob in p.top) == pytest.approx(1.0, abs=1e-5)
        assert p.top[:3] == few.top
    assert [len(p.top) for p in predict(campaign, names[:1], model="RNN", top=1)] == [1]


def test_training_names_get_their_own_language(campaign: Campaign) -> None:
    config = campaign.config
    train = load_splits(
        config.data_dir, validation_split=config.validation_split, seed=config.split_seed
    ).train
    names = train.names[:40]
    truth = [train.labels[int(y)] for y in train.targets[:40]]
    predictions = predict(campaign, names, model="RNN", top=1)
    right = sum(p.top[0][0] == y for p, y in zip(predictions, truth, strict=True))
    assert right >= 0.8 * len(names), f"{right}/{len(names)} training names classified right"
    assert sum(p.top[0][1] for p in predictions) / len(predictions) > 0.5  # confident, not uniform (0.25)


@pytest.mark.parametrize("model", ["RNN", "LSTM"])
def test_probabilities_are_the_average_of_the_seed_checkpoints(campaign: Campaign, model: str) -> None:
    study = optuna.load_study(
        study_name=final_study_name(campaign.config, model), storage=open_storage(campaign.storage_url)
    )
    trials = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.user_attrs["seed"])
    assert [t.user_attrs["seed"] for t in trials] == list(SEEDS)
    payloads = [
        load_checkpoint(artifact_dir(campaign.config) / t.user_attrs["checkpoint_artifact_id"])
        for t in trials
    ]
    labels = payloads[0]["labels"]
    names = ["Kakori", "Sonley", "Delarino"]
    data = NamesDataset.from_pairs([(n, 0) for n in names], labels)
    # (seeds, names, languages)
    each = torch.stack([predict_log_probs(model_from_checkpoint(p), data).exp() for p in payloads])
    assert not torch.allclose(each[0], each[1])  # the seeds differ, so averaging matters
    manual = each.mean(dim=0)

    models, loaded_labels = load_final_models(campaign, model)
    assert len(models) == len(SEEDS) and loaded_labels == labels
    for row, p in zip(manual, predict(campaign, names, model=model, top=len(labels)), strict=True):
        expected = sorted(((labels[i], float(v)) for i, v in enumerate(row)), key=lambda x: -x[1])
        assert [label for label, _ in p.top] == [label for label, _ in expected]
        assert [prob for _, prob in p.top] == pytest.approx([prob for _, prob in expected], abs=1e-6)


def test_unknown_model_is_a_config_error(campaign: Campaign) -> None:
    with pytest.raises(ConfigError, match=r"campaign pred has no model 'GRU'; it has \['RNN', 'LSTM'\]"):
        predict(campaign, ["Kakori"], model="GRU")


def test_not_finalized_is_a_clear_error(campaign: Campaign, tmp_path: Path) -> None:
    empty = Campaign(campaign.config, storage=f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(MlRnnNamesError, match=r"^LSTM is not finalized: run `ml-rnn-names finalize` first$"):
        predict(empty, ["Kakori"], model="LSTM")
    # a finalize study without a COMPLETE trial (e.g. killed during its first seed) is no different
    optuna.create_study(
        study_name=final_study_name(campaign.config, "RNN"), storage=open_storage(empty.storage_url)
    )
    with pytest.raises(MlRnnNamesError, match=r"^RNN is not finalized"):
        predict(empty, ["Kakori"], model="RNN")


def test_missing_checkpoint_file_is_a_clear_error(campaign: Campaign, tmp_path: Path) -> None:
    # same storage, but a campaign file elsewhere: its artifact folder does not hold the checkpoints
    moved = Campaign(
        dataclasses.replace(campaign.config, source=tmp_path / "pred.toml"), campaign.storage_url
    )
    with pytest.raises(MlRnnNamesError, match="is missing from the artifact store") as info:
        predict(moved, ["Kakori"], model="RNN")
    assert "shared with the machine that ran finalize" in str(info.value)


def test_names_without_letters_are_refused(campaign: Campaign) -> None:
    with pytest.raises(MlRnnNamesError) as info:
        predict(campaign, ["Kakori", "中文", "   ", "12#"], model="RNN")
    assert str(info.value) == (
        "these names have no letters left after folding to ASCII: ['中文', '   ', '12#']"
    )


def test_cli_prints_one_line_per_name(campaign: Campaign, capsys: pytest.CaptureFixture[str]) -> None:
    toml = str(campaign.config.source)
    assert cli.main(["predict", toml, "Kakori", "Sonley", "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    expected = predict(campaign, ["Kakori", "Sonley"], model="LSTM", top=2)  # default: the last model
    for line, p in zip(lines, expected, strict=True):
        ranked = ", ".join(f"{label} {prob:.1%}" for label, prob in p.top)
        assert line == f"{p.name}: {ranked}  [LSTM, 3 seeds]"
        assert line.count("%") == 2

    assert cli.main(["predict", toml, "Kakori", "--model", "RNN", "--top", "1"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("Kakori: ") and line.endswith("[RNN, 3 seeds]") and line.count("%") == 1

    assert cli.main(["predict", toml, "中文"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: these names have no letters left after folding to ASCII")
