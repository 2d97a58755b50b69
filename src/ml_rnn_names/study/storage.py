"""Opening the study storage: SQLite by default, any SQLAlchemy URL Optuna accepts otherwise.

SQLite with several writers is where "database is locked" comes from (Optuna's FAQ warns about it;
optuna-dashboard#545 is the same thing with a dashboard reading). We avoid it at the source:

* the file is switched to WAL once, so readers (the dashboard, ``status``) never block writers;
* every transaction starts with ``BEGIN IMMEDIATE``: writers queue on SQLite's busy timeout instead
  of failing when a read transaction tries to upgrade to a write (``SQLITE_BUSY`` without waiting);
* a generous busy timeout, and a bounded retry around our own storage calls for what remains;
* ``synchronous=NORMAL``: in WAL mode a commit then appends to the WAL without an fsync (about half
  the cost of every Optuna write: report, user attribute, state). A killed process still loses
  nothing it committed and the file cannot be corrupted; only a power cut or an OS crash can roll
  back the last commits, and the slots they belonged to simply run again on resume.

Passwords never reach logs or messages: every URL we print goes through :func:`redact`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import optuna
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import make_url

from ml_rnn_names.errors import StorageError

log = logging.getLogger(__name__)

STORAGE_ENV = "ML_RNN_NAMES_STORAGE"
SQLITE_BUSY_TIMEOUT_S = 120
T = TypeVar("T")


def resolve_storage_url(config_url: str, override: str | None = None) -> str:
    """``--storage`` beats ``$ML_RNN_NAMES_STORAGE`` beats the campaign file (SQLite beside it)."""
    return override or os.environ.get(STORAGE_ENV) or config_url


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy understands: hide everything between ':' and '@'
        return url.split("@", 1)[-1] if "@" in url else url
    if parsed.password is None:
        return url
    return parsed.render_as_string(hide_password=True)


def redact_text(text: str, url: str) -> str:
    """Remove ``url``'s password from an arbitrary message (driver errors sometimes echo it)."""
    try:
        password = make_url(url).password
    except Exception:
        return text
    if password:
        text = text.replace(str(password), "***")
    return text


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (``None`` for other backends and in-memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _check_sqlite_file(path: Path) -> None:
    """Fail before the first write, with a message saying what is wrong and that nothing was touched."""
    folder = path.parent
    if not folder.exists():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"{folder}: cannot create the folder of the study database ({exc.strerror})"
            ) from None
    # A file or folder with no write bit for anyone is read-only on purpose: refuse it even where
    # os.access says yes (root ignores permission bits), before SQLite writes a byte.
    if path.exists() and (not os.access(path, os.R_OK | os.W_OK) or not _has_write_bit(path)):
        raise StorageError(
            f"{path}: the study database is read-only (permissions); nothing was changed. "
            "Make it writable (chmod u+w) or use --storage"
        )
    if not os.access(folder, os.W_OK) or not _has_write_bit(folder):
        raise StorageError(
            f"{folder}: folder is read-only (permissions), and SQLite needs to create its journal files "
            "there; nothing was changed. Make it writable (chmod u+w) or use --storage"
        )
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)) as conn:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.DatabaseError as exc:
        # Never read the file ourselves to sniff its header: opening and closing any descriptor of a
        # database file drops every POSIX lock this process's SQLite connections hold on it, which
        # lets another process write underneath them ("database disk image is malformed").
        hint = (
            " (corrupt, or not an SQLite file); it was left untouched. Move it aside to start afresh, "
            "or point --storage at the right file"
            if "not a database" in str(exc) or "malformed" in str(exc)
            else "; the file was left untouched"
        )
        raise StorageError(f"{path}: {exc}{hint}") from None
    if mode.lower() != "wal":
        log.warning("%s: could not switch to WAL (journal_mode=%s); concurrent readers may block", path, mode)


