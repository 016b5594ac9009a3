"""The machinery under the response models: ``GatewayObject``, a typed view over one JSON object.

A model keeps the decoded JSON object it was built over (``_raw``) and nothing else that could
disagree with it: the mapping view hands out that JSON, each field attribute is a property that
reads it (a nested object or array as a model, or a list of models, over the nested JSON, kept
while the JSON still holds that object), and an assignment writes into it.
"""

from __future__ import annotations

import dataclasses
import json
import json.scanner
import operator
import typing
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    SupportsIndex,
    Tuple,
    TypeVar,
    Union,
)

from .errors import GatewayResponseError

__all__ = ["GatewayObject", "decode_json_text", "model", "resolve_fields"]

# The C scanner under json.loads, called directly: an answer or a stream's chunk is one JSON
# value with nothing around it (at most a line end), and json.loads's detection of the
# encoding, dispatch and whitespace passes cost a third of decoding a small answer.
_DECODER: Any = json.JSONDecoder()  # Any: typeshed's make_scanner takes its own context type
_SCAN: Callable[[str, int], Tuple[Any, int]] = json.scanner.make_scanner(_DECODER)
_JSON_SPACE = " \t\n\r"


def decode_json_text(text: str) -> Any:
    """``json.loads(text)``, faster for a value that starts at once; json.loads's own error for
    anything that is not JSON."""
    try:
        value, end = _SCAN(text, 0)
    except (StopIteration, ValueError):
        end = -1
    if end == len(text) or (end > 0 and not text[end:].strip(_JSON_SPACE)):
        return value
    return json.loads(text)  # leading space, or not JSON: json.loads words the error


T = TypeVar("T", bound="GatewayObject")
_raw_of = operator.attrgetter("_raw")
_new = object.__new__
_new_list = list.__new__
_append = list.append
_ABSENT = object()


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


def _view(cls: type[T], data: Any) -> T:
    """A model over one decoded JSON object, not copied; nested fields decode on first read."""
    if type(data) is not dict:
        # No body: this may run on a lazy read, far from any place that could scrub the token.
        raise GatewayResponseError(
            f"expected a JSON object for {cls.__name__}, got {type(data).__name__}"
        )
    obj = _new(cls)
    obj._raw = data
    return obj


class GatewayObject:
    """Base of every model: typed attributes and a mapping view over one JSON object.

    It offers the mapping protocol (``[]``, ``get``, ``in``, ``keys``, ``items``, ``values``,
    ``len``, iteration, ``dict(obj)``, ``obj[key] = value``, ``del obj[key]``) without being
    a ``collections.abc.Collection``: dataclasses-json decodes anything that is one as a plain
    collection, not as a dataclass. So there is no ``__contains__``: ``in`` falls back to
    ``__iter__``, with the same answer.
    Two models are equal when they are of one class over equal JSON, unknown fields included;
    being editable, they are unhashable.
    """

    _raw: Dict[str, Any]
    # The answer's request id (x-request-id and kin; the openai SDK's name), outside the JSON:
    # neither to_dict() nor the mapping view shows it. None for a model not read off the wire.
    _request_id: Optional[str] = None

    if typing.TYPE_CHECKING:

        @classmethod
        def _from_json(cls: type[T], data: Any) -> T: ...

    else:
        _from_json = classmethod(_view)  # the wire path's constructor: one call per object

    def __getitem__(self, key: str) -> Any:
        return self._raw[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._raw[key] = _json_value(value)

    def __delitem__(self, key: str) -> None:
        del self._raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._raw.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def keys(self) -> List[str]:
        return list(self._raw)

    def values(self) -> List[Any]:
        return list(self._raw.values())

    def items(self) -> List[Tuple[str, Any]]:
        return list(self._raw.items())

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._raw == other._raw

    def __copy__(self: T) -> T:
        # A shallow copy, as of a dict: its own top-level JSON object, nested values (and so
        # the typed views over them) shared.
        clone = _new(type(self))
        clone.__dict__.update(self.__dict__)
        clone._raw = dict(self._raw)
        return clone

    def to_dict(self, encode_json: bool = False) -> Dict[str, Any]:
        """The JSON object (a copy), edits included: unknown fields kept, no ``None`` added."""
        result: Dict[str, Any] = _copy_json(self._raw)
        return result

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self._raw, **kwargs)

    @classmethod
    def from_dict(cls: type[T], kvs: Mapping[str, Any], *, infer_missing: bool = False) -> T:
        """Decode with dataclasses-json (the schema's reference implementation), then keep
        the JSON given (a copy), unknown fields and explicit nulls included."""
        mixin = _dataclasses_json_mixin()
        obj: T = mixin.from_dict.__func__(cls, kvs, infer_missing=infer_missing)
        if isinstance(kvs, dict):
            obj.__dict__.clear()  # the typed views over the JSON dataclasses-json derived
            obj._raw = _copy_json(kvs)
        return obj

    @classmethod
    def from_json(cls: type[T], text: Union[str, bytes], **kwargs: Any) -> T:
        return cls.from_dict(json.loads(text), **kwargs)

    @classmethod
    def schema(cls, **kwargs: Any) -> Any:
        """The marshmallow schema that dataclasses-json derives from this model."""
        mixin = _dataclasses_json_mixin()
        return mixin.schema.__func__(cls, **kwargs)


