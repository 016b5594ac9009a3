"""Fuzzing: whatever bytes a gateway sends, only gatewayclient's typed errors come out.

Arbitrary and gateway-shaped bytes go to every piece of the core that reads the wire: the SSE
decoder, a chat stream's state, each ``Call.handle`` the core builds (chat, embeddings, models,
providers, provider models), the response models (every attribute and item read), and the error
functions. The property of each test: a normal result, or a ``GatewayClientError`` that is well
formed and does not show the token; never an ``IndexError``, ``KeyError``, ``TypeError``,
``UnicodeDecodeError``, ``RecursionError`` or any other exception.

``GATEWAYCLIENT_FUZZ_EXAMPLES`` sets the examples per property (default 200, for the normal
run); ``tox -e fuzz`` asks 100,000 per property, CI 10,000. A fuzzing run (the variable set) is
never derandomized; ``GATEWAYCLIENT_FUZZ_DATABASE=none`` turns the example database off.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Callable, Dict, List, Optional

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from gatewayclient._core import END, NEED_DATA, Call, GatewayCore
from gatewayclient.config import ClientConfig
from gatewayclient.errors import (
    GatewayClientError,
    GatewayConnectionError,
    GatewayTimeoutError,
    error_from_event,
    error_from_response,
    parse_duration,
    parse_retry_after,
)
from gatewayclient.models import (
    ChatCompletion,
    ChatCompletionChunk,
    CompletionUsage,
    EmbeddingResponse,
    GatewayObject,
    ModelList,
    ProviderModels,
)
from gatewayclient.sse import ServerSentEvent, SSEDecoder

EXAMPLES = int(os.environ.get("GATEWAYCLIENT_FUZZ_EXAMPLES", "200"))
FUZZING = "GATEWAYCLIENT_FUZZ_EXAMPLES" in os.environ
_run_options: Dict[str, Any] = {"derandomize": False, "print_blob": True} if FUZZING else {}
if os.environ.get("GATEWAYCLIENT_FUZZ_DATABASE", "").lower() == "none":
    _run_options["database"] = None

# The suite's 60 s per test is for the default size; an example takes 3-7 ms on a 2-core CI box.
pytestmark = pytest.mark.timeout(60 + EXAMPLES // 20)

# too_slow only: some inputs are slow to build on purpose (nesting 3,000 deep, 5,000-digit
# numbers), and on a loaded 2-core CI box their generation time, not the code under test, could
# trip that check. data_too_large is not suppressed: it has never fired here.
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    **_run_options,
)

TOKEN = "sk-fuzz-secret-7f3a9c"
MODEL = "openai/gpt-4o"
MESSAGES = [{"role": "user", "content": "fuzz"}]


# -- the property ----------------------------------------------------------------------------


class Escaped(AssertionError):
    """The property failed: something other than a GatewayClientError came out."""


def typed_only(action: Callable[[], Any], secret: Optional[str] = TOKEN) -> Any:
    """``action()``'s result, or the GatewayClientError it raised (checked); anything else fails."""
    try:
        return action()
    except GatewayClientError as error:
        check_error(error, secret)
        return error
    except (Escaped, KeyboardInterrupt):
        raise
    except BaseException as exc:
        raise Escaped(f"{type(exc).__name__} escaped: {exc!r}"[:2000]) from exc


def check_error(error: GatewayClientError, secret: Optional[str] = TOKEN) -> None:
    """A typed error is readable, carries a message, a sane retry hint, and never the token."""
    assert isinstance(error, GatewayClientError), type(error)
    assert isinstance(error.message, str)
    assert error.message
    shown = [str(error), repr(error), error.message, repr(error.args), repr(error.body)]
    shown += [repr(error.error_type), repr(error.error_code), repr(error.request_id)]
    if secret:
        leaks = [text for text in shown if secret in text]
        assert not leaks, f"the token is shown by {type(error).__name__}: {leaks[0][:300]!r}"
    retry_after = error.retry_after
    assert retry_after is None or (
        isinstance(retry_after, float) and math.isfinite(retry_after) and retry_after >= 0
    ), retry_after
    assert error.status_code is None or isinstance(error.status_code, int)


