"""A consumer fetches once a batch of one message per thread is free (its prefetch is three
per thread: a message still waits for each thread when it fetches), never before no more
messages are out than its worker has threads (half its prefetch when that is unknown), woken
by the acks, so fetches and claim rounds are batches."""

from __future__ import annotations

import threading
import time
import types

from pgjobs.worker.consumer import SafeRedisConsumer


def _full_consumer(
    timeout_ms: int, threads: int | None = None, prefetch: int = 8
) -> SafeRedisConsumer:
    broker = types.SimpleNamespace(worker_threads=threads) if threads else None
    consumer = SafeRedisConsumer(broker, "q", prefetch=prefetch, timeout=timeout_ms)
    consumer._poll_seconds = timeout_ms / 1000  # (JOBS_WORKER_POLL_MS) how long room is awaited
    consumer.queued_message_ids.update(f"m{i}" for i in range(prefetch))
    return consumer


def _wait_while_finishing(consumer: SafeRedisConsumer, count: int) -> tuple[bool, float]:
    """Another thread finishes ``count`` messages (what a handler thread's ack does to the
    consumer's count); returns what the consumer's wait said and how long it took."""

    def finish() -> None:
        time.sleep(0.05)
        for i in range(count):
            consumer.queued_message_ids.discard(f"m{i}")
            consumer._freed()

    thread = threading.Thread(target=finish)
    thread.start()
    started = time.monotonic()
    room = consumer._wait_for_room()
    waited = time.monotonic() - started
    thread.join()
    return room, waited


def test_wakes_when_half_the_prefetch_is_free() -> None:
    room, waited = _wait_while_finishing(_full_consumer(timeout_ms=10_000), 4)
    assert room and waited < 2.0  # woken, not timed out


def test_keeps_waiting_while_only_a_little_is_free() -> None:
    room, waited = _wait_while_finishing(_full_consumer(timeout_ms=300), 1)
    assert not room and waited >= 0.25  # one free slot is not worth a fetch of one


def test_with_as_many_threads_as_prefetch_any_free_slot_is_fetched() -> None:
    """Prefetch equal to the threads: waiting for more room would leave a thread idle."""
    consumer = _full_consumer(timeout_ms=10_000, threads=8)
    assert consumer._fetch_at_most_out() == 7
    room, waited = _wait_while_finishing(consumer, 1)
    assert room and waited < 2.0


def test_a_delay_queue_fetches_whenever_there_is_room() -> None:
    """Delayed messages wait in the consumer for their eta, not for a thread."""
    consumer = SafeRedisConsumer(
        types.SimpleNamespace(worker_threads=4), "q.DQ", prefetch=4000, timeout=10_000
    )
    consumer.queued_message_ids.update(f"m{i}" for i in range(100))
    assert consumer._fetch_at_most_out() == 3999


def test_with_three_per_thread_fetches_while_a_message_waits_for_each_thread() -> None:
    """The default prefetch (pgjobs/worker/setup.py): a batch of one message per thread is
    fetched while every thread runs one and one waits for each, not once they have run dry."""
    consumer = _full_consumer(timeout_ms=10_000, threads=4, prefetch=12)
    assert consumer._fetch_at_most_out() == 8
    room, waited = _wait_while_finishing(consumer, 4)
    assert room and waited < 2.0


def test_with_twice_the_threads_fetches_once_each_thread_has_one_left() -> None:
    """A prefetch set to Dramatiq's two per thread keeps the batches of one per thread."""
    consumer = _full_consumer(timeout_ms=300, threads=4, prefetch=8)
    assert consumer._fetch_at_most_out() == 4
    room, _ = _wait_while_finishing(consumer, 3)
    assert not room
