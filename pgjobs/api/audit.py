"""The log line of every change made through the API (``api.audit``): which token did what to
which resource. Enqueueing has none: the job's ``enqueued`` event names the token, and a line
per job would cost a busy API more than the event does."""

from __future__ import annotations

from pgjobs.auth.store import Principal
from pgjobs.logs import get_logger

log = get_logger(__name__)


def audit(principal: Principal, action: str, **ids: object) -> None:
    log.info(
        "api.audit",
        action=action,
        actor=principal.actor,
        tenant_id=str(principal.tenant_id),
        **{k: str(v) for k, v in ids.items()},
    )
