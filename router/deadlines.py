"""Timeouts for the hot path that cost a list append, not a loop timer.

Each request needs several timeouts (its body, the upstream's first byte, the
whole answer, a stream's silence, the next request's headers), and nearly all of
them are cancelled unfired. Profiled under load on uvloop (issue #14), arming
and cancelling a loop timer cost ~5 us, and `asyncio.timeout` more, several
times a request. Here one loop timer per event loop serves every pending
deadline: arming one is a heap push, cancelling one sets a flag, and the timer
wakes at most once per `RESOLUTION_S` to fire what is due. A deadline fires up to
`RESOLUTION_S` late, which none of the router's timeouts needs finer.

    with Deadline(5.0):                      # like asyncio.timeout(5.0)
        await something()

    with Deadline(total, idle=read) as d:    # also: nothing for `read` seconds
        async for chunk in body:
            d.touch()

    timer = call_later(30.0, callback)       # like loop.call_later
    timer.cancel()
"""

from __future__ import annotations

import asyncio
import heapq
import threading
from asyncio import current_task as _current_task
from asyncio import get_running_loop as _running_loop
from collections.abc import Callable
from types import TracebackType

__all__ = ["RESOLUTION_S", "Deadline", "Timer", "call_later"]

RESOLUTION_S = 0.01
# A loop timer may run a hair before its time; a bucket that close is due.
_SLACK_S = RESOLUTION_S / 100
_NEVER = 1 << 62

_ACTIVE, _FIRED, _DONE = 0, 1, 2
# Cancelled entries are swept out when the buckets hold more than this, or twice
# what was live at the last sweep.
_SWEEP_MIN = 4096


class Timer:
    """A pending deadline; `cancel()` it when it is no longer needed."""

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = _ACTIVE

    def cancel(self) -> None:
        self._state = _DONE
        self._drop()

    def _drop(self) -> None:
        """Let go of what the timer refers to: it may wait in its bucket for long."""

    def _expire(self, now: float) -> float | None:
        """Fire, or return a later time to be looked at again."""
        raise NotImplementedError


