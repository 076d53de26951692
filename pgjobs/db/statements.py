"""Statements that matter, executed on the psycopg connection under SQLAlchemy's.

The state machine's transitions and the status API's hottest reads are module-level statements
built once. Executing them through SQLAlchemy costs more client CPU than the statement itself
costs the server; :func:`execute` compiles each once and runs it on the driver connection.

Calls that must work from threads and from asyncio alike (``pgjobs.producer`` and
``pgjobs.aio``) are written once, as *plans*: generators that validate their input, yield each
:class:`Step` (a statement and its parameters), receive its rows, and return the result. Only
the shell that runs a plan differs: :func:`run` on a SQLAlchemy connection, :func:`arun` on a
psycopg ``AsyncConnection``. The statements, their parameters, the reading of their rows and
the errors are the same objects on both sides.
"""

from __future__ import annotations

import contextlib
import operator
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, TypeVar

import psycopg
from psycopg.rows import RowFactory, namedtuple_row, tuple_row
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.sql import ClauseElement

from pgjobs.db.query_log import observe_query

_DIALECT = PGDialect_psycopg()  # type: ignore[no-untyped-call]
_COMPILED: dict[ClauseElement, str] = {}
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Step:
    """One statement of a plan. ``params`` given: a statement built once (module level),
    compiled once and cached. ``params`` None: a statement built for this call (a filtered
    list), which carries its own values and is compiled each time, never cached."""

    statement: ClauseElement
    params: dict[str, Any] | None = None
    tuples: bool = False
    """Rows as plain tuples, not named ones: for a step answering a row per job of a batch
    (a named tuple per row was a tenth of the client's cost of reading them)."""

    @property
    def row_factory(self) -> RowFactory[Any]:
        return tuple_row if self.tuples else namedtuple_row


Plan = Generator[Step, list[Any], T]
"""A call written once for both shells: yields steps, is sent each step's rows, returns."""


def _prepared(step: Step) -> tuple[str, dict[str, Any]]:
    """(SQL text, driver parameters) of a step."""
    if step.params is None:
        compiled = step.statement.compile(
            dialect=_DIALECT, compile_kwargs={"render_postcompile": True}
        )
        return str(compiled), dict(compiled.params)
    sql = _COMPILED.get(step.statement)
    if sql is None:
        sql = _COMPILED[step.statement] = str(step.statement.compile(dialect=_DIALECT))
    params = {k: array_literal(v) if isinstance(v, list) else v for k, v in step.params.items()}
    return sql, params


def run(conn: Connection, plan: Plan[T]) -> T:
    """Run a plan on a SQLAlchemy connection (the thread shell)."""
    return _drive(plan, lambda step: _execute_step(conn, step).fetchall())


def run_driver(conn: psycopg.Connection[Any], plan: Plan[T]) -> T:
    """Run a plan on a psycopg connection the caller holds (``db.held``): no pool, no
    SQLAlchemy per call; psycopg prepares each statement on the connection once."""
    return _drive(plan, lambda step: _execute_driver(conn, step).fetchall())


def _drive(plan: Plan[T], rows_of: Callable[[Step], list[Any]]) -> T:
    """Feed each step's rows back into the plan until it returns (the two thread shells)."""
    try:
        step = next(plan)
        while True:
            step = plan.send(rows_of(step))
    except StopIteration as done:
        result: T = done.value
        return result


async def arun(conn: psycopg.AsyncConnection[Any], plan: Plan[T]) -> T:
    """Run a plan on a psycopg ``AsyncConnection`` (the asyncio shell)."""
    try:
        step = next(plan)
        while True:
            sql, params = _prepared(step)
            started = time.perf_counter()
            cursor = conn.cursor(row_factory=step.row_factory)
            await cursor.execute(sql, params)
            rows = await cursor.fetchall()
            observe_query(sql, (time.perf_counter() - started) * 1000, cursor.rowcount)
            step = plan.send(rows)
    except StopIteration as done:
        result: T = done.value
        return result


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
    return execute_step(conn, Step(statement, params))


