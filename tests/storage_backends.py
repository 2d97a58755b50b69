"""One storage fixture over SQLite and PostgreSQL, as Optuna's own storage tests do, plus helpers.

Import what you need explicitly (``from storage_backends import storage_url, ...``): fixtures defined
here become available to a test module that imports them.

PostgreSQL comes from ``$ML_RNN_NAMES_TEST_PG_URL`` (``postgresql+psycopg://user:pass@host:port/db``,
a user allowed to ``CREATE DATABASE``; ``.ci/run`` starts such a server). Every test gets a database
of its own, dropped afterwards, so tests never see each other's studies. Without the variable the
PostgreSQL variants are skipped, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

PG_ENV = "ML_RNN_NAMES_TEST_PG_URL"
BACKENDS = ("sqlite", "postgresql")


def skip_or_fail(reason: str) -> None:
    """Skip locally; under ``CI=true`` a missing prerequisite is a failure, not a silent skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


def pg_admin_url() -> str:
    """``$ML_RNN_NAMES_TEST_PG_URL``, or skip (fail under CI) when it is unset."""
    url = os.environ.get(PG_ENV)
    if not url:
        skip_or_fail(f"PostgreSQL tests need ${PG_ENV} (see .ci/run)")
    return str(url)


def _autocommit_engine(url: str) -> sqlalchemy.engine.Engine:
    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def fresh_pg_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``admin_url``; yields its URL and drops it afterwards."""
    name = f"mlrn_test_{uuid.uuid4().hex[:12]}"
    engine = _autocommit_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sqlalchemy.exc.OperationalError as exc:
        engine.dispose()
        skip_or_fail(f"cannot reach the test PostgreSQL server: {str(exc).splitlines()[0]}")
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


def terminate_backends(url: str) -> int:
    """Kill every other connection to ``url``'s database (what a server restart does to clients).

    A role may terminate its own backends, so this needs no superuser. Returns how many it ended.
    """
    database = make_url(url).database
    engine = _autocommit_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            ).fetchall()
    finally:
        engine.dispose()
    return sum(bool(r[0]) for r in rows)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (skipped, or failed under CI, without a server)."""
    with fresh_pg_database(pg_admin_url()) as url:
        yield url


@pytest.fixture(
    params=[pytest.param(b, marks=[pytest.mark.postgres] if b == "postgresql" else []) for b in BACKENDS]
)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on every backend: a SQLite file in ``tmp_path``, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'studies.db'}"
        return
    with fresh_pg_database(pg_admin_url()) as url:
        yield url


def backend_of(url: str) -> str:
    return make_url(url).get_backend_name()


# ------------------------------------------------------------------------------------- tiny campaign

TINY_CAMPAIGN = """\
[campaign]
name = "{name}"
n_trials = {n_trials}
sampler_seed = 0
base_seed = 0
{storage_line}

[data]
dir = "{data_dir}"
split_seed = 7
validation_split = 0.15

[search]
hidden_size = {{ choices = [4, 8] }}
learning_rate = {{ low = 0.05, high = 0.3 }}
n_batch_size = {{ choices = [16, 32] }}
n_epoch = {{ choices = [{epochs}] }}

[models.RNN]

[models.LSTM.search]
num_layers = {{ choices = [1, 2] }}

[execution]
threads_per_worker = 1
heartbeat_interval = {heartbeat}
grace_period = {grace}
"""


def write_campaign(
    folder: Path,
    data_dir: Path,
    *,
    name: str = "tiny",
    n_trials: int = 3,
    storage: str | None = None,
    epochs: tuple[int, ...] = (1, 2),
    heartbeat: int = 1,
    grace: int = 4,
) -> Path:
    """A tiny two-model campaign (seconds per study) at ``folder/<name>.toml``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(
        TINY_CAMPAIGN.format(
            name=name,
            n_trials=n_trials,
            storage_line=f'storage = "{storage}"' if storage else "",
            data_dir=data_dir,
            epochs=", ".join(map(str, epochs)),
            heartbeat=heartbeat,
            grace=grace,
        ),
        encoding="utf-8",
    )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------------------- checking


def trials_by_study(url: str) -> dict[str, list[tuple[int | None, str, float | None, str | None]]]:
    """``{study name: [(slot, state, value, fail_kind), …]}`` of every study in the storage."""
    import optuna

    from ml_rnn_names.study.storage import open_storage

    storage = open_storage(url)
    try:
        out = {}
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            out[summary.study_name] = [
                (t.user_attrs.get("slot"), t.state.name, t.value, t.user_attrs.get("fail_kind"))
                for t in study.get_trials(deepcopy=False)
            ]
        return out
    finally:
        storage.remove_session()
        storage.engine.dispose()


def assert_exact_budget(url: str, study_names: list[str], n_trials: int) -> dict[str, dict[int, float]]:
    """Exactly these studies, each with one COMPLETE trial per slot; returns ``{study: {slot: value}}``."""
    table = trials_by_study(url)
    assert sorted(table) == sorted(study_names), f"studies in the storage: {sorted(table)}"
    values: dict[str, dict[int, float]] = {}
    for name, rows in table.items():
        complete = [(slot, value) for slot, state, value, _ in rows if state == "COMPLETE"]
        slots = sorted(slot for slot, _ in complete)
        assert slots == list(range(n_trials)), f"{name}: COMPLETE slots {slots}, rows {rows}"
        assert not [r for r in rows if r[1] in ("RUNNING", "WAITING")], f"{name}: unsettled trials {rows}"
        values[name] = {int(slot): float(value) for slot, value in complete}
    return values


def password_of(url: str) -> str | None:
    return make_url(url).password


def assert_no_password(text: str, *urls: str) -> None:
    for url in urls:
        password = password_of(url)
        if password:
            assert password not in text, "a storage password leaked into the output"
