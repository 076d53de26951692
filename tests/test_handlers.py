"""The four shipped handlers, run directly (no worker runtime) against a local fake provider.

Each test builds a JobContext whose controls record progress and decrypt through the real
``worker.credentials.use_credential``, with credentials stored through ``db.credentials`` in the
test database. Provider base URLs point at ``pgjobs/cli/stand_in_providers.py``; nothing reaches the
internet.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import secrets
import socket
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import structlog

from pgjobs.cli.stand_in_providers import FakeProviders, Recorded, Reply
from pgjobs.db.models import CredentialStatus, McpServerStatus
from pgjobs.mcp import registry as mcp_servers
from pgjobs.producer.builtin_types import (
    CredentialCheckPayload,
    FineTuneExportPayload,
    McpPingPayload,
    ScheduledPreviewPayload,
)
from pgjobs.settings import get_settings
from pgjobs.vault import credentials
from pgjobs.vault.keys import generate_key, reset_cipher
from pgjobs.worker.context import JobContext, JobControls
from pgjobs.worker.credentials import use_credential
from pgjobs.worker.errors import JobCancelled, PermanentError
from pgjobs.worker.handlers import http
from pgjobs.worker.handlers.registry import get_handler

pytestmark = pytest.mark.usefixtures("jobs_env")


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def fake(jobs_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProviders]:
    """The fake provider server, with every provider URL and a fresh key pointed at it."""
    with FakeProviders() as server:
        monkeypatch.setenv("JOBS_ENCRYPTION_KEYS", f"k1:{generate_key()}")
        monkeypatch.setenv("JOBS_OPENAI_BASE_URL", server.url + "/openai/v1")
        monkeypatch.setenv("JOBS_CFBD_BASE_URL", server.url + "/cfbd")
        monkeypatch.setenv("JOBS_ESPN_BASE_URL", server.url + "/espn")
        monkeypatch.setenv("JOBS_HTTP_TIMEOUT_SECONDS", "2")
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        get_settings.cache_clear()
        reset_cipher()
        yield server
        get_settings.cache_clear()
        reset_cipher()


@dataclass
class Run:
    """One direct handler run: the context and what its controls saw."""

    ctx: JobContext[Any]
    progress: list[tuple[int, str | None]] = field(default_factory=list)
    cancel: bool = False


def make_run(tenant_id: uuid.UUID, job_type: str, payload: Any) -> Run:
    run = Run(ctx=None)  # type: ignore[arg-type]

    def write_progress(percent: int, message: str | None) -> tuple[bool, bool]:
        run.progress.append((percent, message))
        return True, run.cancel

    controls = JobControls(
        write_progress=write_progress,
        refresh=lambda: (True, run.cancel),
        open_credential=lambda cid: use_credential(tenant_id, cid),
        progress_interval=0.0,
    )
    run.ctx = JobContext(
        job_id=1,
        tenant_id=tenant_id,
        job_type=job_type,
        attempt=1,
        max_attempts=3,
        message_id=None,
        payload=payload,
        log=structlog.get_logger("test"),
        controls=controls,
    )
    return run


def run_handler(run: Run) -> Any:
    handler = get_handler(run.ctx.job_type)
    assert handler is not None, f"no handler for {run.ctx.job_type}"
    return handler(run.ctx)


def new_secret(prefix: str = "sk-test-") -> str:
    return prefix + secrets.token_hex(16)


def store(tenant_id: uuid.UUID, provider: str, secret: str) -> uuid.UUID:
    created = credentials.create_credential(
        tenant_id, provider=provider, name=f"{provider}-{secrets.token_hex(3)}", secret=secret
    )
    return created.id


def assert_secret_absent(secret: str, *things: Any) -> None:
    for thing in things:
        if isinstance(thing, BaseException):
            text = "".join(traceback.format_exception(thing)) + repr(thing)
        else:
            text = json.dumps(thing)
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode() not in text


def assert_progress(run: Run) -> None:
    percents = [p for p, _ in run.progress]
    assert percents, "no progress reported"
    assert percents == sorted(percents)
    assert percents[-1] == 100


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"


# --- http helper -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, None),
        (204, None),
        (301, PermanentError),
        (400, PermanentError),
        (401, PermanentError),
        (403, PermanentError),
        (404, PermanentError),
        (422, PermanentError),
        (408, http.ProviderUnavailable),
        (429, http.ProviderUnavailable),
        (500, http.ProviderUnavailable),
        (503, http.ProviderUnavailable),
    ],
)
def test_check_status_splits_retry_from_fail(status: int, outcome: type[Exception] | None) -> None:
    response = httpx.Response(status, request=httpx.Request("GET", "http://x.invalid/"))
    if outcome is None:
        http.check_status(response, provider="p", action="a")
        return
    with pytest.raises(outcome) as caught:
        http.check_status(response, provider="p", action="a")
    assert f"HTTP {status}" in str(caught.value)
    assert isinstance(caught.value, PermanentError) == (outcome is PermanentError)


def test_header_builders_refuse_secrets_that_are_not_header_values() -> None:
    bad = "sk-with space\nX-Injected: 1"
    for build in (http.bearer, http.header_value, http.basic):
        with pytest.raises(PermanentError) as caught:
            build(bad)
        assert bad not in str(caught.value)
    assert http.basic("alice:pa:ss") == "Basic " + base64.b64encode(b"alice:pa:ss").decode()
    with pytest.raises(PermanentError):
        http.basic("no-colon-here")


# --- credential_check --------------------------------------------------------------------------


def check(tenant_id: uuid.UUID, credential_id: uuid.UUID) -> Run:
    return make_run(
        tenant_id, "credential_check", CredentialCheckPayload(credential_id=credential_id)
    )


def test_credential_check_openai_valid(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    secret = new_secret()
    cred = store(tenant_id, "openai", secret)
    fake.route("GET", "/openai/v1/models", Reply(200, json={"data": [{"id": "gpt-4o"}]}))
    run = check(tenant_id, cred)

    result = run_handler(run)

    assert result["status"] == "valid"
    assert result["provider"] == "openai"
    assert result["http_status"] == 200
    [request] = fake.requests_to("/openai/v1/models")
    assert request.header("authorization") == f"Bearer {secret}"
    stored = credentials.get_credential(tenant_id, cred)
    assert stored.status is CredentialStatus.VALID
    assert stored.last_validated_at is not None
    assert_progress(run)
    assert_secret_absent(secret, result, run.progress)


def test_credential_check_cfbd_401_records_invalid(
    fake: FakeProviders, tenant_id: uuid.UUID
) -> None:
    secret = new_secret("cfbd-")
    cred = store(tenant_id, "cfbd", secret)
    fake.route("GET", "/cfbd/info", Reply(401, json={"message": f"bad key {secret}"}))

    result = run_handler(check(tenant_id, cred))

    assert result == {
        "status": "invalid",
        "provider": "cfbd",
        "http_status": 401,
        "credential_id": str(cred),
        "latency_ms": result["latency_ms"],
    }
    [request] = fake.requests_to("/cfbd/info")
    assert request.header("authorization") == f"Bearer {secret}"
    stored = credentials.get_credential(tenant_id, cred)
    assert stored.status is CredentialStatus.INVALID
    assert stored.last_validated_at is not None
    assert_secret_absent(secret, result)


def test_credential_check_espn_sends_api_key_header(
    fake: FakeProviders, tenant_id: uuid.UUID
) -> None:
    secret = new_secret("espn-")
    cred = store(tenant_id, "espn", secret)
    fake.route("GET", "/espn/scoreboard", Reply(200, json={"events": []}))

    result = run_handler(check(tenant_id, cred))

    assert result["status"] == "valid"
    [request] = fake.requests_to("/espn/scoreboard")
    assert request.header("x-api-key") == secret
    assert request.header("authorization") is None
    assert credentials.get_credential(tenant_id, cred).status is CredentialStatus.VALID


@pytest.mark.parametrize("status", [500, 503, 429])
def test_credential_check_transient_errors_retry_and_record_nothing(
    fake: FakeProviders, tenant_id: uuid.UUID, status: int
) -> None:
    secret = new_secret()
    cred = store(tenant_id, "openai", secret)
    fake.route("GET", "/openai/v1/models", Reply(status, body=f"echo {secret}".encode()))

    with pytest.raises(http.ProviderUnavailable) as caught:
        run_handler(check(tenant_id, cred))

    assert not isinstance(caught.value, PermanentError)
    assert f"HTTP {status}" in str(caught.value)
    assert "openai" in str(caught.value)
    assert_secret_absent(secret, caught.value)
    stored = credentials.get_credential(tenant_id, cred)
    assert stored.status is CredentialStatus.UNKNOWN
    assert stored.last_validated_at is None


def test_credential_check_unreachable_provider_is_transient(
    fake: FakeProviders, tenant_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = new_secret()
    cred = store(tenant_id, "openai", secret)
    monkeypatch.setenv("JOBS_OPENAI_BASE_URL", closed_port_url())
    get_settings.cache_clear()

    with pytest.raises(http.ProviderUnavailable) as caught:
        run_handler(check(tenant_id, cred))
    assert "ConnectError" in str(caught.value)
    assert_secret_absent(secret, caught.value)


def test_credential_check_other_4xx_fails_permanently(
    fake: FakeProviders, tenant_id: uuid.UUID
) -> None:
    cred = store(tenant_id, "openai", new_secret())
    fake.route("GET", "/openai/v1/models", Reply(404))
    with pytest.raises(PermanentError, match="HTTP 404"):
        run_handler(check(tenant_id, cred))
    assert credentials.get_credential(tenant_id, cred).status is CredentialStatus.UNKNOWN


def test_credential_check_custom_provider_is_permanent_without_a_call(
    fake: FakeProviders, tenant_id: uuid.UUID
) -> None:
    cred = store(tenant_id, "custom", new_secret())
    with pytest.raises(PermanentError, match="custom credentials cannot be checked"):
        run_handler(check(tenant_id, cred))
    assert fake.requests == []


def test_credential_check_unknown_or_foreign_credential_is_permanent(
    fake: FakeProviders, tenant_id: uuid.UUID
) -> None:
    from helpers import make_tenant

    other_tenant = make_tenant()
    foreign = store(other_tenant, "openai", new_secret())
    for credential_id in (uuid.uuid4(), foreign):
        with pytest.raises(PermanentError, match="not found"):
            run_handler(check(tenant_id, credential_id))
    assert fake.requests == []
    assert credentials.get_credential(other_tenant, foreign).status is CredentialStatus.UNKNOWN


def test_secret_that_is_not_a_header_value_fails_without_echoing_it(
    fake: FakeProviders, tenant_id: uuid.UUID
) -> None:
    secret = "sk-broken key\r\nX-Injected: yes"
    cred = store(tenant_id, "openai", secret)
    with pytest.raises(PermanentError) as caught:
        run_handler(check(tenant_id, cred))
    assert_secret_absent(secret, caught.value)
    assert "sk-broken" not in str(caught.value)
    assert fake.requests == []


# --- mcp_ping --------------------------------------------------------------------------------


def ping(tenant_id: uuid.UUID, server_id: uuid.UUID) -> Run:
    return make_run(tenant_id, "mcp_ping", McpPingPayload(server_id=server_id))


def add_server(
    tenant_id: uuid.UUID,
    base_url: str,
    auth_type: str = "none",
    secret: str | None = None,
    headers: dict[str, str] | None = None,
) -> uuid.UUID:
    auth_ref = store(tenant_id, "custom", secret) if secret is not None else None
    server = mcp_servers.create_mcp_server(
        tenant_id,
        label=f"mcp-{secrets.token_hex(3)}",
        base_url=base_url,
        auth_type=auth_type,
        auth_ref=auth_ref,
        metadata={"headers": headers or {}},
    )
    return server.id


def test_mcp_ping_token_auth_online(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    secret = new_secret("mcp-token-")
    server_id = add_server(tenant_id, fake.url + "/mcp", "token", secret, headers={"X-Org": "acme"})
    fake.route("GET", "/mcp", Reply(200, json={"ok": True}))
    run = ping(tenant_id, server_id)

    result = run_handler(run)

    assert result["status"] == "online"
    assert result["http_status"] == 200
    assert isinstance(result["latency_ms"], int)
    [request] = fake.requests_to("/mcp")
    assert request.header("authorization") == f"Bearer {secret}"
    assert request.header("x-org") == "acme"
    stored = mcp_servers.get_mcp_server(tenant_id, server_id)
    assert stored.status is McpServerStatus.ONLINE
    assert stored.last_ping_at is not None
    assert_progress(run)
    assert_secret_absent(secret, result, run.progress)


def test_mcp_ping_basic_auth(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    secret = "alice:" + secrets.token_hex(12)
    server_id = add_server(tenant_id, fake.url + "/mcp", "basic", secret)
    fake.route("GET", "/mcp", Reply(204))

    result = run_handler(ping(tenant_id, server_id))

    assert result["status"] == "online"
    [request] = fake.requests_to("/mcp")
    expected = base64.b64encode(secret.encode()).decode()
    assert request.header("authorization") == f"Basic {expected}"
    assert_secret_absent(secret, result)


def test_mcp_ping_without_auth_sends_no_authorization(
    fake: FakeProviders, tenant_id: uuid.UUID
) -> None:
    server_id = add_server(tenant_id, fake.url + "/mcp")
    fake.route("GET", "/mcp", Reply(404))  # up, just nothing at GET /: still online

    result = run_handler(ping(tenant_id, server_id))

    assert result["status"] == "online"
    assert result["http_status"] == 404
    [request] = fake.requests_to("/mcp")
    assert request.header("authorization") is None


@pytest.mark.parametrize("status", [401, 403])
def test_mcp_ping_auth_refused_is_error(
    fake: FakeProviders, tenant_id: uuid.UUID, status: int
) -> None:
    secret = new_secret("mcp-token-")
    server_id = add_server(tenant_id, fake.url + "/mcp", "token", secret)
    fake.route("GET", "/mcp", Reply(status))

    result = run_handler(ping(tenant_id, server_id))

    assert result["status"] == "error"
    assert result["http_status"] == status
    stored = mcp_servers.get_mcp_server(tenant_id, server_id)
    assert stored.status is McpServerStatus.ERROR
    assert stored.last_ping_at is not None


def test_mcp_ping_5xx_is_offline_not_a_retry(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    server_id = add_server(tenant_id, fake.url + "/mcp")
    fake.route("GET", "/mcp", Reply(503))

    result = run_handler(ping(tenant_id, server_id))

    assert result["status"] == "offline"
    assert result["http_status"] == 503
    assert mcp_servers.get_mcp_server(tenant_id, server_id).status is McpServerStatus.OFFLINE


def test_mcp_ping_unreachable_is_offline(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    secret = new_secret("mcp-token-")
    server_id = add_server(tenant_id, closed_port_url(), "token", secret)

    result = run_handler(ping(tenant_id, server_id))

    assert result["status"] == "offline"
    assert result["http_status"] is None
    assert "ConnectError" in result["error"]
    stored = mcp_servers.get_mcp_server(tenant_id, server_id)
    assert stored.status is McpServerStatus.OFFLINE
    assert stored.last_ping_at is not None
    assert_secret_absent(secret, result)


def test_mcp_ping_timeout_is_offline(
    fake: FakeProviders, tenant_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBS_HTTP_TIMEOUT_SECONDS", "0.2")
    get_settings.cache_clear()
    server_id = add_server(tenant_id, fake.url + "/slow")
    fake.route("GET", "/slow", Reply(200, delay=1.0))

    result = run_handler(ping(tenant_id, server_id))

    assert result["status"] == "offline"
    assert "Timeout" in result["error"]


def test_mcp_ping_unknown_server_is_permanent(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    with pytest.raises(PermanentError, match="not found"):
        run_handler(ping(tenant_id, uuid.uuid4()))


# --- fine_tune_export --------------------------------------------------------------------------


def export_payload(cred: uuid.UUID, n: int, system_prompt: str | None) -> FineTuneExportPayload:
    return FineTuneExportPayload.model_validate(
        {
            "credential_id": cred,
            "dataset_name": "support-v1",
            "system_prompt": system_prompt,
            "examples": [
                {"prompt": f"question {i} é", "completion": f"answer {i}"} for i in range(n)
            ],
        }
    )


def multipart_parts(request: Recorded) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, content) of a multipart/form-data body."""
    content_type = request.header("content-type") or ""
    assert content_type.startswith("multipart/form-data")
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + request.body
    message = email.message_from_bytes(raw, policy=email.policy.HTTP)
    parts = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_payload(decode=True))
    return parts


