"""A credential's value never leaves an attempt through its result, its progress or its logs.

Jobs run on an in-process Dramatiq worker against real PostgreSQL and Redis, with production
logging (JSON, DEBUG, SQL statements included) captured. The handler opens a credential and
keeps the value in a local after its ``with`` block, then returns or logs it. Afterwards every
row of ``content_jobs`` and ``job_events`` (read raw with SQL) and every log line are searched
for the value: as written, in its JSON escapes, and as the strings and keys JSON lines decode to.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from helpers import KEY_A, json_logs, set_keys
from jobwait import events_of, wait_for
from pydantic import BaseModel
from sqlalchemy import text

import pgjobs.db.query_log
import pgjobs.worker.credentials
import pgjobs.worker.runner
from pgjobs.db.engine import transaction
from pgjobs.db.models import EventType, JobStatus
from pgjobs.db.schemas.job import JobEventRead, JobRead
from pgjobs.producer import enqueue
from pgjobs.producer.job_types import job_type
from pgjobs.settings import get_settings
from pgjobs.vault.credentials import create_credential
from pgjobs.vault.redaction import REDACTED
from pgjobs.worker.context import JobContext
from pgjobs.worker.errors import PermanentError
from pgjobs.worker.handlers.registry import handles

pytestmark = pytest.mark.usefixtures("jobs_env")

Shape = Literal["token", "key", "substring", "whole", "number", "logs_after", "raises", "clean"]


class Leaky(BaseModel):
    credential_id: uuid.UUID
    shape: Shape


leaky_type = job_type("test_leaky_result", Leaky, queue="secretq", max_attempts=3)


def returned(shape: Shape, value: str) -> Any:
    """What the handler returns for each result shape."""
    return {
        "token": lambda: {"token": value, "ok": True},
        "key": lambda: {"outer": {value: 1}},
        "substring": lambda: {"items": ["x", f"Bearer {value} (cached)"]},
        "whole": lambda: value,
        "number": lambda: {"pin": int(value)},
        "clean": lambda: {"ok": True, "length": len(value), "note": "nothing secret"},
    }[shape]()


@handles(leaky_type)
def leaky(ctx: JobContext[Leaky]) -> Any:
    with ctx.credential(ctx.payload.credential_id) as secret:
        value = secret.reveal()
    # The block is over; the value lives on in a local, as it does in careless handlers.
    shape = ctx.payload.shape
    if shape == "logs_after":
        ctx.log.info("handler.after_block", value=value, note=f"key={value};", seen={value: [1]})
        ctx.progress(50, f"progress with {value}")
        ctx.progress(60, "x" * 490 + value)  # the message is cut at 500 characters
        return {"ok": True}
    if shape == "raises":
        try:
            raise RuntimeError(f"provider echoed {value}")
        except RuntimeError:
            ctx.log.exception("handler.call_failed")
        raise PermanentError(f"refused {value}")
    return returned(shape, value)


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    """A database of the test's own: every row of the job tables is searched."""
    return use_fresh_db


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch, jobs_env: str) -> Iterator[io.StringIO]:
    set_keys(monkeypatch, f"ka:{KEY_A}")
    modules = (pgjobs.worker.runner, pgjobs.worker.credentials, pgjobs.db.query_log)
    with json_logs(monkeypatch, *modules) as buffer:
        yield buffer
    get_settings.cache_clear()


ORDINARY = f"CANARY-{uuid.uuid4().hex}"
ESCAPED = f'CANARY-{uuid.uuid4().hex[:12]}-"quoted"\\back-é'
"""Characters JSON escapes: a stored jsonb and a JSON log line show this one escaped."""
NUMERIC = str(uuid.uuid4().int)[:18]


def _strings(value: Any) -> Iterator[str]:
    """Every string of a decoded JSON value: keys, strings, and numbers as text."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif value is not None:
        yield str(value)


def leaks(secret: str, where: str, rendered: str) -> list[str]:
    """Where ``secret`` shows in ``rendered`` (text, or JSON documents one per line)."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    found = [f"{where}: {form!r} in the text" for form in forms if form in rendered]
    for number, line in enumerate(rendered.splitlines(), 1):
        try:
            decoded = json.loads(line)
        except ValueError:
            continue
        if any(secret in string for string in _strings(decoded)):
            found.append(f"{where} line {number}: {line[:300]}")
    return found


def job_rows() -> str:
    """Every row of content_jobs and job_events, every column, as JSON lines and as records."""
    lines = []
    with transaction() as conn:
        for table in ("content_jobs", "job_events"):
            for form in ("row_to_json(t)::text", "t::text"):
                lines += conn.execute(text(f"SELECT {form} FROM {table} t")).scalars().all()
    return "\n".join(lines)


