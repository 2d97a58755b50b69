"""The SQLite file as the fault: read-only, in a read-only folder, corrupt or not a database at all,
deleted, moved or replaced while a run writes to it.

Each is refused with one message naming the file (``StorageError``; the CLI exits 2 without a
traceback) before or at the first write that would fail or vanish, and a file that is refused is
never modified. The test process may read the files (to compare bytes); the library never opens
them itself, only through SQLite.

Tests run as root, which ignores permission bits: "read-only" here is the policy the storage applies
to a file or folder with no write bit for anyone, on top of ``os.access``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_helpers import (
    MODELS,
    N_TRIALS,
    all_trials,
    assert_budget_after_kill,
    fault_campaign,
    search_names,
    sigkill,
    start_paused,
    tail,
    wait_for_marker,
)
from optuna.trial import TrialState

from ml_rnn_names.cli import main
from ml_rnn_names.errors import StorageError
from ml_rnn_names.study import Campaign
from ml_rnn_names.study.storage import open_storage
from study_helpers import assert_same_results, copy_sqlite, slot_results, sqlite_url


def files_of(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative name → SHA-256): what "nothing was touched" compares."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def searched(reference, tmp_path: Path, tiny_data_dir: Path) -> Iterator[tuple[Path, Path]]:
    """A campaign folder whose ``tiny.db`` holds the finished search (a copy of the reference)."""
    folder = tmp_path / "camp"
    toml = fault_campaign(folder, tiny_data_dir)
    db = copy_sqlite(reference.search_db, folder / "tiny.db")
    yield toml, db
    for path in (folder, db):  # let pytest clean up
        if path.exists():
            path.chmod(0o755 if path.is_dir() else 0o644)


def _refused(args: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for part in expected:
        assert part in err, err
    return err


# ---------------------------------------------------------------------------------------- read-only


@pytest.mark.parametrize("command", ["run", "status", "finalize"])
def test_a_read_only_database_is_refused_untouched(
    command: str, searched: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    toml, db = searched
    before = files_of(db.parent)
    db.chmod(0o444)
    _refused([command, str(toml), "-q"], capsys, str(db), "read-only", "nothing was changed", "chmod u+w")
    assert files_of(db.parent) == before  # no -wal, -shm or .lock appeared either
    with pytest.raises(StorageError, match="read-only"):
        open_storage(sqlite_url(db))


@pytest.mark.parametrize("existing", [True, False], ids=["existing-database", "new-campaign"])
def test_a_read_only_folder_is_refused_before_sqlite_writes_there(
    existing: bool, searched: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite creates its -wal and -shm files beside the database: a read-only folder is refused
    up front, whether the database exists or would be created there."""
    toml, db = searched
    if not existing:
        db.unlink()
    before = files_of(db.parent)
    db.parent.chmod(0o555)
    _refused(["run", str(toml), "-q"], capsys, str(db.parent), "folder is read-only", "nothing was changed")
    db.parent.chmod(0o755)
    assert files_of(db.parent) == before
    assert db.exists() == existing


# ------------------------------------------------------------------------------------------ corrupt


#: kind → the corrupt bytes, made from the real database's bytes
CORRUPT = {
    "garbage": lambda real: bytes((i * 7919 + 13) % 251 for i in range(1 << 16)),
    "text": lambda real: b"[campaign]\nname = 'not a database'\n" * 50,
    "header-only": lambda real: real[:100],
    "truncated": lambda real: real[:8192],
    "zeroed-pages": lambda real: real[:4096] + b"\0" * (len(real) - 4096),
}


