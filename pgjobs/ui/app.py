"""The dashboard's ASGI application: Jinja2 pages, sessions, CSRF and security headers.

Mounted by the API at ``/ui`` (pgjobs/api/app.py); a user's own ASGI app may mount
:func:`create_ui_app` as well. Pages call ``pgjobs.aio`` with the session's tenant and token
as the actor, exactly as the HTTP API does.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from pgjobs import aio
from pgjobs.api.audit import audit
from pgjobs.api.routes.streams import job_event_stream
from pgjobs.auth.store import InvalidToken, check_token, lookup_plan
from pgjobs.auth.tokens import parse_token
from pgjobs.db.async_pool import connection
from pgjobs.db.errors import JobsError
from pgjobs.db.models import JobStatus, TokenScope
from pgjobs.db.statements import arun
from pgjobs.logs import get_logger
from pgjobs.producer.errors import JobNotFound
from pgjobs.ui.filters import PageFilter
from pgjobs.ui.overview import overview_of
from pgjobs.ui.render import minute_bars, redacted_json, relative, status_bars
from pgjobs.ui.session import (
    COOKIE,
    SESSION_SECONDS,
    SIGNIN_COOKIE,
    SIGNIN_SECONDS,
    Session,
    close_session,
    csrf_ok,
    load_session,
    open_session,
)

log = get_logger(__name__)
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
PAGE_SIZE = 50


class Pages:
    """The templates and the mount path every link is built from."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape()
        )
        self.env.globals.update(
            root=self.prefix,
            relative=relative,
            statuses=list(JobStatus),
            fromtimestamp=lambda seconds: datetime.fromtimestamp(seconds, UTC),
        )

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status)

    def go(self, path: str) -> RedirectResponse:
        return RedirectResponse(f"{self.prefix}{path}", status_code=303)


async def form_of(request: Request) -> dict[str, list[str]]:
    """An urlencoded form's fields (no multipart: the dashboard sends none)."""
    return parse_qs((await request.body()).decode(), keep_blank_values=True)


