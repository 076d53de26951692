"""One attempt of one job: claim, run the handler, record the outcome.

This is the body of the Dramatiq actors (pgjobs/worker/app.py). Every write goes through
pgjobs/db/jobs/state_machine.py; every write after the claim is fenced by the attempt number, so a
worker that lost its lease cannot overwrite what the next attempt does.

Outcomes: succeeded (handler returned); cancelled (stopped at a checkpoint after a cancel
request); retry with backoff, or failed when attempts are used up (handler raised, or ran past
its time limit); failed at once for permanent errors (PermanentError, payload validation,
credential decryption, unknown type, a result carrying a secret of the attempt); released back
to the queue on shutdown.

Secrets: every credential value the attempt opens stays known (db.redaction.KnownSecrets) from
its first use until the outcome is recorded. It is redacted from every log line of the attempt,
its error text and its progress messages, and a result that carries it fails the job
(ResultContainsSecret) instead of being stored.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import structlog
from dramatiq.middleware import CurrentMessage
from pydantic import ValidationError

from pgjobs.db.engine import autocommit
from pgjobs.db.errors import DatabaseUnavailable, JobsError
from pgjobs.db.jobs import state_machine as sm
from pgjobs.logs import get_logger
from pgjobs.producer import broker
from pgjobs.producer.errors import UnknownJobType
from pgjobs.producer.job_types import JobType, get_job_type
from pgjobs.settings import Settings, get_settings
from pgjobs.vault.cipher import CredentialCryptoError
from pgjobs.vault.redaction import KnownSecrets, redact_text
from pgjobs.worker import metrics
from pgjobs.worker.claim_ahead import ClaimAhead, NotClaimed
from pgjobs.worker.context import JobContext, JobControls
from pgjobs.worker.errors import JobCancelled, JobTimeLimitExceeded, LeaseLost, PermanentError
from pgjobs.worker.handlers.registry import get_handler
from pgjobs.worker.leases import LeaseKeeper, RunningJob, WorkerShutdown
from pgjobs.worker.limits import releaser
from pgjobs.worker.state_writer import StateWriter

log = get_logger("pgjobs.worker.job")
T = TypeVar("T")

_MAX_ERROR = 2000
_HOST = socket.gethostname()


class MalformedMessage(JobsError):
    """The message's arguments are not (job id, tenant id): it is dead-lettered, not retried."""


class ResultContainsSecret(PermanentError):
    """The handler returned a value carrying a secret of its attempt. The result is not stored
    (every status reader of the tenant would see it) and the job fails without a retry (the
    same code would return it again). The message says where, never what."""

    def __init__(self, where: str | None) -> None:
        at = f" ({where})" if where else ""
        super().__init__(f"result contains a credential secret of this attempt{at}")


def worker_name() -> str:
    return f"{_HOST}:{os.getpid()}"


class PerProcess(Generic[T]):
    """One instance per process: built on first use, and built again after a fork (threads,
    pools and queues must not cross processes)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None
        self._pid: int | None = None

    def __call__(self) -> T:
        with self._lock:
            if self._value is None or self._pid != os.getpid():
                self._value, self._pid = self._build(), os.getpid()
            return self._value

    def reset(self) -> None:
        """Build a new one on next use (tests that change settings)."""
        with self._lock:
            self._value = None


def _new_keeper() -> LeaseKeeper:
    settings = get_settings()
    return LeaseKeeper(
        lease_seconds=settings.lease_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
        grace=settings.shutdown_grace_seconds,
    )


lease_keeper = PerProcess(_new_keeper)
"""This process's lease keeper."""
state_writer = PerProcess(lambda: StateWriter(worker=worker_name()))
"""This process's writer of claims and completions."""
claim_ahead = PerProcess(lambda: ClaimAhead(state_writer, lease_keeper))
"""This process's claims made at fetch time."""


def run_job(job_id: Any, tenant_id: Any) -> None:
    """The actor: run one delivery of a job's message (a duplicate delivery does nothing)."""
    job_id, tenant = _parse_args(job_id, tenant_id)
    message = CurrentMessage.get_current_message()
    message_id = message.message_id if message is not None else None
    with structlog.contextvars.bound_contextvars(
        job_id=job_id, tenant_id=str(tenant), message_id=message_id
    ):
        settings = get_settings()
        ahead = claim_ahead().take(message_id)
        if ahead is NotClaimed.NOT_CLAIMED:
            request = sm.ClaimRequest(job_id, tenant, message_id)
            claimed = with_db_retry(lambda: state_writer().claim([request])[0])
        else:
            claimed = ahead
        if claimed is None:
            log.info("job.claim.skipped")
            metrics.claims_skipped.inc()
            return
        if claimed.rescued:
            log.warning("job.claim.took_over_expired_lease", attempt=claimed.attempt)
        Attempt(claimed, message_id, settings).run()