@pytest.mark.parametrize("kind", list(CORRUPT))
@pytest.mark.parametrize("command", ["run", "status", "finalize"])
def test_a_corrupt_database_is_refused_and_never_overwritten(
    kind: str, command: str, searched: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    toml, db = searched
    db.write_bytes(CORRUPT[kind](db.read_bytes()))  # nothing in this process has the copy open
    before = files_of(db.parent)
    err = _refused([command, str(toml), "-q"], capsys, str(db), "left untouched", "Move it aside")
    assert "file is not a database" in err or "database disk image is malformed" in err, err
    assert files_of(db.parent) == before


def test_storage_pointing_at_the_campaign_file_itself(
    searched: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A slip of the keyboard: ``--storage sqlite:///…/campaign.toml``. Refused; the TOML is intact."""
    toml, _ = searched
    before = files_of(toml.parent)
    _refused(
        ["run", str(toml), "--storage", sqlite_url(toml), "-q"], capsys, str(toml), "file is not a database"
    )
    assert files_of(toml.parent) == before


# ------------------------------------------------------------------------- deleted / moved mid-run


@pytest.mark.slow
@pytest.mark.parametrize("how", ["deleted", "moved-away", "replaced-by-backup"])
def test_database_deleted_or_replaced_mid_run_is_caught_before_the_result_is_lost(
    how: str, reference, tmp_path: Path, tiny_data_dir: Path
) -> None:
    """SQLite keeps writing into a deleted (or renamed-over) file through its open descriptors, so a
    run would "store" results nobody can read. The runner checks the file is still the one it opened
    before telling a result and before each claim: the run stops with exit 2, naming the file and the
    trial whose result it could not store. Put back (or restored from a backup), it resumes."""
    toml = fault_campaign(tmp_path, tiny_data_dir)
    db = tmp_path / "tiny.db"
    marker, log = tmp_path / "marker.json", tmp_path / "child.log"
    # paused mid-training of the 2nd trial with epochs to go: LSTM slot 0 (RNN slot 0 is COMPLETE)
    proc = start_paused("search-epoch", 1, marker, "run", toml, "-q", log=log)
    try:
        where = wait_for_marker(proc, marker, log)
        if how == "deleted":
            for suffix in ("", "-wal", "-shm"):  # rm tiny.db*, but for the lock file
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        elif how == "moved-away":
            db.rename(tmp_path / "moved.db")
        else:
            backup = copy_sqlite(db, tmp_path / "backup.db")  # a consistent copy, mid-trial
            os.replace(backup, db)
        (tmp_path / "marker.json.go").touch()
        proc.wait(timeout=120)
    finally:
        sigkill(proc)
    text = tail(log)
    assert proc.returncode == 2, text
    assert f"error: {db}: the study database was deleted or replaced during the run" in text, text
    assert f"the result of trial {where['trial']} (LSTM slot 0) could not be stored" in text, text
    assert "Traceback" not in text, text

    # nothing re-created a file at the path behind the user's back (an empty one would hide the loss)
    assert db.exists() == (how == "replaced-by-backup")
    if how == "deleted":
        Campaign.from_toml(toml).run()  # the campaign starts afresh, and gives the same answer
        killed: dict = {}
    else:
        if how == "moved-away":
            (tmp_path / "moved.db").rename(db)
        before = all_trials(sqlite_url(db), search_names())
        killed = {k: t for k, t in before.items() if t.state == TrialState.RUNNING}
        assert len(killed) == 1  # the trial whose result could not be stored: re-run as stale
        Campaign.from_toml(toml).run()
    url = sqlite_url(db)
    assert_budget_after_kill(url, search_names(), N_TRIALS, killed=killed)
    assert_same_results(slot_results(url, "tiny", MODELS, N_TRIALS), reference.search)


def test_the_file_check_is_a_no_op_for_an_unchanged_file(tmp_path: Path) -> None:
    from ml_rnn_names.study.storage import check_sqlite_file_unchanged

    db = tmp_path / "s.db"
    storage = open_storage(sqlite_url(db))
    check_sqlite_file_unchanged(storage, "nothing")  # same file: fine
    os.replace(copy_sqlite(db, tmp_path / "copy.db"), db)  # same bytes, another file: caught
    with pytest.raises(StorageError, match="deleted or replaced during the run; nothing"):
        check_sqlite_file_unchanged(storage, "nothing")
    check_sqlite_file_unchanged(object(), "not an SQLite storage")  # other backends: no-op
