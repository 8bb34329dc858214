"""Anthropic Messages (`POST /v1/messages`) in and out of the canonical chat body.

* `parse_messages(body)`: a Messages request as a chat-completions body.
* `render_message(completion, request)`: a chat completion as an Anthropic Message.
* `AnthropicStream`: chat-completion chunks in, Messages stream events out.
* `count_tokens(body)`: `POST /v1/messages/count_tokens`, estimated.

Errors are raised as `RouterError`; render them with
`router.formats.errors.error_json(exc, "anthropic")`. Like the API itself, this
refuses fields it does not know ("Extra inputs are not permitted") and server
tools the chat API has no way to run. The reverse direction (an Anthropic
upstream) is `router.formats.anthropic_upstream`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from router.errors import RouterError
from router.formats.errors import anthropic_error, defer_untranslatable
from router.formats.openai_chat import ToolResults, as_dict, new_id, parse_arguments, reasoning_of
from router.policy.decide import CHARS_PER_TOKEN

__all__ = [
    "IMAGE_TOKENS",
    "AnthropicStream",
    "count_tokens",
    "parse_messages",
    "parse_messages_deferred",
    "render_message",
    "stop_reason",
]

_MAPPED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
    }
)
# Accepted and not sent on: prompt-caching hints, and settings of Anthropic's own
# serving (tier, region, speed) that mean nothing to another server.
_DROPPED = frozenset(
    {"cache_control", "service_tier", "inference_geo", "speed", "context_management"}
)
# Tokens counted per image by `count_tokens`: Anthropic's figure for an image at the
# size it scales everything down to (about 1.15 megapixels); the real size is unknown
# without decoding it.
IMAGE_TOKENS = 1600
# Thinking budgets (tokens) read as a chat `reasoning_effort`.
_EFFORT_BY_BUDGET = ((4096, "low"), (16384, "medium"))
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}


def _bad(message: str, param: str | None = None) -> RouterError:
    return RouterError.bad_request(message, param)


# --------------------------------------------------------------------------- request


def parse_messages(body: Mapping[str, Any], *, count_only: bool = False) -> dict[str, Any]:
    """A Messages request as a chat-completions body.

    `count_only`: a count_tokens body, which has no `max_tokens` and no sampling.
    """
    for key in body:
        if key not in _MAPPED and key not in _DROPPED:
            raise _bad(f"{key}: Extra inputs are not permitted", key)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: Field required", "model")
    chat: dict[str, Any] = {"model": model}

    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        messages.append({"role": "system", "content": _system(system)})
    raw = body.get("messages")
    if not isinstance(raw, list):
        raise _bad(
            "messages: Field required" if raw is None else "messages: Input should be a valid list",
            "messages",
        )
    if not raw:
        raise _bad("messages: at least one message is required", "messages")
    for i, message in enumerate(raw):
        messages.extend(_message(message, f"messages.{i}"))
    chat["messages"] = messages

    if not count_only:
        limit = body.get("max_tokens")
        if limit is None:
            raise _bad("max_tokens: Field required", "max_tokens")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _bad("max_tokens: Input should be a positive integer", "max_tokens")
        chat["max_tokens"] = limit
        _sampling(body, chat)
    _tools(body, chat)
    _thinking(body, chat)
    return chat


def parse_messages_deferred(body: Mapping[str, Any]) -> tuple[dict[str, Any], RouterError | None]:
    """`parse_messages`, with the refusal of what only Anthropic's API can do (server
    tools and their result blocks, parameters the router does not know) deferred:
    the chat body of what translates, and that refusal (None: it all does). A target
    that takes Messages as is never needs the translation. Malformed input raises.
    """
    return defer_untranslatable(parse_messages, _translatable, body)


_USER_BLOCKS = frozenset({"text", "image", "document", "tool_result"})
_ASSISTANT_BLOCKS = frozenset({"text", "tool_use", "thinking", "redacted_thinking"})


def _translatable(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """`body` without what the chat translation refuses as unsupported; None when it
    holds nothing of that kind."""
    out = {k: v for k, v in body.items() if k in _MAPPED or k in _DROPPED}
    dropped = len(out) != len(body)
    tools = out.get("tools")
    if isinstance(tools, list):
        client = [t for t in tools if not isinstance(t, dict) or t.get("type") in (None, "custom")]
        dropped |= len(client) != len(tools)
        out["tools"] = client
    messages = out.get("messages")
    if isinstance(messages, list):
        kept = []
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                known = _ASSISTANT_BLOCKS if message.get("role") == "assistant" else _USER_BLOCKS
                blocks = [b for b in content if not isinstance(b, dict) or b.get("type") in known]
                if len(blocks) != len(content):
                    dropped = True
                    if not blocks:
                        continue
                    message = {**message, "content": blocks}
            kept.append(message)
        out["messages"] = kept
    return out if dropped else None


def _system(system: object) -> str | list[dict[str, Any]]:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        parts = []
        for j, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise _bad(f"system.{j}: only text blocks are allowed", f"system.{j}")
            if not isinstance(block.get("text"), str):
                raise _bad(f"system.{j}.text: Field required", f"system.{j}.text")
            parts.append({"type": "text", "text": block["text"]})
        return parts
    raise _bad("system: Input should be a valid string or a list of text blocks", "system")


def _message(message: object, param: str) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        raise _bad(f"{param}: Input should be a valid dictionary", param)
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise _bad(f"{param}.role: Input should be 'user' or 'assistant'", f"{param}.role")
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{param}.content: Field required", f"{param}.content")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _bad(
                f"{param}.content.{j}: Input should be a content block", f"{param}.content.{j}"
            )
    if role == "assistant":
        return [_assistant(content, param)]
    return _user(content, param)


def _user(blocks: list[dict[str, Any]], param: str) -> list[dict[str, Any]]:
    """A user turn: its tool results first (chat wants them right after the calls),
    then what the user wrote, images from the tool results leading."""
    results = ToolResults()
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        where = f"{param}.content.{j}"
        if block["type"] == "tool_result":
            out.append(_tool_result(block, where, results))
        else:
            parts.append(_user_part(block, where))
    held = results.flush()
    if held:
        parts = held[0]["content"] + parts
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _user_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    kind = block["type"]
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise _bad(f"{where}.text: Field required", f"{where}.text")
        return {"type": "text", "text": block["text"]}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _image_url(block, where)}}
    if kind == "document":
        return _document(block, where)
    raise _bad(f"{where}: content blocks of type '{kind}' are not supported here", f"{where}.type")


def _image_url(block: Mapping[str, Any], where: str) -> str:
    source = as_dict(block.get("source"))
    if source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or not isinstance(data, str):
            raise _bad(f"{where}.source: 'media_type' and 'data' are required", f"{where}.source")
        return f"data:{media};base64,{data}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    # A file_id points into Anthropic's file store, which the router does not have.
    raise _bad(
        f"{where}.source: only base64 and url image sources are supported", f"{where}.source"
    )


def _document(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = as_dict(block.get("source"))
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        media = source.get("media_type") or "application/pdf"
        file = {
            "file_data": f"data:{media};base64,{source['data']}",
            "filename": block.get("title") or "document.pdf",
        }
        return {"type": "file", "file": file}
    raise _bad(
        f"{where}.source: only base64 and text document sources are supported", f"{where}.source"
    )


def _tool_result(block: Mapping[str, Any], where: str, results: ToolResults) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.tool_use_id: Field required", f"{where}.tool_use_id")
    content = block.get("content", "")
    converted: str | list[dict[str, Any]]
    if isinstance(content, str):
        converted = content
    elif isinstance(content, list):
        converted = []
        for k, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise _bad(
                    f"{where}.content.{k}: Input should be a content block", f"{where}.content.{k}"
                )
            converted.append(_user_part(part, f"{where}.content.{k}"))
    else:
        raise _bad(
            f"{where}.content: Input should be a string or a list of blocks", f"{where}.content"
        )
    if block.get("is_error") is True:
        # Chat tool messages have no error flag: say it in the text the model reads.
        if isinstance(converted, str):
            converted = "Error: " + converted
        else:
            converted = [{"type": "text", "text": "Error:"}, *converted]
    return results.message(call_id, converted)


def _assistant(blocks: list[dict[str, Any]], param: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        where = f"{param}.content.{j}"
        kind = block["type"]
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise _bad(f"{where}.text: Field required", f"{where}.text")
            texts.append(block["text"])
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad(f"{where}: tool_use needs 'id' and 'name'", where)
            if not isinstance(block.get("input"), dict):
                raise _bad(f"{where}.input: Input should be a valid dictionary", f"{where}.input")
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": _json(block["input"])},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            # Signed for Anthropic's own models; another model cannot use it.
            continue
        else:
            raise _bad(
                f"{where}: content blocks of type '{kind}' are not supported here", f"{where}.type"
            )
    message: dict[str, Any] = {
        "role": "assistant",
        "content": texts[0]
        if len(texts) == 1
        else ([{"type": "text", "text": t} for t in texts] if texts else None),
    }
    if calls:
        message["tool_calls"] = calls
    return message


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def _sampling(body: Mapping[str, Any], chat: dict[str, Any]) -> None:
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise _bad(f"{key}: Input should be a number between 0 and 1", key)
        chat[key] = value
    top_k = body.get("top_k")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise _bad("top_k: Input should be a non-negative integer", "top_k")
        # Not an OpenAI parameter; vLLM, SGLang and llama.cpp read it.
        chat["top_k"] = top_k
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("stop_sequences: Input should be a list of strings", "stop_sequences")
        if stops:
            chat["stop"] = list(stops)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _bad("metadata: Input should be a valid dictionary", "metadata")
        user = metadata.get("user_id")
        if user is not None:
            if not isinstance(user, str):
                raise _bad("metadata.user_id: Input should be a valid string", "metadata.user_id")
            chat["user"] = user
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream: Input should be a valid boolean", "stream")
    if stream:
        chat["stream"] = True
        # message_delta reports usage; chat streams send it only when asked.
        chat["stream_options"] = {"include_usage": True}


def _tools(body: Mapping[str, Any], chat: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("tools: Input should be a valid list", "tools")
        converted = []
        for i, tool in enumerate(tools):
            where = f"tools.{i}"
            if not isinstance(tool, dict):
                raise _bad(f"{where}: Input should be a valid dictionary", where)
            if tool.get("type") not in (None, "custom"):
                raise _bad(
                    f"{where}: server tools ('{tool.get('type')}') are not supported by this "
                    "router; only client tools are.",
                    f"{where}.type",
                )
            if not isinstance(tool.get("name"), str) or not tool["name"]:
                raise _bad(f"{where}.name: Field required", f"{where}.name")
            if not isinstance(tool.get("input_schema"), dict):
                raise _bad(f"{where}.input_schema: Field required", f"{where}.input_schema")
            function: dict[str, Any] = {"name": tool["name"]}
            if isinstance(tool.get("description"), str):
                function["description"] = tool["description"]
            function["parameters"] = tool["input_schema"]
            if isinstance(tool.get("strict"), bool):
                function["strict"] = tool["strict"]
            converted.append({"type": "function", "function": function})
        if converted:
            chat["tools"] = converted
    choice = body.get("tool_choice")
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        chat["tool_choice"] = "auto"
    elif kind == "any":
        chat["tool_choice"] = "required"
    elif kind == "none":
        chat["tool_choice"] = "none"
    elif kind == "tool":
        assert isinstance(choice, dict)
        if not isinstance(choice.get("name"), str):
            raise _bad("tool_choice.name: Field required", "tool_choice.name")
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise _bad(
            "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'", "tool_choice"
        )
    assert isinstance(choice, dict)
    if choice.get("disable_parallel_tool_use") is True:
        chat["parallel_tool_calls"] = False


def _thinking(body: Mapping[str, Any], chat: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind == "enabled":
            assert isinstance(thinking, dict)
            budget = thinking.get("budget_tokens")
            if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
                raise _bad("thinking.budget_tokens: Field required", "thinking.budget_tokens")
            chat["reasoning_effort"] = next(
                (e for limit, e in _EFFORT_BY_BUDGET if budget < limit), "high"
            )
        elif kind not in ("disabled", "adaptive", "between_tools"):
            raise _bad(
                "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'",
                "thinking.type",
            )
    config = body.get("output_config")
    if config is None:
        return
    if not isinstance(config, dict):
        raise _bad("output_config: Input should be a valid dictionary", "output_config")
    effort = config.get("effort")
    if effort is not None:
        if effort not in _EFFORTS:
            raise _bad(
                "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'",
                "output_config.effort",
            )
        chat["reasoning_effort"] = _EFFORTS[effort]
    fmt = config.get("format")
    if fmt is not None:
        if (
            not isinstance(fmt, dict)
            or fmt.get("type") != "json_schema"
            or not isinstance(fmt.get("schema"), dict)
        ):
            raise _bad(
                "output_config.format: a json_schema with a 'schema' is required",
                "output_config.format",
            )
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True},
        }


def count_tokens(body: Mapping[str, Any]) -> dict[str, int]:
    """`{"input_tokens": n}` for a count_tokens (or messages) body, estimated.

    No tokenizer for Claude ships, so this is the router's own rule everywhere
    else (`prompt_tokens` in policies): characters / CHARS_PER_TOKEN, rounded up,
    over every text the model would read (system, messages, tool-call arguments,
    tool results, tool names, descriptions and schemas as JSON), plus
    `IMAGE_TOKENS` per image or document. Expect it to be off by 10-30%; it is
    meant for budgeting, not billing.
    """
    chat = parse_messages(body, count_only=True)
    chars = 0
    media = 0
    for message in chat["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if part.get("type") == "text":
                    chars += len(part["text"])
                else:
                    media += 1
        for call in message.get("tool_calls") or ():
            chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    for tool in chat.get("tools") or ():
        chars += len(_json(tool["function"]))
    return {"input_tokens": math.ceil(chars / CHARS_PER_TOKEN) + media * IMAGE_TOKENS}


# --------------------------------------------------------------------------- response


def stop_reason(
    finish_reason: object, matched: object, request: Mapping[str, Any]
) -> tuple[str, str | None]:
    """Anthropic's stop_reason and stop_sequence for a chat finish_reason.

    Chat says "stop" for both an end of turn and a stop sequence; vLLM names the
    sequence in the choice's `stop_reason`, which is read when it is one of the
    request's `stop_sequences`.
    """
    if finish_reason == "length":
        return "max_tokens", None
    if finish_reason in ("tool_calls", "function_call"):
        return "tool_use", None
    if finish_reason == "content_filter":
        return "refusal", None
    stops = request.get("stop_sequences")
    if isinstance(matched, str) and isinstance(stops, list) and matched in stops:
        return "stop_sequence", matched
    return "end_turn", None


def _usage(usage: object) -> dict[str, Any]:
    usage = as_dict(usage)
    prompt = usage.get("prompt_tokens") or 0
    cached = as_dict(usage.get("prompt_tokens_details")).get("cached_tokens") or 0
    # Anthropic's input_tokens leave out what was read from the cache; chat's include it.
    return {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": usage.get("completion_tokens") or 0,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def _wants_thinking(request: Mapping[str, Any]) -> bool:
    return as_dict(request.get("thinking")).get("type") in ("enabled", "adaptive")


def _tool_input(arguments: object) -> dict[str, Any]:
    # A model that wrote broken JSON gets an empty input rather than a broken message.
    return parse_arguments(arguments) or {}


def render_message(
    completion: Mapping[str, Any],
    request: Mapping[str, Any],
    *,
    message_id: str | None = None,
) -> dict[str, Any]:
    """A chat completion (first choice) as the Anthropic Message answering `request`.

    Blocks in order: thinking (only when the request enabled thinking; its
    signature is empty, as no Anthropic model signed it), text (the refusal text
    when the model refused), one tool_use per tool call.
    """
    choices = completion.get("choices") or [{}]
    choice = as_dict(choices[0])
    message = as_dict(choice.get("message"))
    content: list[dict[str, Any]] = []
    reasoning = reasoning_of(message)
    if reasoning and _wants_thinking(request):
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    # A refusal is text to Anthropic clients; the stream sends it after the content.
    text = "".join(
        v for v in (message.get("content"), message.get("refusal")) if isinstance(v, str)
    )
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        function = as_dict(call.get("function"))
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_id("toolu_"),
                "name": str(function.get("name") or ""),
                "input": _tool_input(function.get("arguments")),
            }
        )
    reason, sequence = stop_reason(choice.get("finish_reason"), choice.get("stop_reason"), request)
    return {
        "id": message_id or new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": str(completion.get("model") or request.get("model") or ""),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": _usage(completion.get("usage")),
    }


# --------------------------------------------------------------------------- stream


class AnthropicStream:
    """Chat-completion chunks (parsed dicts, first choice) to Messages stream events.

    `feed(chunk)` per chunk (the first one also yields `message_start` and a
    `ping`), `finish()` at `[DONE]`, `fail(error)` when the upstream breaks off.
    Frame each event with `sse_event(event["type"], event)`.

    Chat streams report usage at the end only, so `message_start` says 0 input
    tokens and `message_delta` carries the real input and output counts (the
    anthropic SDK takes both from there). The blocks are those `render_message`
    gives: the test suite checks that a stream re-assembled by the SDK equals it.
    """

    def __init__(self, request: Mapping[str, Any], *, message_id: str | None = None) -> None:
        self.request = request
        self.message_id = message_id or new_id("msg_")
        self._thinking = _wants_thinking(request)
        self._started = False
        self._index = -1  # index of the open block, -1: none yet
        self._open: str | None = None  # its kind: "thinking", "text", "tool_use"
        self._calls: dict[int, int] = {}  # chat tool-call index -> block index
        self._finish: object = None
        self._matched: object = None
        self._usage: object = None

    def _start(self, chunk: Mapping[str, Any]) -> list[dict[str, Any]]:
        self._started = True
        model = chunk.get("model") or self.request.get("model") or ""
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": str(model),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(None),
        }
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def feed(self, chunk: Mapping[str, Any]) -> list[dict[str, Any]]:
        events = [] if self._started else self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = as_dict(choice.get("delta"))
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if self._thinking and isinstance(reasoning, str) and reasoning:
                events += self._delta("thinking", {"type": "thinking_delta", "thinking": reasoning})
            for key in ("content", "refusal"):
                text = delta.get(key)
                if isinstance(text, str) and text:
                    events += self._delta("text", {"type": "text_delta", "text": text})
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    events += self._tool_call(call)
            if choice.get("finish_reason") is not None:
                self._finish = choice["finish_reason"]
            if choice.get("stop_reason") is not None:
                self._matched = choice["stop_reason"]
        return events

    def _close(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        self._open = None
        return [{"type": "content_block_stop", "index": self._index}]

    def _begin(self, kind: str, block: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self._index += 1
        self._open = kind
        events.append({"type": "content_block_start", "index": self._index, "content_block": block})
        return events

    def _delta(self, kind: str, delta: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._open != kind:
            block: dict[str, Any] = (
                {"type": "thinking", "thinking": "", "signature": ""}
                if kind == "thinking"
                else {"type": "text", "text": ""}
            )
            events = self._begin(kind, block)
        events.append({"type": "content_block_delta", "index": self._index, "delta": delta})
        return events

    def _tool_call(self, call: Mapping[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        position = call.get("index", 0)
        function = as_dict(call.get("function"))
        if position not in self._calls:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or new_id("toolu_"),
                "name": str(function.get("name") or ""),
                "input": {},
            }
            events = self._begin("tool_use", block)
            self._calls[position] = self._index
        arguments = function.get("arguments")
        # Deltas of a call already closed (interleaved parallel calls) cannot be sent
        # any more: Anthropic blocks do not reopen.
        if isinstance(arguments, str) and arguments and self._calls[position] == self._index:
            events.append(
                {
                    "type": "content_block_delta",
                    "index": self._index,
                    "delta": {"type": "input_json_delta", "partial_json": arguments},
                }
            )
        return events

    def finish(self) -> list[dict[str, Any]]:
        events = [] if self._started else self._start({})
        events += self._close()
        reason, sequence = stop_reason(self._finish, self._matched, self.request)
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": sequence},
                "usage": _usage(self._usage),
            }
        )
        events.append({"type": "message_stop"})
        return events

    def fail(self, error: RouterError) -> list[dict[str, Any]]:
        """The `error` event the anthropic SDK raises on; the stream ends with it."""
        return [anthropic_error(error.status, error.message)]