class _Wheel:
    """The pending deadlines of one event loop, behind one loop timer.

    Deadlines are kept in buckets of `RESOLUTION_S`: adding one is a list append
    (a heap push only for a bucket's first), and a cancelled one is skipped when
    its bucket comes due, having dropped what it referred to. Nearly all are
    cancelled long before they are due (a 120 s answer deadline on a 5 ms answer),
    so the buckets are swept of them whenever they have doubled: at thousands of
    requests a second, keeping them until due would hold hundreds of thousands."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buckets: dict[int, list[Timer]] = {}
        self.order: list[int] = []  # heap of the buckets' numbers
        self.size = 0  # entries in the buckets, cancelled ones included
        self.sweep_at = _SWEEP_MIN
        self._armed = _NEVER
        self._handle: asyncio.TimerHandle | None = None

    def add(self, entry: Timer, when: float) -> None:
        number = int(when / RESOLUTION_S) + 1  # due at number * RESOLUTION_S >= when
        self.size += 1
        if self.size > self.sweep_at:
            self.sweep()
        bucket = self.buckets.get(number)
        if bucket is not None:
            bucket.append(entry)
            return
        self.buckets[number] = [entry]
        heapq.heappush(self.order, number)
        if number < self._armed:
            self._arm(number)

    def sweep(self) -> None:
        """Drop the cancelled entries (the buckets stay, empty, until due)."""
        live = 0
        for bucket in self.buckets.values():
            bucket[:] = [entry for entry in bucket if entry._state == _ACTIVE]
            live += len(bucket)
        self.size = live
        self.sweep_at = max(_SWEEP_MIN, 2 * live)

    def _arm(self, number: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = number
        self._handle = self.loop.call_at(number * RESOLUTION_S, self._tick)

    def _tick(self) -> None:
        self._armed, self._handle = _NEVER, None
        # Everything due by `due` fires now; what asks to be looked at again is then
        # due after it, so it lands in a later bucket and this loop ends.
        order, due = self.order, self.loop.time() + _SLACK_S
        while order and order[0] * RESOLUTION_S <= due:
            bucket = self.buckets.pop(heapq.heappop(order))
            self.size -= len(bucket)
            for entry in bucket:
                if entry._state != _ACTIVE:
                    continue
                try:
                    later = entry._expire(due)
                except Exception as exc:  # one failing callback must not stop the others
                    self.loop.call_exception_handler(
                        {"message": "deadline callback failed", "exception": exc}
                    )
                    continue
                if later is not None:
                    self.add(entry, later)
        if order and order[0] < self._armed:
            self._arm(order[0])


_wheels: dict[asyncio.AbstractEventLoop, _Wheel] = {}
_wheels_lock = threading.Lock()  # loops may run in several threads (tests, embedders)
_last: _Wheel | None = None


def _wheel(loop: asyncio.AbstractEventLoop) -> _Wheel:
    global _last
    last = _last  # read once: another thread's loop may replace it meanwhile
    if last is not None and last.loop is loop:
        return last
    with _wheels_lock:
        wheel = _wheels.get(loop)
        if wheel is None:
            # Loops that have finished (tests run many) are let go.
            for old in [old for old in _wheels if old.is_closed()]:
                del _wheels[old]
            wheel = _wheels[loop] = _Wheel(loop)
    _last = wheel
    return wheel


class Deadline(Timer):
    """Cancel the current task after `delay` seconds (None: never), or after `idle`
    seconds without a `touch()`; the cancellation leaves the block as TimeoutError.

    The contract of `asyncio.timeout`: nested deadlines and cancels from outside
    stay what they are (the task's `cancelling()` count tells them apart).
    """

    __slots__ = ("_cancelling", "_end", "_idle", "_last", "_loop", "_task")

    def __init__(self, delay: float | None, idle: float | None = None) -> None:
        self._state = _ACTIVE
        self._loop: asyncio.AbstractEventLoop | None = None
        self._end = delay
        self._idle = idle
        self._last = 0.0

    def __enter__(self) -> Deadline:
        # Written out rather than through `_next`, `_wheel` and `cancel`: a request
        # enters several deadlines, and each call saved here is saved on each.
        end, idle = self._end, self._idle
        if end is None and idle is None:
            self._state = _DONE
            return self
        loop = self._loop = _running_loop()
        task = _current_task(loop)
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._task, self._cancelling = task, task.cancelling()
        now = self._last = loop.time()
        if end is not None:
            end = self._end = end + now
            when = end if idle is None else min(now + idle, end)
        else:
            assert idle is not None
            when = now + idle
        wheel = _last
        if wheel is None or wheel.loop is not loop:
            wheel = _wheel(loop)
        # `_Wheel.add`'s common case: the bucket has a deadline already.
        bucket = wheel.buckets.get(int(when / RESOLUTION_S) + 1)
        if bucket is None or wheel.size >= wheel.sweep_at:
            wheel.add(self, when)
        else:
            wheel.size += 1
            bucket.append(self)
        return self

    def touch(self) -> None:
        """Progress: the idle time counts again from now."""
        if self._loop is not None:
            self._last = self._loop.time()

    def _next(self) -> float:
        if self._idle is None:
            assert self._end is not None
            return self._end
        when = self._last + self._idle
        return when if self._end is None else min(when, self._end)

    def _expire(self, now: float) -> float | None:
        later = self._next()
        if later > now:  # touched since it was queued: look again then
            return later
        self._state = _FIRED
        self._task.cancel()
        return None

    def _drop(self) -> None:
        self._task = self._loop = None  # type: ignore[assignment]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state == _FIRED:
            self._state = _DONE
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
        else:
            self._state = _DONE
            self._task = self._loop = None  # type: ignore[assignment]


class _Call(Timer):
    __slots__ = ("_callback",)

    def __init__(self, callback: Callable[[], object]) -> None:
        self._state = _ACTIVE
        self._callback = callback

    def _expire(self, now: float) -> float | None:
        self._state = _DONE
        callback, self._callback = self._callback, _nothing
        callback()
        return None

    def _drop(self) -> None:
        self._callback = _nothing


def _nothing() -> None:
    pass


def call_later(delay: float, callback: Callable[[], object]) -> Timer:
    """`loop.call_later` for a timer that is nearly always cancelled before it fires."""
    loop = _running_loop()
    entry = _Call(callback)
    _wheel(loop).add(entry, loop.time() + delay)
    return entry
