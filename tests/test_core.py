"""The sans-I/O core: requests built, arguments checked, answers parsed, usage kept (no I/O)."""

from __future__ import annotations

import json
import math
import re
import threading
from typing import Any, Callable

import pytest

from gatewayclient import __version__
from gatewayclient import _core as core_module
from gatewayclient._checks import KNOWN_PARAMETERS, _edit_distance, _likely_parameters, encode_json
from gatewayclient._core import Call, GatewayCore, Request, StreamCall
from gatewayclient._stream import END, NEED_DATA
from gatewayclient._usage import UsageTotals, UsageTracker
from gatewayclient.config import ClientConfig, RetryPolicy
from gatewayclient.errors import (
    GatewayAuthError,
    GatewayBadRequestError,
    GatewayClientError,
    GatewayModelNotFoundError,
    GatewayProviderError,
    GatewayRateLimitError,
    GatewayResponseError,
    GatewayServerError,
    GatewayTimeoutError,
    GatewayValidationError,
)
from gatewayclient.models import (
    ChatCompletion,
    ChatCompletionMessage,
    EmbeddingResponse,
    ModelList,
    ProviderModels,
)

TOKEN = "sk-core-secret-1b2c3d4e"
ROOT = "https://gateway.example.com/v1"
MODEL = "openai/gpt-4o"
MESSAGES = [{"role": "user", "content": "Hello!"}]
HEX32 = re.compile(r"[0-9a-f]{32}")

CHAT_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi there"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}
EMBEDDING_ANSWER = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2]}],
    "model": "openai/text-embedding-3-small",
    "usage": {"prompt_tokens": 5, "total_tokens": 5},
}
MODELS_ANSWER = {
    "object": "list",
    "data": [
        {"id": "openai/gpt-4o", "object": "model", "created": 1, "owned_by": "openai"},
        {"id": "anthropic/claude-sonnet-4", "object": "model", "created": 1, "owned_by": "x"},
        {"id": "openai/gpt-4o-mini", "object": "model", "created": 1, "owned_by": "openai"},
        {"id": "no-provider-prefix", "object": "model", "created": 1, "owned_by": "x"},
        {"id": "google/gemini-2.0-flash", "object": "model"},
        {"id": "anthropic/claude-haiku-4", "object": "model"},
    ],
}


def make_core(
    base_url: str = "https://gateway.example.com",
    auth_token: Any = TOKEN,
    timeout: Any = 60.0,
    **kwargs: Any,
) -> GatewayCore:
    options: dict[str, Any] = {
        "max_retries": 2,
        "max_retry_after": 60.0,
        "api_prefix": "/v1",
        "default_headers": None,
        "verify": True,
        "max_connections": 100,
        "retry_policy": None,
    }
    options.update(kwargs)
    return GatewayCore(ClientConfig.create(base_url, auth_token, timeout, **options))


@pytest.fixture
def core() -> GatewayCore:
    return make_core()


def chat(core: GatewayCore, model: Any = MODEL, messages: Any = MESSAGES, **kwargs: Any) -> Call:
    temperature = kwargs.pop("temperature", None)
    max_tokens = kwargs.pop("max_tokens", None)
    top_p = kwargs.pop("top_p", None)
    return core.chat(model, messages, temperature, max_tokens, top_p, kwargs)


def stream(
    core: GatewayCore, model: Any = MODEL, messages: Any = MESSAGES, **kwargs: Any
) -> StreamCall:
    temperature = kwargs.pop("temperature", None)
    max_tokens = kwargs.pop("max_tokens", None)
    top_p = kwargs.pop("top_p", None)
    return core.stream(model, messages, temperature, max_tokens, top_p, kwargs)


def embed(core: GatewayCore, model: Any = "openai/text-embedding-3-small", **kwargs: Any) -> Call:
    text = kwargs.pop("input", "hello")
    return core.embeddings(model, text, kwargs)


def body_of(request: Request) -> Any:
    assert request.body is not None
    return json.loads(request.body.decode("utf-8"))


def encoded(data: Any) -> bytes:
    return json.dumps(data).encode("utf-8")


def header(request: Request, name: str) -> Any:
    found = [value for key, value in request.headers.items() if key.lower() == name.lower()]
    assert len(found) <= 1, f"header {name} appears {len(found)} times"
    return found[0] if found else None


BUILDERS: dict[str, Callable[..., Any]] = {"chat": chat, "stream": stream}


# -- requests ---------------------------------------------------------------------------------


def test_chat_request_method_url_and_headers(core: GatewayCore) -> None:
    request = chat(core).request
    assert request.method == "POST"
    assert request.url == f"{ROOT}/chat/completions"
    assert header(request, "Authorization") == f"Bearer {TOKEN}"
    assert header(request, "Content-Type") == "application/json"
    assert HEX32.fullmatch(header(request, "Idempotency-Key"))
    assert header(request, "User-Agent").startswith("gatewayclient/")
    assert __version__ in header(request, "User-Agent")
    assert header(request, "Accept") == "application/json"
    assert request.timeout == 60.0


def test_chat_body_is_the_expected_json(core: GatewayCore) -> None:
    request = chat(core, temperature=0.7, max_tokens=256, top_p=0.9).request
    assert body_of(request) == {
        "model": MODEL,
        "messages": MESSAGES,
        "temperature": 0.7,
        "max_tokens": 256,
        "top_p": 0.9,
    }


def test_body_is_utf8_json(core: GatewayCore) -> None:
    messages = [{"role": "user", "content": "Grüße, 世界 🌍"}]
    request = chat(core, messages=messages).request
    assert isinstance(request.body, bytes)
    assert body_of(request)["messages"] == messages


@pytest.mark.parametrize(
    ("build", "method", "path"),
    [
        (lambda core: chat(core).request, "POST", "/chat/completions"),
        (lambda core: stream(core).request, "POST", "/chat/completions"),
        (lambda core: embed(core).request, "POST", "/embeddings"),
        (lambda core: core.models().request, "GET", "/models"),
        (lambda core: core.providers().request, "GET", "/providers"),
        (lambda core: core.provider_models("openai").request, "GET", "/providers/openai/models"),
    ],
)
def test_every_call_targets_its_endpoint(
    core: GatewayCore, build: Callable[[GatewayCore], Request], method: str, path: str
) -> None:
    request = build(core)
    assert request.method == method
    assert request.url == ROOT + path
    assert header(request, "Authorization") == f"Bearer {TOKEN}"
    assert header(request, "User-Agent").startswith("gatewayclient/")
    if method == "POST":
        assert header(request, "Content-Type") == "application/json"
        assert HEX32.fullmatch(header(request, "Idempotency-Key"))
    else:
        assert request.body is None
        assert header(request, "Idempotency-Key") is None
        assert header(request, "Content-Type") is None


def test_idempotency_keys_differ_per_call(core: GatewayCore) -> None:
    keys = [header(chat(core).request, "Idempotency-Key") for _ in range(20)]
    keys += [header(stream(core).request, "Idempotency-Key") for _ in range(5)]
    keys += [header(embed(core).request, "Idempotency-Key") for _ in range(5)]
    assert len(set(keys)) == len(keys)


