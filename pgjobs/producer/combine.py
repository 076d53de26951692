"""Concurrent calls that share one write, a process's threads or an event loop's coroutines:
group commit on the client.

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

import asyncio
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Written = TypeVar("Written")
Result = TypeVar("Result")

MAX_COMBINED = 1000
"""Most items one combined write takes (calls beyond it wait for the next)."""
WAIT_SECONDS = 1.0
"""How long a call waits before it writes alone if no leader has taken it yet. A write in
flight can wait on a lock that the waiting call's own thread holds (its transaction locked a
tenant's or a quota's row, then it enqueues standalone): the call must not wait for that
write to end, or neither ever would (until the statement timeout fails the write)."""


@dataclass(eq=False, slots=True)
class _Call(Generic[Item, Result]):
    """One waiting call: its item, and what its leader made of it. ``done`` is a
    ``threading.Event`` or an ``asyncio.Event``, by the combiner's kind."""

    item: Item
    key: Hashable
    size: int
    done: Any
    batch: list[_Call[Item, Result]] | None = None
    """Set when this call is to lead: the calls it writes (itself first)."""
    result: Result | None = None
    error: BaseException | None = None
    alone: bool = False
    """Write alone: the combined write was refused as a whole, or no leader took the call in
    time."""

    def outcome(self) -> Result:
        """What the call returns once its leader finished it (not when it is to write alone)."""
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value] # set with done


class Rules(Generic[Item]):
    """When calls combine, for both combiners: ``key(item)``: calls combine only with calls of
    an equal key; ``size(item)``: how many rows an item brings, and one of more than
    ``up_to`` rows writes by itself, outside the queue; ``refusals``: the errors with which a
    write refuses its items as a whole, having written nothing; a call writes at once while
    fewer than ``writers`` writes are in flight or at most ``crowd`` calls are under way."""

    def __init__(
        self,
        *,
        key: Callable[[Item], Hashable],
        size: Callable[[Item], int],
        refusals: tuple[type[BaseException], ...],
        up_to: int = MAX_COMBINED,
        writers: int = 1,
        crowd: int = 0,
    ) -> None:
        self.key, self.size, self.refusals = key, size, refusals
        self.up_to, self.writers, self.crowd = up_to, writers, crowd


class _Queue(Generic[Item, Result]):
    """One combiner's bookkeeping (a process's, or an event loop's): calls under way, writes
    in flight, calls waiting. Not thread-safe: the threaded combiner holds its lock around it.
    A write may start at once while fewer than ``writers`` are in flight, or while at most
    ``crowd`` calls are under way."""

    def __init__(self, rules: Rules[Item]) -> None:
        self.rules = rules
        self.writing = self.calls = 0
        self.waiting: list[_Call[Item, Result]] = []

    def arrive(self) -> bool:
        """A call starts: True when it writes now; False: it waits (the caller queues it)."""
        self.calls += 1
        if self.writing < self.rules.writers or self.calls <= self.rules.crowd:
            self.writing += 1
            return True
        return False

    def next_leader(self) -> _Call[Item, Result] | None:
        """A write ended: the first waiting call, made the next leader with the waiting calls
        of its key (up to ``MAX_COMBINED`` rows); None: none waits, one write fewer is in
        flight."""
        if not self.waiting:
            self.writing -= 1
            return None
        first = self.waiting[0]
        batch: list[_Call[Item, Result]] = []
        rest: list[_Call[Item, Result]] = []
        rows = 0
        for call in self.waiting:
            if call.key == first.key and (not batch or rows + call.size <= MAX_COMBINED):
                batch.append(call)
                rows += call.size
            else:
                rest.append(call)
        self.waiting = rest
        first.batch = batch
        return first


def _settle(batch: list[_Call[Item, Result]], results: list[Result]) -> None:
    for call, result in zip(batch, results, strict=True):
        call.result = result


