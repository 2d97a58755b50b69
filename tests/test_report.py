"""The report: files, tables, self-contained HTML, dashboard notes, idempotence, atomic writes.

One tiny campaign (4 labels × 30 names, 2 trials per model, 1 epoch) is searched and finalized once
for the module, in-process; each test then reads or re-writes its report.
"""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from ml_rnn_names.cli import main
from ml_rnn_names.errors import MlRnnNamesError
from ml_rnn_names.study import finalize, report
from ml_rnn_names.study.campaign import Campaign
from ml_rnn_names.study.config import load_campaign
from ml_rnn_names.study.report import write_report

PNGS = ("search_val_loss.png", "confusion_matrices.png", "test_accuracy.png")
PLOT_KINDS = ("history", "intermediate", "parallel", "importances", "slice")


def _write_campaign(folder: Path, data_dir: Path, name: str, seeds: str = "[1, 2, 3]") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(
        f"""
[campaign]
name = "{name}"
n_trials = 2
sampler_seed = 0
base_seed = 0
storage = "sqlite:///{name}.db"

[data]
dir = "{data_dir}"
split_seed = 7

[search]
hidden_size = {{ choices = [4, 8] }}
learning_rate = {{ low = 0.05, high = 0.3 }}
n_batch_size = {{ choices = [16] }}
n_epoch = {{ choices = [1] }}

[models.RNN]

[models.LSTM.search]
num_layers = {{ choices = [1] }}

[finalize]
seeds = {seeds}

[execution]
threads_per_worker = 1
heartbeat_interval = 5
""",
        encoding="utf-8",
    )
    return path


def _campaign(path: Path) -> Campaign:
    # The storage is passed explicitly: a developer's $ML_RNN_NAMES_STORAGE must not be used here.
    config = load_campaign(path)
    return Campaign(config, storage=config.storage)


def _final_trials(campaign: Campaign) -> int:
    return sum(
        len(
            optuna.load_study(
                study_name=finalize.final_study_name(campaign.config, m), storage=campaign.storage_url
            ).get_trials(states=(TrialState.COMPLETE,))
        )
        for m in campaign.config.model_names
    )


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory, tiny_data_dir: Path) -> dict[str, Any]:
    """A searched and finalized tiny campaign, and its first report."""
    path = _write_campaign(tmp_path_factory.mktemp("report"), tiny_data_dir, "tiny")
    campaign = _campaign(path)
    campaign.run(workers=1)
    result = finalize.finalize_campaign(campaign)
    written = write_report(campaign)
    return {"path": path, "campaign": campaign, "finalized": result, "report": written}


def test_report_folder_has_every_file(done: dict[str, Any]) -> None:
    written = done["report"]
    folder = done["campaign"].config.study_dir / "report"
    assert written.folder == folder and written.finalized and not written.figure_problems
    names = {p.name for p in folder.iterdir()}
    expected = {"report.md", "report.html", "report.json", "plotly.min.js", *PNGS}
    expected |= {f"optuna_{m.lower()}_{k}.html" for m in ("RNN", "LSTM") for k in PLOT_KINDS}
    assert expected <= names, expected - names
    assert not [n for n in names if n.endswith(".tmp")]
    import matplotlib.image

    for png in PNGS:
        height, width, _ = matplotlib.image.imread(folder / png).shape
        assert height > 200 and width > 300, png
    data = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert data["finalized"] is True
    assert data["finalize"] == json.loads(json.dumps(report._plain(done["finalized"].to_json())))
    assert data["data_summary"]["split_sizes"] == {"train": 84, "val": 18, "test": 18}


def test_report_md_has_final_table_comparison_and_audit(done: dict[str, Any]) -> None:
    md = (done["report"].folder / "report.md").read_text(encoding="utf-8")
    result = done["finalized"]
    assert "| Model | Accuracy | Loss | Macro-F1 | Accuracy 95% CI | Seeds |" in md
    for name, final in result.models.items():
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} | "))
        assert row.count("±") == 3, row
        assert f"{final.accuracy.mean * 100:.1f}% ± {final.accuracy.std * 100:.1f}%" in row
    assert result.comparisons and result.comparisons[0].sentence() in md
    assert result.audit_count == 6  # 2 models × 3 seeds, each one test evaluation
    assert f"**{result.audit_count} test evaluations recorded**" in md
    audit_rows = [line for line in md.split("## Test audit")[1].split("##")[0].splitlines() if "| 20" in line]
    assert len(audit_rows) == result.audit_count
    for section in ("## Comparison", "## Hyperparameter search", "## Data", "## Environment"):
        assert section in md
    assert "Welch" in md and "McNemar" in md and "names per language".lower() in md.lower()
    assert "Warning" not in md  # complete search, finalized once: nothing to warn about


def test_report_html_is_self_contained(done: dict[str, Any]) -> None:
    folder = done["report"].folder
    page = (folder / "report.html").read_text(encoding="utf-8")
    # Nothing is fetched: no src= to the network (plotly.js holds href strings, links, not fetches).
    assert not re.search(r"""src\s*=\s*["']?\s*(https?:)?//""", page)
    assert not re.search(r"""<link[^>]+https?://|@import""", page)
    assert page.count('<img src="data:image/png;base64,') == len(PNGS)
    assert page.count('class="plotly-graph-div"') == 2 * len(PLOT_KINDS)
    assert len(page) > 1_000_000  # plotly.js is inline (once)
    for html_file in folder.glob("optuna_*.html"):
        text = html_file.read_text(encoding="utf-8")
        assert re.search(r"""<script[^>]*\ssrc=["']plotly\.min\.js["']""", text), html_file.name
        assert not re.search(r"""src\s*=\s*["']?https?://""", text), html_file.name


