"""The producer thread's held connection (pgjobs/db/held.py): one per thread, kept between
calls, bounded per process, and let go when its thread ends, the engine is reset or it
breaks."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from pgjobs.db import held
from pgjobs.db.engine import reset_engine
from pgjobs.db.errors import DatabaseError
from pgjobs.settings import get_settings


def _take() -> Any:
    with held.held_connection() as conn:
        if conn is not None:
            conn.execute("SELECT 1")
        return conn


def _in_thread() -> Any:
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(_take()))
    thread.start()
    thread.join()
    return got[0]


def test_a_thread_keeps_its_connection_and_others_have_their_own(db_env: str) -> None:
    mine = _take()
    assert mine is not None and _take() is mine
    theirs = _in_thread()
    assert theirs is not None and theirs is not mine
    assert theirs.closed and not mine.closed  # closed when its thread ended


def test_reset_engine_closes_held_connections(db_env: str) -> None:
    before = _take()
    reset_engine()
    assert before.closed
    after = _take()
    assert after is not None and after is not before


def test_past_the_cap_threads_use_the_pool(db_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_DB_POOL_SIZE", "1")
    monkeypatch.setenv("JOBS_DB_MAX_OVERFLOW", "0")
    get_settings.cache_clear()
    reset_engine()
    assert _take() is not None
    hold = threading.Event()
    release = threading.Event()
    seen: list[Any] = []

    def keep_one() -> None:
        seen.append(_take())
        hold.set()
        release.wait(10)

    keeper = threading.Thread(target=keep_one)
    keeper.start()
    hold.wait(10)
    release.set()
    keeper.join()
    assert seen == [None]  # the main thread holds the only one


def test_a_broken_connection_is_dropped(db_env: str) -> None:
    first = _take()
    with psycopg.connect(db_env, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first.info.backend_pid,))
    with pytest.raises(DatabaseError), held.held_connection() as conn:
        assert conn is not None
        conn.execute("SELECT 1")
    assert _take() is not first