class Ui:
    """The dashboard's handlers, bound to its mount path and cookie policy."""

    def __init__(self, prefix: str, secure_cookie: bool | None) -> None:
        self.prefix = prefix
        self.secure_cookie = secure_cookie
        self.pages = Pages(prefix)

    async def headers(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if not request.url.path.startswith(f"{self.prefix}/static"):
            response.headers["Cache-Control"] = "no-store"
        return response

    async def session_of(self, request: Request) -> Session | None:
        return await load_session(request.cookies.get(COOKIE))

    async def acting(
        self, request: Request, scope: TokenScope = TokenScope.JOBS_WRITE
    ) -> tuple[Session | None, dict[str, list[str]], Response]:
        """The session of a state-changing request with its form, or the refusal to send."""
        session = await self.session_of(request)
        form = await form_of(request)
        refusal: Response = Response(status_code=204)
        if session is None:
            refusal = self.pages.go("/signin")
        elif not csrf_ok(session, request.headers.get("x-csrf-token") or first(form, "csrf_token")):
            refusal = self.pages.render("error.html", 403, message="missing or wrong CSRF token")
            session = None
        elif not session.principal.allows(scope):
            refusal = self.pages.render("error.html", 403, message="this token cannot act")
            session = None
        return session, form, refusal

    async def home(self) -> Response:
        return self.pages.go("/overview")

    async def overview(self, request: Request) -> Response:
        session = await self.session_of(request)
        if session is None:
            return self.pages.go("/signin")
        counts = await aio.count_jobs_by_status(session.principal.tenant_id)
        more = await run_in_threadpool(overview_of, session.principal.tenant_id)
        return self.pages.render(
            "overview.html",
            session=session,
            counts=counts,
            chart=status_bars(counts),
            minutes=minute_bars(more.minutes),
            finished=sum(ok + failed for _, ok, failed in more.minutes),
            overview=more,
        )

    async def signin_form(self, request: Request) -> Response:
        return self._signin_page(request, 200)

    def _signin_page(self, request: Request, status: int, error: str | None = None) -> Response:
        """The sign-in form with its CSRF token: the same random value in a short-lived cookie
        and in the form (double submit), so another site cannot sign a browser in with a token
        of its choosing."""
        token = secrets.token_urlsafe(32)
        page = self.pages.render(
            "signin.html", status, session=None, error=error, signin_csrf=token
        )
        self._set_cookie(page, request, SIGNIN_COOKIE, token, SIGNIN_SECONDS)
        return page

    def _set_cookie(
        self, response: Response, request: Request, name: str, value: str, max_age: int
    ) -> None:
        """A cookie of the dashboard: HttpOnly, SameSite=Strict, its path, Secure over HTTPS
        (or as ``secure_cookie`` says)."""
        secure = request.url.scheme == "https" if self.secure_cookie is None else self.secure_cookie
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=self.prefix or "/",
            httponly=True,
            samesite="strict",
            secure=secure,
        )

    async def signin(self, request: Request) -> Response:
        form = await form_of(request)
        expected = request.cookies.get(SIGNIN_COOKIE)
        presented = first(form, "csrf_token")
        if not (expected and presented and hmac.compare_digest(expected, presented)):
            return self._signin_page(request, 403, "the sign-in form expired: try again")
        raw = first(form, "token")
        parts = parse_token(raw)
        try:
            if parts is None:
                raise InvalidToken("invalid token")
            async with connection() as conn:
                stored = await arun(conn, lookup_plan(parts.prefix))
            principal = check_token(parts.secret, stored, datetime.now(UTC))
        except InvalidToken:
            return self._signin_page(request, 401, "invalid token")
        session_id = await open_session(principal, parts.prefix)
        audit(principal, "ui.signin")
        response = self.pages.go("/overview")
        response.delete_cookie(SIGNIN_COOKIE, path=self.prefix or "/")
        self._set_cookie(response, request, COOKIE, session_id, SESSION_SECONDS)
        return response

    async def signout(self, request: Request) -> Response:
        session = await self.session_of(request)
        form = await form_of(request)
        if session is not None and csrf_ok(session, first(form, "csrf_token")):
            await close_session(request.cookies.get(COOKIE, ""))
            audit(session.principal, "ui.signout")
        response = self.pages.go("/signin")
        response.delete_cookie(COOKIE, path=self.prefix or "/")
        return response

    async def jobs(self, request: Request) -> Response:
        session = await self.session_of(request)
        if session is None:
            return self.pages.go("/signin")
        params = request.query_params
        chosen = PageFilter.of({k: params.getlist(k) for k in params})
        try:
            page = await aio.list_jobs(
                session.principal.tenant_id,
                limit=PAGE_SIZE,
                cursor=params.get("cursor") or None,
                **chosen.options(),
            )
        except JobsError as exc:
            return self.pages.render("error.html", 400, session=session, message=str(exc))
        next_url = (
            f"{self.prefix}/jobs?{urlencode([*chosen.fields(), ('cursor', page.next_cursor)])}"
            if page.next_cursor
            else None
        )
        return self.pages.render(
            "jobs.html", session=session, jobs=page.items, chosen=chosen, next_url=next_url
        )

    async def job(self, request: Request, job_id: int) -> Response:
        session = await self.session_of(request)
        if session is None:
            return self.pages.go("/signin")
        try:
            found = await aio.get_job(session.principal.tenant_id, job_id)
            events = await aio.get_job_events(session.principal.tenant_id, job_id, limit=200)
        except JobNotFound:
            return self.pages.render("error.html", 404, session=session, message="no such job")
        timeline = []
        for i, event in enumerate(events.items):
            before = events.items[i - 1].created_at if i else None
            gap = (event.created_at - before).total_seconds() if before else None
            timeline.append((event, gap))
        return self.pages.render(
            "job.html",
            session=session,
            job=found,
            payload=redacted_json(found.payload),
            result=redacted_json(found.result),
            timeline=timeline,
            delayed=found.status in (JobStatus.PENDING, JobStatus.QUEUED)
            and found.run_at > datetime.now(UTC),
        )

    async def progress(self, request: Request, job_id: int) -> Response:
        """What the job page's script polls: status and progress as JSON."""
        session = await self.session_of(request)
        if session is None:
            return JSONResponse({"error": "signed out"}, status_code=401)
        try:
            found = await aio.get_job(session.principal.tenant_id, job_id)
        except JobNotFound:
            return JSONResponse({"error": "no such job"}, status_code=404)
        return JSONResponse(
            {
                "status": found.status.value,
                "progress": found.progress,
                "message": found.progress_message,
            }
        )

    async def events(self, request: Request, job_id: int) -> Response:
        """The job's events as Server-Sent Events for the job page (the API's stream, with the
        session instead of a bearer header, which EventSource cannot send); it ends when the
        session does (signed out, or its token revoked)."""
        cookie = request.cookies.get(COOKIE)
        session = await load_session(cookie)
        if session is None:
            return JSONResponse({"error": "signed out"}, status_code=401)

        async def still_valid() -> bool:
            return await load_session(cookie) is not None

        try:
            return await job_event_stream(session.principal.tenant_id, job_id, 0, still_valid)
        except JobNotFound:
            return JSONResponse({"error": "no such job"}, status_code=404)


