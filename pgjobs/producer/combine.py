"""Concurrent calls of one process that share one write: group commit on the client.

A web server's threads each ``enqueue`` one job. Alone, each call is one INSERT with its own
commit, and 16 threads pay 16 statements, 16 commits and 16 Redis round trips. Here, once more
than ``crowd`` calls of the process are under way, a call that finds ``writers`` writes in
flight waits, and the waiting calls are then written together by one of them (the leader): one
statement for all their rows, one commit, one message round trip. A call that finds room writes
at once, so a few threads pay only a lock.

Each call still returns only after its own row is committed and its message sent: nothing is
acknowledged earlier, and nothing is sent before its row is durable. Calls are combined only
when their key is equal (one statement takes one actor, one share size). When a combined write
is refused as a whole for something one call brought (an unknown tenant, a quota), nothing was
written, and each call then writes alone and gets its own answer. Any other error of a combined
write is every member's, as it would have been each one's alone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Written = TypeVar("Written")
Result = TypeVar("Result")

MAX_COMBINED = 1000
"""Most items one combined write takes (calls beyond it wait for the next)."""


@dataclass(eq=False, slots=True)
class _Call(Generic[Item, Result]):
    """One waiting call: its item, and what its leader made of it."""

    item: Item
    key: Hashable
    size: int
    done: threading.Event = field(default_factory=threading.Event)
    batch: list[_Call[Item, Result]] | None = None
    """Set when this call is to lead: the calls it writes (itself first)."""
    result: Result | None = None
    error: BaseException | None = None
    alone: bool = False
    """The combined write was refused as a whole: write alone."""


class Combiner(Generic[Item, Written, Result]):
    """Runs ``write`` for calls that arrive while ``writers`` writes are in flight and more
    than ``crowd`` calls are under way, all at once.

    ``write(items)`` makes the durable write of all the items (it raises, having written
    nothing, one of ``refusals`` when it refuses them as a whole); ``finish(items, written)``
    runs after the next write may start (sending, say) and returns each item's result, in
    order. ``size(item)``: how many rows an item brings; ``key(item)``: calls combine only
    with calls of an equal key."""

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Written],
        finish: Callable[[Sequence[Item], Written], list[Result]],
        *,
        key: Callable[[Item], Hashable],
        size: Callable[[Item], int],
        refusals: tuple[type[BaseException], ...],
        writers: int = 1,
        crowd: int = 0,
    ) -> None:
        self._write, self._finish = write, finish
        self._key, self._size, self._refusals = key, size, refusals
        self.writers, self.crowd = writers, crowd
        self._lock = threading.Lock()
        self._writing = 0
        self._calls = 0
        self._waiting: list[_Call[Item, Result]] = []
        os.register_at_fork(after_in_child=self._reset)

    def __call__(self, item: Item) -> Result:
        """``item``'s result, written with whatever calls wait beside it."""
        call = None
        with self._lock:
            self._calls += 1
            if self._writing < self.writers or self._calls <= self.crowd:
                self._writing += 1
            else:
                call = _Call[Item, Result](item, self._key(item), self._size(item))
                self._waiting.append(call)
        try:
            return self._now(item) if call is None else self._when_written(call)
        finally:
            with self._lock:
                self._calls -= 1

    def _now(self, item: Item) -> Result:
        """Room for another write: now, as if there were no combiner."""
        try:
            written = self._write([item])
        finally:
            self._hand_over()
        return self._finish([item], written)[0]

    def _when_written(self, call: _Call[Item, Result]) -> Result:
        """A waiting call's result: written by its leader, or by itself as the leader."""
        call.done.wait()  # set when its leader finished it, or made it the leader
        if call.batch is not None:
            self._lead(call.batch)
        if call.alone:
            return self._finish([call.item], self._write([call.item]))[0]
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value] # set with done

    def _lead(self, batch: list[_Call[Item, Result]]) -> None:
        """Write ``batch`` (the leader is its first call), let the next leader start, finish
        the batch and wake its other calls."""
        try:
            results = self._write_and_finish(batch)
            for call, result in zip(batch, results or (), strict=results is not None):
                call.result = result
        except BaseException as exc:  # noqa: BLE001 - every member's, as it would be alone
            for call in batch:
                call.error = exc
        finally:
            for call in batch[1:]:
                call.done.set()

    def _write_and_finish(self, batch: list[_Call[Item, Result]]) -> list[Result] | None:
        """The batch's results; None when its write was refused as a whole (nothing was
        written: each call then writes alone and learns what it brought)."""
        items = [call.item for call in batch]
        try:
            try:
                written = self._write(items)
            finally:
                self._hand_over()
        except self._refusals:
            if len(batch) == 1:
                raise
            for call in batch:
                call.alone = True
            return None
        return self._finish(items, written)

    def _hand_over(self) -> None:
        """Make the first waiting call the next leader, with the waiting calls of its key
        (up to ``MAX_COMBINED`` rows); none waiting: one write fewer is in flight."""
        with self._lock:
            if not self._waiting:
                self._writing -= 1
                return
            first = self._waiting[0]
            batch: list[_Call[Item, Result]] = []
            rest: list[_Call[Item, Result]] = []
            rows = 0
            for call in self._waiting:
                if call.key == first.key and (not batch or rows + call.size <= MAX_COMBINED):
                    batch.append(call)
                    rows += call.size
                else:
                    rest.append(call)
            self._waiting = rest
        first.batch = batch
        first.done.set()

    def _reset(self) -> None:
        """A forked child starts with nothing in flight (the parent's calls are not its own)."""
        self._lock = threading.Lock()
        self._writing = self._calls = 0
        self._waiting = []