def test_provider_name_is_quoted_in_the_path(core: GatewayCore) -> None:
    request = core.provider_models("my provider").request
    assert request.url == f"{ROOT}/providers/my%20provider/models"


def test_no_authorization_header_without_a_token() -> None:
    core = make_core(auth_token=None)
    assert header(chat(core).request, "Authorization") is None
    assert header(core.models().request, "Authorization") is None


@pytest.mark.parametrize(
    ("base_url", "api_prefix", "url"),
    [
        ("http://h:4000", "/v1", "http://h:4000/v1/models"),
        ("http://h:4000/v1", "/v1", "http://h:4000/v1/models"),
        ("https://host/gateway/", "/v1", "https://host/gateway/v1/models"),
        ("http://h:4000", "", "http://h:4000/models"),
    ],
)
def test_urls_join_the_api_root_and_the_path(base_url: str, api_prefix: str, url: str) -> None:
    assert make_core(base_url=base_url, api_prefix=api_prefix).models().request.url == url


def test_default_headers_are_sent_on_every_call() -> None:
    core = make_core(default_headers={"X-Team": "search"})
    for request in (chat(core).request, core.models().request, embed(core).request):
        assert header(request, "X-Team") == "search"


def test_request_repr_hides_the_headers(core: GatewayCore) -> None:
    request = chat(core).request
    assert TOKEN not in repr(request)
    assert TOKEN not in str(request)


def test_none_params_are_not_sent(core: GatewayCore) -> None:
    request = chat(
        core, temperature=None, max_tokens=None, top_p=None, seed=None, user=None, stop=None
    ).request
    assert body_of(request) == {"model": MODEL, "messages": MESSAGES}


def test_falsy_but_set_params_are_sent(core: GatewayCore) -> None:
    request = chat(core, temperature=0, n=1, stop=[], seed=0, user="").request
    body = body_of(request)
    assert body["temperature"] == 0
    assert body["seed"] == 0
    assert body["stop"] == []
    assert body["user"] == ""


PASSTHROUGH: dict[str, Any] = {
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
    "stop": ["\n\n", "END"],
    "n": 2,
    "seed": 42,
    "user": "user-1234",
    "frequency_penalty": 0.5,
    "presence_penalty": -0.5,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 3,
    "parallel_tool_calls": False,
    "metadata": {"trace": "abc"},
    "some_gateway_extension": {"nested": [1, 2, {"deep": None}], "flag": True},
}


@pytest.mark.parametrize("builder", ["chat", "stream"])
def test_openai_fields_pass_through_untouched(core: GatewayCore, builder: str) -> None:
    request = BUILDERS[builder](core, **json.loads(json.dumps(PASSTHROUGH))).request
    body = body_of(request)
    for key, value in PASSTHROUGH.items():
        assert body[key] == value


def test_messages_pass_through_untouched(core: GatewayCore) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "ada"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    assert body_of(chat(core, messages=messages).request)["messages"] == messages


def test_a_returned_message_can_be_sent_back(core: GatewayCore) -> None:
    answer = ChatCompletion._from_json(json.loads(json.dumps(CHAT_ANSWER)))
    message = answer.choices[0].message
    assert isinstance(message, ChatCompletionMessage)
    body = body_of(chat(core, messages=[*MESSAGES, message]).request)
    assert body["messages"][1] == {"role": "assistant", "content": "Hi there"}


def test_embeddings_body_and_passthrough(core: GatewayCore) -> None:
    request = embed(
        core, input=["a", "b"], encoding_format="float", dimensions=256, user=None
    ).request
    assert body_of(request) == {
        "model": "openai/text-embedding-3-small",
        "input": ["a", "b"],
        "encoding_format": "float",
        "dimensions": 256,
    }


def test_embeddings_accept_a_tuple_of_strings(core: GatewayCore) -> None:
    assert body_of(embed(core, input=("a", "b")).request)["input"] == ["a", "b"]


@pytest.mark.parametrize("builder", ["chat", "stream", "embed"])
def test_extra_headers_go_to_headers_not_the_body(core: GatewayCore, builder: str) -> None:
    build = {"chat": chat, "stream": stream, "embed": embed}[builder]
    request = build(core, extra_headers={"X-Trace-Id": "t-1", "X-Priority": "high"}).request
    assert header(request, "X-Trace-Id") == "t-1"
    assert header(request, "X-Priority") == "high"
    assert header(request, "Authorization") == f"Bearer {TOKEN}"
    assert "extra_headers" not in body_of(request)
    assert "X-Trace-Id" not in request.body.decode()  # type: ignore[union-attr]


@pytest.mark.parametrize("builder", ["chat", "stream", "embed"])
@pytest.mark.parametrize("seconds", [5, 0.5, 120.0])
def test_per_call_timeout_overrides_and_is_not_sent(
    core: GatewayCore, builder: str, seconds: float
) -> None:
    build = {"chat": chat, "stream": stream, "embed": embed}[builder]
    request = build(core, timeout=seconds).request
    assert request.timeout == seconds
    assert "timeout" not in body_of(request)


def test_without_a_per_call_timeout_the_client_timeout_applies() -> None:
    core = make_core(timeout=7.5)
    assert chat(core).request.timeout == 7.5
    assert core.models().request.timeout == 7.5


@pytest.mark.parametrize("value", [0, -1, "5", math.nan])
def test_bad_per_call_timeouts_are_validation_errors(core: GatewayCore, value: Any) -> None:
    with pytest.raises(GatewayValidationError):
        chat(core, timeout=value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("X-A: 1", id="str"),
        pytest.param(["X-A", "1"], id="list"),
        pytest.param({"X-A": 1}, id="int-value"),
        pytest.param({"X-A": "v\r\nX-Injected: 1"}, id="crlf-in-value"),
        pytest.param({"X-A": "line\nbreak"}, id="lf-in-value"),
        pytest.param({"X-A": "nul\x00"}, id="nul-in-value"),
        pytest.param({"X A": "v"}, id="space-in-name"),
        pytest.param({"X-A:": "v"}, id="colon-in-name"),
        pytest.param({"": "v"}, id="empty-name"),
    ],
)
def test_bad_extra_headers_are_validation_errors(core: GatewayCore, value: Any) -> None:
    with pytest.raises(GatewayValidationError):
        chat(core, extra_headers=value)


def test_one_header_per_name_whatever_its_case() -> None:
    core = make_core(default_headers={"user-agent": "my-app/1.0", "x-team": "search"})
    request = chat(
        core,
        extra_headers={
            "idempotency-key": "my-own-key",
            "content-type": "application/json; charset=utf-8",
            "X-TEAM": "billing",
        },
    ).request
    assert header(request, "User-Agent") == "my-app/1.0"
    assert header(request, "Idempotency-Key") == "my-own-key"
    assert header(request, "Content-Type") == "application/json; charset=utf-8"
    assert header(request, "X-Team") == "billing"
    assert header(request, "Authorization") == f"Bearer {TOKEN}"


