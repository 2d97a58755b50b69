"""Campaign files: validation messages (file, key, fix), overrides, path resolution, storage precedence,
the resolved config and its hash."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from ml_rnn_names.errors import ConfigError
from ml_rnn_names.study.campaign import Campaign
from ml_rnn_names.study.config import load_campaign
from ml_rnn_names.study.storage import STORAGE_ENV, resolve_storage_url
from study_helpers import TINY_MODELS, TINY_SEARCH, campaign_text, write_campaign


def _search(**changes: Any) -> dict[str, Any]:
    return {**TINY_SEARCH, **changes}


def _load_error(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_campaign(path, overrides)
    return str(info.value)


#: (campaign_text kwargs, key the message names, the fix it gives)
ERROR_CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown key": ({"campaign": {"n_trial": 3}}, "campaign.n_trial", "did you mean 'n_trials'?"),
    "unknown section": ({"sections": {"serach": {"a": 1}}}, "serach", "did you mean 'search'?"),
    "unknown param key": (
        {"search": _search(hidden_size={"choice": [4, 8]})},
        "search.hidden_size.choice",
        "did you mean 'choices'?",
    ),
    "wrong type": ({"campaign": {"n_trials": "3"}}, "campaign.n_trials", "expected an integer"),
    "wrong type in execution": (
        {"execution": {"heartbeat_interval": 1.5}},
        "execution.heartbeat_interval",
        "expected an integer",
    ),
    "empty choices": (
        {"search": _search(hidden_size={"choices": []})},
        "search.hidden_size.choices",
        "list at least one value",
    ),
    "low above high": (
        {"search": _search(learning_rate={"low": 0.3, "high": 0.05})},
        "search.learning_rate",
        "swap them",
    ),
    "low equals high": (
        {"search": _search(learning_rate={"low": 0.1, "high": 0.1})},
        "search.learning_rate",
        "or use a fixed value",
    ),
    "unknown model, close name": (
        {"models": {"RNN": {}, "LTSM": {"num_layers": {"choices": [1]}}}},
        "models.LTSM",
        "did you mean 'LSTM'?",
    ),
    "unknown model": ({"models": {"Transformer": {}}}, "models.Transformer", "registered models"),
    "n_trials 0": ({"n_trials": 0}, "campaign.n_trials", "must be at least 1"),
    "n_trials -1": ({"n_trials": -1}, "campaign.n_trials", "must be at least 1"),
    "finalize seeds empty": (
        {"sections": {"finalize": {"seeds": []}}},
        "finalize.seeds",
        "list at least one seed",
    ),
    "finalize seeds duplicated": (
        {"sections": {"finalize": {"seeds": [42, 7, 42]}}},
        "finalize.seeds",
        "each seed once",
    ),
    "bare list": (
        {"search": _search(hidden_size=[4, 8])},
        "search.hidden_size",
        "write hidden_size = { choices = [4, 8] }",
    ),
    "model misses a param": (
        {"models": {"RNN": {}, "LSTM": {}}},
        "models.LSTM",
        "add them to [search] or [models.LSTM.search]",
    ),
    "param a model does not take": (
        {"search": _search(num_layers={"choices": [1]}), "models": {"RNN": {}}},
        "search.num_layers",
        "it takes",
    ),
    "model param out of range": (
        {"models": {"RNN": {}, "LSTM": {"num_layers": {"choices": [0, 1]}}}},
        "models.LSTM.search.num_layers",
        "positive integers",
    ),
    "infinite learning rate": (
        {"search": _search(learning_rate=float("inf"))},
        "search.learning_rate",
        "positive finite",
    ),
    "heartbeat grace": (
        {"execution": {"heartbeat_interval": 2, "grace_period": 2}},
        "execution.grace_period",
        "grace_period > it",
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_every_error_names_file_key_and_fix(case: str, tmp_path: Path, tiny_data_dir: Path) -> None:
    kwargs, key, fix = ERROR_CASES[case]
    path = tmp_path / "bad.toml"
    text = campaign_text(data_dir=tiny_data_dir, **kwargs)
    path.write_text(text, encoding="utf-8")
    message = _load_error(path)
    assert message.startswith(f"{path}: "), message
    assert key in message, message
    assert fix in message, message


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[campaign]\nname = "x"\nn_trials = \n', encoding="utf-8")
    message = _load_error(path)
    assert str(path) in message
    assert "invalid TOML" in message
    assert "line 3" in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    message = _load_error(tmp_path / "nope.toml")
    assert str(tmp_path / "nope.toml") in message and "not found" in message


def test_a_valid_campaign_loads(tmp_path: Path, tiny_data_dir: Path) -> None:
    config = load_campaign(write_campaign(tmp_path, data_dir=tiny_data_dir, n_trials=4))
    assert config.name == "tiny" and config.n_trials == 4
    assert config.model_names == list(TINY_MODELS)
    rnn = {p.name: p for p in config.model("RNN").params}
    lstm = {p.name: p for p in config.model("LSTM").params}
    assert sorted(rnn) == ["hidden_size", "learning_rate", "n_batch_size", "n_epoch"]
    assert sorted(lstm) == [*sorted(rnn), "num_layers"]
    assert rnn["hidden_size"].kind == "categorical" and rnn["hidden_size"].choices == (4, 8)
    assert (rnn["learning_rate"].kind, rnn["learning_rate"].low, rnn["learning_rate"].high) == (
        "float",
        0.05,
        0.3,
    )
    assert (config.threads_per_worker, config.heartbeat_interval, config.grace_period) == (1, 1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_trials = 5  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ overrides


def test_overrides_int_list_nested_and_string(tmp_path: Path, tiny_data_dir: Path) -> None:
    path = write_campaign(tmp_path, data_dir=tiny_data_dir)
    before = path.read_text()
    config = load_campaign(
        path,
        [
            "campaign.n_trials=5",
            "search.hidden_size.choices=[16, 32]",
            "models.LSTM.search.num_layers={ choices = [3] }",
            "execution.threads_per_worker=2",
            "campaign.description=a plain string",
        ],
    )
    assert config.n_trials == 5
    lstm = {p.name: p for p in config.model("LSTM").params}
    assert lstm["hidden_size"].choices == (16, 32)
    assert lstm["num_layers"].choices == (3,)
    assert config.threads_per_worker == 2
    assert config.description == "a plain string"
    assert path.read_text() == before  # overrides never touch the file
    assert load_campaign(path).n_trials == 3


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("campaign.n_trail=3", ["campaign.n_trail", "did you mean 'n_trials'?"]),
        ("campaign.n_trials=three", ["campaign.n_trials", "expected an integer"]),
        ("search.hidden_size.choices=[]", ["search.hidden_size.choices", "list at least one value"]),
        ("campaign.n_trials", ["--set 'campaign.n_trials'", "expected key=value"]),
        ("campaign..n_trials=3", ["is not a dotted key"]),
        ("campaign.name.x=1", ["'name' is a value, not a table"]),
    ],
)
def test_bad_overrides_are_config_errors(
    override: str, expected: list[str], tmp_path: Path, tiny_data_dir: Path
) -> None:
    message = _load_error(write_campaign(tmp_path, data_dir=tiny_data_dir), [override])
    for part in expected:
        assert part in message, message


# --------------------------------------------------------------------------------- paths and storage


def test_relative_paths_resolve_against_the_toml_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "studies"
    path = write_campaign(folder, data_dir="../data/names", storage="sqlite:///results/x.db")
    default = write_campaign(folder, filename="default.toml", name="other", data_dir="names")
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    config = load_campaign(Path("../../studies") / path.name)  # a path relative to the cwd works too
    assert config.source == path.resolve()
    assert config.storage == f"sqlite:///{folder.resolve() / 'results' / 'x.db'}"
    assert config.data_dir == str((tmp_path / "data" / "names").resolve())
    other = load_campaign(default)
    assert other.storage == f"sqlite:///{folder.resolve() / 'other.db'}"
    assert other.data_dir == str((folder / "names").resolve())
    assert other.study_dir == folder.resolve() / "other"


@pytest.mark.parametrize(
    "url",
    ["sqlite:////abs/path/x.db", "sqlite:///:memory:", "postgresql+psycopg://u:p@host:5432/db"],
)
def test_absolute_and_server_urls_are_kept(url: str, tmp_path: Path) -> None:
    assert load_campaign(write_campaign(tmp_path, storage=url)).storage == url


def test_storage_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert resolve_storage_url("sqlite:///a.db") == "sqlite:///a.db"
    assert resolve_storage_url("sqlite:///a.db", "sqlite:///b.db") == "sqlite:///b.db"
    path = write_campaign(tmp_path)
    file_url = f"sqlite:///{tmp_path.resolve() / 'tiny.db'}"
    assert Campaign.from_toml(path).storage_url == file_url

    monkeypatch.setenv(STORAGE_ENV, "sqlite:///env.db")
    assert resolve_storage_url("sqlite:///a.db") == "sqlite:///env.db"  # env beats the file
    assert resolve_storage_url("sqlite:///a.db", "sqlite:///cli.db") == "sqlite:///cli.db"  # --storage wins
    assert Campaign.from_toml(path).storage_url == "sqlite:///env.db"
    assert Campaign.from_toml(path, storage="sqlite:///cli.db").storage_url == "sqlite:///cli.db"

    monkeypatch.setenv(STORAGE_ENV, "")  # set but empty: ignored
    assert Campaign.from_toml(path).storage_url == file_url


# ------------------------------------------------------------------------------ resolved and hashed


def test_resolved_config_is_plain_data(tmp_path: Path, tiny_data_dir: Path) -> None:
    config = load_campaign(write_campaign(tmp_path, data_dir=tiny_data_dir))
    resolved = config.resolved()
    assert json.loads(json.dumps(resolved)) == resolved
    assert sorted(resolved["search_shared"]) == ["hidden_size", "learning_rate", "n_batch_size", "n_epoch"]
    assert resolved["models"] == {
        "RNN": {},
        "LSTM": {"num_layers": {"name": "num_layers", "kind": "categorical", "choices": [1, 2]}},
    }
    assert resolved["campaign"]["storage"] == config.storage
    assert resolved["data"]["dir"] == str(tiny_data_dir.resolve())
    assert resolved["finalize"]["seeds"] == [42, 123, 456]  # the default
    assert resolved["execution"]["threads_per_worker"] == 1


def test_config_hash_is_stable_and_tracks_the_experiment(tmp_path: Path, tiny_data_dir: Path) -> None:
    path = write_campaign(tmp_path, data_dir=tiny_data_dir)
    base = load_campaign(path).config_hash()
    assert base == load_campaign(path).config_hash()
    assert len(base) == 16 and int(base, 16) >= 0

    def hash_with(*overrides: str) -> str:
        return load_campaign(path, list(overrides)).config_hash()

    # the same experiment: where results are stored and how it is described do not change the question
    assert hash_with("campaign.storage=sqlite:///elsewhere.db") == base
    assert hash_with("campaign.description=hello") == base
    # a different experiment
    changed = {
        hash_with("search.hidden_size.choices=[4, 16]"),
        hash_with("search.learning_rate.high=0.4"),
        hash_with("models.LSTM.search.num_layers.choices=[1, 3]"),
        hash_with("campaign.n_trials=4"),
        hash_with("campaign.sampler_seed=1"),
        hash_with("campaign.base_seed=1"),
        hash_with("data.split_seed=1"),
    }
    assert base not in changed and len(changed) == 7
