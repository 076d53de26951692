"""Logging: structlog, configured once per process that pgjobs owns; the library's loggers.

Two rules (docs/operations.md, "Logs"):

* A process pgjobs runs (a worker, ``jobctl``) calls :func:`configure_logging`: structlog events
  and the stdlib loggers (dramatiq, alembic) go to stderr, JSON in production, readable on a
  terminal. ``jobctl`` commands log warnings and errors only unless asked (``-v``, ``-vv``):
  they print their result and nothing else.
* pgjobs never configures logging in an application's process. Its modules log through
  :func:`get_logger`: while nobody configured structlog, their events go to the stdlib logger of
  the same name (``pgjobs.producer.control``, ...), so the application's ``logging`` setup decides
  what is shown (Python's default shows warnings and errors on stderr and drops the rest).
  structlog's own default would print every event to standard output, into the application's.

Correlation ids (job_id, tenant_id, message_id) travel in contextvars: bind them with
``structlog.contextvars.bind_contextvars`` and every log line of that context carries them.
Every event passes :func:`pgjobs.vault.redaction.redact_event` last before rendering, after
exceptions are formatted, so a secret can't reach a log line through a traceback either.
Tracebacks are rendered without frame locals.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import structlog
import structlog.tracebacks

from pgjobs.vault.redaction import redact_event

if TYPE_CHECKING:
    from pgjobs.settings import Settings

_configured = False

QUIET_LEVEL = logging.WARNING
"""Level of one-shot ``jobctl`` commands without ``-v``: their output is their result."""


class LibraryLogger:
    """A module's logger: structlog's when the process configured structlog, else the stdlib
    logger of the same name (see the module docstring). Decided at every call, so a process
    that configures logging after importing pgjobs gets its events as configured."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._structlog: Any = structlog.get_logger(name)
        self._stdlib: Any = None

    def __getattr__(self, method: str) -> Any:
        if structlog.is_configured():
            return getattr(self._structlog, method)
        if self._stdlib is None:
            self._stdlib = structlog.wrap_logger(
                logging.getLogger(self.name),
                processors=[
                    structlog.stdlib.filter_by_level,
                    structlog.contextvars.merge_contextvars,
                    structlog.processors.format_exc_info,
                    redact_event,
                    structlog.processors.LogfmtRenderer(key_order=["event"]),
                ],
                wrapper_class=structlog.stdlib.BoundLogger,
                cache_logger_on_first_use=True,
            )
        return getattr(self._stdlib, method)


def get_logger(name: str) -> Any:
    """The logger every pgjobs module uses (``name``: the module's, under ``pgjobs.``)."""
    return LibraryLogger(name)


def _use_json(settings: Settings) -> bool:
    if settings.log_format != "auto":
        return settings.log_format == "json"
    return settings.environment == "production" or not sys.stderr.isatty()


def level_of(settings: Settings) -> int:
    """The level ``JOBS_LOG_LEVEL`` names (INFO when it names none)."""
    return logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)


def configure_logging(
    settings: Settings | None = None, *, force: bool = False, level: int | None = None
) -> None:
    """Set up structlog and route the stdlib loggers (dramatiq, alembic) through it, at
    ``level`` (default: ``JOBS_LOG_LEVEL``)."""
    global _configured
    if _configured and not force:
        return
    if settings is None:
        from pgjobs.settings import get_settings

        settings = get_settings()
    if level is None:
        level = level_of(settings)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Any]
    if _use_json(settings):
        renderer = [
            # Tracebacks as data, never with frame locals (they can hold payloads and secrets).
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            redact_event,
            structlog.processors.JSONRenderer(),
        ]
    else:
        renderer = [
            structlog.processors.format_exc_info,
            redact_event,
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _configured = True


def cli_log_level(verbose: int, settings: Settings, *, service: bool) -> int:
    """The level of a ``jobctl`` command: ``-vv`` debug, ``-v`` info; without either, a
    long-running service (worker, maintenance) logs at ``JOBS_LOG_LEVEL`` and a one-shot
    command warnings and errors only (or less, when ``JOBS_LOG_LEVEL`` asks for less)."""
    if verbose >= 2:
        return logging.DEBUG
    if verbose == 1:
        return logging.INFO
    configured = level_of(settings)
    return configured if service else max(configured, QUIET_LEVEL)
