"""The dashboard's job actions: cancel, retry and run now of one job, and bulk cancel / retry
of the selected jobs or of everything the jobs page's filter matches (after a confirmation
showing the count).

Bulk actions are set-based (pgjobs.producer.control.cancel_jobs / retry_jobs: one statement
per ``BULK_BATCH`` jobs, at most ``BULK_MAX`` a request). The confirmation counts the jobs the
action can move and remembers the newest one's id: confirming acts on those jobs, never on jobs
created after the count was shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request, Response

from pgjobs import aio
from pgjobs.api.audit import audit
from pgjobs.db.errors import JobsError
from pgjobs.db.jobs.state_machine import JobSelection
from pgjobs.producer.control import BULK_MAX, BulkAction, BulkResult, select_jobs
from pgjobs.producer.errors import JobNotFound
from pgjobs.ui.filters import PageFilter
from pgjobs.ui.session import Session

if TYPE_CHECKING:
    from pgjobs.ui.app import Ui

VERBS = {"cancel": "Cancel", "retry": "Retry"}
BULK_ACTIONS: dict[str, BulkAction] = {"cancel": "cancel", "retry": "retry"}


def selection_of(session: Session, chosen: PageFilter, max_id: int | None = None) -> JobSelection:
    """The session's tenant's jobs the page's filter matches, none newer than ``max_id``."""
    return select_jobs(session.principal.tenant_id, max_id=max_id, **chosen.options())


class JobActions:
    """Cancel, retry, run now and the bulk actions of one dashboard."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def _error(self, session: Session, status: int, message: str) -> Response:
        return self.ui.pages.render("error.html", status, session=session, message=message)

    async def act(self, request: Request, job_id: int, action: str) -> Response:
        """One job: cancel, retry, or run now (a delayed job only)."""
        session, _, refusal = await self.ui.acting(request)
        if session is None:
            return refusal
        principal = session.principal
        try:
            if action == "cancel":
                await aio.cancel_job(principal.tenant_id, job_id, actor=principal.actor)
            elif action == "retry":
                await aio.retry_job(principal.tenant_id, job_id, actor=principal.actor)
            elif action == "run-now":
                await aio.run_job_now(principal.tenant_id, job_id, actor=principal.actor)
            else:
                return self._error(session, 404, f"unknown action {action!r}")
        except JobNotFound:
            return self._error(session, 404, "no such job")
        except JobsError as exc:
            return self._error(session, 409, str(exc))
        audit(principal, f"job.{action}", job_id=job_id, via="ui")
        return self.ui.pages.go(f"/jobs/{job_id}")

    async def bulk_selected(self, request: Request) -> Response:
        """The jobs ticked on the jobs page, in one statement."""
        session, form, refusal = await self.ui.acting(request)
        if session is None:
            return refusal
        ids = [int(v) for v in form.get("job_id", []) if v.isdigit()]
        action = next(iter(form.get("action", [])), "")
        if not ids:
            return self._error(session, 400, "no job selected")
        try:
            selection = select_jobs(session.principal.tenant_id, ids=ids)
        except JobsError as exc:  # too many ids
            return self._error(session, 400, str(exc))
        return await self._bulk(session, action, selection)

    async def confirm(self, request: Request) -> Response:
        """How many jobs the filter's bulk action would move, and the button to do it."""
        session = await self.ui.session_of(request)
        if session is None:
            return self.ui.pages.go("/signin")
        params = {k: request.query_params.getlist(k) for k in request.query_params}
        action = BULK_ACTIONS.get(request.query_params.get("action", ""))
        if action is None:
            return self._error(session, 404, "unknown action")
        chosen = PageFilter.of(params)
        try:
            counted = await aio.count_selected(selection_of(session, chosen), action)
        except JobsError as exc:
            return self._error(session, 400, str(exc))
        return self.ui.pages.render(
            "confirm.html",
            session=session,
            action=action,
            verb=VERBS[action],
            count=counted.jobs,
            max_id=counted.max_id,
            bulk_max=BULK_MAX,
            chosen=chosen,
            back=f"{self.ui.prefix}/jobs?{chosen.query()}",
        )

    async def bulk_matching(self, request: Request) -> Response:
        """Everything the filter matched when the count was shown (none newer than it)."""
        session, form, refusal = await self.ui.acting(request)
        if session is None:
            return refusal
        action = next(iter(form.get("action", [])), "")
        max_id = next(iter(form.get("max_id", [])), "")
        if not max_id.isdigit():
            return self._error(session, 400, "the confirmation expired: count again")
        try:
            selection = selection_of(session, PageFilter.of(form), max_id=int(max_id))
        except JobsError as exc:
            return self._error(session, 400, str(exc))
        return await self._bulk(session, action, selection)

    async def _bulk(self, session: Session, action: str, selection: JobSelection) -> Response:
        principal = session.principal
        done: BulkResult
        try:
            if action == "cancel":
                done = await aio.cancel_jobs(selection, actor=principal.actor)
            elif action == "retry":
                done = await aio.retry_jobs(selection, actor=principal.actor)
            else:
                return self._error(session, 404, "unknown action")
        except JobsError as exc:  # the database refused a batch: the ones before it are done
            return self._error(session, 409, str(exc))
        verb: BulkAction = done.action
        audit(principal, f"jobs.{verb}", jobs=len(done.job_ids), via="ui")
        asked = len(selection.ids) if selection.ids is not None else None
        return self.ui.pages.render(
            "bulk_done.html", session=session, done=done, verb=VERBS[verb], asked=asked
        )