def _has_write_bit(path: Path) -> bool:
    return bool(os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # stat, never open: closing a descriptor would drop SQLite's locks
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def check_sqlite_file_unchanged(storage: object, what: str) -> None:
    """Raise :class:`StorageError` if the SQLite file behind ``storage`` was deleted or replaced since
    :func:`open_storage` opened it (a no-op for other backends).

    SQLite keeps writing into a deleted file's inode through its open descriptors, so without this
    check results would be "stored" where nobody can ever read them. ``what`` says what was not stored.
    """
    opened = getattr(storage, "_ml_rnn_names_sqlite_file", None)
    if opened is None:
        return
    path, identity = opened
    if _file_identity(path) != identity:
        raise StorageError(
            f"{path}: the study database was deleted or replaced during the run; {what} (SQLite would "
            "write into the deleted file, where it silently vanishes). Nothing more is written: put the "
            "file back and run again to resume"
        )


def _immediate_transactions(engine: sqlalchemy.engine.Engine) -> None:
    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: sqlalchemy.engine.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _wal_without_fsync_per_commit(engine: sqlalchemy.engine.Engine) -> None:
    """``PRAGMA synchronous=NORMAL`` on every connection (a per-connection setting; see the module
    docstring for what it trades). Connections pooled while Optuna set up the schema are dropped so
    that every later one gets it."""

    @event.listens_for(engine, "connect")
    def _synchronous_normal(dbapi_connection: sqlite3.Connection, record: object) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    engine.dispose()


def open_storage(
    url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None
) -> optuna.storages.RDBStorage:
    """An :class:`optuna.storages.RDBStorage` for ``url``, tuned for concurrent workers.

    Raises :class:`StorageError` with a clear message (password hidden) when it cannot be opened.
    """
    engine_kwargs: dict[str, object] = {}
    path = sqlite_path(url)
    if path is not None:
        _check_sqlite_file(path)
        # isolation_level=None hands transaction control to SQLAlchemy's "begin" event (BEGIN IMMEDIATE)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "isolation_level": None}}
    elif url.startswith(("postgresql", "mysql")):
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}

    def create() -> optuna.storages.RDBStorage:
        # RDBStorage creates missing tables on open, and processes doing that at once on a fresh
        # database collide: PostgreSQL "duplicate key … pg_type_typname_nsp_index", SQLite "table
        # alembic_version already exists" or "UNIQUE constraint failed: alembic_version". Serialise it
        # (on SQLite this is the campaign lock's file: never call this while holding that lock).
        serialised = path is not None or url.startswith("postgresql")
        lock = campaign_lock(url, "<schema>") if serialised else contextlib.nullcontext()
        with lock:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
            )

    try:
        storage = with_retries(create, what=f"open {redact(url)}", attempts=3)
    except StorageError:
        raise
    except Exception as exc:  # driver errors: wrong password, unknown host, corrupt file…
        message = redact_text(f"{type(exc).__name__}: {exc}".splitlines()[0], url)
        raise StorageError(f"cannot open the study storage {redact(url)}: {message}") from None
    if path is not None:
        _immediate_transactions(storage.engine)
        _wal_without_fsync_per_commit(storage.engine)
        storage._ml_rnn_names_sqlite_file = (path, _file_identity(path))  # type: ignore[attr-defined]
    return storage


def is_transient(exc: BaseException) -> bool:
    """True for errors that retrying can fix: a locked SQLite file, a lost or refused connection."""
    return _transient_cause(exc) is not None


def _transient_cause(exc: BaseException) -> BaseException | None:
    """The transient driver error in ``exc``'s chain: Optuna wraps them in StorageInternalError."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if _is_transient_driver_error(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _is_transient_driver_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError) and any(
        marker in text
        for marker in (
            "database is locked",
            "could not connect",
            "connection refused",
            "server closed the connection",
            "terminating connection",
            "connection already closed",
            "connection is closed",
            "the database system is",
            "ssl syscall",
            "consuming input failed",
        )
    )


def with_retries(
    action: Callable[[], T], *, what: str, attempts: int = 6, first_delay: float = 0.5, max_delay: float = 8.0
) -> T:
    """Run ``action``, retrying transient storage errors with bounded exponential backoff.

    After ``attempts`` tries the error is raised as :class:`StorageError` ("fail loudly").
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            cause = _transient_cause(exc)
            if cause is None:
                raise
            if attempt == attempts:
                first_line = str(cause).splitlines()[0]
                raise StorageError(
                    f"{what}: the storage kept failing after {attempts} attempts: {first_line}"
                ) from None
            log.warning(
                "%s failed (%s); retry %d/%d in %.1fs",
                what,
                str(cause).splitlines()[0],
                attempt,
                attempts - 1,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def campaign_lock(url: str, name: str) -> Iterator[None]:
    """Serialise study creation and slot bookkeeping between processes of one campaign.

    SQLite: an ``flock`` on a file beside the database. PostgreSQL: a session advisory lock.
    Elsewhere nothing (claiming stays safe; see ``runner``), so this only prevents needless work.
    """
    path = sqlite_path(url)
    if path is not None:
        lock_path = path.with_name(path.name + ".lock")
        with lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    if url.startswith("postgresql"):
        key = int.from_bytes(hashlib.sha256(f"ml_rnn_names/{name}".encode()).digest()[:8], "big", signed=True)
        engine = sqlalchemy.create_engine(
            url, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": 10}
        )

        def acquire() -> sqlalchemy.engine.Connection:
            conn = engine.connect()
            try:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            except Exception:
                with contextlib.suppress(Exception):
                    conn.close()
                raise
            return conn

        try:
            conn = with_retries(acquire, what=f"take the lock of {name}", attempts=4)
            try:
                yield
            finally:
                try:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                except Exception as exc:  # the connection is gone, and the server dropped its locks
                    log.warning("releasing the lock of %s: %s", name, str(exc).splitlines()[0])
                with contextlib.suppress(Exception):
                    conn.close()
        finally:
            engine.dispose()
        return
    yield
