"""A virtual-time asyncio event loop for the deterministic simulation.

`loop.time()` is a number the loop moves itself: when nothing is ready to run and no
SQLite work is outstanding, it jumps straight to the next timer, so an hour of retries,
polls and timeouts costs only the callbacks they run.

SQLite is the one real source of concurrency: aiosqlite runs each statement in a worker
thread and hands the result back with `call_soon_threadsafe`. The loop counts that work
(a counting queue swapped into aiosqlite while the loop is installed) and, at the top of
every iteration, blocks in real time until every outstanding statement has posted its
result. So a result always lands in the ready queue at the same position, time never moves
while a statement runs, and the interleaving of coroutines depends on the seed alone.

Tasks get a creation number that is also their hash, so sets of tasks (the engine keeps
one and cancels its members in iteration order on close) iterate in the same order on every
run, whatever the memory addresses.

When nothing can ever run again (no timer, nothing ready, no SQLite work) the loop notes
where every task waits and cancels the main task, so a deadlock ends the run as a failure
of its seed instead of hanging. Other threads (run_in_executor, getaddrinfo) are not
counted: nothing the simulation drives uses them.
"""

from __future__ import annotations

import asyncio
import itertools
import selectors
import threading
from collections.abc import Callable, Coroutine, Generator, Iterator
from contextlib import contextmanager
from contextvars import Context
from queue import SimpleQueue
from typing import Any, TypeVarTuple

import aiosqlite.core

_Ts = TypeVarTuple("_Ts")

# Longest real wait for one SQLite statement before the simulation calls itself stuck.
THREAD_WORK_TIMEOUT = 60.0


class SimulationStuck(RuntimeError):
    """SQLite never answered, or a deadlock that could not be reported to the main task."""


class SeqTask(asyncio.Task[Any]):
    """A task whose hash is its creation number, so task sets iterate deterministically."""

    def __init__(self, coro: Generator[Any, None, Any] | Coroutine[Any, Any, Any], *,
                 seq: int, **kwargs: Any) -> None:
        self.seq = seq  # before Task.__init__, which puts the task in a (weak) set
        super().__init__(coro, **kwargs)

    def __hash__(self) -> int:
        return self.seq

    def __eq__(self, other: object) -> bool:
        return self is other


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 0.0) -> None:
        super().__init__(_VirtualSelector(selectors.DefaultSelector(), self))
        self._now = start
        self._seq = itertools.count(1)
        self._work = threading.Condition()
        self._outstanding = 0   # SQLite statements queued whose result is not yet posted
        self.thread_waits = 0   # how often an iteration had to wait for SQLite (a figure)
        self.main_task: asyncio.Task[Any] | None = None
        self.stuck: list[str] = []  # what every task waited on when nothing could run
        self.set_task_factory(self._make_task)

    def time(self) -> float:
        return self._now

    def _make_task(self, loop: asyncio.AbstractEventLoop,
                   coro: Generator[Any, None, Any] | Coroutine[Any, Any, Any],
                   **kwargs: Any) -> asyncio.Task[Any]:
        return SeqTask(coro, loop=loop, seq=next(self._seq), **kwargs)

    # ---- SQLite thread work --------------------------------------------------------------

    def _thread_work_queued(self) -> None:
        with self._work:
            self._outstanding += 1

    def call_soon_threadsafe(self, callback: Callable[[*_Ts], object],
                             *args: *_Ts, context: Context | None = None
                             ) -> asyncio.Handle:
        handle = super().call_soon_threadsafe(callback, *args, context=context)
        posted: object = callback
        if posted in (aiosqlite.core.set_result, aiosqlite.core.set_exception):
            # Counted only once the result is in the ready queue: from here on the loop
            # may go on without it being lost or reordered.
            with self._work:
                self._outstanding -= 1
                self._work.notify_all()
        return handle

    def _wait_for_thread_work(self) -> None:
        with self._work:
            if self._outstanding:
                self.thread_waits += 1
            if not self._work.wait_for(lambda: self._outstanding <= 0, THREAD_WORK_TIMEOUT):
                raise SimulationStuck(f"{self._outstanding} SQLite statement(s) did not "
                                      f"finish within {THREAD_WORK_TIMEOUT:.0f}s")

    def _deadlocked(self) -> None:
        """No timer, nothing ready, no SQLite work: every coroutine waits for something
        that can never happen. Note where each one stands and cancel the main task, so
        the run ends as a failure instead of hanging."""
        if self.main_task is None or self.main_task.done() or self.stuck:
            raise SimulationStuck("deadlocked, and the main task cannot be told")
        for task in sorted(asyncio.all_tasks(self), key=lambda t: getattr(t, "seq", 0)):
            self.stuck.append(f"{task.get_name()}: {' -> '.join(_await_chain(task))}")
        self.main_task.cancel()

    def _advance(self, seconds: float) -> None:
        # To the earliest timer exactly, so float rounding never leaves it a hair ahead.
        when = self._scheduled[0].when() if self._scheduled else self._now + seconds  # type: ignore[attr-defined]
        self._now = max(self._now, when)


def _await_chain(task: asyncio.Task[Any]) -> list[str]:
    """Where a suspended task waits: its coroutine and each one it awaits, outermost first
    (Task.get_stack shows only the outermost)."""
    chain: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and len(chain) < 30:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None) \
            or getattr(coro, "gi_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) \
            or getattr(coro, "ag_await", None)
    return chain


class _VirtualSelector(selectors.BaseSelector):
    """Wraps the real selector (the loop's self-pipe lives there); `select(timeout)` with
    a timeout means "idle until then", which becomes a jump of the virtual clock."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._real = real
        self._loop = loop

    def select(self, timeout: float | None = None
               ) -> list[tuple[selectors.SelectorKey, int]]:
        self._loop._wait_for_thread_work()
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            self._loop._deadlocked()
            return []
        self._loop._advance(timeout)
        return []

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class _CountingQueue(SimpleQueue[Any]):
    """aiosqlite's request queue, telling a virtual-time loop about each statement queued."""

    def put_nowait(self, item: Any) -> None:
        future = item[0]
        if future is not None:
            loop = future.get_loop()
            if isinstance(loop, VirtualTimeLoop):
                loop._thread_work_queued()
        super().put_nowait(item)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.put_nowait(item)


@contextmanager
def counting_sqlite() -> Iterator[None]:
    """Connections opened inside count their statements for VirtualTimeLoop. Harmless for
    other loops (they are simply not told), and undone on exit."""
    original = aiosqlite.core.SimpleQueue  # type: ignore[attr-defined]
    aiosqlite.core.SimpleQueue = _CountingQueue  # type: ignore[attr-defined]
    try:
        yield
    finally:
        aiosqlite.core.SimpleQueue = original  # type: ignore[attr-defined]


def run(main: Coroutine[Any, Any, Any], *, start: float = 0.0) -> Any:
    """Run `main` to completion on a fresh virtual-time loop."""
    loop = VirtualTimeLoop(start)
    try:
        with counting_sqlite():
            loop.main_task = loop.create_task(main, name="simulation")
            return loop.run_until_complete(loop.main_task)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