def _fail(batch: list[_Call[Item, Result]], exc: BaseException) -> None:
    """Every member's error, as it would have been each one's alone."""
    for call in batch:
        call.error = exc


def _write_failed(
    batch: list[_Call[Item, Result]],
    exc: BaseException,
    refusals: tuple[type[BaseException], ...],
) -> None:
    """The batch's write raised. A refusal of several calls: nothing was written, and each
    call writes alone and learns what it brought. Anything else (or one call's refusal) is
    every member's error, as it would have been each one's alone."""
    if isinstance(exc, refusals) and len(batch) > 1:
        for call in batch:
            call.alone = True
    else:
        _fail(batch, exc)


class Combiner(Generic[Item, Written, Result]):
    """Runs ``write`` for the calls of a process's threads that ``rules`` make wait, all at
    once.

    ``write(items)`` makes the durable write of all the items (or raises, having written
    nothing, one of the rules' ``refusals``); ``finish(items, written)`` runs after the next
    write may start (sending, say) and returns each item's result, in order."""

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Written],
        finish: Callable[[Sequence[Item], Written], list[Result]],
        rules: Rules[Item],
    ) -> None:
        self._write, self._finish, self.rules = write, finish, rules
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def __call__(self, item: Item) -> Result:
        """``item``'s result, written with whatever calls wait beside it."""
        rules = self.rules
        size = rules.size(item)
        if size > rules.up_to:
            return self._alone(item)
        call: _Call[Item, Result] | None = None
        with self._lock:
            if not self._queue.arrive():
                call = _Call(item, rules.key(item), size, threading.Event())
                self._queue.waiting.append(call)
        try:
            return self._now(item) if call is None else self._when_written(call)
        finally:
            with self._lock:
                self._queue.calls -= 1

    def _now(self, item: Item) -> Result:
        """Room for another write: now, as if there were no combiner."""
        try:
            written = self._write([item])
        finally:
            self._hand_over()
        return self._finish([item], written)[0]

    def _when_written(self, call: _Call[Item, Result]) -> Result:
        """A waiting call's result: written by its leader, or by itself as the leader."""
        try:
            while not call.done.wait(WAIT_SECONDS):  # set when led, or made the leader
                with self._lock:
                    left = _leave(self._queue, call)
                if left:  # no leader took it in time
                    call.alone = True
                    break
        except BaseException:  # interrupted: leave, but never strand the calls behind it
            with self._lock:
                waiting = _leave(self._queue, call)
            if not waiting and call.batch is not None:
                self._lead(call.batch)
            raise
        if call.batch is not None:
            self._lead(call.batch)
        return self._alone(call.item) if call.alone else call.outcome()

    def _alone(self, item: Item) -> Result:
        """``item`` written by itself, outside the queue."""
        return self._finish([item], self._write([item]))[0]

    def _lead(self, batch: list[_Call[Item, Result]]) -> None:
        """Write ``batch`` (the leader is its first call), let the next leader start, finish
        the batch and wake its other calls."""
        items = [call.item for call in batch]
        try:
            written = self._write(items)
        except BaseException as exc:  # noqa: BLE001 - the batch's: refused, or failed
            self._hand_over()
            _write_failed(batch, exc, self.rules.refusals)
        else:
            self._hand_over()
            try:
                _settle(batch, self._finish(items, written))
            except BaseException as exc:  # noqa: BLE001 - written, not finished: every member's
                _fail(batch, exc)
        _wake_members(batch)

    def _hand_over(self) -> None:
        with self._lock:
            leader = self._queue.next_leader()
        _wake(leader)

    @property
    def _writing(self) -> int:
        return self._queue.writing

    @property
    def _waiting(self) -> list[_Call[Item, Result]]:
        return self._queue.waiting

    def _reset(self) -> None:
        """A new process (or a forked child) starts with nothing in flight: the parent's calls
        are not its own."""
        self._lock = threading.Lock()
        self._queue: _Queue[Item, Result] = _Queue(self.rules)


