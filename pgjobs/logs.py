"""structlog, configured once per process: JSON in production, readable on a terminal.

Correlation ids (job_id, tenant_id, message_id) travel in contextvars: bind them with
``structlog.contextvars.bind_contextvars`` and every log line of that context carries them.
Every event passes :func:`db.redaction.redact_event` last before rendering, after exceptions are
formatted, so a secret can't reach a log line through a traceback either. Tracebacks are
rendered without frame locals.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
import structlog.tracebacks

from pgjobs.settings import Settings, get_settings
from pgjobs.vault.redaction import redact_event

_configured = False


def _use_json(settings: Settings) -> bool:
    if settings.log_format != "auto":
        return settings.log_format == "json"
    return settings.environment == "production" or not sys.stderr.isatty()


def configure_logging(settings: Settings | None = None, *, force: bool = False) -> None:
    """Set up structlog and route the stdlib loggers (dramatiq, alembic) through it."""
    global _configured
    if _configured and not force:
        return
    settings = settings or get_settings()
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if _use_json(settings):
        tail: list[Any] = [
            # Tracebacks as data, never with frame locals (they can hold payloads and secrets).
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            redact_event,
            structlog.processors.JSONRenderer(),
        ]
    else:
        tail = [
            structlog.processors.format_exc_info,
            redact_event,
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ]
    renderer = tail
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
