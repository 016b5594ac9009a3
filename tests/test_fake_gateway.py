"""FakeGateway, checked from the outside with plain requests and aiohttp on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import socket
import struct
import threading
import time
from typing import Any, Dict, Iterator, List

import aiohttp
import pytest
import requests

from gatewayclient.testing import (
    MODELS,
    PROVIDERS,
    FakeGateway,
    count_tokens,
    expected_embedding,
    expected_reply,
    expected_tool_call,
    expected_usage,
)
from gatewayclient.testing.plugin import (  # noqa: F401  (the plugin's fixtures)
    async_gateway_client,
    fake_gateway,
    gateway_client,
)

REFERENCE_MODELS = [
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "openai/text-embedding-3-small",
    "anthropic/claude-sonnet-4-20250514",
    "anthropic/claude-haiku-4-20250414",
    "google/gemini-2.0-flash",
    "mistral/mistral-large-latest",
]
HELLO = [{"role": "user", "content": "Hello there, gateway!"}]
STREAM = {"model": "openai/gpt-4o", "messages": HELLO, "stream": True}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
        },
    },
}


@pytest.fixture
def gw(fake_gateway: FakeGateway) -> FakeGateway:  # noqa: F811
    return fake_gateway


@pytest.fixture
def http(gw: FakeGateway) -> Iterator[requests.Session]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {gw.token}"
    with session:
        yield session


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No scripted fault may make aiohttp or asyncio log a warning or an error."""
    caplog.set_level(logging.WARNING)
    yield
    noisy = [r for r in caplog.records if r.name.startswith(("aiohttp", "asyncio"))]
    assert not noisy, [r.getMessage() for r in noisy]


def chat(http: requests.Session, gw: FakeGateway, **body: Any) -> requests.Response:
    body.setdefault("model", "openai/gpt-4o")
    body.setdefault("messages", HELLO)
    return http.post(f"{gw.api_url}/chat/completions", json=body)


def split_events(raw: bytes) -> List[bytes]:
    """The ``data:`` payloads of an SSE body, checking LF-only framing and one line per event."""
    assert b"\r" not in raw
    assert raw.endswith(b"\n\n")
    blocks = raw.split(b"\n\n")
    assert blocks[-1] == b""
    payloads = []
    for block in blocks[:-1]:
        assert block.startswith(b"data: ") and b"\n" not in block, block
        payloads.append(block[len(b"data: ") :])
    return payloads


def chunks_of(raw: bytes) -> List[Dict[str, Any]]:
    payloads = split_events(raw)
    assert payloads[-1] == b"[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


def assert_error(resp: requests.Response, status: int, type_: str, code: Any = None) -> None:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["type"] == type_
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code


# -- lifecycle -------------------------------------------------------------------------------


def gateway_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "FakeGateway"]


def test_start_and_stop_leave_no_thread_and_free_the_port() -> None:
    before = len(gateway_threads())
    gateway = FakeGateway().start()
    port = gateway.port
    assert len(gateway_threads()) == before + 1
    assert requests.get(f"{gateway.url}/health", timeout=5).json() == {"status": "ok"}
    gateway.stop()
    assert len(gateway_threads()) == before
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    with pytest.raises(RuntimeError):
        gateway.port  # noqa: B018


def test_addresses_and_token(gw: FakeGateway) -> None:
    assert gw.host == "127.0.0.1"
    assert gw.url == f"http://127.0.0.1:{gw.port}"
    assert gw.api_url == gw.url + "/v1"
    assert gw.token == "test-token"
    assert gw.url in repr(gw)


def test_starting_twice_or_on_a_taken_port_fails(gw: FakeGateway) -> None:
    before = len(gateway_threads())
    with pytest.raises(RuntimeError):
        gw.start()
    with pytest.raises(OSError):
        FakeGateway(port=gw.port).start()
    assert len(gateway_threads()) == before


def test_a_stopped_gateway_starts_again() -> None:
    before = len(gateway_threads())
    gateway = FakeGateway(token="t")
    for _ in range(2):
        with gateway:
            assert requests.get(f"{gateway.url}/health", timeout=5).status_code == 200
    assert len(gateway_threads()) == before


def test_async_with_serves_from_the_running_loop() -> None:
    before = len(gateway_threads())

    async def main() -> Dict[str, Any]:
        async with FakeGateway(token="async-token") as gateway:
            assert len(gateway_threads()) == before
            headers = {"Authorization": "Bearer async-token"}
            async with aiohttp.ClientSession() as session:
                url = f"{gateway.api_url}/chat/completions"
                async with session.post(
                    url, json={"model": "openai/gpt-4o", "messages": HELLO}, headers=headers
                ) as resp:
                    return dict(await resp.json())

    body = asyncio.run(main())
    assert body["choices"][0]["message"]["content"] == expected_reply("openai/gpt-4o", HELLO)


