"""The process's SQLAlchemy engine and sessions, created on first use.

Nothing connects at import or at :func:`get_engine`: the pool opens its first connection at the
first query. Worker processes fork before that, so each process gets its own pool.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from db.errors import wrap_db_errors
from db.query_log import install_query_logging
from db.services import database_url, sqlalchemy_url
from db.settings import Settings, get_settings

_lock = threading.Lock()
_engine: Engine | None = None
_engine_pid: int | None = None
_sessions: sessionmaker[Session] | None = None


def build_engine(url: str, settings: Settings | None = None) -> Engine:
    """A new engine for ``url`` with the project's pool, timeouts and query logging."""
    settings = settings or get_settings()
    engine = create_engine(
        sqlalchemy_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # No pre-ping: it costs a round trip per checkout. A connection broken by a server
        # restart fails once and is invalidated with its pool (the caller retries).
        pool_recycle=1800,
        connect_args={
            "options": f"-c statement_timeout={settings.db_statement_timeout_ms}",
            "application_name": "pgjobs",
        },
    )
    install_query_logging(
        engine, slow_ms=settings.slow_query_ms, debug=settings.log_level.upper() == "DEBUG"
    )
    return engine


def get_engine() -> Engine:
    """The engine of this process (rebuilt after a fork: pools must not cross processes)."""
    global _engine, _engine_pid, _sessions
    with _lock:
        if _engine is None or _engine_pid != os.getpid():
            _engine = build_engine(database_url())
            _engine_pid = os.getpid()
            _sessions = sessionmaker(_engine, expire_on_commit=False)
        return _engine


def session_factory() -> sessionmaker[Session]:
    """Sessions bound to :func:`get_engine`."""
    get_engine()
    assert _sessions is not None
    return _sessions


def reset_engine() -> None:
    """Dispose of the engine so the next use builds one from current settings (tests, CLI)."""
    global _engine, _engine_pid, _sessions
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine, _engine_pid, _sessions = None, None, None


@contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Connection]:
    """A connection in a transaction: committed on success, rolled back on error.

    Driver errors leave as :class:`db.errors.DatabaseError` subclasses.
    """
    with wrap_db_errors(), (engine or get_engine()).begin() as conn:
        yield conn


@contextmanager
def session_scope() -> Iterator[Session]:
    """An ORM session in a transaction, for the non-hot paths (seed, admin commands)."""
    with wrap_db_errors(), session_factory().begin() as session:
        yield session


@contextmanager
def autocommit(engine: Engine | None = None) -> Iterator[Connection]:
    """A connection where each statement commits by itself: one round trip per statement.

    Used for the state machine's single-statement transitions: the statement *is* the
    transaction, so its status change and its event still commit together.
    """
    with wrap_db_errors(), (engine or get_engine()).connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")
