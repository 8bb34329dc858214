"""Fuzz over the published request schema: >= 2,000 generated requests, 0 5xx, and
every error in the OpenAI format.

The bodies come from the OpenAPI document the router serves at /openapi.json (read
over HTTP, turned into hypothesis strategies below), then some are broken on purpose:
fields replaced by arbitrary JSON, required ones dropped, deep nesting, raw bytes.
They go to a real router on loopback in front of fake upstreams.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import Stack, policy_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import FakeUpstream, serve

from router.app import create_app

EXAMPLES = 2_000

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def from_schema(schema: dict[str, Any], spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A strategy for the JSON-schema subset our OpenAPI document uses."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return from_schema(spec["components"]["schemas"][name], spec)
    if "oneOf" in schema:
        return st.one_of([from_schema(s, spec) for s in schema["oneOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kinds = schema.get("type", "object")
    if isinstance(kinds, list):
        return st.one_of([from_schema({**schema, "type": k}, spec) for k in kinds])
    low, high = schema.get("minimum"), schema.get("maximum")
    if kinds == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 40))
    if kinds == "integer":
        return st.integers(min_value=low, max_value=(low or 0) + 5_000 if high is None else high)
    if kinds == "number":
        return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
    if kinds == "boolean":
        return st.booleans()
    if kinds == "null":
        return st.none()
    if kinds == "array":
        items = from_schema(schema.get("items", {}), spec)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=4)
    properties = {k: from_schema(v, spec) for k, v in schema.get("properties", {}).items()}
    required = set(schema.get("required", ()))
    fixed = st.fixed_dictionaries(
        {k: v for k, v in properties.items() if k in required},
        optional={k: v for k, v in properties.items() if k not in required},
    )
    if not schema.get("additionalProperties", True):
        return fixed
    extra = st.dictionaries(st.text(min_size=1, max_size=12), JSON, max_size=2)
    return st.builds(lambda extra, known: {**extra, **known}, extra, fixed)


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # One router for every example (make_stack is per test): prompts recorded, as in
    # the demo policy, so the record writer sees every hostile body too.
    tmp = tmp_path_factory.mktemp("fuzz")
    local, cloud = FakeUpstream("local"), FakeUpstream("cloud")
    with serve(local, lifespan="off") as lurl, serve(cloud, lifespan="off") as curl:
        records, path = tmp / "records.jsonl", tmp / "policy.yaml"
        path.write_text(policy_text(lurl, curl, records, prompts=True))
        app = create_app(str(path), scorer_factory=None)
        with serve(app) as url:
            yield Stack(url, local, cloud, path, records, app, lurl, curl)


@pytest.fixture(scope="module")
def spec(fuzz_stack: Stack) -> dict[str, Any]:
    reply = httpx.get(f"{fuzz_stack.url}/openapi.json")
    assert reply.status_code == 200
    document: dict[str, Any] = reply.json()
    assert "/v1/chat/completions" in document["paths"]
    return document


def bodies(spec: dict[str, Any]) -> st.SearchStrategy[bytes]:
    schema = spec["components"]["schemas"]["ChatCompletionRequest"]

    def documented(body: dict[str, Any]) -> dict[str, Any]:
        """Apply the rules the schema states in words (descriptions, not keywords)."""
        body = {**body, "model": body["model"] if len(body["model"]) % 7 == 0 else "auto"}
        for message in body["messages"]:
            if message.get("content") is None and message["role"] in ("system", "developer", "user"):
                message["content"] = "hi"
        if body.get("stream") is not True:
            body.pop("stream_options", None)
        return body

    valid = from_schema(schema, spec).map(documented)

    def broken(body: dict[str, Any], field: str, value: Any, drop: bool) -> dict[str, Any]:
        body = dict(body)
        if drop:
            body.pop(field, None)
        else:
            body[field] = value
        return body

    fields = st.sampled_from([*schema["properties"], "messages", "messages"])
    mutated = st.builds(broken, valid, fields, JSON, st.booleans())
    message_broken = st.builds(
        lambda body, value: {**body, "messages": [*body["messages"], value]}, valid, JSON
    )
    deep = st.integers(min_value=1, max_value=1_100).map(
        lambda depth: {"model": "auto", "messages": [{"role": "user", "content": "x",
                                                      "name": json.loads("[" * depth + "]" * depth)}]}
        if depth <= 900 else None  # json.loads' own recursion limit; raw text below instead
    )
    as_json = st.one_of(valid, valid, valid, valid, mutated, mutated, message_broken, deep, JSON).map(
        lambda value: json.dumps(value).encode()
    )
    deep_raw = st.integers(min_value=200, max_value=5_000).map(
        lambda d: b'{"model":"auto","messages":[{"role":"user","content":"x","name":'
        + b"[" * d + b"]" * d + b"}]}"
    )
    return st.one_of(as_json, as_json, as_json, deep_raw, st.binary(max_size=64))


def assert_openai_error(reply: httpx.Response) -> None:
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]


def test_fuzz_chat_completions_never_5xx(fuzz_stack: Stack, spec: dict[str, Any]) -> None:
    statuses: dict[int, int] = {}
    client = httpx.Client(base_url=fuzz_stack.url, timeout=10)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same cases on every run: CI failures reproduce
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=bodies(spec))
    def one(body: bytes) -> None:
        reply = client.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
        statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
        assert reply.status_code < 500, (reply.status_code, reply.text[:300], body[:300])
        if reply.status_code >= 400:
            assert_openai_error(reply)
        elif reply.headers["content-type"].startswith("text/event-stream"):
            assert "data: [DONE]" in reply.text
        else:
            assert reply.json()["choices"]

    one()
    client.close()
    assert sum(statuses.values()) >= EXAMPLES
    # The generator reaches both sides: served requests and refused ones.
    assert statuses.get(200, 0) > EXAMPLES // 10 and statuses.get(400, 0) > EXAMPLES // 10
    print("fuzz statuses:", dict(sorted(statuses.items())))
    fuzz_stack.records()  # every request was recorded without killing the writer
    assert fuzz_stack.app.runtime.sink.inner._thread.is_alive()
