"""Response models: typed dataclasses that also read like the JSON they came from.

Every model is a dataclass whose fields are spelled like the OpenAI JSON keys, and a read-only
mapping over the JSON object as received: ``resp.choices[0].message.content`` and
``resp["choices"][0]["message"]["content"]`` are the same value. No field is required; an
absent one reads as ``None`` as an attribute and as a missing key through the mapping.

The wire path builds objects with ``_from_json`` (no dataclasses-json): it keeps the decoded JSON
and decodes a nested field only when it is first read, so a stream chunk costs one object until
the caller looks inside it. dataclasses-json supplies ``from_dict``/``from_json``/``schema``,
imported on first use (it costs more to import than ``requests`` does); ``tests/test_models.py``
proves both paths build equal objects.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from .errors import GatewayResponseError

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

T = TypeVar("T", bound="GatewayObject")
_Decoder = Callable[[Any], Any]


def _copy_json(value: Any) -> Any:
    """A deep copy of decoded JSON, iterative: any depth json.loads accepted copies too."""
    if type(value) is not dict and type(value) is not list:
        return value
    root: Any = {} if type(value) is dict else []
    stack = [(value, root)]
    while stack:
        source, target = stack.pop()
        items = source.items() if type(source) is dict else enumerate(source)
        for key, item in items:
            if type(item) is dict or type(item) is list:
                copied: Any = {} if type(item) is dict else []
                stack.append((item, copied))
                item = copied
            if type(target) is dict:
                target[key] = item
            else:
                target.append(item)
    return root


class GatewayObject:
    """Base of every model: typed attributes plus a read-only mapping over the received JSON.

    It offers the mapping protocol (``[]``, ``get``, ``in``, ``keys``, ``items``, ``values``,
    ``len``, iteration, ``dict(obj)``) without being a ``collections.abc.Collection``:
    dataclasses-json decodes anything that is one as a plain collection, not as a dataclass.
    So there is no ``__contains__``: ``in`` falls back to ``__iter__``, with the same answer.
    """

    _raw: Optional[Dict[str, Any]] = None
    _decoders: ClassVar[Dict[str, Optional[_Decoder]]]

    @classmethod
    def _from_json(cls: type[T], data: Any) -> T:
        """Wrap one decoded JSON object without copying it; nested fields decode on first read
        (``wrap`` is the stream path's variant, for fields already decoded)."""
        if type(data) is not dict:
            # No body: this may run on a lazy read, far from any place that could scrub the token.
            raise GatewayResponseError(
                f"expected a JSON object for {cls.__name__}, got {type(data).__name__}"
            )
        obj = cls.__new__(cls)
        obj._raw = data
        return obj

    if not typing.TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            # Only reached for a field not decoded yet: the dataclass defaults were removed from
            # the class so that a lazily built object falls through to here.
            decoders = type(self)._decoders
            raw = self.__dict__.get("_raw")
            if name not in decoders or raw is None:
                raise AttributeError(name)
            value = raw.get(name)
            decode = decoders[name]
            if value is not None and decode is not None:
                value = decode(value)
            self.__dict__[name] = value
            return value

    def __getitem__(self, key: str) -> Any:
        raw = self._raw
        if raw is None:
            value = getattr(self, key) if key in self._decoders else None
            if value is None:
                raise KeyError(key)
            return value
        if key in self._decoders:
            if key not in raw:
                raise KeyError(key)
            return getattr(self, key)
        return raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._raw
        if raw is not None and key not in raw:
            return default
        try:
            return self[key]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        if self._raw is not None:
            return iter(self._raw)
        return (name for name in self._decoders if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def keys(self) -> List[str]:
        return list(self)

    def values(self) -> List[Any]:
        return [self[key] for key in self]

    def items(self) -> List[Tuple[str, Any]]:
        return [(key, self[key]) for key in self]

    def to_dict(self, encode_json: bool = False) -> Dict[str, Any]:
        """The JSON object as received (a copy): unknown fields kept, no ``None`` added."""
        if self._raw is not None:
            result: Dict[str, Any] = _copy_json(self._raw)
            return result
        return {name: _to_json_value(getattr(self, name)) for name in self}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls: type[T], kvs: Mapping[str, Any], *, infer_missing: bool = False) -> T:
        """Decode with dataclasses-json (the schema's reference implementation)."""
        mixin = _dataclasses_json_mixin()
        obj: T = mixin.from_dict.__func__(cls, kvs, infer_missing=infer_missing)
        if isinstance(kvs, dict):
            _attach_json(obj, _copy_json(kvs))
        return obj

    @classmethod
    def from_json(cls: type[T], text: Union[str, bytes], **kwargs: Any) -> T:
        return cls.from_dict(json.loads(text), **kwargs)

    @classmethod
    def schema(cls, **kwargs: Any) -> Any:
        """The marshmallow schema that dataclasses-json derives from this model."""
        mixin = _dataclasses_json_mixin()
        return mixin.schema.__func__(cls, **kwargs)


def wrap(cls: type[T], data: Dict[str, Any], decoded: Dict[str, Any]) -> T:
    """``cls._from_json(data)`` for a ``data`` known to be a dict, with the fields in
    ``decoded`` (taken over, not copied) already read: the stream path, per chunk."""
    obj = cls.__new__(cls)
    decoded["_raw"] = data
    obj.__dict__ = decoded
    return obj


def _attach_json(obj: Any, data: Any) -> None:
    """Give an object built by dataclasses-json, and each model inside it, its JSON."""
    if not isinstance(obj, GatewayObject) or type(data) is not dict:
        return
    obj._raw = data
    for name, decode in obj._decoders.items():
        value, received = obj.__dict__.get(name), data.get(name)
        if decode is None or value is None:
            continue
        if isinstance(value, list) and type(received) is list:
            for item, item_data in zip(value, received):
                _attach_json(item, item_data)
        else:
            _attach_json(value, received)


def _to_json_value(value: Any) -> Any:
    if isinstance(value, GatewayObject):
        return value.to_dict()
    if isinstance(value, list):
        return [_to_json_value(item) for item in value]
    return value


_MODELS: List[type[GatewayObject]] = []


def _dataclasses_json_mixin() -> Any:
    from dataclasses_json import DataClassJsonMixin

    for model in _MODELS:  # nested schemas need every model to count as a mixin subclass
        DataClassJsonMixin.register(model)
    return DataClassJsonMixin


def _decoder_for(hint: Any) -> Optional[_Decoder]:
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    target = args[0] if typing.get_origin(hint) is Union and len(args) == 1 else hint
    if isinstance(target, type) and issubclass(target, GatewayObject):
        return target._from_json
    if typing.get_origin(target) in (list, List):
        (item,) = typing.get_args(target)
        if isinstance(item, type) and issubclass(item, GatewayObject):
            make = item._from_json

            def decode_list(value: Any) -> List[Any]:
                if type(value) is not list:
                    raise GatewayResponseError(f"expected a JSON array, got {type(value).__name__}")
                return [make(entry) for entry in value]

            return decode_list
    return None


def _model(cls: type[T]) -> type[T]:
    """Make ``cls`` a model: a dataclass whose every field defaults to None, decoded lazily."""
    cls = dataclasses.dataclass(cls)
    decoders: Dict[str, Optional[_Decoder]] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        decoders[field.name] = None
        if field.name in cls.__dict__:
            delattr(cls, field.name)  # __init__ keeps the default; lookups reach __getattr__
    cls._decoders = decoders
    _MODELS.append(cls)
    return cls


def _resolve_decoders() -> None:
    # After every model exists, so that forward references resolve.
    module = sys.modules[__name__].__dict__
    for model in _MODELS:
        hints = typing.get_type_hints(model, module)
        for field in dataclasses.fields(model):  # type: ignore[arg-type]
            field.type = hints[field.name]  # real types, not strings, for dataclasses-json
            model._decoders[field.name] = _decoder_for(hints[field.name])


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


_resolve_decoders()
