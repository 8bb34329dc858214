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
