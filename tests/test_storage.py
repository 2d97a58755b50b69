"""How the SQLite storage is opened: the settings that keep several writers and a reader apart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ml_rnn_names.study.storage import open_storage


def test_every_sqlite_connection_is_wal_without_fsync_per_commit(tmp_path: Path) -> None:
    """WAL (readers never block writers) and synchronous=NORMAL on every connection the storage makes,
    including ones opened after Optuna set up the schema."""
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    for _ in range(3):
        with storage.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL (FULL is 2)
            conn.invalidate()  # the next connect() opens a new SQLite connection


def test_transactions_take_the_write_lock_when_they_begin(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE: while one of our transactions is open, another writer waits for it instead of
    both reading and then failing to upgrade to a write (SQLITE_BUSY with no wait)."""
    path = tmp_path / "study.db"
    storage = open_storage(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with storage.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1").scalar()  # a read, inside the transaction just begun
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            conn.rollback()
        other.execute("BEGIN IMMEDIATE")  # free again once ours ended
        other.execute("ROLLBACK")
    finally:
        other.close()