def test_stop_does_not_wait_for_a_stalled_request() -> None:
    before = len(gateway_threads())
    gateway = FakeGateway().start()
    gateway.stall(30)
    outcome: List[Any] = []

    def call() -> None:
        try:
            outcome.append(requests.get(f"{gateway.api_url}/models", timeout=10).status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    while not gateway.requests:
        time.sleep(0.01)
    started = time.monotonic()
    gateway.stop()
    caller.join(5)
    assert time.monotonic() - started < 1.0
    assert outcome and len(gateway_threads()) == before


def test_reset_forgets_what_a_test_changed() -> None:
    with FakeGateway(rpm_limit=5) as gateway, requests.Session() as session:
        gateway.add_token("extra")
        gateway.rpm_limit = 1
        gateway.fail(500)
        session.get(f"{gateway.api_url}/models", headers={"Authorization": "Bearer extra"})
        gateway.reset()
        assert (gateway.requests, gateway.pending_faults, gateway.rpm_limit) == ([], [], 5)
        resp = session.get(f"{gateway.api_url}/models", headers={"Authorization": "Bearer extra"})
        assert resp.status_code == 401


def test_run_blocks_until_stop() -> None:
    gateway = FakeGateway()
    listening = threading.Event()
    runner = threading.Thread(target=gateway.run, kwargs={"ready": lambda g: listening.set()})
    runner.start()
    assert listening.wait(5)
    assert requests.get(f"{gateway.url}/health", timeout=5).status_code == 200
    gateway.stop()
    runner.join(5)
    assert not runner.is_alive()


# -- routes ----------------------------------------------------------------------------------


def test_health_needs_no_token(gw: FakeGateway) -> None:
    resp = requests.get(f"{gw.url}/health", timeout=5)
    assert resp.status_code == 200
    assert resp.headers["x-request-id"].startswith("req_")


def test_models_list_holds_every_reference_model(gw: FakeGateway, http: requests.Session) -> None:
    body = http.get(f"{gw.api_url}/models").json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert set(REFERENCE_MODELS) <= set(ids)
    assert {"azure/gpt-4o", "mistral/mistral-embed", "google/text-embedding-004"} <= set(ids)
    for model in body["data"]:
        assert model == {
            "id": model["id"],
            "object": "model",
            "created": 1700000000,
            "owned_by": model["id"].split("/")[0],
        }


def test_model_ids_with_a_slash_are_retrieved(gw: FakeGateway, http: requests.Session) -> None:
    for path in ("anthropic/claude-sonnet-4-20250514", "anthropic%2Fclaude-sonnet-4-20250514"):
        body = http.get(f"{gw.api_url}/models/{path}").json()
        assert body["id"] == "anthropic/claude-sonnet-4-20250514"
        assert body["owned_by"] == "anthropic"
    assert_error(
        http.get(f"{gw.api_url}/models/openai/nope"), 404, "not_found_error", "model_not_found"
    )


def test_providers_and_their_models(gw: FakeGateway, http: requests.Session) -> None:
    assert http.get(f"{gw.api_url}/providers").json() == list(PROVIDERS)
    assert set(PROVIDERS) == {"openai", "anthropic", "google", "mistral", "azure"}
    body = http.get(f"{gw.api_url}/providers/openai/models").json()
    assert body["provider"] == "openai"
    assert body["total"] == len(body["models"]) == 4
    assert {m["id"] for m in body["models"]} == {m.id for m in MODELS if m.provider == "openai"}
    assert_error(http.get(f"{gw.api_url}/providers/nobody/models"), 404, "not_found_error")


def test_unknown_route_and_wrong_method_answer_error_envelopes(
    gw: FakeGateway, http: requests.Session
) -> None:
    assert_error(http.get(f"{gw.api_url}/nothing-here"), 404, "not_found_error")
    resp = http.get(f"{gw.api_url}/chat/completions")
    assert_error(resp, 405, "invalid_request_error")
    assert "POST" in resp.headers["Allow"]
    assert resp.headers["x-request-id"]


def test_every_response_has_a_distinct_request_id(gw: FakeGateway, http: requests.Session) -> None:
    gw.fail(500)
    responses = [
        http.get(f"{gw.api_url}/models"),
        http.get(f"{gw.api_url}/models"),
        requests.get(f"{gw.api_url}/models", timeout=5),
        chat(http, gw, model="openai/none"),
    ]
    assert [r.status_code for r in responses] == [500, 200, 401, 404]
    ids = [r.headers["x-request-id"] for r in responses]
    assert len(set(ids)) == 4
    assert [r.request_id for r in gw.requests] == ids


# -- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token", "Bearer ", "Basic test-token", "test-token"]
)
def test_missing_or_unknown_token_is_401(gw: FakeGateway, header: Any) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = requests.get(f"{gw.api_url}/models", headers=headers, timeout=5)
    assert_error(resp, 401, "authentication_error", "invalid_api_key")
    assert "test-token" not in resp.text