def test_a_per_call_authorization_replaces_the_token_header() -> None:
    request = chat(make_core(), extra_headers={"authorization": "Bearer per-call"}).request
    assert header(request, "Authorization") == "Bearer per-call"


# -- misspelt parameters, extra_body and a per-call max_retries --------------------------------


@pytest.mark.parametrize(
    ("builder", "name", "likely"),
    [
        ("chat", "temprature", "'temperature'"),
        ("stream", "temprature", "'temperature'"),
        ("chat", "max_token", "'max_tokens'"),
        ("chat", "tempreture", "'temperature'"),
        ("chat", "frequency_penality", "'frequency_penalty'"),
        ("chat", "tool_choise", "'tool_choice'"),
        ("chat", "respone_format", "'response_format'"),
        ("chat", "stream_option", "'stream_options'"),
        ("chat", "topp", "'top_p'"),
        ("chat", "sede", "'seed'"),
        ("chat", "top_x", "'top_a', 'top_k', 'top_n' or 'top_p'"),
        ("chat", "extra_header", "'extra_headers'"),
        ("chat", "timout", "'timeout'"),
        ("chat", "max_retires", "'max_retries'"),
        ("chat", "extrabody", "'extra_body'"),
        ("embed", "dimension", "'dimensions'"),
        ("embed", "encoding_fromat", "'encoding_format'"),
    ],
)
def test_a_misspelt_parameter_is_refused_naming_the_likely_one(
    core: GatewayCore, builder: str, name: str, likely: str
) -> None:
    build = {"chat": chat, "stream": stream, "embed": embed}[builder]
    with pytest.raises(GatewayValidationError) as caught:
        build(core, **{name: 1})
    assert f"{name!r}: did you mean {likely}?" in str(caught.value)
    assert "extra_body" in str(caught.value)


NAMED = {"model", "messages", "input", "stream", "temperature", "max_tokens", "top_p"}
OPTIONS = {"extra_headers", "timeout", "max_retries", "extra_body", "fallback_models"}


@pytest.mark.parametrize("name", sorted(KNOWN_PARAMETERS - NAMED - OPTIONS))
def test_every_known_parameter_passes_through(core: GatewayCore, name: str) -> None:
    assert body_of(chat(core, **{name: "v"}).request)[name] == "v"


@pytest.mark.parametrize(
    "name",
    [
        "some_gateway_extension",  # far from every known name
        "temp",  # 4 characters, 3 edits from anything known
        "topP",  # 2 edits from top_p: too far for a name under 8 characters
        "mode",  # 1 edit from model, which is never offered
        "inputs",  # likewise input
        "tpp",  # under 4 characters: never checked
        "sed",
        "max_retry",  # 3 edits from max_retries
        "user_id",
        "tool_resources",
    ],
)
def test_other_unknown_parameters_still_pass_through(core: GatewayCore, name: str) -> None:
    assert body_of(chat(core, **{name: 1}).request)[name] == 1
    assert body_of(embed(core, **{name: 1}).request)[name] == 1


def test_required_arguments_are_never_offered_as_corrections() -> None:
    assert _likely_parameters("mode") is None  # model: 1 edit, but never offered
    assert _likely_parameters("mesages") is None
    assert _likely_parameters("inputs") is None
    assert _likely_parameters("modell") == "'models'"  # OpenRouter's list of models


def test_the_name_check_does_not_run_without_extra_parameters(
    core: GatewayCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(params: Any) -> None:
        raise AssertionError("checked")

    monkeypatch.setattr(core_module, "check_parameter_names", boom)
    chat(core, temperature=0.5, max_tokens=5, top_p=0.5, timeout=3, max_retries=1)
    stream(core, extra_headers={"X-A": "1"}, extra_body={"temprature": 1})
    embed(core)


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("temprature", "temperature", 1),
        ("sede", "seed", 1),
        ("tempreture", "temperature", 2),
        ("abc", "abc", 0),
        ("", "abc", 3),
        ("kitten", "sitting", 3),
    ],
)
def test_edit_distance_counts_a_neighbour_swap_as_one(a: str, b: str, distance: int) -> None:
    assert _edit_distance(a, b, 5) == distance
    assert _edit_distance(b, a, 5) == distance


@pytest.mark.parametrize("builder", ["chat", "stream", "embed"])
def test_extra_body_is_sent_as_is_without_a_name_check(core: GatewayCore, builder: str) -> None:
    build = {"chat": chat, "stream": stream, "embed": embed}[builder]
    extra = {"temprature": 0.2, "vendor": {"nested": [1, None]}, "nothing": None}
    body = body_of(build(core, extra_body=extra).request)
    assert {key: body[key] for key in extra} == extra
    assert "extra_body" not in body


def test_extra_body_wins_over_named_and_passed_parameters(core: GatewayCore) -> None:
    request = chat(
        core,
        temperature=0.5,
        seed=1,
        extra_body={"temperature": 0.7, "seed": 2, "model": "other/model", "messages": []},
    ).request
    body = body_of(request)
    assert (body["temperature"], body["seed"], body["model"], body["messages"]) == (
        0.7,
        2,
        "other/model",
        [],
    )


@pytest.mark.parametrize(
    ("extra", "hidden"),
    [({}, True), ({"stream_options": None}, True), ({"stream_options": {"x": 1}}, False)],
)
def test_stream_options_in_extra_body_count_as_the_callers(
    core: GatewayCore, extra: dict[str, Any], hidden: bool
) -> None:
    call = stream(core, extra_body=extra)
    body = body_of(call.request)
    assert body["stream"] is True
    assert call.hide_usage_chunk is hidden
    assert body["stream_options"] == ({"include_usage": True} if hidden else {"x": 1})


@pytest.mark.parametrize(
    "value",
    [
        pytest.param([("a", 1)], id="list"),
        pytest.param("a=1", id="str"),
        pytest.param({"stream": True}, id="stream"),
        pytest.param({"stream": False}, id="stream-false"),
        pytest.param({"x": object()}, id="not-json"),
    ],
)
@pytest.mark.parametrize("builder", ["chat", "stream"])
def test_bad_extra_body_is_a_validation_error(core: GatewayCore, builder: str, value: Any) -> None:
    with pytest.raises(GatewayValidationError):
        BUILDERS[builder](core, extra_body=value)


@pytest.mark.parametrize("builder", ["chat", "stream", "embed"])
def test_per_call_max_retries_overrides_only_that_field_for_that_call(
    builder: str,
) -> None:
    policy = RetryPolicy(max_retries=2, max_retry_after=7.0, backoff_base=0.25, backoff_max=3.0)
    core = make_core(retry_policy=policy)
    build = {"chat": chat, "stream": stream, "embed": embed}[builder]
    call = build(core, max_retries=5)
    assert call.policy == RetryPolicy(5, 7.0, 0.25, 3.0)
    assert "max_retries" not in body_of(call.request)
    assert build(core).policy is policy
    assert build(core, max_retries=None).policy is policy
    assert build(core, max_retries=2).policy is policy


