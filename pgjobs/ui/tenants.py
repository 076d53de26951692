"""The operator's tenant switch: a page listing the tenants, and the switch itself.

Only a session signed in with an operator token (``jobctl tokens create --operator``) sees the
page or may switch; any other token gets 403, whatever the form says. After a switch every page
and action is about the chosen tenant, and is still attributed to the operator's token (job
events name it as ``token:<id>``, audit lines as ``actor``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from pgjobs.api.audit import audit
from pgjobs.db.errors import UnknownTenant
from pgjobs.db.models import TokenScope
from pgjobs.db.tenants import get_tenant, list_tenants
from pgjobs.ui.session import switch_tenant

if TYPE_CHECKING:
    from pgjobs.ui.app import Ui


class TenantViews:
    """The tenant switcher of one dashboard."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    async def tenants(self, request: Request) -> Response:
        session = await self.ui.session_of(request)
        if session is None:
            return self.ui.pages.go("/signin")
        if not session.principal.is_operator:
            message = "only an operator token may switch tenants"
            return self.ui.pages.render("error.html", 403, session=session, message=message)
        found = await run_in_threadpool(list_tenants)
        return self.ui.pages.render("tenants.html", session=session, tenants=found)

    async def switch(self, request: Request, tenant_id: uuid.UUID) -> Response:
        session, _, refusal = await self.ui.acting(request, TokenScope.OPERATOR)
        if session is None:
            return refusal
        try:
            chosen = await run_in_threadpool(get_tenant, tenant_id)
        except UnknownTenant:
            return self.ui.pages.render(
                "error.html", 404, session=session, message="no such tenant"
            )
        await switch_tenant(session, chosen.id, chosen.slug)
        audit(
            session.principal,
            "ui.switch_tenant",
            to_tenant=chosen.id,
            home_tenant=session.home_tenant_id,
            via="ui",
        )
        return self.ui.pages.go("/overview")