def _json_of(obj: GatewayObject) -> Dict[str, Any]:
    """The object's JSON, made on the first assignment of an object built by its constructor."""
    raw: Optional[Dict[str, Any]] = obj.__dict__.get("_raw")
    if raw is None:
        raw = obj._raw = {}
    return raw


def _store(obj: GatewayObject, name: str, value: Any) -> None:
    """Write one field into the JSON. ``None`` leaves an absent field absent (both read None),
    so a model built by its constructor holds only the fields given."""
    raw = _json_of(obj)
    if value is not None or name in raw:
        raw[name] = value


def _json_value(value: Any) -> Any:
    """What to write into the JSON for ``value``: a model as its JSON, shared, not copied."""
    if isinstance(value, (GatewayObject, _ModelList)):
        return value._raw
    if type(value) is list and any(isinstance(item, GatewayObject) for item in value):
        return [_json_value(item) for item in value]
    return value


def _as_model(cls: type[T], item: Any) -> T:
    if isinstance(item, cls):
        return item
    if type(item) is dict:
        return _view(cls, item)
    raise TypeError(f"expected {cls.__name__} or a dict, got {type(item).__name__}")


class _ModelList(List[Any]):
    """A list field's models, over its JSON array: an edit through it edits the array too."""

    __slots__ = ("_cls", "_raw")
    _cls: type[GatewayObject]
    _raw: List[Any]

    def __new__(cls, *items: Any) -> _ModelList:
        # Made by ``_model_list`` only: whoever else builds one from items (dataclasses.asdict
        # does, with ``type(value)(...)``) gets the plain list it expects.
        if items:
            return list(*items)  # type: ignore[return-value]
        return super().__new__(cls)

    # The models and the array stay item for item alike: each edit is made to both.

    def append(self, item: Any) -> None:
        item = _as_model(self._cls, item)
        super().append(item)
        self._raw.append(item._raw)

    def extend(self, items: Iterable[Any]) -> None:
        added = [_as_model(self._cls, item) for item in items]
        super().extend(added)
        self._raw.extend(item._raw for item in added)

    def insert(self, index: SupportsIndex, item: Any) -> None:
        item = _as_model(self._cls, item)
        super().insert(index, item)
        self._raw.insert(index, item._raw)

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            value = [_as_model(self._cls, item) for item in value]
            super().__setitem__(index, value)
            self._raw[index] = [item._raw for item in value]
        else:
            value = _as_model(self._cls, value)
            super().__setitem__(index, value)
            self._raw[index] = value._raw

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        del self._raw[index]

    def pop(self, index: SupportsIndex = -1) -> Any:
        item = super().pop(index)
        self._raw.pop(index)
        return item

    def remove(self, item: Any) -> None:
        del self[self.index(item)]

    def clear(self) -> None:
        super().clear()
        self._raw.clear()

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        super().sort(key=key, reverse=reverse)
        self._raw[:] = [item._raw for item in self]

    def reverse(self) -> None:
        super().reverse()
        self._raw.reverse()

    def __iadd__(self, items: Iterable[Any]) -> _ModelList:  # type: ignore[misc]
        self.extend(items)
        return self

    def __imul__(self, times: SupportsIndex) -> _ModelList:
        super().__imul__(times)
        self._raw *= times
        return self

    def __reduce__(self) -> Any:
        return (_model_list, (self._cls, list(self)))


