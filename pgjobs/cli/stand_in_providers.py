"""A scripted local HTTP server standing in for OpenAI, CFBD, ESPN and MCP servers.

The demo runs its providers on it (it reaches no internet), and so do the tests.

Runs ``http.server.ThreadingHTTPServer`` on 127.0.0.1, port 0, in a daemon thread. Tests script
replies per (method, path) and then assert on what arrived, headers included::

    with FakeProviders() as fake:
        fake.route("GET", "/openai/v1/models", Reply(200, json={"data": []}))
        ...  # point JOBS_OPENAI_BASE_URL at fake.url + "/openai/v1"
        [request] = fake.requests_to("/openai/v1/models")
        assert request.header("authorization") == "Bearer sk-..."

A route's reply is a :class:`Reply`, a list of replies (served in order, the last one repeating)
or a function of the :class:`Recorded` request returning a reply. Unrouted paths answer 404.
``Reply(drop=True)`` closes the connection without answering (a dead server).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if self.json is not None:
            headers.setdefault("Content-Type", "application/json")
            return json.dumps(self.json).encode(), headers
        return self.body, headers


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


Responder = Reply | list[Reply] | Callable[[Recorded], Reply]


class FakeProviders:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: dict[tuple[str, str], Responder] = {}
        self._served: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeProviders:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def route(self, method: str, path: str, reply: Responder) -> None:
        """Answer ``method path`` (path without query string) with ``reply`` from now on."""
        with self._lock:
            self._routes[(method.upper(), path)] = reply
            self._served[(method.upper(), path)] = 0

    def requests_to(self, path: str, method: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path == path and (method is None or r.method == method.upper())
            ]

    def _answer(self, request: Recorded) -> Reply:
        key = (request.method, request.path)
        with self._lock:
            self.requests.append(request)
            responder = self._routes.get(key)
            count = self._served.get(key, 0)
            self._served[key] = count + 1
        if responder is None:
            return Reply(404, json={"error": "no route", "path": request.path})
        if isinstance(responder, Reply):
            return responder
        if isinstance(responder, list):
            return responder[min(count, len(responder) - 1)]
        return responder(request)


def _handler_class(fake: FakeProviders) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorded = Recorded(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            reply = fake._answer(recorded)
            if reply.delay:
                time.sleep(reply.delay)
            if reply.drop:
                self.close_connection = True
                return
            payload, headers = reply.encoded()
            self.send_response(reply.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler
