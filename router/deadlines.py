"""`Deadline`: the hot path's timeout, a lighter `asyncio.timeout` with an idle limit.

Each request needs several timeouts (its body, the upstream's first byte, the
whole answer), and a stream needs a silence limit too. Measured on uvloop
(issue #14), an `asyncio.timeout` block costs ~5-7 us over the work it guards
and a bare `loop.call_at`/`cancel` ~2 us; this class is the latter plus the
bookkeeping that turns the cancellation into `TimeoutError`.

The silence limit used to be the HTTP client's read timeout, which re-arms a
loop timer on every chunk read; here `touch()` only notes the time, and the
timer is moved only when it fires early.

    with Deadline(5.0):                      # like asyncio.timeout(5.0)
        await something()

    with Deadline(total, idle=read) as d:    # also: nothing for `read` seconds
        async for chunk in body:
            d.touch()
"""

from __future__ import annotations

import asyncio
from asyncio import current_task as _current_task
from asyncio import get_running_loop as _running_loop
from types import TracebackType

__all__ = ["Deadline"]


class Deadline:
    """Cancel the current task after `delay` seconds (None: never), or after `idle`
    seconds without a `touch()`; the cancellation leaves the block as TimeoutError.

    The contract of `asyncio.timeout`: nested deadlines and cancels from outside
    stay what they are (the task's `cancelling()` count tells them apart).
    """

    __slots__ = ("_cancelling", "_end", "_fired", "_handle", "_idle", "_last", "_loop", "_task")

    def __init__(self, delay: float | None, idle: float | None = None) -> None:
        self._end = delay
        self._idle = idle
        self._fired = False
        self._handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> Deadline:
        if self._end is None and self._idle is None:
            return self
        loop = self._loop = _running_loop()
        task = _current_task(loop)
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._task, self._cancelling = task, task.cancelling()
        now = self._last = loop.time()
        if self._end is not None:
            self._end += now
        self._handle = loop.call_at(self._next(), self._expire)
        return self

    def touch(self) -> None:
        """Progress: the idle time counts again from now."""
        if self._handle is not None:
            self._last = self._loop.time()

    def _next(self) -> float:
        if self._idle is None:
            assert self._end is not None
            return self._end
        when = self._last + self._idle
        return when if self._end is None else min(when, self._end)

    def _expire(self) -> None:
        later = self._next()
        if later > self._loop.time():  # touched since: look again then
            self._handle = self._loop.call_at(later, self._expire)
            return
        self._handle = None
        self._fired = True
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._fired:
            self._fired = False
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
