"""Response models over a corpus of JSON fixtures: typed attributes that read like the JSON."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from gatewayclient import models
from gatewayclient._json_model import _dataclasses_json_mixin
from gatewayclient.errors import GatewayResponseError
from gatewayclient.models import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    CompletionUsage,
    Embedding,
    EmbeddingResponse,
    Function,
    GatewayObject,
    Model,
    ModelList,
    ProviderModels,
)

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = {
    path.stem: json.loads(path.read_text("utf-8")) for path in sorted(FIXTURES.glob("*.json"))
}
NAMES = sorted(CORPUS)
STRICT = [name for name in NAMES if CORPUS[name]["strict"]]
TOP_LEVEL = [ChatCompletion, ChatCompletionChunk, EmbeddingResponse, ModelList, ProviderModels]
ALL_MODELS = [getattr(models, name) for name in models.__all__ if name != "GatewayObject"]


def load(name: str) -> tuple[type[GatewayObject], Any]:
    """The fixture's model class and a fresh copy of its data."""
    fixture = CORPUS[name]
    return getattr(models, fixture["class"]), copy.deepcopy(fixture["data"])


def field_names(obj: Any) -> list[str]:
    return [field.name for field in dataclasses.fields(obj)]


def typed(value: Any) -> Any:
    """What the typed attributes read, recursively: a model as (class name, {field: value})."""
    if isinstance(value, GatewayObject):
        fields = {name: typed(getattr(value, name)) for name in field_names(value)}
        return (type(value).__name__, fields)
    if isinstance(value, list):
        return [typed(item) for item in value]
    return value


def dataclasses_json_decode(cls: type[GatewayObject], data: Any) -> Any:
    """dataclasses-json's own decoding: the object before ``from_dict`` gives it the JSON."""
    return _dataclasses_json_mixin().from_dict.__func__(cls, data)


def assert_reads_like(obj: Any, data: Any, path: str = "$") -> None:
    """Every key of ``data`` reads the same through ``obj[...]``, and known ones as attributes."""
    if isinstance(obj, GatewayObject):
        assert isinstance(data, dict), path
        assert list(obj) == list(data), path
        assert len(obj) == len(data), path
        known = field_names(obj)
        for key, value in data.items():
            assert key in obj, f"{path}.{key}"
            assert_reads_like(obj[key], value, f"{path}[{key!r}]")
            assert_reads_like(obj.get(key), value, f"{path}.get({key!r})")
            if key in known:
                assert_reads_like(getattr(obj, key), value, f"{path}.{key}")
        for key in known:
            if key not in data:
                assert getattr(obj, key) is None, f"{path}.{key}"
                assert key not in obj, f"{path}.{key}"
    elif isinstance(data, list):
        assert isinstance(obj, list), path
        assert len(obj) == len(data), path
        for position, (item, value) in enumerate(zip(obj, data)):
            assert_reads_like(item, value, f"{path}[{position}]")
    else:
        assert obj == data, path
        assert type(obj) is type(data), path


# -- the corpus -------------------------------------------------------------------------------


def test_corpus_covers_every_response_model() -> None:
    classes = {CORPUS[name]["class"] for name in NAMES}
    assert {cls.__name__ for cls in TOP_LEVEL} <= classes
    assert len(NAMES) >= 25
    for name in NAMES:
        assert set(CORPUS[name]) == {"class", "source", "strict", "data"}, name


@pytest.mark.parametrize("name", NAMES)
def test_hot_path_reads_what_dataclasses_json_decodes(name: str) -> None:
    cls, data = load(name)
    ours = cls._from_json(copy.deepcopy(data))
    assert typed(ours) == typed(dataclasses_json_decode(cls, copy.deepcopy(data)))
    assert ours == cls.from_dict(copy.deepcopy(data))  # which keeps the JSON given, exactly


@pytest.mark.parametrize("name", NAMES)
def test_from_json_text_builds_the_same(name: str) -> None:
    cls, data = load(name)
    assert cls.from_json(json.dumps(data)) == cls._from_json(data)


@pytest.mark.parametrize("name", STRICT)
def test_marshmallow_schema_loads_the_same(name: str) -> None:
    cls, data = load(name)
    # Built by the constructor, it holds the fields that are not None (no explicit nulls).
    assert typed(cls.schema().load(copy.deepcopy(data))) == typed(cls._from_json(data))


@pytest.mark.parametrize("name", NAMES)
def test_to_dict_gives_back_exactly_the_input(name: str) -> None:
    cls, data = load(name)
    for obj in (cls._from_json(copy.deepcopy(data)), cls.from_dict(copy.deepcopy(data))):
        result = obj.to_dict()
        assert result == data
        assert json.dumps(result) == json.dumps(data)  # same keys, same order, no None added


