"""Schedules declared in code and ``sync`` (the API and ``jobctl schedules sync``), and the
other ``jobctl schedules`` commands."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from helpers import invoke
from pydantic import BaseModel

from pgjobs import schedules
from pgjobs.cli.main import cli
from pgjobs.db.models import ScheduleStatus
from pgjobs.producer import job_type, list_jobs
from pgjobs.schedules.errors import InvalidSchedule
from pgjobs.settings import get_settings

pytestmark = pytest.mark.usefixtures("jobs_env")


class Digest(BaseModel):
    kind: str = "daily"


digest = job_type("sched_digest", Digest)


def declared(**overrides: object) -> list[schedules.Definition]:
    """Declarations as an application would make them (not registered: passed to sync)."""
    first = {"cron": "0 3 * * *", "tz": "Europe/Berlin", "payload": {"kind": "daily"}}
    first.update(overrides)
    return [
        _define("digest", **first),
        _define("weekly", cron="@weekly", payload={"kind": "weekly"}),
    ]


def _define(name: str, **options: object) -> schedules.Definition:
    from pgjobs.schedules.definition import define

    return define(name, digest, **options)  # type: ignore[arg-type]


def test_sync_adds_changes_archives_and_reports(tenant_id: uuid.UUID) -> None:
    first = schedules.sync(tenant_id, declared())
    assert (first.added, first.changed, first.archived) == (["digest", "weekly"], [], [])
    digest_row = schedules.get_by_name(tenant_id, "digest")
    assert digest_row.declared and digest_row.timezone == "Europe/Berlin"

    again = schedules.sync(tenant_id, declared())
    assert again.unchanged == ["digest", "weekly"] and not (again.added or again.changed)

    changed = schedules.sync(tenant_id, declared(cron="0 4 * * *"))
    assert changed.changed == ["digest"]
    moved = schedules.get_by_name(tenant_id, "digest")
    assert moved.cron == "0 4 * * *" and moved.next_run_at != digest_row.next_run_at

    mine = schedules.create(tenant_id, "by-hand", digest, cron="@daily")
    only_weekly = [d for d in declared() if d.name == "weekly"]
    dropped = schedules.sync(tenant_id, only_weekly)
    assert dropped.archived == ["digest"]
    assert schedules.get_by_name(tenant_id, "digest").status is ScheduleStatus.ARCHIVED
    assert schedules.get(tenant_id, mine.id) == mine  # made by hand: never touched

    back = schedules.sync(tenant_id, declared())
    assert back.added == ["digest"]
    assert schedules.get_by_name(tenant_id, "digest").status is ScheduleStatus.ACTIVE


def test_sync_keeps_an_operators_pause_and_dry_run_changes_nothing(tenant_id: uuid.UUID) -> None:
    schedules.sync(tenant_id, declared())
    weekly = schedules.get_by_name(tenant_id, "weekly")
    schedules.pause(tenant_id, weekly.id)
    report = schedules.sync(tenant_id, declared())
    assert report.unchanged == ["digest", "weekly"]
    assert schedules.get(tenant_id, weekly.id).status is ScheduleStatus.PAUSED

    before = schedules.list(tenant_id, status=list(ScheduleStatus)).items
    dry = schedules.sync(tenant_id, declared(payload={"kind": "other"})[:1], dry_run=True)
    assert dry.changed == ["digest"] and dry.archived == ["weekly"] and dry.dry_run
    assert schedules.list(tenant_id, status=list(ScheduleStatus)).items == before


def test_sync_with_nothing_declared_refuses_to_archive_everything(tenant_id: uuid.UUID) -> None:
    schedules.sync(tenant_id, declared())
    with pytest.raises(InvalidSchedule, match="JOBS_IMPORTS"):
        schedules.sync(tenant_id, [])
    assert len(schedules.list(tenant_id).items) == 2
    report = schedules.sync(tenant_id, [], allow_empty=True)
    assert report.archived == ["digest", "weekly"]


def test_declaring_a_name_twice_differently_fails() -> None:
    schedules.schedule("twice", digest, cron="@daily")
    try:
        schedules.schedule("twice", digest, cron="@daily")  # the same again is fine
        with pytest.raises(InvalidSchedule):
            schedules.schedule("twice", digest, cron="@hourly")
        with pytest.raises(InvalidSchedule):
            schedules.schedule("bad", digest, cron="@hourly", tz="Atlantis")
    finally:
        schedules.forget("twice")


@pytest.fixture
def app_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``JOBS_IMPORTS=schedule_jobs`` (tests/schedule_jobs.py); its declarations forgotten
    after the test, so other tests' syncs do not see them."""
    monkeypatch.setenv("JOBS_IMPORTS", "schedule_jobs")
    get_settings.cache_clear()
    yield
    schedules.forget("heartbeat")
    schedules.forget("nightly-digest")
    get_settings.cache_clear()


