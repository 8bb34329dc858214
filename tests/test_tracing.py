"""OpenTelemetry traces (router/tracing.py): real traffic through a router on loopback,
spans caught by an in-process exporter."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import POLICY
from servers import FakeUpstream, serve

from router import tracing
from router.app import create_app
from router.features import Features

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"


class FixedScorer:
    """A classifier stand-in: every prompt scores 0.25."""

    provider = "test"
    model_name = "fixed"

    async def start(self) -> None:
        pass

    async def score(self, text: str) -> Features:
        return Features(score=0.25)

    async def close(self) -> None:
        pass


def scored_policy(extra: str = "", rules: str = "") -> str:
    text = POLICY.replace("{{", "{").replace("}}", "}").replace("{prompts}", "false")
    rule = rules + "  - name: hard\n    match: {score: {gte: 0.9}}\n    target: cloud\ndefault:\n"
    text = text.replace("default:\n", rule, 1)
    return text + "scoring: {enabled: true}\ncache: {enabled: true}\n" + extra


class Traced:
    def __init__(self, url: str, local: FakeUpstream, cloud: FakeUpstream, app: Any) -> None:
        self.url, self.local, self.cloud, self.app = url, local, cloud, app

    def ask(
        self, text: str = "hello", headers: dict[str, str] | None = None, **body: Any
    ) -> httpx.Response:
        payload = {
            "model": "auto",
            "temperature": 0,
            "messages": [{"role": "user", "content": text}],
            **body,
        }
        return httpx.post(
            f"{self.url}/v1/chat/completions",
            json=payload,
            headers={"x-tenant-id": "t1", **(headers or {})},
        )

    def idle(self) -> None:
        deadline = time.time() + 5
        while self.app.runtime.in_flight and time.time() < deadline:
            time.sleep(0.01)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.configure(provider)
    yield spans
    tracing.reset()


@pytest.fixture
def make_traced(tmp_path: Path) -> Iterator[Callable[..., Traced]]:
    contexts: list[Any] = []

    def make(extra: str = "", rules: str = "") -> Traced:
        local, cloud = FakeUpstream("local"), FakeUpstream("cloud")
        lctx, cctx = serve(local, lifespan="off"), serve(cloud, lifespan="off")
        contexts.extend([lctx, cctx])
        lurl, curl = lctx.__enter__(), cctx.__enter__()
        path = tmp_path / "policy.yaml"
        text = scored_policy(extra, rules)
        records = tmp_path / "records.jsonl"
        path.write_text(
            text.replace("{local}", lurl)
            .replace("{cloud}", curl)
            .replace("{records}", str(records))
        )
        app = create_app(str(path), scorer_factory=lambda config: FixedScorer())
        rctx = serve(app)
        contexts.append(rctx)
        return Traced(rctx.__enter__(), local, cloud, app)

    yield make
    for ctx in reversed(contexts):
        ctx.__exit__(None, None, None)


def tree(exporter: InMemorySpanExporter, traced: Traced) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one request span and its children, in start order."""
    traced.idle()
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(roots) == 1, [s.name for s in spans]
    root = roots[0]
    assert root.context is not None
    children = [
        s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id
    ]
    assert len(children) == len(spans) - 1, "every other span is a child of the request span"
    return root, sorted(children, key=lambda s: s.start_time or 0)


