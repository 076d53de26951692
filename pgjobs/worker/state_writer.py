"""The claims and completions of a worker process, written in rounds by one thread.

With ``synchronous_commit`` on, every commit waits for a WAL flush, and on a small machine that
flush costs more than the statement: one claim and one completion per job, each committed on
its own, was most of PostgreSQL's CPU per job (docs/performance.md). So the handler threads of
a process hand their claims and completions to this writer, and each round writes everything
that is waiting (its claims and its completions) in one statement, so one commit:

* a claim blocks its thread until its round commits (the handler needs the payload);
* a completion does not: the thread goes on to its next message at once, and the message's
  Redis ack waits until the completion has committed (``SafeRedisConsumer.ack`` hands it here),
  so a crash before the commit leaves the message unacked and the job is run again, never lost.
  The acks of a round go to Redis in one script call per queue, once its statement has
  committed (the claims of the round do not wait for Redis).

A claim is written at once (the writer sleeps only while there is nothing to write), so an idle
worker's claims pay no latency for the batching. Completions alone wait up to
``COMPLETION_WAIT_S`` (5 ms) for others, or for a claim round to ride in: no thread waits for
them, only their acks; those a caller waits for are written at once (a concurrency key's
slot and a fair share's room are freed with the round).
When PostgreSQL is unreachable, claims fail back to their threads (which retry) and
completions wait in memory, their messages unacked; when a round fails for another reason, its
requests are written one by one so that one bad request never fails another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from pgjobs.db.engine import autocommit
from pgjobs.db.errors import DatabaseUnavailable
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.statements import execute_step, run_pipelined
from pgjobs.logs import get_logger
from pgjobs.producer.job_types import limits_declared, rated_types
from pgjobs.settings import get_settings
from pgjobs.worker.limits import releaser
from pgjobs.worker.rates import rate_check, send_parked

log = get_logger("pgjobs.worker.state_writer")

MAX_ROUND = 500
COMPLETION_WAIT_S = 0.005
"""How long completions alone wait for company before a round writes them. In a drain of 5 ms
jobs the rounds went from 1.8 to 3.8 jobs each (commits per job 0.56 -> 0.26), and the noop
drain gained 12% (docs/performance.md); a completion is visible and acked up to 5 ms later."""
_RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass(eq=False)
class _Claim:
    request: sm.ClaimRequest
    done: threading.Event = field(default_factory=threading.Event)
    result: sm.ClaimedJob | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class _Completion:
    completion: sm.Completion
    message_id: str | None
    on_written: Callable[[bool], None]
    limit_key: str | None = None
    """The job's concurrency key: its slot is free once the completion is written."""
    share_key: str | None = None
    """The job's fair share: it has room for a held job once the completion is written."""
    written: bool = False
    ack: tuple[Any, Any] | None = None
    """(consumer, message) once the consumer asked to ack: the writer acks after the write."""


@dataclass
class _Round:
    claims: list[_Claim] = field(default_factory=list)
    completions: list[_Completion] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LimitedRound:
    answers: sm.RoundResult
    parked: list[sm.ReleasedJob]
    """Jobs parked for their rate: their delayed messages to send once committed."""
    parked_keys: list[str]
    """Concurrency keys of the jobs parked for a slot: released once committed."""

    @property
    def claimed(self) -> list[sm.ClaimedJob | None]:
        return self.answers.claimed


def limited_round(
    conn: Connection,
    requests: Sequence[sm.ClaimRequest],
    completions: Sequence[sm.Completion],
    *,
    lease_seconds: float,
    worker: str | None,
) -> LimitedRound:
    """A claim round with concurrency or rate limits declared (docs/limits.md), on an
    autocommit connection: the rated jobs' keys (pgjobs/worker/rates.py), then one transaction
    sent in one round trip: the keys locked, the claim with its checks, and the jobs it parked
    for their rate. No lock is held while the client is away."""
    ids = [r.job_id for r in requests]
    rates = rate_check(conn, ids)  # reads payloads only, before any lock
    steps = [
        sm.generic_plans_step(),
        sm.lock_keys_step(ids, rates.keys if rates else ()),
        sm.claim_round_step(
            requests,
            completions,
            lease_seconds=lease_seconds,
            worker=worker,
            limited=True,
            rates=rates,
        ),
    ]
    if rates is not None:
        steps.append(sm.rate_parked_step(rates.ids))
    # only a claim made on a thread parks a job for a slot (a claim made ahead leaves it)
    at_thread = [r.job_id for r in requests if not r.ahead]
    if at_thread:
        steps.append(sm.parked_keys_step(at_thread))
    rows = run_pipelined(conn, steps)
    answers = sm.claim_round_result(rows[2], requests, completions)
    parked = sm.released_of(rows[3]) if rates is not None else []
    parked_keys = [row.key for row in rows[-1]] if at_thread else []
    return LimitedRound(answers, parked, parked_keys)


