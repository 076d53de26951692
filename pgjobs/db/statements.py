"""Statements that matter, executed on the psycopg connection under SQLAlchemy's.

The state machine's transitions and the status API's hottest reads are module-level statements
built once. Executing them through SQLAlchemy costs more client CPU than the statement itself
costs the server; :func:`execute` compiles each once and runs it on the driver connection.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.sql import ClauseElement

from pgjobs.db.query_log import observe_query

_DIALECT = PGDialect_psycopg()  # type: ignore[no-untyped-call]
_COMPILED: dict[ClauseElement, str] = {}


def execute(
    conn: Connection, statement: ClauseElement, params: dict[str, Any]
) -> psycopg.Cursor[Any]:
    """Execute a statement built once (a ``text()`` or Core construct) on the connection's
    psycopg connection, inside whatever transaction ``conn`` is in. Rows are named tuples.

    The hot path skips SQLAlchemy's per-call machinery (a third of the CPU per statement; see
    docs/performance.md) but keeps what it gave: the statement compiled once, a broken
    connection invalidated in the pool, slow statements logged without their parameters.
    Driver errors leave through ``db.errors.wrap_db_errors`` of the caller's context.
    """
    sql = _COMPILED.get(statement)
    if sql is None:
        sql = _COMPILED[statement] = str(statement.compile(dialect=_DIALECT))
    driver = conn.connection.driver_connection
    assert driver is not None
    params = {k: array_literal(v) if isinstance(v, list) else v for k, v in params.items()}
    started = time.perf_counter()
    try:
        cursor = driver.cursor(row_factory=namedtuple_row)
        cursor.execute(sql, params)
    except psycopg.OperationalError:
        conn.invalidate()
        raise
    observe_query(sql, (time.perf_counter() - started) * 1000, cursor.rowcount)
    return cursor  # type: ignore[no-any-return]


def array_literal(values: list[Any]) -> str:
    """A list as PostgreSQL array text, for ``CAST(:param AS type[])``: every element quoted
    (backslash and double quote escaped), None as NULL. Building this string costs a fraction
    of psycopg's list adaptation, which inspects every element (about 3 µs each): that was a
    fifth of the producer's CPU for a batch of 1,000 jobs."""
    return (
        "{"
        + ",".join(
            "NULL" if v is None else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
            for v in values
        )
        + "}"
    )
