"""Response models: typed dataclasses that are views over the JSON they came from.

Every model is a dataclass whose fields are spelled like the OpenAI JSON keys, over one decoded
JSON object it keeps (``_raw``): the mapping view (``resp["usage"]``, ``dict(resp)``) hands out
that JSON itself, plain dicts and lists, so ``json.dumps`` takes it; a typed attribute
(``resp.usage``) reads the same JSON each time, a nested object or list of objects as a model
over the nested JSON. An assignment writes into the JSON, so the attribute, the mapping view,
``to_dict()`` and a message sent back all carry it; an edit through the mapping view is what the
attributes read next. No field is required: an absent one reads ``None`` as an attribute and is
a missing key through the mapping.

The wire path builds objects with ``_from_json``: no copy, nothing decoded until it is read, so
a stream chunk costs one object until the caller looks inside it. dataclasses-json supplies
``from_dict``/``from_json``/``schema``, imported on first use (it costs more to import than
``requests`` does); ``tests/test_models.py`` proves both read the same.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from ._json_model import GatewayObject, resolve_fields
from ._json_model import model as _model

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionMessageToolCall",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChunkChoice",
    "CompletionUsage",
    "Embedding",
    "EmbeddingResponse",
    "Function",
    "GatewayObject",
    "Model",
    "ModelList",
    "ProviderModels",
    "Usage",
]


@_model
class Function(GatewayObject):
    name: Optional[str] = None
    arguments: Optional[str] = None


@_model
class ChatCompletionMessageToolCall(GatewayObject):
    id: Optional[str] = None
    type: Optional[str] = None
    function: Optional[Function] = None


@_model
class ChatCompletionMessage(GatewayObject):
    role: Optional[str] = None
    content: Optional[str] = None
    tool_calls: Optional[List[ChatCompletionMessageToolCall]] = None
    function_call: Optional[Function] = None
    refusal: Optional[str] = None
    name: Optional[str] = None


@_model
class CompletionUsage(GatewayObject):
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    total_tokens: Optional[int] = None
    prompt_tokens_details: Optional[Dict[str, Any]] = None
    completion_tokens_details: Optional[Dict[str, Any]] = None


Usage = CompletionUsage


@_model
class Choice(GatewayObject):
    index: Optional[int] = None
    message: Optional[ChatCompletionMessage] = None
    finish_reason: Optional[str] = None
    logprobs: Optional[Dict[str, Any]] = None


@_model
class ChatCompletion(GatewayObject):
    id: Optional[str] = None
    object: Optional[str] = None
    created: Optional[int] = None
    model: Optional[str] = None
    choices: Optional[List[Choice]] = None
    usage: Optional[CompletionUsage] = None
    system_fingerprint: Optional[str] = None
    service_tier: Optional[str] = None


@_model
class ChoiceDeltaToolCall(GatewayObject):
    index: Optional[int] = None
    id: Optional[str] = None
    type: Optional[str] = None
    function: Optional[Function] = None


@_model
class ChoiceDelta(GatewayObject):
    role: Optional[str] = None
    content: Optional[str] = None
    tool_calls: Optional[List[ChoiceDeltaToolCall]] = None
    function_call: Optional[Function] = None
    refusal: Optional[str] = None


@_model
class ChunkChoice(GatewayObject):
    index: Optional[int] = None
    delta: Optional[ChoiceDelta] = None
    finish_reason: Optional[str] = None
    logprobs: Optional[Dict[str, Any]] = None


@_model
class ChatCompletionChunk(GatewayObject):
    id: Optional[str] = None
    object: Optional[str] = None
    created: Optional[int] = None
    model: Optional[str] = None
    choices: Optional[List[ChunkChoice]] = None
    usage: Optional[CompletionUsage] = None
    system_fingerprint: Optional[str] = None
    service_tier: Optional[str] = None


@_model
class Embedding(GatewayObject):
    object: Optional[str] = None
    index: Optional[int] = None
    embedding: Optional[Union[List[float], str]] = None


@_model
class EmbeddingResponse(GatewayObject):
    object: Optional[str] = None
    data: Optional[List[Embedding]] = None
    model: Optional[str] = None
    usage: Optional[CompletionUsage] = None


@_model
class Model(GatewayObject):
    id: Optional[str] = None
    object: Optional[str] = None
    created: Optional[int] = None
    owned_by: Optional[str] = None


@_model
class ModelList(GatewayObject):
    object: Optional[str] = None
    data: Optional[List[Model]] = None


@_model
class ProviderModels(GatewayObject):
    provider: Optional[str] = None
    total: Optional[int] = None
    models: Optional[List[Model]] = None


resolve_fields(globals())