def test_a_restricted_token_gets_403_for_other_models(gw: FakeGateway) -> None:
    gw.add_token("limited", models=["openai/gpt-4o-mini"])
    with requests.Session() as session:
        session.headers["Authorization"] = "Bearer limited"
        assert chat(session, gw, model="openai/gpt-4o-mini").status_code == 200
        resp = chat(session, gw, model="openai/gpt-4o")
        assert_error(resp, 403, "permission_error")
        listed = session.get(f"{gw.api_url}/models").json()["data"]
        assert [m["id"] for m in listed] == ["openai/gpt-4o-mini"]
        assert session.get(f"{gw.api_url}/providers/openai/models").json()["total"] == 1


# -- chat ------------------------------------------------------------------------------------


def test_chat_answer_is_deterministic(gw: FakeGateway, http: requests.Session) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the answer?"},
    ]
    body = chat(http, gw, model="anthropic/claude-haiku-4-20250414", messages=messages).json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert body["model"] == "anthropic/claude-haiku-4-20250414"
    text = "Hello from anthropic/claude-haiku-4-20250414! You said: What is the answer?"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    ]
    # prompt: (3 + 3) + (4 + 3) words and overheads; completion: 9 words.
    assert body["usage"] == {"prompt_tokens": 13, "completion_tokens": 9, "total_tokens": 22}
    assert body["usage"] == expected_usage(body["model"], messages)


def test_max_tokens_truncates_with_finish_reason_length(
    gw: FakeGateway, http: requests.Session
) -> None:
    body = chat(http, gw, max_tokens=3).json()
    assert body["choices"][0]["message"]["content"] == "Hello from openai/gpt-4o!"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    long_enough = chat(http, gw, max_tokens=100).json()
    assert long_enough["choices"][0]["finish_reason"] == "stop"
    assert long_enough["choices"][0]["message"]["content"] == expected_reply(
        "openai/gpt-4o", HELLO, 100
    )


def test_n_choices_and_text_parts(gw: FakeGateway, http: requests.Session) -> None:
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "parts"}],
        }
    ]
    body = chat(http, gw, messages=messages, n=2, user="someone", temperature=0.2, top_p=1).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["choices"][1]["message"]["content"].endswith("You said: two parts")
    assert body["usage"] == expected_usage("openai/gpt-4o", messages, n=2)
    assert body["usage"]["completion_tokens"] == 2 * count_tokens(
        expected_reply("openai/gpt-4o", messages)
    )


def test_tools_answer_with_one_call_to_the_first_tool(
    gw: FakeGateway, http: requests.Session
) -> None:
    body = chat(http, gw, tools=[WEATHER_TOOL]).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call == expected_tool_call([WEATHER_TOOL])
    assert call["id"] == "call_0" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {
        "city": "test",
        "unit": "celsius",
        "days": 1,
    }
    assert body["usage"] == expected_usage("openai/gpt-4o", HELLO, tools=[WEATHER_TOOL])
    plain = chat(http, gw, tools=[WEATHER_TOOL], tool_choice="none").json()
    assert plain["choices"][0]["message"]["content"] == expected_reply("openai/gpt-4o", HELLO)


@pytest.mark.parametrize(
    ("changes", "status", "type_"),
    [
        ({"temperature": 2.5}, 400, "invalid_request_error"),
        ({"temperature": -0.1}, 400, "invalid_request_error"),
        ({"top_p": 1.5}, 400, "invalid_request_error"),
        ({"max_tokens": 0}, 400, "invalid_request_error"),
        ({"n": 0}, 400, "invalid_request_error"),
        ({"messages": []}, 400, "invalid_request_error"),
        ({"messages": [{"content": "no role"}]}, 400, "invalid_request_error"),
        ({"model": ""}, 400, "invalid_request_error"),
        ({"stream_options": {"include_usage": True}}, 400, "invalid_request_error"),
        ({"model": "openai/text-embedding-3-small"}, 400, "invalid_request_error"),
        ({"model": "openai/gpt-5-ultra"}, 404, "not_found_error"),
    ],
)
def test_chat_rejects_what_the_real_api_rejects(
    gw: FakeGateway, http: requests.Session, changes: Dict[str, Any], status: int, type_: str
) -> None:
    assert_error(chat(http, gw, **changes), status, type_)