@dataclass
class Runs:
    """Runs the leaky handler on a worker, then searches everything the run left."""

    tenant_id: uuid.UUID
    logs: io.StringIO
    capfd: pytest.CaptureFixture[str]
    start_worker: Any

    def run(self, secret: str, shape: Shape) -> JobRead:
        credential = create_credential(self.tenant_id, provider="custom", name="x", secret=secret)
        self.start_worker(threads=2)
        payload = {"credential_id": str(credential.id), "shape": shape}
        job = enqueue(leaky_type, payload, tenant_id=self.tenant_id)
        return wait_for(self.tenant_id, job.id)

    def events(self, job: JobRead, kind: EventType | None = None) -> list[JobEventRead]:
        events = events_of(self.tenant_id, job.id)
        return [e for e in events if kind is None or e.event_type is kind]

    def assert_nowhere(self, secret: str, job: JobRead) -> list[dict[str, Any]]:
        """The secret is in no job row and no output; returns the JSON log lines."""
        rows, captured, logged = job_rows(), self.capfd.readouterr(), self.logs.getvalue()
        assert f'"id":{job.id},' in rows  # the search covers the job's rows
        found = leaks(secret, "database", rows) + leaks(secret, "logs", logged)
        found += leaks(secret, "stdout", captured.out) + leaks(secret, "stderr", captured.err)
        assert not found, "\n".join(found)
        lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
        assert any(line["event"] == "credential.used" for line in lines)  # the capture saw it
        return lines


@pytest.fixture
def runs(
    tenant_id: uuid.UUID,
    logs: io.StringIO,
    capfd: pytest.CaptureFixture[str],
    worker_factory: Any,
) -> Runs:
    return Runs(tenant_id, logs, capfd, worker_factory)


@pytest.mark.parametrize(
    ("shape", "secret", "where"),
    [
        ("token", ORDINARY, "at $.token"),
        ("token", ESCAPED, "at $.token"),
        ("key", ORDINARY, "in a key of $.outer"),
        ("key", ESCAPED, "in a key of $.outer"),
        ("substring", ORDINARY, "at $.items[1]"),
        ("substring", ESCAPED, "at $.items[1]"),
        ("whole", ESCAPED, "at $"),
        ("number", NUMERIC, "at $.pin"),
    ],
)
def test_a_result_carrying_the_secret_fails_the_job_and_is_not_stored(
    shape: Shape, secret: str, where: str, runs: Runs
) -> None:
    done = runs.run(secret, shape)
    error = f"ResultContainsSecret: result contains a credential secret of this attempt ({where})"
    assert (done.status, done.attempts, done.result) == (JobStatus.FAILED, 1, None)
    assert done.error_message == error
    events = runs.events(done)
    assert [e.event_type for e in events] == [
        EventType.ENQUEUED,
        EventType.STARTED,
        EventType.FAILED,
    ]
    assert events[-1].data["error"] == error
    lines = runs.assert_nowhere(secret, done)
    failed = [line for line in lines if line["event"] == "job.failed"]
    assert [(f["error"], f["permanent"]) for f in failed] == [(error, True)]


def test_the_secret_is_redacted_from_what_the_handler_logs_and_reports_after_its_block(
    runs: Runs,
) -> None:
    done = runs.run(ESCAPED, "logs_after")
    assert (done.status, done.result) == (JobStatus.SUCCEEDED, {"ok": True})
    assert [p.data["message"] for p in runs.events(done, EventType.PROGRESS)] == [
        f"progress with {REDACTED}",
        "x" * 490 + REDACTED,  # redacted before it is cut: no head of the value is left
    ]
    lines = runs.assert_nowhere(ESCAPED, done)
    after = [line for line in lines if line["event"] == "handler.after_block"]
    assert [(a["value"], a["note"], a["seen"]) for a in after] == [
        (REDACTED, f"key={REDACTED};", {REDACTED: [1]})
    ]


def test_the_secret_is_redacted_from_an_error_raised_and_logged_after_the_block(
    runs: Runs,
) -> None:
    done = runs.run(ORDINARY, "raises")
    assert (done.status, done.attempts) == (JobStatus.FAILED, 1)
    assert done.error_message == f"PermanentError: refused {REDACTED}"
    lines = runs.assert_nowhere(ORDINARY, done)
    logged = [line for line in lines if line["event"] == "handler.call_failed"]
    assert len(logged) == 1 and f"provider echoed {REDACTED}" in json.dumps(logged[0])


def test_a_result_without_the_secret_is_stored_unchanged(runs: Runs) -> None:
    done = runs.run(ESCAPED, "clean")
    assert done.status is JobStatus.SUCCEEDED and done.error_message is None
    assert done.result == returned("clean", ESCAPED)
    runs.assert_nowhere(ESCAPED, done)
