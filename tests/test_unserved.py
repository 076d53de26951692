"""Jobs nobody runs are reported: workers record what they serve (pgjobs/worker/presence.py,
pgjobs/producer/served.py), and `jobctl health`, the maintenance process and the
``pgjobs_unserved_jobs`` gauge name the due jobs of types no running worker serves."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
import redis as redis_lib
from helpers import invoke, json_logs
from prometheus_client import REGISTRY
from pydantic import BaseModel

from pgjobs.cli.dev_commands import health
from pgjobs.producer import enqueue, flush
from pgjobs.producer.broker import get_broker
from pgjobs.producer.job_types import job_type, unregister
from pgjobs.producer.served import (
    HEARTBEATS_KEY,
    WORKERS_KEY,
    WaitingType,
    WorkerRecord,
    live_workers,
    unserved_jobs,
)
from pgjobs.settings import get_settings
from pgjobs.worker import maintenance, metrics, presence
from pgjobs.worker.handlers.registry import handles
from pgjobs.worker.handlers.registry import unregister as unregister_handler

pytestmark = pytest.mark.usefixtures("jobs_env")

StartWorker = Callable[..., dramatiq.Worker]


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    return use_fresh_db  # the report is about every tenant's jobs


class Frame(BaseModel):
    n: int = 0


@pytest.fixture
def served_type() -> Iterator[str]:
    """A job type with a handler, on a queue of its own."""
    declared = job_type("unserved_test_served", Frame, queue="unserved-served")
    handles(declared)(lambda ctx: {"n": ctx.payload.n})
    yield declared.name
    unregister(declared.name)
    unregister_handler(declared.name)


@pytest.fixture
def orphan_type() -> Iterator[Callable[[], str]]:
    """Declares, when called, a job type that no worker started before serves (as if its
    module were missing from the workers' JOBS_IMPORTS)."""

    def declare() -> str:
        return job_type("unserved_test_orphan", Frame, queue="unserved-orphan").name

    yield declare
    unregister("unserved_test_orphan")


def _unserved_names() -> list[str]:
    return [w.job_type for w in unserved_jobs()]


def test_running_workers_are_listed_with_what_they_serve(
    tenant_id: uuid.UUID,
    served_type: str,
    orphan_type: Callable[[], str],
    worker_factory: StartWorker,
) -> None:
    assert live_workers() == []
    enqueue(served_type, {"n": 1}, tenant_id=tenant_id)
    assert flush(timeout=10)
    assert _unserved_names() == [served_type]  # no worker yet
    elsewhere = WorkerRecord("b", "h", 1, ("unserved-served",), (served_type,), time.time())
    assert unserved_jobs([elsewhere]) == []  # a worker that serves it, say on another host

    worker = worker_factory(threads=2)
    [record] = live_workers()
    assert record.broker_id == get_broker().broker_id
    assert "unserved-served" in record.queues and served_type in record.job_types
    orphan = orphan_type()
    enqueue(orphan, {}, tenant_id=tenant_id)
    enqueue(orphan, {}, tenant_id=tenant_id)
    assert flush(timeout=10)
    [unserved] = unserved_jobs()
    assert (unserved.job_type, unserved.waiting, unserved.queue) == (orphan, 2, "unserved-orphan")
    assert unserved.due_for_seconds >= 0

    worker.stop(timeout=10_000)
    assert live_workers() == []  # a stopping worker removes its record
    assert sorted(_unserved_names()) == [orphan]  # the served type's job ran


def test_a_worker_whose_heartbeat_stopped_is_not_running(
    redis_client: redis_lib.Redis, jobs_env: str
) -> None:
    """A worker killed with -9 leaves its record; readers drop it once Dramatiq's heartbeat of
    its broker id is older than the heartbeat timeout (or was never written)."""
    now_ms = int(time.time() * 1000)
    timeout = get_settings().broker_heartbeat_timeout_ms
    records = {
        "alive": now_ms,
        "dead": now_ms - timeout - 1000,
        "never-beat": None,
    }
    for broker_id, beat in records.items():
        record = WorkerRecord(broker_id, "host", 1, ("q",), ("t",), time.time())
        redis_client.hset(f"{jobs_env}:{WORKERS_KEY}", broker_id, record.to_json())
        if beat is not None:
            redis_client.zadd(f"{jobs_env}:{HEARTBEATS_KEY}", {broker_id: beat})
    redis_client.hset(f"{jobs_env}:{WORKERS_KEY}", "junk", "not json")
    assert [r.broker_id for r in live_workers()] == ["alive"]
    assert redis_client.hkeys(f"{jobs_env}:{WORKERS_KEY}") == [b"alive"]


def test_health_warns_about_unserved_jobs_and_stays_ok(
    tenant_id: uuid.UUID,
    served_type: str,
    orphan_type: Callable[[], str],
    worker_factory: StartWorker,
) -> None:
    worker_factory(threads=1)
    orphan = orphan_type()
    enqueue(orphan, {}, tenant_id=tenant_id)
    assert flush(timeout=10)
    result = invoke(health)
    assert result.exit_code == 0, result.output
    assert "workers   ok" in result.output and "1 running" in result.output
    assert f"WARNING: 1 due job(s) of type {orphan} (queue unserved-orphan)" in result.output
    assert served_type not in result.output.split("WARNING", 1)[1]


def test_maintenance_warns_once_per_type_and_interval(
    tenant_id: uuid.UUID,
    orphan_type: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orphan = orphan_type()
    enqueue(orphan, {}, tenant_id=tenant_id)
    enqueue(orphan, {}, tenant_id=tenant_id)
    assert flush(timeout=10)
    with json_logs(monkeypatch, maintenance) as logs:
        monkeypatch.setenv("JOBS_UNSERVED_WARNING_SECONDS", "3600")
        get_settings.cache_clear()
        assert [w.job_type for w in maintenance.report_unserved_once()] == [orphan]
        assert "jobs.unserved" not in logs.getvalue()  # not due that long yet
        monkeypatch.setenv("JOBS_UNSERVED_WARNING_SECONDS", "0")
        get_settings.cache_clear()
        maintenance.report_unserved_once()
        unregister(orphan)  # a maintenance process without the type's module
        maintenance.report_unserved_once()
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    unserved = [line for line in lines if line["event"] == "jobs.unserved"]
    unknown = [line for line in lines if line["event"] == "relay.unknown_job_type"]
    assert len(unserved) == 2 and len(unknown) == 1  # one line per type and pass
    assert unserved[0]["job_type"] == orphan and unserved[0]["waiting"] == 2
    assert unserved[0]["queue"] == "unserved-orphan" and unserved[1]["queue"] is None
    assert unknown[0]["job_type"] == orphan and "JOBS_IMPORTS" in unknown[0]["hint"]
    period = dict((name, p) for name, _, p in maintenance.SERVICES)["unserved"]
    assert callable(period) and period() == 0  # one pass per JOBS_UNSERVED_WARNING_SECONDS


def test_worker_logs_what_it_serves_and_what_it_cannot(
    served_type: str, orphan_type: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgjobs.worker.setup import build_broker

    orphan = orphan_type()  # declared before the worker starts, but without a handler

    with json_logs(monkeypatch, presence) as logs:
        broker = build_broker()
        worker = dramatiq.Worker(
            broker, queues={"unserved-orphan", "unserved-served", "nobody-uses-this"}
        )
        worker.start()
        worker.stop(timeout=10_000)
    lines = {
        line["event"]: line
        for line in map(json.loads, filter(None, logs.getvalue().splitlines()))
        if line["event"].startswith("worker.")
    }
    assert lines["worker.serving"]["queues"] == ["unserved-orphan", "unserved-served"]
    assert lines["worker.serving"]["job_types"] == [served_type]
    assert lines["worker.queues_without_types"]["queues"] == ["nobody-uses-this"]
    assert lines["worker.types_without_handler"]["job_types"] == [orphan]


def test_unserved_gauge_follows_the_report() -> None:
    def value(job_type: str) -> Any:
        return REGISTRY.get_sample_value("pgjobs_unserved_jobs", {"job_type": job_type})

    metrics.unserved([WaitingType("gauge_a", 3, 12.0, "q"), WaitingType("gauge_b", 1, 1.0, None)])
    assert (value("gauge_a"), value("gauge_b")) == (3, 1)
    metrics.unserved([WaitingType("gauge_b", 2, 5.0, None)])
    assert (value("gauge_a"), value("gauge_b")) == (0, 2)  # served now: back to 0
