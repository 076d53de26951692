"""``/v1/schedules`` against a real ``jobctl api`` process (and a worker), and the typed
client's schedule methods: every endpoint's happy path, each bad input as a typed problem
with nothing written, scopes, and another tenant's schedule as not found."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from apiserver import Stack, token_for
from helpers import make_tenant
from sqlalchemy import text
from test_api import assert_problem, wait_status

from pgjobs.client import Client, Conflict, Forbidden, InvalidRequest, NotFound
from pgjobs.db.engine import transaction
from pgjobs.db.models import TokenScope

pytestmark = pytest.mark.usefixtures("keys")

READ, WRITE = TokenScope.JOBS_READ, TokenScope.JOBS_WRITE
HOURLY = {
    "name": "hourly-report",
    "type": "api_steps",
    "payload": {"steps": 1},
    "cron": "0 * * * *",
}


@pytest.fixture
def tenant(db_env: str) -> uuid.UUID:
    return make_tenant()


def schedule_rows(tenant: uuid.UUID) -> list[Any]:
    with transaction() as conn:
        return list(
            conn.execute(
                text("SELECT name, status, next_run_at FROM job_schedules WHERE tenant_id = :t"),
                {"t": tenant},
            )
        )


def test_create_read_list_change_and_fire(stack: Stack, tenant: uuid.UUID) -> None:
    with stack.client(token_for(tenant)) as http:
        made = http.post("/v1/schedules", json=HOURLY)
        assert made.status_code == 201, made.text
        schedule = made.json()
        sid = schedule["id"]
        assert schedule["status"] == "active" and schedule["next_run_at"] is not None
        assert schedule["job_type"] == "api_steps" and schedule["cron"] == "0 * * * *"

        assert http.get(f"/v1/schedules/{sid}").json()["name"] == "hourly-report"
        assert http.get("/v1/schedules/by-name/hourly-report").json()["id"] == sid
        assert [s["id"] for s in http.get("/v1/schedules").json()["items"]] == [sid]

        slots = http.get(f"/v1/schedules/{sid}/upcoming", params={"count": 3}).json()["slots"]
        times = [datetime.fromisoformat(s) for s in slots]
        assert len(times) == 3 and all(t.minute == 0 and t.second == 0 for t in times)
        assert times[1] > times[0]

        changed = http.patch(f"/v1/schedules/{sid}", json={"cron": "*/15 * * * *", "jitter": 5})
        assert changed.status_code == 200, changed.text
        assert changed.json()["cron"] == "*/15 * * * *" and changed.json()["jitter_seconds"] == 5
        assert changed.json()["payload"] == schedule["payload"]  # what was not given stays

        fired = http.post(f"/v1/schedules/{sid}/run-now")
        assert fired.status_code == 201, fired.text
        job = wait_status(http, fired.json()["id"], {"succeeded"})
        assert job["type"] == "api_steps"
        events = http.get(f"/v1/jobs/{job['id']}/events").json()["items"]
        assert events[0]["data"].get("actor", "").startswith("token:"), events[0]

        paused = http.post(f"/v1/schedules/{sid}/pause").json()
        assert paused["status"] == "paused" and paused["next_run_at"] is None
        assert_problem(http.post(f"/v1/schedules/{sid}/run-now"), 409, "ScheduleNotActive")
        assert http.post(f"/v1/schedules/{sid}/resume").json()["status"] == "active"

        archived = http.post(f"/v1/schedules/{sid}/archive").json()
        assert archived["status"] == "archived"
        assert http.get("/v1/schedules").json()["items"] == []
        listed = http.get("/v1/schedules", params={"status": "archived"}).json()["items"]
        assert [s["id"] for s in listed] == [sid]
    assert "schedule.run_now" in stack.logs() and "schedule.archive" in stack.logs()


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        ({"cron": "61 * * * *"}, "InvalidSchedule", "cron"),
        ({"tz": "Mars/Olympus_Mons"}, "InvalidSchedule", "tz"),
        ({"payload": {"steps": -1}}, "InvalidPayload", "payload.steps"),
        ({"type": "no_such_type"}, "UnknownJobType", "type"),
        ({"name": "Not A Name"}, "InvalidSchedule", "name"),
        ({"misfire": "catch_up"}, "InvalidSchedule", "catch_up_limit"),
        ({"cron": None, "every": None}, "InvalidSchedule", None),
    ],
)
def test_bad_input_is_a_typed_problem_and_writes_nothing(
    stack: Stack, tenant: uuid.UUID, change: dict[str, Any], error: str, field: str | None
) -> None:
    with stack.client(token_for(tenant)) as http:
        body = assert_problem(http.post("/v1/schedules", json={**HOURLY, **change}), 422, error)
    if field is not None:
        assert any(e["field"] == field for e in body.get("errors", [])), body
    assert schedule_rows(tenant) == []


def test_duplicate_names_and_bad_ids(stack: Stack, tenant: uuid.UUID) -> None:
    with stack.client(token_for(tenant)) as http:
        assert http.post("/v1/schedules", json=HOURLY).status_code == 201
        assert_problem(http.post("/v1/schedules", json=HOURLY), 409, "ScheduleExists")
        assert_problem(http.get(f"/v1/schedules/{uuid.uuid4()}"), 404, "ScheduleNotFound")
        assert_problem(http.get("/v1/schedules/by-name/nothing"), 404, "ScheduleNotFound")
        assert_problem(http.get("/v1/schedules/not-a-uuid"), 400, "InvalidRequest")
        assert_problem(
            http.get("/v1/schedules", params={"status": "sleeping"}), 400, "InvalidRequest"
        )
        sid = http.get("/v1/schedules").json()["items"][0]["id"]
        assert_problem(
            http.get(f"/v1/schedules/{sid}/upcoming", params={"count": 0}), 400, "InvalidOption"
        )
        assert_problem(
            http.patch(f"/v1/schedules/{sid}", json={"unknown": 1}), 422, "InvalidRequest"
        )
    assert len(schedule_rows(tenant)) == 1


def test_another_tenants_schedule_is_not_found_and_unchanged(
    stack: Stack, tenant: uuid.UUID
) -> None:
    other = make_tenant()
    with stack.client(token_for(other)) as http:
        sid = http.post("/v1/schedules", json=HOURLY).json()["id"]
    before = schedule_rows(other)
    with stack.client(token_for(tenant)) as http:
        for method, path in [
            ("GET", f"/v1/schedules/{sid}"),
            ("GET", f"/v1/schedules/{sid}/upcoming"),
            ("PATCH", f"/v1/schedules/{sid}"),
            ("POST", f"/v1/schedules/{sid}/pause"),
            ("POST", f"/v1/schedules/{sid}/resume"),
            ("POST", f"/v1/schedules/{sid}/archive"),
            ("POST", f"/v1/schedules/{sid}/run-now"),
        ]:
            body = {"cron": "* * * * *"} if method == "PATCH" else None
            assert_problem(http.request(method, path, json=body), 404, "ScheduleNotFound")
        assert http.get("/v1/schedules/by-name/hourly-report").status_code == 404
        assert http.get("/v1/schedules").json()["items"] == []
    assert schedule_rows(other) == before


def test_a_read_only_token_reads_but_cannot_change(stack: Stack, tenant: uuid.UUID) -> None:
    with stack.client(token_for(tenant)) as http:
        sid = http.post("/v1/schedules", json=HOURLY).json()["id"]
    before = schedule_rows(tenant)
    with stack.client(token_for(tenant, READ)) as http:
        assert http.get(f"/v1/schedules/{sid}").status_code == 200
        assert_problem(
            http.post("/v1/schedules", json={**HOURLY, "name": "x"}), 403, "InsufficientScope"
        )
        assert_problem(http.post(f"/v1/schedules/{sid}/pause"), 403, "InsufficientScope")
        assert_problem(http.post(f"/v1/schedules/{sid}/run-now"), 403, "InsufficientScope")
        assert_problem(
            http.patch(f"/v1/schedules/{sid}", json={"jitter": 1}), 403, "InsufficientScope"
        )
    assert schedule_rows(tenant) == before


def test_client_round_trips(stack: Stack, tenant: uuid.UUID) -> None:
    with Client(stack.url, token_for(tenant)) as jobs:
        made = jobs.create_schedule("every-minute", "api_steps", {"steps": 0}, every=60)
        assert made.interval_seconds == 60 and made.status == "active"
        assert jobs.get_schedule(made.id) == made
        assert jobs.get_schedule_by_name("every-minute").id == made.id
        assert [s.id for s in jobs.list_schedules().items] == [made.id]
        slots = jobs.upcoming_slots(made.id, count=2)
        assert (slots[1] - slots[0]).total_seconds() == 60
        assert jobs.update_schedule(made.id, jitter=3).jitter_seconds == 3
        assert jobs.pause_schedule(made.id).status == "paused"
        with pytest.raises(Conflict):
            jobs.run_schedule_now(made.id)
        assert jobs.resume_schedule(made.id).status == "active"
        job = jobs.run_schedule_now(made.id)
        assert jobs.wait_for(job.id, timeout=30).status == "succeeded"
        assert jobs.archive_schedule(made.id).status == "archived"
        assert jobs.list_schedules(status="archived").items[0].id == made.id
        with pytest.raises(InvalidRequest) as bad:
            jobs.create_schedule("bad", "api_steps", cron="every day")
        assert bad.value.error == "InvalidSchedule"
        with pytest.raises(NotFound):
            jobs.get_schedule(uuid.uuid4())
    with Client(stack.url, token_for(tenant, READ)) as reader, pytest.raises(Forbidden):
        reader.pause_schedule(made.id)


def test_openapi_lists_the_schedule_endpoints(stack: Stack) -> None:
    paths = httpx.get(f"{stack.url}/openapi.json").json()["paths"]
    for path in (
        "/v1/schedules",
        "/v1/schedules/{schedule_id}",
        "/v1/schedules/by-name/{name}",
        "/v1/schedules/{schedule_id}/run-now",
        "/v1/schedules/{schedule_id}/upcoming",
    ):
        assert path in paths, path
