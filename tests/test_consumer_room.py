"""A consumer fetches once no more messages are out than its worker has threads (half its
prefetch when that is unknown), woken by the acks, so fetches and claim rounds are batches."""

from __future__ import annotations

import threading
import time
import types

from worker.consumer import SafeRedisConsumer


def _full_consumer(timeout_ms: int) -> SafeRedisConsumer:
    consumer = SafeRedisConsumer(None, "q", prefetch=8, timeout=timeout_ms)
    consumer.queued_message_ids.update(f"m{i}" for i in range(8))
    return consumer


def _finish_later(consumer: SafeRedisConsumer, count: int, delay: float) -> threading.Thread:
    """What a handler thread's ack does to the consumer's count, ``count`` times."""

    def finish() -> None:
        time.sleep(delay)
        for i in range(count):
            consumer.queued_message_ids.discard(f"m{i}")
            consumer._freed()

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def test_wakes_when_half_the_prefetch_is_free() -> None:
    consumer = _full_consumer(timeout_ms=10_000)
    finisher = _finish_later(consumer, 4, delay=0.05)
    started = time.monotonic()
    assert consumer._wait_for_room()
    assert time.monotonic() - started < 2.0  # woken, not timed out
    finisher.join()


def test_keeps_waiting_while_only_a_little_is_free() -> None:
    consumer = _full_consumer(timeout_ms=300)
    finisher = _finish_later(consumer, 1, delay=0.01)
    started = time.monotonic()
    assert not consumer._wait_for_room()  # one free slot is not worth a fetch of one
    assert time.monotonic() - started >= 0.25
    finisher.join()


def test_with_as_many_threads_as_prefetch_any_free_slot_is_fetched() -> None:
    """Prefetch equal to the threads: waiting for more room would leave a thread idle."""
    consumer = SafeRedisConsumer(
        types.SimpleNamespace(worker_threads=8), "q", prefetch=8, timeout=10_000
    )
    consumer.queued_message_ids.update(f"m{i}" for i in range(8))
    assert consumer._fetch_at_most_out() == 7
    finisher = _finish_later(consumer, 1, delay=0.05)
    started = time.monotonic()
    assert consumer._wait_for_room()
    assert time.monotonic() - started < 2.0
    finisher.join()


def test_a_delay_queue_fetches_whenever_there_is_room() -> None:
    """Delayed messages wait in the consumer for their eta, not for a thread."""
    consumer = SafeRedisConsumer(
        types.SimpleNamespace(worker_threads=4), "q.DQ", prefetch=4000, timeout=10_000
    )
    consumer.queued_message_ids.update(f"m{i}" for i in range(100))
    assert consumer._fetch_at_most_out() == 3999
