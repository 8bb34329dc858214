"""The operations surface: with `server.admin_key`, /metrics and /readyz's details need
the key; /healthz and a bare ready/not-ready stay open. Errors never echo huge input."""

from __future__ import annotations

import json

import httpx
from conftest import POLICY, Stack
from test_bad_input import assert_openai_error

ADMIN = "adm-" + "k" * 28


def admin_stack(make_stack) -> Stack:  # type: ignore[no-untyped-def]
    policy = POLICY.replace("{{", "{").replace("}}", "}").replace("{prompts}", "false")
    return make_stack(policy=f"server: {{admin_key: {ADMIN}}}\n" + policy)  # type: ignore[no-any-return]


def test_metrics_need_the_admin_key(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack = admin_stack(make_stack)
    for headers in ({}, {"authorization": "Bearer wrong"}, {"x-admin-key": "wrong"}):
        error = assert_openai_error(httpx.get(f"{stack.url}/metrics", headers=headers), 401)
        assert error["type"] == "authentication_error"
    for headers in ({"authorization": f"Bearer {ADMIN}"}, {"x-admin-key": ADMIN}):
        reply = httpx.get(f"{stack.url}/metrics", headers=headers)
        assert reply.status_code == 200 and "router_requests_total" in reply.text


def test_readyz_without_the_key_says_only_ready(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack = admin_stack(make_stack)
    bare = httpx.get(f"{stack.url}/readyz")
    assert bare.status_code == 200 and bare.json() == {"status": "ready"}
    assert str(stack.policy_path) not in bare.text
    full = httpx.get(f"{stack.url}/readyz", headers={"x-admin-key": ADMIN}).json()
    assert full["status"] == "ready" and set(full["upstreams"]) == {"local", "cloud"}
    assert httpx.get(f"{stack.url}/healthz").json() == {"status": "ok"}


def test_admin_key_never_reaches_logs_or_records(make_stack, capsys) -> None:  # type: ignore[no-untyped-def]
    stack = admin_stack(make_stack)
    httpx.get(f"{stack.url}/metrics", headers={"x-admin-key": ADMIN})
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    httpx.post(f"{stack.url}/v1/chat/completions", json=body)
    out = capsys.readouterr()
    assert ADMIN not in out.out + out.err + stack.records_path.read_text()
    assert ADMIN not in repr(stack.app.runtime.policy)


def test_unknown_model_error_does_not_echo_a_huge_name(stack: Stack) -> None:
    body = {"model": "m" * 5_000_000, "messages": [{"role": "user", "content": "hi"}]}
    reply = httpx.post(f"{stack.url}/v1/chat/completions", content=json.dumps(body), timeout=30)
    error = assert_openai_error(reply, 404)
    assert error["code"] == "model_not_found" and len(reply.content) < 1000


def test_unknown_path_error_does_not_echo_a_huge_path(stack: Stack) -> None:
    reply = httpx.get(f"{stack.url}/v1/{'p' * 20_000}")
    assert_openai_error(reply, 404)
    assert len(reply.content) < 1000
