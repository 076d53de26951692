"""`jobctl enqueue` and `jobctl jobs ...` against real PostgreSQL and Redis, through click."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from pgjobs.cli.groups import JobsGroup
from pgjobs.cli.job_commands import enqueue as enqueue_command
from pgjobs.cli.job_commands import jobs, watch_jobs
from pgjobs.db.engine import autocommit
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models import JobStatus

pytestmark = pytest.mark.usefixtures("jobs_env")

SECRET = "sk-live-DO-NOT-ECHO-4242"

# The two commands as pgjobs.cli.main registers them, without importing every other command module.
cli = JobsGroup("jobctl", commands=[enqueue_command, jobs])


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin)


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def preview(team: str = "Navy") -> str:
    return json.dumps({"credential_id": str(uuid.uuid4()), "season": 2026, "team": team})


def enqueue(tenant: str) -> int:
    out = ok("enqueue", "scheduled_preview", "--tenant", tenant, "--payload", preview(), "--json")
    return int(json.loads(out)["id"])


@contextmanager
def drive(
    tenant_id: uuid.UUID, job_id: int, *, fail: str | None = None, wait: float = 0.3
) -> Iterator[None]:
    """Play the worker from a thread: claim, report progress, then succeed (or fail)."""

    def work() -> None:
        time.sleep(wait)
        with autocommit() as conn:
            claimed = sm.claim(
                conn, job_id, tenant_id, lease_seconds=30, message_id=None, worker="t"
            )
            assert claimed is not None
            sm.record_progress(conn, job_id, claimed.attempt, 50, "halfway", 30)
        time.sleep(wait)
        with autocommit() as conn:
            if fail is None:
                assert sm.complete(conn, job_id, claimed.attempt, '{"ok": true}', 1.0)
            else:
                assert sm.fail(conn, job_id, claimed.attempt, fail)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_enqueue_then_list_show_events_counts(tenant_id: uuid.UUID, tenant_slug: str) -> None:
    out = ok("enqueue", "scheduled_preview", "--tenant", tenant_slug, "--payload", preview())
    assert "queued" in out and "scheduled_preview" in out
    job_id = int(out.split()[1])

    listed = ok("jobs", "list", "--tenant", tenant_slug)
    assert str(job_id) in listed and "scheduled_preview" in listed and "queued" in listed
    page = json.loads(ok("jobs", "list", "--tenant", str(tenant_id), "--json"))
    assert [j["id"] for j in page["items"]] == [job_id] and page["next_cursor"] is None
    assert "no jobs" in ok("jobs", "list", "--tenant", tenant_slug, "--status", "failed")

    shown = ok("jobs", "show", str(job_id), "--tenant", tenant_slug)
    assert "Navy" in shown and "max_attempts" in shown
    job = json.loads(ok("jobs", "show", str(job_id), "--tenant", tenant_slug, "--json"))
    assert job["status"] == "queued" and job["payload"]["team"] == "Navy"

    assert "enqueued" in ok("jobs", "events", str(job_id), "--tenant", tenant_slug)
    counts = json.loads(ok("jobs", "counts", "--tenant", tenant_slug, "--json"))
    assert counts["queued"] == 1 and counts["failed"] == 0
    assert "total" in ok("jobs", "counts", "--tenant", tenant_slug)


def test_list_pages_with_the_printed_cursor(tenant_slug: str, tenant_id: uuid.UUID) -> None:
    ids = [enqueue(tenant_slug) for _ in range(3)]
    first = json.loads(ok("jobs", "list", "--tenant", tenant_slug, "--limit", "2", "--json"))
    assert [j["id"] for j in first["items"]] == ids[:0:-1]
    assert f"--cursor {first['next_cursor']}" in ok(
        "jobs", "list", "--tenant", tenant_slug, "--limit", "2"
    )
    rest = json.loads(
        ok("jobs", "list", "--tenant", tenant_slug, "--cursor", first["next_cursor"], "--json")
    )
    assert [j["id"] for j in rest["items"]] == ids[:1]


def test_idempotency_key_enqueues_once(tenant_slug: str, tenant_id: uuid.UUID) -> None:
    args = ["enqueue", "scheduled_preview", "--tenant", tenant_slug, "--payload", preview()]
    first = json.loads(ok(*args, "--idempotency-key", "k1", "--json"))
    again = ok(*args, "--idempotency-key", "k1")
    assert f"job {first['id']} already exists" in again


def test_payload_from_stdin_and_exactly_one_source(tenant_slug: str, tenant_id: uuid.UUID) -> None:
    args = ["enqueue", "scheduled_preview", "--tenant", tenant_slug]
    result = run(*args, "--payload-file", "-", "--json", stdin=preview("Army"))
    assert result.exit_code == 0, result.output
    job = json.loads(
        ok("jobs", "show", str(json.loads(result.output)["id"]), "--tenant", tenant_slug, "--json")
    )
    assert job["payload"]["team"] == "Army"
    assert run(*args).exit_code == 2  # no payload at all is a usage error
    both = run(*args, "--payload", preview(), "--payload-file", "-", stdin=preview())
    assert both.exit_code == 2 and "not both" in both.output


def test_invalid_json_is_refused_without_echoing_it(tenant_slug: str, tenant_id: uuid.UUID) -> None:
    result = run(
        "enqueue",
        "scheduled_preview",
        "--tenant",
        tenant_slug,
        "--payload",
        f'{{"token": "{SECRET}", ',
    )
    assert result.exit_code == 1
    assert "--payload is not valid JSON" in result.output
    assert SECRET not in result.output
    result = run("enqueue", "scheduled_preview", "--tenant", tenant_slug, "--payload", "[1]")
    assert result.exit_code == 1 and "must be a JSON object" in result.output


def test_unknown_type(tenant_slug: str, tenant_id: uuid.UUID) -> None:
    result = run("enqueue", "no_such_type", "--tenant", tenant_slug, "--payload", "{}")
    assert result.exit_code == 1
    assert "unknown job type 'no_such_type'" in result.output


def test_invalid_payload_names_fields_not_values(tenant_slug: str, tenant_id: uuid.UUID) -> None:
    payload = {"credential_id": SECRET, "season": 2026, "team": "Navy", "api_key": SECRET}
    result = run(
        "enqueue", "scheduled_preview", "--tenant", tenant_slug, "--payload", json.dumps(payload)
    )
    assert result.exit_code == 1
    assert "invalid payload for scheduled_preview" in result.output
    assert "credential_id" in result.output and "api_key" in result.output
    assert SECRET not in result.output
    assert "no jobs" in ok("jobs", "list", "--tenant", tenant_slug)


def test_unknown_tenant(tenant_id: uuid.UUID) -> None:
    for tenant in ("no-such-tenant", str(uuid.uuid4())):
        result = run("jobs", "list", "--tenant", tenant)
        assert result.exit_code == 1
        assert f"unknown tenant '{tenant}'" in result.output


def test_missing_job_is_a_clean_error(tenant_slug: str, tenant_id: uuid.UUID) -> None:
    result = run("jobs", "show", "999999999", "--tenant", tenant_slug)
    assert result.exit_code == 1 and "job 999999999 not found" in result.output


def test_cancel_then_retry(tenant_slug: str, tenant_id: uuid.UUID) -> None:
    job_id = enqueue(tenant_slug)
    out = ok("jobs", "cancel", str(job_id), "--tenant", tenant_slug, "--reason", "not needed")
    assert f"job {job_id} cancelled\n" in out
    job = json.loads(ok("jobs", "show", str(job_id), "--tenant", tenant_slug, "--json"))
    assert job["status"] == "cancelled"
    assert "not needed" in ok("jobs", "events", str(job_id), "--tenant", tenant_slug)

    out = ok("jobs", "retry", str(job_id), "--tenant", tenant_slug)
    assert out.startswith(f"job {job_id} retried: attempt 1 of ") and out.endswith(", now queued\n")
    job = json.loads(ok("jobs", "show", str(job_id), "--tenant", tenant_slug, "--json"))
    assert job["status"] == "queued"
    result = run("jobs", "retry", str(job_id), "--tenant", tenant_slug)
    assert result.exit_code == 1 and "only failed or cancelled" in result.output

    # A manual retry of a job that ended without an error records no empty error.
    events = ok("jobs", "events", str(job_id), "--tenant", tenant_slug, "--json").splitlines()
    retry_event = json.loads(events[-1])
    assert retry_event["event_type"] == "retry"
    assert retry_event["data"] == {"attempt": 0, "manual": True}


def test_cancel_and_retry_print_json(tenant_slug: str, tenant_id: uuid.UUID) -> None:
    job_id = enqueue(tenant_slug)
    args = ("--tenant", tenant_slug, "--json")
    cancelled = json.loads(ok("jobs", "cancel", str(job_id), *args))
    assert cancelled == {"job_id": job_id, "status": "cancelled", "stop_requested": False}
    again = json.loads(ok("jobs", "cancel", str(job_id), *args))
    assert again == cancelled
    retried = json.loads(ok("jobs", "retry", str(job_id), *args))
    assert retried["job_id"] == job_id and retried["status"] == "queued"
    assert retried["attempt"] == 1 and retried["max_attempts"] >= 1


@pytest.mark.timeout(30)  # a broken driver would leave the watcher polling
def test_events_follow_stops_when_the_job_ends(tenant_slug: str, tenant_id: uuid.UUID) -> None:
    job_id = enqueue(tenant_slug)
    with drive(tenant_id, job_id):
        out = ok(
            "jobs", "events", str(job_id), "--tenant", tenant_slug, "--follow", "--interval", "0.1"
        )
    kinds = [line.split()[3] for line in out.splitlines() if line.split()[0].isdigit()]
    assert kinds == ["enqueued", "started", "progress", "completed"]


@pytest.mark.timeout(30)  # a broken driver would leave the watcher polling
def test_watch_until_done_reports_success(tenant_slug: str, tenant_id: uuid.UUID) -> None:
    job_id = enqueue(tenant_slug)
    with drive(tenant_id, job_id):
        out = ok(
            "jobs",
            "watch",
            "--tenant",
            tenant_slug,
            "--job",
            str(job_id),
            "--interval",
            "0.1",
            "--until-done",
        )
    assert f"✓ #{job_id} scheduled_preview succeeded" in out
    assert "watched jobs" in out  # the summary table


@pytest.mark.timeout(30)  # a broken driver would leave the watcher polling
def test_watch_jobs_follows_live_jobs_to_their_end(tenant_id: uuid.UUID) -> None:
    good = enqueue(str(tenant_id))
    bad = enqueue(str(tenant_id))
    buffer = io.StringIO()
    with drive(tenant_id, good), drive(tenant_id, bad, fail="provider said no"):
        statuses = watch_jobs(tenant_id, None, 0.05, True, Console(file=buffer, width=200))
    assert statuses == {good: JobStatus.SUCCEEDED, bad: JobStatus.FAILED}
    out = buffer.getvalue()
    assert f"#{bad} scheduled_preview active" in out  # one line per step without a TTY
    assert f"✗ #{bad} scheduled_preview failed: provider said no" in out


def test_watch_with_nothing_live_returns_at_once(tenant_id: uuid.UUID) -> None:
    out = ok("jobs", "watch", "--tenant", str(tenant_id), "--until-done")
    assert "no pending, queued or active jobs" in out
