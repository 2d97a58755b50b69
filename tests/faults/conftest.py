"""Reference runs for the fault tests: the same campaign, uninterrupted, once per session.

Every fault test compares what survives a fault with these numbers, bitwise (same code, same seeds,
one thread): a resumed campaign must not merely finish, it must give the answer it would have given.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import MODELS, N_TRIALS, fault_campaign, final_results

from ml_rnn_names.study import Campaign
from ml_rnn_names.study.finalize import finalize_campaign
from storage_backends import fresh_pg_database, pg_admin_url, storage_url  # noqa: F401  (fixture)
from study_helpers import copy_sqlite, slot_results, sqlite_url


@dataclass(frozen=True)
class Reference:
    search_db: Path  # the searched campaign, before finalize (copy it; never write to it)
    search: dict[tuple[str, int], Any]  # (model, slot) → params, seed, value, losses
    final: dict[tuple[str, int], Any]  # (model, finalize seed) → test numbers


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_data_dir: Path) -> Reference:
    folder = tmp_path_factory.mktemp("fault-reference")
    Campaign.from_toml(fault_campaign(folder / "search", tiny_data_dir)).run()
    search_db = folder / "search" / "tiny.db"
    search = slot_results(sqlite_url(search_db), "tiny", MODELS, N_TRIALS)

    final_toml = fault_campaign(folder / "final", tiny_data_dir)
    copy_sqlite(search_db, folder / "final" / "tiny.db")
    finalize_campaign(Campaign.from_toml(final_toml))
    final = final_results(sqlite_url(folder / "final" / "tiny.db"))
    assert len(final) == len(MODELS) * 2
    return Reference(search_db, search, final)


@pytest.fixture
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """``storage_url`` for tests that pick their (backend, case) pairs themselves: parametrize it
    indirectly with ``"sqlite"`` or ``"postgresql"`` (mark the latter ``postgres``)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "studies.db")
        return
    with fresh_pg_database(pg_admin_url()) as url:
        yield url
