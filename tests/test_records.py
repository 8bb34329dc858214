"""Decision records: one line per request, the fields replay needs, never a key."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx
import openai
from conftest import Stack

from router.outcomes.sinks import JsonlSink

SECRETS = ("local-secret-key", "sk-cloud-secret-key-123", "client-key-xyz", "tenant-key-abc")


def test_one_record_per_request_with_outcome(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = make_stack(prompts=True)
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key-xyz", max_retries=0)
    c.chat.completions.create(model="auto", messages=[{"role": "user", "content": "first"}])
    list(
        c.chat.completions.create(
            model="auto",
            stream=True,
            extra_headers={"x-route": "cloud"},
            messages=[{"role": "user", "content": "second"}],
        )
    )
    httpx.post(
        f"{stack.url}/v1/chat/completions",
        content=b"{oops",
        headers={"authorization": "Bearer client-key-xyz"},
    )
    records = stack.records()
    assert len(records) == 3
    plain, streamed, bad = records
    assert plain["v"] == 1 and plain["status"] == 200 and plain["route"] == "local"
    assert plain["rule"] == "default" and plain["targets"] == ["local", "cloud"]
    assert plain["upstream_model"] == "small-local" and plain["tenant"] == "default"
    assert plain["tokens_in"] >= 1 and plain["tokens_out"] > 0
    expected = (plain["tokens_in"] * 0.1 + plain["tokens_out"] * 0.2) / 1e6
    assert abs(plain["cost_usd"] - expected) < 1e-12
    assert plain["latency_ms"] >= plain["upstream_ms"] > 0
    assert plain["overhead_ms"] >= 0 and plain["ttfb_ms"] > 0
    assert plain["messages"] == [{"role": "user", "content": "first"}]
    assert plain["prompt"] == "first"  # recorded for replay even without scoring
    assert plain["answer"].startswith("[DEMO local model]")
    assert streamed["stream"] is True and streamed["route"] == "cloud"
    assert streamed["answer"].startswith("[DEMO cloud model]") and streamed["cost_usd"] > 0
    assert bad["status"] == 400 and bad["error"] == "invalid_request"
    text = stack.records_path.read_text()
    for secret in SECRETS:
        assert secret not in text


def test_prompts_are_not_recorded_by_default(stack: Stack) -> None:
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="k", max_retries=0)
    c.chat.completions.create(model="auto", messages=[{"role": "user", "content": "private words"}])
    record = stack.records()[-1]
    assert "messages" not in record and "answer" not in record and "prompt" not in record
    assert "private words" not in stack.records_path.read_text()


def test_keys_never_reach_logs(make_stack, capsys) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = make_stack()
    stack.local.faults.status = 500
    stack.cloud.faults.status = 500
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key-xyz", max_retries=0)
    with contextlib.suppress(openai.APIStatusError):
        c.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    out = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in out.out + out.err
    for secret in SECRETS:
        assert secret not in stack.records_path.read_text()


def test_jsonl_sink_rotates_and_keeps_n(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "r.jsonl", rotate_bytes=2_000, keep=2)
    for i in range(200):
        sink.emit({"i": i, "pad": "x" * 50})
    sink.flush()
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    lines = [
        json.loads(line)
        for f in ("r.jsonl.2", "r.jsonl.1", "r.jsonl")
        for line in (tmp_path / f).read_text().splitlines()
    ]
    seen = [r["i"] for r in lines]
    assert seen == sorted(seen) and seen[-1] == 199  # newest kept, in order


def test_records_keep_the_sticky_keys_replay_needs(make_stack) -> None:  # type: ignore[no-untyped-def]
    from conftest import POLICY

    policy = POLICY.replace("{{", "{").replace("}}", "}").replace("{prompts}", "false")
    stack: Stack = make_stack(policy=policy.replace("record:\n", "record:\n  headers: [x-user-id]\n"))
    c = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key-xyz", max_retries=0)
    for user in ("alice", None):
        extra = {"x-user-id": user} if user else {}
        c.chat.completions.create(model="auto", messages=[{"role": "user", "content": "same start"}],
                                  extra_headers={**extra, "x-other": "not kept"})
    with_header, without = stack.records()
    assert with_header["headers"] == {"x-user-id": "alice"}
    assert "headers" not in without
    assert with_header["conversation"] == without["conversation"] and len(without["conversation"]) == 16
    assert "client-key-xyz" not in stack.records_path.read_text()


def test_credential_headers_cannot_be_recorded() -> None:
    import pytest

    from router import PolicyError, parse_policy

    text = "upstreams: {a: {base_url: 'http://x', model: m}}\ndefault: {target: a}\nrecord: {headers: [x-user-id, Authorization]}\n"
    with pytest.raises(PolicyError, match="'authorization' carries credentials"):
        parse_policy(text)