@pytest.mark.usefixtures("app_imports")
def test_cli_sync_imports_the_application_and_reports(
    tenant_id: uuid.UUID, tenant_slug: str
) -> None:
    result = invoke(cli, "schedules", "sync", "--tenant", tenant_slug, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would be added (2): heartbeat, nightly-digest" in result.output
    assert schedules.list(tenant_id).items == []
    result = invoke(cli, "schedules", "sync", "--tenant", tenant_slug, "--json")
    assert result.exit_code == 0, result.output
    # (structlog, unconfigured in some test orders, prints to stdout: skip to the JSON)
    (report,) = json.loads(result.output[result.output.index("[\n") :])
    assert report["added"] == ["heartbeat", "nightly-digest"]
    result = invoke(cli, "schedules", "sync", "--all-tenants")
    assert result.exit_code == 0, result.output
    assert "unchanged (2)" in result.output
    result = invoke(cli, "schedules", "sync")
    assert result.exit_code == 2  # --tenant or --all-tenants


def test_cli_commands(tenant_id: uuid.UUID, tenant_slug: str) -> None:
    t = ("--tenant", tenant_slug)
    result = invoke(
        cli, "schedules", "create", "nightly", "sched_digest", *t,
        "--cron", "30 2 * * *", "--tz", "Europe/Berlin", "--payload", '{"kind": "n"}',
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "created schedule nightly" in result.output
    result = invoke(cli, "schedules", "create", "often", "sched_digest", *t, "--every", "15")
    assert result.exit_code == 0, result.output

    result = invoke(cli, "schedules", "list", *t)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["NAME", "STATUS", "WHEN"]
    assert "30 2 * * * (Europe/Berlin)" in lines[1] and "every 15s" in lines[2]

    result = invoke(cli, "schedules", "upcoming", "nightly", *t, "-n", "2", "--local")
    assert result.exit_code == 0, result.output
    assert all(line.endswith(("+01:00", "+02:00")) for line in result.output.splitlines())
    made = schedules.get_by_name(tenant_id, "often")
    result = invoke(cli, "schedules", "show", str(made.id), *t, "--json")
    assert json.loads(result.output)["interval_seconds"] == 15

    result = invoke(cli, "schedules", "update", "often", *t, "--cron", "@hourly", "--jitter", "9")
    assert result.exit_code == 0, result.output
    assert schedules.get(tenant_id, made.id).cron == "@hourly"

    result = invoke(cli, "schedules", "run-now", "often", *t)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("job ")  # after any log line
    assert len(list_jobs(tenant_id).items) == 1

    for verb, status in (("pause", "paused"), ("archive", "archived"), ("resume", "active")):
        result = invoke(cli, "schedules", verb, "often", *t)
        assert result.exit_code == 0, result.output
        assert f": {status}," in result.output

    for bad in (
        ("create", "x", "sched_digest", *t, "--cron", "99 * * * *"),
        ("create", "y", "sched_digest", *t, "--every", "10", "--tz", "Nowhere/At-All"),
        ("create", "z", "sched_digest", *t, "--every", "10", "--payload", '{"kind": 5}'),
        ("show", "missing", *t),
        ("run-now", str(uuid.uuid4()), *t),
    ):
        result = invoke(cli, "schedules", *bad)
        assert result.exit_code == 1, (bad, result.output)
        assert result.output.startswith("Error: ")
    schedules.pause(tenant_id, made.id)
    result = invoke(cli, "schedules", "run-now", "often", *t)
    assert result.exit_code == 1 and "resume it first" in result.output
