"""Request limits: JSON depth, tenant header, headers, slow clients. Each answers a clear
OpenAI-format error instead of a 500, a hang or memory without bound."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import POLICY, Stack
from test_bad_input import assert_openai_error


def nested_body(depth: int, field: str = "name") -> bytes:
    inner = "[" * (depth - 3) + '"x"' + "]" * (depth - 3)  # body, messages, message: 3 levels
    message = '{"role": "user", "content": "hi", "' + field + '": ' + inner + "}"
    return ('{"model": "auto", "messages": [' + message + "]}").encode()


def post(stack: Stack, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{stack.url}/v1/chat/completions",
        content=content,
        headers={"content-type": "application/json", **(headers or {})},
        timeout=10,
    )


@pytest.mark.parametrize("depth", [65, 254, 300, 1023, 1024, 5000])
def test_deep_json_gets_400_not_500(make_stack, depth: int) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = make_stack(prompts=True)
    assert json.loads(nested_body(60))  # the helper builds valid JSON
    error = assert_openai_error(post(stack, nested_body(depth)), 400)
    assert error["type"] == "invalid_request_error" and "deep" in error["message"]
    # A body just inside the default limit is served, and recorded.
    assert post(stack, nested_body(64)).status_code == 200
    assert len(stack.records()) == 2


def test_depth_counts_only_structure_not_brackets_in_strings(stack: Stack) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "[" * 5000 + '\\"{' * 100}]}
    assert post(stack, json.dumps(body).encode()).status_code == 200


def test_max_json_depth_is_a_policy_setting(make_stack) -> None:  # type: ignore[no-untyped-def]
    policy = POLICY.replace("{{", "{").replace("}}", "}").replace("{prompts}", "false")
    stack: Stack = make_stack(policy="server: {max_json_depth: 8}\n" + policy)
    assert post(stack, nested_body(8)).status_code == 200
    assert_openai_error(post(stack, nested_body(9)), 400)


def test_long_tenant_header_gets_400_and_is_not_kept(stack: Stack) -> None:
    good = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}).encode()
    error = assert_openai_error(post(stack, good, {"x-tenant-id": "t" * 257}), 400)
    assert "x-tenant-id" in error["message"] and "256" in error["message"]
    assert len(error["message"]) < 300  # the value is not echoed
    assert post(stack, good, {"x-tenant-id": "t" * 256}).status_code == 200
    # The refused request is recorded, without the oversized value.
    assert [(r["status"], len(r["tenant"])) for r in stack.records()] == [(400, 0), (200, 256)]
    # Recent ids keep a fixed-size digest of the tenant, whatever its length.
    assert all(len(v) <= 16 for v in stack.app.runtime.recent.values())


def test_recent_request_ids_still_check_the_tenant(stack: Stack) -> None:
    good = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}).encode()
    response = post(stack, good, {"x-tenant-id": "alice"})
    request_id = response.headers["x-router-request-id"]
    feedback = json.dumps({"request_id": request_id, "score": 1}).encode()
    for tenant, status in (("mallory", 404), ("alice", 200)):
        reply = httpx.post(f"{stack.url}/v1/feedback", content=feedback,
                           headers={"x-tenant-id": tenant}, timeout=5)
        assert reply.status_code == status, reply.text


def test_too_many_or_too_large_headers_get_431_in_middleware_mode(stack: Stack) -> None:
    good = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}).encode()
    many = {f"x-h{i}": "v" for i in range(120)}
    error = assert_openai_error(post(stack, good, many), 431)
    assert error["code"] == "request_header_fields_too_large"
    large = {"x-big": "v" * 40_000}
    assert_openai_error(post(stack, good, large), 431)
    assert post(stack, good, {"x-fine": "v" * 1000}).status_code == 200