def test_fine_tune_export_uploads_chat_jsonl(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    secret = new_secret()
    cred = store(tenant_id, "openai", secret)
    fake.route("POST", "/openai/v1/files", Reply(200, json={"id": "file-abc123", "object": "file"}))
    run = make_run(tenant_id, "fine_tune_export", export_payload(cred, 25, "Be brief."))

    result = run_handler(run)

    [request] = fake.requests_to("/openai/v1/files", "POST")
    assert request.header("authorization") == f"Bearer {secret}"
    parts = multipart_parts(request)
    assert parts["purpose"] == (None, b"fine-tune")
    filename, content = parts["file"]
    assert filename == "support-v1.jsonl"
    lines = [json.loads(line) for line in content.decode("utf-8").splitlines()]
    assert len(lines) == 25
    assert lines[3] == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "question 3 é"},
            {"role": "assistant", "content": "answer 3"},
        ]
    }
    assert result == {
        "file_id": "file-abc123",
        "filename": "support-v1.jsonl",
        "bytes": len(content),
        "examples": 25,
        "dataset_name": "support-v1",
    }
    assert_progress(run)
    building = [p for p, m in run.progress if m and m.startswith("built ")]
    assert len(building) >= 10
    assert building[-1] == 50
    assert_secret_absent(secret, result, run.progress)


