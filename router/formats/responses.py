"""The OpenAI Responses API (`POST /v1/responses`) in and out of the canonical chat body.

* `parse_responses(body, history)`: a Responses request as a chat-completions body.
* `parse_responses_deferred(body, history)`: the same, for a request that may still
  reach an upstream speaking the Responses API as is: what the translation cannot
  carry is left out of the chat body and its 400 is returned, not raised.
* `render_response(completion, request)`: a chat completion as a `Response` object.
* `ResponsesStream`: chat-completion chunks in, the typed `response.*` events out.
* `input_items`, `stored_items`, `previous_response_not_found`: what a response
  store needs for `previous_response_id` (the store itself lives with the wiring).

A Responses request names things the chat API cannot honour (built-in tools,
server-side conversations, background runs): those are refused with a 400 that
names the parameter rather than dropped, since the client would otherwise get an
answer to a different question. What is dropped is listed in `_DROPPED`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from router.errors import RouterError
from router.formats.errors import defer_untranslatable
from router.formats.openai_chat import ToolResults, as_dict, new_id, reasoning_of

__all__ = [
    "ResponsesStream",
    "input_items",
    "parse_responses",
    "parse_responses_deferred",
    "previous_response_not_found",
    "render_response",
    "stored_items",
]

# Fields the translation reads. Anything else gets OpenAI's own "unknown parameter" 400.
_MAPPED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "max_output_tokens",
        "temperature",
        "top_p",
        "top_logprobs",
        "metadata",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "service_tier",
        "reasoning",
        "stream",
        "include",
    }
)
# Accepted and not sent on: `store` and `previous_response_id` are the router's
# (its response store), `truncation: auto` has no chat equivalent (the upstream
# refuses an over-long prompt instead), the rest only tune OpenAI's own servers.
_DROPPED = frozenset(
    {
        "store",
        "previous_response_id",
        "truncation",
        "stream_options",
        "max_tool_calls",
        "prompt_cache_retention",
        "background",
    }
)
# Server-side state or tools a chat-completions upstream does not have.
_REFUSED = {
    "conversation": "Server-side conversations are not supported by this router; "
    "use 'previous_response_id' or send the whole input.",
    "prompt": "Stored prompt templates are not supported by this router; send 'instructions'.",
}
_CHAT_PARTS = {"input_text": "text", "output_text": "text"}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def previous_response_not_found(response_id: str) -> RouterError:
    """OpenAI's answer to a `previous_response_id` it does not hold."""
    return RouterError(
        400,
        f"Previous response with id '{response_id}' not found.",
        code="previous_response_not_found",
        param="previous_response_id",
    )


def _bad(message: str, param: str) -> RouterError:
    return RouterError.bad_request(message, param)


