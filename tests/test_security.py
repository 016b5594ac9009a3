"""The token stays secret: never in a repr, an error or a log line, never sent to another host."""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List

import pytest
from aiohttp import web
from loopback import LoopbackServer
from twin import Twin

from gatewayclient import GatewayAuthError, GatewayStreamError
from gatewayclient.testing import FakeGateway

SECRET = "sk-very-secret-token-0123456789"
HELLO = [{"role": "user", "content": "Hello!"}]
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
}


def redirecting_pair(target_host: str) -> tuple[LoopbackServer, LoopbackServer]:
    """A server on 127.0.0.1 that redirects chat calls to a second one on ``target_host``."""

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(ANSWER)

    target = LoopbackServer([("POST", "/v1/chat/completions", answer)], host=target_host)
    bind = target_host if target_host != "localhost" else "127.0.0.1"
    target.host = bind

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(f"http://{target_host}:{target.port}/v1/chat/completions")

    origin = LoopbackServer([("POST", "/v1/chat/completions", redirect)])
    return origin, target


@pytest.mark.parametrize("host", ["127.0.0.2", "localhost"])
def test_a_redirect_to_another_host_is_followed_without_the_token(kind: str, host: str) -> None:
    origin, target = redirecting_pair(host)
    with origin, target:
        twin = Twin(kind, origin.url, SECRET, max_retries=0, timeout=5)
        try:
            reply = twin.call("chat_completion", "openai/gpt-4o", HELLO)
        finally:
            twin.close()
    assert reply.choices[0].message.content == "hi"
    assert origin.seen[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert "Authorization" not in target.seen[0].headers


def test_a_redirect_within_the_same_origin_keeps_the_token(kind: str) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(ANSWER)

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect("/v2/chat/completions")

    routes = [("POST", "/v1/chat/completions", redirect), ("POST", "/v2/chat/completions", answer)]
    with LoopbackServer(routes) as server:
        twin = Twin(kind, server.url, SECRET, max_retries=0, timeout=5)
        try:
            assert twin.call("chat_completion", "openai/gpt-4o", HELLO).choices
        finally:
            twin.close()
    assert [r.path for r in server.seen] == ["/v1/chat/completions", "/v2/chat/completions"]
    assert server.seen[1].headers["Authorization"] == f"Bearer {SECRET}"


def test_repr_and_str_hide_the_token(kind: str) -> None:
    twin = Twin(kind, "https://gateway.example.com", SECRET)
    try:
        assert SECRET not in repr(twin.client) and SECRET not in str(twin.client)
        assert "***" in repr(twin.client)
        assert SECRET not in repr(twin.client._core.config)
    finally:
        twin.close()


def every_text(record: logging.LogRecord) -> str:
    return " ".join(
        [record.getMessage(), repr(record.args), record.exc_text or "", str(record.exc_info)]
    )


def test_no_log_record_at_debug_carries_the_token(
    make: Callable[..., Twin], gw: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw.add_token(SECRET)
    caplog.set_level(logging.DEBUG)  # every logger: ours, urllib3, aiohttp, asyncio
    twin = make(auth_token=SECRET)
    gw.fail(503)
    twin.call("chat_completion", "openai/gpt-4o", HELLO)
    twin.collect(twin.stream("openai/gpt-4o", HELLO))
    gw.fail(401, body={"error": {"message": f"token {SECRET} is revoked"}})
    with pytest.raises(GatewayAuthError) as info:
        twin.call("list_models")
    assert SECRET not in str(info.value) and SECRET not in repr(info.value.body)
    assert caplog.records, "expected DEBUG records from the transports"
    for record in caplog.records:
        assert SECRET not in every_text(record), record.name


def test_a_stream_error_echoing_the_token_is_scrubbed(
    make: Callable[..., Twin], gw: FakeGateway
) -> None:
    gw.add_token(SECRET)
    gw.stream_error({"message": f"bad token {SECRET}", "type": "authentication_error"}, after=2)
    twin = make(auth_token=SECRET)
    received: List[Any] = []
    with pytest.raises(GatewayAuthError) as info:
        twin.collect(twin.stream("openai/gpt-4o", HELLO), received)
    assert len(received) == 2
    assert SECRET not in str(info.value) and SECRET not in repr(info.value.body)
    assert not isinstance(info.value, GatewayStreamError)


def test_plain_http_to_a_remote_host_with_a_token_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from gatewayclient import SyncGatewayClient

    caplog.set_level(logging.WARNING, logger="gatewayclient")
    SyncGatewayClient("http://gateway.example.com", SECRET).close()
    SyncGatewayClient("http://127.0.0.1:9", SECRET).close()
    SyncGatewayClient("https://gateway.example.com", SECRET).close()
    warnings: List[Dict[str, Any]] = [
        r.__dict__ for r in caplog.records if r.name == "gatewayclient"
    ]
    assert len(warnings) == 1
    assert "gateway.example.com" in caplog.records[0].getMessage()
    assert SECRET not in caplog.records[0].getMessage()
