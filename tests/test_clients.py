"""The frameworks people use, as clients of the router: LangChain and LiteLLM."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from test_transparent import Proxy, make_proxy  # noqa: F401  (the fixture)

# LiteLLM fetches a price table from the internet at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import langchain_openai
import litellm


def test_langchain_chat_and_embeddings(make_proxy: Callable[..., Proxy]) -> None:  # noqa: F811
    proxy = make_proxy()
    common = {"base_url": proxy.url + "/v1", "api_key": "k", "default_headers": {"x-tenant-id": "lc"}}
    chat = langchain_openai.ChatOpenAI(model="auto", max_retries=0, **common)
    reply = chat.invoke("Hello")
    assert reply.content == "Hello there friend"
    assert reply.response_metadata["model_name"] == "small-local"
    streamed = "".join(str(chunk.content) for chunk in chat.stream("Hello"))
    assert streamed == "Hello there friend"
    embedder = langchain_openai.OpenAIEmbeddings(
        model="text-embedding-3-small", check_embedding_ctx_length=False, **common
    )
    vectors = embedder.embed_documents(["a", "bb"])
    assert [v[0] for v in vectors] == [1.0, 2.0]
    assert proxy.cloud.calls[-1].path == "/v1/embeddings"
    assert all("cookie" not in c.headers for c in proxy.local.calls + proxy.cloud.calls)


def test_litellm_completion_and_embedding(make_proxy: Callable[..., Proxy]) -> None:  # noqa: F811
    proxy = make_proxy()
    common = {"api_base": proxy.url + "/v1", "api_key": "k", "extra_headers": {"x-tenant-id": "ll"}}
    reply = litellm.completion(model="openai/auto", messages=[{"role": "user", "content": "Hello"}], **common)
    assert reply.choices[0].message.content == "Hello there friend"
    chunks = litellm.completion(
        model="openai/auto", messages=[{"role": "user", "content": "Hello"}], stream=True, **common
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello there friend"
    vectors = litellm.embedding(model="openai/text-embedding-3-small", input=["a", "bb"], **common)
    assert [d["embedding"][0] for d in vectors.data] == [1.0, 2.0]
    proxy.local.fail_status, proxy.local.fail_times = 429, 5
    proxy.local.fail_headers = [(b"retry-after", b"3")]
    with pytest.raises(litellm.RateLimitError):
        litellm.completion(
            model="openai/auto", messages=[{"role": "user", "content": "Hi"}], num_retries=0, **common
        )
