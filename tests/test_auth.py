"""Optional client API keys mapped to tenants."""

from __future__ import annotations

import httpx
import openai
import pytest
from conftest import POLICY

AUTH = POLICY.replace(
    "auth:\n  tenant_header: x-tenant-id\n",
    "auth:\n  keys:\n    - {key: team-a-key, tenant: team-a}\n    - {key: vip-key, tenant: vip}\n",
)


def test_keys_map_to_tenants_and_wrong_keys_get_401(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack = make_stack(
        policy=AUTH.replace("{{", "{").replace("}}", "}").replace("{prompts}", "false")
    )
    url = f"{stack.url}/v1"
    msg = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.AuthenticationError) as info:
        openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).chat.completions.create(
            model="auto", messages=msg
        )
    assert info.value.status_code == 401 and info.value.body["type"] == "authentication_error"  # type: ignore[index]
    missing = httpx.post(f"{url}/chat/completions", json={"model": "auto", "messages": msg})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{url}/models").status_code == 401
    assert not stack.local.seen and not stack.cloud.seen

    vip = openai.OpenAI(base_url=url, api_key="vip-key", max_retries=0)
    raw = vip.chat.completions.with_raw_response.create(model="auto", messages=msg)
    assert raw.headers["x-router-rule"] == "vip"
    # With keys, the key decides the tenant: a header cannot claim another one.
    a = openai.OpenAI(base_url=url, api_key="team-a-key", max_retries=0)
    raw = a.chat.completions.with_raw_response.create(
        model="auto", messages=msg, extra_headers={"x-tenant-id": "vip"}
    )
    assert raw.headers["x-router-rule"] == "default"
    tenants = [r["tenant"] for r in stack.records() if r["status"] == 200]
    assert tenants == ["vip", "team-a"]
    # The client's key never travels upstream.
    assert all("team-a-key" not in s.headers.get("authorization", "") for s in stack.local.seen)