def test_every_call_carries_the_clients_policy() -> None:
    policy = RetryPolicy(max_retries=4, backoff_base=0)
    core = make_core(retry_policy=policy)
    calls = [chat(core), stream(core), embed(core), core.models(), core.providers()]
    calls.append(core.provider_models("openai"))
    assert all(call.policy is policy for call in calls)
    fallback = core.providers().handle(404, {}, b"")
    assert isinstance(fallback, Call) and fallback.policy is policy


@pytest.mark.parametrize("value", [-1, 1.5, True, "2", [1]])
@pytest.mark.parametrize("builder", ["chat", "stream", "embed"])
def test_bad_per_call_max_retries_are_validation_errors(
    core: GatewayCore, builder: str, value: Any
) -> None:
    build = {"chat": chat, "stream": stream, "embed": embed}[builder]
    with pytest.raises(GatewayValidationError, match="max_retries"):
        build(core, max_retries=value)


# -- streams ----------------------------------------------------------------------------------


def test_stream_body_asks_for_a_stream_with_usage(core: GatewayCore) -> None:
    request = stream(core, max_tokens=500).request
    assert body_of(request) == {
        "model": MODEL,
        "messages": MESSAGES,
        "max_tokens": 500,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert request.method == "POST"
    assert request.url == f"{ROOT}/chat/completions"
    assert "text/event-stream" in header(request, "Accept")


@pytest.mark.parametrize(
    "options", [{"include_usage": False}, {"include_usage": True}, {"custom": 1}, {}]
)
def test_callers_stream_options_are_sent_as_given(core: GatewayCore, options: Any) -> None:
    body = body_of(stream(core, stream_options=options).request)
    assert body["stream_options"] == options
    assert body["stream"] is True


def test_stream_options_none_counts_as_not_passed(core: GatewayCore) -> None:
    body = body_of(stream(core, stream_options=None).request)
    assert body["stream_options"] == {"include_usage": True}


USAGE_CHUNK = {
    "id": "c",
    "object": "chat.completion.chunk",
    "choices": [],
    "usage": {"total_tokens": 3},
}


def _drive(call: StreamCall) -> list[Any]:
    state = call.new_state()
    chunks = []
    for data in (
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n',
        b"data: " + json.dumps(USAGE_CHUNK).encode() + b"\n\n",
        b"data: [DONE]\n\n",
        b"",
    ):
        state.feed(data)
        while (item := state.take()) is not NEED_DATA and item is not END:
            chunks.append(item)
    return chunks


@pytest.mark.parametrize(
    ("passed", "yielded"),
    [({}, 1), ({"stream_options": None}, 1), ({"stream_options": {"include_usage": True}}, 2)],
)
def test_usage_chunk_hidden_only_when_the_client_asked_for_it(
    core: GatewayCore, passed: dict[str, Any], yielded: int
) -> None:
    assert len(_drive(stream(core, **passed))) == yielded
    assert core.usage.total.total_tokens == 3
    assert core.usage.total.requests == 1


def test_stream_call_keeps_the_requested_model(core: GatewayCore) -> None:
    _drive(stream(core, model="anthropic/claude-sonnet-4"))
    assert set(core.usage.by_model) == {"anthropic/claude-sonnet-4"}


# -- argument validation ------------------------------------------------------------------------


CHAT_INVALID: list[Any] = [
    pytest.param({"model": ""}, id="model-empty"),
    pytest.param({"model": "   "}, id="model-blank"),
    pytest.param({"model": None}, id="model-none"),
    pytest.param({"model": 42}, id="model-int"),
    pytest.param({"model": ["openai/gpt-4o"]}, id="model-list"),
    pytest.param({"messages": "Hello"}, id="messages-str"),
    pytest.param({"messages": {"role": "user", "content": "x"}}, id="messages-dict"),
    pytest.param({"messages": None}, id="messages-none"),
    pytest.param({"messages": 3}, id="messages-int"),
    pytest.param({"messages": []}, id="messages-empty"),
    pytest.param({"messages": ()}, id="messages-empty-tuple"),
    pytest.param({"messages": ["Hello"]}, id="message-str"),
    pytest.param({"messages": [None]}, id="message-none"),
    pytest.param({"messages": [["user", "hi"]]}, id="message-list"),
    pytest.param({"messages": [{"content": "hi"}]}, id="message-no-role"),
    pytest.param({"messages": [{"role": "robot", "content": "hi"}]}, id="role-unknown"),
    pytest.param({"messages": [{"role": "User", "content": "hi"}]}, id="role-case"),
    pytest.param({"messages": [{"role": None, "content": "hi"}]}, id="role-none"),
    pytest.param({"messages": [{"role": "", "content": "hi"}]}, id="role-empty"),
    pytest.param({"messages": [MESSAGES[0], {"role": "bot"}]}, id="role-second-bad"),
    pytest.param({"temperature": -0.1}, id="temperature-negative"),
    pytest.param({"temperature": 2.1}, id="temperature-above-2"),
    pytest.param({"temperature": "1"}, id="temperature-str"),
    pytest.param({"temperature": True}, id="temperature-bool"),
    pytest.param({"temperature": math.nan}, id="temperature-nan"),
    pytest.param({"temperature": math.inf}, id="temperature-inf"),
    pytest.param({"top_p": 0}, id="top_p-zero"),
    pytest.param({"top_p": 1.5}, id="top_p-above-1"),
    pytest.param({"top_p": -0.5}, id="top_p-negative"),
    pytest.param({"top_p": "0.5"}, id="top_p-str"),
    pytest.param({"top_p": math.nan}, id="top_p-nan"),
    pytest.param({"max_tokens": 0}, id="max_tokens-zero"),
    pytest.param({"max_tokens": -1}, id="max_tokens-negative"),
    pytest.param({"max_tokens": 1.5}, id="max_tokens-float"),
    pytest.param({"max_tokens": True}, id="max_tokens-bool"),
    pytest.param({"max_tokens": "256"}, id="max_tokens-str"),
    pytest.param({"stream": True}, id="stream-passed"),
    pytest.param({"foo": object()}, id="param-not-json"),
    pytest.param({"foo": {1, 2}}, id="param-set"),
    pytest.param({"metadata": {"when": b"bytes"}}, id="param-bytes-nested"),
    pytest.param({"presence_penalty": math.nan}, id="param-nan"),
    pytest.param({"frequency_penalty": math.inf}, id="param-inf"),
    pytest.param({"messages": [{"role": "user", "content": math.nan}]}, id="message-nan"),
]


@pytest.mark.parametrize("builder", ["chat", "stream"])
@pytest.mark.parametrize("arguments", CHAT_INVALID)
def test_bad_chat_arguments_are_validation_errors(
    core: GatewayCore, builder: str, arguments: dict[str, Any]
) -> None:
    with pytest.raises(GatewayValidationError) as caught:
        BUILDERS[builder](core, **arguments)
    assert isinstance(caught.value, ValueError)
    assert core.usage.total.requests == 0


@pytest.mark.parametrize("role", ["system", "developer", "user", "assistant", "tool", "function"])
@pytest.mark.parametrize("builder", ["chat", "stream"])
def test_every_valid_role_is_accepted(core: GatewayCore, builder: str, role: str) -> None:
    messages = [{"role": role, "content": "x"}]
    assert body_of(BUILDERS[builder](core, messages=messages).request)["messages"] == messages


@pytest.mark.parametrize(
    "arguments",
    [
        {"temperature": 0},
        {"temperature": 2},
        {"temperature": 1},
        {"temperature": 0.0},
        {"temperature": 2.0},
        {"top_p": 1},
        {"top_p": 1e-9},
        {"max_tokens": 1},
        {"max_tokens": 100000},
        {"messages": ({"role": "user", "content": "tuple is a sequence"},)},
    ],
)
def test_boundary_values_are_accepted(core: GatewayCore, arguments: dict[str, Any]) -> None:
    body = body_of(chat(core, **arguments).request)
    for key, value in arguments.items():
        expected = list(value) if isinstance(value, tuple) else value
        assert body[key] == expected


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"model": ""}, id="model-empty"),
        pytest.param({"model": None}, id="model-none"),
        pytest.param({"input": ""}, id="input-empty"),
        pytest.param({"input": []}, id="input-empty-list"),
        pytest.param({"input": [""]}, id="input-empty-item"),
        pytest.param({"input": ["ok", ""]}, id="input-second-empty"),
        pytest.param({"input": [1]}, id="input-int-item"),
        pytest.param({"input": ["a", None]}, id="input-none-item"),
        pytest.param({"input": None}, id="input-none"),
        pytest.param({"input": 7}, id="input-int"),
        pytest.param({"input": b"bytes"}, id="input-bytes"),
        pytest.param({"input": {"text": "x"}}, id="input-dict"),
        pytest.param({"dimensions": math.nan}, id="param-nan"),
        pytest.param({"custom": object()}, id="param-not-json"),
    ],
)
def test_bad_embedding_arguments_are_validation_errors(
    core: GatewayCore, arguments: dict[str, Any]
) -> None:
    with pytest.raises(GatewayValidationError) as caught:
        embed(core, **arguments)
    assert isinstance(caught.value, ValueError)


