"""Editable responses: an edit is seen everywhere, and what the mapping view hands out is JSON.

Issue 9, items 17 and 23: an assignment is read back by the attribute, the mapping view,
``to_dict()`` and the next request that sends the object; an edit through the mapping view is
what the attributes read next; ``json.dumps`` takes whatever the mapping view hands out.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import operator
import pickle
import typing
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
from test_models import NAMES, assert_reads_like, field_names, load, typed
from twin import Twin

from gatewayclient._checks import check_messages
from gatewayclient.models import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChunkChoice,
    CompletionUsage,
    GatewayObject,
)
from gatewayclient.testing import FakeGateway

Path = Tuple[Any, ...]
JSON_TYPES = (dict, list, str, int, float, bool, type(None))
HELLO = [{"role": "user", "content": "Hello!"}]


def models_in(obj: GatewayObject, path: Path = ()) -> Iterator[Tuple[Path, GatewayObject]]:
    """Every model reachable through typed attributes, with its path in the JSON."""
    yield path, obj
    for name in field_names(obj):
        value = getattr(obj, name)
        if isinstance(value, GatewayObject):
            yield from models_in(value, (*path, name))
        elif isinstance(value, list):
            for position, item in enumerate(value):
                if isinstance(item, GatewayObject):
                    yield from models_in(item, (*path, name, position))


def at(data: Any, path: Path) -> Any:
    for step in path:
        data = data[step]
    return data


def is_nested(model: type[GatewayObject], name: str) -> bool:
    """The field holds models (an object or a list of them), not a plain JSON value."""
    hint = {field.name: field.type for field in dataclasses.fields(model)}[name]  # type: ignore[arg-type]
    stack = [hint]
    while stack:
        hint = stack.pop()
        if isinstance(hint, type) and issubclass(hint, GatewayObject):
            return True
        stack.extend(typing.get_args(hint))
    return False


def assert_plain_json(value: Any, where: str = "$") -> None:
    """Only the types json.loads makes, all the way down: no model, no list subclass."""
    assert type(value) in JSON_TYPES, f"{where}: {type(value).__name__}"
    if type(value) is dict:
        for key, item in value.items():
            assert_plain_json(item, f"{where}[{key!r}]")
    elif type(value) is list:
        for position, item in enumerate(value):
            assert_plain_json(item, f"{where}[{position}]")


# -- item 17: an assignment is seen everywhere ------------------------------------------------


def test_an_edited_message_reads_edited_everywhere() -> None:
    resp = ChatCompletion._from_json(load("chat_completion.reference")[1])
    msg = resp.choices[0].message
    msg.content = "[redacted]"
    assert msg.content == msg["content"] == msg.get("content") == dict(msg)["content"]
    assert resp.choices[0].message.content == "[redacted]"
    assert resp["choices"][0]["message"]["content"] == "[redacted]"
    assert msg.to_dict() == {"role": "assistant", "content": "[redacted]"}
    assert resp.to_dict()["choices"][0]["message"] == msg.to_dict()
    assert json.loads(resp.to_json())["choices"][0]["message"]["content"] == "[redacted]"
    assert json.loads(json.dumps(dict(resp)))["choices"][0]["message"]["content"] == "[redacted]"
    assert check_messages([msg]) == [{"role": "assistant", "content": "[redacted]"}]


@pytest.mark.parametrize("name", NAMES)
def test_every_field_edit_is_seen_everywhere(name: str) -> None:
    cls, data = load(name)
    obj = cls._from_json(copy.deepcopy(data))
    expected = copy.deepcopy(data)
    for path, model in list(models_in(obj)):
        for field in field_names(model):
            if is_nested(type(model), field):
                continue
            value = f"edited {path} {field}"
            setattr(model, field, value)
            at(expected, path)[field] = value
            assert getattr(model, field) == model[field] == model.get(field) == value
    assert obj.to_dict() == expected
    assert json.loads(json.dumps(dict(obj))) == expected
    assert obj == cls._from_json(copy.deepcopy(expected))
    assert typed(obj) == typed(cls._from_json(copy.deepcopy(expected)))


def test_an_assigned_model_is_stored_as_its_json_and_stays_shared() -> None:
    resp = ChatCompletion._from_json(load("chat_completion.reference")[1])
    usage = CompletionUsage(prompt_tokens=1, completion_tokens=2, total_tokens=3)
    resp.usage = usage
    assert resp.usage is usage
    assert resp["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    usage.total_tokens = 4  # the same object: an edit after the assignment is seen too
    assert resp["usage"]["total_tokens"] == resp.to_dict()["usage"]["total_tokens"] == 4
    resp.usage = {"total_tokens": 9}  # a dict is JSON already
    assert isinstance(resp.usage, CompletionUsage) and resp.usage.total_tokens == 9
    message = ChatCompletionMessage(role="assistant", content="new")
    resp.choices = [Choice(index=0, message=message)]
    assert resp["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "new"}}]
    assert resp.choices[0].message is message
    message.content = "newer"
    assert resp.to_dict()["choices"][0]["message"]["content"] == "newer"
    assert_plain_json(dict(resp))


def test_a_model_built_by_its_constructor_behaves_the_same() -> None:
    built = ChatCompletion(id="x", choices=[Choice(index=0, message=ChatCompletionMessage())])
    assert built.to_dict() == {"id": "x", "choices": [{"index": 0, "message": {}}]}
    built.choices[0].message.content = "hi"
    built.model = "m"
    expected = {"id": "x", "choices": [{"index": 0, "message": {"content": "hi"}}], "model": "m"}
    assert built.to_dict() == expected
    assert built["choices"][0]["message"]["content"] == "hi"
    assert built == ChatCompletion._from_json(expected)
    assert_plain_json(dict(built))


def test_none_leaves_an_absent_field_absent_and_nulls_a_present_one() -> None:
    message = ChatCompletionMessage(role="assistant")
    assert message.to_dict() == {"role": "assistant"}
    message.content = None  # absent and null both read None: nothing to write
    assert "content" not in message
    message.content = "x"
    message.content = None
    assert message.to_dict() == {"role": "assistant", "content": None}
    del message.content
    assert message.to_dict() == {"role": "assistant"} and message.content is None
    with pytest.raises(AttributeError):
        del message.content
    resp = ChatCompletion._from_json(load("chat_completion.reference")[1])
    resp.usage = None
    assert resp["usage"] is None and resp.usage is None
    del resp.choices
    assert "choices" not in resp and resp.choices is None


def _insert(items: Any, new: Any, key: Any) -> None:
    items.insert(1, new)


def _set_slice(items: Any, new: Any, key: Any) -> None:
    items[1:] = [new, new]


def _set_item(items: Any, new: Any, key: Any) -> None:
    items[-1] = new


def _del_slice(items: Any, new: Any, key: Any) -> None:
    del items[:1]


LIST_EDITS: Dict[str, Callable[[Any, Any, Any], Any]] = {
    "append": lambda items, new, key: items.append(new),
    "extend": lambda items, new, key: items.extend([new, new]),
    "iadd": lambda items, new, key: operator.iadd(items, [new]),
    "insert": _insert,
    "setitem": _set_item,
    "setslice": _set_slice,
    "delitem": lambda items, new, key: operator.delitem(items, 0),
    "delslice": _del_slice,
    "pop": lambda items, new, key: items.pop(),
    "pop0": lambda items, new, key: items.pop(0),
    "remove": lambda items, new, key: items.remove(items[1]),
    "clear": lambda items, new, key: items.clear(),
    "reverse": lambda items, new, key: items.reverse(),
    "sort": lambda items, new, key: items.sort(key=key, reverse=True),
    "imul": lambda items, new, key: operator.imul(items, 2),
}


@pytest.mark.parametrize("as_dict", [False, True], ids=["model", "dict"])
@pytest.mark.parametrize("edit", sorted(LIST_EDITS))
def test_an_edit_through_a_list_of_models_edits_the_json_array(edit: str, as_dict: bool) -> None:
    _, data = load("chat_completion.n2")
    resp = ChatCompletion._from_json(copy.deepcopy(data))
    new_json = {"index": 7, "message": {"role": "assistant", "content": "added"}}
    new: Any = copy.deepcopy(new_json) if as_dict else Choice._from_json(copy.deepcopy(new_json))
    choices = resp.choices
    LIST_EDITS[edit](choices, new, lambda choice: choice.index)
    expected = copy.deepcopy(data["choices"])
    LIST_EDITS[edit](expected, new_json, lambda choice: choice["index"])
    assert resp["choices"] == resp.to_dict()["choices"] == expected
    assert all(isinstance(choice, Choice) for choice in choices)
    assert resp.choices is choices  # still the view of that array
    assert typed(choices) == typed(ChatCompletion._from_json({"choices": expected}).choices)
    assert_plain_json(dict(resp))


def test_a_wrong_value_for_a_model_field_is_refused_and_changes_nothing() -> None:
    _, data = load("chat_completion.n2")
    resp = ChatCompletion._from_json(copy.deepcopy(data))
    attempts: List[Callable[[], Any]] = [
        lambda: setattr(resp, "usage", 5),
        lambda: setattr(resp, "usage", Choice()),
        lambda: setattr(resp, "choices", "abc"),
        lambda: setattr(resp, "choices", [ChunkChoice()]),
        lambda: resp.choices.append(5),
        lambda: resp.choices.extend([Choice(), "x"]),
        lambda: operator.setitem(resp.choices, 0, ["x"]),
    ]
    for attempt in attempts:
        with pytest.raises(TypeError):
            attempt()
    assert resp.to_dict() == data
    assert len(resp.choices) == 2


# -- the other way: an edit through the mapping view ------------------------------------------


def test_an_edit_through_the_mapping_view_is_what_attributes_read() -> None:
    _, data = load("chat_completion.n2")
    resp = ChatCompletion._from_json(copy.deepcopy(data))
    message = resp.choices[0].message
    resp["choices"][0]["message"]["content"] = "y"
    assert message.content == resp.choices[0].message.content == "y"
    resp["choices"][0]["message"] = {"role": "assistant", "content": "z"}
    assert resp.choices[0].message.content == "z"
    resp["choices"][0] = copy.deepcopy(resp["choices"][0])  # equal, but another object
    resp.choices[0].message.content = "w"
    assert resp["choices"][0]["message"]["content"] == "w"
    resp["choices"].append({"index": 2, "message": {"content": "third"}})
    assert [choice.index for choice in resp.choices] == [0, 1, 2]
    del resp["choices"][0]
    assert [choice.message.content for choice in resp.choices] == ["Blue, probably", "third"]
    resp["choices"][1], resp["choices"][0] = resp["choices"][0], resp["choices"][1]
    assert [choice.index for choice in resp.choices] == [2, 1]
    resp["usage"] = {"total_tokens": 1}
    assert resp.usage.total_tokens == 1
    resp["usage"] = CompletionUsage(total_tokens=2)  # a model is stored as its JSON
    assert resp["usage"] == {"total_tokens": 2} and resp.usage.total_tokens == 2
    del resp["usage"]
    assert resp.usage is None and "usage" not in resp
    resp["choices"] = [Choice(index=5)]
    assert resp["choices"] == [{"index": 5}] and resp.choices[0].index == 5
    resp["choices"] = []
    assert resp.choices == []
    assert_plain_json(dict(resp))


def test_a_typed_view_is_kept_while_its_json_is() -> None:
    resp = ChatCompletion._from_json(load("chat_completion.n2")[1])
    assert resp.choices is resp.choices
    assert resp.choices[0].message is resp.choices[0].message
    assert resp.usage is resp.usage


# -- equality, hashing, copies ------------------------------------------------------------------


def test_equality_compares_the_whole_json() -> None:
    first = ChatCompletion._from_json({"id": "x", "x_gateway": {"tags": ["a"]}})
    assert first == ChatCompletion._from_json({"id": "x", "x_gateway": {"tags": ["a"]}})
    assert first != ChatCompletion._from_json({"id": "x", "x_gateway": {"tags": ["b"]}})
    assert first != ChatCompletion._from_json({"id": "x"})
    assert ChatCompletion._from_json({"id": None}) != ChatCompletion._from_json({})
    assert ChatCompletion(id="x") == ChatCompletion._from_json({"id": "x"})
    assert ChatCompletion._from_json({}) != ChatCompletionChunk._from_json({})
    assert first != {"id": "x", "x_gateway": {"tags": ["a"]}}
    with pytest.raises(TypeError):
        hash(first)  # editable, so unhashable (as a dataclass with eq and not frozen)


def _edited() -> ChatCompletion:
    resp = ChatCompletion._from_json(load("chat_completion.unknown_fields")[1])
    resp.choices[0].message.content = "edited"
    resp.note = "mine"  # type: ignore[attr-defined]  # not a field: not in the JSON
    return resp


def test_pickle_and_deepcopy_keep_the_edits_and_are_independent() -> None:
    resp = _edited()
    for clone in (pickle.loads(pickle.dumps(resp)), copy.deepcopy(resp)):
        assert clone == resp and clone.to_dict() == resp.to_dict()
        assert clone.choices[0].message.content == "edited"
        assert clone.note == "mine" and "note" not in clone  # type: ignore[attr-defined]
        clone.choices[0].message.content = "clone"
        clone["x_gateway"]["tags"].append("c")
        assert resp.choices[0].message.content == "edited"
        assert resp["x_gateway"]["tags"] == ["a", "b"]


def test_a_shallow_copy_shares_nested_values_as_a_dict_copy_does() -> None:
    resp = _edited()
    shallow = copy.copy(resp)
    assert shallow == resp
    assert shallow.note == "mine" and "note" not in shallow  # type: ignore[attr-defined]
    shallow.id = "other"
    assert resp.id != "other"
    shallow.choices[0].message.content = "shared"
    assert resp.choices[0].message.content == "shared"


def test_dataclasses_asdict_gives_plain_json() -> None:
    resp = _edited()
    as_dict = dataclasses.asdict(resp)
    assert_plain_json(as_dict)
    assert as_dict["choices"][0]["message"]["content"] == "edited"
    assert as_dict["system_fingerprint"] is None  # every field, as asdict does


def test_a_pickled_list_of_models_is_a_list_of_copies() -> None:
    resp = _edited()
    clone = pickle.loads(pickle.dumps(resp.choices))
    assert clone == resp.choices
    clone.append(Choice(index=1))
    clone[0].message.content = "clone"
    assert len(resp.choices) == 1 and resp.choices[0].message.content == "edited"


# -- item 23: what the mapping view hands out is JSON ---------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_the_mapping_view_hands_out_plain_json(name: str) -> None:
    cls, data = load(name)
    for obj in (cls._from_json(copy.deepcopy(data)), cls.from_dict(copy.deepcopy(data))):
        assert_reads_like(obj, data)  # typed views built first must not leak into the mapping
        for path, model in models_in(obj):
            assert_plain_json(dict(model), str(path))
            assert json.loads(json.dumps(dict(model))) == at(data, path)
            for key in model:
                assert_plain_json(model[key], f"{path}[{key!r}]")
                assert json.dumps(model[key]) == json.dumps(at(data, path)[key])
                assert json.dumps(model.get(key)) == json.dumps(model[key])
            assert json.loads(json.dumps(model.values())) == list(at(data, path).values())
            assert json.loads(json.dumps(dict(model.items()))) == at(data, path)


def test_the_newcomers_django_view_serialises() -> None:
    from django.core.serializers.json import DjangoJSONEncoder  # what JsonResponse encodes with

    resp = ChatCompletion._from_json(load("chat_completion.reference")[1])
    resp.usage  # noqa: B018 - a typed read first, as a view might log it
    usage = {"prompt_tokens": 42, "completion_tokens": 128, "total_tokens": 170}
    assert json.loads(json.dumps({"usage": resp["usage"]}, cls=DjangoJSONEncoder)) == {
        "usage": usage
    }
    assert json.loads(json.dumps(resp["usage"]))["total_tokens"] == 170
    assert json.loads(json.dumps(dict(resp))) == resp.to_dict()
    built = ChatCompletion(id="x", usage=CompletionUsage(total_tokens=3))
    assert json.dumps(dict(built)) == '{"id": "x", "usage": {"total_tokens": 3}}'


# -- through a client: the next request carries the edit ----------------------------------------


def test_an_edited_answer_is_sent_back_edited(twin: Twin, gw: FakeGateway) -> None:
    resp = twin.call("chat_completion", "openai/gpt-4o", HELLO)
    assert_plain_json(dict(resp))
    message = resp.choices[0].message
    message.content = "[redacted]"
    follow_up = [*HELLO, message, {"role": "user", "content": "And then?"}]
    twin.call("chat_completion", "openai/gpt-4o", follow_up)
    sent = gw.requests[-1].json["messages"][1]
    assert sent == resp["choices"][0]["message"] == message.to_dict()
    assert sent["content"] == "[redacted]"


def test_a_streamed_chunk_and_the_completion_are_editable_json(twin: Twin) -> None:
    stream = twin.stream("openai/gpt-4o", HELLO)
    try:
        chunk = twin.next(stream)
        chunk.choices[0].delta.content = "edited"
        assert chunk["choices"][0]["delta"]["content"] == "edited"
        assert chunk.to_dict()["choices"][0]["delta"]["content"] == "edited"
        assert_plain_json(dict(chunk))
        twin.collect(stream)
        assert_plain_json(dict(stream.completion()))
    finally:
        twin.close_stream(stream)
