"""The HTTP API against a real ``jobctl api`` process (and a real worker process), on the
run's shared database: every endpoint's happy path and documented errors, tokens, tenants
kept apart, problem details, body limits, event streams."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from apiserver import Stack, sse_events, start_api, token_for
from helpers import make_tenant
from processes import Processes
from sqlalchemy import text
from sqlalchemy.engine import make_url

from pgjobs.auth.store import create_token, revoke_token
from pgjobs.db.engine import autocommit, transaction
from pgjobs.db.models import TokenScope
from pgjobs.mcp.registry import create_mcp_server
from pgjobs.vault.credentials import create_credential

pytestmark = pytest.mark.usefixtures("keys")

READ, WRITE, ADMIN = TokenScope.JOBS_READ, TokenScope.JOBS_WRITE, TokenScope.ADMIN
PROBLEM = "application/problem+json"


@pytest.fixture
def tenant_a(db_env: str) -> uuid.UUID:
    return make_tenant()


@pytest.fixture
def tenant_b(db_env: str) -> uuid.UUID:
    return make_tenant()


def wait_status(client: httpx.Client, job_id: int, statuses: set[str], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.05)


def assert_problem(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["error"] == error, body
    assert body["type"].startswith("urn:pgjobs:problem:")
    assert "Traceback" not in response.text
    return body


# --- health, docs, job types ----------------------------------------------------------------


def test_health_docs_and_job_types(stack: Stack, tenant_a: uuid.UUID) -> None:
    with stack.client(None) as anon:
        assert anon.get("/healthz").json() == {"status": "ok"}
        ready = anon.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {
            "postgres": "ok",
            "redis": "ok",
        }
        spec = anon.get("/openapi.json").json()
        for path in ("/v1/jobs", "/v1/jobs/{job_id}/stream", "/v1/credentials", "/v1/job-types"):
            assert path in spec["paths"], path
        assert anon.get("/docs").status_code == 200
        assert_problem(anon.get("/v1/job-types"), 401, "InvalidToken")
    with stack.client(token_for(tenant_a, READ)) as client:
        types = {t["name"]: t for t in client.get("/v1/job-types").json()}
    assert types["api_steps"]["queue"] == "apitest"
    assert types["api_steps"]["payload_schema"]["properties"]["steps"]["maximum"] == 100
    assert "mcp_ping" in types


# --- jobs -------------------------------------------------------------------------------------


def test_enqueue_read_list_events_counts(stack: Stack, tenant_a: uuid.UUID) -> None:
    token = token_for(tenant_a)
    with stack.client(token) as client:
        body = {"type": "api_steps", "payload": {"steps": 1}, "priority": 3}
        first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-1"})
        assert first.status_code == 201, first.text
        job = first.json()
        assert job["created"] is True and job["type"] == "api_steps"
        assert first.headers["location"] == f"/v1/jobs/{job['id']}"
        again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-1"})
        assert again.status_code == 200 and again.json()["id"] == job["id"]
        assert again.json()["created"] is False

        done = wait_status(client, job["id"], {"succeeded"})
        assert done["result"] == {"steps": 1} and done["priority"] == 3
        assert done["tenant_id"] == str(tenant_a)

        delayed = client.post("/v1/jobs", json={"type": "api_steps", "payload": {}, "delay": 3600})
        assert delayed.status_code == 201

        page = client.get("/v1/jobs", params={"limit": 1}).json()
        assert [j["id"] for j in page["items"]] == [delayed.json()["id"]]
        rest = client.get("/v1/jobs", params={"limit": 1, "cursor": page["next_cursor"]}).json()
        assert [j["id"] for j in rest["items"]] == [job["id"]] and rest["next_cursor"] is None
        by_key = client.get("/v1/jobs", params={"idempotency_key": "order-1"}).json()["items"]
        assert [j["id"] for j in by_key] == [job["id"]]
        statuses = client.get("/v1/jobs", params=[("status", "succeeded"), ("status", "failed")])
        assert [j["id"] for j in statuses.json()["items"]] == [job["id"]]

        events = client.get(f"/v1/jobs/{job['id']}/events").json()["items"]
        kinds = [e["event_type"] for e in events]
        assert kinds[0] == "enqueued" and kinds[-1] == "completed", kinds
        assert events[0]["data"]["actor"].startswith("token:")

        counts = client.get("/v1/counts").json()
        assert counts["succeeded"] == 1 and counts["queued"] + counts["pending"] == 1
        assert client.get("/v1/counts", params={"type": "nothing"}).json()["succeeded"] == 0


def test_cancel_and_retry(stack: Stack, tenant_a: uuid.UUID) -> None:
    with stack.client(token_for(tenant_a)) as client:
        later = client.post("/v1/jobs", json={"type": "api_steps", "payload": {}, "delay": 600})
        job_id = later.json()["id"]
        cancelled = client.post(f"/v1/jobs/{job_id}/cancel", json={"reason": "not needed"})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json() == {
            "job_id": job_id,
            "status": "cancelled",
            "stop_requested": False,
        }
        events = client.get(f"/v1/jobs/{job_id}/events").json()["items"]
        assert events[-1]["event_type"] == "cancelled"
        assert events[-1]["data"]["reason"] == "not needed"
        assert events[-1]["data"]["actor"].startswith("token:")

        retried = client.post(f"/v1/jobs/{job_id}/retry")
        # due at once: a worker woken by its doorbell may already have taken it
        assert retried.status_code == 200
        assert retried.json()["status"] in ("pending", "queued", "active", "succeeded")
        wait_status(client, job_id, {"succeeded"})
        assert_problem(client.post(f"/v1/jobs/{job_id}/retry"), 409, "InvalidTransition")
        # cancelling a finished job changes nothing and says so
        assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "succeeded"
    audits = [json.loads(line) for line in stack.logs().splitlines() if '"api.audit"' in line]
    mine = [a for a in audits if a.get("job_id") == str(job_id)]
    assert {a["action"] for a in mine} == {"job.cancel", "job.retry"}
    assert all(a["actor"].startswith("token:") for a in mine)


def test_bulk_cancel_and_retry_and_run_now(stack: Stack, tenant_a: uuid.UUID) -> None:
    """Bulk actions by filter act on the jobs the count saw, never on newer ones; by ids, on
    those ids; a delayed job runs now once."""
    later = {"type": "api_steps", "payload": {}, "delay": 600}
    with stack.client(token_for(tenant_a)) as client:
        first = [client.post("/v1/jobs", json=later).json()["id"] for _ in range(3)]
        selection = {"type": "api_steps", "status": ["pending", "queued"]}
        counted = client.post("/v1/jobs/bulk/count", json={"action": "cancel", **selection})
        assert counted.status_code == 200, counted.text
        assert counted.json() == {"jobs": 3, "max_id": max(first)}
        newer = client.post("/v1/jobs", json=later).json()["id"]
        cancelled = client.post(
            "/v1/jobs/bulk/cancel",
            json={**selection, "max_id": counted.json()["max_id"], "reason": "bulk"},
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json() == {
            "action": "cancel",
            "job_ids": sorted(first),
            "stop_requested": [],
            "more": False,
        }
        assert client.get(f"/v1/jobs/{newer}").json()["status"] in ("pending", "queued")
        events = client.get(f"/v1/jobs/{first[0]}/events").json()["items"]
        assert events[-1]["event_type"] == "cancelled" and events[-1]["data"]["reason"] == "bulk"

        retried = client.post("/v1/jobs/bulk/retry", json={"ids": first[:2]})
        assert retried.json()["job_ids"] == sorted(first[:2]), retried.text
        for job_id in first[:2]:
            wait_status(client, job_id, {"succeeded"})
        assert client.get(f"/v1/jobs/{first[2]}").json()["status"] == "cancelled"
        # nothing left to move: an empty answer, not an error
        again = client.post("/v1/jobs/bulk/retry", json={"ids": first[:2]})
        assert again.json()["job_ids"] == []

        ran = client.post(f"/v1/jobs/{newer}/run-now")
        assert ran.status_code == 200, ran.text
        wait_status(client, newer, {"succeeded"})
        assert_problem(client.post(f"/v1/jobs/{newer}/run-now"), 409, "InvalidTransition")
        assert_problem(client.post(f"/v1/jobs/{2**62}/run-now"), 404, "JobNotFound")

        # a bulk call must say which jobs; bad selections are refused before anything moves
        everything = client.post("/v1/jobs/bulk/cancel", json={})
        assert_problem(everything, 422, "InvalidRequest")
        only_max = client.post("/v1/jobs/bulk/cancel", json={"max_id": 5})
        assert_problem(only_max, 422, "InvalidRequest")
        too_many = client.post("/v1/jobs/bulk/cancel", json={"ids": list(range(1, 10_002))})
        assert_problem(too_many, 422, "InvalidRequest")
        unknown = client.post("/v1/jobs/bulk/count", json={"action": "delete", "type": "x"})
        assert_problem(unknown, 422, "InvalidRequest")
        extra = client.post("/v1/jobs/bulk/retry", json={"ids": [1], "every": True})
        assert_problem(extra, 422, "InvalidRequest")
    with stack.client(token_for(tenant_a, READ)) as reader:
        count = reader.post("/v1/jobs/bulk/count", json={"action": "retry", "ids": first})
        assert count.json()["jobs"] == 1
        denied = reader.post("/v1/jobs/bulk/retry", json={"ids": first})
        assert_problem(denied, 403, "InsufficientScope")
        assert_problem(reader.post(f"/v1/jobs/{first[2]}/run-now"), 403, "InsufficientScope")
    audits = [json.loads(line) for line in stack.logs().splitlines() if '"api.audit"' in line]
    actions = [a["action"] for a in audits if a.get("tenant_id") == str(tenant_a)]
    assert {"jobs.cancel", "jobs.retry", "job.run_now"} <= set(actions), actions


def test_batch_is_all_or_nothing(stack: Stack, tenant_a: uuid.UUID) -> None:
    with stack.client(token_for(tenant_a)) as client:
        good = {"type": "api_steps", "payload": {"steps": 0}, "delay": 600}
        bad = {"type": "api_steps", "payload": {"steps": "many"}}
        refused = client.post("/v1/jobs/batch", json={"jobs": [good, bad, good]})
        body = assert_problem(refused, 422, "InvalidPayload")
        assert [e["field"] for e in body["errors"]] == ["jobs.1.payload.steps"]
        assert "many" not in refused.text
        unknown = client.post("/v1/jobs/batch", json={"jobs": [good, {**good, "type": "nope"}]})
        assert assert_problem(unknown, 422, "UnknownJobType")["errors"][0]["field"] == "jobs.1.type"
        assert client.get("/v1/jobs").json()["items"] == []  # nothing was written

        too_many = client.post("/v1/jobs/batch", json={"jobs": [good] * 1001})
        assert assert_problem(too_many, 422, "InvalidRequest")["errors"][0]["field"] == "jobs"

        keyed = [{**good, "idempotency_key": f"k{i}"} for i in range(3)]
        made = client.post("/v1/jobs/batch", json={"jobs": keyed})
        assert made.status_code == 201 and all(j["created"] for j in made.json()["jobs"])
        repeat = client.post("/v1/jobs/batch", json={"jobs": keyed})
        assert repeat.status_code == 200
        assert [j["id"] for j in repeat.json()["jobs"]] == [j["id"] for j in made.json()["jobs"]]


def test_bad_input_is_problem_details_without_values(stack: Stack, tenant_a: uuid.UUID) -> None:
    canary = f"VALUE-{uuid.uuid4().hex}"
    with stack.client(token_for(tenant_a)) as client:
        malformed = client.post(
            "/v1/jobs", content=b'{"type": ', headers={"content-type": "application/json"}
        )
        assert_problem(malformed, 400, "MalformedJson")
        wrong = client.post("/v1/jobs", json={"type": 5, "payload": canary})
        body = assert_problem(wrong, 422, "InvalidRequest")
        assert {e["field"] for e in body["errors"]} == {"type", "payload"}
        unknown = client.post("/v1/jobs", json={"type": canary, "payload": {}})
        assert assert_problem(unknown, 422, "UnknownJobType")["errors"][0]["field"] == "type"
        invalid = client.post("/v1/jobs", json={"type": "api_steps", "payload": {"steps": canary}})
        body = assert_problem(invalid, 422, "InvalidPayload")
        assert body["errors"][0]["field"] == "payload.steps" and body["errors"][0]["message"]
        option = client.post("/v1/jobs", json={"type": "api_steps", "payload": {}, "delay": -1})
        assert assert_problem(option, 422, "InvalidOption")["errors"][0]["field"] == "delay"
        key = client.post(
            "/v1/jobs", json={"type": "api_steps", "payload": {}}, headers={"Idempotency-Key": ""}
        )
        assert_problem(key, 422, "InvalidOption")
        big = {"type": "api_steps", "payload": {"steps": 1, "note": "x" * 300_000}}
        assert_problem(client.post("/v1/jobs", json=big), 413, "PayloadTooLarge")
        over_cap = client.get("/v1/jobs", params={"limit": 501})
        assert assert_problem(over_cap, 400, "InvalidOption")["errors"][0]["field"] == "limit"
        cursor = client.get("/v1/jobs", params={"cursor": canary})
        assert assert_problem(cursor, 400, "InvalidOption")["errors"][0]["field"] == "cursor"
        naive = client.get("/v1/jobs", params={"created_after": "2030-01-01T00:00:00"})
        assert_problem(naive, 400, "InvalidOption")
        assert_problem(client.get("/v1/jobs/abc"), 400, "InvalidRequest")
        assert_problem(client.get(f"/v1/jobs/{2**63}"), 400, "InvalidOption")
        assert_problem(
            client.get("/v1/jobs/1/events", params={"cursor": "x"}), 400, "InvalidOption"
        )
        assert_problem(client.get("/v1/nowhere"), 404, "NotFound")
        assert_problem(client.delete("/v1/jobs/1"), 405, "MethodNotAllowed")
        for response in (wrong, unknown, invalid, cursor):
            assert canary not in response.text
        assert client.get("/v1/jobs").json()["items"] == []
    assert canary not in stack.logs()


def _raw_request(url: str, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send a request over a plain socket (some of its body only) and read the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed: it did not read the rest
                break
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def test_large_bodies_are_refused_unread(stack: Stack, tenant_a: uuid.UUID) -> None:
    token = token_for(tenant_a)
    declared = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    ).encode()
    started = time.monotonic()
    # 64 KB of a declared 10 MB: an answer proves the server did not wait for the rest
    answer = _raw_request(stack.url, declared, [b"x" * 65536])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 5
    chunked = (
        f"POST /v1/jobs/batch HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b"x" * 1_000_000
    chunks = [f"{len(piece):x}\r\n".encode() + piece + b"\r\n"] * 10
    answer = _raw_request(stack.url, chunked, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    with stack.client(token) as client:
        assert client.get("/v1/jobs").json()["items"] == []


# --- tokens and scopes ------------------------------------------------------------------------


def test_every_bad_token_gets_the_same_401(stack: Stack, tenant_a: uuid.UUID) -> None:
    good = token_for(tenant_a)
    revoked = create_token(tenant_a, name="old", scopes=[READ])
    revoke_token(tenant_a, str(revoked.record.id))
    expired = create_token(
        tenant_a, name="exp", scopes=[READ], expires_at=datetime.now(UTC) + timedelta(seconds=1)
    )
    time.sleep(1.2)
    prefix, secret = good[4:14], good[15:]
    wrong_secret = f"pgj_{prefix}_{'A' * len(secret)}"
    unknown_prefix = f"pgj_{'z' * 10}_{secret}"
    bodies = []
    for header in (
        None,
        "Basic abc",
        "Bearer not-a-token",
        f"Bearer {wrong_secret}",
        f"Bearer {unknown_prefix}",
        f"Bearer {revoked.token}",
        f"Bearer {expired.token}",
    ):
        headers = {"Authorization": header} if header else {}
        response = httpx.get(f"{stack.url}/v1/jobs", headers=headers)
        assert_problem(response, 401, "InvalidToken")
        assert response.headers["www-authenticate"].startswith("Bearer")
        bodies.append(response.content)
    assert len(set(bodies)) == 1


def test_missing_scope_is_403(stack: Stack, tenant_a: uuid.UUID) -> None:
    with stack.client(token_for(tenant_a, READ)) as reader:
        assert reader.get("/v1/jobs").status_code == 200
        refused = reader.post("/v1/jobs", json={"type": "api_steps", "payload": {}})
        assert assert_problem(refused, 403, "InsufficientScope")["required_scope"] == "jobs:write"
        assert_problem(reader.get("/v1/credentials"), 403, "InsufficientScope")
    with stack.client(token_for(tenant_a, WRITE)) as writer:
        assert_problem(writer.get("/v1/jobs"), 403, "InsufficientScope")
    with stack.client(token_for(tenant_a, ADMIN)) as admin:  # admin may do everything
        assert admin.get("/v1/jobs").status_code == 200
        assert admin.get("/v1/credentials").status_code == 200


def test_last_used_is_written_once_a_minute(stack: Stack, tenant_a: uuid.UUID) -> None:
    made = create_token(tenant_a, name="busy", scopes=[READ])

    def last_used() -> tuple[Any, int]:
        with transaction() as conn:
            row = conn.execute(
                text(
                    "SELECT last_used_at, xmin::text::bigint AS version FROM api_tokens "
                    "WHERE id = :id"
                ),
                {"id": made.record.id},
            ).one()
        return row.last_used_at, row.version

    assert last_used()[0] is None
    with stack.client(made.token) as client:
        for _ in range(30):
            assert client.get("/v1/counts").status_code == 200
        time.sleep(1.5)  # the token cache (1 s here) expired: lookups hit the table again
        for _ in range(30):
            assert client.get("/v1/counts").status_code == 200
    time.sleep(0.3)
    first, version = last_used()
    assert first is not None
    with stack.client(made.token) as client:
        for _ in range(10):
            client.get("/v1/counts")
    time.sleep(0.3)
    assert last_used() == (first, version)  # no new row version: not rewritten


# --- tenants apart ----------------------------------------------------------------------------


def _rows(table: str, tenant: uuid.UUID) -> list[Any]:
    with transaction() as conn:
        return list(
            conn.execute(
                text(f"SELECT * FROM {table} WHERE tenant_id = :t ORDER BY 1"),
                {"t": tenant},
            ).all()
        )


def test_other_tenants_resources_are_404_and_unchanged(
    stack: Stack, tenant_a: uuid.UUID, tenant_b: uuid.UUID
) -> None:
    credential = create_credential(tenant_b, provider="openai", name="b", secret="sk-b-0123456789")
    server = create_mcp_server(tenant_b, label="b", base_url="https://mcp.example.com")
    with stack.client(token_for(tenant_b, ADMIN)) as owner:
        theirs = owner.post("/v1/jobs", json={"type": "api_steps", "payload": {}, "delay": 600})
        failed = owner.post("/v1/jobs", json={"type": "api_steps", "payload": {"fail": True}})
        theirs_id, failed_id = theirs.json()["id"], failed.json()["id"]
        wait_status(owner, failed_id, {"failed"})
    before = {
        t: _rows(t, tenant_b)
        for t in ("content_jobs", "job_events", "app_credentials", "mcp_servers")
    }
    missing_job = 2**62
    with stack.client(token_for(tenant_a, ADMIN)) as other:
        for job_id in (theirs_id, failed_id, missing_job):
            answers = [
                other.get(f"/v1/jobs/{job_id}"),
                other.get(f"/v1/jobs/{job_id}/events"),
                other.get(f"/v1/jobs/{job_id}/stream"),
                other.post(f"/v1/jobs/{job_id}/cancel"),
                other.post(f"/v1/jobs/{job_id}/retry"),
                other.post(f"/v1/jobs/{job_id}/run-now"),
            ]
            for answer in answers:
                assert_problem(answer, 404, "JobNotFound")
        assert other.get(f"/v1/jobs/{theirs_id}").json() == (
            other.get(f"/v1/jobs/{missing_job}").json()
        )
        theirs_ids = {"ids": [theirs_id, failed_id]}
        for action in ("cancel", "retry"):
            moved = other.post(f"/v1/jobs/bulk/{action}", json=theirs_ids)
            assert moved.json()["job_ids"] == [], moved.text
            counted = other.post("/v1/jobs/bulk/count", json={"action": action, **theirs_ids})
            assert counted.json()["jobs"] == 0
        assert other.get("/v1/jobs").json()["items"] == []
        assert other.get("/v1/counts").json()["queued"] == 0
        for cid in (credential.id, uuid.uuid4()):
            for answer in (
                other.get(f"/v1/credentials/{cid}"),
                other.patch(f"/v1/credentials/{cid}", json={"name": "x"}),
                other.post(f"/v1/credentials/{cid}/rotate-secret", json={"secret": "sk-x-0123456"}),
                other.post(f"/v1/credentials/{cid}/mark", json={"status": "valid"}),
                other.delete(f"/v1/credentials/{cid}"),
            ):
                assert_problem(answer, 404, "CredentialNotFound")
        for sid in (server.id, uuid.uuid4()):
            for answer in (
                other.get(f"/v1/mcp-servers/{sid}"),
                other.patch(f"/v1/mcp-servers/{sid}", json={"label": "x"}),
                other.post(f"/v1/mcp-servers/{sid}/ping"),
                other.delete(f"/v1/mcp-servers/{sid}"),
            ):
                assert_problem(answer, 404, "McpServerNotFound")
        # an MCP server of A cannot point at B's credential
        refused = other.post(
            "/v1/mcp-servers",
            json={
                "label": "a",
                "base_url": "https://a.example.com",
                "auth_type": "token",
                "auth_ref": str(credential.id),
            },
        )
        assert_problem(refused, 404, "CredentialNotFound")
        assert other.get("/v1/credentials").json() == []
        assert other.get("/v1/mcp-servers").json() == []
    after = {t: _rows(t, tenant_b) for t in before}
    assert after == before


# --- credentials and MCP servers --------------------------------------------------------------


def test_credentials_and_mcp_servers(stack: Stack, tenant_a: uuid.UUID) -> None:
    secret = f"sk-live-{uuid.uuid4().hex}"
    with stack.client(token_for(tenant_a, ADMIN)) as admin:
        made = admin.post(
            "/v1/credentials", json={"provider": "openai", "name": "main", "secret": secret}
        )
        assert made.status_code == 201, made.text
        credential = made.json()
        assert secret not in made.text and credential["secret_mask"].endswith(secret[-4:])
        assert "secret" not in credential
        dup = admin.post(
            "/v1/credentials", json={"provider": "openai", "name": "main", "secret": secret}
        )
        assert secret not in assert_problem(dup, 409, "CredentialExists")["detail"]
        empty = admin.post(
            "/v1/credentials", json={"provider": "openai", "name": "x", "secret": ""}
        )
        assert_problem(empty, 422, "InvalidInput")
        cid = credential["id"]
        assert [c["id"] for c in admin.get("/v1/credentials").json()] == [cid]
        assert admin.get(f"/v1/credentials/{cid}").json()["name"] == "main"
        assert admin.patch(f"/v1/credentials/{cid}", json={"name": "primary"}).json()["name"] == (
            "primary"
        )
        rotated = admin.post(f"/v1/credentials/{cid}/rotate-secret", json={"secret": secret + "2"})
        assert rotated.json()["secret_mask"].endswith((secret + "2")[-4:])
        assert (
            admin.post(f"/v1/credentials/{cid}/mark", json={"status": "valid"}).json()["status"]
            == "valid"
        )
        assert_problem(
            admin.post(f"/v1/credentials/{cid}/mark", json={"status": "bogus"}),
            422,
            "InvalidRequest",
        )

        server = admin.post(
            "/v1/mcp-servers",
            json={
                "label": "tools",
                "base_url": "https://mcp.example.com",
                "auth_type": "token",
                "auth_ref": cid,
                "metadata": {"headers": {"X-Team": "a"}},
            },
        )
        assert server.status_code == 201, server.text
        sid = server.json()["id"]
        assert admin.get(f"/v1/mcp-servers/{sid}").json()["metadata"]["headers"] == {"X-Team": "a"}
        assert admin.patch(f"/v1/mcp-servers/{sid}", json={"label": "tools2"}).json()["label"] == (
            "tools2"
        )
        in_use = admin.delete(f"/v1/credentials/{cid}")
        assert_problem(in_use, 409, "CredentialInUse")
        ping = admin.post(f"/v1/mcp-servers/{sid}/ping")
        assert ping.status_code == 202 and ping.json()["type"] == "mcp_ping"
        assert admin.get(f"/v1/jobs/{ping.json()['id']}").json()["payload"] == {"server_id": sid}
        bad_url = admin.post("/v1/mcp-servers", json={"label": "x", "base_url": "not a url"})
        assert_problem(bad_url, 422, "InvalidInput")
        assert admin.delete(f"/v1/mcp-servers/{sid}").status_code == 204
        assert admin.delete(f"/v1/credentials/{cid}").status_code == 204
        assert admin.get("/v1/credentials").json() == []
    logs = stack.logs()
    assert secret not in logs
    assert '"api.audit"' in logs and "credential.create" in logs


def test_secret_canary_never_leaves(stack: Stack, tenant_a: uuid.UUID) -> None:
    from fault_jobs import create_effects_table

    canary = f"CANARY-{uuid.uuid4().hex}"
    with autocommit() as conn:
        create_effects_table(conn)
    answers: list[str] = []
    with stack.client(token_for(tenant_a, ADMIN)) as admin:
        made = admin.post(
            "/v1/credentials", json={"provider": "custom", "name": "canary", "secret": canary}
        )
        answers.append(made.text)
        cid = made.json()["id"]
        job = admin.post(
            "/v1/jobs", json={"type": "fault_canary", "payload": {"credential_id": cid}}
        )
        answers.append(job.text)
        with admin.stream("GET", f"/v1/jobs/{job.json()['id']}/stream") as stream:
            answers.extend(json.dumps(e) for e in sse_events(stream))
        done = wait_status(admin, job.json()["id"], {"failed"}, timeout=30)
        assert done["error_message"]
        for path in (
            f"/v1/jobs/{done['id']}",
            f"/v1/jobs/{done['id']}/events",
            "/v1/jobs",
            "/v1/credentials",
            f"/v1/credentials/{cid}",
        ):
            answers.append(admin.get(path).text)
    for answer in answers:
        assert canary not in answer
    assert canary not in stack.logs()
    with transaction() as conn:
        tables = conn.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        ).scalars()
        for table in list(tables):
            hits = conn.execute(
                text(f"SELECT count(*) FROM {table} t WHERE t::text LIKE :c"),
                {"c": f"%{canary}%"},
            ).scalar_one()
            assert hits == 0, table


# --- event streams ----------------------------------------------------------------------------


def test_stream_follows_a_job_to_its_end_and_resumes(stack: Stack, tenant_a: uuid.UUID) -> None:
    with stack.client(token_for(tenant_a)) as client:
        job = client.post(
            "/v1/jobs", json={"type": "api_steps", "payload": {"steps": 3, "step_ms": 100}}
        ).json()
        with client.stream("GET", f"/v1/jobs/{job['id']}/stream") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(response))  # ends by itself after the terminal event
        kinds = [e["event"] for e in events if "event" in e]
        assert kinds[0] == "enqueued" and kinds[-1] == "completed", kinds
        assert kinds.count("progress") == 3
        ids = [int(e["id"]) for e in events if "id" in e]
        assert ids == sorted(set(ids))
        assert json.loads(events[-1]["data"])["job_id"] == job["id"]

        # resumed after the second event: exactly the rest, then the end (a terminal job
        # answers at once)
        resumed_from = ids[1]
        with client.stream(
            "GET", f"/v1/jobs/{job['id']}/stream", headers={"Last-Event-ID": str(resumed_from)}
        ) as response:
            again = [int(e["id"]) for e in sse_events(response) if "id" in e]
        assert again == ids[2:]
        started = time.monotonic()
        with client.stream(
            "GET", f"/v1/jobs/{job['id']}/stream", headers={"Last-Event-ID": str(ids[-1])}
        ) as response:
            assert [e for e in sse_events(response) if "id" in e] == []
        assert time.monotonic() - started < 2
        bad = client.get(f"/v1/jobs/{job['id']}/stream", headers={"Last-Event-ID": "x"})
        assert_problem(bad, 400, "InvalidOption")


def test_revoking_the_token_closes_its_streams(stack: Stack, tenant_a: uuid.UUID) -> None:
    made = create_token(tenant_a, name="streamer", scopes=[READ, WRITE])
    with stack.client(made.token) as client:
        job = client.post(
            "/v1/jobs", json={"type": "api_steps", "payload": {}, "delay": 600}
        ).json()
        with client.stream("GET", f"/v1/jobs/{job['id']}/stream") as response:
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")
            revoke_token(tenant_a, str(made.record.id))
            started = time.monotonic()
            rest, ended = [], False
            for line in lines:  # heartbeats arrive every second until the server ends it
                rest.append(line)
                if time.monotonic() - started > 8:
                    break
            else:
                ended = True
        assert ended and time.monotonic() - started < 6
        assert not any(line.startswith("event: completed") for line in rest)


def test_a_slow_client_does_not_stall_other_streams(stack: Stack, tenant_a: uuid.UUID) -> None:
    token = token_for(tenant_a)
    with stack.client(token) as client:
        # a hundred events of about 700 bytes: more than the slow socket and the server's
        # send buffer hold, so that stream's writes really wait
        slow_payload = {"steps": 100, "step_ms": 2, "pad": 450}
        slow_job = client.post("/v1/jobs", json={"type": "api_steps", "payload": slow_payload})
        slow_job = slow_job.json()
        host, port = stack.url.removeprefix("http://").split(":")
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        slow.connect((host, int(port)))
        slow.sendall(
            f"GET /v1/jobs/{slow_job['id']}/stream HTTP/1.1\r\nHost: t\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )  # and never read
        try:
            for _ in range(3):
                job = client.post(
                    "/v1/jobs", json={"type": "api_steps", "payload": {"steps": 2, "step_ms": 20}}
                ).json()
                started = time.monotonic()
                with client.stream("GET", f"/v1/jobs/{job['id']}/stream") as response:
                    kinds = [e.get("event") for e in sse_events(response)]
                assert kinds[-1] == "completed"
                assert time.monotonic() - started < 10
        finally:
            slow.close()


def test_many_streams_share_one_reader(stack: Stack, tenant_a: uuid.UUID, tmp_path: Path) -> None:
    """Twenty open streams on an API process whose pool holds 2 connections: the process
    holds no more than its pools' connections and the feed's one, not one per stream."""
    import psutil

    procs = Processes(tmp_path)
    env = {**stack.env, "JOBS_DB_POOL_SIZE": "2", "JOBS_DB_MAX_OVERFLOW": "0"}
    token = token_for(tenant_a)
    try:
        proc, url = start_api(procs, env)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
            jobs = [
                client.post("/v1/jobs", json={"type": "api_steps", "payload": {}, "delay": 600})
                for _ in range(20)
            ]
            opened = threading.Semaphore(0)
            ended: list[list[str]] = []

            def follow(job_id: int) -> None:
                with client.stream("GET", f"/v1/jobs/{job_id}/stream", timeout=30) as response:
                    lines = response.iter_lines()
                    next(lines)
                    opened.release()
                    ended.append([line for line in lines if line.startswith("event:")])

            threads = [threading.Thread(target=follow, args=(j.json()["id"],)) for j in jobs]
            for t in threads:
                t.start()
            for _ in threads:
                assert opened.acquire(timeout=20)
            pg_port = make_url(env["DATABASE_URL"]).port or 5432
            postgres = [
                c
                for c in psutil.Process(proc.pid).net_connections()
                if c.raddr and c.raddr.port == pg_port and c.status == "ESTABLISHED"
            ]
            assert postgres  # the feed's reader at least: the count below means something
            assert len(postgres) <= 2 + 2 + 1  # asyncio pool, threaded pool (marks), feed
            for j in jobs:
                client.post(f"/v1/jobs/{j.json()['id']}/cancel")
            for t in threads:
                t.join(timeout=20)
                assert not t.is_alive()
        assert len(ended) == 20 and all(e[-1] == "event: cancelled" for e in ended)
    finally:
        procs.stop_all()


# --- rate limit across processes --------------------------------------------------------------


def test_rate_limit_holds_across_processes(
    stack: Stack, tenant_a: uuid.UUID, tmp_path: Path
) -> None:
    procs = Processes(tmp_path)
    env = {**stack.env, "JOBS_API_RATE_LIMIT": "6", "JOBS_API_RATE_WINDOW_SECONDS": "60"}
    try:
        (_, first), (_, second) = start_api(procs, env), start_api(procs, env)
        token = token_for(tenant_a, READ)
        headers = {"Authorization": f"Bearer {token}"}
        # the windows are fixed (epoch multiples of 60 s): the seven requests must not straddle
        # the end of one, or the seventh counts in the next window
        into_window = time.time() % 60
        if into_window > 50:
            time.sleep(60 - into_window + 0.1)
        codes = [
            httpx.get(f"{(first, second)[i % 2]}/v1/counts", headers=headers).status_code
            for i in range(6)
        ]
        assert codes == [200] * 6
        refused = httpx.get(f"{second}/v1/counts", headers=headers)
        assert_problem(refused, 429, "RateLimited")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        other = token_for(tenant_a, READ)  # the limit is per token
        assert (
            httpx.get(
                f"{first}/v1/counts", headers={"Authorization": f"Bearer {other}"}
            ).status_code
            == 200
        )
    finally:
        procs.stop_all()


# --- the client -------------------------------------------------------------------------------


def test_client_against_the_server(stack: Stack, tenant_a: uuid.UUID) -> None:
    from pgjobs import client as api_client

    with api_client.Client(stack.url, token_for(tenant_a)) as jobs:
        assert "pgj_" not in repr(jobs)
        made = jobs.enqueue("api_steps", {"steps": 2, "step_ms": 20}, idempotency_key="c1")
        assert made.created and made.status in ("pending", "queued")
        assert jobs.enqueue("api_steps", {"steps": 2}, idempotency_key="c1").id == made.id
        done = jobs.wait_for(made.id, timeout=20)
        assert done.status == "succeeded" and done.result == {"steps": 2}
        kinds = [e.event_type for e in jobs.get_job_events(made.id).items]
        assert kinds[0] == "enqueued" and kinds[-1] == "completed"
        streamed = [e.event_type for e in jobs.stream_events(made.id)]
        assert streamed == kinds
        batch = jobs.enqueue_many([{"type": "api_steps", "payload": {}, "delay": 600}] * 2)
        assert len(batch) == 2
        page = jobs.list_jobs(status=["pending", "queued"], limit=1)
        assert len(page.items) == 1 and page.next_cursor is not None
        assert jobs.count_jobs_by_status()["succeeded"] == 1
        assert jobs.cancel_job(batch[0].id, reason="x").status == "cancelled"
        # the retried job is due at once: an idle worker, woken by its doorbell, may already
        # have taken it by the time the route reads it back
        retried = jobs.retry_job(batch[0].id)
        assert retried.status in ("pending", "queued", "active", "succeeded")
        assert "retry" in [e.event_type for e in jobs.get_job_events(batch[0].id).items]
        assert any(t["name"] == "api_steps" for t in jobs.job_types())
        with pytest.raises(TimeoutError):
            jobs.wait_for(batch[1].id, timeout=0.5)
        counted = jobs.count_selected("cancel", ids=[batch[1].id], status=["pending", "queued"])
        assert (counted.jobs, counted.max_id) == (1, batch[1].id)
        assert jobs.cancel_jobs(ids=[batch[1].id], reason="x").job_ids == [batch[1].id]
        assert jobs.retry_jobs(ids=[batch[1].id], max_id=batch[1].id).job_ids == [batch[1].id]
        delayed = jobs.enqueue("api_steps", {}, delay=600)
        assert jobs.run_job_now(delayed.id).id == delayed.id
        assert jobs.wait_for(delayed.id, timeout=20).status == "succeeded"
        with pytest.raises(api_client.NotFound) as missing:
            jobs.get_job(2**62)
        assert missing.value.error == "JobNotFound"
        with pytest.raises(api_client.InvalidRequest) as invalid:
            jobs.enqueue("api_steps", {"steps": "many"})
        assert invalid.value.error == "InvalidPayload"
        assert invalid.value.errors[0]["field"] == "payload.steps"
        with pytest.raises(api_client.Conflict):
            jobs.retry_job(made.id)
    with (
        api_client.Client(stack.url, "pgj_nope") as anonymous,
        pytest.raises(api_client.Unauthorized),
    ):
        anonymous.get_job(1)


def test_the_client_imports_no_database_layer() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pgjobs.client; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'psycopg', 'redis', 'dramatiq', 'fastapi') or m.startswith('pgjobs.db')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