def execute_step(conn: Connection, step: Step) -> psycopg.Cursor[Any]:
    """:func:`execute` of a step (a state machine's ``*_step`` builder), alone on ``conn``."""
    return _execute_step(conn, step)


def _execute_step(conn: Connection, step: Step) -> psycopg.Cursor[Any]:
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        return _execute_driver(driver, step)
    except psycopg.OperationalError:
        conn.invalidate()
        raise


def _execute_driver(driver: psycopg.Connection[Any], step: Step) -> psycopg.Cursor[Any]:
    sql, params = _prepared(step)
    started = time.perf_counter()
    cursor = driver.cursor(row_factory=step.row_factory)
    cursor.execute(sql, params)
    observe_query(sql, (time.perf_counter() - started) * 1000, cursor.rowcount)
    return cursor


def run_pipelined(conn: Connection, steps: Sequence[Step]) -> list[list[Any]]:
    """Run ``steps`` as one transaction in one round trip, and return each step's rows.

    BEGIN, the steps and COMMIT go to the server together (psycopg's pipeline mode) on an
    autocommit connection, so no lock a step takes is held while the client is away. Each
    statement still takes its own snapshot when it starts (READ COMMITTED): a statement after
    an advisory lock sees everything committed before the lock was granted. On an error the
    transaction is rolled back (the server skipped the rest, COMMIT included) and the error
    raised; a broken connection is invalidated in the pool."""
    driver = conn.connection.driver_connection
    assert driver is not None
    prepared = [_prepared(step) for step in steps]
    started = time.perf_counter()
    cursors = [driver.cursor(row_factory=namedtuple_row) for _ in prepared]
    try:
        with driver.pipeline():
            driver.execute("BEGIN")
            for cursor, (sql, params) in zip(cursors, prepared, strict=True):
                cursor.execute(sql, params)
            driver.execute("COMMIT")
    except psycopg.OperationalError:
        conn.invalidate()
        raise
    except psycopg.Error:
        with contextlib.suppress(psycopg.Error):
            driver.execute("ROLLBACK")
        raise
    elapsed_ms = (time.perf_counter() - started) * 1000
    observe_query("; ".join(sql for sql, _ in prepared), elapsed_ms, cursors[-1].rowcount)
    return [cursor.fetchall() if cursor.description else [] for cursor in cursors]


def array_literal(values: list[Any]) -> str:
    """A list as PostgreSQL array text, for ``CAST(:param AS type[])``: every element quoted
    (backslash and double quote escaped), None as NULL. Building this string costs a fraction
    of psycopg's list adaptation, which inspects every element (about 3 µs each): that was a
    fifth of the producer's CPU for a batch of 1,000 jobs. A column whose elements are all the
    same object (a batch's job type, its options, a None) is written from one element."""
    if not values:
        return "{}"
    first = values[0]
    if all_same_object(values):
        return "{" + ",".join([_element(first)] * len(values)) + "}"
    if all(map(operator.is_, map(type, values), repeat(str))):
        return _text_array(values)
    return "{" + ",".join(map(_element, values)) + "}"


def all_same_object(values: list[Any]) -> bool:
    """Whether every value is the first one (``is``, checked in C): a batch's repeated type,
    options, tenant or None."""
    return all(map(operator.is_, values, repeat(values[0]))) if values else True


def _text_array(values: list[str]) -> str:
    """Strings quoted and escaped all at once rather than one by one (a batch's payloads and
    message ids): joined by NUL, which no PostgreSQL text holds; one that does is written
    element by element, and PostgreSQL refuses it as before."""
    joined = "\0".join(values)
    if joined.count("\0") != len(values) - 1:
        return "{" + ",".join(map(_element, values)) + "}"
    if '"' in joined or "\\" in joined:
        joined = joined.replace("\\", "\\\\").replace('"', '\\"')
    return '{"' + joined.replace("\0", '","') + '"}'


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    text = str(value)
    if '"' in text or "\\" in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text + '"'
