"""The admin pages: credentials (pgjobs.vault), MCP servers (pgjobs.mcp) and API tokens
(pgjobs.auth), admin scope only; and schedules (pgjobs.schedules), read with ``jobs:read``,
acted on with ``jobs:write``.

A credential's secret arrives in a password field and is never rendered back (the list shows
the vault's mask); a new token's raw value is shown once, on the page that created it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from pgjobs.api.audit import audit
from pgjobs.auth import store as tokens
from pgjobs.db.errors import JobsError
from pgjobs.db.models import Provider, TokenScope
from pgjobs.db.models.api_token import GRANTABLE_SCOPES
from pgjobs.db.schemas.credential import CredentialRead
from pgjobs.mcp import registry
from pgjobs.producer.enqueue import EnqueuedJob, enqueue
from pgjobs.schedules import api as schedules
from pgjobs.ui.session import Session
from pgjobs.vault import credentials as vault

if TYPE_CHECKING:
    from pgjobs.ui.app import Ui

T = TypeVar("T")
Form = dict[str, list[str]]
Page = Callable[..., Awaitable[Response]]


class AdminViews:
    """Credentials and tokens pages of one dashboard."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def _refused(self, session: Session | None) -> Response:
        if session is None:
            return self.ui.pages.go("/signin")
        return self.ui.pages.render("error.html", 403, message="needs a token with admin scope")

    async def _shown(
        self, request: Request, show: Callable[[Session], Awaitable[Response]]
    ) -> Response:
        """``show(session)`` for an admin's session; sign-in or 403 otherwise."""
        session = await self.ui.session_of(request)
        if session is None or not session.principal.allows(TokenScope.ADMIN):
            return self._refused(session)
        return await show(session)

    async def _listing(
        self, session: Session, template: str, error: str | None, **context: object
    ) -> Response:
        return self.ui.pages.render(
            template, 400 if error else 200, session=session, error=error, **context
        )

    async def credentials(self, request: Request) -> Response:
        return await self._shown(request, self._credentials)

    async def _credentials(self, session: Session, error: str | None = None) -> Response:
        found = await run_in_threadpool(vault.list_credentials, session.principal.tenant_id)
        providers = [p.value for p in Provider]
        return await self._listing(
            session, "credentials.html", error, credentials=found, providers=providers
        )

    async def _act(
        self, request: Request, work: Callable[[Session, Form], T], page: Page
    ) -> tuple[Session, T] | Response:
        """``work(session, form)`` in the thread pool for an admin's checked form; the refusal,
        or ``page`` with the error's text, otherwise."""
        session, form, refusal = await self.ui.acting(request, TokenScope.ADMIN)
        if session is None:
            return refusal
        try:
            return session, await run_in_threadpool(work, session, form)
        except JobsError as exc:
            return await page(session, error=str(exc))

    async def add_credential(self, request: Request) -> Response:
        done = await self._act(request, _create_credential, self._credentials)
        if isinstance(done, Response):
            return done
        session, made = done
        audit(session.principal, "credential.create", credential_id=made.id, via="ui")
        return self.ui.pages.go("/credentials")

    async def mcp_servers(self, request: Request) -> Response:
        return await self._shown(request, self._mcp_servers)

    async def _mcp_servers(self, session: Session, error: str | None = None) -> Response:
        found = await run_in_threadpool(registry.list_mcp_servers, session.principal.tenant_id)
        return await self._listing(session, "mcp.html", error, servers=found)

    async def ping_mcp_server(self, request: Request, server_id: uuid.UUID) -> Response:
        """Ping now: an ``mcp_ping`` job for the server (as ``POST /v1/mcp-servers/{id}/ping``),
        then its job page, where the ping's progress and outcome show."""
        done = await self._act(
            request, lambda session, _: _ping(session, server_id), self._mcp_servers
        )
        if isinstance(done, Response):
            return done
        session, job = done
        audit(session.principal, "mcp_server.ping", server_id=server_id, job_id=job.id, via="ui")
        return self.ui.pages.go(f"/jobs/{job.id}")

    async def tokens(self, request: Request) -> Response:
        return await self._shown(request, self._tokens)

    async def _tokens(
        self, session: Session, new_token: str | None = None, error: str | None = None
    ) -> Response:
        found = await run_in_threadpool(tokens.list_tokens, session.principal.tenant_id)
        scopes = [s.value for s in GRANTABLE_SCOPES]
        return await self._listing(
            session, "tokens.html", error, tokens=found, scopes=scopes, new_token=new_token
        )

    async def create_token(self, request: Request) -> Response:
        done = await self._act(request, _create_token, self._tokens)
        if isinstance(done, Response):
            return done
        session, made = done
        audit(session.principal, "token.create", token_id=made.record.id, via="ui")
        return await self._tokens(session, new_token=made.token)

    async def revoke_token(self, request: Request, prefix: str) -> Response:
        done = await self._act(
            request,
            lambda session, _: tokens.revoke_token(session.principal.tenant_id, prefix),
            self._tokens,
        )
        if isinstance(done, Response):
            return done
        session, revoked = done
        audit(session.principal, "token.revoke", token_id=revoked.id, via="ui")
        return self.ui.pages.go("/tokens")

    async def schedules(self, request: Request) -> Response:
        """Schedules need ``jobs:read`` to see and ``jobs:write`` to act (as the jobs pages)."""
        session = await self.ui.session_of(request)
        if session is None:
            return self.ui.pages.go("/signin")
        return await self._schedules(session)

    async def _schedules(self, session: Session, error: str | None = None) -> Response:
        page = await run_in_threadpool(schedules.list_schedules, session.principal.tenant_id)
        return await self._listing(session, "schedules.html", error, schedules=page.items)

    async def schedule_action(
        self, request: Request, schedule_id: uuid.UUID, action: str
    ) -> Response:
        session, _, refusal = await self.ui.acting(request, TokenScope.JOBS_WRITE)
        if session is None:
            return refusal
        tenant_id, actor = session.principal.tenant_id, session.principal.actor
        calls: dict[str, Callable[[], object]] = {
            "pause": lambda: schedules.pause(tenant_id, schedule_id),
            "resume": lambda: schedules.resume(tenant_id, schedule_id),
            "run-now": lambda: schedules.run_now(tenant_id, schedule_id, actor=actor),
        }
        if action not in calls:
            return self.ui.pages.render(
                "error.html", 404, session=session, message="no such action"
            )
        try:
            await run_in_threadpool(calls[action])
        except JobsError as exc:
            return await self._schedules(session, error=str(exc))
        audit(session.principal, f"schedule.{action}", schedule_id=schedule_id, via="ui")
        return self.ui.pages.go("/schedules")


def _create_credential(session: Session, form: Form) -> CredentialRead:
    return vault.create_credential(
        session.principal.tenant_id,
        provider=_one(form, "provider"),
        name=_one(form, "name"),
        secret=_one(form, "secret"),
    )


def _ping(session: Session, server_id: uuid.UUID) -> EnqueuedJob:
    tenant_id = session.principal.tenant_id
    registry.get_mcp_server(tenant_id, server_id)  # another tenant's: not found
    return enqueue(
        "mcp_ping",
        {"server_id": str(server_id)},
        tenant_id=tenant_id,
        actor=session.principal.actor,
    )


def _create_token(session: Session, form: Form) -> tokens.NewToken:
    return tokens.create_token(
        session.principal.tenant_id, name=_one(form, "name"), scopes=form.get("scope", [])
    )


def _one(form: Form, name: str) -> str:
    values = form.get(name)
    return values[0] if values else ""
