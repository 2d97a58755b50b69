"""The seed notebook runs unchanged against the package (shrunk to seconds), and the real data loads.

The notebook is ``shared/seed/comparison_notebook.md``, beside this repository: markdown with code
cells introduced by ``In [None]:`` lines. Its code is executed as written except for three things:
IPython magics are dropped, ``CONFIG`` is shrunk right after its cell runs, and the final evaluation
uses two seeds instead of three.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from ml_rnn_names.data import load_splits

NOTEBOOK = Path(__file__).resolve().parents[2] / "shared" / "seed" / "comparison_notebook.md"

_CELL_MARKER = re.compile(r"^In \[[^\]]*\]:\s*$")
_HEADING = re.compile(r"^#{1,6} \S")
_SEEDS_LINE = "seeds = [42, 123, 456]"


def parse_code_cells(text: str) -> list[str]:
    """The code cells of a notebook exported as markdown, in order, magics removed.

    A cell starts after an ``In [...]:`` line and ends at the next such line or at the first markdown
    heading with a blank line on both sides, whichever comes first. A column-0 comment that opens a
    cell (``# Configuration``) has code right below it, so it is not taken for a heading. Every cell
    must parse as Python, so a parser mistake fails loudly instead of executing prose.
    """
    lines = text.splitlines()
    cells: list[str] = []
    current: list[str] | None = None
    for i, line in enumerate(lines):
        if _CELL_MARKER.match(line):
            if current is not None:
                cells.append("\n".join(current))
            current = []
            continue
        if current is None:
            continue
        previous_blank = i > 0 and not lines[i - 1].strip()
        next_blank = i + 1 >= len(lines) or not lines[i + 1].strip()
        if _HEADING.match(line) and previous_blank and next_blank:
            cells.append("\n".join(current))
            current = None
            continue
        if not line.lstrip().startswith("%"):  # IPython magics (%load_ext, %autoreload)
            current.append(line)
    if current is not None:
        cells.append("\n".join(current))
    cells = [cell.strip("\n") + "\n" for cell in cells if cell.strip()]
    for number, cell in enumerate(cells, start=1):
        try:
            ast.parse(cell)
        except SyntaxError as exc:
            raise AssertionError(f"notebook code cell {number} does not parse ({exc}):\n{cell}") from None
    return cells


@pytest.fixture
def notebook_cells(skip_or_fail: Callable[[str], None]) -> list[str]:
    if not NOTEBOOK.is_file():
        skip_or_fail(f"seed notebook not found at {NOTEBOOK}")
    return parse_code_cells(NOTEBOOK.read_text(encoding="utf-8"))


def test_parser_finds_every_code_cell_and_no_prose(notebook_cells: list[str]) -> None:
    text = NOTEBOOK.read_text(encoding="utf-8")
    assert len(notebook_cells) == sum(bool(_CELL_MARKER.match(line)) for line in text.splitlines())
    joined = "\n".join(notebook_cells)
    assert "%autoreload" not in joined and "%load_ext" not in joined
    assert "## " not in joined  # no markdown heading leaked into code
    assert "Run random search for each model type" not in joined
    assert notebook_cells[0].lstrip().startswith("import torch")
    assert any(cell.startswith("# Configuration\nCONFIG = {") for cell in notebook_cells)


def test_parser_on_a_small_document() -> None:
    text = (
        "# Title\n\nProse.\n\nIn [None]:\n%matplotlib inline\n# Setup\nx = 1\n\ny = x + 1\n\n"
        "## Results\n\nMore prose, not code.\n\nIn [None]:\nprint(y)\n"
    )
    assert parse_code_cells(text) == ["# Setup\nx = 1\n\ny = x + 1\n", "print(y)\n"]


def test_notebook_runs_end_to_end_on_tiny_data(notebook_cells, tiny_data_dir: Path, monkeypatch, capsys):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("ML_RNN_NAMES_DATA", str(tiny_data_dir))
    monkeypatch.setenv("ML_RNN_NAMES_DEVICE", "cpu")
    assert sum(cell.count(_SEEDS_LINE) for cell in notebook_cells) == 1, f"expected one {_SEEDS_LINE!r}"

    namespace: dict[str, object] = {"__name__": "__notebook__"}
    shrunk = False
    try:
        for cell in notebook_cells:
            exec(compile(cell.replace(_SEEDS_LINE, "seeds = [42, 123]"), "<notebook>", "exec"), namespace)
            if "CONFIG = {" in cell:
                config = namespace["CONFIG"]
                config["n_trials"] = 2
                config["param_ranges"].update(hidden_size=[8], n_epoch=[1], n_batch_size=[64])
                config["lstm_extra_params"]["num_layers"] = [2]
                shrunk = True
    finally:
        plt.close("all")
    assert shrunk, "no cell defines CONFIG"
    out = capsys.readouterr().out

    assert f"Loaded 120 names in 4 classes from {tiny_data_dir}" in out
    assert "FINAL RESULTS (Test Set)" in out
    for model_type in ("RNN", "LSTM"):
        assert re.search(
            rf"^{model_type} +\d+\.\d% \+/- \d+\.\d% +\d+\.\d{{4}} \+/- \d+\.\d{{4}}", out, re.M
        ), out
        assert f"Evaluating {model_type} with 2 seeds..." in out
        assert len(namespace["final_results"][model_type]["models"]) == 2

    # The seed's bug: train() reseeded the global RNG, so trial 2 sampled trial 1's config again.
    sections = re.split(r"Searching hyperparameters for (RNN|LSTM)", out)
    searched = dict(zip(sections[1::2], sections[2::2], strict=True))
    assert set(searched) == {"RNN", "LSTM"}
    for model_type, section in searched.items():
        trials = re.findall(r"^Trial (\d)/2: .*lr=([0-9.]+).*$", section, re.M)
        assert [number for number, _ in trials] == ["1", "2"], section
        assert trials[0][1] != trials[1][1], f"{model_type}: both trials sampled lr={trials[0][1]}"
    assert "layers=2" in searched["LSTM"]


def test_the_real_data_loads_and_reports_its_flaws(real_data_dir: Path) -> None:
    splits = load_splits(real_data_dir, include_test=False)
    summary = splits.summary
    assert summary["lines_read"] == 20074
    assert len(splits.labels) == 18 and splits.labels[0] == "Arabic" and splits.labels[-1] == "Vietnamese"
    assert summary["names_kept"] == 20074
    russian = dict(summary["most_repeated_per_label"]["Russian"])
    # 23 exact lines, plus 'To The First\xa0 Page' whose no-break space folds away.
    assert russian.get("To The First Page") == 24, summary["most_repeated_per_label"]["Russian"]
    assert summary["duplicate_lines_within_class"] > 0 and summary["names_under_several_labels"] > 0
    assert summary["split_sizes"] == {"train": 14052, "val": 3011, "test": 3011}