def test_bad_json_and_missing_fields_are_400(gw: FakeGateway, http: requests.Session) -> None:
    url = f"{gw.api_url}/chat/completions"
    assert_error(
        http.post(url, data=b'{"model": ', headers={"Content-Type": "application/json"}),
        400,
        "invalid_request_error",
    )
    assert_error(http.post(url, json={"messages": HELLO}), 400, "invalid_request_error")
    assert_error(http.post(url, json={"model": "openai/gpt-4o"}), 400, "invalid_request_error")
    assert_error(http.post(url, json=["not", "an", "object"]), 400, "invalid_request_error")
    assert_error(http.post(url), 400, "invalid_request_error")


# -- streaming -------------------------------------------------------------------------------


def test_stream_framing_byte_by_byte(gw: FakeGateway, http: requests.Session) -> None:
    resp = chat(http, gw, stream=True)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    chunks = chunks_of(resp.content)
    assert len({(c["id"], c["created"], c["model"], c["object"]) for c in chunks}) == 1
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert all("usage" not in c for c in chunks)
    assert chunks[0]["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    ]
    words = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert words[:3] == ["Hello ", "from ", "openai/gpt-4o! "]
    assert "".join(words) == expected_reply("openai/gpt-4o", HELLO)
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]


def test_stream_usage_chunk_only_when_asked(gw: FakeGateway, http: requests.Session) -> None:
    raw = chat(http, gw, stream=True, max_tokens=2, stream_options={"include_usage": True}).content
    chunks = chunks_of(raw)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == expected_usage("openai/gpt-4o", HELLO, 2)
    assert raw.endswith(b"}\n\ndata: [DONE]\n\n")


def test_stream_of_n_choices(gw: FakeGateway, http: requests.Session) -> None:
    chunks = chunks_of(chat(http, gw, stream=True, n=2).content)
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        text = "".join(ch["delta"].get("content") or "" for ch in mine)
        assert text == expected_reply("openai/gpt-4o", HELLO)
        assert mine[-1]["finish_reason"] == "stop"


def test_tool_call_stream_splits_the_arguments(gw: FakeGateway, http: requests.Session) -> None:
    chunks = chunks_of(chat(http, gw, stream=True, tools=[WEATHER_TOOL]).content)
    head = chunks[0]["choices"][0]["delta"]
    assert head["role"] == "assistant" and head["content"] is None
    first = head["tool_calls"][0]
    assert (first["index"], first["id"], first["type"]) == (0, "call_0", "function")
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    pieces = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:-1]]
    assert len(pieces) > 2
    assert all(set(p) == {"index", "function"} and p["index"] == 0 for p in pieces)
    arguments = "".join(p["function"]["arguments"] for p in pieces)
    assert arguments == expected_tool_call([WEATHER_TOOL])["function"]["arguments"]  # type: ignore[index]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "tool_calls"}


def test_stream_arrives_event_by_event_to_aiohttp(gw: FakeGateway) -> None:
    async def main() -> List[bytes]:
        headers = {"Authorization": f"Bearer {gw.token}"}
        async with aiohttp.ClientSession(headers=headers) as session:  # noqa: SIM117 (3.9: no parenthesized with)
            async with session.post(f"{gw.api_url}/chat/completions", json=STREAM) as resp:
                return [line async for line in resp.content]

    lines = asyncio.run(main())
    assert lines[-2:] == [b"data: [DONE]\n", b"\n"]
    assert lines[1::2] == [b"\n"] * (len(lines) // 2)


# -- embeddings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "dims"),
    [
        ("openai/text-embedding-3-small", 1536),
        ("openai/text-embedding-3-large", 3072),
        ("google/text-embedding-004", 768),
        ("mistral/mistral-embed", 1024),
        ("azure/text-embedding-ada-002", 1536),
    ],
)
def test_embeddings_are_unit_vectors_of_the_model_dimension(
    gw: FakeGateway, http: requests.Session, model: str, dims: int
) -> None:
    texts = ["first text here", "second"]
    body = http.post(f"{gw.api_url}/embeddings", json={"model": model, "input": texts}).json()
    assert body["object"] == "list" and body["model"] == model
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert [d["index"] for d in body["data"]] == [0, 1]
    for item, text in zip(body["data"], texts):
        assert item["object"] == "embedding"
        vector = item["embedding"]
        assert len(vector) == dims
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-5)
        assert vector == expected_embedding(model, text)
    assert body["data"][0]["embedding"] != body["data"][1]["embedding"]


