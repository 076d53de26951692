"""One thread per worker process that keeps the leases of its running jobs alive.

Every ``heartbeat_seconds`` it extends all leases in one statement and learns, on the way, which
jobs were asked to cancel and which were lost. It also enforces each job type's time limit and,
once the process is shutting down and the grace period is over, interrupts the jobs still
running so the runner releases them (raising into a handler's thread, as Dramatiq's TimeLimit
middleware does).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from dramatiq.middleware.threading import raise_thread_exception

from pgjobs.db.engine import autocommit
from pgjobs.db.jobs import state_machine as sm
from pgjobs.logs import get_logger
from pgjobs.worker.context import JobControls
from pgjobs.worker.errors import JobTimeLimitExceeded

log = get_logger(__name__)


class WorkerShutdown(BaseException):
    """Raised into a handler still running when the shutdown grace period is over."""


@dataclass(eq=False)
class RunningJob:
    job_id: int
    attempt: int
    thread_id: int
    deadline: float
    controls: JobControls
    interrupted: bool = field(default=False)


class LeaseKeeper:
    def __init__(self, *, lease_seconds: float, heartbeat_seconds: float, grace: float) -> None:
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.grace = grace
        self._jobs: dict[int, RunningJob] = {}
        self._held: dict[int, int] = {}
        """Claimed jobs waiting for a thread (pgjobs/worker/claim_ahead.py): job id -> attempt."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._shutdown_at: float | None = None
        self._thread: threading.Thread | None = None

    def track(self, job: RunningJob) -> None:
        with self._lock:
            self._jobs[job.job_id] = job
            self._start()

    def untrack(self, job: RunningJob) -> None:
        with self._lock:
            if self._jobs.get(job.job_id) is job:
                del self._jobs[job.job_id]

    def hold(self, held: list[tuple[int, int]]) -> None:
        """Keep the leases of claimed jobs that wait for a thread: (job id, attempt) pairs."""
        with self._lock:
            self._held.update(held)
            self._start()

    def unhold(self, job_ids: list[int]) -> None:
        with self._lock:
            for job_id in job_ids:
                self._held.pop(job_id, None)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
            self._thread.start()

    def begin_shutdown(self) -> None:
        """Start the grace period; jobs still running at its end are interrupted."""
        self._shutdown_at = time.monotonic()
        log.info("worker.shutdown.grace", seconds=self.grace, running=len(self._jobs))
        self._wake.set()

    def end_shutdown(self) -> None:
        """A worker boots in this process again (an in-process worker stopped before, as in
        tests): its jobs must not be interrupted by the earlier worker's grace period."""
        self._shutdown_at = None

    @property
    def shutting_down(self) -> bool:
        return self._shutdown_at is not None

    def _run(self) -> None:
        while True:
            self._wake.wait(self._tick())
            self._wake.clear()
            try:
                self._beat()
            except Exception as exc:  # noqa: BLE001 - keep beating; the lease has slack
                log.warning("lease.heartbeat_failed", error_type=type(exc).__name__)

    def _tick(self) -> float:
        if self._shutdown_at is not None:
            return min(self.heartbeat_seconds, 0.25)
        return self.heartbeat_seconds

    def _beat(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
            held = list(self._held.items())
        if not jobs and not held:
            return
        now = time.monotonic()
        for job in jobs:
            if not job.interrupted and now > job.deadline:
                job.interrupted = True
                log.warning("job.time_limit_exceeded", job_id=job.job_id)
                raise_thread_exception(job.thread_id, JobTimeLimitExceeded)
            elif (
                not job.interrupted
                and self._shutdown_at is not None
                and now > self._shutdown_at + self.grace
            ):
                job.interrupted = True
                raise_thread_exception(job.thread_id, WorkerShutdown)
        with autocommit() as conn:
            states = sm.extend_leases(
                conn, [(j.job_id, j.attempt) for j in jobs] + held, self.lease_seconds
            )
        for job in jobs:
            state = states.get(job.job_id)
            if state is None:
                continue
            if not state.held:
                job.controls.lease_lost.set()
            if state.cancel_requested:
                job.controls.cancel_requested.set()
