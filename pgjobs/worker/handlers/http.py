"""The one HTTP client every handler uses, and how its failures map to retry or fail.

* :func:`client` builds an ``httpx.Client`` with the timeout from settings
  (``JOBS_HTTP_TIMEOUT_SECONDS``) and redirects off: a provider answering with a redirect is
  reported, never followed with a credential attached.
* :func:`send` performs one request and turns transport failures (timeouts, refused or dropped
  connections) into :class:`ProviderUnavailable`, which the runtime retries with backoff.
* :func:`check_status` turns an HTTP status into the same split: 2xx passes; 408, 425, 429 and
  5xx are :class:`ProviderUnavailable` (retry); any other status is :class:`PermanentError`.
* :func:`bearer`, :func:`basic` and :func:`header_value` build a header value from a revealed
  secret, refusing one that is not a legal header value *before* httpx could echo it in an error.

Every message names the provider, the action and the status code, never a response body (bodies
can echo the request's headers) and never a header value.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx

from pgjobs.db.errors import JobsError
from pgjobs.settings import get_settings
from pgjobs.worker.errors import PermanentError

RETRYABLE_STATUSES = frozenset({408, 425, 429})
"""4xx answers that mean "not now" rather than "never": retried like 5xx."""
AUTH_FAILURE_STATUSES = frozenset({401, 403})
"""The provider refused the credential itself."""

_HEADER_SAFE = re.compile(r"^[\x21-\x7e]+$")
"""Visible ASCII, no spaces or control characters: what a token may contain."""


class ProviderUnavailable(JobsError):
    """A provider or server could not answer now (timeout, connection error, 429, 5xx).

    Not a :class:`PermanentError`, so the runtime retries the job with backoff.
    """


def client(*, base_url: str = "", headers: dict[str, str] | None = None) -> httpx.Client:
    """A client with the configured timeout; use it in a ``with`` block."""
    timeout = get_settings().http_timeout_seconds
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
    )


def send(
    http_client: httpx.Client, method: str, url: str, *, provider: str, action: str, **kwargs: Any
) -> httpx.Response:
    """One request; transport failures become ProviderUnavailable or PermanentError.

    The message carries the exception's class name only: some httpx errors (an illegal header
    value, for one) quote the request's headers, which may hold the credential.
    """
    try:
        return http_client.request(method, url, **kwargs)
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise ProviderUnavailable(f"{provider}: {action} failed ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        # LocalProtocolError, UnsupportedProtocol, InvalidURL...: the request itself is wrong.
        raise PermanentError(
            f"{provider}: {action} could not be sent ({type(exc).__name__})"
        ) from None


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUSES


def check_status(response: httpx.Response, *, provider: str, action: str) -> None:
    """Pass a 2xx; raise ProviderUnavailable (retry) or PermanentError (fail) otherwise."""
    status = response.status_code
    if 200 <= status < 300:
        return
    message = f"{provider}: {action} returned HTTP {status}"
    if is_retryable_status(status):
        raise ProviderUnavailable(message)
    if status in AUTH_FAILURE_STATUSES:
        message += " (credential refused)"
    raise PermanentError(message)


def json_body(response: httpx.Response, *, provider: str, action: str) -> Any:
    """The response's JSON; a body that is not JSON is a provider fault (retried)."""
    try:
        return response.json()
    except ValueError:
        raise ProviderUnavailable(
            f"{provider}: {action} returned a body that is not JSON"
        ) from None


def header_value(secret: str, what: str = "the credential") -> str:
    """``secret`` itself, once checked to be a legal header value (for ``X-API-Key`` and such)."""
    if not _HEADER_SAFE.match(secret):
        raise PermanentError(
            f"{what} contains characters not allowed in an HTTP header "
            "(spaces, line breaks or non-ASCII)"
        )
    return secret


def bearer(secret: str) -> str:
    """``Bearer <secret>`` for an Authorization header."""
    return "Bearer " + header_value(secret)


def basic(secret: str) -> str:
    """``Basic base64(user:pass)`` from a secret stored as ``user:pass``."""
    user, sep, password = secret.partition(":")
    if not sep or not user:
        raise PermanentError("a basic-auth credential must be stored as 'user:password'")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in secret):
        raise PermanentError("the credential contains control characters")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