class AsyncCombiner(Generic[Item, Written, Result]):
    """:class:`Combiner` for coroutines: the calls of one event loop combine (each loop keeps
    its own queue, as it keeps its own connection pool)."""

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Awaitable[Written]],
        finish: Callable[[Sequence[Item], Written], Awaitable[list[Result]]],
        rules: Rules[Item],
    ) -> None:
        self._write, self._finish, self.rules = write, finish, rules
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue[Item, Result]]
        self._queues = weakref.WeakKeyDictionary()
        self._leading: set[asyncio.Task[None]] = set()
        """Batches whose leader was cancelled as it was made the leader, written anyway."""

    def queue(self) -> _Queue[Item, Result]:
        """This loop's queue."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue(self.rules)
        return queue

    async def __call__(self, item: Item) -> Result:
        """``item``'s result, written with whatever calls of this loop wait beside it."""
        rules, size = self.rules, self.rules.size(item)
        if size > rules.up_to:
            return await self._alone(item)
        queue = self.queue()
        call: _Call[Item, Result] | None = None
        if not queue.arrive():
            call = _Call(item, rules.key(item), size, asyncio.Event())
            queue.waiting.append(call)
        try:
            if call is None:
                return await self._now(queue, item)
            return await self._when_written(queue, call)
        finally:
            queue.calls -= 1

    async def _now(self, queue: _Queue[Item, Result], item: Item) -> Result:
        try:
            written = await self._write([item])
        finally:
            _wake(queue.next_leader())
        return (await self._finish([item], written))[0]

    async def _when_written(self, queue: _Queue[Item, Result], call: _Call[Item, Result]) -> Result:
        try:
            while not await _set_within(call.done, WAIT_SECONDS):
                if _leave(queue, call):  # no leader took it in time
                    call.alone = True
                    break
        except asyncio.CancelledError:  # leave, but never strand the calls behind it
            if not _leave(queue, call) and call.batch is not None:
                task = asyncio.get_running_loop().create_task(self._lead(queue, call.batch))
                self._leading.add(task)  # the loop keeps only a weak reference
                task.add_done_callback(self._leading.discard)
            raise
        if call.batch is not None:
            await self._lead(queue, call.batch)
        return await self._alone(call.item) if call.alone else call.outcome()

    async def _alone(self, item: Item) -> Result:
        """``item`` written by itself, outside the queue."""
        return (await self._finish([item], await self._write([item])))[0]

    async def _lead(self, queue: _Queue[Item, Result], batch: list[_Call[Item, Result]]) -> None:
        items = [call.item for call in batch]
        try:
            written = await self._write(items)
        except BaseException as exc:  # noqa: BLE001 - the batch's: refused, or failed
            _wake(queue.next_leader())
            _write_failed(batch, exc, self.rules.refusals)
            return _wake_members(batch)
        _wake(queue.next_leader())
        try:
            _settle(batch, await self._finish(items, written))
        except BaseException as exc:  # noqa: BLE001 - written, not finished: every member's
            _fail(batch, exc)
        return _wake_members(batch)


def _leave(queue: _Queue[Any, Any], call: _Call[Any, Any]) -> bool:
    """An interrupted call leaves the queue: True if it was still waiting (nothing of it will
    be written). False: a leader took it, or made it the leader (then ``call.batch`` is set,
    and that batch must still be written: its other calls wait for it)."""
    if call in queue.waiting:
        queue.waiting.remove(call)
        return True
    return False


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """True once ``event`` is set; False if ``seconds`` passed first."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


def _wake(leader: _Call[Any, Any] | None) -> None:
    if leader is not None:
        leader.done.set()


def _wake_members(batch: list[_Call[Any, Any]]) -> None:
    """The leader's batch is done: wake its other calls."""
    for call in batch[1:]:
        call.done.set()