from pgjobs.ui.actions import JobActions  # noqa: E402 - it needs Ui
from pgjobs.ui.admin import AdminViews  # noqa: E402 - it needs Ui
from pgjobs.ui.tenants import TenantViews  # noqa: E402 - it needs Ui


def create_ui_app(prefix: str = "/ui", *, secure_cookie: bool | None = None) -> FastAPI:
    """The dashboard as an ASGI app, to mount at ``prefix``; ``secure_cookie`` None marks the
    session cookie Secure when the request came over HTTPS."""
    ui = Ui(prefix, secure_cookie)
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    app.middleware("http")(ui.headers)
    app.add_api_route("/", ui.home, methods=["GET"])
    app.add_api_route("/overview", ui.overview, methods=["GET"])
    admin = AdminViews(ui)
    app.add_api_route("/credentials", admin.credentials, methods=["GET"])
    app.add_api_route("/credentials", admin.add_credential, methods=["POST"])
    app.add_api_route("/mcp", admin.mcp_servers, methods=["GET"])
    app.add_api_route("/mcp/{server_id}/ping", admin.ping_mcp_server, methods=["POST"])
    app.add_api_route("/tokens", admin.tokens, methods=["GET"])
    app.add_api_route("/tokens", admin.create_token, methods=["POST"])
    app.add_api_route("/tokens/{prefix}/revoke", admin.revoke_token, methods=["POST"])
    app.add_api_route("/schedules", admin.schedules, methods=["GET"])
    app.add_api_route("/schedules/{schedule_id}/{action}", admin.schedule_action, methods=["POST"])
    switcher = TenantViews(ui)
    app.add_api_route("/tenants", switcher.tenants, methods=["GET"])
    app.add_api_route("/tenants/{tenant_id}/switch", switcher.switch, methods=["POST"])
    app.add_api_route("/signin", ui.signin_form, methods=["GET"])
    app.add_api_route("/signin", ui.signin, methods=["POST"])
    app.add_api_route("/signout", ui.signout, methods=["POST"])
    app.add_api_route("/jobs", ui.jobs, methods=["GET"])
    actions = JobActions(ui)
    app.add_api_route("/jobs/confirm", actions.confirm, methods=["GET"])
    app.add_api_route("/jobs/{job_id}", ui.job, methods=["GET"])
    app.add_api_route("/jobs/{job_id}/progress", ui.progress, methods=["GET"])
    app.add_api_route("/jobs/{job_id}/events", ui.events, methods=["GET"])
    app.add_api_route("/jobs/{job_id}/{action}", actions.act, methods=["POST"])
    app.add_api_route("/bulk", actions.bulk_selected, methods=["POST"])
    app.add_api_route("/bulk/matching", actions.bulk_matching, methods=["POST"])
    return app


def first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None
