"""Errors as RFC 9457 problem details: the one shape every refusal of the API takes.

Each body names the typed error (``error``: the producer's or vault's exception name, e.g.
``InvalidPayload``), says what rule was broken (``detail``) and, for input, which fields
(``errors``: field paths and messages). None of them carries an offending value (a payload or
a secret may be one) or a traceback: details are written here per error type, and
validation messages are taken from pydantic without their inputs.

Status codes: 400 for a request that cannot be read (malformed JSON, a bad query parameter,
cursor or page size), 401 for any token problem (one body for all), 403 for a missing scope,
404 for anything missing or another tenant's, 409 for a state conflict, 413 for a body or
payload over its limit, 422 for a body that was read but is invalid, 429 over the rate limit,
503 when PostgreSQL or Redis cannot be reached.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pgjobs.auth.store import InvalidToken
from pgjobs.db.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    InvalidInput,
    JobsError,
    NotFound,
    UniqueViolation,
)
from pgjobs.db.storable import dotted
from pgjobs.logs import get_logger
from pgjobs.producer.errors import (
    InvalidPayload,
    InvalidTransition,
    JobNotFound,
    PayloadTooLarge,
    ProducerError,
    QuotaExceeded,
    UnknownJobType,
)
from pgjobs.schedules.errors import ScheduleExists
from pgjobs.vault.cipher import CredentialCryptoError
from pgjobs.vault.credentials import CredentialInUse

log = get_logger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:pgjobs:problem:"


class ProblemResponse(JSONResponse):
    media_type = MEDIA_TYPE


def problem(
    status: int,
    error: str,
    detail: str,
    *,
    errors: Sequence[Mapping[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    """A problem details response. ``error`` names the typed error; ``type`` is derived from
    it (``urn:pgjobs:problem:invalid-payload``)."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + _kebab(error),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "error": error,
        "detail": detail,
    }
    if errors:
        body["errors"] = list(errors)
    body.update(extra)
    return ProblemResponse(body, status_code=status, headers=dict(headers or {}))


def unauthorized() -> ProblemResponse:
    """The one answer for a missing, malformed, unknown, revoked or expired token."""
    return problem(
        401,
        "InvalidToken",
        "a valid API token is required (Authorization: Bearer <token>)",
        headers={"WWW-Authenticate": 'Bearer realm="pgjobs"'},
    )


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def field_errors(fields: Iterable[str], message: str) -> list[dict[str, str]]:
    return [{"field": field, "message": message} for field in fields]


def _prefixed(field: str, prefix: str) -> str:
    return f"{prefix}.{field}" if prefix else field


def _input_status(request: Request) -> int:
    """400 for what a GET sends (path and query), 422 for a body that was read."""
    return 400 if request.method in ("GET", "HEAD") else 422


def _batch_prefix(exc: ProducerError, request: Request) -> str:
    """Where in the request body a producer error points: ``jobs.<i>`` in a batch."""
    if exc.index is not None and request.url.path.endswith("/batch"):
        return f"jobs.{exc.index}"
    return ""


def jobs_error_response(request: Request, exc: Exception) -> ProblemResponse:  # noqa: PLR0911
    """The problem for one of our typed errors (details written per type, never str() of
    an error that could quote input)."""
    name = type(exc).__name__
    if isinstance(exc, InvalidToken):
        return unauthorized()
    if isinstance(exc, InvalidPayload):
        prefix = _prefixed("payload", _batch_prefix(exc, request))
        errors = [
            {"field": _prefixed(loc, prefix) if loc != "(payload)" else prefix, "message": msg}
            for loc, _, msg in exc.errors
        ]
        return problem(
            422, name, f"the payload does not fit job type {exc.job_type}", errors=errors
        )
    if isinstance(exc, QuotaExceeded):
        wait = max(1, math.ceil((exc.resets_at - datetime.now(UTC)).total_seconds()))
        return problem(
            429,
            name,
            "a daily quota of this tenant would be exceeded; nothing was written",
            headers={"Retry-After": str(wait)},
            resets_at=exc.resets_at.isoformat(),
            quota=exc.quota,
            job_type=exc.job_type,
            count=exc.count,
        )
    if isinstance(exc, PayloadTooLarge):
        return problem(413, name, str(exc))
    if isinstance(exc, UnknownJobType):
        field = _prefixed("type", _batch_prefix(exc, request))
        return problem(
            422,
            name,
            "no job type of that name is registered (GET /v1/job-types lists them)",
            errors=field_errors([field], "unknown job type"),
        )
    if isinstance(exc, InvalidInput):  # InvalidOption too
        prefix = _batch_prefix(exc, request) if isinstance(exc, ProducerError) else ""
        fields = [_prefixed(f, prefix) for f in exc.fields]
        return problem(
            _input_status(request), name, str(exc), errors=field_errors(fields, str(exc))
        )
    if isinstance(exc, JobNotFound | NotFound):
        return problem(404, name, f"no such {_thing(exc)}")
    conflict = _conflict(exc)
    if conflict is not None:
        return problem(409, name, conflict)
    if isinstance(exc, DatabaseUnavailable):
        return problem(503, name, "the database cannot be reached; try again later")
    if isinstance(exc, ProducerError):
        return problem(422, name, str(exc))
    log.error("api.error", error_type=name)
    return problem(500, "InternalError", "the request failed; the error was logged")


