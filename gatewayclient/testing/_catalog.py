"""The fake gateway's model catalog and its deterministic answers, as pure functions.

Everything FakeGateway says is computed here from the request alone, so a test can compute the
same values and compare:

- **Tokens** are whitespace-separated words: ``count_tokens(text) == len(text.split())``.
- **Message text** is a string ``content``, or the ``text`` of the ``{"type": "text"}`` parts of
  a list ``content`` joined by one space; ``None`` or anything else is ``""``.
- **Reply**: ``f"Hello from {model}! You said: {last user message text}"`` with trailing
  whitespace removed (no user message: nothing after ``"You said:"``). ``max_tokens`` (or
  ``max_completion_tokens``) keeps the first that many words, each with the whitespace after
  it, then strips trailing whitespace; ``finish_reason`` is ``"length"`` when words were cut,
  else ``"stop"``. A stream sends the same words, one per chunk.
- **Usage**: ``prompt_tokens`` = sum over messages of (words of its text + 3);
  ``completion_tokens`` = words of the reply, times ``n``; ``total_tokens`` = their sum.
- **Tool call** (``tools`` given and ``tool_choice`` not ``"none"``): one call to the first tool
  (or the one ``tool_choice`` names), id ``"call_0"``, arguments ``json.dumps`` of an object
  with every property of the tool's JSON schema set by type (first ``enum`` value, else
  string ``"test"``, integer ``1``, number ``1.5``, boolean ``True``, array ``[]``, object
  ``{}``, null ``None``); ``content`` is ``None`` and ``finish_reason`` ``"tool_calls"``;
  ``completion_tokens`` = words of ``name + " " + arguments``, times ``n``.
- **Embeddings**: a unit vector (L2 norm 1) of the model's dimension (or ``dimensions``), from
  SHA-256 of ``model``, a NUL byte, ``text``; every component is a float32 value, so the
  ``base64`` encoding (little-endian float32) decodes to exactly the same numbers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import sys
from array import array
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

MODEL_CREATED = 1700000000
"""The fixed ``created`` timestamp of every model object."""

PER_MESSAGE_TOKENS = 3
"""Tokens added to ``prompt_tokens`` for each message, whatever its content."""

TOOL_CALL_ID = "call_0"


@dataclass(frozen=True)
class CatalogModel:
    """One model the fake gateway serves: chat models have ``dimensions`` None."""

    id: str
    dimensions: Optional[int] = None

    @property
    def provider(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def is_embedding(self) -> bool:
        return self.dimensions is not None

    def to_json(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "object": "model",
            "created": MODEL_CREATED,
            "owned_by": self.provider,
        }


PROVIDERS = ("openai", "anthropic", "google", "azure", "mistral")

MODELS = (
    CatalogModel("openai/gpt-4o"),
    CatalogModel("openai/gpt-4o-mini"),
    CatalogModel("openai/text-embedding-3-small", 1536),
    CatalogModel("openai/text-embedding-3-large", 3072),
    CatalogModel("anthropic/claude-sonnet-4-20250514"),
    CatalogModel("anthropic/claude-haiku-4-20250414"),
    CatalogModel("google/gemini-2.0-flash"),
    CatalogModel("google/text-embedding-004", 768),
    CatalogModel("azure/gpt-4o"),
    CatalogModel("azure/text-embedding-ada-002", 1536),
    CatalogModel("mistral/mistral-large-latest"),
    CatalogModel("mistral/mistral-embed", 1024),
)

MODELS_BY_ID = {m.id: m for m in MODELS}

_WORD = re.compile(r"\S+\s*")


def count_tokens(text: str) -> int:
    """The fake tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def message_text(content: Any) -> str:
    """A message ``content`` as text: a string, or a list's text parts joined by a space."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def reply_words(text: str) -> List[str]:
    """``text`` cut into words, each keeping the whitespace after it (the stream's pieces)."""
    return _WORD.findall(text)


def _full_reply(model: str, messages: Sequence[Mapping[str, Any]]) -> str:
    said = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            said = message_text(message.get("content"))
            break
    return f"Hello from {model}! You said: {said}".rstrip()


def expected_reply(
    model: str, messages: Sequence[Mapping[str, Any]], max_tokens: Optional[int] = None
) -> str:
    """The assistant text FakeGateway answers to ``messages`` (see the module docstring)."""
    full = _full_reply(model, messages)
    if max_tokens is None:
        return full
    return "".join(reply_words(full)[:max_tokens]).rstrip()


def expected_finish_reason(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    max_tokens: Optional[int] = None,
    *,
    tools: Optional[Sequence[Mapping[str, Any]]] = None,
    tool_choice: Any = None,
) -> str:
    """``"tool_calls"``, ``"length"`` when ``max_tokens`` cut the reply, else ``"stop"``."""
    if expected_tool_call(tools, tool_choice) is not None:
        return "tool_calls"
    full = _full_reply(model, messages)
    if max_tokens is not None and count_tokens(full) > max_tokens:
        return "length"
    return "stop"


def expected_usage(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    max_tokens: Optional[int] = None,
    *,
    n: int = 1,
    tools: Optional[Sequence[Mapping[str, Any]]] = None,
    tool_choice: Any = None,
) -> Dict[str, int]:
    """The ``usage`` object of a chat answer: prompt, completion and total tokens."""
    prompt = sum(
        count_tokens(message_text(m.get("content"))) + PER_MESSAGE_TOKENS for m in messages
    )
    call = expected_tool_call(tools, tool_choice)
    if call is not None:
        function = call["function"]
        completion = count_tokens(f"{function['name']} {function['arguments']}")
    else:
        completion = count_tokens(expected_reply(model, messages, max_tokens))
    completion *= n
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _schema_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "test"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0] if kind else "string"
    defaults: Dict[Any, Any] = {"integer": 1, "number": 1.5, "boolean": True, "null": None}
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return defaults.get(kind, "test")


