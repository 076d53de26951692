"""A tenant over its quota does not stop the scheduler (pgjobs/worker/scheduler.py): the
refused schedules' slots are dropped, every other schedule fires, in the same pass."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from helpers import make_tenant
from pydantic import BaseModel
from sqlalchemy import text

from pgjobs import schedules
from pgjobs.db.engine import transaction
from pgjobs.producer import job_type, list_jobs
from pgjobs.producer.quotas import set_quota
from pgjobs.worker.scheduler import fire_due

pytestmark = pytest.mark.usefixtures("jobs_env")


@pytest.fixture
def db_env(use_fresh_db: str) -> str:
    return use_fresh_db


class Tick(BaseModel):
    n: int = 0


tick = job_type("quota_tick", Tick, queue="quotas", description="quota schedule tests")
other_type = job_type("quota_tock", Tick, queue="quotas", description="quota schedule tests")


SLOT = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def due(tenant: uuid.UUID) -> uuid.UUID:
    made = schedules.create(tenant, "tick", tick, cron="* * * * *", payload={})
    move(made.id)
    return made.id


def move(schedule_id: uuid.UUID) -> None:
    """Test setup: the schedule's next slot is SLOT, due at the test's clock."""
    with transaction() as conn:
        conn.execute(
            text("UPDATE job_schedules SET next_run_at = :at WHERE id = :id"),
            {"at": SLOT, "id": schedule_id},
        )


def test_a_tenant_over_its_quota_does_not_block_the_others_schedules() -> None:
    over, fine = (
        make_tenant(f"t-{uuid.uuid4().hex[:12]}"),
        make_tenant(f"t-{uuid.uuid4().hex[:12]}"),
    )
    set_quota(over, 0, job_type="quota_tick")
    other = schedules.create(over, "other", other_type, cron="* * * * *", payload={})
    move(other.id)
    first = due(over)
    due(fine)
    set_quota(over, 1, job_type="quota_tock")  # another type's quota: not in the way
    result = fire_due(now=SLOT)
    assert (result.jobs, result.schedules) == (2, 3)
    assert len(list_jobs(fine).items) == 1
    assert [job.type for job in list_jobs(over).items] == ["quota_tock"]
    assert schedules.get(over, first).next_run_at > SLOT  # its slot was dropped, not retried
    assert fire_due(now=SLOT).jobs == 0