LONE = "caf\udce9"  # what surrogateescape makes of the Latin-1 bytes of "café"


@pytest.mark.parametrize(
    ("builder", "arguments", "where"),
    [
        pytest.param(
            "chat",
            {"messages": [{"role": "user", "content": LONE}]},
            "messages[0]['content']",
            id="content",
        ),
        pytest.param(
            "stream",
            {
                "messages": [
                    MESSAGES[0],
                    {"role": "user", "content": [{"type": "text", "text": LONE}]},
                ]
            },
            "messages[1]['content'][0]['text']",
            id="content-part",
        ),
        pytest.param(
            "chat",
            {"messages": [{"role": "user", "content": "x", "name": LONE}]},
            "messages[0]['name']",
            id="name",
        ),
        pytest.param(
            "chat",
            {"tools": [{"type": "function", "function": {"name": "f", "arguments": LONE}}]},
            "tools[0]['function']['arguments']",
            id="tool-arguments",
        ),
        pytest.param("chat", {"metadata": {LONE: "v"}}, "metadata", id="a-key"),
        pytest.param("chat", {"stop": ["ok", LONE]}, "stop[1]", id="passed-through"),
        pytest.param("stream", {"user": LONE}, "user", id="stream-field"),
        pytest.param("chat", {"model": "openai/" + LONE}, "model", id="model"),
        pytest.param("embed", {"input": LONE}, "input", id="input"),
        pytest.param("embed", {"input": ["a", "b", LONE]}, "input[2]", id="input-list"),
        pytest.param("embed", {"user": LONE}, "user", id="embed-field"),
        pytest.param(
            "chat",
            {"messages": [{"role": "user", "content": "\ud83d\ude00"}]},
            "messages[0]['content']",
            id="split-pair",
        ),
    ],
)
def test_a_lone_surrogate_anywhere_in_the_body_is_a_validation_error(
    core: GatewayCore, builder: str, arguments: dict[str, Any], where: str
) -> None:
    build = {"chat": chat, "stream": stream, "embed": embed}[builder]
    with pytest.raises(GatewayValidationError) as caught:
        build(core, **arguments)
    message = str(caught.value)
    assert where in message and "surrogate" in message
    message.encode("utf-8")  # the message itself can be printed
    assert TOKEN not in message + repr(caught.value)


def test_a_lone_surrogate_in_a_provider_name_is_a_validation_error(core: GatewayCore) -> None:
    with pytest.raises(GatewayValidationError) as caught:
        core.provider_models(LONE)
    str(caught.value).encode("utf-8")


def test_a_body_nested_too_deeply_for_json_is_a_validation_error(core: GatewayCore) -> None:
    nested: Any = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(GatewayValidationError):
        chat(core, metadata={"deep": nested})


@pytest.mark.parametrize("provider", ["", "  ", "a/b", "openai/", None, 3])
def test_bad_provider_names_are_validation_errors(core: GatewayCore, provider: Any) -> None:
    with pytest.raises(GatewayValidationError) as caught:
        core.provider_models(provider)
    assert isinstance(caught.value, ValueError)


# -- Call.handle: answers --------------------------------------------------------------------


def test_chat_answer_is_parsed_and_usage_recorded(core: GatewayCore) -> None:
    result = chat(core).handle(200, {"content-type": "application/json"}, encoded(CHAT_ANSWER))
    assert isinstance(result, ChatCompletion)
    assert result.choices[0].message.content == "Hi there"
    assert result["choices"][0]["message"]["content"] == "Hi there"
    assert result.to_dict() == CHAT_ANSWER
    assert core.usage.total == UsageTotals(9, 3, 12, 1)
    assert core.usage.by_model == {MODEL: UsageTotals(9, 3, 12, 1)}


@pytest.mark.parametrize("status", [200, 201, 203])
def test_any_2xx_is_an_answer(core: GatewayCore, status: int) -> None:
    assert isinstance(chat(core).handle(status, {}, encoded(CHAT_ANSWER)), ChatCompletion)


def test_usage_is_keyed_by_the_requested_model(core: GatewayCore) -> None:
    chat(core, model="openai/gpt-4o").handle(200, {}, encoded(CHAT_ANSWER))
    chat(core, model="openai/gpt-4o").handle(200, {}, encoded(CHAT_ANSWER))
    embed(core, model="openai/text-embedding-3-small").handle(200, {}, encoded(EMBEDDING_ANSWER))
    assert core.usage.by_model == {
        "openai/gpt-4o": UsageTotals(18, 6, 24, 2),
        "openai/text-embedding-3-small": UsageTotals(5, 0, 5, 1),
    }
    assert core.usage.total == UsageTotals(23, 6, 29, 3)