def test_one_request_one_span_with_scoring_cache_and_attempt_children(
    exporter, make_traced
) -> None:  # type: ignore[no-untyped-def]
    traced = make_traced()
    reply = traced.ask()
    assert reply.status_code == 200
    root, children = tree(exporter, traced)
    assert [c.name for c in children] == ["router.score", "router.cache", "chat small-local"]
    assert root.name == "chat auto"
    attrs = dict(root.attributes or {})
    record_tokens = reply.json()["usage"]
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "auto"
    assert attrs["gen_ai.response.model"] == "small-local"
    assert attrs["gen_ai.usage.input_tokens"] == record_tokens["prompt_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == record_tokens["completion_tokens"]
    assert attrs["router.route"] == "local" and attrs["router.rule"] == "default"
    assert attrs["router.score"] == 0.25 and attrs["router.cache"] == "miss"
    assert attrs["http.response.status_code"] == 200
    assert attrs["router.request_id"] == reply.headers["x-router-request-id"]
    assert root.status.status_code == StatusCode.UNSET
    score, cache, attempt = children
    assert dict(score.attributes or {})["router.score"] == 0.25
    assert dict(cache.attributes or {})["router.cache"] == "miss"
    assert attempt.kind == SpanKind.CLIENT
    a = dict(attempt.attributes or {})
    assert a["router.upstream"] == "local" and a["gen_ai.request.model"] == "small-local"
    assert a["server.address"] == "127.0.0.1" and a["http.response.status_code"] == 200
    assert a["gen_ai.usage.output_tokens"] == record_tokens["completion_tokens"]


def test_cache_hit_has_no_attempt(exporter, make_traced) -> None:  # type: ignore[no-untyped-def]
    traced = make_traced()
    traced.ask("same", temperature=0)
    time.sleep(0.2)  # the store runs after the answer
    traced.idle()
    exporter.clear()
    assert traced.ask("same", temperature=0).headers["x-router-cache"] == "hit"
    root, children = tree(exporter, traced)
    assert [c.name for c in children] == ["router.score", "router.cache"]
    assert dict(root.attributes or {})["router.cache"] == "hit"
    assert dict(root.attributes or {})["router.route"] == "cache"


def test_fallback_shows_two_attempts(exporter, make_traced) -> None:  # type: ignore[no-untyped-def]
    traced = make_traced()
    traced.local.faults.status = 503
    reply = traced.ask(stream=True)
    assert reply.status_code == 200 and reply.headers["x-router-route"] == "cloud"
    root, children = tree(exporter, traced)
    attempts = [c for c in children if c.kind == SpanKind.CLIENT]
    assert [a.name for a in attempts] == ["chat small-local", "chat big-cloud"]
    failed, answered = (dict(a.attributes or {}) for a in attempts)
    assert failed["error.type"] == "http_503" and failed["http.response.status_code"] == 503
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert answered["http.response.status_code"] == 200 and answered["router.upstream"] == "cloud"
    assert attempts[1].status.status_code == StatusCode.UNSET
    attrs = dict(root.attributes or {})
    assert attrs["router.route"] == "cloud" and attrs["router.tried"] == ("local",)
    assert attrs["gen_ai.usage.output_tokens"] > 0  # usage asked of the stream, then counted


def test_failed_request_is_an_error_span(exporter, make_traced) -> None:  # type: ignore[no-untyped-def]
    traced = make_traced()
    traced.local.faults.status = traced.cloud.faults.status = 503
    assert traced.ask().status_code >= 500
    root, children = tree(exporter, traced)
    attrs = dict(root.attributes or {})
    assert attrs["http.response.status_code"] >= 500 and "error.type" in attrs
    assert root.status.status_code == StatusCode.ERROR
    assert [c.name for c in children if c.kind == SpanKind.CLIENT] == [
        "chat small-local",
        "chat big-cloud",
    ]


def test_rollout_and_shadow_attributes(exporter, make_traced) -> None:  # type: ignore[no-untyped-def]
    rules = (
        "  - name: canary\n"
        "    match: {headers: {x-route: canary}}\n"
        "    target: cloud\n"
        "    rollout: {percent: 100, target: local}\n"
        "    shadow: {percent: 100, target: cloud}\n"
    )
    traced = make_traced(rules=rules)
    reply = traced.ask(headers={"x-route": "canary"})
    assert reply.headers["x-router-rule"] == "canary"
    root, _ = tree(exporter, traced)
    attrs = dict(root.attributes or {})
    assert attrs["router.rule"] == "canary" and attrs["router.route"] == "local"
    assert attrs["router.rollout"] and attrs["router.shadow"] == "cloud"


def test_client_trace_continues_into_the_upstream(exporter, make_traced) -> None:  # type: ignore[no-untyped-def]
    traced = make_traced()
    traced.ask(headers={"traceparent": TRACEPARENT, "tracestate": "vendor=abc"})
    root, children = tree(exporter, traced)
    assert root.context is not None and root.parent is not None
    assert f"{root.context.trace_id:032x}" == CLIENT_TRACE
    assert f"{root.parent.span_id:016x}" == CLIENT_PARENT and root.parent.is_remote
    attempts = [c for c in children if c.kind == SpanKind.CLIENT]
    assert len(attempts) == 1 and attempts[0].context is not None
    seen = traced.local.seen[-1].headers
    _, trace_id, parent_id, flags = seen["traceparent"].split("-")
    assert trace_id == CLIENT_TRACE and parent_id == f"{attempts[0].context.span_id:016x}"
    assert flags == "01" and seen["tracestate"] == "vendor=abc"


def test_each_attempt_sends_its_own_traceparent(exporter, make_traced) -> None:  # type: ignore[no-untyped-def]
    traced = make_traced()
    traced.local.faults.status = 503
    traced.ask(headers={"traceparent": TRACEPARENT})
    _, children = tree(exporter, traced)
    local_span, cloud_span = (c for c in children if c.kind == SpanKind.CLIENT)
    assert local_span.context is not None and cloud_span.context is not None
    local_parent = traced.local.seen[-1].headers["traceparent"].split("-")[2]
    cloud_parent = traced.cloud.seen[-1].headers["traceparent"].split("-")[2]
    assert local_parent == f"{local_span.context.span_id:016x}"
    assert cloud_parent == f"{cloud_span.context.span_id:016x}"
    assert [len(s.headers["traceparent"].split("-")) for s in traced.cloud.seen] == [4]


def test_without_client_context_a_new_trace_still_reaches_the_upstream(
    exporter, make_traced
) -> None:  # type: ignore[no-untyped-def]
    traced = make_traced()
    traced.ask()
    root, _children = tree(exporter, traced)
    assert root.parent is None and root.context is not None
    trace_id = traced.local.seen[-1].headers["traceparent"].split("-")[1]
    assert trace_id == f"{root.context.trace_id:032x}"
    assert "tracestate" not in traced.local.seen[-1].headers


def test_policy_that_passes_no_trace_headers_gets_none(exporter, make_traced) -> None:  # type: ignore[no-untyped-def]
    traced = make_traced("headers: {request: [x-app-name]}\n")
    traced.ask(headers={"traceparent": TRACEPARENT, "x-app-name": "a"})
    tree(exporter, traced)
    seen = traced.local.seen[-1].headers
    assert "traceparent" not in seen and seen["x-app-name"] == "a"


def test_off_no_spans_and_shared_no_ops(make_traced, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.configure(None)
    try:
        traced = make_traced()
        assert traced.ask(headers={"traceparent": TRACEPARENT}).status_code == 200
        traced.idle()
        assert spans.get_finished_spans() == ()
        # The client's own context passes through untouched, as without the extra.
        assert traced.local.seen[-1].headers["traceparent"] == TRACEPARENT
        assert not tracing.enabled()
        record: Any = None
        assert tracing.request_span(record, {}) is tracing.NO_SPAN
        assert tracing.scoring_span(record) is tracing.NO_SPAN
        assert tracing.cache_span(record) is tracing.NO_SPAN
        assert tracing.attempt_span(record, record) is tracing.NO_SPAN
        assert tracing.step_span("x") is tracing.NO_SPAN
        with tracing.NO_SPAN as span:
            assert span is None
        tracing.finish(None, record)
    finally:
        tracing.reset()


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"ROUTER_TRACING": "0"}, False),
        ({"ROUTER_TRACING": "1", "OTEL_SDK_DISABLED": "true"}, False),
        ({"ROUTER_TRACING": "1", "OTEL_TRACES_EXPORTER": "none"}, True),
    ],
)
def test_switched_by_environment(monkeypatch, env: dict[str, str], on: bool) -> None:  # type: ignore[no-untyped-def]
    for name in ("ROUTER_TRACING", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tracing.reset()
    try:
        assert tracing.enabled() is on
    finally:
        tracing.reset()


def test_provider_from_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-router")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    provider = tracing._provider()
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "edge-router"
    processors = provider._active_span_processor._span_processors
    assert [type(p.span_exporter) for p in processors] == [OTLPSpanExporter]  # type: ignore[attr-defined]
    provider.shutdown()
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    provider = tracing._provider()
    assert provider is not None and provider.resource.attributes["service.name"] == "hybrid-router"
    provider.shutdown()


def test_anthropic_dialect_is_one_span_too(exporter, make_traced) -> None:  # type: ignore[no-untyped-def]
    traced = make_traced()
    body = {"model": "auto", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    reply = httpx.post(f"{traced.url}/v1/messages", json=body, headers={"x-tenant-id": "t1"})
    assert reply.status_code == 200
    root, children = tree(exporter, traced)
    attrs = dict(root.attributes or {})
    assert attrs["router.dialect"] == "anthropic" and attrs["router.route"] == "local"
    assert attrs["gen_ai.usage.output_tokens"] == reply.json()["usage"]["output_tokens"]
    assert [c.name for c in children][-1] == "chat small-local"


def test_bad_exporter_setting_leaves_tracing_off(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry import trace

    monkeypatch.setenv("ROUTER_TRACING", "1")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "no-such-exporter")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    # As in a fresh process: no provider yet, so the router builds one from the environment.
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    tracing.reset()
    try:
        assert not tracing.enabled()  # logged, and requests go on untraced
    finally:
        tracing.reset()