def read_all(value: Any, secret: Optional[str] = TOKEN, depth: int = 0) -> None:
    """Read a result as a caller may: every attribute, every item, the mapping protocol, and
    the JSON back (``to_dict``), recursively through models and lists of models. A field is
    decoded when first read, so each read may raise a typed error, and nothing else."""
    assert depth < 12, "models nest a few levels only"

    def attempt(action: Callable[[], Any]) -> Any:
        return typed_only(action, secret)

    if isinstance(value, GatewayObject):
        for field in dataclasses.fields(value):
            read_all(attempt(lambda name=field.name: getattr(value, name)), secret, depth + 1)
        keys = attempt(lambda: list(value))
        for key in keys if isinstance(keys, list) else []:
            read_all(attempt(lambda key=key: value[key]), secret, depth + 1)
            read_all(attempt(lambda key=key: value.get(key)), secret, depth + 1)
        for read in (len, GatewayObject.keys, GatewayObject.values, GatewayObject.items, dict):
            attempt(lambda read=read: read(value))
        attempt(lambda: ("choices" in value, value.get("no such field", 0)))
        as_json = attempt(value.to_dict)
        assert isinstance(as_json, (dict, GatewayClientError)), type(as_json)
        assert_plain_json(dict(value))  # what json.dumps takes, after every typed read above
    elif isinstance(value, list):  # a list of models (no model holds a list of lists)
        for item in value:
            if isinstance(item, GatewayObject):
                read_all(item, secret, depth + 1)


def assert_plain_json(value: Any) -> None:
    """Only the types json.loads makes, at any depth (a loop: the JSON may nest deeply)."""
    stack = [value]
    while stack:
        item = stack.pop()
        assert type(item) in (dict, list, str, int, float, bool, type(None)), type(item)
        if type(item) is dict:
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)


# -- strategies: JSON text with raw fragments, gateway-shaped objects, SSE bytes ----------------


class Raw:
    """A piece of JSON text written as is (deep nesting, NaN, huge numbers, broken JSON)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:60]!r}{'...' if len(self.text) > 60 else ''})"


def dump(value: Any) -> str:
    """JSON text of ``value``; a ``Raw`` leaf is written verbatim."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(item) for item in value) + "]"
    return json.dumps(value)


def _deep(depth: int, kind: int) -> str:
    if kind == 0:
        return "[" * depth + "]" * depth
    if kind == 1:
        return '{"a":' * depth + "0" + "}" * depth
    return '[{"x":' * depth + "null" + "}]" * depth


RAW_TEXTS = [
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "-0", "0.0", "1e-400",
    '"\\ud800"', '"\\udfff tail"', '"a\\u0000b"', '"\\"\\\\\\/\\b\\f\\n\\r\\t"', '""',
    "[]", "{}", "null", "true", "false", "{", "[1,", '"unterminated', "tru", "01",
    "[DONE]", f'"{TOKEN}"', f'"Bearer {TOKEN}"', '"\\u0073k-fuzz-secret-7f3a9c"',
]  # fmt: skip
RAW = st.one_of(
    st.sampled_from(RAW_TEXTS),
    st.sampled_from([19, 20, 309, 310, 4300, 4301, 5000]).map(lambda n: "9" * n),
    st.sampled_from([19, 309, 4300, 4301]).map(lambda n: "-" + "1" * n),
    st.tuples(st.integers(1, 3000), st.integers(0, 2)).map(lambda t: _deep(*t)),
)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["", " ", "0", "429", "500", "stop", "assistant", "function", TOKEN]),
)
ANY = st.recursive(
    SCALAR | RAW.map(Raw),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


# A wrong-typed field: flat, so that a shaped object stays cheap to generate.
WRONG = st.one_of(
    SCALAR,
    RAW.map(Raw),
    st.lists(SCALAR, max_size=2),
    st.dictionaries(st.text(max_size=4), SCALAR, max_size=2),
)


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Dict[str, Any]]:
    """A JSON object with any of these fields, each right-typed or of a wrong type."""
    return st.fixed_dictionaries({}, optional={k: v | WRONG for k, v in fields.items()})


