"""Per-query timing on an engine: debug for every statement, warning for slow ones.

Parameters are never logged (they can hold payloads or ciphertext); the statement text is, cut
to a few hundred characters.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event

from pgjobs.logs import get_logger

log = get_logger("pgjobs.db.query")
_MAX_STATEMENT = 300


def observe_query(statement: str, duration_ms: float, rows: int) -> None:
    """Log one statement run outside SQLAlchemy's events (the state machine's hot path) by the
    same rules: a warning when slow, a debug line otherwise when debug is on."""
    from pgjobs.settings import get_settings

    settings = get_settings()
    if duration_ms >= settings.slow_query_ms:
        log.warning(
            "db.query.slow",
            statement=_clip(statement),
            duration_ms=round(duration_ms, 3),
            rows=rows,
        )
    elif settings.log_level.upper() == "DEBUG":
        log.debug("db.query", statement=_clip(statement), duration_ms=round(duration_ms, 3))


def _clip(statement: str) -> str:
    return " ".join(statement.split())[:_MAX_STATEMENT]


def install_query_logging(engine: Engine, *, slow_ms: float, debug: bool = False) -> None:
    """Attach the timing hooks to ``engine``; ``debug`` also logs every fast statement."""

    @event.listens_for(engine, "before_cursor_execute")
    def _start(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        conn.info.setdefault("query_started", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        started = conn.info["query_started"].pop()
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        if duration_ms < slow_ms and not debug:
            return
        text = _clip(statement)
        if duration_ms >= slow_ms:
            log.warning(
                "db.query.slow", statement=text, duration_ms=duration_ms, rows=cursor.rowcount
            )
        else:
            log.debug("db.query", statement=text, duration_ms=duration_ms)
