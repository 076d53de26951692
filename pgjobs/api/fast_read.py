"""``GET /v1/jobs/{id}`` served before the framework: the call status pages poll.

A plain ASGI wrapper answers exactly this request (an id of digits) with the same gate (token,
scope, rate), the same ``pgjobs.aio.get_job`` and the same problem details as the route in
routes/jobs.py, which stays for the OpenAPI document. It skips FastAPI's middleware, routing,
dependency solving and response wrappers, which cost an API process more CPU than the status
read itself: on this project's 2-core machine, 0.84 ms of CPU per request through the route,
0.47 ms here (docs/benchmarks.md has the figures under load). Anything else, and any other
form of this path, goes on to the application.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from pgjobs import aio
from pgjobs.api.auth import ApiRefusal, Gate
from pgjobs.api.problems import jobs_error_response, on_unexpected_response
from pgjobs.db.errors import JobsError
from pgjobs.db.models import TokenScope

_PATH = re.compile(r"/v1/jobs/([0-9]{1,20})")
_JSON = [(b"content-type", b"application/json")]


class JobReadFastPath:
    """Wraps the application (outermost, so nothing of the framework runs for this call)."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            principal = await self.gate.admit(authorization, TokenScope.JOBS_READ)
            job = await aio.get_job(principal.tenant_id, int(match[1]))
        except ApiRefusal as refusal:
            await refusal.response(scope, receive, send)  # type: ignore[operator]
            return
        except JobsError as exc:
            await jobs_error_response(Request(scope), exc)(scope, receive, send)
            return
        except Exception as exc:  # noqa: BLE001 - what the application's last handler does
            await on_unexpected_response(Request(scope), exc)(scope, receive, send)
            return
        body = job.model_dump_json().encode()
        headers = [*_JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
