"""OpenTelemetry traces of the request flow (the optional extra `otel`).

One SERVER span per request, with child spans for scoring, the cache lookup and
each upstream attempt (a CLIENT span per target tried):

    chat auto                    request_span   router.route, router.rule, tokens, status
     ├─ router.score             scoring_span   router.score
     ├─ router.cache             cache_span     router.cache
     ├─ chat small-local         attempt_span   error.type=http_503 (a fallback)
     └─ chat big-cloud           attempt_span   http.response.status_code=200, tokens

Attributes follow the OpenTelemetry GenAI semantic conventions where they exist
(`gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.response.model`,
`gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`, `gen_ai.system` for
the providers it names), plus the router's own `router.*`.

W3C trace context: a client's `traceparent`/`tracestate` is the request span's
parent, and each upstream gets the attempt span's context in place of the
client's (only for the names the policy's `headers.request` lets through, which
by default are exactly these two).

Off unless `ROUTER_TRACING=1` and the `otel` extra is installed; then
`OTEL_SDK_DISABLED=true` still turns it off. Export is the SDK's standard
configuration by environment variables: `OTEL_TRACES_EXPORTER` (`otlp`, the
default; `console`; `none`), `OTEL_EXPORTER_OTLP_ENDPOINT` /
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`
(`http/protobuf`, the default; `grpc` with `opentelemetry-exporter-otlp-proto-grpc`),
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME` (default `hybrid-router`),
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`. A tracer provider
that the process already has (e.g. under `opentelemetry-instrument`) is used as is.

Off, every helper returns one shared no-op object and nothing of OpenTelemetry
is imported: the cost is a global read and a call per step.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from router.errors import ClientGone, UpstreamFailure
from router.policy.model import NEVER_REQUEST

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from router.exchange import Exchange
    from router.outcomes.record import DecisionRecord
    from router.upstreams.client import UpstreamClient

__all__ = [
    "attempt_span",
    "cache_span",
    "configure",
    "enabled",
    "finish",
    "request_span",
    "reset",
    "scoring_span",
    "step_span",
]

SERVICE_NAME = "hybrid-router"


class _NoSpan:
    """The context manager every helper returns when tracing is off: one instance, no state."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


NO_SPAN = _NoSpan()

_UNSET: Any = object()
_tracer: Tracer | None = _UNSET


def _current() -> Tracer | None:
    tracer = _tracer
    return _resolve() if tracer is _UNSET else tracer


def enabled() -> bool:
    return _current() is not None


def configure(provider: TracerProvider | None) -> None:
    """Trace into `provider` from now on (None: tracing off), whatever the environment says.

    For tests and embedding; a running router reads the environment (`reset`).
    """
    global _tracer
    _tracer = None if provider is None else provider.get_tracer("router")


def reset() -> None:
    """Forget the choice: the next request reads the environment again."""
    global _tracer
    _tracer = _UNSET


def _resolve() -> Tracer | None:
    global _tracer
    try:
        _tracer = _from_env()
    except Exception as exc:  # a bad exporter setting must not fail requests
        import structlog

        structlog.get_logger("router").warning("tracing_unavailable", detail=repr(exc))
        _tracer = None
    return _tracer