def array(item: st.SearchStrategy[Any]) -> st.SearchStrategy[List[Any]]:
    return st.lists(item | WRONG, max_size=4)


TEXT = st.text(max_size=12)
INT = st.integers(-3, 5) | st.integers()
FUNCTION = obj(name=TEXT, arguments=TEXT | st.just('{"city": "Paris"}'))
TOOL_CALL = obj(index=INT, id=TEXT, type=st.just("function"), function=FUNCTION)
USAGE = obj(
    prompt_tokens=INT,
    completion_tokens=INT,
    total_tokens=INT,
    prompt_tokens_details=obj(cached_tokens=INT),
    completion_tokens_details=obj(reasoning_tokens=INT),
)
ROLE = st.sampled_from(["assistant", "user", "tool", "system"])
FINISH = st.sampled_from(["stop", "length", "tool_calls", "content_filter"])
MESSAGE = obj(
    role=ROLE,
    content=TEXT,
    tool_calls=array(TOOL_CALL),
    function_call=FUNCTION,
    refusal=TEXT,
    name=TEXT,
)
DELTA = obj(
    role=ROLE, content=TEXT, tool_calls=array(TOOL_CALL), function_call=FUNCTION, refusal=TEXT
)
HEAD = {
    "id": TEXT,
    "created": INT,
    "model": TEXT,
    "system_fingerprint": TEXT,
    "service_tier": TEXT,
}
COMPLETION = obj(
    object=st.just("chat.completion"),
    choices=array(obj(index=INT, message=MESSAGE, finish_reason=FINISH, logprobs=WRONG)),
    usage=USAGE,
    **HEAD,
)
CHUNK = obj(
    object=st.just("chat.completion.chunk"),
    choices=array(obj(index=INT, delta=DELTA, finish_reason=FINISH, logprobs=WRONG)),
    usage=USAGE,
    **HEAD,
)
EMBEDDINGS = obj(
    object=st.just("list"),
    data=array(
        obj(object=st.just("embedding"), index=INT, embedding=st.lists(st.floats(), max_size=4))
    ),
    model=TEXT,
    usage=USAGE,
)
MODEL_ENTRY = obj(id=TEXT | st.sampled_from(["openai/gpt-4o", "a/b/c", "/x", "x/"]), object=TEXT)
MODEL_LIST = obj(object=st.just("list"), data=array(MODEL_ENTRY)) | array(MODEL_ENTRY)
PROVIDERS = (
    array(TEXT | obj(id=TEXT))
    | obj(providers=array(TEXT | obj(id=TEXT)))
    | obj(data=array(TEXT | obj(id=TEXT)))
)
PROVIDER_MODELS = obj(provider=TEXT, total=INT, models=array(MODEL_ENTRY)) | MODEL_LIST
ERROR_FIELDS = obj(
    message=TEXT,
    type=st.sampled_from(
        ["rate_limit_error", "authentication_error", "not_found_error", "provider_error", "x"]
    ),
    code=INT | st.sampled_from(["429", "502", " 500 ", "0429", "4290"]),
    status=INT,
    retry_after=INT | st.floats() | TEXT,
    retry_after_ms=INT | st.floats() | TEXT,
    param=TEXT,
)
ERROR_BODY = obj(error=ERROR_FIELDS | TEXT) | obj(detail=WRONG) | obj(message=WRONG)
SHAPED = st.one_of(
    COMPLETION, CHUNK, EMBEDDINGS, MODEL_LIST, PROVIDERS, PROVIDER_MODELS, ERROR_BODY
)

