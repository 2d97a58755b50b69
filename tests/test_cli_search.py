"""The search half of the CLI: ``run``, ``status``, ``config``, ``data`` and how errors look."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ml_rnn_names.cli import main
from study_helpers import run_cli, write_campaign

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _status_line(text: str, study: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(study + " "))
    return line.split()


@pytest.fixture
def layout(tmp_path: Path, tiny_data_dir: Path) -> dict[str, Path]:
    """``camp/tiny.toml`` with its data beside it (a relative ``dir``) and two unrelated working dirs."""
    camp = tmp_path / "camp"
    shutil.copytree(tiny_data_dir, camp / "names")
    toml = write_campaign(camp, data_dir="names", n_trials=2)
    a, b = tmp_path / "a", tmp_path / "b" / "c"
    a.mkdir()
    b.mkdir(parents=True)
    return {"camp": camp, "toml": toml, "a": a, "b": b}


def test_run_then_status_from_another_cwd(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(layout["a"])
    assert main(["run", "../camp/tiny.toml", "-q"]) == 0
    captured = capsys.readouterr()
    assert "tiny: ran with 1 worker(s) × 1 thread(s)" in captured.out
    assert _status_line(captured.out, "tiny/RNN")[1:7] == ["2", "0", "0", "0", "0", "0"]
    assert "Traceback" not in captured.err
    assert (layout["camp"] / "tiny.db").exists()  # beside the campaign file, not in the cwd
    assert not list(layout["a"].iterdir())

    monkeypatch.chdir(layout["b"])
    assert main(["status", "../../camp/tiny.toml"]) == 0
    out = capsys.readouterr().out
    assert f"campaign tiny in sqlite:///{layout['camp'].resolve() / 'tiny.db'}" in out
    for study in ("tiny/RNN", "tiny/LSTM"):
        assert _status_line(out, study)[1:7] == ["2", "0", "0", "0", "0", "0"]

    assert main(["status", "../../camp/tiny.toml", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["complete"], r["remaining"]) for r in rows] == [("RNN", 2, 0), ("LSTM", 2, 0)]

    assert main(["run", str(layout["toml"]), "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nothing to do: every study of tiny already has its 2 slots settled")
    assert not list(layout["b"].iterdir())


def test_config_prints_the_resolved_json(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(layout["a"])
    assert main(["config", "../camp/tiny.toml", "--set", "campaign.n_trials=5"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["campaign"]["n_trials"] == 5
    assert resolved["campaign"]["storage"] == f"sqlite:///{layout['camp'].resolve() / 'tiny.db'}"
    assert resolved["data"]["dir"] == str((layout["camp"] / "names").resolve())
    assert sorted(resolved["search_shared"]) == ["hidden_size", "learning_rate", "n_batch_size", "n_epoch"]
    assert list(resolved["models"]["LSTM"]) == ["num_layers"]
    assert len(resolved["config_hash"]) == 16

    url = "postgresql+psycopg://user:s3cret@db.example:5432/studies"
    assert main(["config", "../camp/tiny.toml", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert json.loads(out)["campaign"]["storage"] == "postgresql+psycopg://user:***@db.example:5432/studies"


def test_data_prints_the_summary(layout: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", str(layout["toml"])]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (
        summary["split_sizes"]["train"] + summary["split_sizes"]["val"] + summary["split_sizes"]["test"]
        == 120
    )
    assert len(summary["fingerprint"]) >= 16


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "{toml}", "--set", "campaign.n_trail=3"], ["{toml}", "campaign.n_trail", "did you mean"]),
        (["status", "{toml}", "--set", "search.hidden_size=[4, 8]"], ["{toml}", "search.hidden_size"]),
        (["config", "{camp}/missing.toml"], ["{camp}/missing.toml", "not found"]),
        (["status", "{toml}"], ["no study tiny/RNN", "run the campaign first"]),
        (["run", "{toml}", "--set", "campaign.n_trials"], ["expected key=value"]),
    ],
)
def test_errors_exit_2_with_one_line_and_no_traceback(
    args: list[str], expected: list[str], layout: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fill = {"toml": str(layout["toml"]), "camp": str(layout["camp"])}
    assert main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    for part in expected:
        assert part.format(**fill) in err, err


def test_a_changed_experiment_exits_2_naming_the_difference(
    layout: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    toml = write_campaign(layout["camp"], data_dir="names", n_trials=1, models={"RNN": {}})
    assert main(["run", str(toml), "-q"]) == 0
    capsys.readouterr()
    assert main(["run", str(toml), "-q", "--set", "search.hidden_size.choices=[4, 16]"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: study tiny/RNN already exists for a different experiment")
    assert "search space param hidden_size: stored choices [4, 8], now choices [4, 16]" in err
    assert "Traceback" not in err


def test_a_config_error_in_a_real_process_is_one_clean_line(layout: dict[str, Path]) -> None:
    bad = layout["camp"] / "bad.toml"
    bad.write_text(layout["toml"].read_text().replace("n_trials", "n_trails"), encoding="utf-8")
    # the installed console script when there is one (as a user runs it), else python -m
    script = Path(sys.executable).with_name("ml-rnn-names")
    if script.exists():
        done = subprocess.run(
            [str(script), "run", str(bad), "-q"], cwd=layout["b"], capture_output=True, text=True, timeout=120
        )
    else:
        done = run_cli("run", bad, "-q", cwd=layout["b"])
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {bad}: campaign.n_trails: unknown key; did you mean 'n_trials'?")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