def expected_tool_arguments(tool: Mapping[str, Any]) -> Dict[str, Any]:
    """The object FakeGateway passes to ``tool``: one value per schema property, set by type."""
    function = tool.get("function")
    params = function.get("parameters") if isinstance(function, dict) else None
    props = params.get("properties") if isinstance(params, dict) else None
    if not isinstance(props, dict):
        return {}
    return {name: _schema_value(schema) for name, schema in props.items()}


def _chosen_tool(
    tools: Optional[Sequence[Mapping[str, Any]]], tool_choice: Any
) -> Optional[Mapping[str, Any]]:
    if not tools or tool_choice == "none":
        return None
    if isinstance(tool_choice, dict):
        wanted = (tool_choice.get("function") or {}).get("name")
        for tool in tools:
            if (tool.get("function") or {}).get("name") == wanted:
                return tool
        return None
    return tools[0]


def expected_tool_call(
    tools: Optional[Sequence[Mapping[str, Any]]], tool_choice: Any = None
) -> Optional[Dict[str, Any]]:
    """The one tool call FakeGateway answers with, or None when it answers with text."""
    tool = _chosen_tool(tools, tool_choice)
    if tool is None:
        return None
    name = (tool.get("function") or {}).get("name", "")
    arguments = json.dumps(expected_tool_arguments(tool))
    return {
        "id": TOOL_CALL_ID,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def _raw_components(model: str, text: str, count: int) -> List[float]:
    seed = f"{model}\x00{text}".encode()
    values: List[float] = []
    block = 0
    while len(values) < count:
        digest = hashlib.sha256(seed + block.to_bytes(4, "little")).digest()
        values.extend(v / 2**31 for (v,) in struct.iter_unpack("<i", digest))
        block += 1
    return values[:count]


def expected_embedding(model: str, text: str, dimensions: Optional[int] = None) -> List[float]:
    """The unit vector FakeGateway gives ``text`` under ``model`` (float32 values)."""
    size = dimensions or MODELS_BY_ID[model].dimensions or 0
    raw = _raw_components(model, text, size)
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return array("f", (x / norm for x in raw)).tolist()


def encode_embedding(vector: Sequence[float]) -> str:
    """``vector`` as OpenAI's ``encoding_format="base64"``: base64 of little-endian float32."""
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")
