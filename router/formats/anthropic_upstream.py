"""An Anthropic-native upstream: the canonical chat body out, Anthropic answers back.

* `to_anthropic_request(chat, model, max_tokens)`: a chat body as a Messages body.
* `from_anthropic_message(message)`: an Anthropic Message as a chat completion.
* `ChatFromAnthropicStream`: Messages stream events in, chat-completion chunks out.
* `MessagesEvents`: what the router reads of a Messages stream it relays untouched.

So chat and Responses clients can be routed to Anthropic, streaming included. A
Messages client routed to an Anthropic upstream needs none of this: its body goes
as is (the model name rewritten), and the answer comes back as is.

The policy, not the client, picked Anthropic here, so chat parameters Anthropic
has no equivalent for are dropped rather than refused (listed in
`router/formats/README.md`); only what would change the shape of the answer the
client expects (`n` > 1, audio output) is refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from router.errors import RouterError
from router.formats.errors import anthropic_error
from router.formats.openai_chat import as_dict, parse_arguments

__all__ = [
    "ChatFromAnthropicStream",
    "MessagesEvents",
    "chat_chunks",
    "finish_reason",
    "from_anthropic_message",
    "has_chat_form",
    "to_anthropic_request",
]

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh"}
_EMPTY_SCHEMA = {"type": "object", "properties": {}}


def _bad(message: str, param: str) -> RouterError:
    return RouterError.bad_request(message, param)


# --------------------------------------------------------------------------- request


def to_anthropic_request(
    chat: Mapping[str, Any], model: str, max_tokens: int = 4096
) -> dict[str, Any]:
    """A chat-completions body as a Messages body for `model`.

    `max_tokens` is the default for a request that sets no limit: Anthropic
    requires one, chat does not.
    """
    _refuse_other_shapes(chat)
    system_messages, system, messages = _turns(chat)
    body: dict[str, Any] = {"model": model, "messages": messages}
    if system:
        # One plain-string system message stays a string; anything else is blocks.
        only = system_messages[0]["content"] if len(system_messages) == 1 else None
        body["system"] = only if isinstance(only, str) else system
    limit = chat.get("max_completion_tokens") or chat.get("max_tokens") or max_tokens
    body["max_tokens"] = limit
    _sampling(chat, body)
    if isinstance(chat.get("user"), str):
        body["metadata"] = {"user_id": chat["user"]}
    _tools(chat, body)
    _output_config(chat, body)
    if chat.get("stream") is True:
        body["stream"] = True
    return body


def _refuse_other_shapes(chat: Mapping[str, Any]) -> None:
    """Refuse what would change the shape of the answer the client expects."""
    n = chat.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        raise _bad("'n' greater than 1 is not supported by this route.", "n")
    if chat.get("audio") is not None or "audio" in (chat.get("modalities") or ()):
        raise _bad("Audio output is not supported by this route.", "modalities")


def _turns(
    chat: Mapping[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The system and developer messages, their content as blocks, and the other turns."""
    system: list[dict[str, Any]] = []
    system_messages: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(chat.get("messages") or ()):
        if not isinstance(message, dict):
            raise _bad(f"'messages[{i}]' must be an object.", f"messages[{i}]")
        role = message.get("role")
        if role in ("system", "developer"):
            # Anthropic has one system prompt, ahead of the turns: every system or
            # developer message goes there, in order.
            system_messages.append(message)
            system.extend(_blocks(message.get("content"), f"messages[{i}].content"))
        elif role == "user":
            _append(messages, "user", _user_content(message.get("content"), i))
        elif role == "assistant":
            _append(messages, "assistant", _assistant_content(message, i))
        elif role == "tool":
            _append(messages, "user", [_tool_result(message, i)])
        else:
            raise _bad(
                f"'messages[{i}].role' {role!r} is not supported by this route.",
                f"messages[{i}].role",
            )
    return system_messages, system, messages


def _sampling(chat: Mapping[str, Any], body: dict[str, Any]) -> None:
    stop = chat.get("stop")
    if isinstance(stop, str):
        body["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        body["stop_sequences"] = [s for s in stop if isinstance(s, str)]
    temperature = chat.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        # Chat allows 0-2, Anthropic 0-1: the hottest chat setting is Anthropic's hottest.
        body["temperature"] = min(float(temperature), 1.0)
    for key in ("top_p", "top_k"):
        if chat.get(key) is not None:
            body[key] = chat[key]


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]] | str) -> None:
    """Add a turn, merging it into the previous one of the same role: tool results
    and the user's next words are one user turn to Anthropic."""
    if messages and messages[-1]["role"] == role:
        last = messages[-1]
        if isinstance(last["content"], str):
            last["content"] = [{"type": "text", "text": last["content"]}]
        if isinstance(blocks, str):
            blocks = [{"type": "text", "text": blocks}]
        last["content"].extend(blocks)
        return
    messages.append({"role": role, "content": blocks})


