"""Campaigns on PostgreSQL (and, where the same test makes sense, SQLite): the multi-machine setup.

What is checked: run and status on both backends through the CLI; three worker processes on PostgreSQL
give the exact budget and the same per-slot values as SQLite; bad credentials and an unreachable
server fail fast with a clear message that never shows the password; connections killed mid-campaign
are survived (transient errors retried, interrupted trials re-run) without any slot completing twice;
processes starting one campaign at once create one study per model.

PostgreSQL comes from ``$ML_RNN_NAMES_TEST_PG_URL`` (see ``storage_backends``); ``.ci/run`` starts one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from ml_rnn_names.cli import main
from ml_rnn_names.errors import MlRnnNamesError, StorageError
from ml_rnn_names.study.campaign import Campaign
from ml_rnn_names.study.storage import open_storage, redact
from storage_backends import (
    assert_exact_budget,
    assert_no_password,
    backend_of,
    free_port,
    pg_url,  # noqa: F401  (fixture)
    storage_url,  # noqa: F401  (fixture)
    terminate_backends,
    trials_by_study,
    write_campaign,
)

STUDIES = ["tiny/RNN", "tiny/LSTM"]


def test_run_and_status_on_every_backend(
    storage_url: str,  # noqa: F811
    tiny_data_dir: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    toml = write_campaign(tmp_path, tiny_data_dir, n_trials=2)
    assert main(["run", str(toml), "--storage", storage_url, "-q"]) == 0
    assert_exact_budget(storage_url, STUDIES, 2)

    # status finds the storage through the environment variable as well as --storage
    monkeypatch.setenv("ML_RNN_NAMES_STORAGE", storage_url)
    assert main(["status", str(toml), "--json"]) == 0
    out = capfd.readouterr()
    rows = json.loads(out.out[out.out.index("[") :])
    assert {r["study_name"]: (r["complete"], r["remaining"]) for r in rows} == {
        "tiny/RNN": (2, 0),
        "tiny/LSTM": (2, 0),
    }
    assert main(["status", str(toml)]) == 0
    table = capfd.readouterr()
    assert "tiny/LSTM" in table.out
    assert redact(storage_url) in table.out
    assert_no_password(out.out + out.err + table.out + table.err, storage_url)


@pytest.mark.slow
def test_finalize_report_and_stored_data_never_show_the_password(
    storage_url: str,  # noqa: F811
    tiny_data_dir: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The rest of the pipeline on both backends; the password appears in no output, no study attribute
    (which the dashboard shows) and no file written beside the campaign. The campaign file itself names
    the storage here, the riskiest place for a password to start from."""
    toml = write_campaign(tmp_path / "campaign", tiny_data_dir, n_trials=2, storage=storage_url)
    for command in ("run", "finalize", "report", "status"):
        assert main([command, str(toml), "-q"]) == 0, command
    out = capfd.readouterr()
    assert_no_password(out.out + out.err, storage_url)
    assert (tmp_path / "campaign" / "tiny" / "report").is_dir()

    storage = open_storage(storage_url)
    try:
        import optuna

        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            assert_no_password(json.dumps(summary.user_attrs, default=str), storage_url)
            study_id = storage.get_study_id_from_name(summary.study_name)
            for trial in storage.get_all_trials(study_id, deepcopy=False):
                attrs = json.dumps([trial.user_attrs, trial.system_attrs], default=str)
                assert_no_password(attrs, storage_url)
            assert_no_password(json.dumps(storage.get_study_system_attrs(study_id), default=str), storage_url)
    finally:
        storage.engine.dispose()
    for path in (tmp_path / "campaign" / "tiny").rglob("*"):
        if path.is_file():
            assert_no_password(path.read_bytes().decode("utf-8", "replace"), storage_url)