def _conflict(exc: Exception) -> str | None:
    """The detail of a 409: the resource's state or a name in use refused the change."""
    if isinstance(exc, InvalidTransition):
        return str(exc)
    if isinstance(exc, ScheduleExists):
        return "another schedule of this tenant has this name"
    if isinstance(exc, UniqueViolation):
        return f"another {_thing(exc)} of this tenant has this name"
    if isinstance(exc, CredentialInUse):
        return "the credential is used by an MCP server"
    return None


def _thing(exc: Exception) -> str:
    """What a not-found or exists error is about, from its type's name."""
    name = type(exc).__name__
    for suffix in ("NotFound", "Exists"):
        name = name.removesuffix(suffix)
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()
    return words.replace("mcp", "MCP") or "resource"


async def on_jobs_error(request: Request, exc: Exception) -> ProblemResponse:
    return jobs_error_response(request, exc)


async def on_crypto_error(request: Request, exc: Exception) -> ProblemResponse:
    log.error("api.crypto_error", error_type=type(exc).__name__)
    return problem(500, "CredentialCryptoError", "the credential could not be encrypted")


async def on_validation_error(request: Request, exc: Exception) -> ProblemResponse:
    """FastAPI's own checks: malformed JSON is 400, wrong types are 400 (path, query,
    headers) or 422 (body). Locations and messages only."""
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return problem(400, "MalformedJson", "the request body is not valid JSON")
    errors = []
    in_body = False
    for p in problems:
        loc = list(p.get("loc", ()))
        where = loc.pop(0) if loc else "body"
        in_body = in_body or where == "body"
        errors.append({"field": dotted(tuple(loc)) or str(where), "message": str(p.get("msg"))})
    return problem(
        422 if in_body else 400,
        "InvalidRequest",
        "the request does not match the API's schema",
        errors=errors,
    )


async def on_http_error(request: Request, exc: Exception) -> ProblemResponse:
    """Routing's own refusals (no such path, wrong method, body too large)."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    names = {404: "NotFound", 405: "MethodNotAllowed", 413: "ContentTooLarge"}
    detail = {
        404: "no such resource",
        405: "this method is not allowed here",
        413: "the request body is over the limit for this endpoint",
    }.get(status, _TITLES.get(status, "error"))
    return problem(status, names.get(status, "HttpError"), detail, headers=exc.headers)


def on_unexpected_response(request: Request, exc: Exception) -> ProblemResponse:
    """Anything else: a 500 without a traceback (the log has it, without locals)."""
    log.error("api.unexpected", error_type=type(exc).__name__, path=request.url.path, exc_info=exc)
    return problem(500, "InternalError", "the request failed; the error was logged")


async def on_unexpected(request: Request, exc: Exception) -> ProblemResponse:
    return on_unexpected_response(request, exc)


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    JobsError: on_jobs_error,
    CredentialCryptoError: on_crypto_error,
    RequestValidationError: on_validation_error,
    HTTPException: on_http_error,
    ConfigurationError: on_jobs_error,
    Exception: on_unexpected,
}