def input_items(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's `input` as a list of items (a string is one user message)."""
    value = body.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        raise _bad("'input' must be a string or an array of input items.", "input")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _bad(f"'input[{i}]' must be an object.", f"input[{i}]")
    return list(value)


def stored_items(
    history: Iterable[Mapping[str, Any]],
    request: Mapping[str, Any],
    response: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """What a store keeps under `response["id"]` for a later `previous_response_id`:
    the prior conversation, this request's input, and this response's output.
    `instructions` are not carried over, as with OpenAI."""
    return [
        *(dict(i) for i in history),
        *input_items(request),
        *(dict(i) for i in response.get("output") or ()),
    ]


# --------------------------------------------------------------------------- request


def parse_responses(
    body: Mapping[str, Any], history: Iterable[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """A Responses request as a chat-completions body.

    `history` is the stored conversation of `previous_response_id` (`stored_items`);
    the caller looks it up and raises `previous_response_not_found` when missing.
    """
    for key in body:
        if key in _REFUSED:
            if body[key] is not None:
                raise _bad(_REFUSED[key], key)
        elif key not in _MAPPED and key not in _DROPPED:
            raise RouterError(
                400, f"Unknown parameter: '{key}'.", code="unknown_parameter", param=key
            )
    if body.get("background"):
        raise _bad("Background responses are not supported by this router.", "background")

    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("Missing required parameter: 'model'.", "model")

    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _bad("'instructions' must be a string.", "instructions")
        messages.append({"role": "system", "content": instructions})
    prior = [dict(i) for i in history or ()]
    items = input_items(body)
    params = ["previous_response_id"] * len(prior) + [f"input[{i}]" for i in range(len(items))]
    messages.extend(_items_to_messages([*prior, *items], params))
    if not any(m["role"] != "system" for m in messages):
        raise _bad("Missing required parameter: 'input'.", "input")

    chat: dict[str, Any] = {"model": model, "messages": messages}
    _copy_numbers(body, chat)
    _map_tools(body, chat)
    _map_text(body, chat)
    _map_reasoning(body, chat)
    _map_logprobs(body, chat)
    for key in ("metadata", "user", "safety_identifier", "prompt_cache_key", "service_tier"):
        if body.get(key) is not None:
            chat[key] = body[key]
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean.", "stream")
    if stream:
        chat["stream"] = True
        # `response.completed` carries usage; chat streams send it only when asked.
        chat["stream_options"] = {"include_usage": True}
    return chat


def parse_responses_deferred(
    body: Mapping[str, Any], history: Iterable[Mapping[str, Any]] | None = None
) -> tuple[dict[str, Any], RouterError | None]:
    """`parse_responses`, with the refusal of what only the Responses API can do
    (built-in tools, server-side state, unknown parameters) deferred.

    Returns the chat body of everything translatable (for scoring, routing and the
    record) and that refusal, or None. A target that takes the request as is never
    needs the translation; one that would translate it answers the refusal then. A
    request that is malformed, not merely untranslatable, still raises here.
    """
    return defer_untranslatable(lambda b: parse_responses(b, history), _translatable, body)


_ITEMS = frozenset({"message", "function_call", "function_call_output", "reasoning"})
_PARTS = frozenset(
    {"input_text", "output_text", "input_image", "input_file", "input_audio", "refusal"}
)


def _translatable(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """`body` without what the chat translation refuses as unsupported (as opposed to
    malformed); None when there is nothing of that kind."""
    out: dict[str, Any] = {}
    dropped = False
    for key, value in body.items():
        if (key in _REFUSED and value is not None) or (key == "background" and value):
            dropped = True
        elif key in _MAPPED or key in _DROPPED:
            out[key] = value
        else:  # an unknown parameter
            dropped = True
    tools = out.get("tools")
    if isinstance(tools, list):
        functions = [t for t in tools if isinstance(t, dict) and t.get("type") == "function"]
        dropped |= len(functions) != len(tools)
        out["tools"] = functions
    choice = out.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") not in ("function", "allowed_tools"):
        del out["tool_choice"]
        dropped = True
    items = out.get("input")
    if isinstance(items, list):
        kept_items = []
        for item in items:
            kind = (
                item.get("type", "message" if "role" in item else None)
                if isinstance(item, dict)
                else None
            )
            if kind not in _ITEMS:
                dropped = True
                continue
            content = item.get("content") if kind == "message" else None
            if isinstance(content, list):
                parts = [p for p in content if _part_translatable(p)]
                if len(parts) != len(content):
                    dropped = True
                    if not parts:
                        continue
                    item = {**item, "content": parts}
            kept_items.append(item)
        out["input"] = kept_items
    return out if dropped else None


def _part_translatable(part: object) -> bool:
    if not isinstance(part, dict):
        return True  # malformed, not unsupported: the parse says so
    kind = part.get("type")
    if kind == "input_image":
        return isinstance(part.get("image_url"), str) and bool(part["image_url"])
    if kind == "input_file":
        return "file_url" not in part
    return kind in _PARTS or not isinstance(kind, str)


def _items_to_messages(items: list[dict[str, Any]], params: list[str]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    results = ToolResults()
    for item, param in zip(items, params, strict=True):
        kind = item.get("type", "message" if "role" in item else None)
        if kind != "function_call_output":
            messages.extend(results.flush())
        if kind == "message":
            messages.append(_message(item, param))
        elif kind == "function_call":
            call = _function_call(item, param)
            last = messages[-1] if messages else None
            # One chat assistant message holds the text and every call of a turn.
            # (a tool answer in between starts a new turn: `last` is then a tool message).
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"'{param}.call_id' is required.", f"{param}.call_id")
            messages.append(results.message(call_id, _tool_output(item.get("output"), param)))
        elif kind == "reasoning":
            # Another model's reasoning (often encrypted) means nothing to the next one.
            continue
        elif kind == "item_reference":
            raise _bad(
                "Item references are not supported by this router; "
                "use 'previous_response_id' or send the items.",
                f"{param}.type",
            )
        else:
            raise _bad(
                f"Input items of type '{kind}' are not supported by this router.",
                f"{param}.type",
            )
    messages.extend(results.flush())
    return messages


def _message(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "system", "developer", "assistant"):
        raise _bad(
            f"'{param}.role' must be one of 'user', 'system', 'developer', 'assistant'.",
            f"{param}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise _bad(
            f"'{param}.content' must be a string or an array of content parts.",
            f"{param}.content",
        )
    if role == "assistant":
        return _assistant_message(content, param)
    return {
        "role": role,
        "content": [_input_part(p, f"{param}.content[{j}]") for j, p in enumerate(content)],
    }


def _assistant_message(content: list[Any], param: str) -> dict[str, Any]:
    texts: list[str] = []
    refusals: list[str] = []
    for j, part in enumerate(content):
        where = f"{param}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("output_text", "input_text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            refusals.append(part["refusal"])
        else:
            raise _bad(f"'{where}' must be an output_text or refusal part.", where)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": texts[0]
        if len(texts) == 1
        else ([{"type": "text", "text": t} for t in texts] if texts else None),
    }
    if refusals:
        message["refusal"] = "".join(refusals)
    return message


def _input_part(part: object, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if not isinstance(part, dict) or not isinstance(kind, str):
        raise _bad(f"'{where}' must be an object with a 'type'.", where)
    if kind in _CHAT_PARTS:
        text = part.get("text")
        if not isinstance(text, str):
            raise _bad(f"'{where}.text' must be a string.", f"{where}.text")
        return {"type": "text", "text": text}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            # A file_id points into OpenAI's file store, which the router does not have.
            raise _bad(f"'{where}.image_url' is required (file_id is not supported).", where)
        image: dict[str, Any] = {"url": url}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k)}
        if "file_url" in part or not ({"file_data", "file_id"} & file.keys()):
            raise _bad(
                f"'{where}' needs 'file_data' or 'file_id' ('file_url' is not supported).", where
            )
        return {"type": "file", "file": file}
    if kind == "input_audio":
        return {"type": "input_audio", "input_audio": part.get("input_audio")}
    raise _bad(f"Content parts of type '{kind}' are not supported by this router.", f"{where}.type")


def _function_call(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    for key in ("call_id", "name", "arguments"):
        if not isinstance(item.get(key), str):
            raise _bad(f"'{param}.{key}' must be a string.", f"{param}.{key}")
    return {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item["arguments"]},
    }


def _tool_output(output: object, param: str) -> str | list[dict[str, Any]]:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return [_input_part(p, f"{param}.output[{j}]") for j, p in enumerate(output)]
    raise _bad(
        f"'{param}.output' must be a string or an array of content parts.", f"{param}.output"
    )


def _number(body: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _bad(f"'{key}' must be a number between {low} and {high}.", key)
    return value


def _copy_numbers(body: Mapping[str, Any], chat: dict[str, Any]) -> None:
    for key, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        value = _number(body, key, low, high)
        if value is not None:
            chat[key] = value
    limit = body.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _bad("'max_output_tokens' must be a positive integer.", "max_output_tokens")
        chat["max_completion_tokens"] = limit
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise _bad("'parallel_tool_calls' must be a boolean.", "parallel_tool_calls")
        chat["parallel_tool_calls"] = parallel


def _map_tools(body: Mapping[str, Any], chat: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("'tools' must be an array.", "tools")
        converted = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                kind = tool.get("type") if isinstance(tool, dict) else None
                raise _bad(
                    f"Tools of type '{kind}' are not supported by this router; "
                    "only function tools are.",
                    f"tools[{i}].type",
                )
            if not isinstance(tool.get("name"), str) or not tool["name"]:
                raise _bad(f"'tools[{i}].name' is required.", f"tools[{i}].name")
            function = {
                k: tool[k]
                for k in ("name", "description", "parameters", "strict")
                if tool.get(k) is not None
            }
            converted.append({"type": "function", "function": function})
        if converted:
            chat["tools"] = converted
    choice = body.get("tool_choice")
    if choice is None:
        return
    if choice in ("none", "auto", "required"):
        chat["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        if not isinstance(choice.get("name"), str):
            raise _bad("'tool_choice.name' is required.", "tool_choice.name")
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("tools")
        if not isinstance(allowed, list) or not all(
            isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
            for t in allowed
        ):
            raise _bad("'tool_choice.tools' must list function tools by name.", "tool_choice.tools")
        chat["tool_choice"] = {
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": choice.get("mode", "auto"),
                "tools": [{"type": "function", "function": {"name": t["name"]}} for t in allowed],
            },
        }
    else:
        raise _bad(
            "'tool_choice' must be 'none', 'auto', 'required' or a function tool.", "tool_choice"
        )


def _map_text(body: Mapping[str, Any], chat: dict[str, Any]) -> None:
    text = body.get("text")
    if text is None:
        return
    if not isinstance(text, dict):
        raise _bad("'text' must be an object.", "text")
    fmt = text.get("format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "json_schema":
            assert isinstance(fmt, dict)
            if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
                raise _bad("'text.format' needs a 'name' and a 'schema'.", "text.format")
            schema = {
                k: fmt[k]
                for k in ("name", "schema", "description", "strict")
                if fmt.get(k) is not None
            }
            chat["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif kind == "json_object":
            chat["response_format"] = {"type": "json_object"}
        elif kind != "text":
            raise _bad(
                "'text.format.type' must be 'text', 'json_object' or 'json_schema'.",
                "text.format.type",
            )
    if text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]


def _map_reasoning(body: Mapping[str, Any], chat: dict[str, Any]) -> None:
    reasoning = body.get("reasoning")
    if reasoning is None:
        return
    if not isinstance(reasoning, dict):
        raise _bad("'reasoning' must be an object.", "reasoning")
    # The summary settings have no chat equivalent: chat servers stream raw reasoning.
    if reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]


def _map_logprobs(body: Mapping[str, Any], chat: dict[str, Any]) -> None:
    include = body.get("include")
    if include is not None and not isinstance(include, list):
        raise _bad("'include' must be an array.", "include")
    top = body.get("top_logprobs")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20:
            raise _bad("'top_logprobs' must be an integer between 0 and 20.", "top_logprobs")
        chat["logprobs"] = True
        chat["top_logprobs"] = top
    # The other `include` values name server-side tools' results: nothing to include.
    if include and "message.output_text.logprobs" in include:
        chat["logprobs"] = True


# --------------------------------------------------------------------------- response


def _item_id(prefix: str, response_id: str, index: int) -> str:
    # Derived from the response id and the output position, so that a stream and
    # the plain render of the same answer name their items alike.
    return f"{prefix}_{response_id.removeprefix('resp_')}{index:02d}"


def _annotation(chat: Mapping[str, Any]) -> dict[str, Any] | None:
    if chat.get("type") == "url_citation" and isinstance(chat.get("url_citation"), dict):
        cite = chat["url_citation"]
        return {
            "type": "url_citation",
            "start_index": cite.get("start_index", 0),
            "end_index": cite.get("end_index", 0),
            "title": cite.get("title", ""),
            "url": cite.get("url", ""),
        }
    return None


def _token_bytes(entry: Mapping[str, Any]) -> list[int]:
    raw = entry.get("bytes")
    if isinstance(raw, list):
        return raw
    return list(str(entry.get("token", "")).encode())


def _logprobs(content: object) -> list[dict[str, Any]]:
    """Chat `choice.logprobs.content` in the Responses shape."""
    out = []
    for entry in content if isinstance(content, list) else ():
        if not isinstance(entry, dict):
            continue
        tops = [
            {
                "token": t.get("token", ""),
                "bytes": _token_bytes(t),
                "logprob": t.get("logprob", 0.0),
            }
            for t in entry.get("top_logprobs") or ()
            if isinstance(t, dict)
        ]
        out.append(
            {
                "token": entry.get("token", ""),
                "bytes": _token_bytes(entry),
                "logprob": entry.get("logprob", 0.0),
                "top_logprobs": tops,
            }
        )
    return out


def _echo(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request settings a Response object repeats back."""
    tools = []
    for tool in request.get("tools") or ():
        if isinstance(tool, dict):
            tools.append({"parameters": None, "strict": None, **tool})
    reasoning = as_dict(request.get("reasoning"))
    text = as_dict(request.get("text"))
    return {
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "metadata": request.get("metadata") or {},
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, **text},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": tools,
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation", "disabled"),
        "user": request.get("user"),
    }


def _usage(usage: object) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    tin = usage.get("prompt_tokens") or 0
    tout = usage.get("completion_tokens") or 0
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": tin,
        "input_tokens_details": {
            "cached_tokens": prompt_details.get("cached_tokens") or 0,
            "cache_write_tokens": 0,
        },
        "output_tokens": tout,
        "output_tokens_details": {
            "reasoning_tokens": completion_details.get("reasoning_tokens") or 0
        },
        "total_tokens": usage.get("total_tokens") or tin + tout,
    }


def _envelope(
    request: Mapping[str, Any],
    response_id: str,
    created_at: float,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    *,
    usage: dict[str, Any] | None = None,
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "model": model,
        "output": output,
        "usage": usage,
        **_echo(request),
    }


def _message_item(
    item_id: str,
    status: str,
    text: str | None,
    refusal: str | None,
    annotations: list[dict[str, Any]],
    logprobs: list[dict[str, Any]],
) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text or not refusal:
        content.append(
            {
                "type": "output_text",
                "text": text or "",
                "annotations": annotations,
                "logprobs": logprobs,
            }
        )
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": status,
        "content": content,
    }


def _reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": item_id,
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def _call_item(item_id: str, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }


def _status(finish_reason: object) -> tuple[str, str | None]:
    reason = _INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    return ("incomplete", reason) if reason else ("completed", None)


def _output_items(
    choice: Mapping[str, Any], message: Mapping[str, Any], response_id: str, item_status: str
) -> list[dict[str, Any]]:
    """Reasoning, then the message, then one function_call item per tool call."""
    output: list[dict[str, Any]] = []
    reasoning = reasoning_of(message)
    if reasoning:
        output.append(_reasoning_item(_item_id("rs", response_id, len(output)), reasoning))
    text = message.get("content") if isinstance(message.get("content"), str) else None
    refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else None
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    if text or refusal or not calls:
        annotations = [a for a in map(_annotation, message.get("annotations") or ()) if a]
        logprobs = as_dict(choice.get("logprobs"))
        output.append(
            _message_item(
                _item_id("msg", response_id, len(output)),
                item_status,
                text,
                refusal,
                annotations,
                _logprobs(logprobs.get("content")),
            )
        )
    for call in calls:
        function = call.get("function") or {}
        output.append(
            _call_item(
                _item_id("fc", response_id, len(output)),
                str(call.get("id") or ""),
                str(function.get("name") or ""),
                str(function.get("arguments") or ""),
            )
        )
    return output


def render_response(
    completion: Mapping[str, Any],
    request: Mapping[str, Any],
    *,
    response_id: str | None = None,
) -> dict[str, Any]:
    """A chat completion (first choice) as the Response object of `request`.

    Output order: reasoning, the message (text and refusal), then one function_call
    item per tool call. A message is there when the answer has text or a refusal,
    or has nothing else, so that `output_text` always reads as something.
    """
    response_id = response_id or new_id("resp_")
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = as_dict(choice.get("message"))
    status, incomplete = _status(choice.get("finish_reason"))
    item_status = "incomplete" if status == "incomplete" else "completed"

    output = _output_items(choice, message, response_id, item_status)
    created = completion.get("created")
    return _envelope(
        request,
        response_id,
        created if isinstance(created, int | float) else time.time(),
        str(completion.get("model") or request.get("model") or ""),
        status,
        output,
        usage=_usage(completion.get("usage")),
        incomplete=incomplete,
    )


# --------------------------------------------------------------------------- stream


class ResponsesStream:
    """Chat-completion chunks (parsed dicts, first choice) to Responses stream events.

    Use: `start()` once, `feed(chunk)` per chunk, then `finish()` at `[DONE]` (or
    `fail(error)` when the upstream breaks off). Each returns event dicts; frame
    them with `router.formats.errors.sse_event(event["type"], event)`. Events carry
    `sequence_number` from 0. The last event holds the full Response, the same
    object `render_response` gives for the assembled completion (the test suite
    checks this), so it can go to the response store as is (`self.response`).

    Items open as their first delta arrives and close when another kind starts; a
    delta for an already closed tool call (interleaved parallel calls, which chat
    servers do not send in practice) is kept for the final object but not re-opened.
    """

    def __init__(self, request: Mapping[str, Any], *, response_id: str | None = None) -> None:
        self.request = request
        self.response_id = response_id or new_id("resp_")
        self.response: dict[str, Any] | None = None
        self._seq = 0
        self._created: float = time.time()
        self._model = str(request.get("model") or "")
        self._output = _Output(self.response_id, self._event)
        self._usage: dict[str, Any] | None = None

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def _snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        return _envelope(
            self.request,
            self.response_id,
            self._created,
            self._model,
            status,
            [dict(i) for i in self._output.items] if status != "in_progress" else [],
            **extra,
        )

    def start(self) -> list[dict[str, Any]]:
        return [
            self._event("response.created", response=self._snapshot("in_progress")),
            self._event("response.in_progress", response=self._snapshot("in_progress")),
        ]

    def feed(self, chunk: Mapping[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if isinstance(chunk.get("created"), int | float):
            self._created = chunk["created"]
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self._model = chunk["model"]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                events += self._choice(choice)
        return events

    def _choice(self, choice: Mapping[str, Any]) -> list[dict[str, Any]]:
        output, events = self._output, []
        delta = as_dict(choice.get("delta"))
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events += output.reasoning(reasoning)
        content = delta.get("content")
        logprobs = as_dict(choice.get("logprobs"))
        if isinstance(content, str) and content:
            events += output.text("output_text", content, logprobs.get("content"))
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            events += output.text("refusal", refusal, None)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                events += output.tool_call(call)
        annotations = delta.get("annotations")
        if isinstance(annotations, list):
            output.annotate(annotations)
        if choice.get("finish_reason") is not None:
            output.finish = choice["finish_reason"]
        return events

    def finish(self) -> list[dict[str, Any]]:
        """Close what is open and end with `response.completed` (or `.incomplete`)."""
        events = self._output.empty_message() if not self._output.items else []
        events += self._output.close()
        status, incomplete = _status(self._output.finish)
        self.response = self._snapshot(status, usage=_usage(self._usage), incomplete=incomplete)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        events.append(self._event(kind, response=self.response))
        return events

    def fail(self, error: RouterError) -> list[dict[str, Any]]:
        """The upstream broke off: an `error` event, then `response.failed`."""
        events = [self._event("error", code=error.code, message=error.message, param=error.param)]
        self.response = self._snapshot(
            "failed",
            usage=_usage(self._usage),
            error={"code": "server_error", "message": error.message},
        )
        events.append(self._event("response.failed", response=self.response))
        return events


class _Output:
    """The output items as they stream, and the events that open, grow and close them.

    One item is open at a time (and in a message, one content part); a delta of
    another kind closes it first. `ResponsesStream` feeds it the deltas and owns
    the rest of the protocol (the envelope, sequence numbers, the last event).
    """

    def __init__(self, response_id: str, event: Callable[..., dict[str, Any]]) -> None:
        self.response_id = response_id
        self.items: list[dict[str, Any]] = []  # items as they are (being) built
        self.finish: object = None  # the chat finish_reason, once one arrived
        self._event = event
        self._open: int | None = None  # output index of the item being streamed
        self._part: str | None = None  # "output_text" / "refusal" in the open message
        self._calls: dict[int, int] = {}  # chat tool-call index -> output index

    def reasoning(self, text: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._open is None or self.items[self._open]["type"] != "reasoning":
            item: dict[str, Any] = {
                "type": "reasoning",
                "id": _item_id("rs", self.response_id, len(self.items)),
                "summary": [],
                "content": [],
                "status": "in_progress",
            }
            index, events = self._add(item)
            part: dict[str, Any] = {"type": "reasoning_text", "text": ""}
            item["content"].append(part)
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=dict(part),
                )
            )
        assert self._open is not None
        index = self._open
        item = self.items[index]
        item["content"][0]["text"] += text
        events.append(
            self._event(
                "response.reasoning_text.delta",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                delta=text,
            )
        )
        return events

    def text(self, kind: str, text: str, logprobs: object) -> list[dict[str, Any]]:
        index, events = self._message()
        item = self.items[index]
        if self._part != kind:
            events += self._close_part(index)
            part: dict[str, Any] = (
                {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                if kind == "output_text"
                else {"type": "refusal", "refusal": ""}
            )
            item["content"].append(part)
            self._part = kind
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=len(item["content"]) - 1,
                    part=_copy(part),
                )
            )
        content_index = len(item["content"]) - 1
        part = item["content"][content_index]
        common = {"item_id": item["id"], "output_index": index, "content_index": content_index}
        if kind == "output_text":
            part["text"] += text
            converted = _logprobs(logprobs)
            part["logprobs"].extend(converted)
            events.append(
                self._event(
                    "response.output_text.delta",
                    **common,
                    delta=text,
                    logprobs=_event_logprobs(converted),
                )
            )
        else:
            part["refusal"] += text
            events.append(self._event("response.refusal.delta", **common, delta=text))
        return events

    def tool_call(self, call: Mapping[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        position = call.get("index", 0)
        function = as_dict(call.get("function"))
        index = self._calls.get(position)
        if index is None:
            item = {
                "type": "function_call",
                "id": _item_id("fc", self.response_id, len(self.items)),
                "call_id": str(call.get("id") or ""),
                "name": str(function.get("name") or ""),
                "arguments": "",
                "status": "in_progress",
            }
            index, events = self._add(item)
            self._calls[position] = index
        item = self.items[index]
        if isinstance(function.get("name"), str) and not item["name"]:
            item["name"] = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item["arguments"] += arguments
            if self._open == index:
                events.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=index,
                        delta=arguments,
                    )
                )
        return events

    def annotate(self, annotations: list[Any]) -> None:
        # Chat servers send annotations apart from the text they cite: they go to
        # the last message's text part, however far back it is.
        for item in reversed(self.items):
            if item["type"] == "message":
                text = item["content"][0] if item["content"] else None
                if text is not None and text["type"] == "output_text":
                    text["annotations"].extend(a for a in map(_annotation, annotations) if a)
                return

    def _message(self) -> tuple[int, list[dict[str, Any]]]:
        if self._open is not None and self.items[self._open]["type"] == "message":
            return self._open, []
        item = {
            "type": "message",
            "id": _item_id("msg", self.response_id, len(self.items)),
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        return self._add(item)

    def _add(self, item: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
        events = self.close()
        index = len(self.items)
        self.items.append(item)
        self._open = index
        events.append(
            self._event("response.output_item.added", output_index=index, item=_copy(item))
        )
        return index, events

    def close(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        item = self.items[index]
        events = self._close_part(index)
        if item["type"] == "function_call":
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                )
            )
        incomplete = item["type"] == "message" and _status(self.finish)[0] == "incomplete"
        item["status"] = "incomplete" if incomplete else "completed"
        if item["type"] == "reasoning":
            del item["status"]
            events.append(
                self._event(
                    "response.reasoning_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=item["content"][0]["text"],
                )
            )
            events.append(
                self._event(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=dict(item["content"][0]),
                )
            )
        events.append(
            self._event("response.output_item.done", output_index=index, item=_copy(item))
        )
        return events

    def _close_part(self, index: int) -> list[dict[str, Any]]:
        if self._part is None:
            return []
        kind, self._part = self._part, None
        item = self.items[index]
        content_index = len(item["content"]) - 1
        part = item["content"][content_index]
        common = {"item_id": item["id"], "output_index": index, "content_index": content_index}
        if kind == "output_text":
            done = self._event(
                "response.output_text.done",
                **common,
                text=part["text"],
                logprobs=_event_logprobs(part["logprobs"]),
            )
        else:
            done = self._event("response.refusal.done", **common, refusal=part["refusal"])
        return [done, self._event("response.content_part.done", **common, part=_copy(part))]

    def empty_message(self) -> list[dict[str, Any]]:
        """An answer with nothing in it still reads as an (empty) message."""
        _, events = self._message()
        self._part = "output_text"
        self.items[-1]["content"].append(
            {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        )
        events.append(
            self._event(
                "response.content_part.added",
                item_id=self.items[-1]["id"],
                output_index=0,
                content_index=0,
                part=_copy(self.items[-1]["content"][0]),
            )
        )
        return events


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    # Events are handed out while the items keep growing: each event needs its own copy.
    return {
        k: (
            _copy(v)
            if isinstance(v, dict)
            else [_copy(x) if isinstance(x, dict) else x for x in v]
            if isinstance(v, list)
            else v
        )
        for k, v in value.items()
    }


def _event_logprobs(logprobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "token": e["token"],
            "logprob": e["logprob"],
            "top_logprobs": [
                {"token": t["token"], "logprob": t["logprob"]} for t in e["top_logprobs"]
            ],
        }
        for e in logprobs
    ]
