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

The consumer fetches a batch of one message per thread once that much room is free, and the
writer claims it in one round; it waits for that woken by the acks. With the prefetch of three
per thread (pgjobs/worker/setup.py) the fetch happens while every thread still runs a message
and one more waits for each, so the threads do not run dry during the fetch and its claim
round (with two per thread they did: 5 ms handlers drained at 0.79 of the threads' rate). Stock
Dramatiq fetches whenever one message of room is free, about two messages per fetch and per
claim round, which doubled PostgreSQL's CPU per job (docs/performance.md).

An empty queue is waited on, not polled: the consumer adds its own doorbell (a Redis list) to
the queue's sleepers set, fetches once more (a message written before it registered is found
there), then blocks on its doorbell until a writer of the queue rings it
(pgjobs/producer/broker.py: every write of messages rings in the same round trip) or
``JOBS_WORKER_IDLE_WAIT_MS`` passes. Stock Dramatiq polls every ``worker_timeout``: with a
10 ms timeout, each queue and delay queue of every process cost an idle worker a fetch every
10 ms. A delay queue's consumer waits no longer than the earliest eta of the messages it has
handed to its thread, which moves them when due. On shutdown every waiting consumer of the
process is rung, so stopping does not wait out the idle wait.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
import weakref
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from pgjobs.logs import get_logger
from pgjobs.producer.wire import sleepers_key
from pgjobs.settings import get_settings
from pgjobs.worker.messages import Refused, check
from pgjobs.worker.runner import claim_ahead, state_writer

log = get_logger(__name__)

_MAX_ID_LOGGED = 100  # a junk entry's Redis id can be anything, of any length
_SHORTEST_WAIT = 0.005


_consumers: weakref.WeakSet[SafeRedisConsumer] = weakref.WeakSet()
_stopping = threading.Event()


def worker_booting() -> None:
    """A worker starts in this process: its consumers wait on their doorbells."""
    _stopping.clear()


def wake_all_for_shutdown() -> None:
    """The worker is stopping: no consumer of this process waits on its doorbell any more,
    and those waiting are rung now (their threads then see that they must stop)."""
    _stopping.set()
    for consumer in list(_consumers):
        consumer.wake()


