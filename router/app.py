"""The ASGI surface: `RouterMiddleware` (pure ASGI) and the standalone `create_app()`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router.endpoints import Endpoints
from router.errors import RouterError, clip
from router.ingress.admin import admin_allowed
from router.ingress.headers import header_limit_error
from router.openapi import spec_bytes
from router.passthrough import Passthrough
from router.pipeline import PolicySource, Router
from router.policy.model import Policy, ScoringConfig
from router.responses import send_bytes, send_error, send_json
from router.runtime import Runtime
from router.ui import StatusPage
from router.upstreams.pool import TransportFactory

__all__ = ["RouterMiddleware", "create_app"]


def _default_scorer_factory(config: ScoringConfig) -> Any:
    from router.scoring import Scorer

    return Scorer.from_path(
        config.model, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms
    )


class RouterMiddleware:
    """Serve the OpenAI `/v1` routes; pass every other request to the wrapped app.

    Mount it in front of any ASGI app (Starlette, FastAPI):

        app = RouterMiddleware(app, policy="policies/default.yaml")
    """

    def __init__(
        self,
        app: ASGIApp,
        policy: PolicySource | Policy = None,
        *,
        transport_factory: TransportFactory | None = None,
        scorer_factory: Callable[[ScoringConfig], Any] | None = _default_scorer_factory,
        watch: bool = True,
        router: Router | None = None,
    ) -> None:
        self.app = app
        self.router = router or Router(
            policy, transport_factory=transport_factory, scorer_factory=scorer_factory, watch=watch
        )
        self.runtime = self.router.runtime
        relay = Passthrough(self.runtime)
        self.relay = relay
        own = Endpoints(self.runtime)
        self._routes: dict[str, tuple[str, ASGIApp]] = {
            "/v1/chat/completions": ("POST", self.router.chat),
            "/v1/responses": ("POST", self.router.responses),
            "/v1/messages": ("POST", self.router.messages),
            "/v1/messages/count_tokens": ("POST", own.count_tokens),
            "/v1/embeddings": ("POST", relay.embeddings),
            "/v1/completions": ("POST", relay.completions),
            "/v1/models": ("GET", own.models),
            "/v1/feedback": ("POST", own.feedback),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/v1/") or path == "/v1":
                await self._v1(path, scope)(scope, receive, send)
                return
        elif scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        await self.app(scope, receive, send)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.runtime.startup()
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.shutdown()
            return message

        return wrapped

    def _v1(self, path: str, scope: Scope) -> ASGIApp:
        """What serves a `/v1` request. Chosen here and awaited by the caller: a
        coroutine of its own would be one more layer on every request."""
        over = header_limit_error(scope["headers"], self.runtime.policy.limits)
        if over is not None:
            return _answer(over)
        route = self._routes.get(path.rstrip("/"))
        method = scope["method"]
        if route is None:
            if method == "GET" and path.startswith("/v1/models/") and len(path) > 11:
                return self.relay.model
            return self.relay.other
        allowed, handler = route
        if method != allowed:
            return _answer(
                RouterError(
                    405,
                    f"Method {method} is not allowed on {clip(path)}; use {allowed}.",
                    code="method_not_allowed",
                    headers={"allow": allowed},
                )
            )
        return handler


def _answer(error: RouterError) -> ASGIApp:
    """An ASGI app that answers every request with `error`."""

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        await send_error(send, error)

    return answer


_ADMIN_NEEDED = "This endpoint needs the admin key: 'Authorization: Bearer <key>' or 'x-admin-key'."


def _metrics() -> bytes:
    """Prometheus text; with several workers, the sum over all of them."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


class _Operations:
    """Health, readiness, metrics and the `/ui` status page; else an OpenAI-format 404."""

    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self.ui: StatusPage | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if self.ui is not None:
                        self.ui.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.ui is not None:
                        await self.ui.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method in ("GET", "HEAD") and path == "/healthz":
            await send_bytes(send, 200, b'{"status":"ok"}')
        elif method == "GET" and path == "/openapi.json":
            await send_bytes(send, 200, spec_bytes())
        elif method in ("GET", "HEAD") and path == "/readyz":
            await self._ready(send, self._admin(scope))
        elif method == "GET" and path == "/metrics":
            if not self._admin(scope):
                await send_error(send, RouterError.unauthorized(_ADMIN_NEEDED))
                return
            await send_bytes(send, 200, _metrics(), content_type=CONTENT_TYPE_LATEST.encode())
        elif self.ui is not None and (path == "/ui" or path.startswith("/ui/")):
            await self.ui(scope, receive, send)
        else:
            error = RouterError.not_found(f"Unknown endpoint: {method} {clip(path)}.")
            await send_error(send, error)

    def _admin(self, scope: Scope) -> bool:
        assert self.runtime is not None
        return admin_allowed(self.runtime.policy.admin_key, scope["headers"])

    async def _ready(self, send: Send, details: bool) -> None:
        assert self.runtime is not None
        status, body = self.runtime.readiness(details)
        await send_json(send, status, body)


def create_app(
    policy: PolicySource | Policy = None,
    *,
    transport_factory: TransportFactory | None = None,
    scorer_factory: Callable[[ScoringConfig], Any] | None = _default_scorer_factory,
    watch: bool = True,
) -> RouterMiddleware:
    """The standalone sidecar: the `/v1` API plus `/healthz`, `/readyz` and `/metrics`."""
    operations = _Operations()
    app = RouterMiddleware(
        operations,
        policy,
        transport_factory=transport_factory,
        scorer_factory=scorer_factory,
        watch=watch,
    )
    operations.runtime = app.runtime
    operations.ui = StatusPage(app.runtime)
    return app


def app_from_env() -> RouterMiddleware:
    """The uvicorn factory behind `router serve` (each worker builds its own app)."""
    from router.logs import configure_logging

    configure_logging(os.environ.get("ROUTER_LOG_LEVEL", "info"))
    app = create_app(os.environ.get("ROUTER_POLICY"))
    tune_gc(int(os.environ.get("ROUTER_GC_THRESHOLD", _GC_THRESHOLD)))
    return app


# A request allocates a few hundred objects that die with it, so Python's default
# (a young-generation collection every 700 allocations) collects after nearly
# every request; with the modules and policy frozen out of the collector, a
# larger young generation cost ~10-15% less CPU per request (bench/overhead, #14).
_GC_THRESHOLD = 20_000


def tune_gc(threshold: int) -> None:
    """For `router serve` only, whose process is the router's alone (mounted as
    middleware, the host application owns its collector). 0 leaves Python's."""
    if threshold <= 0:
        return
    import gc

    gc.collect()
    gc.freeze()  # what exists now lives as long as the process: never scan it again
    gc.set_threshold(threshold, 20, 20)