@pytest.mark.postgres
@pytest.mark.slow
def test_three_workers_on_postgres_exact_budget_and_sqlite_values(
    pg_url: str,  # noqa: F811
    tiny_data_dir: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    n_trials = 4
    toml = write_campaign(tmp_path, tiny_data_dir, n_trials=n_trials, epochs=(2, 3))
    sqlite_url = f"sqlite:///{tmp_path / 'reference.db'}"
    Campaign.from_toml(toml, storage=sqlite_url).run(workers=1)
    reference = assert_exact_budget(sqlite_url, STUDIES, n_trials)

    summary = Campaign.from_toml(toml, storage=pg_url).run(workers=3)
    assert summary.exit_codes == [0, 0, 0]
    values = assert_exact_budget(pg_url, STUDIES, n_trials)
    # slot k trains the same params with the same seed, whatever the backend or worker count
    assert values == reference
    failures = [r for rows in trials_by_study(pg_url).values() for r in rows if r[1] == "FAIL"]
    assert failures == [], "no trial should fail (a duplicate claim would show up here)"
    with capfd.disabled():
        print(
            f"\n[postgres] 3 workers: {2 * n_trials} trials (budget {n_trials} per model), "
            f"wall {summary.wall_time_s:.1f}s"
        )
    assert_no_password(capfd.readouterr().err, pg_url)


@pytest.mark.postgres
def test_bad_credentials_and_unreachable_server_fail_fast_without_password(
    pg_url: str,  # noqa: F811
    tiny_data_dir: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    wrong = make_url(pg_url).set(password=f"wrong-{uuid.uuid4().hex}").render_as_string(hide_password=False)
    port = free_port()  # nothing listens there
    unreachable = make_url(pg_url).set(port=port).render_as_string(hide_password=False)

    started = time.perf_counter()
    with pytest.raises(StorageError) as bad_password:
        open_storage(wrong)
    assert time.perf_counter() - started < 5
    message = str(bad_password.value)
    assert "password authentication failed" in message
    assert "***" in message
    assert_no_password(message, wrong, pg_url)

    started = time.perf_counter()
    with pytest.raises(StorageError) as refused:
        open_storage(unreachable)
    assert time.perf_counter() - started < 15
    assert "refused" in str(refused.value).lower()
    assert_no_password(str(refused.value), unreachable)

    # the same through the CLI: one line, exit 2, no traceback, no password
    toml = write_campaign(tmp_path, tiny_data_dir, n_trials=1)
    capfd.readouterr()
    for command in ("status", "run", "dashboard"):
        assert main([command, str(toml), "--storage", wrong, "-q"]) == 2
    out = capfd.readouterr()
    assert out.err.count("error: ") == 3, out.err
    assert "Traceback" not in out.err
    assert_no_password(out.out + out.err, wrong, pg_url)


@pytest.mark.postgres
@pytest.mark.slow
def test_connections_killed_mid_campaign_are_survived_without_duplicates(
    pg_url: str,  # noqa: F811
    tiny_data_dir: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """What a PostgreSQL restart does to its clients, done to every connection of the campaign's database
    while trials run: workers retry with bounded backoff, re-run the trials they lost, and finish; or,
    at worst, fail loudly and finish on the next run. Either way no slot is stored twice."""
    n_trials = 3
    toml = write_campaign(tmp_path, tiny_data_dir, n_trials=n_trials, epochs=(25, 30))
    campaign = Campaign.from_toml(toml, storage=pg_url)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["summary"] = campaign.run(workers=2)
        except MlRnnNamesError as exc:  # "fail loudly": a clear error, the rest resumable
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    probe = sqlalchemy.create_engine(pg_url, poolclass=sqlalchemy.pool.NullPool)
    kills = 0
    try:
        while thread.is_alive() and kills < 3:
            try:
                with probe.connect() as conn:
                    running_with_curve = conn.exec_driver_sql(
                        "SELECT count(DISTINCT t.trial_id) FROM trials t JOIN trial_intermediate_values v "
                        "ON v.trial_id = t.trial_id WHERE t.state = 'RUNNING'"
                    ).scalar()
            except sqlalchemy.exc.ProgrammingError:  # tables not created yet
                running_with_curve = 0
            if running_with_curve:  # a trial is mid-training: pull the rug
                kills += terminate_backends(pg_url) > 0
                time.sleep(1.0)
            time.sleep(0.05)
    finally:
        thread.join(timeout=120)
        probe.dispose()
    assert not thread.is_alive()
    assert kills >= 1, "the campaign finished before a connection could be killed mid-trial"
    if "error" in outcome:
        Campaign.from_toml(toml, storage=pg_url).run(workers=1)  # resume
    assert_exact_budget(pg_url, STUDIES, n_trials)
    rows = [r for rows in trials_by_study(pg_url).values() for r in rows]
    # every failure is a storage / interruption / stale one that re-ran, never an "error" that counts
    assert {kind for _, state, _, kind in rows if state == "FAIL"} <= {"storage", "interrupted", "stale"}
    out = capfd.readouterr()
    assert_no_password(out.out + out.err, pg_url)
    with capfd.disabled():
        print(
            f"\n[postgres] {kills} kill(s); outcome {sorted(outcome)}; {len(rows)} trials for {2 * n_trials}"
        )


_START_TOGETHER = textwrap.dedent(
    """
    import pathlib, sys, time
    from ml_rnn_names.study.campaign import Campaign
    toml, url, folder, index = sys.argv[1:5]
    campaign = Campaign.from_toml(toml, storage=url)
    campaign.search_data  # load data before the barrier: only the storage part should race
    pathlib.Path(folder, f"ready{index}").touch()
    while not pathlib.Path(folder, "go").exists():
        time.sleep(0.01)
    campaign.run(workers=1)
    """
)


@pytest.mark.postgres
@pytest.mark.slow
def test_processes_starting_at_once_create_one_study_per_model(
    pg_url: str,  # noqa: F811
    tiny_data_dir: Path,
    tmp_path: Path,
) -> None:
    n_procs, n_trials = 4, 2
    toml = write_campaign(tmp_path, tiny_data_dir, n_trials=n_trials)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _START_TOGETHER, str(toml), pg_url, str(barrier), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n_procs)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(barrier.glob("ready*"))) < n_procs:
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), [p.communicate()[0] for p in procs]
            time.sleep(0.05)
        (barrier / "go").touch()  # the fresh database has no tables yet: creation races too
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * n_procs, "\n".join(outputs)
    assert_exact_budget(pg_url, STUDIES, n_trials)
    assert_no_password("\n".join(outputs), pg_url)


def test_storage_url_from_fixture_is_the_backend_it_claims(storage_url: str) -> None:  # noqa: F811
    """The fixture itself: SQLite files are fresh, PostgreSQL databases empty and reachable."""
    if backend_of(storage_url) == "sqlite":
        assert not Path(make_url(storage_url).database or "").exists()
    else:
        engine = sqlalchemy.create_engine(storage_url, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            tables = conn.exec_driver_sql(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).scalar()
        engine.dispose()
        assert tables == 0
