"""Policy keys read from the dataclass fields: defaults, Literal choices, the dialect keys."""

from __future__ import annotations

import dataclasses

import pytest

from router import PolicyError, parse_policy
from router.policy.model import (
    AuthConfig,
    HeadersConfig,
    Limits,
    RecordConfig,
    ResponsesConfig,
    ScoringConfig,
    UiConfig,
)
from router.policy.sections import keys

MINIMAL = """\
version: 1
upstreams:
  local: {base_url: http://127.0.0.1:1/v1, model: small}
default: {target: local}
"""


def errors(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    return info.value.messages


def test_unwritten_sections_are_the_dataclass_defaults() -> None:
    policy = parse_policy(MINIMAL)
    assert (policy.auth, policy.record, policy.scoring) == (
        AuthConfig(),
        RecordConfig(),
        ScoringConfig(),
    )
    assert (policy.limits, policy.headers, policy.ui) == (Limits(), HeadersConfig(), UiConfig())
    assert policy.responses == ResponsesConfig()
    assert (policy.budgets, policy.cache, policy.passthrough) == (None, None, None)
    assert policy.max_body_bytes == 10 * 1024 * 1024 and policy.models == ("auto",)


def test_a_written_key_is_read_by_its_type_and_key() -> None:
    policy = parse_policy(
        MINIMAL
        + "server: {max_header_kb: 8, max_json_depth: 10}\n"
        + "record: {sink: redis, headers: [X-User], keep: 2}\n"
        + "auth: {tenant_header: X-Team}\n"
    )
    assert (policy.limits.max_header_bytes, policy.limits.max_json_depth) == (8 * 1024, 10)
    assert (policy.record.sink, policy.record.headers, policy.record.keep) == (
        "redis",
        ("x-user",),
        2,
    )
    assert policy.auth.tenant_header == "x-team"
    # Every field of a section is a key of it, under its YAML name.
    assert keys(RecordConfig) == {f.name for f in dataclasses.fields(RecordConfig)}
    assert "max_header_kb" in keys(Limits) and "max_header_bytes" not in keys(Limits)


def test_fixed_choices_are_checked_with_their_position() -> None:
    messages = errors(MINIMAL + "record: {sink: kafka}\n")
    assert messages == ["p.yaml:5:16: 'sink' must be 'jsonl' or 'redis'"]
    messages = errors(MINIMAL + "server: {max_json_depth: 500}\n")
    assert messages == ["p.yaml:5:26: 'max_json_depth' must be between 2 and 200, got 500"]


def test_upstream_kind_apis_and_anthropic_version() -> None:
    policy = parse_policy(
        MINIMAL.replace(
            "  local: {base_url: http://127.0.0.1:1/v1, model: small}\n",
            "  local: {base_url: http://127.0.0.1:1/v1, model: small, apis: [chat, responses]}\n"
            "  plain: {base_url: http://127.0.0.1:2/v1, model: small}\n"
            "  claude: {base_url: https://api.anthropic.com/v1, model: c, kind: anthropic}\n"
            "  pinned: {base_url: https://h/v1, model: c, kind: anthropic,"
            " anthropic_version: '2024-01-01'}\n",
        )
    )
    ups = policy.upstreams
    assert (ups["plain"].kind, ups["plain"].apis) == ("openai", ("chat",))
    assert ups["local"].apis == ("chat", "responses")
    assert (ups["claude"].kind, ups["claude"].apis) == ("anthropic", ("messages",))
    assert ups["claude"].anthropic_version == "2023-06-01"
    assert ups["pinned"].anthropic_version == "2024-01-01"


def test_unknown_kind_and_api_are_positioned_errors() -> None:
    text = MINIMAL.replace(
        "model: small}",
        "model: small, kind: gemini,\n          apis: [chat, completions]}",
    )
    assert errors(text) == [
        "p.yaml:3:64: 'kind' must be 'openai' or 'anthropic'",
        "p.yaml:4:24: 'apis' items must be 'chat', 'responses' or 'messages', got 'completions'",
    ]


def test_responses_section() -> None:
    policy = parse_policy(
        MINIMAL
        + "responses:\n"
        + "  store_ttl_s: 60\n"
        + "  max_stored: 5\n"
        + "  redis_url: redis://r:6379/0\n"
        + "  redis_cluster: true\n"
        + "  namespace: x\n"
    )
    assert policy.responses == ResponsesConfig(60.0, 5, "redis://r:6379/0", True, "x")
    messages = errors(MINIMAL + "responses: {max_stored: 0, ttl: 1}\n")
    assert messages[0] == "p.yaml:5:25: 'max_stored' must be >= 1, got 0"
    assert messages[1].startswith("p.yaml:5:28: unknown key 'ttl' (expected one of: max_stored,")