class SafeRedisConsumer(_RedisConsumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._room = threading.Condition()  # notified whenever a message stops counting
        settings = get_settings()
        self._poll_seconds = settings.worker_poll_ms / 1000
        # a consumer writes this worker's broker heartbeat with each fetch: wait well within it
        idle_ms = min(settings.worker_idle_wait_ms, settings.broker_heartbeat_timeout_ms / 4)
        self._idle_seconds = idle_ms / 1000
        self._doorbell_id = uuid.uuid4()
        self._delays = self.queue_name.endswith(".DQ")
        self._etas: dict[str, float] = {}
        """Delay queue: eta (epoch ms) of each message handed out and not yet acked."""
        _consumers.add(self)

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
                    if self._delays:
                        self._etas[message.message_id] = _eta(message)
                    return MessageProxy(message)
                # after a poll timeout without enough room, fetch what room there is (as stock
                # Dramatiq would): a count that does not come down never stalls the consumer
                if (
                    self.outstanding_message_count > self._fetch_at_most_out()
                    and not self._wait_for_room()
                    and self.outstanding_message_count >= self.prefetch
                ):
                    return None
                fetched = self._fetch() or self._doze()
                if not fetched:
                    return None
                self.message_cache = self._accept(fetched)
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None

    def _fetch(self) -> list[tuple[bytes, bytes | None]]:
        return self.broker.fetch_many(  # type: ignore[no-any-return]
            self.queue_name, self.prefetch - self.outstanding_message_count
        )

    def _doze(self) -> list[tuple[bytes, bytes | None]]:
        """The queue was empty: register this consumer's doorbell, look once more, then wait
        for a ring (and fetch) or the idle wait (nothing: the caller returns to its thread,
        which moves due delayed messages and checks whether it must stop)."""
        stopping = _stopping.is_set()
        seconds = self._poll_seconds if stopping else self._wait_seconds()
        if stopping or seconds < _SHORTEST_WAIT:
            time.sleep(max(0.0, seconds))  # (Redis reads a blocking timeout under 1 ms as 0:
            return []  # for ever)
        client = self.broker.client
        client.sadd(self._sleepers, self._doorbell)
        try:
            fetched = self._fetch()
            if fetched:
                return fetched
            if client.blpop([self._doorbell], timeout=seconds) is None:
                return []
        finally:
            client.srem(self._sleepers, self._doorbell)
        return self._fetch()

    @functools.cached_property
    def _doorbell(self) -> str:
        return f"{self.broker.namespace}:__doorbell__.{self._doorbell_id}"

    @functools.cached_property
    def _sleepers(self) -> str:
        return sleepers_key(f"{self.broker.namespace}:{self.queue_name}")

    def _wait_seconds(self) -> float:
        """How long an empty queue is waited on: the idle wait; less on a delay queue whose
        thread holds a message due sooner."""
        seconds = self._idle_seconds
        if self._etas:
            seconds = min(seconds, (min(list(self._etas.values())) - time.time() * 1000) / 1000)
        return seconds

    def wake(self) -> None:
        """Ring this consumer's own doorbell."""
        try:
            self.broker.client.rpush(self._doorbell, "1")
            self.broker.client.pexpire(self._doorbell, 60_000)
        except redis.RedisError:
            pass

    def _fetch_at_most_out(self) -> int:
        """Fetch only while no more than this many messages are out: the prefetch less a batch
        of one message per thread (so the fetch and its claim round happen while a message
        still waits for each thread; pgjobs/worker/setup.py gives a prefetch of three per
        thread), and never less than the thread count (with a prefetch under twice the threads,
        a fetch while every thread still has a message); half the prefetch when the thread count
        is not known. Stock Dramatiq fetches whenever one message of room is free: fetches of
        about two messages, and as many claim rounds. A delay queue's messages wait in the
        consumer for their eta, not for a thread: it fetches as stock Dramatiq does."""
        threads = getattr(self.broker, "worker_threads", None)
        prefetch = int(self.prefetch)
        if self.queue_name.endswith(".DQ"):
            return prefetch - 1
        if not threads:
            return prefetch // 2
        return max(min(int(threads), prefetch - 1), prefetch - int(threads))

    def _wait_for_room(self) -> bool:
        """Wait (woken by the acks) until few enough messages are out to fetch, at most the
        poll timeout. Stock Dramatiq sleeps a backoff of up to the poll timeout when its
        prefetch is used up, and the handler threads could run dry meanwhile."""
        limit = self._fetch_at_most_out()
        with self._room:
            return bool(
                self._room.wait_for(
                    lambda: self.outstanding_message_count <= limit,
                    timeout=self._poll_seconds,
                )
            )

    def _freed(self) -> None:
        with self._room:
            self._room.notify()

    def ack(self, message: Any) -> None:
        self._etas.pop(message.message_id, None)
        self._release_untaken(message)
        if not state_writer().defer_ack(self, message):
            super().ack(message)
        self._freed()

    def nack(self, message: Any) -> None:
        self._etas.pop(message.message_id, None)
        self._release_untaken(message)
        super().nack(message)
        self._freed()

    def _release_untaken(self, message: Any) -> None:
        """A message is done with, and no thread took its claim: Dramatiq refused it (nacked
        it, or skipped it) after it was claimed. Its job goes back to the queue now, rather
        than be held by the lease keeper for ever (a lookup when there is none). Not on a
        delay queue: nothing is claimed from one, and the ack of a delayed message that is
        due comes after Dramatiq put it, under the same message id, on its queue, where it
        may already be claimed (a rate-limited job was given back that way)."""
        if not self._delays:
            claim_ahead().release([message], requeued=False)

    def requeue(self, messages: Any) -> None:
        """Dramatiq gives back the messages a stopping worker did not run: release their
        jobs if they were claimed ahead."""
        messages = list(messages)
        for message in messages:
            self._etas.pop(message.message_id, None)
        if not self._delays:
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


def _eta(message: Message[Any]) -> float:
    """A delayed message's eta (epoch ms); now when it has none a thread can use."""
    eta = message.options.get("eta")
    return float(eta) if isinstance(eta, int | float) else time.time() * 1000
