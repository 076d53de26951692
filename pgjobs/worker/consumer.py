"""A Redis consumer that checks every fetched message before anything is claimed for it,
dead-letters the bad ones instead of stranding the batch, and acks a message only once its
job's completion has committed.

Stock Dramatiq decodes prefetched messages one by one inside the consumer's ``__next__``; a
message that is not JSON, or not a Dramatiq message, raises out of it, the consumer is rebuilt,
and the valid messages fetched in the same batch stay in this worker's ack set, unprocessed,
until the worker dies. Here each fetched message is checked whole (pgjobs/worker/messages.py: a
well-formed message of this queue's actor, with the arguments and options ours have); one that
fails is moved to the queue's dead-letter set (``.XQ``) with one log line, before the batch's
jobs are claimed, and the rest of the batch is served as usual. A claim made for a message that
does not run after all (Dramatiq nacks it, or acks it without a thread having taken the claim)
is released at once (pgjobs/worker/claim_ahead.py).

A handler thread hands a job's completion to the process's writer (pgjobs/worker/state_writer.py)
and moves on; when Dramatiq then acks the message, the ack is left to the writer until that write
has committed. On shutdown the consumer waits for those writes and acks before it closes.

The consumer fetches only once no more messages are out than the worker has threads (every
thread still has one), so each fetch brings the rest of the prefetch (half of it with
Dramatiq's default of twice the threads) and the writer claims them in one round; it waits for
that woken by the acks. Stock Dramatiq fetches whenever one message of room is free, about two
messages per fetch and per claim round, which doubled PostgreSQL's CPU per job
(docs/performance.md).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import _RedisConsumer
from dramatiq.common import compute_backoff
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from pgjobs.logs import get_logger
from pgjobs.settings import get_settings
from pgjobs.worker.messages import Refused, check
from pgjobs.worker.runner import claim_ahead, state_writer

log = get_logger(__name__)

_MAX_ID_LOGGED = 100  # a junk entry's Redis id can be anything, of any length


class SafeRedisConsumer(_RedisConsumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._room = threading.Condition()  # notified whenever a message stops counting

    def __next__(self) -> Any:
        """The parent's loop (serve the prefetched cache, else fetch, else back off), with
        each fetched batch checked before its jobs are claimed in one statement
        (:meth:`_accept`)."""
        try:
            while True:
                if self.message_cache:
                    message = self.message_cache.pop(0)
                    self.misses = 0
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                # after a poll timeout without enough room, fetch what room there is (as stock
                # Dramatiq would): a count that does not come down never stalls the consumer
                if (
                    self.outstanding_message_count > self._fetch_at_most_out()
                    and not self._wait_for_room()
                    and self.outstanding_message_count >= self.prefetch
                ):
                    return None
                fetched = self.broker.fetch_many(
                    self.queue_name, self.prefetch - self.outstanding_message_count
                )
                if not fetched:
                    self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                    time.sleep(backoff_ms / 1000)
                    return None
                self.message_cache = self._accept(fetched)
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None

    def _fetch_at_most_out(self) -> int:
        """Fetch only while no more than this many messages are out: the worker's thread count
        (so every thread still has a message, and a fetch brings the rest of the prefetch in
        one batch, claimed in one round), or half the prefetch when the thread count is not
        known. Stock Dramatiq fetches whenever one message of room is free: fetches of about
        two messages, and as many claim rounds. A delay queue's messages wait in the consumer
        for their eta, not for a thread: it fetches as stock Dramatiq does."""
        threads = getattr(self.broker, "worker_threads", None)
        prefetch = int(self.prefetch)
        if self.queue_name.endswith(".DQ"):
            return prefetch - 1
        limit = int(threads) if threads else prefetch // 2
        return max(0, min(limit, prefetch - 1))

    def _wait_for_room(self) -> bool:
        """Wait (woken by the acks) until few enough messages are out to fetch, at most the
        poll timeout. Stock Dramatiq sleeps a backoff of up to the poll timeout when its
        prefetch is used up, and the handler threads could run dry meanwhile."""
        limit = self._fetch_at_most_out()
        with self._room:
            return bool(
                self._room.wait_for(
                    lambda: self.outstanding_message_count <= limit,
                    timeout=self.timeout / 1000,
                )
            )

    def _freed(self) -> None:
        with self._room:
            self._room.notify()

    def ack(self, message: Any) -> None:
        self._release_untaken(message)
        if not state_writer().defer_ack(self, message):
            super().ack(message)
        self._freed()

    def nack(self, message: Any) -> None:
        self._release_untaken(message)
        super().nack(message)
        self._freed()

    def _release_untaken(self, message: Any) -> None:
        """A message is done with, and no thread took its claim: Dramatiq refused it (nacked
        it, or skipped it) after it was claimed. Its job goes back to the queue now, rather
        than be held by the lease keeper for ever (a lookup when there is none)."""
        claim_ahead().release([message], requeued=False)

    def requeue(self, messages: Any) -> None:
        """Dramatiq gives back the messages a stopping worker did not run: release their
        jobs if they were claimed ahead."""
        messages = list(messages)
        claim_ahead().release(messages, requeued=True)
        super().requeue(messages)

    def close(self) -> None:
        """Wait for the completions still being written and their acks; give back what was
        fetched and claimed but never handed to a thread."""
        state_writer().flush(timeout=get_settings().shutdown_grace_seconds)
        if self.message_cache:
            cached, self.message_cache = self.message_cache, []
            self.requeue(cached)
        super().close()

    def _accept(self, fetched: list[tuple[bytes, bytes | None]]) -> list[Message[Any]]:
        """The fetched messages that pass the check (pgjobs/worker/messages.py), their jobs claimed
        in one statement (pgjobs/worker/claim_ahead.py; not on delay queues, whose messages are only
        moved to their queue when due); the others dead-lettered. Nothing one message holds
        raises out of here: only Redis being unreachable does."""
        accepted: list[Message[Any]] = []
        for redis_id, body in fetched:
            try:
                verdict = check(body, redis_id, self.queue_name, self.broker.actors)
            except Exception:  # noqa: BLE001 - a bug in the check must not strand the batch
                verdict = Refused("check failed")
            if isinstance(verdict, Refused):
                self._dead_letter(redis_id, body, verdict.reason)
            else:
                accepted.append(verdict)
        if accepted and not self.queue_name.endswith(".DQ"):
            claim_ahead().claim_fetched(accepted)
        return accepted

    def _dead_letter(self, redis_id: bytes, body: bytes | None, reason: str) -> None:
        """Move a refused message to the dead-letter set (a nack), with one log line that says
        which and why, and nothing of its content. An id without a body is only forgotten
        (the nack finds nothing to move)."""
        self.broker.do_nack(self.queue_name, redis_id)
        log.error(
            "broker.message.dropped" if body is None else "broker.message.dead_lettered",
            queue=self.queue_name,
            redis_message_id=redis_id[:_MAX_ID_LOGGED].decode("utf-8", "replace"),
            size=0 if body is None else len(body),
            reason=reason,
        )
