"""The process's SQLAlchemy engine and sessions, created on first use.

Nothing connects at import or at :func:`get_engine`: the pool opens its first connection at the
first query. Worker processes fork before that, so each process gets its own pool.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from pgjobs.db.errors import wrap_db_errors
from pgjobs.db.query_log import install_query_logging
from pgjobs.db.timestamps import read_any_timestamp
from pgjobs.services.locate import database_url, sqlalchemy_url
from pgjobs.settings import Settings, get_settings

_lock = threading.Lock()
_engine: Engine | None = None
_engine_pid: int | None = None
_sessions: sessionmaker[Session] | None = None
_autocommit_engine: Engine | None = None


def build_engine(url: str, settings: Settings | None = None, *, autocommit: bool = False) -> Engine:
    """A new engine for ``url`` with the project's pool, timeouts and query logging.

    ``autocommit``: every connection of its pool is in autocommit mode from the start, so a
    checkout costs no isolation-level switch (the state machine's hot path).

    Every connection runs with ``enable_seqscan = off``. The job tables' statements find
    their rows through indexes by design, but a prepared statement keeps the generic plan it
    got when first planned: one planned while ``content_jobs`` held a few rows (a new
    database, workers started on an empty queue) read the whole table on every claim and
    completion ever after, as the table grew, until its statistics changed (never, with
    autovacuum off). At a steady 1,076 jobs/s that cost PostgreSQL 0.76 ms per job instead of
    0.46, and latency grew without bound after 15 s (docs/performance.md). The setting only
    prices sequential scans out where an index can serve; a query with none still scans.

    Its connections read any timestamp a column holds, even past Python's year 9999
    (pgjobs/db/timestamps.py): one such row must not make every query that reads it fail.
    """
    settings = settings or get_settings()
    engine = create_engine(
        sqlalchemy_url(url),
        isolation_level="AUTOCOMMIT" if autocommit else "READ COMMITTED",
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # No pre-ping: it costs a round trip per checkout. A connection broken by a server
        # restart fails once and is invalidated with its pool (the caller retries).
        pool_recycle=1800,
        # The connection returned last is the next one out: a worker's writer keeps using one
        # connection, whose statements are prepared and planned, instead of cycling through
        # every connection the pool ever opened (each planning the big statements anew).
        pool_use_lifo=True,
        connect_args=connection_options(settings),
    )
    read_any_timestamp(engine)
    install_query_logging(
        engine, slow_ms=settings.slow_query_ms, debug=settings.log_level.upper() == "DEBUG"
    )
    return engine


def connection_options(settings: Settings) -> dict[str, Any]:
    """psycopg connection options of every pool, threaded or asyncio (see :func:`build_engine`)."""
    return {
        "options": f"-c statement_timeout={settings.db_statement_timeout_ms} -c enable_seqscan=off",
        "application_name": "pgjobs",
    }


def get_engine() -> Engine:
    """The engine of this process (rebuilt after a fork: pools must not cross processes)."""
    return _engines()[0]


def get_autocommit_engine() -> Engine:
    """The engine of :func:`autocommit` without an engine (same process rule)."""
    return _engines()[1]


def _engines() -> tuple[Engine, Engine]:
    """(transactional engine, autocommit engine), built together on first use."""
    global _engine, _engine_pid, _sessions, _autocommit_engine
    with _lock:
        if _engine is None or _autocommit_engine is None or _engine_pid != os.getpid():
            url = database_url()
            _engine = build_engine(url)
            _autocommit_engine = build_engine(url, autocommit=True)
            _engine_pid = os.getpid()
            _sessions = sessionmaker(_engine, expire_on_commit=False)
        return _engine, _autocommit_engine


def session_factory() -> sessionmaker[Session]:
    """Sessions bound to :func:`get_engine`."""
    get_engine()
    assert _sessions is not None
    return _sessions


_reset_hooks: list[Callable[[], None]] = []


def on_reset(hook: Callable[[], None]) -> None:
    """Call ``hook`` whenever :func:`reset_engine` runs (``db.held`` closes its connections)."""
    _reset_hooks.append(hook)


def reset_engine() -> None:
    """Dispose of the engine so the next use builds one from current settings (tests, CLI)."""
    global _engine, _engine_pid, _sessions, _autocommit_engine
    with _lock:
        for engine in (_engine, _autocommit_engine):
            if engine is not None:
                engine.dispose()
        _engine, _engine_pid, _sessions, _autocommit_engine = None, None, None, None
    for hook in _reset_hooks:
        hook()


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
    transaction, so its status change and its event still commit together. Without
    ``engine``, from this process's autocommit pool; with one (a caller's own engine), a
    connection of its pool switched to autocommit for the block.
    """
    with wrap_db_errors():
        if engine is None:
            with _engines()[1].connect() as conn:
                yield conn
        else:
            with engine.connect() as conn:
                yield conn.execution_options(isolation_level="AUTOCOMMIT")
