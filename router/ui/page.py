"""`/ui`: the status page, its script and `/ui/data`, plus the sampler that feeds them."""

from __future__ import annotations

import asyncio
import hmac
import time
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import structlog
from starlette.types import Receive, Scope, Send

from router.budgets import BUDGET
from router.cache import metrics as cache_metrics
from router.errors import RouterError
from router.outcomes import metrics, spend
from router.responses import send_bytes, send_error, send_json
from router.ui.data import WINDOWS, build
from router.ui.history import CounterHistory
from router.upstreams.shadow import SHADOW

if TYPE_CHECKING:
    from router.runtime import Runtime

__all__ = ["StatusPage"]

log = structlog.get_logger("router.ui")

# The counters the page reads: the ones /metrics exposes, nothing of its own.
SAMPLED = (
    metrics.REQUESTS,
    metrics.CALLS,
    metrics.FALLBACKS,
    metrics.UPSTREAM_LATENCY,
    metrics.OVERHEAD,
    metrics.SCORING_ERRORS,
    cache_metrics.HITS,
    cache_metrics.MISSES,
    cache_metrics.ERRORS,
    SHADOW,
    BUDGET,
    spend.SPEND,
    spend.TOP_COST,
    spend.CACHE_SAVED,
)
_PAGES = ("/ui", "/ui/")


def _page() -> bytes:
    """The page with its script inlined: one request, which the admin key guards."""
    static = resources.files("router.ui").joinpath("static")
    html = static.joinpath("index.html").read_bytes()
    return html.replace(b"/*app.js*/", static.joinpath("app.js").read_bytes())


class StatusPage:
    """Serves `/ui*` for one router; samples the counters while the policy enables it."""

    def __init__(self, runtime: Runtime, every: float = 5.0) -> None:
        self.runtime = runtime
        self.history = CounterHistory(SAMPLED, fine=every)
        self.started = time.time()
        self._task: asyncio.Task[None] | None = None

    # -- sampler -------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            # The first reading now, before any request: windows start from it.
            if self.runtime.policy.ui.enabled:
                self.history.sample(time.time())
            self._task = asyncio.ensure_future(self._sample_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _sample_forever(self) -> None:
        while True:
            # Off by policy: no readings (the loop only wakes up to notice a reload).
            if self.runtime.policy.ui.enabled:
                try:
                    self.history.sample(time.time())
                except Exception:  # a bad reading must not end the history
                    log.exception("ui_sample_failed")
            await asyncio.sleep(self.history.interval)

    # -- HTTP ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        config = self.runtime.policy.ui
        page = path in _PAGES
        if not config.enabled or not (page or path == "/ui/data"):
            await send_error(send, RouterError.not_found(f"Unknown endpoint: {method} {path}."))
            return
        if method not in ("GET", "HEAD"):
            error = RouterError(
                405,
                f"Method {method} is not allowed on {path}; use GET.",
                code="method_not_allowed",
                headers={"allow": "GET"},
            )
            await send_error(send, error)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        # The page shows what /metrics shows and more: the global admin key guards it
        # too, unless the page has a key of its own.
        key = config.admin_key or self.runtime.policy.admin_key
        if key is not None and not _authorized(scope, query, key):
            error = RouterError(
                401,
                "The status page needs the admin key (ui.admin_key, else server.admin_key): "
                "Authorization: Bearer, x-admin-key, or ?key=.",
                type_="authentication_error",
                code="invalid_admin_key",
                headers={"www-authenticate": "Bearer"},
            )
            await send_error(send, error)
            return
        self.start()  # a first visit without lifespan events still gets a history
        if page:
            headers = [(b"cache-control", b"no-store")]
            await send_bytes(send, 200, _page(), headers, b"text/html; charset=utf-8")
            return
        window = _window(query)
        last = _int(query, "n", 20, 1, 50)
        data = await build(self.runtime, self.history, window, self.started, last)
        await send_json(send, 200, data, [(b"cache-control", b"no-store")])


def _authorized(scope: Scope, query: dict[str, list[str]], key: str) -> bool:
    offered: list[str] = list(query.get("key", ()))
    for name, value in scope["headers"]:
        lower = name.lower()
        if lower == b"x-admin-key":
            offered.append(value.decode("latin-1"))
        elif lower == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                offered.append(token.strip())
    expected = key.encode()
    return any(hmac.compare_digest(o.encode(), expected) for o in offered)


def _int(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(query.get(name, [str(default)])[0])
    except ValueError:
        return default
    return min(max(value, low), high)


def _window(query: dict[str, list[str]]) -> float:
    value = _int(query, "window", 900, WINDOWS[0], WINDOWS[-1])
    return float(min(WINDOWS, key=lambda w: abs(w - value)))
