"""Claims made when a batch of messages is fetched from Redis, one statement for the batch.

The consumer fetches up to its prefetch (three messages per thread) at a time. Claiming
those jobs there, together, instead of one by one on each handler thread, turns a claim round
trip and commit per job into one per batch, and the threads never wait for a claim while
messages are queued. The price: a claimed job may wait in the process's memory for a thread
(at most the prefetch, so up to two handler durations) after its ``started`` event; its lease is
kept by the lease keeper meanwhile. Jobs claimed ahead and never started are released (back to
queued, the attempt given back) when the worker stops, and as soon as Dramatiq is done with
their message without a thread having taken the claim (it refused the message).

A job that is not claimed here (a duplicate message, or a job of a concurrency key with no free
slot: the claim leaves it as it is instead of parking it, docs/limits.md) rides in the rounds
of the next fetches, by which time its key has often freed a slot, and else is claimed by its
thread when the thread takes its message (a thread waits for a round that holds its message's
claim). So a slot is never held by a job claimed ahead that could not have started, and a job
parks only if its key is still full when a thread is free for it (with 3 messages per thread
in hand, claiming ahead parked 7% of a drain's jobs over 20 keys of 3 slots; leaving them to
their threads and later rounds, 1.3%).

Only messages the consumer has checked (pgjobs/worker/messages.py) are claimed here: a junk message
carrying a real job's ids must not claim it.

A batch that cannot be claimed here (PostgreSQL unreachable) is claimed by the threads, one by
one, as before.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import Any

from pgjobs.db.engine import autocommit
from pgjobs.db.jobs import state_machine as sm
from pgjobs.logs import get_logger
from pgjobs.producer.broker import job_args
from pgjobs.worker.leases import LeaseKeeper
from pgjobs.worker.state_writer import StateWriter

log = get_logger("pgjobs.worker.claim_ahead")


class NotClaimed(enum.Enum):
    """Answer of :meth:`ClaimAhead.take` for a message that was not claimed ahead."""

    NOT_CLAIMED = "not claimed"


RETRIES = 2
"""How many more fetches' rounds a message not claimed ahead rides in before only its thread
tries (a duplicate, which no round claims, costs a primary-key lookup per round until then)."""


class ClaimAhead:
    def __init__(
        self, writer: Callable[[], StateWriter], keeper: Callable[[], LeaseKeeper]
    ) -> None:
        self._writer = writer
        self._keeper = keeper
        self._cond = threading.Condition()
        self._claimed: dict[str, sm.ClaimedJob] = {}
        self._unclaimed: dict[str, tuple[sm.ClaimRequest, int]] = {}
        """Messages in hand not claimed yet (no free slot for their key, or duplicates), and how
        many more rounds they may ride in."""
        self._in_round: set[str] = set()
        """Messages whose claim is in a round now: their threads wait for its answer."""

    def claim_fetched(self, messages: list[Any]) -> None:
        """Claim the jobs of freshly fetched, checked messages (Dramatiq ``Message`` objects),
        with those still in hand that a round before left unclaimed. Raises nothing: a message
        not claimed here is claimed by its thread."""
        by_job: dict[int, sm.ClaimRequest] = {}
        retries: dict[str, int] = {}
        with self._cond:
            known = self._claimed.keys() | self._unclaimed.keys() | self._in_round
            for request in map(_request, messages):
                # the same job twice, or a message fetched again: only its thread claims it
                if request is not None and request.message_id not in known:
                    by_job.setdefault(request.job_id, request)
            for message_id, (request, left) in list(self._unclaimed.items()):
                if request.job_id not in by_job:
                    del self._unclaimed[message_id]
                    by_job[request.job_id] = request
                    retries[message_id] = left - 1
            distinct = list(by_job.values())
            self._in_round.update(r.message_id for r in distinct if r.message_id is not None)
        if not distinct:
            return
        results: list[sm.ClaimedJob | None] = [None] * len(distinct)
        try:
            results = self._writer().claim(distinct)
        except Exception as exc:  # noqa: BLE001 - the threads claim these themselves
            log.warning("claim_ahead.failed", error_type=type(exc).__name__, jobs=len(distinct))
        claimed: dict[str, sm.ClaimedJob] = {}
        with self._cond:
            for request, job in zip(distinct, results, strict=True):
                mid = request.message_id
                assert mid is not None
                self._in_round.discard(mid)
                left = retries.get(mid, RETRIES)
                if job is not None:
                    claimed[mid] = job
                elif left > 0:
                    self._unclaimed[mid] = (request, left)
            self._claimed.update(claimed)
            self._cond.notify_all()
        if not claimed:
            return
        try:
            self._keeper().hold([(job.id, job.attempt) for job in claimed.values()])
        except Exception as exc:  # noqa: BLE001 - a claim must not wait unheld: give it back
            log.warning("claim_ahead.hold_failed", error_type=type(exc).__name__)
            self._give_back(set(claimed), requeued=False)

    def take(self, message_id: str | None) -> sm.ClaimedJob | NotClaimed:
        """The claim made for this message, or NOT_CLAIMED (its thread claims it itself); waits
        for a round in flight with its claim. A job taken here is the caller's now: the lease
        keeper stops holding it (the runner tracks it while it runs)."""
        if message_id is None:
            return NotClaimed.NOT_CLAIMED
        with self._cond:
            self._cond.wait_for(lambda: message_id not in self._in_round)
            self._unclaimed.pop(message_id, None)
            job = self._claimed.pop(message_id, NotClaimed.NOT_CLAIMED)
        if isinstance(job, sm.ClaimedJob):
            self._keeper().unhold([job.id])
        return job

    def release(self, messages: list[Any], *, requeued: bool) -> None:
        """Give back the jobs claimed for these messages that no thread took: queued again,
        the attempt given back. ``requeued``: the messages go back to Redis (the worker is
        stopping), and each job's message id becomes its message's; otherwise the message
        will not run (Dramatiq refused it), and the job keeps its own message id, so its own
        message, or else the relay, delivers it. Messages with nothing claimed cost a lookup."""
        self._give_back({m.message_id for m in messages}, requeued=requeued)

    def _give_back(self, message_ids: set[str], *, requeued: bool) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._in_round.intersection(message_ids))
            for message_id in message_ids:
                self._unclaimed.pop(message_id, None)
            jobs = [(m, self._claimed.pop(m)) for m in message_ids if m in self._claimed]
        if not jobs:
            return
        self._keeper().unhold([job.id for _, job in jobs])
        reason = "worker shutdown" if requeued else "message refused"
        try:
            with autocommit() as conn:
                for message_id, job in jobs:
                    given = message_id if requeued else None
                    sm.release(conn, job.id, job.attempt, given, reason=reason)
        except Exception as exc:  # noqa: BLE001 - their leases expire; the rescuer requeues them
            log.warning("claim_ahead.release_failed", error_type=type(exc).__name__)
            return
        log.info("claim_ahead.released", jobs=len(jobs), reason=reason)


def _request(message: Any) -> sm.ClaimRequest | None:
    """The claim for a message (checked by the consumer: None does not happen)."""
    parsed = job_args(message.args)
    return None if parsed is None else sm.ClaimRequest(*parsed, message.message_id, ahead=True)