def test_dashboard_note_and_graphs_are_in_each_study(done: dict[str, Any]) -> None:
    import optuna_dashboard

    campaign = done["campaign"]
    md = (done["report"].folder / "report.md").read_text(encoding="utf-8")
    table_header = next(line for line in md.splitlines() if line.startswith("| Model | Accuracy"))
    for model, study in campaign.studies.items():
        note = optuna_dashboard.get_note(study)
        assert table_header in note and "test evaluations recorded" in note, model
        assert "![" not in note  # images live in the report folder, not in the storage
        attrs = study._storage.get_study_system_attrs(study._study_id)
        for kind in PLOT_KINDS:
            assert any(k.startswith(f"dashboard:plot_data:report-{kind}:") for k in attrs), (model, kind)
    assert sorted(done["report"].dashboard_studies) == sorted(s.study_name for s in campaign.studies.values())


def test_report_again_is_idempotent_and_never_evaluates_test(
    done: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = done["campaign"]
    folder = done["report"].folder
    before = {name: (folder / name).read_bytes() for name in ("report.md", "report.json", *PNGS)}
    trials_before = _final_trials(campaign)

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the report trained or evaluated a model")

    monkeypatch.setattr(finalize, "train_params", forbidden)
    monkeypatch.setattr(finalize, "split_metrics", forbidden)
    monkeypatch.setattr(finalize, "finalize_work", forbidden)
    again = write_report(campaign)
    assert again.result is not None and again.result.audit_count == done["finalized"].audit_count
    assert again.result.evaluated_now == 0
    assert _final_trials(campaign) == trials_before
    for name, data in before.items():
        assert (folder / name).read_bytes() == data, f"{name} changed on a second run"


def test_a_failed_write_leaves_the_previous_report_intact(
    done: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = done["report"].folder
    previous = "# the previous report\n"
    (folder / "report.md").write_text(previous, encoding="utf-8")
    real_write = report._write_file

    def disk_full(tmp: Path, data: bytes) -> None:
        if tmp.name.startswith(".report.md."):
            with open(tmp, "wb") as handle:
                handle.write(data[: len(data) // 2])  # half written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(tmp, data)

    monkeypatch.setattr(report, "_write_file", disk_full)
    with pytest.raises(MlRnnNamesError, match=r"No space left on device.*previous file is left intact"):
        write_report(done["campaign"], dashboard=False)
    assert (folder / "report.md").read_text(encoding="utf-8") == previous
    assert not list(folder.glob(".*.tmp"))
    monkeypatch.setattr(report, "_write_file", real_write)
    write_report(done["campaign"], dashboard=False)
    assert (folder / "report.md").read_text(encoding="utf-8").startswith("# Campaign `tiny`")


def test_cli_report(done: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    config = done["campaign"].config
    code = main(["report", str(done["path"]), "--storage", config.storage, "--no-dashboard"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"report written to {config.study_dir / 'report'}/" in out
    assert "test evaluations recorded: 6 (0 in this run)" in out


@pytest.mark.slow
def test_report_before_finalize_and_after_allow_incomplete(tmp_path: Path, tiny_data_dir: Path) -> None:
    """Before finalize: search and data only, a clear warning, no finalize study created. After a
    finalize with --allow-incomplete: the warning stays, even once the search is complete."""
    campaign = _campaign(_write_campaign(tmp_path, tiny_data_dir, "partial", seeds="[1, 2]"))
    campaign.run(workers=1, max_trials=3)  # RNN slots 0-1, LSTM slot 0: LSTM is 1/2
    first = write_report(campaign)
    md = (first.folder / "report.md").read_text(encoding="utf-8")
    assert not first.finalized and first.finalize_missing == "finalize has not run"
    assert "**Not finalized**" in md and "ml-rnn-names finalize" in md
    assert "the search is incomplete (LSTM 1/2 COMPLETE trials)" in md
    assert not (first.folder / "confusion_matrices.png").exists()
    assert (first.folder / "search_val_loss.png").exists()
    names = optuna.get_all_study_names(campaign.storage_url)
    assert not [n for n in names if n.endswith("/finalize")]  # reading never creates studies

    finalize.finalize_campaign(campaign, allow_incomplete=True)
    campaign.run(workers=1)  # the search completes after finalize
    second = write_report(campaign)
    md = (second.folder / "report.md").read_text(encoding="utf-8")
    assert second.finalized and (second.folder / "confusion_matrices.png").exists()
    assert "finalize ran with --allow-incomplete (LSTM had 1 of 2 search trials COMPLETE)" in md
    assert "RNN had" not in md


def test_markdown_and_html_render_the_same_blocks() -> None:
    doc = report._Doc()
    doc.h(2, "A <title>")
    doc.p("Run `a | b` and **look** at [it](x.html).")
    doc.table(["Name", "n"], [["x|y", 3], ["<b>", 4]], "lr")
    doc.ul(["one", "two"])
    md = doc.markdown()
    assert "## A <title>" in md
    assert "| x\\|y | 3 |" in md and "|---|---:|" in md
    page = doc.html("t", {}, {})
    assert '<h2 id="a-title">A &lt;title&gt;</h2>' in page
    assert "<code>a | b</code>" in page and "<strong>look</strong>" in page
    assert '<a href="x.html">it</a>' in page
    assert '<td class="r">3</td>' in page and "<td>&lt;b&gt;</td>" in page
    assert "<li>one</li><li>two</li>" in page