def _model_list(cls: type[GatewayObject], items: Iterable[Any], raw: Any = None) -> _ModelList:
    """The models of a JSON array (``raw``), or of ``items`` over a new array."""
    made = _new_list(_ModelList)  # list's own __new__: the class's is for foreign callers
    made._cls = cls
    if raw is None:
        made._raw = []
        made.extend(items)
        return made
    if type(raw) is not list:
        raise GatewayResponseError(f"expected a JSON array, got {type(raw).__name__}")
    for entry in raw:  # a loop, not a comprehension: this runs once per stream chunk
        if type(entry) is not dict:
            _view(cls, entry)  # raises
        view = _new(cls)  # _view, inline
        view._raw = entry
        _append(made, view)
    made._raw = raw
    return made


# The field attributes: properties, so that every read looks at the JSON as it is now.


def _scalar_field(name: str) -> property:
    def read(self: GatewayObject) -> Any:
        return self._raw.get(name)

    def write(self: GatewayObject, value: Any) -> None:
        _store(self, name, _json_value(value))

    return property(read, write, _forget(name))


def _model_field(name: str, cls: type[GatewayObject]) -> property:
    def read(self: GatewayObject) -> Any:
        value = self._raw.get(name)
        if value is None:
            return None
        views = self.__dict__  # the typed view is kept under the field's own name
        made = views.get(name)
        if made is None or made._raw is not value:
            if type(value) is not dict:
                _view(cls, value)  # raises
            made = views[name] = _new(cls)  # _view, inline: this runs once per stream chunk
            made._raw = value
        return made

    def write(self: GatewayObject, value: Any) -> None:
        if value is not None:
            value = _as_model(cls, value)
            self.__dict__[name] = value
        _store(self, name, None if value is None else value._raw)

    return property(read, write, _forget(name))


def _list_field(name: str, cls: type[GatewayObject]) -> property:
    def read(self: GatewayObject) -> Any:
        value = self._raw.get(name)
        if value is None:
            return None
        views = self.__dict__
        made = views.get(name)
        if (
            made is None
            or made._raw is not value
            or len(made) != len(value)
            or not all(map(operator.is_, map(_raw_of, made), value))
        ):  # the mapping view may have changed the array since
            made = views[name] = _model_list(cls, (), value)
        return made

    def write(self: GatewayObject, value: Any) -> None:
        if value is not None:
            if not (isinstance(value, _ModelList) and value._cls is cls):
                if not isinstance(value, (list, tuple)):
                    raise TypeError(
                        f"expected a list of {cls.__name__}, got {type(value).__name__}"
                    )
                value = _model_list(cls, value)
            self.__dict__[name] = value
        _store(self, name, None if value is None else value._raw)

    return property(read, write, _forget(name))


def _forget(name: str) -> Callable[[GatewayObject], None]:
    def forget(self: GatewayObject) -> None:
        self.__dict__.pop(name, None)
        if self._raw.pop(name, _ABSENT) is _ABSENT:
            raise AttributeError(name)

    return forget


_MODELS: List[type[GatewayObject]] = []


def _dataclasses_json_mixin() -> Any:
    from dataclasses_json import DataClassJsonMixin

    for cls in _MODELS:  # nested schemas need every model to count as a mixin subclass
        DataClassJsonMixin.register(cls)
    return DataClassJsonMixin


def _field(name: str, hint: Any) -> property:
    """The attribute for one field: a view of its JSON, typed by the field's annotation."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    target = args[0] if typing.get_origin(hint) is Union and len(args) == 1 else hint
    if isinstance(target, type) and issubclass(target, GatewayObject):
        return _model_field(name, target)
    if typing.get_origin(target) in (list, List):
        (item,) = typing.get_args(target)
        if isinstance(item, type) and issubclass(item, GatewayObject):
            return _list_field(name, item)
    return _scalar_field(name)


def model(cls: type[T]) -> type[T]:
    """Make ``cls`` a model: a dataclass whose every field defaults to None."""
    cls = dataclasses.dataclass(cls, eq=False)  # equality is the base's: the whole JSON
    _MODELS.append(cls)
    return cls


def resolve_fields(namespace: Dict[str, Any]) -> None:
    """Give every model its field attributes, once every model of ``namespace`` exists (so
    that forward references resolve)."""
    for cls in _MODELS:
        hints = typing.get_type_hints(cls, namespace)
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            field.type = hints[field.name]  # real types, not strings, for dataclasses-json
            setattr(cls, field.name, _field(field.name, field.type))