def test_embeddings_in_base64_and_fewer_dimensions(gw: FakeGateway, http: requests.Session) -> None:
    url = f"{gw.api_url}/embeddings"
    model = "openai/text-embedding-3-small"
    body = http.post(url, json={"model": model, "input": "hi", "encoding_format": "base64"}).json()
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == expected_embedding(model, "hi")
    short = http.post(url, json={"model": model, "input": "hi", "dimensions": 8}).json()
    assert short["data"][0]["embedding"] == expected_embedding(model, "hi", 8)
    assert_error(
        http.post(url, json={"model": model, "input": "hi", "dimensions": 5000}),
        400,
        "invalid_request_error",
    )


@pytest.mark.parametrize("value", ["", [], [""], ["ok", 3], None])
def test_empty_or_bad_embedding_input_is_400(
    gw: FakeGateway, http: requests.Session, value: Any
) -> None:
    resp = http.post(
        f"{gw.api_url}/embeddings", json={"model": "mistral/mistral-embed", "input": value}
    )
    assert_error(resp, 400, "invalid_request_error")


def test_chat_models_do_not_embed(gw: FakeGateway, http: requests.Session) -> None:
    resp = http.post(f"{gw.api_url}/embeddings", json={"model": "openai/gpt-4o", "input": "x"})
    assert_error(resp, 400, "invalid_request_error")


# -- rate limit ------------------------------------------------------------------------------


def test_rpm_limit_answers_429_with_retry_after() -> None:
    now = [1000.0]
    with FakeGateway(rpm_limit=2, clock=lambda: now[0]) as gateway, requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {gateway.token}"
        url = f"{gateway.api_url}/models"
        first, second = session.get(url), session.get(url)
        assert [r.headers["x-ratelimit-remaining-requests"] for r in (first, second)] == ["1", "0"]
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-reset-requests"] == "60s"
        now[0] += 47.5
        limited = session.get(url)
        assert_error(limited, 429, "rate_limit_error", "rate_limit_exceeded")
        assert limited.headers["Retry-After"] == "13"
        assert limited.headers["x-ratelimit-remaining-requests"] == "0"
        assert limited.headers["x-ratelimit-reset-requests"] == "13s"
        gateway.add_token("other")
        assert session.get(url, headers={"Authorization": "Bearer other"}).status_code == 200
        now[0] += 12.5
        assert session.get(url).status_code == 200
        session.get(url)
        assert session.get(url).status_code == 429
        gateway.reset_rate_limit()
        assert session.get(url).status_code == 200
        gateway.rpm_limit = None
        assert all(session.get(url).status_code == 200 for _ in range(3))


def test_retry_after_override_may_be_fractional() -> None:
    with FakeGateway(rpm_limit=1, retry_after=0.05) as gateway, requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {gateway.token}"
        assert chat(session, gateway).status_code == 200
        resp = chat(session, gateway, stream=True)
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] == "0.05"
        assert resp.headers["x-ratelimit-reset-requests"] == "0.05s"


# -- scripted faults -------------------------------------------------------------------------


def test_fail_then_normal_service(gw: FakeGateway, http: requests.Session) -> None:
    gw.fail(503, times=2)
    gw.fail(429, retry_after=1.5, headers={"retry-after-ms": "1500"})
    statuses = [chat(http, gw) for _ in range(4)]
    assert [r.status_code for r in statuses] == [503, 503, 429, 200]
    assert_error(statuses[0], 503, "server_error")
    assert_error(statuses[2], 429, "rate_limit_error")
    assert statuses[2].headers["Retry-After"] == "1.5"
    assert statuses[2].headers["retry-after-ms"] == "1500"
    assert not gw.pending_faults


@pytest.mark.parametrize(
    ("status", "type_"),
    [
        (502, "provider_error"),
        (529, "overloaded_error"),
        (500, "server_error"),
        (401, "authentication_error"),
        (404, "not_found_error"),
        (422, "invalid_request_error"),
    ],
)
def test_fail_envelope_type_follows_the_status(
    gw: FakeGateway, http: requests.Session, status: int, type_: str
) -> None:
    gw.fail(status)
    assert_error(http.get(f"{gw.api_url}/models"), status, type_)