@pytest.mark.parametrize("name", NAMES)
def test_to_dict_after_reading_attributes_is_unchanged(name: str) -> None:
    cls, data = load(name)
    obj = cls._from_json(copy.deepcopy(data))
    assert_reads_like(obj, data)
    assert obj.to_dict() == data


@pytest.mark.parametrize("name", NAMES)
def test_to_dict_is_a_copy(name: str) -> None:
    cls, data = load(name)
    obj = cls._from_json(copy.deepcopy(data))
    before = obj.to_dict()
    result = obj.to_dict()
    _scribble(result)
    assert obj.to_dict() == before == data
    assert_reads_like(obj, data)


def _scribble(value: Any) -> None:
    """Mutate every dict and list inside ``value``."""
    if isinstance(value, dict):
        for item in list(value.values()):
            _scribble(item)
        value["scribbled"] = True
    elif isinstance(value, list):
        for item in value:
            _scribble(item)
        value.append("scribbled")


@pytest.mark.parametrize("name", NAMES)
def test_hot_path_objects_read_like_their_json(name: str) -> None:
    cls, data = load(name)
    assert_reads_like(cls._from_json(copy.deepcopy(data)), data)


@pytest.mark.parametrize("name", NAMES)
def test_dataclasses_json_objects_read_like_their_json(name: str) -> None:
    cls, data = load(name)
    assert_reads_like(cls.from_dict(copy.deepcopy(data)), data)


@pytest.mark.parametrize("name", NAMES)
def test_dict_and_json_dumps_work(name: str) -> None:
    cls, data = load(name)
    obj = cls._from_json(copy.deepcopy(data))
    as_dict = dict(obj)
    assert list(as_dict) == list(data)
    assert json.loads(json.dumps(obj.to_dict())) == data
    assert list(obj.keys()) == list(data.keys())
    assert [key for key, _ in obj.items()] == list(data)
    assert len(list(obj.values())) == len(data)


@pytest.mark.parametrize("name", NAMES)
def test_absent_fields_read_none_and_are_missing_keys(name: str) -> None:
    cls, data = load(name)
    obj = cls._from_json(data)
    absent = [key for key in field_names(cls) if key not in data]
    for key in absent:
        assert getattr(obj, key) is None
        assert key not in obj
        assert obj.get(key) is None
        assert obj.get(key, "default") == "default"
        with pytest.raises(KeyError):
            obj[key]
    with pytest.raises(KeyError):
        obj["surely_not_a_field"]
    assert "surely_not_a_field" not in obj
    with pytest.raises(AttributeError):
        obj.surely_not_a_field  # noqa: B018


@pytest.mark.parametrize("name", NAMES)
def test_pickling_round_trips(name: str) -> None:
    cls, data = load(name)
    for obj in (cls._from_json(copy.deepcopy(data)), cls.from_dict(copy.deepcopy(data))):
        clone = pickle.loads(pickle.dumps(obj))
        assert type(clone) is cls
        assert clone == obj
        assert clone.to_dict() == data
        assert_reads_like(clone, data)


@pytest.mark.parametrize("name", NAMES)
def test_equal_json_makes_equal_objects(name: str) -> None:
    cls, data = load(name)
    assert cls._from_json(copy.deepcopy(data)) == cls._from_json(copy.deepcopy(data))


# -- the reference's examples -----------------------------------------------------------------