class StateWriter:
    def __init__(self, *, worker: str) -> None:
        self.worker = worker
        self._cond = threading.Condition()
        self._claims: list[_Claim] = []
        self._completions: list[_Completion] = []
        self._completions_since = 0.0
        """When the oldest completion waiting for a round was handed over (monotonic)."""
        self._waited_for = False
        """A waiting completion must not wait for company: a caller blocks on it (a direct
        call, without a message)."""
        self._by_message: dict[str, _Completion] = {}
        self._acks: list[tuple[Any, Any]] = []
        self._in_flight = 0
        self._thread: threading.Thread | None = None

    # --- called by handler threads ---------------------------------------------------------

    def claim(self, requests: Sequence[sm.ClaimRequest]) -> list[sm.ClaimedJob | None]:
        """Claim in the next round; blocks until it has committed. One answer per request.
        Raises DatabaseUnavailable like a direct claim would (the caller retries)."""
        waiting = [_Claim(r) for r in requests]
        with self._cond:
            self._start()
            self._claims.extend(waiting)
            self._cond.notify()
        for w in waiting:
            w.done.wait()
        for w in waiting:
            if w.error is not None:
                raise w.error
        return [w.result for w in waiting]

    def complete(
        self,
        completion: sm.Completion,
        message_id: str | None,
        on_written: Callable[[bool], None],
        limit_key: str | None = None,
        share_key: str | None = None,
    ) -> None:
        """Write ``completion`` in the next round and return at once. ``on_written(held)``
        runs on the writer's thread after the commit (False: the lease had been lost).
        ``limit_key``, ``share_key``: the job's concurrency key and fair share, whose waiting
        and held jobs the round then sends."""
        pending = _Completion(completion, message_id, on_written, limit_key, share_key)
        with self._cond:
            self._start()
            if not self._completions:
                self._completions_since = time.monotonic()
            if message_id is None:  # a direct call: its caller blocks on the write
                self._waited_for = True
            self._completions.append(pending)
            if message_id is not None:
                self._by_message[message_id] = pending
            self._cond.notify()

    # --- called by the consumer ------------------------------------------------------------

    def defer_ack(self, consumer: Any, message: Any) -> bool:
        """The consumer wants to ack ``message``: True when its job's completion is still
        being written (the writer acks once it has committed), False to ack now."""
        with self._cond:
            pending = self._by_message.get(message.message_id)
            if pending is None or pending.written:
                self._by_message.pop(message.message_id, None)
                return False
            pending.ack = (consumer, message)
        # The message no longer counts against the consumer's prefetch: its job is done, only
        # the ack waits (Dramatiq counts unacked messages to decide how many more to fetch).
        consumer.queued_message_ids.discard(message.message_id)
        return True

    def flush(self, timeout: float) -> bool:
        """Wait until every queued write and deferred ack is done (worker shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._claims or self._completions or self._acks or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning(
                        "state_writer.flush.timeout",
                        completions=len(self._completions),
                        acks=len(self._acks),
                    )
                    return False
                self._cond.wait(left)
        return True

    # --- the writer's thread ---------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="state-writer", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        failures = 0
        while True:
            with self._cond:
                self._wait_for_work()
                work = self._take()
                acks, self._acks = self._acks, []
                self._in_flight = len(work.claims) + len(work.completions) + len(acks)
                self._cond.notify_all()  # flush() waits on the same condition
            error: Exception | None = None
            try:
                if work.claims or work.completions:
                    self._write(work)
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any error
                error = exc
                if isinstance(exc, DatabaseUnavailable):
                    exc = DatabaseUnavailable("database unavailable")
                self._requeue(work, exc)
            # after the write, so that the round's claims are not kept waiting for Redis; with
            # the acks of the round's own completions, which have committed now
            with self._cond:
                acks += self._acks
                self._acks = []
            acked = not acks or self._ack(acks)
            with self._cond:
                self._in_flight = 0
                self._cond.notify_all()
            if not acked:
                time.sleep(0.25)
            if error is None:
                failures = 0
            elif isinstance(error, DatabaseUnavailable):
                delay = _RETRY_DELAYS[min(failures, len(_RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("db.unavailable.retrying", retry_in_s=delay, who="state_writer")
                time.sleep(delay)
            else:
                log.error("state_writer.round_failed", error_type=type(error).__name__)
                time.sleep(0.1)

    def _wait_for_work(self) -> None:
        """Until a round is due (under the lock): at once for claims (a thread or the consumer
        waits) and acks; completions alone wait up to COMPLETION_WAIT_S for others or for a
        claim round to ride in, since no thread waits for them, only their acks (unless
        ``_waited_for``)."""
        while not (self._claims or self._acks):
            if self._completions:
                if self._waited_for:
                    return
                left = self._completions_since + COMPLETION_WAIT_S - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)
            else:
                self._cond.wait()

    def _take(self) -> _Round:
        """What the next round writes: the completions, and the claims of other jobs (a claim
        for a job completing in this round waits for the next one)."""
        work = _Round(completions=self._completions[:MAX_ROUND])
        self._completions = self._completions[MAX_ROUND:]
        self._completions_since = 0.0  # (those left over wait no longer)
        self._waited_for = False
        completing = {c.completion.job_id for c in work.completions}
        rest: list[_Claim] = []
        for waiting in self._claims:
            job_id = waiting.request.job_id
            if len(work.claims) < MAX_ROUND and job_id not in completing:
                completing.add(job_id)  # also keeps job ids distinct among the claims
                work.claims.append(waiting)
            else:
                rest.append(waiting)
        self._claims = rest
        return work

    def _requeue(self, work: _Round, error: BaseException) -> None:
        """After a failed round: claims fail back to their threads (they retry), completions
        wait for the next round."""
        for waiting in work.claims:
            waiting.error = error
            waiting.done.set()
        with self._cond:
            self._completions[:0] = work.completions

    def _write(self, work: _Round) -> None:
        try:
            claimed, held, frees = self._statements(work.claims, work.completions)
        except DatabaseUnavailable:
            raise
        except Exception:
            if len(work.claims) + len(work.completions) == 1:
                raise
            claimed, held, frees = self._one_by_one(work)
        self._deliver(work, claimed, held)
        done = [c for c, ok in zip(work.completions, held, strict=True) if ok]
        freeing = [c.limit_key for c, f in zip(work.completions, frees, strict=True) if f]
        releaser.note(freeing, [c.share_key for c in done])

    def _statements(
        self, claims: Sequence[_Claim], completions: Sequence[_Completion]
    ) -> sm.RoundResult:
        """One statement (one commit) for the round; with concurrency or rate limits declared, a
        claim round is a transaction that first locks the batch's keys (docs/limits.md)."""
        lease_seconds = get_settings().lease_seconds
        if claims and (limits_declared() or rated_types()):
            return self._limited(claims, completions, lease_seconds)
        with autocommit() as conn:
            return self._round(conn, claims, completions, lease_seconds)

    def _limited(
        self, claims: Sequence[_Claim], completions: Sequence[_Completion], lease_seconds: float
    ) -> sm.RoundResult:
        with autocommit() as conn:
            done = limited_round(
                conn,
                [c.request for c in claims],
                [c.completion for c in completions],
                lease_seconds=lease_seconds,
                worker=self.worker,
            )
        send_parked(done.parked)
        releaser.note(done.parked_keys)
        return done.answers

    def _round(
        self,
        conn: Connection,
        claims: Sequence[_Claim],
        completions: Sequence[_Completion],
        lease_seconds: float,
    ) -> sm.RoundResult:
        done = [c.completion for c in completions]
        if not claims:
            return sm.RoundResult([], *sm.complete_round(conn, done))
        requests = [c.request for c in claims]
        step = sm.claim_round_step(requests, done, lease_seconds=lease_seconds, worker=self.worker)
        return sm.claim_round_result(execute_step(conn, step).fetchall(), requests, done)

    def _one_by_one(self, work: _Round) -> sm.RoundResult:
        claimed: list[sm.ClaimedJob | None] = []
        for waiting in work.claims:
            try:
                claimed.extend(self._statements([waiting], []).claimed)
            except DatabaseUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001
                waiting.error = exc
                claimed.append(None)
        held: list[bool] = []
        frees: list[bool] = []
        for pending in work.completions:
            try:
                answer = self._statements([], [pending])
            except DatabaseUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - not written: the lease will expire
                log.error(
                    "job.complete.write_failed",
                    job_id=pending.completion.job_id,
                    error_type=type(exc).__name__,
                )
                answer = sm.RoundResult([], [False], [False])
            held += answer.held
            frees += answer.frees
        return sm.RoundResult(claimed, held, frees)

    def _deliver(
        self, work: _Round, claimed: Sequence[sm.ClaimedJob | None], held: Sequence[bool]
    ) -> None:
        for pending, ok in zip(work.completions, held, strict=True):
            try:
                pending.on_written(ok)
            except Exception as exc:  # noqa: BLE001
                log.error("state_writer.callback_failed", error_type=type(exc).__name__)
        for waiting, result in zip(work.claims, claimed, strict=True):
            waiting.result = result
            waiting.done.set()
        with self._cond:
            for pending in work.completions:
                pending.written = True
                if pending.ack is not None:
                    self._acks.append(pending.ack)
                    self._by_message.pop(pending.message_id or "", None)

    def _ack(self, acks: list[tuple[Any, Any]]) -> bool:
        """Ack in one script call per queue. False: Redis failed and the acks wait for a later
        round (the messages stay with this worker meanwhile, as unacked messages do)."""
        by_consumer: dict[int, tuple[Any, list[str]]] = {}
        for consumer, message in acks:
            entry = by_consumer.setdefault(id(consumer), (consumer, []))
            entry[1].append(message.options["redis_message_id"])
        try:
            for consumer, ids in by_consumer.values():
                consumer.broker.ack_many(consumer.queue_name, ids)
        except Exception as exc:  # noqa: BLE001 - Redis down: try again later
            log.warning("state_writer.ack_failed", error_type=type(exc).__name__, acks=len(acks))
            with self._cond:
                self._acks[:0] = acks
            return False
        return True