def test_fail_with_a_custom_body(gw: FakeGateway, http: requests.Session) -> None:
    gw.fail(500, body={"detail": "boom"})
    gw.fail(500, body="plain words")
    assert http.get(f"{gw.api_url}/models").json() == {"detail": "boom"}
    resp = http.get(f"{gw.api_url}/models")
    assert resp.text == "plain words" and resp.headers["Content-Type"].startswith("text/plain")


def test_a_fault_with_a_path_waits_for_that_route(gw: FakeGateway, http: requests.Session) -> None:
    gw.fail(500, path="/v1/embeddings")
    assert http.get(f"{gw.api_url}/models").status_code == 200
    assert chat(http, gw).status_code == 200
    assert len(gw.pending_faults) == 1
    resp = http.post(
        f"{gw.api_url}/embeddings", json={"model": "mistral/mistral-embed", "input": "x"}
    )
    assert resp.status_code == 500
    gw.fail(500)
    gw.clear_faults()
    assert http.get(f"{gw.api_url}/models").status_code == 200


def test_fault_arguments_are_checked(gw: FakeGateway) -> None:
    with pytest.raises(ValueError):
        gw.fail(500, times=0)
    with pytest.raises(ValueError):
        gw.stall(1, when="mid_body")
    with pytest.raises(ValueError):
        gw.reset_connection(when="mid_stream")


def test_reset_before_headers_is_a_connection_error(
    gw: FakeGateway, http: requests.Session
) -> None:
    gw.reset_connection(times=2)
    with pytest.raises(requests.ConnectionError):
        http.get(f"{gw.api_url}/models")

    # A POST: aiohttp itself retries an idempotent method (GET) once after a reset.
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.post(f"{gw.api_url}/chat/completions", json={})

    asyncio.run(main())
    assert not gw.pending_faults
    assert http.get(f"{gw.api_url}/models").status_code == 200


def test_reset_mid_body_breaks_the_body_after_the_headers(
    gw: FakeGateway, http: requests.Session
) -> None:
    gw.reset_connection(when="mid_body")
    resp = http.get(f"{gw.api_url}/models", stream=True)
    assert resp.status_code == 200
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        resp.content  # noqa: B018
    gw.reset_connection(when="mid_body", after=2)
    resp = http.post(f"{gw.api_url}/chat/completions", json=STREAM, stream=True)
    received = b""
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        for piece in resp.iter_content(chunk_size=None):
            received += piece
    assert received.count(b"\n\n") <= 2 and b"[DONE]" not in received


def test_cut_stream_ends_without_done(gw: FakeGateway, http: requests.Session) -> None:
    gw.cut_stream(after=3, times=2)
    assert chat(http, gw).status_code == 200  # not a stream: the cut waits
    resp = http.post(f"{gw.api_url}/chat/completions", json=STREAM, stream=True)
    received = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for piece in resp.iter_content(chunk_size=None):
            received += piece
    assert len(split_events(received)) == 3 and b"[DONE]" not in received

    async def main() -> bytes:
        headers = {"Authorization": f"Bearer {gw.token}"}
        got = b""
        async with aiohttp.ClientSession(headers=headers) as session:
            with pytest.raises(aiohttp.ClientPayloadError):
                async with session.post(f"{gw.api_url}/chat/completions", json=STREAM) as resp:
                    async for piece in resp.content.iter_any():
                        got += piece
        return got

    assert len(split_events(asyncio.run(main()))) == 3


def test_stall_before_headers_fires_a_read_timeout(gw: FakeGateway, http: requests.Session) -> None:
    gw.stall(0.6)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(f"{gw.api_url}/models", timeout=0.2)
    assert time.monotonic() - started < 0.5
    assert http.get(f"{gw.api_url}/models", timeout=5).status_code == 200
    gw.stall(0.1)
    assert http.get(f"{gw.api_url}/models", timeout=5).status_code == 200


def test_stall_before_headers_of_a_stream_stalls_once(
    gw: FakeGateway, http: requests.Session
) -> None:
    gw.stall(0.4)
    started = time.monotonic()
    chunks = chunks_of(chat(http, gw, stream=True).content)
    assert 0.4 <= time.monotonic() - started < 0.75
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_stall_mid_stream_after_the_first_chunks(gw: FakeGateway, http: requests.Session) -> None:
    gw.stall(0.6, when="mid_stream", after=2)
    resp = http.post(f"{gw.api_url}/chat/completions", json=STREAM, stream=True, timeout=(5, 0.2))
    received = b""
    with pytest.raises(requests.exceptions.ConnectionError):
        for piece in resp.iter_content(chunk_size=None):
            received += piece
    resp.close()
    assert len(split_events(received)) == 2
    gw.stall(0.1, when="mid_stream", after=1)
    chunks = chunks_of(http.post(f"{gw.api_url}/chat/completions", json=STREAM).content)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == expected_reply(
        "openai/gpt-4o", HELLO
    )


