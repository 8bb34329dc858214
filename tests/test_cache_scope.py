from __future__ import annotations

from typing import Any

from router.cache import cache_mode, exact_key, last_user_text, scope_for


def body(**params: Any) -> dict[str, Any]:
    messages = params.pop("messages", [{"role": "user", "content": "What is 2+2?"}])
    return {"model": "m", "messages": messages, "temperature": 0, **params}


def scope(tenant: str = "t", upstream: str = "local", model: str = "m", **params: Any) -> str:
    found = scope_for(tenant=tenant, upstream=upstream, model=model, body=body(**params))
    assert found is not None
    return found.digest


def test_same_request_same_scope() -> None:
    assert scope() == scope()
    assert scope(temperature=0.0) == scope(temperature=0)


def test_streaming_and_user_do_not_split_the_scope() -> None:
    assert scope(stream=True, stream_options={"include_usage": True}, user="u1") == scope()


def test_tenant_target_and_parameters_split_the_scope() -> None:
    base = scope()
    others = [
        scope(tenant="other"),
        scope(upstream="cloud"),
        scope(model="m2"),
        scope(top_p=0.5),
        scope(max_tokens=5),
        scope(seed=1),
        scope(stop=["\n"]),
        scope(n=2),
        scope(response_format={"type": "json_object"}),
        scope(tools=[{"type": "function", "function": {"name": "f"}}]),
        scope(tool_choice="none"),
        scope(logit_bias={"1": 5}),
        scope(frequency_penalty=0.5),
        scope(presence_penalty=0.5),
        scope(some_future_parameter=True),
    ]
    assert len({base, *others}) == len(others) + 1


def test_system_prompt_and_earlier_turns_split_the_scope() -> None:
    question = {"role": "user", "content": "What is 2+2?"}
    with_system = scope(messages=[{"role": "system", "content": "Answer in French."}, question])
    with_turns = scope(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            question,
        ]
    )
    assert len({scope(), with_system, with_turns}) == 3


def test_only_deterministic_requests_are_cacheable() -> None:
    assert scope_for(tenant="t", upstream="u", model="m", body=body(temperature=0.7)) is None
    unset = {"messages": [{"role": "user", "content": "hi"}]}
    assert scope_for(tenant="t", upstream="u", model="m", body=unset) is None
    assert (
        scope_for(
            tenant="t", upstream="u", model="m", body=unset, unset_temperature_is_deterministic=True
        )
        is not None
    )
    assert (
        scope_for(
            tenant="t", upstream="u", model="m", body=body(temperature=1), only_deterministic=False
        )
        is not None
    )


def test_prompt_is_last_user_message() -> None:
    assert last_user_text(body()) == "What is 2+2?"
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert last_user_text(body(messages=[{"role": "user", "content": parts}])) == "a\nb"
    image = [{"type": "image_url", "image_url": {"url": "x"}}]
    tool_last = [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]
    for messages in ([{"role": "user", "content": image}], tool_last, []):
        assert last_user_text(body(messages=messages)) is None
        assert scope_for(tenant="t", upstream="u", model="m", body=body(messages=messages)) is None


def test_exact_key_normalisation() -> None:
    key = exact_key("What is the capital of France?")
    assert exact_key("  what is THE capital   of france ") == key
    assert exact_key("Please answer: What is the capital of France?") == key
    assert exact_key("What is 2+3?") != exact_key("What is 2*3?")


def test_cache_mode_headers() -> None:
    assert cache_mode({}) == "use"
    assert cache_mode({"Cache-Control": "no-cache"}) == "bypass"
    assert cache_mode({"cache-control": "max-age=0, no-store"}) == "bypass"
    assert cache_mode({"X-Router-Cache": "Bypass"}) == "bypass"
    assert cache_mode({"cache-control": "max-age=60"}) == "use"


def test_config_from_policy_section() -> None:
    import pytest

    from router.cache import CacheConfig
    from router.policy import PolicyError, parse_policy

    base = "upstreams: {a: {base_url: 'http://x', model: m}}\ndefault: {target: a}\n"
    policy = parse_policy(
        base
        + "cache: {redis_url: 'redis://x', ttl_s: 60, max_entries: 5, similarity: 0.9, guard: false}\n"
    )
    assert policy.cache == CacheConfig(
        redis_url="redis://x", ttl_s=60, max_entries=5, similarity=0.9, guard=False
    )
    assert parse_policy(base).cache is None
    assert parse_policy(base + "cache: {enabled: false}\n").cache is None
    for bad in ("{ttl: 1}", "{max_entries: five}", "{enabled: maybe}", "{similarity: 1.5}"):
        with pytest.raises(PolicyError, match=r"<policy>:3:\d+: "):
            parse_policy(base + f"cache: {bad}\n")