def test_fine_tune_export_without_system_prompt(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    cred = store(tenant_id, "openai", new_secret())
    fake.route("POST", "/openai/v1/files", Reply(200, json={"id": "file-x"}))

    run_handler(make_run(tenant_id, "fine_tune_export", export_payload(cred, 1, None)))

    [request] = fake.requests_to("/openai/v1/files")
    content = multipart_parts(request)["file"][1]
    assert json.loads(content)["messages"] == [
        {"role": "user", "content": "question 0 é"},
        {"role": "assistant", "content": "answer 0"},
    ]


def test_fine_tune_export_needs_an_openai_credential(
    fake: FakeProviders, tenant_id: uuid.UUID
) -> None:
    cred = store(tenant_id, "cfbd", new_secret())
    with pytest.raises(PermanentError, match="cfbd credential; this job needs openai"):
        run_handler(make_run(tenant_id, "fine_tune_export", export_payload(cred, 2, None)))
    assert fake.requests == []


def test_fine_tune_export_401_is_permanent(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    secret = new_secret()
    cred = store(tenant_id, "openai", secret)
    fake.route("POST", "/openai/v1/files", Reply(401, json={"error": {"message": secret}}))
    with pytest.raises(PermanentError) as caught:
        run_handler(make_run(tenant_id, "fine_tune_export", export_payload(cred, 2, None)))
    assert "HTTP 401" in str(caught.value)
    assert_secret_absent(secret, caught.value)


def test_fine_tune_export_500_is_transient(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    cred = store(tenant_id, "openai", new_secret())
    fake.route("POST", "/openai/v1/files", Reply(500))
    with pytest.raises(http.ProviderUnavailable, match="HTTP 500"):
        run_handler(make_run(tenant_id, "fine_tune_export", export_payload(cred, 2, None)))


def test_fine_tune_export_stops_at_a_checkpoint_when_cancelled(
    fake: FakeProviders, tenant_id: uuid.UUID
) -> None:
    cred = store(tenant_id, "openai", new_secret())
    fake.route("POST", "/openai/v1/files", Reply(200, json={"id": "file-x"}))
    run = make_run(tenant_id, "fine_tune_export", export_payload(cred, 10, None))
    run.cancel = True
    with pytest.raises(JobCancelled):
        run_handler(run)
    assert fake.requests == []


# --- scheduled_preview -------------------------------------------------------------------------


CFBD_GAMES = [
    {
        "id": 2,
        "startDate": "2024-09-07T23:30:00.000Z",
        "homeTeam": "Texas A&M",
        "awayTeam": "McNeese",
        "venue": "Kyle Field",
    },
    {
        "id": 1,
        "startDate": "2024-08-31T23:30:00.000Z",
        "homeTeam": "Notre Dame",
        "awayTeam": "Texas A&M",
        "venue": "Notre Dame Stadium",
    },
]


def preview(tenant_id: uuid.UUID, cred: uuid.UUID, provider: str, **extra: Any) -> Run:
    payload = ScheduledPreviewPayload(
        credential_id=cred, provider=provider, season=2024, team="Texas A&M", **extra
    )
    return make_run(tenant_id, "scheduled_preview", payload)


def test_scheduled_preview_cfbd(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    secret = new_secret("cfbd-")
    cred = store(tenant_id, "cfbd", secret)
    fake.route("GET", "/cfbd/games", Reply(200, json=CFBD_GAMES))
    run = preview(tenant_id, cred, "cfbd", week=1)

    result = run_handler(run)

    [request] = fake.requests_to("/cfbd/games")
    assert request.header("authorization") == f"Bearer {secret}"
    assert request.query == {"year": ["2024"], "team": ["Texas A&M"], "week": ["1"]}
    assert result["games"] == [
        {
            "opponent": "Notre Dame",
            "home": False,
            "start": "2024-08-31T23:30:00.000Z",
            "venue": "Notre Dame Stadium",
        },
        {
            "opponent": "McNeese",
            "home": True,
            "start": "2024-09-07T23:30:00.000Z",
            "venue": "Kyle Field",
        },
    ]
    assert result["count"] == 2
    assert result["team"] == "Texas A&M"
    assert result["season"] == 2024
    assert result["summary"] == (
        "Texas A&M plays 2 games in 2024 week 1: "
        "at Notre Dame (2024-08-31), vs McNeese (2024-09-07)"
    )
    assert_progress(run)
    assert_secret_absent(secret, result, run.progress)


def test_scheduled_preview_espn(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    secret = new_secret("espn-")
    cred = store(tenant_id, "espn", secret)

    def competitor(name: str, abbreviation: str, side: str) -> dict[str, Any]:
        return {
            "homeAway": side,
            "team": {"displayName": name, "location": name, "abbreviation": abbreviation},
        }

    scoreboard = {
        "events": [
            {
                "date": "2024-08-31T23:30Z",
                "competitions": [
                    {
                        "date": "2024-08-31T23:30Z",
                        "venue": {"fullName": "Kyle Field"},
                        "competitors": [
                            competitor("Texas A&M Aggies", "TA&M", "home"),
                            competitor("Notre Dame Fighting Irish", "ND", "away"),
                        ],
                    }
                ],
            },
            {
                "date": "2024-08-31T16:00Z",
                "competitions": [
                    {
                        "venue": {"fullName": "Elsewhere"},
                        "competitors": [
                            competitor("Georgia Bulldogs", "UGA", "home"),
                            competitor("Clemson Tigers", "CLEM", "away"),
                        ],
                    }
                ],
            },
        ]
    }
    fake.route("GET", "/espn/scoreboard", Reply(200, json=scoreboard))
    run = make_run(
        tenant_id,
        "scheduled_preview",
        ScheduledPreviewPayload(credential_id=cred, provider="espn", season=2024, team="TA&M"),
    )

    result = run_handler(run)

    [request] = fake.requests_to("/espn/scoreboard")
    assert request.header("x-api-key") == secret
    assert request.header("authorization") is None
    assert request.query == {"dates": ["2024"]}
    assert result["games"] == [
        {
            "opponent": "Notre Dame Fighting Irish",
            "home": True,
            "start": "2024-08-31T23:30Z",
            "venue": "Kyle Field",
        }
    ]
    assert result["count"] == 1
    assert (
        result["summary"] == "TA&M plays 1 game in 2024: vs Notre Dame Fighting Irish (2024-08-31)"
    )
    assert_secret_absent(secret, result, run.progress)


def test_scheduled_preview_without_games(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    cred = store(tenant_id, "cfbd", new_secret())
    fake.route("GET", "/cfbd/games", Reply(200, json=[]))
    result = run_handler(preview(tenant_id, cred, "cfbd"))
    assert result["count"] == 0
    assert result["summary"] == "Texas A&M has no games in 2024"


def test_scheduled_preview_provider_must_match_credential(
    fake: FakeProviders, tenant_id: uuid.UUID
) -> None:
    cred = store(tenant_id, "cfbd", new_secret())
    with pytest.raises(PermanentError, match="cfbd credential; this job needs espn"):
        run_handler(preview(tenant_id, cred, "espn"))
    assert fake.requests == []


@pytest.mark.parametrize(("status", "error"), [(401, PermanentError), (403, PermanentError)])
def test_scheduled_preview_refused_key_is_permanent(
    fake: FakeProviders, tenant_id: uuid.UUID, status: int, error: type[Exception]
) -> None:
    secret = new_secret("cfbd-")
    cred = store(tenant_id, "cfbd", secret)
    fake.route("GET", "/cfbd/games", Reply(status, body=secret.encode()))
    with pytest.raises(error) as caught:
        run_handler(preview(tenant_id, cred, "cfbd"))
    assert f"cfbd: schedule request returned HTTP {status}" in str(caught.value)
    assert_secret_absent(secret, caught.value)


def test_scheduled_preview_5xx_is_transient(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    cred = store(tenant_id, "espn", new_secret())
    fake.route("GET", "/espn/scoreboard", Reply(502))
    with pytest.raises(http.ProviderUnavailable, match="espn: schedule request returned HTTP 502"):
        run_handler(preview(tenant_id, cred, "espn"))


def test_scheduled_preview_recovers_on_retry(fake: FakeProviders, tenant_id: uuid.UUID) -> None:
    """A transient failure followed by success: the second attempt's run completes."""
    cred = store(tenant_id, "cfbd", new_secret())
    fake.route("GET", "/cfbd/games", [Reply(500), Reply(200, json=CFBD_GAMES)])
    with pytest.raises(http.ProviderUnavailable):
        run_handler(preview(tenant_id, cred, "cfbd"))
    assert run_handler(preview(tenant_id, cred, "cfbd"))["count"] == 2
