"""Budget reservations never leak: not when Redis stalls mid-admission, not when the
request is cancelled, not when it is never settled. Admission is bounded in time."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from test_cache_faults import Server, free_port

from router.budgets import BudgetLedger
from router.policy.model import BudgetConfig, Caps

pytestmark = pytest.mark.anyio
CAPS = Caps(daily_usd=10.0, monthly_usd=100.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(free_port())
    srv.start()
    yield srv
    if srv.process is not None:
        os.kill(srv.process.pid, signal.SIGCONT)
    srv.kill()


def ledger_for(server: Server, **options: float) -> BudgetLedger:
    config = BudgetConfig(
        redis_url=f"redis://127.0.0.1:{server.port}/0",
        namespace=f"hrtest-{uuid.uuid4().hex[:8]}",
        default=CAPS,
        **options,  # type: ignore[arg-type]
    )
    return BudgetLedger(config)


def totals(server: Server, ledger: BudgetLedger, tenant: str) -> tuple[float, float]:
    """(reserved, spent) on the tenant's day key."""
    day, _ = ledger.keys(tenant)
    values = redis.Redis(port=server.port).hmget(day, "r", "s")
    return float(values[0] or 0), float(values[1] or 0)


def pause(server: Server) -> None:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)


def resume(server: Server) -> None:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGCONT)


async def test_reply_lost_mid_admission_does_not_leak(server: Server) -> None:
    ledger = ledger_for(server)
    pause(server)  # the script reaches Redis, which runs it only after our timeout
    started = time.monotonic()
    admission = await ledger.admit("t", CAPS, 0.5, "req-1")
    assert time.monotonic() - started < 0.6  # bounded, and fails open
    assert admission.admitted
    resume(server)
    await asyncio.sleep(0.2)
    await ledger.settle(admission, 0.01)
    await asyncio.sleep(0.1)
    reserved, spent = totals(server, ledger, "t")
    assert reserved == pytest.approx(0.0, abs=1e-9)
    assert spent == pytest.approx(0.01)
    await ledger.aclose()


async def test_settle_that_overtakes_a_late_admission_still_releases_it(server: Server) -> None:
    ledger = ledger_for(server)
    other = ledger_for(server)
    other.config = ledger.config  # same namespace, its own connections
    pause(server)
    admission = await ledger.admit("t", CAPS, 0.5, "req-2")
    resume(server)
    # Whichever runs first, the admission's reservation must end up released.
    await other.settle(admission, 0.0)
    await asyncio.sleep(0.3)
    assert totals(server, ledger, "t")[0] == pytest.approx(0.0, abs=1e-9)
    await ledger.aclose()
    await other.aclose()


async def test_cancelled_admission_is_released(server: Server) -> None:
    ledger = ledger_for(server)
    pause(server)
    task = asyncio.ensure_future(ledger.admit("t", CAPS, 0.5, "req-3"))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    resume(server)
    await asyncio.sleep(0.5)
    assert totals(server, ledger, "t")[0] == pytest.approx(0.0, abs=1e-9)
    await ledger.aclose()


async def test_unsettled_reservation_expires(server: Server) -> None:
    ledger = ledger_for(server, reservation_ttl_s=0.3)
    admission = await ledger.admit("t", CAPS, 0.5, "req-4")
    assert admission.admitted and totals(server, ledger, "t")[0] == pytest.approx(0.5)
    # The process that reserved dies without settling; later admissions sweep it.
    await asyncio.sleep(0.4)
    await ledger.admit("t", CAPS, 0.25, "req-5")
    assert totals(server, ledger, "t")[0] == pytest.approx(0.25)
    await ledger.aclose()


async def test_admission_retried_by_the_client_reserves_once(server: Server) -> None:
    ledger = ledger_for(server)
    for _ in range(3):
        assert (await ledger.admit("t", CAPS, 0.5, "req-6")).admitted
    assert totals(server, ledger, "t")[0] == pytest.approx(0.5)
    await ledger.aclose()