def _blocks(content: object, param: str) -> list[dict[str, Any]]:
    """Chat content parts as Anthropic content blocks (empty texts left out: Anthropic
    refuses an empty text block)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(f"'{param}' must be a string or an array of content parts.", param)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" or kind == "refusal":
            assert isinstance(part, dict)
            text = part.get("text") if kind == "text" else part.get("refusal")
            if isinstance(text, str) and text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            assert isinstance(part, dict)
            blocks.append({"type": "image", "source": _image_source(part, where)})
        elif kind == "file":
            assert isinstance(part, dict)
            blocks.append(_document(part, where))
        else:
            raise _bad(
                f"Content parts of type '{kind}' are not supported by this route.", f"{where}.type"
            )
    return blocks


def _data_uri(url: str) -> tuple[str, str] | None:
    if not url.startswith("data:") or ";base64," not in url:
        return None
    media, data = url[5:].split(";base64,", 1)
    return media, data


def _image_source(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    url = as_dict(part.get("image_url")).get("url")
    if not isinstance(url, str) or not url:
        raise _bad(f"'{where}.image_url.url' is required.", f"{where}.image_url.url")
    inline = _data_uri(url)
    if inline is not None:
        return {"type": "base64", "media_type": inline[0], "data": inline[1]}
    return {"type": "url", "url": url}


def _document(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    file = as_dict(part.get("file"))
    inline = _data_uri(str(file.get("file_data") or ""))
    if inline is None:
        raise _bad(
            f"'{where}.file' must carry 'file_data' as a base64 data URI on this route.",
            f"{where}.file",
        )
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "base64", "media_type": inline[0], "data": inline[1]},
    }
    if isinstance(file.get("filename"), str):
        block["title"] = file["filename"]
    return block


def _user_content(content: object, i: int) -> list[dict[str, Any]] | str:
    if isinstance(content, str):
        return content
    return _blocks(content, f"messages[{i}].content")


def _assistant_content(message: Mapping[str, Any], i: int) -> list[dict[str, Any]] | str:
    content = message.get("content")
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    refusal = message.get("refusal")
    if isinstance(content, str) and content and not calls and not refusal:
        return content
    blocks = _blocks(content, f"messages[{i}].content")
    if isinstance(refusal, str) and refusal:
        blocks.append({"type": "text", "text": refusal})
    for j, call in enumerate(calls):
        function = as_dict(call.get("function"))
        if not isinstance(call.get("id"), str) or not isinstance(function.get("name"), str):
            raise _bad(
                f"'messages[{i}].tool_calls[{j}]' needs an 'id' and a function 'name'.",
                f"messages[{i}].tool_calls[{j}]",
            )
        blocks.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": function["name"],
                # Anthropic wants an object; arguments a model broke become an empty one.
                "input": parse_arguments(function.get("arguments")) or {},
            }
        )
    return blocks


def _tool_result(message: Mapping[str, Any], i: int) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"'messages[{i}].tool_call_id' is required.", f"messages[{i}].tool_call_id")
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        result["content"] = content
    else:
        result["content"] = _blocks(content, f"messages[{i}].content")
    return result


def _tools(chat: Mapping[str, Any], body: dict[str, Any]) -> None:
    tools = []
    for i, tool in enumerate(chat.get("tools") or ()):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _bad("Only function tools are supported by this route.", f"tools[{i}].type")
        function = as_dict(tool.get("function"))
        if not isinstance(function.get("name"), str):
            raise _bad(f"'tools[{i}].function.name' is required.", f"tools[{i}].function.name")
        converted: dict[str, Any] = {"name": function["name"]}
        if isinstance(function.get("description"), str):
            converted["description"] = function["description"]
        converted["input_schema"] = function.get("parameters") or dict(_EMPTY_SCHEMA)
        if isinstance(function.get("strict"), bool):
            converted["strict"] = function["strict"]
        tools.append(converted)
    if tools:
        body["tools"] = tools
    choice = chat.get("tool_choice")
    converted_choice: dict[str, Any] | None = None
    if choice == "auto":
        converted_choice = {"type": "auto"}
    elif choice == "required":
        converted_choice = {"type": "any"}
    elif choice == "none":
        converted_choice = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = as_dict(choice.get("function")).get("name")
        if not isinstance(name, str):
            raise _bad("'tool_choice.function.name' is required.", "tool_choice")
        converted_choice = {"type": "tool", "name": name}
    elif choice is not None:
        raise _bad("This 'tool_choice' is not supported by this route.", "tool_choice")
    if chat.get("parallel_tool_calls") is False and tools:
        converted_choice = converted_choice or {"type": "auto"}
        if converted_choice["type"] != "none":
            converted_choice["disable_parallel_tool_use"] = True
    if converted_choice is not None:
        body["tool_choice"] = converted_choice


def _output_config(chat: Mapping[str, Any], body: dict[str, Any]) -> None:
    config: dict[str, Any] = {}
    effort = chat.get("reasoning_effort")
    if isinstance(effort, str) and effort in _EFFORTS:
        config["effort"] = _EFFORTS[effort]
    fmt = as_dict(chat.get("response_format"))
    if fmt.get("type") == "json_schema":
        schema = as_dict(fmt.get("json_schema")).get("schema")
        if isinstance(schema, dict):
            config["format"] = {"type": "json_schema", "schema": schema}
    # json_object has no Anthropic form without a schema: dropped.
    if config:
        body["output_config"] = config


# --------------------------------------------------------------------------- answer


def finish_reason(stop_reason: object) -> str | None:
    """The chat finish_reason for an Anthropic stop_reason (None while unknown)."""
    if not isinstance(stop_reason, str):
        return None
    return _FINISH.get(stop_reason, "stop")


def _usage(usage: object) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    read = usage.get("cache_read_input_tokens") or 0
    prompt = (
        (usage.get("input_tokens") or 0) + read + (usage.get("cache_creation_input_tokens") or 0)
    )
    output = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read},
    }


def _arguments(value: object) -> str:
    return orjson.dumps(value if isinstance(value, dict) else {}).decode()


def from_anthropic_message(
    message: Mapping[str, Any], *, created: int | None = None
) -> dict[str, Any]:
    """An Anthropic Message as a chat completion with one choice.

    Text blocks are joined into `content`, thinking blocks into
    `reasoning_content` (their signatures dropped), tool_use blocks become
    `tool_calls`. A stop sequence is named in the choice's `stop_reason`, as
    vLLM does.
    """
    answer = _assistant_message(message.get("content") or ())
    choice: dict[str, Any] = {
        "index": 0,
        "message": answer,
        "logprobs": None,
        "finish_reason": finish_reason(message.get("stop_reason")) or "stop",
    }
    if isinstance(message.get("stop_sequence"), str):
        choice["stop_reason"] = message["stop_sequence"]
    completion: dict[str, Any] = {
        "id": str(message.get("id") or ""),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": str(message.get("model") or ""),
        "choices": [choice],
    }
    usage = _usage(message.get("usage"))
    if usage is not None:
        completion["usage"] = usage
    return completion


def _assistant_message(content: Any) -> dict[str, Any]:
    """Message content blocks as a chat assistant message."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thinking.append(block["thinking"])
        elif kind == "tool_use":
            calls.append(
                {
                    "id": str(block.get("id") or ""),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name") or ""),
                        "arguments": _arguments(block.get("input")),
                    },
                }
            )
    answer: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if thinking:
        answer["reasoning_content"] = "".join(thinking)
    if calls:
        answer["tool_calls"] = calls
    return answer