def test_malformed_html_and_empty_bodies(gw: FakeGateway, http: requests.Session) -> None:
    gw.malformed_body()
    gw.html_error()
    gw.empty_body(503)
    broken = chat(http, gw)
    assert broken.status_code == 200 and broken.headers["Content-Type"].startswith(
        "application/json"
    )
    with pytest.raises(ValueError):
        json.loads(broken.content)
    html = chat(http, gw)
    assert html.status_code == 502 and html.headers["Content-Type"].startswith("text/html")
    assert "<center><h1>502 Bad Gateway</h1></center>" in html.text
    empty = chat(http, gw)
    assert empty.status_code == 503 and empty.content == b""


@pytest.mark.parametrize("after", [0, 2])
def test_stream_error_is_an_event_and_no_done(
    gw: FakeGateway, http: requests.Session, after: int
) -> None:
    error = {"message": "overloaded", "type": "overloaded_error", "code": "529"}
    gw.stream_error(error, after=after)
    resp = chat(http, gw, stream=True)
    assert resp.status_code == 200
    payloads = split_events(resp.content)
    assert len(payloads) == after + 1
    assert json.loads(payloads[-1]) == {"error": error}
    gw.stream_error()
    assert (
        json.loads(split_events(chat(http, gw, stream=True).content)[0])["error"]["type"]
        == "provider_error"
    )


def test_faults_are_served_in_order_and_used_up(gw: FakeGateway, http: requests.Session) -> None:
    gw.fail(500)
    gw.html_error(502, times=2)
    gw.fail(504)
    assert [f.kind for f in gw.pending_faults] == ["status", "html", "status"]
    statuses = [http.get(f"{gw.api_url}/models").status_code for _ in range(5)]
    assert statuses == [500, 502, 502, 504, 200]


# -- recorded requests -----------------------------------------------------------------------


def test_requests_are_recorded_with_credentials_redacted(
    gw: FakeGateway, http: requests.Session
) -> None:
    chat(http, gw, temperature=0.5, user="u-1")
    http.get(f"{gw.api_url}/models?limit=5", headers={"X-Api-Key": "secret"})
    http.post(
        f"{gw.api_url}/embeddings", data=b"not json", headers={"Content-Type": "application/json"}
    )
    first, second, third = gw.requests
    assert (first.method, first.path) == ("POST", "/v1/chat/completions")
    assert first.json == {
        "model": "openai/gpt-4o",
        "messages": HELLO,
        "temperature": 0.5,
        "user": "u-1",
    }
    assert first.headers["authorization"] == "Bearer ***"
    assert first.headers["content-type"] == "application/json"
    assert (second.method, second.query, second.json, second.body) == (
        "GET",
        {"limit": "5"},
        None,
        b"",
    )
    assert second.headers["x-api-key"] == "***"
    assert "test-token" not in repr(gw.requests)
    assert third.json is None and third.body == b"not json"
    gw.clear_requests()
    assert gw.requests == []


def test_requests_are_recorded_from_many_threads(gw: FakeGateway) -> None:
    def call(index: int) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {gw.token}"
            assert (
                chat(session, gw, messages=[{"role": "user", "content": f"n{index}"}]).status_code
                == 200
            )

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    said = sorted(r.json["messages"][0]["content"] for r in gw.requests)
    assert said == sorted(f"n{i}" for i in range(12))


# -- large bodies, error envelopes, what is recorded --------------------------------------------


def image_prompt(size: int) -> List[Dict[str, Any]]:
    """A user message with a text part and a base64 image of about ``size`` bytes."""
    data = base64.b64encode(b"\x89PNG" + bytes(size * 3 // 4)).decode()
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
            ],
        }
    ]


def test_a_large_image_prompt_is_answered_and_recorded(
    gw: FakeGateway, http: requests.Session
) -> None:
    messages = image_prompt(8 * 1024 * 1024)  # aiohttp's default limit is 1 MiB
    resp = chat(http, gw, messages=messages)
    assert resp.status_code == 200, resp.text[:200]
    assert resp.json()["choices"][0]["message"]["content"] == expected_reply(
        "openai/gpt-4o", messages
    )
    (recorded,) = gw.requests
    assert len(recorded.body) > 8 * 1024 * 1024
    assert recorded.json["messages"] == messages