def _on(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _from_env() -> Tracer | None:
    if not _on("ROUTER_TRACING") or _on("OTEL_SDK_DISABLED"):
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        import structlog

        structlog.get_logger("router").warning(
            "tracing_unavailable", detail="ROUTER_TRACING is set but the otel extra is missing"
        )
        return None
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        provider = _provider()
        if provider is None:
            return None
        trace.set_tracer_provider(provider)
    return trace.get_tracer("router")


def _provider() -> TracerProvider | None:
    """A tracer provider from the standard environment variables."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        import structlog

        structlog.get_logger("router").warning(
            "tracing_unavailable", detail="opentelemetry-sdk is not installed (extra otel)"
        )
        return None
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = SdkProvider(resource=resource)
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(","):
        exporter = _exporter(name.strip().lower())
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(name: str) -> SpanExporter | None:
    if name in ("", "none"):
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        )
        if protocol.strip() == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found, unused-ignore]
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter()  # type: ignore[no-any-return, unused-ignore]
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    # Any other exporter that registers itself the standard way.
    from importlib.metadata import entry_points

    for entry in entry_points(group="opentelemetry_traces_exporter", name=name):
        exporter: SpanExporter = entry.load()()
        return exporter
    raise ValueError(f"OTEL_TRACES_EXPORTER: no span exporter named {name!r}")


# -- the spans ---------------------------------------------------------------------------


def request_span(record: DecisionRecord, headers: dict[str, str]) -> AbstractContextManager[Any]:
    """The request's span, current while the request runs, its parent the client's
    `traceparent`; its attributes come from `record` when it ends (`finish`)."""
    tracer = _tracer if _tracer is not _UNSET else _resolve()
    if tracer is None:
        return NO_SPAN
    return _request(tracer, record, headers)


@contextmanager
def _request(tracer: Tracer, record: DecisionRecord, headers: dict[str, str]) -> Iterator[Span]:
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    parent = propagate.extract(headers)
    with tracer.start_as_current_span("chat", parent, SpanKind.SERVER) as span:
        try:
            yield span
        finally:
            finish(span, record)


def finish(span: Span | None, record: DecisionRecord) -> None:
    """Set a request span's attributes from its decision record."""
    if span is None or not span.is_recording():
        return
    from opentelemetry.trace import StatusCode

    if record.model:
        span.update_name(f"chat {record.model}")
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "router.request_id": record.request_id,
        "router.stream": record.stream,
        "router.cache": record.cache,
        "http.response.status_code": record.status,
    }
    optional = {
        "gen_ai.request.model": record.model or None,
        "gen_ai.response.model": record.upstream_model,
        "gen_ai.usage.input_tokens": record.tokens_in,
        "gen_ai.usage.output_tokens": record.tokens_out,
        "router.route": record.route,
        "router.rule": record.rule or None,
        "router.reason": record.reason or None,
        "router.score": record.score,
        "router.score_error": record.score_error,
        "router.rollout": record.rollout,
        "router.shadow": record.shadow,
        "router.targets": record.targets or None,
        "router.tried": record.tried or None,
        "router.budget": record.budget,
        "router.dialect": record.dialect,
        "router.cost_usd": record.cost_usd,
        "router.overhead_ms": record.overhead_ms,
        "error.type": record.error,
    }
    attrs.update((k, v) for k, v in optional.items() if v is not None)
    span.set_attributes(attrs)
    # A server span is in error for a 5xx only (HTTP semantic conventions).
    if record.status >= 500:
        span.set_status(StatusCode.ERROR, record.error)


def step_span(
    name: str, on: bool = True, attributes: dict[str, Any] | None = None
) -> AbstractContextManager[Any]:
    """An INTERNAL child span of the current one (`on=False`: none)."""
    tracer = _tracer if _tracer is not _UNSET else _resolve()
    if tracer is None or not on:
        return NO_SPAN
    return tracer.start_as_current_span(name, attributes=attributes)


def scoring_span(record: DecisionRecord, on: bool = True) -> AbstractContextManager[Any]:
    """Scoring the prompt; the span gets `router.score` (or `router.score_error`)."""
    tracer = _tracer if _tracer is not _UNSET else _resolve()
    if tracer is None or not on:
        return NO_SPAN
    return _step(tracer, "router.score", record, ("score", "score_error"))


def cache_span(record: DecisionRecord, on: bool = True) -> AbstractContextManager[Any]:
    """The cache lookup; the span gets `router.cache` (hit, miss, bypass, error)."""
    tracer = _tracer if _tracer is not _UNSET else _resolve()
    if tracer is None or not on:
        return NO_SPAN
    return _step(tracer, "router.cache", record, ("cache", "cache_similarity"))