def test_an_answer_without_usage_still_counts_as_a_request(core: GatewayCore) -> None:
    answer = {key: value for key, value in CHAT_ANSWER.items() if key != "usage"}
    chat(core).handle(200, {}, encoded(answer))
    assert core.usage.total == UsageTotals(0, 0, 0, 1)
    assert core.usage.by_model[MODEL].requests == 1


def test_embedding_answer_is_parsed(core: GatewayCore) -> None:
    result = embed(core).handle(200, {}, encoded(EMBEDDING_ANSWER))
    assert isinstance(result, EmbeddingResponse)
    assert result.data[0].embedding == [0.1, -0.2]
    assert result.to_dict() == EMBEDDING_ANSWER


def test_model_list_is_parsed(core: GatewayCore) -> None:
    result = core.models().handle(200, {}, encoded(MODELS_ANSWER))
    assert isinstance(result, ModelList)
    assert [model.id for model in result.data] == [m["id"] for m in MODELS_ANSWER["data"]]
    assert result.to_dict() == MODELS_ANSWER
    assert core.usage.total.requests == 0


def test_a_bare_model_array_is_accepted(core: GatewayCore) -> None:
    result = core.models().handle(200, {}, encoded(MODELS_ANSWER["data"]))
    assert isinstance(result, ModelList)
    assert result["data"][0]["id"] == "openai/gpt-4o"


@pytest.mark.parametrize("body", [b"", b"   ", b"\n"])
@pytest.mark.parametrize("name", ["chat", "embed", "models", "providers", "provider_models"])
def test_empty_200_body_is_a_response_error(core: GatewayCore, name: str, body: bytes) -> None:
    with pytest.raises(GatewayResponseError):
        _call(core, name).handle(200, {}, body)


@pytest.mark.parametrize(
    "body", [b"not json", b"{", b'{"id": "x",}', b"<html>oops</html>", b"\xff\xfe\x00"]
)
@pytest.mark.parametrize("name", ["chat", "embed", "models", "providers", "provider_models"])
def test_invalid_json_200_body_is_a_response_error(
    core: GatewayCore, name: str, body: bytes
) -> None:
    with pytest.raises(GatewayResponseError):
        _call(core, name).handle(200, {}, body)


@pytest.mark.parametrize("name", ["chat", "embed", "models", "providers", "provider_models"])
def test_deeply_nested_200_body_is_a_response_error(core: GatewayCore, name: str) -> None:
    with pytest.raises(GatewayResponseError):
        _call(core, name).handle(200, {}, b"[" * 100_000)


@pytest.mark.parametrize("data", [[], "text", 42, None, [CHAT_ANSWER]])
@pytest.mark.parametrize("name", ["chat", "embed"])
def test_non_object_200_json_is_a_response_error(core: GatewayCore, name: str, data: Any) -> None:
    with pytest.raises(GatewayResponseError):
        _call(core, name).handle(200, {}, encoded(data))
    assert core.usage.total.requests == 0


@pytest.mark.parametrize("data", [{"data": "x"}, {"object": "list"}, "models", 3, {"data": {}}])
def test_model_list_garbage_is_a_response_error(core: GatewayCore, data: Any) -> None:
    with pytest.raises(GatewayResponseError):
        core.models().handle(200, {}, encoded(data))


def _call(core: GatewayCore, name: str) -> Call:
    return {
        "chat": lambda: chat(core),
        "embed": lambda: embed(core),
        "models": core.models,
        "providers": core.providers,
        "provider_models": lambda: core.provider_models("openai"),
    }[name]()


# -- Call.handle: error statuses --------------------------------------------------------------


STATUS_ERRORS = [
    (400, GatewayBadRequestError),
    (401, GatewayAuthError),
    (403, GatewayAuthError),
    (404, GatewayModelNotFoundError),
    (408, GatewayTimeoutError),
    (409, GatewayBadRequestError),
    (413, GatewayBadRequestError),
    (422, GatewayBadRequestError),
    (429, GatewayRateLimitError),
    (500, GatewayServerError),
    (502, GatewayProviderError),
    (503, GatewayServerError),
    (504, GatewayServerError),
    (529, GatewayServerError),
    (405, GatewayClientError),
    (418, GatewayClientError),
    (501, GatewayClientError),
    (302, GatewayClientError),
]


@pytest.mark.parametrize(("status", "error_class"), STATUS_ERRORS)
@pytest.mark.parametrize("name", ["chat", "embed", "models"])
def test_error_statuses_raise_the_typed_error(
    core: GatewayCore, name: str, status: int, error_class: type[Exception]
) -> None:
    body = encoded({"error": {"message": "it failed", "type": "some_error", "code": "x"}})
    with pytest.raises(GatewayClientError) as caught:
        _call(core, name).handle(status, {"x-request-id": "req-9"}, body)
    assert type(caught.value) is error_class
    assert caught.value.status_code == status
    assert caught.value.message == "it failed"
    assert caught.value.request_id == "req-9"
    assert core.usage.total.requests == 0


def test_rate_limit_error_carries_retry_after(core: GatewayCore) -> None:
    with pytest.raises(GatewayRateLimitError) as caught:
        chat(core).handle(429, {"Retry-After": "7"}, b'{"error": {"message": "slow down"}}')
    assert caught.value.retry_after == 7.0


COPIED_RESETS = {"content-type": "application/json", "x-ratelimit-reset-requests": "30s"}


@pytest.mark.parametrize(
    ("status", "body", "retry_after"),
    [
        (429, b'{"error": {"message": "slow"}}', 30.0),
        (503, b'{"error": {"message": "down"}}', None),
        (200, b'{"error": {"message": "slow", "type": "rate_limit_error"}}', 30.0),
        (200, b'{"error": {"message": "slow", "code": "rate_limit_exceeded"}}', 30.0),
        (200, b'{"error": {"message": "down", "type": "server_error"}}', None),
    ],
)
def test_a_refused_stream_head_reads_rate_limit_hints_only_for_a_rate_limit(
    core: GatewayCore, status: int, body: bytes, retry_after: Any
) -> None:
    call = stream(core)
    assert not call.accepts(status, COPIED_RESETS)
    assert call.reject(status, COPIED_RESETS, body).retry_after == retry_after


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 502, 503, 418])
@pytest.mark.parametrize(
    "body",
    [
        b'{"error": {"message": "invalid key %s", "type": "auth_error", "code": "%s"}}',
        b'{"detail": "token %s rejected", "echo": {"authorization": "Bearer %s"}}',
        b"<html><title>Bad token %s</title>%s</html>",
        b"plain text echo %s and again %s",
    ],
)
def test_echoed_token_never_appears_in_the_error(
    core: GatewayCore, status: int, body: bytes
) -> None:
    raw = body.replace(b"%s", TOKEN.encode())
    headers = {"x-request-id": f"req-{TOKEN}", "www-authenticate": f"Bearer {TOKEN}"}
    with pytest.raises(GatewayClientError) as caught:
        chat(core).handle(status, headers, raw)
    _assert_no_token(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        b"Unauthorized: token %s is not valid JSON",
        b'{"id": "%s", ',
        b"<html><body>%s</body></html>",
    ],
)
@pytest.mark.parametrize("name", ["chat", "models", "providers"])
def test_echoed_token_never_appears_in_a_bad_200_answer_error(
    core: GatewayCore, name: str, body: bytes
) -> None:
    raw = body.replace(b"%s", TOKEN.encode())
    with pytest.raises(GatewayResponseError) as caught:
        _call(core, name).handle(200, {}, raw)
    _assert_no_token(caught.value)


