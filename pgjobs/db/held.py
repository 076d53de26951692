"""One autocommit psycopg connection per calling thread, held between calls (the producer's
hot path).

A pool checkout and return per ``enqueue`` cost more client CPU than running the INSERT on the
driver (docs/performance.md, "Where a single enqueue's time goes"); a connection the thread
keeps costs nothing per call, and psycopg prepares the hot statements on it once. It is opened
with the options of every pool (``engine.connection_options``) and reads any timestamp, as the
pools' connections do.

Bounds: at most ``db_pool_size + db_max_overflow`` threads of a process hold one; a thread
beyond that gets None and uses the pool. A connection is closed when its thread ends, dropped
after a fork (never shared across processes), when :func:`engine.reset_engine` replaced the
process's engines (settings changed), and after a connection error (the next call opens a
new one).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine

from pgjobs.db.engine import connection_options, get_autocommit_engine, on_reset
from pgjobs.db.errors import wrap_db_errors
from pgjobs.db.timestamps import use_bounded_loader
from pgjobs.services.locate import database_url
from pgjobs.settings import get_settings

_Driver = psycopg.Connection[Any]


@dataclass(slots=True)
class _Held:
    conn: _Driver
    engine: Engine
    """The process's autocommit engine when it was opened: a new engine means new settings."""
    pid: int
    thread: threading.Thread


PLAN_CACHE_MODE = "force_generic_plan"
"""How PostgreSQL plans the prepared enqueue statements on a held connection: once, for any
parameters. Left to choose, it kept planning the multi-row INSERT for every call (0.9 ms of a
4-row statement's 2 ms; docs/performance.md), and the generic plan runs as fast at 1 to 1,000
rows: each of them is primary-key and unique-index lookups whatever the arrays hold."""

_lock = threading.Lock()
_held: dict[int, _Held] = {}  # by thread ident


class _ThreadEnd(threading.local):
    """Per-thread storage, released when its thread ends: the finalizer of the token kept
    here closes the thread's connection then, not at some later call."""

    token: _Token | None = None


class _Token:
    """Lives exactly as long as its thread's storage."""


_thread_end = _ThreadEnd()


@contextmanager
def held_connection() -> Iterator[_Driver | None]:
    """This thread's autocommit connection for the block (None: too many threads hold one;
    use the pool). Driver errors leave as ``db.errors.DatabaseError``; a connection error also
    drops the connection."""
    with wrap_db_errors():
        held = _current()
        if held is None:
            yield None
            return
        try:
            yield held.conn
        except psycopg.OperationalError:
            _drop(threading.get_ident(), held)
            raise


def close_all() -> None:
    """Close every held connection of this process (``engine.reset_engine`` calls it: the
    settings may have changed; each thread opens a new one on its next call)."""
    with _lock:
        items = list(_held.items())
        _held.clear()
    for _, held in items:
        _close(held)


def _current() -> _Held | None:
    ident = threading.get_ident()
    engine = get_autocommit_engine()  # rebuilt after a fork or a reset: the key of freshness
    held = _held.get(ident)
    fresh = held is not None and held.engine is engine and held.pid == os.getpid()
    if fresh and held is not None and not held.conn.closed:
        return held
    if held is not None:
        _drop(ident, held)
    return _open(ident, engine)


def _open(ident: int, engine: Engine) -> _Held | None:
    settings = get_settings()
    _sweep()
    with _lock:
        if len(_held) >= settings.db_pool_size + settings.db_max_overflow:
            return None
    options = connection_options(settings)
    options["options"] += f" -c plan_cache_mode={PLAN_CACHE_MODE}"
    conn = psycopg.connect(database_url(settings), autocommit=True, **options)
    use_bounded_loader(conn)
    held = _Held(conn, engine, os.getpid(), threading.current_thread())
    with _lock:
        _held[ident] = held
    token = _thread_end.token = _Token()
    weakref.finalize(token, _drop, ident, held)
    return held


def _sweep() -> None:
    """Close the connections of threads that ended, of another engine or another process."""
    pid = os.getpid()
    engine = get_autocommit_engine()
    with _lock:
        stale = [
            (ident, held)
            for ident, held in _held.items()
            if not held.thread.is_alive() or held.pid != pid or held.engine is not engine
        ]
        for ident, _ in stale:
            del _held[ident]
    for _, held in stale:
        if held.pid == pid:
            _close(held)


def _drop(ident: int, held: _Held) -> None:
    with _lock:
        if _held.get(ident) is held:
            del _held[ident]
    if held.pid == os.getpid():
        _close(held)


def _close(held: _Held) -> None:
    with contextlib.suppress(Exception):  # a broken connection: nothing to keep
        held.conn.close()


_inherited: list[_Held] = []
"""A forked child's copies of its parent's connections: kept referenced, never closed (closing
or collecting one would end the parent's session on the socket they share)."""


def _forget_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _inherited.extend(_held.values())
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)
on_reset(close_all)
