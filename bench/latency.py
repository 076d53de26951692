"""An open-loop producer: jobs are sent at fixed intervals, whether or not earlier ones are done.

A closed loop (send, wait, send) hides queueing delay; an open loop at a set rate shows it.
Sender threads take scheduled slots in turn, so one slow send does not push the schedule back;
how late each send really left is recorded, to show the producer itself kept up.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.stats import percentile


@dataclass(frozen=True)
class OpenLoopResult:
    rate: float
    """Offered rate (jobs/s)."""
    sent: int
    seconds: float
    lag_p99_ms: float
    """How late the 99th-percentile send left its slot (producer health, not latency)."""

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def open_loop(
    send: Callable[[int], None], rate: float, seconds: float, threads: int = 4
) -> OpenLoopResult:
    """Call ``send(i)`` for slots i = 0.. at ``start + i / rate`` for ``seconds`` seconds."""
    total = max(1, int(rate * seconds))
    slots = itertools.count()
    lock = threading.Lock()
    lags: list[float] = []
    start = time.perf_counter() + 0.05
    errors: list[BaseException] = []

    def sender() -> None:
        while True:
            with lock:
                i = next(slots)
            if i >= total or errors:
                return
            due = start + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            lag = time.perf_counter() - due
            try:
                send(i)
            except Exception as exc:  # noqa: BLE001 - raised again after the threads stop
                errors.append(exc)
                return
            with lock:
                lags.append(lag * 1000)

    pool = [threading.Thread(target=sender, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if errors:
        raise errors[0]
    elapsed = time.perf_counter() - start
    return OpenLoopResult(rate, len(lags), elapsed, percentile(lags, 99))