class ChatFromAnthropicStream:
    """Anthropic Messages stream events (parsed dicts) to chat-completion chunks.

    `feed(event)` per event; the chunks it returns are complete `data:` payloads
    (frame them with `sse_event(None, chunk)`). After `message_stop`, `done` is
    true and the caller sends `data: [DONE]`. With `include_usage` (the client's
    `stream_options.include_usage`) a last chunk with no choices carries usage.
    An `error` event raises `RouterError` (502, code = the Anthropic error type),
    for the caller to send as the chat error event.
    """

    def __init__(self, *, include_usage: bool = False, created: int | None = None) -> None:
        self.include_usage = include_usage
        self.done = False
        self._created = created if created is not None else int(time.time())
        self._id = ""
        self._model = ""
        self._usage: dict[str, Any] = {}
        self._calls: dict[int, int] = {}  # Anthropic block index -> chat tool-call index

    def _chunk(
        self, delta: dict[str, Any], finish: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [choice],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            return self._message_start(as_dict(event.get("message")))
        if kind == "content_block_start":
            return self._block_start(event, as_dict(event.get("content_block")))
        if kind == "content_block_delta":
            return self._block_delta(event, as_dict(event.get("delta")))
        if kind == "message_delta":
            return self._message_delta(as_dict(event.get("delta")), as_dict(event.get("usage")))
        if kind == "message_stop":
            return self._message_stop()
        if kind == "error":
            error = as_dict(event.get("error"))
            raise RouterError(
                502,
                str(error.get("message") or "The upstream stream failed."),
                type_="api_error",
                code=str(error.get("type") or "api_error"),
            )
        return []  # ping, content_block_stop, and event types added later

    def _message_start(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        self._id = str(message.get("id") or "")
        self._model = str(message.get("model") or "")
        self._usage.update(as_dict(message.get("usage")))
        # No content yet: an answer that turns out to be tool calls only keeps a null content.
        return [self._chunk({"role": "assistant"})]

    def _block_start(self, event: Mapping[str, Any], block: dict[str, Any]) -> list[dict[str, Any]]:
        if block.get("type") == "tool_use":
            index = len(self._calls)
            self._calls[int(event.get("index", 0))] = index
            start = block.get("input")
            call = {
                "index": index,
                "id": str(block.get("id") or ""),
                "type": "function",
                "function": {
                    "name": str(block.get("name") or ""),
                    # A block that arrives whole carries its input here.
                    "arguments": _arguments(start) if start else "",
                },
            }
            return [self._chunk({"tool_calls": [call]})]
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        return []

    def _block_delta(self, event: Mapping[str, Any], delta: dict[str, Any]) -> list[dict[str, Any]]:
        dtype = delta.get("type")
        if dtype == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if dtype == "thinking_delta" and delta.get("thinking"):
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        if dtype == "input_json_delta" and delta.get("partial_json"):
            position = self._calls.get(int(event.get("index", 0)))
            if position is None:
                return []
            call = {"index": position, "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _message_delta(self, delta: dict[str, Any], usage: dict[str, Any]) -> list[dict[str, Any]]:
        # Counts on message_delta are totals so far: they replace, not add.
        self._usage.update({k: v for k, v in usage.items() if v is not None})
        extra = {}
        if isinstance(delta.get("stop_sequence"), str):
            extra["stop_reason"] = delta["stop_sequence"]
        return [self._chunk({}, finish_reason(delta.get("stop_reason")) or "stop", **extra)]

    def _message_stop(self) -> list[dict[str, Any]]:
        self.done = True
        if not self.include_usage:
            return []
        return [
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": _usage(self._usage),
            }
        ]


# The events a relay reads for usage and the end; text deltas pass by unparsed.
_READ = frozenset({"message_start", "message_delta", "message_stop", "error"})


class MessagesEvents:
    """What the router reads of a Messages stream it passes on as it came (a Messages
    client on an Anthropic upstream): usage, whether it ended, whether it failed."""

    api = "messages"

    def __init__(self) -> None:
        self.done = False
        self.failed = False  # the upstream sent an `error` event itself
        self._usage: dict[str, Any] = {}

    def reads(self, kind: str | None) -> bool:
        return kind is None or kind in _READ

    def feed(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "message_start":
            self._usage.update(as_dict(as_dict(event.get("message")).get("usage")))
        elif kind == "message_delta":
            # Totals so far: they replace what message_start said.
            usage = as_dict(event.get("usage"))
            self._usage.update({k: v for k, v in usage.items() if v is not None})
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            self.failed = True

    def usage(self) -> dict[str, Any] | None:
        """The usage so far, in chat's field names."""
        return _usage(self._usage) if self._usage else None

    def cut(self, error: RouterError, sequence_number: int) -> list[dict[str, Any]]:
        """The stream broke off: Anthropic's `error` event, which the SDK raises on."""
        return [anthropic_error(error.status, error.message)]


# Content blocks with a chat form; the rest (server tools' calls and results,
# redacted thinking, blocks added later) are lost when an answer is read as chat.
_CHAT_BLOCKS = frozenset({"text", "thinking", "tool_use"})


def _chat_block(block: object) -> bool:
    return (
        isinstance(block, dict) and block.get("type") in _CHAT_BLOCKS and not block.get("citations")
    )


def has_chat_form(message: Mapping[str, Any]) -> bool:
    """Whether `from_anthropic_message` gives all of this Message (the cache stores only such)."""
    return all(_chat_block(b) for b in message.get("content") or ())


def chat_chunks(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """A whole Messages stream as chat chunks (usage last), or None when it did not
    end, failed, or holds a block with no chat form."""
    stream = ChatFromAnthropicStream(include_usage=True)
    chunks: list[dict[str, Any]] = []
    for event in events:
        kind = event.get("type")
        if kind == "content_block_start" and not _chat_block(event.get("content_block")):
            return None
        if (
            kind == "content_block_delta"
            and as_dict(event.get("delta")).get("type") == "citations_delta"
        ):
            return None
        try:
            chunks += stream.feed(event)
        except RouterError:
            return None
    return chunks if stream.done else None
