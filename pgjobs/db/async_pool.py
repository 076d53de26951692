"""The asyncio side's connections: one psycopg ``AsyncConnectionPool`` per event loop.

``pgjobs.aio`` and the HTTP API run the same plans as the threaded producer
(pgjobs/db/statements.py) on these connections. They are set up like the threaded engine's
(pgjobs/db/engine.py): autocommit (each statement is its own transaction, as the state machine
wants), the same statement timeout and ``enable_seqscan = off``, timestamps past Python's range
readable. A pool belongs to the loop that opened it and to this process (a forked child or
another loop gets its own); nothing connects before the first use.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgjobs.db.engine import connection_options
from pgjobs.db.errors import wrap_db_errors
from pgjobs.db.timestamps import use_bounded_loader
from pgjobs.services.locate import database_url
from pgjobs.settings import get_settings

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[int, AsyncConnectionPool]] = (
    weakref.WeakKeyDictionary()
)
_opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    use_bounded_loader(conn)


async def connect_one() -> psycopg.AsyncConnection[Any]:
    """A connection of its own, outside the pool, set up like the pool's (a long-lived
    reader such as the event feed holds one for the life of the process)."""
    settings = get_settings()
    with wrap_db_errors():
        conn = await psycopg.AsyncConnection.connect(
            database_url(settings), autocommit=True, **connection_options(settings)
        )
    await _configure(conn)
    return conn


async def get_pool() -> AsyncConnectionPool:
    """This loop's pool, opened on first use."""
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is not None and found[0] == os.getpid():
        return found[1]
    lock = _opening.setdefault(loop, asyncio.Lock())
    async with lock:
        found = _pools.get(loop)
        if found is not None and found[0] == os.getpid():
            return found[1]
        settings = get_settings()
        pool = AsyncConnectionPool(
            database_url(settings),
            min_size=1,
            max_size=settings.db_pool_size + settings.db_max_overflow,
            kwargs={"autocommit": True, **connection_options(settings)},
            configure=_configure,
            open=False,
            name="pgjobs-aio",
        )
        with wrap_db_errors():
            await pool.open()
        _pools[loop] = (os.getpid(), pool)
        return pool


@asynccontextmanager
async def connection() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection in autocommit; driver errors leave as ``db.errors`` types."""
    pool = await get_pool()
    with wrap_db_errors():
        async with pool.connection() as conn:
            yield conn


async def close_pool() -> None:
    """Close this loop's pool (the next use opens a new one)."""
    loop = asyncio.get_running_loop()
    found = _pools.pop(loop, None)
    if found is not None and found[0] == os.getpid():
        await found[1].close()