def _assert_no_token(error: BaseException) -> None:
    seen = [
        str(error),
        repr(error),
        repr(error.args),
        json.dumps(vars(error), default=repr),
    ]
    for text in seen:
        assert TOKEN not in text


# -- provider routes: parsing and the /models fallback --------------------------------------


@pytest.mark.parametrize(
    ("data", "names"),
    [
        (["openai", "anthropic", "google"], ["openai", "anthropic", "google"]),
        ({"providers": ["openai", "anthropic"]}, ["openai", "anthropic"]),
        ({"data": ["mistral", "openai"]}, ["mistral", "openai"]),
        ({"providers": [{"id": "openai"}, {"id": "azure", "name": "Azure"}]}, ["openai", "azure"]),
        ({"data": [{"id": "google", "object": "provider"}]}, ["google"]),
        ([{"id": "openai"}, "anthropic"], ["openai", "anthropic"]),
        (
            ["openai", "anthropic", "openai", "google", "anthropic"],
            ["openai", "anthropic", "google"],
        ),
        ({"providers": [{"id": "b"}, {"id": "a"}, {"id": "b"}]}, ["b", "a"]),
        ([], []),
        ({"providers": []}, []),
        ({"providers": ["x"], "data": ["y"]}, ["x"]),
    ],
)
def test_provider_list_shapes(core: GatewayCore, data: Any, names: list[str]) -> None:
    assert core.providers().handle(200, {}, encoded(data)) == names


@pytest.mark.parametrize(
    "data",
    [
        {"error": "nope"},
        {"providers": "openai"},
        {"data": {"openai": {}}},
        "openai",
        42,
        None,
        [1, 2],
        [None],
        [{"name": "openai"}],
        [{"id": 5}],
        [["openai"]],
    ],
)
def test_provider_list_garbage_is_a_response_error(core: GatewayCore, data: Any) -> None:
    with pytest.raises(GatewayResponseError):
        core.providers().handle(200, {}, encoded(data))


@pytest.mark.parametrize(
    "data",
    [
        {
            "provider": "openai",
            "total": 2,
            "models": [{"id": "openai/gpt-4o"}, {"id": "openai/gpt-4o-mini"}],
        },
        {"models": [{"id": "openai/gpt-4o"}, {"id": "openai/gpt-4o-mini"}]},
        {
            "object": "list",
            "data": [
                {"id": "openai/gpt-4o", "object": "model"},
                {"id": "openai/gpt-4o-mini", "object": "model"},
            ],
        },
        [{"id": "openai/gpt-4o"}, {"id": "openai/gpt-4o-mini"}],
    ],
)
def test_provider_models_shapes(core: GatewayCore, data: Any) -> None:
    result = core.provider_models("openai").handle(200, {}, encoded(data))
    assert isinstance(result, ProviderModels)
    assert result.provider == "openai"
    assert result["provider"] == "openai"
    assert result.total == 2
    assert result["total"] == 2
    assert [model["id"] for model in result["models"]] == ["openai/gpt-4o", "openai/gpt-4o-mini"]
    assert [model.id for model in result.models] == ["openai/gpt-4o", "openai/gpt-4o-mini"]


def test_provider_models_keep_the_servers_fields(core: GatewayCore) -> None:
    data = {"provider": "openai", "total": 5, "models": [{"id": "openai/gpt-4o", "tier": 1}]}
    result = core.provider_models("openai").handle(200, {}, encoded(data))
    assert result.total == 5
    assert result.to_dict() == data
    assert result["models"][0]["tier"] == 1


@pytest.mark.parametrize("data", ["openai", 3, None, {"models": "x"}, {"data": 1}, {"x": []}])
def test_provider_models_garbage_is_a_response_error(core: GatewayCore, data: Any) -> None:
    with pytest.raises(GatewayResponseError):
        core.provider_models("openai").handle(200, {}, encoded(data))


@pytest.mark.parametrize("status", [404, 405])
def test_missing_providers_route_falls_back_to_models(core: GatewayCore, status: int) -> None:
    fallback = core.providers().handle(status, {}, b'{"detail": "Not Found"}')
    assert isinstance(fallback, Call)
    assert fallback.request.method == "GET"
    assert fallback.request.url == f"{ROOT}/models"
    assert header(fallback.request, "Authorization") == f"Bearer {TOKEN}"
    names = fallback.handle(200, {}, encoded(MODELS_ANSWER))
    assert names == ["openai", "anthropic", "google"]


@pytest.mark.parametrize("status", [404, 405])
def test_missing_provider_models_route_falls_back_to_models(core: GatewayCore, status: int) -> None:
    fallback = core.provider_models("anthropic").handle(status, {}, b"")
    assert isinstance(fallback, Call)
    assert fallback.request.url == f"{ROOT}/models"
    result = fallback.handle(200, {}, encoded(MODELS_ANSWER))
    assert isinstance(result, ProviderModels)
    assert result.provider == "anthropic"
    assert result.total == 2
    assert [m.id for m in result.models] == [
        "anthropic/claude-sonnet-4",
        "anthropic/claude-haiku-4",
    ]
    assert result["models"][0]["owned_by"] == "x"


def test_fallback_for_an_unknown_provider_is_empty(core: GatewayCore) -> None:
    fallback = core.provider_models("nobody").handle(404, {}, b"")
    result = fallback.handle(200, {}, encoded(MODELS_ANSWER))
    assert result.provider == "nobody"
    assert result.total == 0
    assert result["total"] == 0
    assert result.models == []
    assert result["models"] == []


def test_fallback_accepts_a_bare_model_array(core: GatewayCore) -> None:
    fallback = core.providers().handle(404, {}, b"")
    assert fallback.handle(200, {}, encoded(MODELS_ANSWER["data"])) == [
        "openai",
        "anthropic",
        "google",
    ]


def test_fallback_that_fails_raises_the_typed_error(core: GatewayCore) -> None:
    fallback = core.providers().handle(404, {}, b"")
    with pytest.raises(GatewayModelNotFoundError):
        fallback.handle(404, {}, b'{"detail": "Not Found"}')
    with pytest.raises(GatewayResponseError):
        fallback.handle(200, {}, b'{"data": 3}')


