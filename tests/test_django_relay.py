"""Views using gatewayclient.contrib.django under Django's test Client and AsyncClient: answers
through gateway()/async_gateway(), and relay_stream/arelay_stream: the events as the gateway
sent them, errors before and after the first chunk, and a browser that goes away."""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List

import pytest
from django.http import JsonResponse
from django.urls import path
from django_support import SlowGateway, configure_django, sse_data, sse_text

from gatewayclient import GatewayClientError
from gatewayclient.contrib.django import arelay_stream, async_gateway, gateway, relay_stream
from gatewayclient.testing import FakeGateway, expected_reply

APP = "gatewayclient.contrib.django"
MODEL = "openai/gpt-4o-mini"
STREAMS: List[Any] = []  # every stream the views opened, held (as a traceback or a log may)


def user(text: str) -> List[Dict[str, Any]]:
    return [{"role": "user", "content": text}]


# -- the views under test (this module is the URLconf) -----------------------------------------


def ask(request: Any) -> Any:
    answer = gateway().chat_completion(MODEL, user(request.GET["q"]))
    return JsonResponse({"answer": answer.choices[0].message.content})


async def aask(request: Any) -> Any:
    answer = await async_gateway().chat_completion(MODEL, user(request.GET["q"]))
    return JsonResponse({"answer": answer.choices[0].message.content})


def relay(request: Any) -> Any:
    try:
        stream = gateway().stream_chat_completion(MODEL, user(request.GET["q"]))
        STREAMS.append(stream)
        return relay_stream(stream, format=request.GET.get("format", "sse"))
    except GatewayClientError as exc:  # before the first chunk: the view still chooses
        return JsonResponse({"error": type(exc).__name__}, status=502)


async def arelay(request: Any) -> Any:
    try:
        stream = async_gateway().stream_chat_completion(MODEL, user(request.GET["q"]))
        STREAMS.append(stream)
        return await arelay_stream(stream, format=request.GET.get("format", "sse"))
    except GatewayClientError as exc:
        return JsonResponse({"error": type(exc).__name__}, status=502)


urlpatterns = [path("ask", ask), path("aask", aask), path("relay", relay), path("arelay", arelay)]


@pytest.fixture
def site(gw: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGateway]:
    from django.test import override_settings

    configure_django()
    monkeypatch.delenv("PLATFORM_API_URL", raising=False)
    monkeypatch.delenv("AUTH_TOKEN", raising=False)
    value = {"BASE_URL": gw.url, "AUTH_TOKEN": gw.token, "RETRY_POLICY": {"backoff_base": 0}}
    with override_settings(INSTALLED_APPS=[APP], ROOT_URLCONF=__name__, GATEWAYCLIENT=value):
        yield gw
    STREAMS.clear()


def get(path: str) -> Any:
    from django.test import Client

    return Client().get(path)


def aget(path: str) -> Any:
    from django.test import AsyncClient

    return asyncio.run(AsyncClient().get(path))


async def body_of(response: Any) -> bytes:
    return b"".join([piece async for piece in response.streaming_content])


def relayed(kind: str, query: str) -> Any:
    """(response, body) of the sync relay under Client or the async one under AsyncClient."""
    if kind == "sync":
        response = get(f"/relay?{query}")
        return response, b"".join(response.streaming_content) if response.streaming else None

    async def run() -> Any:
        from django.test import AsyncClient

        response = await AsyncClient().get(f"/arelay?{query}")
        return response, (await body_of(response)) if response.streaming else None

    return asyncio.run(run())


# -- answers -----------------------------------------------------------------------------------


def test_a_sync_view_answers_under_the_test_client(site: FakeGateway) -> None:
    response = get("/ask?q=hello")
    assert response.status_code == 200
    assert response.json() == {"answer": expected_reply(MODEL, user("hello"))}


def test_an_async_view_answers_under_the_async_test_client(site: FakeGateway) -> None:
    response = aget("/aask?q=hello")
    assert response.status_code == 200
    assert response.json() == {"answer": expected_reply(MODEL, user("hello"))}


def test_concurrent_requests_each_get_their_own_answer(site: FakeGateway) -> None:
    from django.test import AsyncClient

    with ThreadPoolExecutor(max_workers=8) as pool:
        sync = list(pool.map(lambda i: get(f"/ask?q=thread+{i}").json()["answer"], range(24)))
    assert sync == [expected_reply(MODEL, user(f"thread {i}")) for i in range(24)]

    async def many() -> List[str]:
        client = AsyncClient()
        responses = await asyncio.gather(*(client.get(f"/aask?q=task+{i}") for i in range(24)))
        return [r.json()["answer"] for r in responses]

    assert asyncio.run(many()) == [expected_reply(MODEL, user(f"task {i}")) for i in range(24)]


# -- the relay ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_relay_sends_the_gateways_chunks_as_server_sent_events(
    site: FakeGateway, kind: str
) -> None:
    response, body = relayed(kind, "q=tell+me")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    assert sse_text(body) == expected_reply(MODEL, user("tell me"))
    relayed_chunks = [json.loads(data) for data in sse_data(body)[:-1]]
    direct = [chunk.to_dict() for chunk in gateway().stream_chat_completion(MODEL, user("tell me"))]
    assert [without_ids(c) for c in relayed_chunks] == [without_ids(c) for c in direct]


