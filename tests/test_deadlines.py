"""`router.deadlines.Deadline` keeps `asyncio.timeout`'s contract, plus an idle limit."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest

from router.deadlines import Deadline, call_later


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_fires_as_timeout_error() -> None:
    async def main() -> float:
        began = time.perf_counter()
        with pytest.raises(TimeoutError), Deadline(0.05):
            await asyncio.sleep(5)
        return time.perf_counter() - began

    took = run(main())
    assert 0.04 <= took < 1.0  # type: ignore[operator]


def test_unfired_deadline_changes_nothing() -> None:
    async def main() -> int:
        with Deadline(5):
            await asyncio.sleep(0)
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert run(main()) == 0


def test_none_never_fires() -> None:
    async def main() -> str:
        with Deadline(None):
            await asyncio.sleep(0.02)
        return "ok"

    assert run(main()) == "ok"


def test_idle_limit_counts_from_the_last_touch() -> None:
    async def main() -> tuple[int, float]:
        touched = 0
        began = time.perf_counter()
        with pytest.raises(TimeoutError), Deadline(10, idle=0.15) as deadline:
            for _ in range(6):  # 0.3 s of progress, never 0.15 s quiet
                await asyncio.sleep(0.05)
                deadline.touch()
                touched += 1
            await asyncio.sleep(5)  # silence
        return touched, time.perf_counter() - began

    touched, took = run(main())  # type: ignore[misc]
    assert touched == 6
    assert 0.4 <= took < 2.0


def test_total_limit_holds_despite_progress() -> None:
    async def main() -> float:
        began = time.perf_counter()
        with pytest.raises(TimeoutError), Deadline(0.2, idle=1.0) as deadline:
            while True:
                await asyncio.sleep(0.02)
                deadline.touch()
        return time.perf_counter() - began

    took = run(main())
    assert 0.18 <= took < 1.0  # type: ignore[operator]


def test_a_cancel_from_outside_stays_a_cancel() -> None:
    async def victim() -> None:
        with Deadline(5):
            await asyncio.sleep(5)

    async def main() -> None:
        task = asyncio.ensure_future(victim())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


def test_nested_inner_fires_outer_survives() -> None:
    async def main() -> str:
        with Deadline(5):
            with pytest.raises(TimeoutError), Deadline(0.02):
                await asyncio.sleep(5)
            await asyncio.sleep(0.01)  # the outer block is not cancelled
        return "ok"

    assert run(main()) == "ok"


def test_outer_fires_through_inner() -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError), Deadline(0.03), Deadline(5):
            await asyncio.sleep(5)

    run(main())


def test_call_later_fires_once_and_cancel_stops_it() -> None:
    async def main() -> list[str]:
        fired: list[str] = []
        call_later(0.02, lambda: fired.append("a"))
        call_later(0.02, lambda: fired.append("b")).cancel()
        await asyncio.sleep(0.1)
        return fired

    assert run(main()) == ["a"]


def test_a_cancelled_timer_lets_go_of_its_task() -> None:
    """A timer waits in its bucket until its time even when cancelled: it must not
    keep the finished request (its task, and all the task refers to) alive."""

    async def request() -> None:
        with Deadline(60):
            await asyncio.sleep(0)

    async def main() -> bool:
        task = asyncio.ensure_future(request())
        await task
        ref = weakref.ref(task)
        del task
        for _ in range(3):  # the loop's own callbacks that still name the task
            await asyncio.sleep(0)
        gc.collect()
        return ref() is None

    assert run(main())


def test_loops_in_several_threads_keep_their_own_deadlines() -> None:
    """Each event loop has its own timer behind its deadlines; loops running at the
    same time in other threads (a server thread beside a test's own loop) do not mix."""
    import threading

    results: list[float] = []

    async def work() -> None:
        for _ in range(2000):
            with Deadline(5):
                await asyncio.sleep(0)
        began = time.perf_counter()
        with pytest.raises(TimeoutError), Deadline(0.05):
            await asyncio.sleep(5)
        results.append(time.perf_counter() - began)

    threads = [threading.Thread(target=asyncio.run, args=(work(),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 3 and all(r < 2.0 for r in results)


def test_a_deadline_due_within_the_timer_slack_fires_instead_of_spinning() -> None:
    """A loop timer can run a hair before its bucket's time; an entry due in between
    must fire then, not be queued into the same bucket again and again."""
    from router import deadlines

    class Probe(deadlines.Timer):
        def __init__(self, when: float) -> None:
            super().__init__()
            self.when, self.looks = when, 0

        def _expire(self, now: float) -> float | None:
            self.looks += 1
            if self.looks > 100:  # the bug: stop the spin so the test can fail
                raise RuntimeError("spinning")
            return self.when if now < self.when else None  # as Deadline does

    async def main() -> int:
        loop = asyncio.get_running_loop()
        wheel = deadlines._wheel(loop)
        number = int(loop.time() / deadlines.RESOLUTION_S) + 5
        now = number * deadlines.RESOLUTION_S - deadlines._SLACK_S / 2
        probe = Probe(number * deadlines.RESOLUTION_S - deadlines._SLACK_S / 4)
        wheel.add(probe, probe.when)
        real = loop.time
        loop.time = lambda: now  # type: ignore[method-assign]
        try:
            wheel._tick()
        finally:
            loop.time = real  # type: ignore[method-assign]
        return probe.looks

    assert asyncio.run(main()) == 1


def test_cancelled_deadlines_do_not_pile_up_until_due() -> None:
    """A request's long deadlines (e.g. 120 s for the whole answer) are nearly all
    cancelled within milliseconds: the wheel must not hold them until they are due,
    and what is live must still fire after the cancelled ones are swept out."""
    from router import deadlines

    async def main() -> tuple[int, bool, bool]:
        loop = asyncio.get_running_loop()
        fired = asyncio.Event()
        call_later(0.05, fired.set)
        timed_out = False
        held = 0
        try:
            with Deadline(0.1):  # entered before every sweep
                for _ in range(50_000):
                    with Deadline(300.0):
                        pass
                    call_later(300.0, lambda: None).cancel()
                held = sum(len(b) for b in deadlines._wheel(loop).buckets.values())
                await asyncio.sleep(1)
        except TimeoutError:
            timed_out = True
        await asyncio.wait_for(fired.wait(), 1)
        return held, fired.is_set(), timed_out

    held, fired, timed_out = asyncio.run(main())
    assert 0 < held <= 2 * deadlines._SWEEP_MIN  # not 100,000
    assert fired and timed_out
