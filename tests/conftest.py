"""Shared fixtures: tiny deterministic names datasets, an isolated environment, a headless matplotlib.

Unit tests never read the real data or the network: every dataset here is written into a tmp folder,
and the autouse fixture points the download cache and URL at places that cannot reach the network.
"""

from __future__ import annotations

import os

# Before anything imports pyplot: figures render off-screen and plt.show() is a no-op.
os.environ["MPLBACKEND"] = "Agg"

import random
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)  # 2-core CI machines; also makes CPU float results repeatable

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
#: The real data's location, captured before the autouse fixture clears the variable for each test.
_REAL_DATA_ENV = os.environ.get("ML_RNN_NAMES_DATA")

#: Four labels with distinct syllables, so a model can learn a little in one epoch.
TINY_SYLLABLES: dict[str, list[str]] = {
    "Alpha": ["ka", "ko", "ri", "to", "mi"],
    "Beta": ["ov", "sky", "in", "ev", "enko"],
    "Gamma": ["son", "ley", "ton", "ham", "ford"],
    "Delta": ["ez", "ar", "los", "ino", "ella"],
}
TINY_PER_LABEL = 30


def tiny_names(label: str, n: int = TINY_PER_LABEL, *, syllables: list[str] | None = None) -> list[str]:
    """``n`` distinct, deterministic ASCII names for ``label`` (seeded by the label's text)."""
    syllables = syllables or TINY_SYLLABLES[label]
    rng = random.Random(f"tiny-{label}")
    names: list[str] = []
    while len(names) < n:
        name = (rng.choice("BCDFGHKLMNPRST") + "".join(rng.choices(syllables, k=rng.randint(1, 3)))).title()
        if name not in names:
            names.append(name)
    return names


def write_names_dir(folder: Path, files: dict[str, Iterable[str] | bytes]) -> Path:
    """Write ``<label>.txt`` files (lines joined by ``\\n`` as UTF-8, or raw bytes) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for label, content in files.items():
        path = folder / f"{label}.txt"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text("".join(f"{line}\n" for line in content), encoding="utf-8")
    return folder


def tiny_files(per_label: int = TINY_PER_LABEL) -> dict[str, list[str]]:
    return {label: tiny_names(label, per_label) for label in TINY_SYLLABLES}


def skip_or_fail(reason: str) -> None:
    """Skip locally; under ``CI=true`` a missing prerequisite is a failure, not a silent skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the developer's data/cache settings, and an accidental download fails offline."""
    monkeypatch.delenv("ML_RNN_NAMES_DATA", raising=False)
    monkeypatch.delenv("ML_RNN_NAMES_DEVICE", raising=False)
    monkeypatch.setenv("ML_RNN_NAMES_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("ML_RNN_NAMES_DATA_URL", "file:///nonexistent/ml-rnn-names-tests/data.zip")


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 labels × 30 distinct names (120 → split 84/18/18). Shared by the session: do not modify."""
    return write_names_dir(tmp_path_factory.mktemp("tiny") / "names", tiny_files())


@pytest.fixture
def make_names_dir(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_names_dir({label: lines or bytes}, name="names")`` → ``tmp_path / name``."""

    def make(files: dict[str, Iterable[str] | bytes], name: str = "names") -> Path:
        return write_names_dir(tmp_path / name, files)

    return make


@pytest.fixture(name="tiny_names")
def tiny_names_fixture() -> Callable[..., list[str]]:
    """:func:`tiny_names` for test modules (they do not import conftest: its module name is ambiguous)."""
    return tiny_names


@pytest.fixture(name="tiny_files")
def tiny_files_fixture() -> Callable[..., dict[str, list[str]]]:
    """:func:`tiny_files`: ``{label: names}`` of the tiny dataset, a fresh copy per call."""
    return tiny_files


@pytest.fixture(name="skip_or_fail")
def skip_or_fail_fixture() -> Callable[[str], None]:
    """:func:`skip_or_fail` for test modules (they do not import conftest)."""
    return skip_or_fail


@pytest.fixture
def real_data_dir() -> Path:
    """The real tutorial data ($ML_RNN_NAMES_DATA or ../shared/data/names); skipped when absent."""
    folder = Path(_REAL_DATA_ENV) if _REAL_DATA_ENV else SHARED / "data" / "names"
    if not folder.is_dir():
        skip_or_fail(f"real names data not found at {folder} (set ML_RNN_NAMES_DATA)")
    return folder