@contextmanager
def _step(
    tracer: Tracer, name: str, record: DecisionRecord, fields: tuple[str, ...]
) -> Iterator[Span]:
    with tracer.start_as_current_span(name) as span:
        try:
            yield span
        finally:
            for field in fields:
                value = getattr(record, field)
                if value is not None:
                    span.set_attribute(f"router.{field}", value)


def attempt_span(ex: Exchange, client: UpstreamClient) -> AbstractContextManager[Any]:
    """One upstream attempt: a CLIENT span, whose context replaces the client's trace
    headers in `ex.forward` (the headers this attempt sends upstream)."""
    tracer = _tracer if _tracer is not _UNSET else _resolve()
    if tracer is None:
        return NO_SPAN
    return _attempt(tracer, ex, client)


@contextmanager
def _attempt(tracer: Tracer, ex: Exchange, client: UpstreamClient) -> Iterator[Span]:
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind, StatusCode

    config, record = client.config, ex.record
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": config.model,
        "router.upstream": client.name,
        **_server_of(config.base_url),
    }
    with tracer.start_as_current_span(
        f"chat {config.model}",
        kind=SpanKind.CLIENT,
        attributes=attrs,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        _inject(ex, propagate)
        try:
            yield span
        except UpstreamFailure as failure:
            span.set_attribute("error.type", failure.kind)
            if failure.status is not None:
                span.set_attribute("http.response.status_code", failure.status)
            span.set_status(StatusCode.ERROR, failure.detail)
            raise
        except (asyncio.CancelledError, ClientGone):
            span.set_attribute("error.type", "cancelled")
            raise
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(StatusCode.ERROR, str(exc))
            raise
        else:
            done: dict[str, Any] = {"http.response.status_code": record.status}
            if record.upstream_model:
                done["gen_ai.response.model"] = record.upstream_model
            if record.tokens_in is not None:
                done["gen_ai.usage.input_tokens"] = record.tokens_in
            if record.tokens_out is not None:
                done["gen_ai.usage.output_tokens"] = record.tokens_out
            if record.error is not None:  # e.g. a stream cut after the first event
                done["error.type"] = record.error
                span.set_status(StatusCode.ERROR, record.error)
            span.set_attributes(done)


def _inject(ex: Exchange, propagate: Any) -> None:
    """Put the current (attempt) span's context into the headers sent upstream, in place
    of the client's; only names the policy lets through (`headers.request`)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    rules = ex.policy.headers.request
    names = {n for n in carrier if rules.allows(n) and n not in NEVER_REQUEST}
    if not names:
        return
    kept = [(k, v) for k, v in ex.forward if k.decode("latin-1").lower() not in names]
    kept += [(n.encode("latin-1"), carrier[n].encode("latin-1")) for n in sorted(names)]
    ex.forward[:] = kept


_KNOWN_SYSTEMS = (
    ("openai.azure.com", "az.ai.openai"),
    ("api.openai.com", "openai"),
    ("anthropic.com", "anthropic"),
    ("mistral.ai", "mistral_ai"),
    ("groq.com", "groq"),
    ("deepseek.com", "deepseek"),
    ("x.ai", "xai"),
    ("perplexity.ai", "perplexity"),
    ("googleapis.com", "gcp.gemini"),
)
_servers: dict[str, dict[str, Any]] = {}


def _server_of(base_url: str) -> dict[str, Any]:
    """`server.address`, `server.port` and, for a provider the conventions name, `gen_ai.system`."""
    found = _servers.get(base_url)
    if found is None:
        parts = urlsplit(base_url)
        host = parts.hostname or ""
        found = {"server.address": host}
        with suppress(ValueError):
            found["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
        for suffix, system in _KNOWN_SYSTEMS:
            if host == suffix or host.endswith("." + suffix):
                found["gen_ai.system"] = system
                break
        _servers[base_url] = found
    return found
