"""Every kind of bad input gets an OpenAI-format error, never a 500 or a hang."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from conftest import Stack


def post(stack: Stack, content: bytes, **kw: object) -> httpx.Response:
    return httpx.post(
        f"{stack.url}/v1/chat/completions",
        content=content,
        headers={"content-type": "application/json"},
        timeout=5,
        **kw,  # type: ignore[arg-type]
    )


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict:  # type: ignore[type-arg]
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"]
    if param is not None:
        assert error["param"] == param
    return error  # type: ignore[no-any-return]


GOOD = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[1, 2]", None),
        (b"\xff\xfe", None),
        (json.dumps({"model": "auto"}).encode(), "messages"),
        (json.dumps({"messages": GOOD["messages"]}).encode(), "model"),
        (json.dumps({**GOOD, "model": 5}).encode(), "model"),
        (json.dumps({**GOOD, "messages": []}).encode(), "messages"),
        (json.dumps({**GOOD, "messages": "hi"}).encode(), "messages"),
        (json.dumps({**GOOD, "messages": ["hi"]}).encode(), "messages[0]"),
        (
            json.dumps({**GOOD, "messages": [{"role": "boss", "content": "x"}]}).encode(),
            "messages[0].role",
        ),
        (
            json.dumps({**GOOD, "messages": [{"role": "user", "content": 7}]}).encode(),
            "messages[0].content",
        ),
        (json.dumps({**GOOD, "messages": [{"role": "user"}]}).encode(), "messages[0].content"),
        (
            json.dumps(
                {**GOOD, "messages": [{"role": "user", "content": [{"text": "no type"}]}]}
            ).encode(),
            "messages[0].content[0]",
        ),
        (json.dumps({**GOOD, "stream": "yes"}).encode(), "stream"),
        (
            json.dumps({**GOOD, "stream_options": {"include_usage": True}}).encode(),
            "stream_options",
        ),
        (json.dumps({**GOOD, "temperature": "hot"}).encode(), "temperature"),
        (json.dumps({**GOOD, "temperature": 3}).encode(), "temperature"),
        (json.dumps({**GOOD, "n": 0}).encode(), "n"),
        (json.dumps({**GOOD, "max_tokens": 1.5}).encode(), "max_tokens"),
        (json.dumps({**GOOD, "top_p": True}).encode(), "top_p"),
    ],
)
def test_invalid_bodies_get_400(stack: Stack, body: bytes, param: str | None) -> None:
    error = assert_openai_error(post(stack, body), 400, param)
    assert error["type"] == "invalid_request_error"
    assert not stack.local.seen and not stack.cloud.seen


def test_unknown_model_gets_404(stack: Stack) -> None:
    error = assert_openai_error(
        post(stack, json.dumps({**GOOD, "model": "gpt-9"}).encode()), 404, "model"
    )
    assert error["code"] == "model_not_found"


def test_body_over_limit_gets_413(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack = make_stack()
    stack.write_policy(stack.policy_path.read_text() + "server: {max_body_mb: 0.01}\n")
    deadline = time.time() + 5
    while stack.app.runtime.policy.max_body_bytes > 20_000 and time.time() < deadline:
        time.sleep(0.05)
    big = json.dumps({**GOOD, "messages": [{"role": "user", "content": "x" * 20_000}]}).encode()
    error = assert_openai_error(post(stack, big), 413)
    assert error["code"] == "request_too_large"

    # Without Content-Length (chunked), the limit holds while reading.
    def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    assert_openai_error(post(stack, chunks()), 413)  # type: ignore[arg-type]


def test_unknown_paths_and_methods(stack: Stack) -> None:
    error = assert_openai_error(httpx.get(f"{stack.url}/v1/engines"), 404)
    assert error["code"] == "not_found"
    response = httpx.get(f"{stack.url}/v1/chat/completions")
    assert_openai_error(response, 405)
    assert response.headers["allow"] == "POST"
    assert_openai_error(httpx.post(f"{stack.url}/v1/models"), 405)
    assert_openai_error(httpx.get(f"{stack.url}/nothing-here"), 404)


def test_client_that_sends_half_a_body_and_leaves(stack: Stack) -> None:
    host, port = stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 1000\r\n\r\n{"model": "auto"'
        )
    # The router survives and answers the next request.
    response = post(stack, json.dumps(GOOD).encode())
    assert response.status_code == 200
