"""``credential_check``: ask the credential's provider whether it accepts the key.

=========  ==================================  =========================================
provider   request                             auth
=========  ==================================  =========================================
openai     GET {openai_base_url}/models        ``Authorization: Bearer <key>``
cfbd       GET {cfbd_base_url}/info            ``Authorization: Bearer <key>``
espn       GET {espn_base_url}/scoreboard      ``X-API-Key: <key>`` (a stand-in, see docs)
custom     -                                   PermanentError: nothing to call
=========  ==================================  =========================================

2xx records ``valid``, 401/403 records ``invalid`` (both are successful jobs); 408/425/429/5xx
and connection failures are retried; any other status fails the job and records nothing.

:func:`provider_credential` and :func:`credential_secret` are shared by the handlers that call a
provider with a credential.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pgjobs.db.models import CredentialStatus, Provider
from pgjobs.db.schemas.credential import CredentialRead
from pgjobs.producer.builtin_types import CredentialCheckPayload, credential_check
from pgjobs.settings import Settings, get_settings
from pgjobs.vault import credentials
from pgjobs.worker.context import JobContext
from pgjobs.worker.errors import PermanentError
from pgjobs.worker.handlers import http
from pgjobs.worker.handlers.registry import handles

if TYPE_CHECKING:
    from pgjobs.worker.credentials import Plaintext


def provider_credential(
    tenant_id: uuid.UUID, credential_id: uuid.UUID, allowed: Collection[Provider]
) -> CredentialRead:
    """The tenant's credential metadata; PermanentError when missing or of another provider."""
    try:
        found = credentials.get_credential(tenant_id, credential_id)
    except credentials.CredentialNotFound:
        raise PermanentError(f"credential {credential_id} not found") from None
    if found.provider not in allowed:
        wanted = " or ".join(sorted(p.value for p in allowed))
        raise PermanentError(
            f"credential {credential_id} is a {found.provider.value} credential; "
            f"this job needs {wanted}"
        )
    return found


@contextmanager
def credential_secret(ctx: JobContext[Any], credential_id: uuid.UUID) -> Iterator[Plaintext]:
    """``ctx.credential`` with a credential deleted meanwhile reported as PermanentError."""
    try:
        with ctx.credential(credential_id) as secret:
            yield secret
    except credentials.CredentialNotFound:
        raise PermanentError(f"credential {credential_id} not found") from None


_Request = tuple[str, Callable[[str], dict[str, str]]]
"""(URL, headers built from the revealed secret)."""


def _validation_request(provider: Provider, settings: Settings) -> _Request:
    if provider is Provider.OPENAI:
        return f"{settings.openai_base_url.rstrip('/')}/models", _bearer_header
    if provider is Provider.CFBD:
        return f"{settings.cfbd_base_url.rstrip('/')}/info", _bearer_header
    if provider is Provider.ESPN:
        return f"{settings.espn_base_url.rstrip('/')}/scoreboard", _api_key_header
    raise PermanentError(f"{provider.value} credentials cannot be checked automatically")


def _bearer_header(secret: str) -> dict[str, str]:
    return {"Authorization": http.bearer(secret)}


def _api_key_header(secret: str) -> dict[str, str]:
    return {"X-API-Key": http.header_value(secret)}


@handles(credential_check)
def run(ctx: JobContext[CredentialCheckPayload]) -> dict[str, Any]:
    credential_id = ctx.payload.credential_id
    found = provider_credential(ctx.tenant_id, credential_id, tuple(Provider))
    provider = found.provider
    url, build_headers = _validation_request(provider, get_settings())
    ctx.progress(10, f"checking {provider.value} credential {found.name!r}")

    action = "credential check"
    with http.client() as client, credential_secret(ctx, credential_id) as secret:
        started = time.monotonic()
        response = http.send(
            client,
            "GET",
            url,
            provider=provider.value,
            action=action,
            headers=build_headers(secret.reveal()),
        )
        latency_ms = round((time.monotonic() - started) * 1000)

    if response.status_code in http.AUTH_FAILURE_STATUSES:
        status = CredentialStatus.INVALID
    else:
        http.check_status(response, provider=provider.value, action=action)
        status = CredentialStatus.VALID
    ctx.progress(80, f"{provider.value} answered HTTP {response.status_code}")

    try:
        credentials.mark_validated(ctx.tenant_id, credential_id, status)
    except credentials.CredentialNotFound:
        raise PermanentError(f"credential {credential_id} was deleted during the check") from None
    ctx.progress(100, f"credential is {status.value}")
    return {
        "status": status.value,
        "provider": provider.value,
        "http_status": response.status_code,
        "credential_id": str(credential_id),
        "latency_ms": latency_ms,
    }