def _parse_args(job_id: Any, tenant_id: Any) -> tuple[int, uuid.UUID]:
    parsed = broker.job_args((job_id, tenant_id))
    if parsed is None:
        log.error("job.message.malformed", reason="arguments are not (job_id, tenant_id)")
        raise MalformedMessage("message arguments are not (job_id, tenant_id)")
    return parsed


def with_db_retry(action: Callable[[], T], *, attempts: int = 8) -> T:
    """Run a state-machine write, retrying while PostgreSQL is unreachable (a restart takes
    seconds). Writes are fenced by attempt, so repeating one that did commit is a no-op."""
    delay = 0.25
    for n in range(attempts):
        try:
            return action()
        except DatabaseUnavailable:
            if n == attempts - 1:
                raise
            log.warning("db.unavailable.retrying", retry_in_s=delay)
            time.sleep(delay)
            delay = min(delay * 2, 4.0)
    raise AssertionError("unreachable")


class Attempt:
    """Runs the handler for a claimed job and records exactly one outcome."""

    def __init__(self, claimed: sm.ClaimedJob, message_id: str | None, settings: Settings):
        self.job = claimed
        self.message_id = message_id
        self.settings = settings
        self.secrets = KnownSecrets()
        self.started = time.perf_counter()

    def run(self) -> None:
        job = self.job
        with structlog.contextvars.bound_contextvars(job_type=job.type, attempt=job.attempt):
            log.debug("job.started", max_attempts=job.max_attempts)
            try:
                job_type = get_job_type(job.type)
            except UnknownJobType:
                self._fail(f"unknown job type {job.type!r}", permanent=True)
                return
            handler = get_handler(job.type)
            if handler is None:
                self._fail(f"no handler registered for job type {job.type!r}", permanent=True)
                return
            try:
                payload = job_type.payload_model.model_validate(job.payload)
            except ValidationError as exc:
                fields = sorted({".".join(map(str, e["loc"])) or "(payload)" for e in exc.errors()})
                self._fail(f"invalid payload: {', '.join(fields)}", permanent=True)
                return
            self._run_handler(job_type, handler, payload)

    def _run_handler(self, job_type: JobType[Any], handler: Any, payload: Any) -> None:
        job = self.job
        controls = JobControls(
            write_progress=self._write_progress,
            refresh=self._refresh,
            open_credential=self._open_credential,
            progress_interval=self.settings.progress_interval_seconds,
        )
        ctx: JobContext[Any] = JobContext(
            job_id=job.id,
            tenant_id=job.tenant_id,
            job_type=job.type,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            message_id=self.message_id,
            payload=payload,
            log=log,
            controls=controls,
        )
        keeper = lease_keeper()
        running = RunningJob(
            job.id,
            job.attempt,
            threading.get_ident(),
            time.monotonic() + job_type.time_limit_seconds,
            controls,
        )
        # The attempt's secrets are redacted from its log lines until the outcome is recorded.
        with self.secrets.active():
            keeper.track(running)
            try:
                outcome = self._call(handler, ctx)
            finally:
                # before the outcome is written: a time limit must not interrupt the write
                keeper.untrack(running)
            self._record_outcome(job_type, outcome)

    def _call(self, handler: Any, ctx: JobContext[Any]) -> str | BaseException:
        """Run the handler: its result as JSON text, or what it raised (or the refusal of a
        result that carries a secret of the attempt: checked on the one serialisation, and
        only when the attempt opened a credential)."""
        try:
            result = handler(ctx)
            ctx.flush_progress()
            result_json = json.dumps(result, allow_nan=False)
            if self.secrets and self.secrets.found_in(result_json):
                return ResultContainsSecret(self.secrets.where(result))
            return result_json
        except Exception as exc:  # noqa: BLE001 - every error becomes an outcome
            return exc
        except WorkerShutdown as exc:  # a BaseException, raised into the thread at shutdown
            return exc

    def _record_outcome(self, job_type: JobType[Any], outcome: str | BaseException) -> None:
        job = self.job
        if isinstance(outcome, str):
            self._complete(outcome)
        elif isinstance(outcome, JobCancelled):
            self._cancelled()
        elif isinstance(outcome, LeaseLost):
            log.warning("job.lease_lost")
            metrics.outcome(job.type, "lease_lost")
        elif isinstance(outcome, WorkerShutdown):
            self._release()
        elif isinstance(outcome, JobTimeLimitExceeded):
            limit = job_type.time_limit_seconds
            self._retry_or_fail(job_type, f"time limit of {limit:g}s exceeded", exc=None)
        elif isinstance(outcome, PermanentError | CredentialCryptoError | ValidationError):
            self._fail(self._error_text(outcome), permanent=True, exc=outcome)
        else:
            self._retry_or_fail(job_type, self._error_text(outcome), exc=outcome)

    # --- controls handed to the context ------------------------------------------------------

    def _write_progress(self, percent: int, message: str | None) -> tuple[bool, bool]:
        """A progress write rides out a database blip like the outcomes do: losing the
        connection for a second must not cost the job an attempt."""

        def write() -> sm.LeaseState:
            with autocommit() as conn:
                return sm.record_progress(
                    conn,
                    self.job.id,
                    self.job.attempt,
                    percent,
                    message,
                    self.settings.lease_seconds,
                )

        state = with_db_retry(write)
        return state.held, state.cancel_requested

    def _refresh(self) -> tuple[bool, bool]:
        with autocommit() as conn:
            held = [(self.job.id, self.job.attempt)]
            state = sm.extend_leases(conn, held, self.settings.lease_seconds)[self.job.id]
        return state.held, state.cancel_requested

    @contextmanager
    def _open_credential(self, credential_id: uuid.UUID) -> Iterator[Any]:
        """Decrypt for the block; the value is remembered until the attempt ends only so that
        its log lines, error texts, progress messages and result can be checked for it (added
        here too, not only by the block's scope, for a credential opened in another thread)."""
        from pgjobs.worker.credentials import use_credential

        with use_credential(self.job.tenant_id, credential_id) as plaintext:
            self.secrets.add(plaintext.reveal())
            yield plaintext

    # --- outcomes ------------------------------------------------------------------------------

    def _elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 2)

    def _error_text(self, exc: BaseException) -> str:
        return redact_text(f"{type(exc).__name__}: {exc}")[:_MAX_ERROR]

    def _record(self, transition: Callable[..., bool], *args: Any) -> bool:
        """Run one fenced state-machine transition of this attempt (retried while PostgreSQL
        is briefly unreachable). False: the lease was lost, nothing was written."""

        def write() -> bool:
            with autocommit() as conn:
                return transition(conn, self.job.id, self.job.attempt, *args)

        written = with_db_retry(write)
        if written:  # its concurrency slot and fair share are free (docs/limits.md)
            releaser.note([self.job.concurrency_key], [self.job.share_key])
        return written

    def _complete(self, result_json: str) -> None:
        """Hand the completion to the process's writer and return: the message's ack waits
        for the commit (pgjobs/worker/state_writer.py). Without a message (a direct call), wait."""
        job = self.job
        duration = self._elapsed_ms()
        written = threading.Event()

        def on_written(held: bool) -> None:
            if held:
                metrics.outcome(job.type, "succeeded", duration / 1000)
            else:
                log.warning(
                    "job.complete.lease_lost",
                    job_id=job.id,
                    tenant_id=str(job.tenant_id),
                    message_id=self.message_id,
                    attempt=job.attempt,
                    duration_ms=duration,
                )
            written.set()

        log.debug("job.completed", duration_ms=duration)
        done = sm.Completion(job.id, job.attempt, result_json, duration)
        state_writer().complete(
            done, self.message_id, on_written, job.concurrency_key, job.share_key
        )
        if self.message_id is None:
            written.wait()

    def _fail(self, error: str, *, permanent: bool, exc: BaseException | None = None) -> None:
        log.error("job.failed", error=error, permanent=permanent, exc_info=exc or False)
        if self._record(sm.fail, error):
            metrics.outcome(self.job.type, "failed", self._elapsed_ms() / 1000)

    def _retry_or_fail(
        self, job_type: JobType[Any], error: str, *, exc: BaseException | None
    ) -> None:
        if self.job.attempt >= self.job.max_attempts:
            self._fail(error, permanent=False, exc=exc)
            return
        delay = job_type.backoff.delay(self.job.attempt)
        message_id = broker.new_message_id()
        log.warning("job.retrying", error=error, retry_in_s=round(delay, 3), exc_info=exc or False)
        if self._record(sm.schedule_retry, error, delay, message_id):
            metrics.outcome(self.job.type, "retried", self._elapsed_ms() / 1000)
            self._send(message_id, int(delay * 1000))

    def _cancelled(self) -> None:
        if self._record(sm.finish_cancelled, "cancel requested"):
            log.info("job.cancelled", duration_ms=self._elapsed_ms())
            metrics.outcome(self.job.type, "cancelled", self._elapsed_ms() / 1000)

    def _release(self) -> None:
        message_id = broker.new_message_id()
        if self._record(sm.release, message_id):
            log.warning("job.released", reason="worker shutdown")
            metrics.outcome(self.job.type, "released")
            self._send(message_id, None)

    def _send(self, message_id: str, delay_ms: int | None) -> None:
        """Send after the row is committed; a failure is left to the relay."""
        job = self.job
        queue = get_job_type(job.type).queue
        try:
            broker.send([broker.Outgoing(job.id, job.tenant_id, queue, message_id, delay_ms)])
        except Exception as exc:  # noqa: BLE001
            log.warning("job.send_failed", error_type=type(exc).__name__)