NOISE = st.sampled_from(
    [b"\xff", b"\xc3", b"\xe4\xb8", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x00", b"\r", b"\n", b"\\"]
) | st.binary(min_size=1, max_size=4)


@st.composite
def mutated(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` with a few noise bytes (invalid UTF-8, NUL, line ends) put anywhere."""
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(NOISE) + body[at:]
    return body


def json_bytes(shapes: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """JSON text of a shaped value (or any value), encoded, sometimes mutated."""
    text = (shapes | ANY).map(dump)
    encoded = text.map(lambda t: t.encode("utf-8", "surrogatepass"))
    return encoded | encoded.flatmap(mutated)


BODY = st.one_of(
    json_bytes(SHAPED),
    st.binary(max_size=300),
    st.sampled_from([b"", b" \r\n", b"null", b"<html><title>Bad gateway</title></html>"]),
    st.just(f"<html><title>{TOKEN}</title></html>".encode()),
)
HEADER_NAMES = st.sampled_from(
    [
        "content-type", "Content-Type", "retry-after", "Retry-After", "retry-after-ms",
        "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "llm_provider-retry-after",
        "x-request-id", "request-id", "cf-ray",
    ]
)  # fmt: skip
HEADER_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "", "0", "1.5", "-1", "1e999", "nan", "inf", "٣", "²", "9" * 400, "1m30s", "20ms",
            "1h1h1h", "99999999h", "0.5s", ".5", "5.", "text/event-stream", "application/json",
            "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT",
            "Mon, 01 Jan 0001 00:00:00 GMT", "31 Dec 99999 23:59:59 +9999", "Sun, 06 Nov 1994",
            "Tue, 32 Feb 2000 25:61:61 -0000", ", , ,", "GMT", TOKEN, f"req-{TOKEN}",
        ]
    ),
    st.lists(
        st.sampled_from(["Mon,", "01", "Jan", "1994", "00:00:00", "GMT", "+0100", "-9999", "99"]),
        max_size=7,
    ).map(" ".join),
)  # fmt: skip
HEADERS = st.dictionaries(HEADER_NAMES | st.text(max_size=10), HEADER_VALUES, max_size=6)
STATUS = st.one_of(
    st.sampled_from([200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 422, 429, 500, 502, 529]),
    st.integers(100, 599),
    st.integers(),
)

# SSE: pieces built from fragments, and events holding (mis)shaped chunks.
SSE_ATOMS = st.sampled_from(
    [
        b"data: ", b"data:", b"data", b"event: error\n", b"event: ping\n", b"event:\n", b": c\n",
        b"id: 1\n", b"retry: 10\n", b"\n", b"\r\n", b"\r", b"\n\n", b"[DONE]", b"{", b"}", b"[",
        b"]", b'"choices"', b'"delta"', b'"content"', b'"error"', b":", b",", b"null", b"0",
        b"\xe4\xb8", b"\x96", b"\xff", b"\xef\xbb\xbf", b"\x00", b"NaN", TOKEN.encode(),
        b'{"error": {"code": 429}}', b'{"choices": [{"index": 0, "delta": {"content": "x"}}]}',
        b'{"choices": [], "usage": {"prompt_tokens": 1, "total_tokens": 2}}',
    ]
)  # fmt: skip
SSE_LIKE = st.lists(SSE_ATOMS | st.binary(max_size=3), max_size=40).map(b"".join)
EVENT = st.one_of(
    json_bytes(CHUNK | ERROR_BODY).map(lambda data: b"data: " + data + b"\n\n"),
    json_bytes(ERROR_BODY).map(lambda data: b"event: error\ndata: " + data + b"\n\n"),
    st.sampled_from([b"data: [DONE]\n\n", b"data: [DONE]", b": keep-alive\n\n", b"\r\n"]),
)
STREAM_BODY = st.lists(EVENT, max_size=8).map(b"".join) | SSE_LIKE | st.binary(max_size=300)
SPLITS = st.lists(st.integers(0, 10_000), max_size=12)


def split_at(data: bytes, points: List[int]) -> List[bytes]:
    cuts = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    return [data[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


# -- the core and its calls ----------------------------------------------------------------------


def new_core() -> GatewayCore:
    return GatewayCore(
        ClientConfig.create(
            "https://gateway.test", TOKEN, 5.0, max_retries=0, max_retry_after=60.0,
            api_prefix="/v1", default_headers=None, verify=True, max_connections=10,
            retry_policy=None,
        )
    )  # fmt: skip


CALLS: Dict[str, Callable[[GatewayCore, str], Call]] = {
    "chat": lambda core, _: core.chat(MODEL, MESSAGES, None, None, None, {}),
    "embeddings": lambda core, _: core.embeddings("openai/text-embedding-3-small", "x", {}),
    "models": lambda core, _: core.models(),
    "providers": lambda core, _: core.providers(),
    "provider_models": lambda core, provider: core.provider_models(provider),
}
PROVIDER = st.sampled_from(["openai", "anthropic", "a b", "ü", "%2F"]) | st.text(min_size=1)


# -- SSE decoder ---------------------------------------------------------------------------------


def decode(pieces: List[bytes]) -> List[ServerSentEvent]:
    decoder = SSEDecoder()
    events: List[ServerSentEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    return events + decoder.flush()


@fuzz
@given(data=STREAM_BODY, points=SPLITS)
def test_sse_decoder_takes_any_bytes_split_anywhere(data: bytes, points: List[int]) -> None:
    whole = typed_only(lambda: decode([data]))
    pieces = typed_only(lambda: decode(split_at(data, points)))
    assert pieces == whole, "the events depend on how the bytes were split into reads"
    for event in whole if isinstance(whole, list) else []:
        assert type(event) is ServerSentEvent
        assert isinstance(event.event, str) and event.event
        assert isinstance(event.data, str)
        assert event.id is None or (isinstance(event.id, str) and "\0" not in event.id)
        assert event.retry is None or (isinstance(event.retry, int) and event.retry >= 0)


# -- a chat stream's state -----------------------------------------------------------------------


def consume_stream(pieces: List[bytes], callers_stream_options: bool) -> None:
    params: Dict[str, Any] = {}
    if callers_stream_options:
        params["stream_options"] = {"include_usage": True}
    core = new_core()
    state = core.stream(MODEL, MESSAGES, None, None, None, params).new_state()

    def take_all() -> None:
        while True:
            item = state.take()
            if item is NEED_DATA or item is END:
                return
            assert isinstance(item, ChatCompletionChunk)
            read_all(item)

    def run() -> None:
        for piece in pieces:
            state.feed(piece)
            take_all()
            read_all(state.completion())
        state.feed(b"")
        take_all()

    outcome = typed_only(run)
    if isinstance(outcome, GatewayClientError):
        typed_only(take_all)  # chunks kept before a deferred error, then the error again
    read_all(typed_only(state.completion))
    read_all(typed_only(lambda: state.usage))
    for cut in (GatewayConnectionError("reset"), GatewayTimeoutError("timed out")):
        failed = typed_only(lambda cut=cut: state.read_failed(cut))
        assert isinstance(failed, GatewayClientError)
    assert core.usage.total.requests in (0, 1)


@fuzz
@given(body=STREAM_BODY, points=SPLITS, callers_stream_options=st.booleans())
def test_stream_state_takes_any_bytes(
    body: bytes, points: List[int], callers_stream_options: bool
) -> None:
    consume_stream(split_at(body, points), callers_stream_options)


@fuzz
@given(
    chunks=st.lists(CHUNK, max_size=5),
    ending=st.sampled_from([b"data: [DONE]\n\n", b"", b"data: [DON"]),
    callers_stream_options=st.booleans(),
)
@example(  # found by fuzzing: to_dict() of deep JSON; a lazily read field's error
    chunks=[{"object": Raw(_deep(600, 0)), "usage": TOKEN}],
    ending=b"data: [DONE]\n\n",
    callers_stream_options=True,
)
def test_stream_state_takes_any_chunk_shaped_json(
    chunks: List[Any], ending: bytes, callers_stream_options: bool
) -> None:
    events = [
        b"data: " + dump(chunk).encode("utf-8", "surrogatepass") + b"\n\n" for chunk in chunks
    ]
    consume_stream([*events, ending], callers_stream_options)


@fuzz
@given(status=STATUS, headers=HEADERS, body=BODY)
@example(status=200, headers={"content-type": TOKEN}, body=b"{}")  # found by fuzzing
def test_stream_call_head_checks_take_any_response(
    status: int, headers: Dict[str, str], body: bytes
) -> None:
    call = new_core().stream(MODEL, MESSAGES, None, None, None, {})
    if typed_only(lambda: call.accepts(status, headers)) is True:
        return
    error = typed_only(lambda: call.reject(status, headers, body))
    assert isinstance(error, GatewayClientError)
    check_error(error)


# -- Call.handle, for every call the core builds -------------------------------------------------


@fuzz
@given(
    name=st.sampled_from(sorted(CALLS)),
    provider=PROVIDER,
    status=STATUS,
    headers=HEADERS,
    body=BODY,
    fallback_body=BODY,
)
def test_every_call_handles_any_response(
    name: str,
    provider: str,
    status: int,
    headers: Dict[str, str],
    body: bytes,
    fallback_body: bytes,
) -> None:
    core = new_core()
    call = typed_only(lambda: CALLS[name](core, provider))
    if isinstance(call, GatewayClientError):
        assume(False)  # a provider name the argument check refuses: nothing to send
    result = typed_only(lambda: call.handle(status, headers, body))
    if isinstance(result, Call):  # the fallback a plain OpenAI server needs (404/405)
        assert name in ("providers", "provider_models") and status in (404, 405)
        result = typed_only(lambda: result.handle(200, headers, fallback_body))
    if isinstance(result, GatewayClientError):
        return
    expected = {
        "chat": ChatCompletion,
        "embeddings": EmbeddingResponse,
        "models": ModelList,
        "providers": list,
        "provider_models": ProviderModels,
    }[name]
    assert isinstance(result, expected), type(result)
    if name == "providers":
        assert all(type(provider) is str for provider in result)
        assert len(set(result)) == len(result)
    read_all(result)
    if name in ("chat", "embeddings"):
        assert core.usage.total.requests == 1


# -- the models ------------------------------------------------------------------------------------

MODELS = st.sampled_from(
    [
        ChatCompletion,
        ChatCompletionChunk,
        EmbeddingResponse,
        ModelList,
        ProviderModels,
        CompletionUsage,
    ]
)


@fuzz
@given(model=MODELS, text=(SHAPED | ANY).map(dump))
@example(model=ChatCompletion, text=dump({"detail": Raw(_deep(498, 2))}))  # found by fuzzing
def test_models_read_any_json(model: type[GatewayObject], text: str) -> None:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        assume(False)  # not JSON: the core refuses it before any model sees it
    # No client, so no token to keep out of the errors: the models are not given one.
    read_all(typed_only(lambda: model._from_json(data), None), None)


# -- the error functions ---------------------------------------------------------------------


@fuzz
@given(
    status=STATUS,
    headers=HEADERS,
    body=BODY,
    reason=st.text(max_size=20),
    secret=st.sampled_from([None, TOKEN]),
    now=st.none() | st.floats(0, 4e9),
)
def test_error_from_response_takes_any_response(
    status: int,
    headers: Dict[str, str],
    body: bytes,
    reason: str,
    secret: Optional[str],
    now: Optional[float],
) -> None:
    error = typed_only(
        lambda: error_from_response(status, headers, body, reason=reason, secret=secret, now=now),
        secret,
    )
    assert isinstance(error, GatewayClientError), "error_from_response returns its error"
    check_error(error, secret)
    assert error.status_code == status


@fuzz
@given(
    text=(ERROR_BODY | ERROR_FIELDS | ANY).map(dump),
    headers=st.none() | HEADERS,
    secret=st.sampled_from([None, TOKEN]),
)
def test_error_from_event_takes_any_payload(
    text: str, headers: Optional[Dict[str, str]], secret: Optional[str]
) -> None:
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        payload = text
    error = typed_only(lambda: error_from_event(payload, headers, secret=secret), secret)
    assert isinstance(error, GatewayClientError), "error_from_event returns its error"
    check_error(error, secret)
    assert error.status_code is None or 100 <= error.status_code <= 599


@fuzz
@given(headers=HEADERS, now=st.none() | st.floats(0, 4e9), text=HEADER_VALUES)
def test_retry_hints_take_any_header_values(
    headers: Dict[str, str], now: Optional[float], text: str
) -> None:
    for seconds in (
        typed_only(lambda: parse_retry_after(headers, now)),
        typed_only(lambda: parse_duration(text)),
    ):
        assert seconds is None or (
            isinstance(seconds, float) and math.isfinite(seconds) and seconds >= 0
        ), seconds
