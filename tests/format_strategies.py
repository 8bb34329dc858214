"""Hypothesis strategies for the format-layer tests: answers and conversations
with text, images, tool calls and tool results."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

texts = st.text(min_size=1, max_size=12)
names = st.from_regex(r"[a-z][a-z_]{0,7}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)
arguments = st.dictionaries(names, json_values, max_size=3)
images_b64 = st.builds(
    lambda d: f"data:image/png;base64,{d}", st.from_regex(r"[A-Za-z0-9]{4,8}", fullmatch=True)
)
images_url = st.builds(lambda n: f"https://example.com/{n}.png", names)


@st.composite
def completions(draw: st.DrawFn, *, reasoning: bool = True) -> dict[str, Any]:
    """A chat.completion with one choice, as upstreams send it."""
    n_calls = draw(st.integers(0, 3))
    content = draw(st.none() | texts) if n_calls else draw(texts)
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if reasoning and draw(st.booleans()):
        message["reasoning_content"] = draw(texts)
    if n_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{i}{draw(names)}",
                "type": "function",
                "function": {"name": draw(names), "arguments": json.dumps(draw(arguments))},
            }
            for i in range(n_calls)
        ]
    finish = (
        "tool_calls" if n_calls else draw(st.sampled_from(["stop", "length", "content_filter"]))
    )
    prompt = draw(st.integers(0, 500))
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": draw(st.integers(0, 500)),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if draw(st.booleans()):
        usage["prompt_tokens_details"] = {"cached_tokens": draw(st.integers(0, prompt))}
    return {
        "id": "chatcmpl-" + draw(names),
        "object": "chat.completion",
        "created": draw(st.integers(1_600_000_000, 1_900_000_000)),
        "model": draw(names),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }


@st.composite
def anthropic_image(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {"type": "image", "source": {"type": "url", "url": draw(images_url)}}
    data = draw(images_b64).split(",", 1)[1]
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


@st.composite
def anthropic_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A Messages request: alternating turns, tool_use answered by tool_result."""
    tools = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    messages: list[dict[str, Any]] = []
    pending: list[str] = []  # tool_use ids the next user turn answers
    for turn in range(draw(st.integers(1, 3))):
        blocks: list[dict[str, Any]] = []
        for call_id in pending:
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
            if draw(st.booleans()):
                result["content"] = draw(texts)
            else:
                result["content"] = draw(
                    st.lists(
                        st.builds(_text_block, texts) | anthropic_image(), min_size=1, max_size=2
                    )
                )
            if draw(st.booleans()):
                result["is_error"] = True
            blocks.append(result)
        extra = draw(
            st.lists(
                st.builds(_text_block, texts) | anthropic_image(),
                min_size=0 if pending else 1,
                max_size=2,
            )
        )
        blocks.extend(extra)
        if not pending and len(extra) == 1 and extra[0]["type"] == "text" and draw(st.booleans()):
            messages.append({"role": "user", "content": extra[0]["text"]})
        else:
            messages.append({"role": "user", "content": blocks})
        pending = []
        if turn == 0 or draw(st.booleans()):
            answer: list[dict[str, Any]] = []
            if draw(st.booleans()):
                answer.append(_text_block(draw(texts)))
            for i in range(draw(st.integers(0 if answer else 1, 2))):
                call_id = f"toolu_{len(messages)}{i}"
                pending.append(call_id)
                answer.append(
                    {
                        "type": "tool_use",
                        "id": call_id,
                        "name": draw(st.sampled_from(tools)),
                        "input": draw(arguments),
                    }
                )
            messages.append({"role": "assistant", "content": answer})
            if not pending:
                # A plain answer needs the user to speak again.
                continue
    if pending:
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": c, "content": draw(texts)}
                    for c in pending
                ],
            }
        )
    body: dict[str, Any] = {
        "model": "claude-test",
        "max_tokens": draw(st.integers(1, 4096)),
        "messages": messages,
        "tools": [
            {
                "name": t,
                "description": f"tool {t}",
                "input_schema": {"type": "object", "properties": {}},
            }
            for t in tools
        ],
    }
    if draw(st.booleans()):
        body["system"] = draw(texts) if draw(st.booleans()) else [_text_block(draw(texts))]
    if draw(st.booleans()):
        body["stop_sequences"] = draw(st.lists(texts, min_size=1, max_size=2))
    if draw(st.booleans()):
        body["temperature"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        body["tool_choice"] = draw(
            st.sampled_from(
                [
                    {"type": "auto"},
                    {"type": "any"},
                    {"type": "none"},
                    {"type": "tool", "name": tools[0]},
                ]
            )
        )
    if draw(st.booleans()):
        body["metadata"] = {"user_id": draw(names)}
    return body