def without_ids(chunk: Dict[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in chunk.items() if key not in ("id", "created")}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_text_relay_sends_the_text_alone(site: FakeGateway, kind: str) -> None:
    response, body = relayed(kind, "q=plain+please&format=text")
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert body.decode() == expected_reply(MODEL, user("plain please"))


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_error_before_the_first_chunk_raises_in_the_view(site: FakeGateway, kind: str) -> None:
    site.fail(400)
    response, body = relayed(kind, "q=refused")
    assert (response.status_code, body) == (502, None)
    assert json.loads(response.content) == {"error": "GatewayBadRequestError"}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_error_after_the_first_chunk_ends_the_events_with_an_error_event(
    site: FakeGateway, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    site.cut_stream(after=2)
    with caplog.at_level(logging.WARNING, logger="gatewayclient"):
        response, body = relayed(kind, "q=cut+short")
    assert response.status_code == 200  # sent before the failure
    data = sse_data(body)
    assert len(data) == 3 and "[DONE]" not in data
    assert json.loads(data[-1])["error"]["type"] == "gateway_error"
    assert json.loads(data[-1])["error"]["message"]
    failures = [r for r in caplog.records if r.name == "gatewayclient.contrib.django"]
    assert [r.getMessage().split(":")[0] for r in failures] == [
        "relayed stream failed after 2 chunks"
    ]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_error_after_the_first_chunk_ends_the_text(site: FakeGateway, kind: str) -> None:
    site.cut_stream(after=2)
    _, body = relayed(kind, "q=cut+short&format=text")
    assert expected_reply(MODEL, user("cut short")).startswith(body.decode())
    assert len(body.decode()) < len(expected_reply(MODEL, user("cut short")))


def test_a_format_that_does_not_exist_is_refused_before_anything_is_sent(
    site: FakeGateway,
) -> None:
    stream = gateway().stream_chat_completion(MODEL, user("x"))
    with pytest.raises(ValueError, match="format must be 'sse' or 'text', not 'html'"):
        relay_stream(stream, format="html")
    assert list(stream) == []  # closed: iterating it sends nothing

    async def run() -> List[Any]:
        stream = async_gateway().stream_chat_completion(MODEL, user("x"))
        with pytest.raises(ValueError):
            await arelay_stream(stream, format="html")
        return [chunk async for chunk in stream]

    assert asyncio.run(run()) == []
    assert site.requests == []


# -- a browser that goes away ------------------------------------------------------------------


@pytest.fixture
def slow(site: FakeGateway) -> Iterator[SlowGateway]:
    from django.test import override_settings

    with SlowGateway() as gateway, override_settings(GATEWAYCLIENT={"BASE_URL": gateway.url}):
        yield gateway


def test_closing_the_sync_response_closes_the_gateway_stream(slow: SlowGateway) -> None:
    response = get("/relay?q=leaving+early")
    pieces = response.streaming_content
    assert next(pieces).startswith(b"data: ") and next(pieces).startswith(b"data: ")
    response.close()  # what a WSGI server does when the browser has gone
    assert slow.outcome(timeout=5) == ("leaving early", "closed")


async def read_two_pieces(path: str) -> Any:
    """An async relay's response after its first two pieces were read, and the reading task
    (waiting for the third)."""
    from django.test import AsyncClient

    response = await AsyncClient().get(path)
    two = asyncio.Event()

    async def read() -> None:
        count = 0
        async for _ in response.streaming_content:
            count += 1
            if count == 2:
                two.set()

    reader = asyncio.create_task(read())
    await asyncio.wait_for(two.wait(), 5)
    return response, reader


def test_cancelling_the_async_response_closes_the_gateway_stream(slow: SlowGateway) -> None:
    async def browse_then_leave() -> None:
        _, reader = await read_two_pieces("/arelay?q=leaving+early")
        reader.cancel()  # what Django's ASGI handler does when the browser has gone
        with pytest.raises(asyncio.CancelledError):
            await reader

    asyncio.run(browse_then_leave())
    assert slow.outcome(timeout=5) == ("leaving early", "closed")


async def two_pieces_then_stop(path: str) -> Any:
    """An async relay's response after two pieces were read and reading stopped between
    pieces (its generator is left suspended, neither finished nor cancelled)."""
    from django.test import AsyncClient

    response = await AsyncClient().get(path)
    pieces = response.streaming_content.__aiter__()
    assert (await pieces.__anext__()).startswith(b"data: ")
    assert (await pieces.__anext__()).startswith(b"data: ")
    return response, pieces


def test_closing_the_async_response_closes_the_gateway_stream(slow: SlowGateway) -> None:
    async def browse_then_leave() -> Any:
        response, pieces = await two_pieces_then_stop("/arelay?q=left+while+sending")
        # A browser gone while a piece was being sent: Django's ASGI handler stops sending and
        # closes the response (from a thread), the pieces left unfinished.
        await asyncio.to_thread(response.close)
        return await asyncio.to_thread(slow.outcome, 5), pieces

    outcome, _ = asyncio.run(browse_then_leave())
    assert outcome == ("left while sending", "closed")


def test_an_async_relay_dropped_unfinished_closes_the_gateway_stream(slow: SlowGateway) -> None:
    async def relay_then_drop() -> Any:
        stream = async_gateway().stream_chat_completion(MODEL, user("dropped"))
        STREAMS.append(stream)
        response = await arelay_stream(stream)
        pieces = response.streaming_content
        assert (await pieces.__anext__()).startswith(b"data: ")
        assert (await pieces.__anext__()).startswith(b"data: ")
        await pieces.aclose()  # leaves the relay's own generator suspended, unfinished
        del response, pieces  # the loop finalizes that generator: its finally runs
        return await asyncio.to_thread(slow.outcome, 5)

    assert asyncio.run(relay_then_drop()) == ("dropped", "closed")