def test_reference_chat_example_reads_both_ways() -> None:
    cls, data = load("chat_completion.reference")
    response = cls._from_json(data)
    assert response["choices"][0]["message"]["content"] == "Quantum computing is..."
    assert response.choices[0].message.content == "Quantum computing is..."
    assert f"Tokens used: {response['usage']['total_tokens']}" == "Tokens used: 170"
    usage = response["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (42, 128)
    assert response.created is None
    assert "created" not in response
    assert isinstance(response.choices[0], Choice)
    assert isinstance(response.choices[0].message, ChatCompletionMessage)
    assert isinstance(response.usage, CompletionUsage)


def test_reference_chunk_loop_works() -> None:
    full_content = ""
    for name in (
        "chunk.reference",
        "chunk.litellm_content",
        "chunk.finish",
        "chunk.tool_call_args",
    ):
        cls, data = load(name)
        chunk = cls._from_json(data)
        delta = chunk["choices"][0]["delta"]
        content = delta.get("content", "")
        full_content += content or ""
    assert full_content == "OnceHel"


def test_chunk_attributes() -> None:
    cls, data = load("chunk.tool_call_start")
    chunk = cls._from_json(data)
    assert isinstance(chunk, ChatCompletionChunk)
    assert isinstance(chunk.choices[0], ChunkChoice)
    assert isinstance(chunk.choices[0].delta, ChoiceDelta)
    call = chunk.choices[0].delta.tool_calls[0]
    assert (call.index, call.id, call.type) == (0, "call_abc", "function")
    assert (call.function.name, call.function.arguments) == ("get_weather", "")
    assert isinstance(call.function, Function)
    assert chunk.choices[0].delta.content is None
    assert chunk["choices"][0]["delta"]["content"] is None


def test_usage_chunks_read_like_json() -> None:
    openai = ChatCompletionChunk._from_json(load("chunk.usage_openai")[1])
    assert openai["choices"] == []
    assert openai.usage.total_tokens == 19
    litellm = ChatCompletionChunk._from_json(load("chunk.usage_litellm")[1])
    assert litellm["choices"][0]["delta"].get("content", "") == ""
    assert litellm["usage"]["cost"] == 7.8e-6
    assert litellm.usage.completion_tokens_details == {"reasoning_tokens": 0, "text_tokens": 11}


def test_reference_provider_models_loop_works() -> None:
    openai_models = ProviderModels._from_json(load("provider_models.reference")[1])
    assert f"Provider: {openai_models['provider']}" == "Provider: openai"
    assert f"Total models: {openai_models['total']}" == "Total models: 3"
    ids = [model["id"] for model in openai_models["models"]]
    assert ids == ["openai/gpt-4o", "openai/gpt-4o-mini", "openai/text-embedding-3-small"]
    assert all(isinstance(model, Model) for model in openai_models.models)


def test_reference_embedding_example_reads_both_ways() -> None:
    response = EmbeddingResponse._from_json(load("embedding_response.reference")[1])
    assert response["data"][0]["embedding"] == [0.0123, -0.0456, 0.0789]
    assert response.data[0].embedding == [0.0123, -0.0456, 0.0789]
    assert isinstance(response.data[0], Embedding)
    assert response.usage.prompt_tokens == 5
    assert response.model is None


def test_base64_embeddings_stay_strings() -> None:
    cls, data = load("embedding_response.base64")
    for obj in (cls._from_json(copy.deepcopy(data)), cls.from_dict(copy.deepcopy(data))):
        assert obj.data[0].embedding == "AACAPwAAAMAAAEBA"
        assert obj["data"][1]["embedding"] == "zczMPc3MTL4="


def test_tool_calls_and_refusal_read_as_attributes() -> None:
    tool = ChatCompletion._from_json(load("chat_completion.tool_calls")[1])
    calls = tool.choices[0].message.tool_calls
    assert all(isinstance(call, ChatCompletionMessageToolCall) for call in calls)
    assert [call.function.name for call in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert tool.choices[0].message.content is None
    assert tool["choices"][0]["message"]["content"] is None
    refusal = ChatCompletion._from_json(load("chat_completion.refusal")[1])
    assert refusal.choices[0].message.refusal == "I'm sorry, I can't help with that."


def test_unknown_fields_are_kept_and_readable() -> None:
    response = ChatCompletion._from_json(load("chat_completion.unknown_fields")[1])
    assert response["x_gateway"]["tags"] == ["a", "b"]
    assert response["choices"][0]["message"]["reasoning_content"] == "thinking..."
    assert response["usage"]["cost"] == 0.00012
    assert response.choices[0]["provider_specific_fields"] == {"stop_reason": "end_turn"}
    assert not hasattr(response, "x_gateway")


def test_model_list_extra_fields_are_kept() -> None:
    models_list = ModelList._from_json(load("model_list.litellm")[1])
    assert models_list.data[0].id == "openai/gpt-4o"
    assert models_list["data"][0]["max_input_tokens"] == 128000
    assert "mode" not in models_list["data"][1]


# -- malformed JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize("data", [[], [{"id": "x"}], "text", None, 1, 1.5, True])
@pytest.mark.parametrize("cls", ALL_MODELS)
def test_from_json_of_a_non_object_is_a_response_error(cls: type[GatewayObject], data: Any) -> None:
    with pytest.raises(GatewayResponseError):
        cls._from_json(data)


@pytest.mark.parametrize(
    ("cls", "data", "path"),
    [
        (ChatCompletion, {"choices": "abc"}, ("choices",)),
        (ChatCompletion, {"choices": {"0": {}}}, ("choices",)),
        (ChatCompletion, {"choices": [1]}, ("choices",)),
        (ChatCompletion, {"choices": ["x"]}, ("choices",)),
        (ChatCompletion, {"usage": [1, 2]}, ("usage",)),
        (ChatCompletion, {"usage": "lots"}, ("usage",)),
        (ChatCompletion, {"choices": [{"message": "hi"}]}, ("choices", 0, "message")),
        (
            ChatCompletion,
            {"choices": [{"message": {"tool_calls": {"id": "x"}}}]},
            ("choices", 0, "message", "tool_calls"),
        ),
        (
            ChatCompletion,
            {"choices": [{"message": {"tool_calls": [{"function": "f"}]}}]},
            ("choices", 0, "message", "tool_calls", 0, "function"),
        ),
        (ChatCompletionChunk, {"choices": [{"delta": "x"}]}, ("choices", 0, "delta")),
        (EmbeddingResponse, {"data": {"embedding": [1]}}, ("data",)),
        (EmbeddingResponse, {"data": [[0.1]]}, ("data",)),
        (ModelList, {"data": "models"}, ("data",)),
        (ProviderModels, {"models": "gpt"}, ("models",)),
        (ProviderModels, {"models": [None]}, ("models",)),
    ],
)
def test_a_field_of_the_wrong_type_is_a_response_error_when_read(
    cls: type[GatewayObject], data: dict[str, Any], path: tuple[Any, ...]
) -> None:
    obj = cls._from_json(data)  # building is lazy: the error comes on reading
    with pytest.raises(GatewayResponseError):
        _read_attributes(obj, path)
    # The mapping view hands out the JSON as received, whatever its shape.
    assert _read_items(cls._from_json(copy.deepcopy(data)), path) == _read_items(data, path)


def _read_attributes(obj: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        obj = obj[step] if isinstance(step, int) else getattr(obj, step)
    return obj


def _read_items(obj: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        obj = obj[step]
    return obj


# -- models built by hand -------------------------------------------------------------------------


def test_hand_built_model_reads_like_json() -> None:
    completion = ChatCompletion(id="x")
    assert completion["id"] == "x"
    assert completion.id == "x"
    assert completion.choices is None
    assert "id" in completion
    assert "choices" not in completion
    with pytest.raises(KeyError):
        completion["choices"]
    assert completion.get("choices", []) == []
    assert dict(completion) == {"id": "x"}
    assert completion.to_dict() == {"id": "x"}
    assert json.dumps(completion.to_dict()) == '{"id": "x"}'
    assert len(completion) == 1
    assert list(completion.keys()) == ["id"]


def test_nested_hand_built_model_reads_like_json() -> None:
    completion = ChatCompletion(
        id="x",
        choices=[
            Choice(
                index=0,
                message=ChatCompletionMessage(role="assistant", content="hi"),
                finish_reason="stop",
            )
        ],
        usage=CompletionUsage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
    )
    expected = {
        "id": "x",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    assert completion["choices"][0]["message"]["content"] == "hi"
    assert completion.to_dict() == expected
    assert json.loads(json.dumps(completion.to_dict())) == expected
    assert completion == ChatCompletion._from_json(copy.deepcopy(expected))
    assert completion == ChatCompletion.from_dict(copy.deepcopy(expected))
    clone = pickle.loads(pickle.dumps(completion))
    assert clone == completion
    assert clone.to_dict() == expected


def test_hand_built_chunk_supports_the_reference_loop() -> None:
    chunk = ChatCompletionChunk(
        id="c", choices=[ChunkChoice(index=0, delta=ChoiceDelta(content="Once"))]
    )
    assert chunk["choices"][0]["delta"].get("content", "") == "Once"
    empty = ChatCompletionChunk(id="c", choices=[ChunkChoice(index=0, delta=ChoiceDelta())])
    assert empty["choices"][0]["delta"].get("content", "") == ""


@pytest.mark.parametrize("cls", ALL_MODELS)
def test_every_model_can_be_built_empty(cls: type[GatewayObject]) -> None:
    obj = cls()
    assert obj.to_dict() == {}
    assert dict(obj) == {}
    assert len(obj) == 0
    for name in field_names(cls):
        assert getattr(obj, name) is None
        assert name not in obj
    assert pickle.loads(pickle.dumps(obj)) == obj
    assert cls._from_json({}) == obj


def test_schema_knows_the_field_types() -> None:
    errors = ChatCompletion.schema().validate({"created": "yesterday", "choices": "x"})
    assert set(errors) == {"created", "choices"}
    assert ChatCompletion.schema().validate(load("chat_completion.tool_calls")[1]) == {}