@pytest.mark.parametrize(
    ("status", "error_class"), [s for s in STATUS_ERRORS if s[0] not in (404, 405)]
)
@pytest.mark.parametrize("name", ["providers", "provider_models"])
def test_other_statuses_on_provider_routes_do_not_fall_back(
    core: GatewayCore, name: str, status: int, error_class: type[Exception]
) -> None:
    with pytest.raises(GatewayClientError) as caught:
        _call(core, name).handle(status, {}, b'{"error": {"message": "no"}}')
    assert type(caught.value) is error_class


@pytest.mark.parametrize("status", [404, 405])
@pytest.mark.parametrize("name", ["chat", "embed", "models"])
def test_other_routes_never_fall_back(core: GatewayCore, name: str, status: int) -> None:
    with pytest.raises(GatewayClientError):
        _call(core, name).handle(status, {}, b'{"detail": "Not Found"}')


# -- the usage tracker ------------------------------------------------------------------------


def test_tracker_starts_empty() -> None:
    tracker = UsageTracker()
    assert tracker.total == UsageTotals(0, 0, 0, 0)
    assert tracker.by_model == {}


def test_tracker_sums_totals_and_per_model() -> None:
    tracker = UsageTracker()
    tracker.record("a", {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    tracker.record("b", {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30})
    tracker.record("a", {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9, "x": 1})
    assert tracker.total == UsageTotals(15, 27, 42, 3)
    assert tracker.by_model == {"a": UsageTotals(5, 7, 12, 2), "b": UsageTotals(10, 20, 30, 1)}
    totals = tracker.total
    assert (totals.prompt_tokens, totals.completion_tokens, totals.total_tokens) == (15, 27, 42)
    assert totals.requests == 3


@pytest.mark.parametrize(
    "usage",
    [None, {}, {"prompt_tokens": None}, {"prompt_tokens": "5"}, [], "x", {"total_tokens": True}],
)
def test_missing_or_odd_usage_counts_a_request_and_no_tokens(usage: Any) -> None:
    tracker = UsageTracker()
    tracker.record("m", usage)
    assert tracker.total == UsageTotals(0, 0, 0, 1)
    assert tracker.by_model == {"m": UsageTotals(0, 0, 0, 1)}


def test_tracker_reset_forgets_everything() -> None:
    tracker = UsageTracker()
    tracker.record("a", {"total_tokens": 3})
    tracker.reset()
    assert tracker.total == UsageTotals()
    assert tracker.by_model == {}
    tracker.record("b", {"total_tokens": 1})
    assert tracker.by_model == {"b": UsageTotals(0, 0, 1, 1)}


def test_by_model_is_a_snapshot() -> None:
    tracker = UsageTracker()
    tracker.record("a", {"total_tokens": 3})
    snapshot = tracker.by_model
    snapshot["b"] = UsageTotals(1, 1, 1, 1)
    tracker.record("a", {"total_tokens": 3})
    assert "b" not in tracker.by_model
    assert snapshot["a"].total_tokens == 3


def test_tracker_is_exact_under_threads() -> None:
    tracker = UsageTracker()
    threads_count, per_thread = 8, 2000
    barrier = threading.Barrier(threads_count)
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}

    def hammer(number: int) -> None:
        barrier.wait()
        for _ in range(per_thread):
            tracker.record(f"model-{number % 2}", usage)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    calls = threads_count * per_thread
    assert tracker.total == UsageTotals(calls, 2 * calls, 3 * calls, calls)
    assert tracker.by_model == {
        "model-0": UsageTotals(calls // 2, calls, 3 * calls // 2, calls // 2),
        "model-1": UsageTotals(calls // 2, calls, 3 * calls // 2, calls // 2),
    }


def test_tracker_repr_shows_totals() -> None:
    tracker = UsageTracker()
    tracker.record("a", {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    assert "total_tokens=3" in repr(tracker)


# -- JSON in and out: the fast paths agree with the json module -----------------------------------


_ANSWERS = [
    b'{"a": 1}',
    b'{"a": 1}\n',
    b'{"a": 1}\r\n  \t',
    b'  {"a": 1}',
    b"\n[1, 2]",
    b'"text"',
    b"123",
    b"NaN",
    '{"caf\u00e9": "\u20ac \U0001f600"}'.encode(),
    b'\xef\xbb\xbf{"bom": true}',  # UTF-8 with a byte order mark
    '{"utf16": 1}'.encode("utf-16"),  # json.loads(bytes) detects UTF-16 and -32
    '{"utf32": 1}'.encode("utf-32-le"),
]


@pytest.mark.parametrize("body", _ANSWERS)
def test_decoding_an_answer_gives_what_json_loads_gives(body: bytes) -> None:
    decoded = core_module.decode_json(body)
    expected = json.loads(body)
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(decoded)
    else:
        assert decoded == expected and type(decoded) is type(expected)


@pytest.mark.parametrize(
    "body",
    [b'{"a": 1}x', b'{"a": 1}\x0c', '{"a": 1}\u00a0'.encode(), b'{"a": 1} {}', b"{", b"\xff{}"],
)
def test_what_json_loads_refuses_is_not_valid_json(body: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(body)
    with pytest.raises(GatewayResponseError, match="not valid JSON"):
        core_module.decode_json(body)


@pytest.mark.parametrize("body", [b"", b"  \r\n"])
def test_an_empty_answer_is_named_so(body: bytes) -> None:
    with pytest.raises(GatewayResponseError, match="empty body"):
        core_module.decode_json(body)


def test_an_answer_nested_too_deeply_is_a_response_error() -> None:
    with pytest.raises(GatewayResponseError, match="not valid JSON"):
        core_module.decode_json(b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize(
    "body",
    [
        {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        {"caf\u00e9": '\u20ac \U0001f600 \\ " \n \x00', "n": [1, -2.5, 1e300, True, None]},
        {"nested": {"list": [[], {}, [{"a": [1]}]]}, "big": 10**30},
    ],
)
def test_a_request_is_encoded_as_json_dumps_would(body: Any) -> None:
    expected = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    assert encode_json(body) == expected.encode("utf-8")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"t": float("nan")}, "Out of range float values"),
        ({"t": float("inf")}, "Out of range float values"),
        ({"t": object()}, "Object of type object is not JSON serializable"),
        ({1.5j: 1}, "keys must be str"),
    ],
)
def test_what_json_cannot_carry_is_refused_by_name(body: Any, words: str) -> None:
    with pytest.raises(GatewayValidationError, match="cannot be sent as JSON: " + words):
        encode_json(body)


def test_a_request_that_holds_itself_is_refused() -> None:
    looped: Any = {"model": "m"}
    looped["again"] = [looped]
    with pytest.raises(GatewayValidationError, match="nested too deeply \\(or it holds itself\\)"):
        encode_json(looped)


def test_encoding_is_safe_from_many_threads_on_the_same_body() -> None:
    # The encoder is made once and shared: it must keep no state between calls.
    body = {"messages": [{"role": "user", "content": "x" * 1000}] * 50}
    expected = encode_json(body)
    results: list[bytes] = []

    def encode() -> None:
        results.extend(encode_json(body) for _ in range(200))

    threads = [threading.Thread(target=encode) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 800 and all(result == expected for result in results)
