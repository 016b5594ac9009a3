"""Chat and embedding requests: validated like the OpenAI API, answered from ``_catalog``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ._catalog import (
    CatalogModel,
    count_tokens,
    encode_embedding,
    expected_embedding,
    expected_finish_reason,
    expected_reply,
    expected_tool_call,
    expected_usage,
    reply_words,
)
from ._wire import ApiError, sse_event

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_RANGES = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}


def _bad(message: str, param: Optional[str] = None) -> ApiError:
    return ApiError(400, message, param=param)


def require_model(body: Any) -> str:
    """The body's ``model``, after checking the body is a JSON object that names one."""
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", "request_body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("Missing required parameter: 'model'.", "model")
    return model


def _positive_int(body: Mapping[str, Any], name: str, upper: int = 1 << 31) -> Optional[int]:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
        raise _bad(f"Invalid '{name}': expected an integer from 1 to {upper}, got {value!r}.", name)
    return value


def _check_ranges(body: Mapping[str, Any]) -> None:
    for name, (low, high) in _RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not low <= value <= high
        ):
            raise _bad(f"Invalid '{name}': expected a number from {low:g} to {high:g}.", name)


def _check_messages(messages: Any) -> List[Dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _bad("Missing required parameter: 'messages'.", "messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise _bad(f"Invalid 'messages[{index}]': expected an object with a role.", "messages")
    return messages


def _check_tools(tools: Any, tool_choice: Any) -> Optional[List[Dict[str, Any]]]:
    if tools is None:
        return None
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and isinstance((t.get("function") or {}).get("name"), str)
        for t in tools
    ):
        raise _bad("Invalid 'tools': expected a list of function tools with a name.", "tools")
    if tools and isinstance(tool_choice, dict) and expected_tool_call(tools, tool_choice) is None:
        raise _bad("Invalid 'tool_choice': it names no tool in 'tools'.", "tool_choice")
    return tools


@dataclass(frozen=True)
class ChatRequest:
    """The parts of a chat completion request that shape the fake answer."""

    model: str
    messages: List[Dict[str, Any]]
    max_tokens: Optional[int]
    n: int
    stream: bool
    include_usage: bool
    tools: Optional[List[Dict[str, Any]]]
    tool_choice: Any

    def reply(self) -> str:
        return expected_reply(self.model, self.messages, self.max_tokens)

    def tool_call(self) -> Optional[Dict[str, Any]]:
        return expected_tool_call(self.tools, self.tool_choice)

    def finish_reason(self) -> str:
        return expected_finish_reason(
            self.model,
            self.messages,
            self.max_tokens,
            tools=self.tools,
            tool_choice=self.tool_choice,
        )

    def usage(self) -> Dict[str, int]:
        return expected_usage(
            self.model,
            self.messages,
            self.max_tokens,
            n=self.n,
            tools=self.tools,
            tool_choice=self.tool_choice,
        )


def parse_chat(body: Dict[str, Any]) -> ChatRequest:
    """Validate a chat completion body (already known to name a model) as the real API does."""
    messages = _check_messages(body.get("messages"))
    _check_ranges(body)
    max_tokens = _positive_int(body, "max_tokens")
    if max_tokens is None:
        max_tokens = _positive_int(body, "max_completion_tokens")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("Invalid 'stream': expected a boolean.", "stream")
    options = body.get("stream_options")
    if options is not None and not (stream and isinstance(options, dict)):
        raise _bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.")
    tool_choice = body.get("tool_choice")
    return ChatRequest(
        model=body["model"],
        messages=messages,
        max_tokens=max_tokens,
        n=_positive_int(body, "n", 128) or 1,
        stream=bool(stream),
        include_usage=bool(options and options.get("include_usage") is True),
        tools=_check_tools(body.get("tools"), tool_choice),
        tool_choice=tool_choice,
    )


def chat_completion(req: ChatRequest, completion_id: str, created: int) -> Dict[str, Any]:
    """The ``chat.completion`` object answering ``req``."""
    call = req.tool_call()
    message: Dict[str, Any] = {"role": "assistant"}
    if call is not None:
        message.update(content=None, tool_calls=[call])
    else:
        message["content"] = req.reply()
    finish = req.finish_reason()
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": req.model,
        "choices": [
            {"index": i, "message": message, "finish_reason": finish} for i in range(req.n)
        ],
        "usage": req.usage(),
    }


def _argument_pieces(arguments: str) -> List[str]:
    size = max(1, min(8, len(arguments) // 2))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def _deltas(req: ChatRequest) -> List[Dict[str, Any]]:
    call = req.tool_call()
    if call is None:
        first: List[Dict[str, Any]] = [{"role": "assistant", "content": ""}]
        return first + [{"content": word} for word in reply_words(req.reply())]
    function = call["function"]
    head = {
        "index": 0,
        "id": call["id"],
        "type": "function",
        "function": {"name": function["name"], "arguments": ""},
    }
    pieces = _argument_pieces(function["arguments"])
    return [{"role": "assistant", "content": None, "tool_calls": [head]}] + [
        {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in pieces
    ]


def chat_events(req: ChatRequest, completion_id: str, created: int) -> List[bytes]:
    """The SSE events of a streamed answer to ``req``, without the final ``[DONE]``.

    Per choice: a role chunk, one chunk per word (or per piece of tool arguments), a chunk with
    an empty delta and the finish reason; then, when usage was asked for, a chunk with empty
    ``choices`` and the usage (every other chunk then carries ``"usage": null``).
    """
    base: Dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": req.model,
    }
    if req.include_usage:
        base["usage"] = None
    finish = req.finish_reason()
    deltas = _deltas(req)
    events: List[bytes] = []
    for index in range(req.n):
        choices: List[Dict[str, Any]] = [
            {"index": index, "delta": d, "finish_reason": None} for d in deltas
        ]
        choices.append({"index": index, "delta": {}, "finish_reason": finish})
        events.extend(sse_event({**base, "choices": [choice]}) for choice in choices)
    if req.include_usage:
        events.append(sse_event({**base, "choices": [], "usage": req.usage()}))
    return events


def _inputs(value: Any) -> List[str]:
    items: Sequence[Any] = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _bad("Invalid 'input': expected a non-empty string or list of strings.", "input")
    if not all(isinstance(item, str) and item for item in items):
        raise _bad("Invalid 'input': every item must be a non-empty string.", "input")
    return list(items)


def embeddings(model: CatalogModel, body: Dict[str, Any]) -> Dict[str, Any]:
    """The embeddings ``list`` answering ``body`` for an embedding ``model``."""
    texts = _inputs(body.get("input"))
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise _bad("Invalid 'encoding_format': expected 'float' or 'base64'.", "encoding_format")
    dimensions = _positive_int(body, "dimensions", model.dimensions or 1)
    data: List[Dict[str, Any]] = []
    for index, text in enumerate(texts):
        vector = expected_embedding(model.id, text, dimensions)
        value: Union[str, List[float]] = (
            encode_embedding(vector) if encoding == "base64" else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = sum(count_tokens(text) for text in texts)
    return {
        "object": "list",
        "data": data,
        "model": model.id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def answer_tokens(body: Any, chat: bool) -> int:
    """The ``total_tokens`` that the answer to a chat (or embeddings) ``body`` reports, as
    the route would compute it; 0 for a body the route refuses. What a tokens-per-minute limit
    counts: the answers are known before they are written."""
    try:
        require_model(body)
        if chat:
            return parse_chat(body).usage()["total_tokens"]
        return sum(count_tokens(text) for text in _inputs(body.get("input")))
    except ApiError:
        return 0