def test_the_default_body_limit_admits_large_image_prompts() -> None:
    assert FakeGateway().max_body_size >= 64 * 1024 * 1024


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_413_in_the_envelope_and_recorded(chunked: bool) -> None:
    with FakeGateway(max_body_size=64 * 1024) as gw, requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {gw.token}"
        body = json.dumps({"model": "openai/gpt-4o", "messages": image_prompt(100 * 1024)})
        data: Any = iter([body.encode()]) if chunked else body.encode()
        url = f"{gw.api_url}/chat/completions"
        resp = http.post(url, data=data, headers={"Content-Type": "application/json"})
        assert_error(resp, 413, "invalid_request_error", "request_too_large")
        assert "65536" in resp.json()["error"]["message"]
        assert resp.headers["x-request-id"]
        (recorded,) = gw.requests
        assert (recorded.method, recorded.path, recorded.json, recorded.body) == (
            "POST",
            "/v1/chat/completions",
            None,
            b"",
        )
        assert recorded.request_id == resp.headers["x-request-id"]
        assert recorded.headers["authorization"] == "Bearer ***"
        small = chat(http, gw)  # the gateway still serves, on the same session
        assert small.status_code == 200
        assert len(gw.requests) == 2


def test_every_error_is_an_envelope(gw: FakeGateway, http: requests.Session) -> None:
    url = f"{gw.api_url}/chat/completions"
    assert_error(requests.get(f"{gw.url}/", timeout=5), 404, "not_found_error")
    assert_error(requests.get(f"{gw.url}/nope", timeout=5), 404, "not_found_error")
    assert_error(requests.post(f"{gw.url}/health", timeout=5), 405, "invalid_request_error")
    assert_error(http.get(f"{gw.api_url}/nothing-here"), 404, "not_found_error")
    assert_error(http.delete(url), 405, "invalid_request_error")
    assert_error(http.post(url, data=b"{", headers={"Content-Type": "application/json"}),
                 400, "invalid_request_error")  # fmt: skip
    assert_error(requests.post(url, json=STREAM, timeout=5), 401, "authentication_error")
    gw.fail(503)
    assert_error(http.get(f"{gw.api_url}/models"), 503, "server_error")


def test_every_v1_request_is_recorded_and_nothing_else() -> None:
    with FakeGateway(rpm_limit=1, max_body_size=1024) as gw, requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {gw.token}"
        assert requests.get(f"{gw.url}/health", timeout=5).status_code == 200
        assert requests.get(f"{gw.url}/nope", timeout=5).status_code == 404
        assert requests.post(f"{gw.url}/health", timeout=5).status_code == 405
        statuses = [
            http.get(f"{gw.api_url}/models").status_code,
            http.get(f"{gw.api_url}/models").status_code,  # over the rpm limit
            requests.get(f"{gw.api_url}/models", timeout=5).status_code,  # no token
            http.get(f"{gw.api_url}/nothing-here").status_code,
            http.put(f"{gw.api_url}/models").status_code,
            http.post(f"{gw.api_url}/embeddings", data=b"x" * 2048).status_code,
            http.get(f"{gw.url}/v1").status_code,
        ]
        assert statuses == [200, 429, 401, 404, 405, 413, 404]
        assert [(r.method, r.path) for r in gw.requests] == [
            ("GET", "/v1/models"),
            ("GET", "/v1/models"),
            ("GET", "/v1/models"),
            ("GET", "/v1/nothing-here"),
            ("PUT", "/v1/models"),
            ("POST", "/v1/embeddings"),
            ("GET", "/v1"),
        ]


# -- pytest plugin ---------------------------------------------------------------------------


def test_plugin_clients_talk_to_the_fake_gateway(
    fake_gateway: FakeGateway,  # noqa: F811
    gateway_client: Any,  # noqa: F811
    async_gateway_client: Any,  # noqa: F811
) -> None:
    reply = gateway_client.chat_completion("openai/gpt-4o", HELLO)
    assert reply["choices"][0]["message"]["content"] == expected_reply("openai/gpt-4o", HELLO)

    async def main() -> List[str]:
        async with async_gateway_client as client:
            return list(await client.list_known_providers())

    assert asyncio.run(main()) == list(PROVIDERS)
    assert [r.path for r in fake_gateway.requests] == ["/v1/chat/completions", "/v1/providers"]
