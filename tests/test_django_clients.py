"""gateway() and async_gateway() of gatewayclient.contrib.django: one client of each kind per
process, built from the setting on first use under a lock, rebuilt when the setting changes
(the old ones closed) and after a fork; the async one serves any event loop."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
from aiohttp import web
from django_support import configure_django
from loopback import LoopbackServer

import gatewayclient
from gatewayclient import GatewayRateLimitError, RateLimit, RetryPolicy
from gatewayclient.testing import FakeGateway, expected_reply

APP = "gatewayclient.contrib.django"
MODEL = "openai/gpt-4o-mini"
TESTS = Path(__file__).resolve().parent


def user(text: str) -> List[Dict[str, Any]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def setting(gw: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dict[str, Any]]:
    """The app installed and GATEWAYCLIENT pointing at the FakeGateway (zero-wait retries)."""
    from django.test import override_settings

    configure_django()
    monkeypatch.delenv("PLATFORM_API_URL", raising=False)
    monkeypatch.delenv("AUTH_TOKEN", raising=False)
    value = {"BASE_URL": gw.url, "AUTH_TOKEN": gw.token, "RETRY_POLICY": {"backoff_base": 0}}
    with override_settings(INSTALLED_APPS=[APP], GATEWAYCLIENT=value):
        yield value


def django_api() -> Any:
    import gatewayclient.contrib.django as api

    return api


# -- one client of each kind per process -------------------------------------------------------


def test_each_kind_is_one_client_shared_by_every_call(setting: Dict[str, Any]) -> None:
    api = django_api()
    sync, async_ = api.gateway(), api.async_gateway()
    assert isinstance(sync, gatewayclient.SyncGatewayClient)
    assert isinstance(async_, gatewayclient.AsyncGatewayClient)
    assert api.gateway() is sync and api.async_gateway() is async_
    assert {id(client) for client in together(8, api.gateway)} == {id(sync)}
    answer = sync.chat_completion(MODEL, user("once"))
    assert answer.choices[0].message.content == expected_reply(MODEL, user("once"))


def together(size: int, function: Callable[[], Any]) -> List[Any]:
    """``function()`` called in ``size`` threads released at the same moment."""
    barrier = threading.Barrier(size)
    results: List[Any] = [None] * size

    def one(index: int) -> None:
        barrier.wait()
        results[index] = function()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


@pytest.mark.parametrize("kind", ["SyncGatewayClient", "AsyncGatewayClient"])
def test_threads_asking_at_once_get_one_client_built_once(
    setting: Dict[str, Any], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    built: List[object] = []

    class Slow(getattr(gatewayclient, kind)):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            time.sleep(0.05)  # a window in which a second builder would slip in without a lock
            built.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gatewayclient, kind, Slow)
    api = django_api()
    getter = api.gateway if kind == "SyncGatewayClient" else api.async_gateway
    clients = together(16, getter)
    assert len(built) == 1
    assert all(client is built[0] for client in clients)


def test_every_key_reaches_both_clients_and_they_share_one_rate_limit(
    setting: Dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test import override_settings

    received: Dict[str, Dict[str, Any]] = {}
    for kind in ("SyncGatewayClient", "AsyncGatewayClient"):

        class Recording(getattr(gatewayclient, kind)):  # type: ignore[misc]
            def __init__(self, name: str = kind, **kwargs: Any) -> None:
                received[name] = kwargs
                super().__init__(**kwargs)

        monkeypatch.setattr(gatewayclient, kind, Recording)
    value = {
        **setting,
        "TIMEOUT": 7,
        "MAX_RETRIES": 1,
        "MAX_RETRY_AFTER": 3.0,
        "API_PREFIX": "/v1",
        "DEFAULT_HEADERS": {"X-Team": "search"},
        "VERIFY": False,
        "MAX_CONNECTIONS": 9,
        "RATE_LIMIT": {"requests": 50, "tokens": 9000, "max_wait": 2.0},
        "FALLBACKS": {"openai/gpt-4o": [MODEL]},
    }
    api = django_api()
    with override_settings(GATEWAYCLIENT=value):
        api.gateway(), api.async_gateway()
    sync, async_ = received["SyncGatewayClient"], received["AsyncGatewayClient"]
    limit = sync.pop("rate_limit")
    assert async_.pop("rate_limit") is limit  # one budget for the process, not one per kind
    assert isinstance(limit, RateLimit)
    assert (limit.requests, limit.tokens, limit.max_wait) == (50, 9000, 2.0)
    assert sync == async_
    expected = {k.lower(): v for k, v in value.items() if k not in ("RATE_LIMIT", "RETRY_POLICY")}
    expected["retry_policy"] = RetryPolicy(backoff_base=0)
    assert sync == expected


def test_the_setting_reaches_the_gateway(setting: Dict[str, Any], gw: FakeGateway) -> None:
    from django.test import override_settings

    value = {
        **setting,
        "DEFAULT_HEADERS": {"X-Team": "search"},
        "RETRY_POLICY": {"max_retries": 1, "backoff_base": 0},
        "FALLBACKS": {"nobody/no-such-model": [MODEL]},
    }
    api = django_api()
    with override_settings(GATEWAYCLIENT=value):
        answer = api.gateway().chat_completion("nobody/no-such-model", user("routed"))
        assert answer.choices[0].message.content == expected_reply(MODEL, user("routed"))
        assert gw.requests[-1].headers["x-team"] == "search"
        assert gw.requests[-1].headers["authorization"] == "Bearer ***"  # the token was sent
        gw.clear_requests()
        gw.fail(500, times=2)
        with pytest.raises(gatewayclient.GatewayServerError):
            api.gateway().chat_completion(MODEL, user("fails twice"))
        assert len(gw.requests) == 2  # one retry, as RETRY_POLICY says


def test_one_rate_limit_binds_the_sync_and_the_async_client(
    setting: Dict[str, Any], gw: FakeGateway
) -> None:
    from django.test import override_settings

    api = django_api()
    with override_settings(GATEWAYCLIENT={**setting, "RATE_LIMIT": {"requests": 2, "max_wait": 0}}):
        api.gateway().chat_completion(MODEL, user("first"))
        asyncio.run(api.async_gateway().chat_completion(MODEL, user("second")))
        with pytest.raises(GatewayRateLimitError) as refused:
            api.gateway().chat_completion(MODEL, user("third"))
    assert refused.value.status_code is None  # the budget's own answer: nothing sent
    assert len(gw.requests) == 2


def test_a_bad_setting_raises_improperly_configured_with_the_check_id(
    setting: Dict[str, Any],
) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    token = "sk-live-NEVER-SHOWN-77"
    api = django_api()
    cases = [
        ({"AUTH_TOKEN": token, "TIMEOUTS": 5}, "(gatewayclient.E001: "),
        ({"AUTH_TOKEN": token, "BASE_URL": f"ftp://{token}"}, "(gatewayclient.E002: "),
        ({"AUTH_TOKEN": token}, "(gatewayclient.E003: "),
    ]
    for value, check_id in cases:
        with override_settings(GATEWAYCLIENT=value):
            for getter in (api.gateway, api.async_gateway):
                with pytest.raises(ImproperlyConfigured) as raised:
                    getter()
                assert check_id in str(raised.value)
                assert token not in str(raised.value) and raised.value.__cause__ is None


def test_the_token_is_in_no_repr(setting: Dict[str, Any]) -> None:
    api = django_api()
    for client in (api.gateway(), api.async_gateway()):
        assert setting["AUTH_TOKEN"] not in repr(client) + str(client)


# -- a change of the setting -------------------------------------------------------------------


def test_a_change_of_the_setting_builds_new_clients(setting: Dict[str, Any]) -> None:
    from django.test import override_settings

    api = django_api()
    first_sync, first_async = api.gateway(), api.async_gateway()
    with override_settings(GATEWAYCLIENT={**setting, "BASE_URL": "http://127.0.0.1:9/other"}):
        assert api.gateway() is not first_sync and api.async_gateway() is not first_async
        assert api.gateway().base_url == api.async_gateway().base_url == "http://127.0.0.1:9/other"
    assert api.gateway().base_url == setting["BASE_URL"]
    assert api.gateway() is not first_sync  # built again once more, from the restored value


def test_a_change_of_another_setting_keeps_the_clients(setting: Dict[str, Any]) -> None:
    from django.test import override_settings

    api = django_api()
    sync = api.gateway()
    with override_settings(USE_TZ=False):
        assert api.gateway() is sync


class Watched:
    """A gateway on loopback that answers ``GET /v1/models`` and keeps the transports of the
    connections it was asked on, to tell when the client closed them."""

    def __init__(self) -> None:
        self.transports: List[Any] = []
        self.server = LoopbackServer([("GET", "/v1/models", self._models)])

    async def _models(self, request: web.Request) -> web.Response:
        self.transports.append(request.transport)
        return web.json_response({"object": "list", "data": []})

    def all_closed(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.transports and all(t is None or t.is_closing() for t in self.transports):
                return True
            time.sleep(0.02)
        return False


def test_the_old_clients_release_their_connections_after_a_change(
    setting: Dict[str, Any],
) -> None:
    from django.test import override_settings

    api = django_api()
    watched = Watched()
    loop = asyncio.new_event_loop()  # a loop that outlives the call, as a server's does
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        with watched.server, override_settings(GATEWAYCLIENT={"BASE_URL": watched.server.url}):
            old = api.gateway(), api.async_gateway()  # still referenced: not collected
            old[0].list_models()
            asyncio.run_coroutine_threadsafe(old[1].list_models(), loop).result(10)
            assert len(watched.transports) == 2
            assert not watched.all_closed(timeout=0.2)  # kept alive by both clients
            with override_settings(GATEWAYCLIENT=setting):
                assert watched.all_closed()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def test_a_change_inside_a_running_loop_closes_the_old_async_client(
    setting: Dict[str, Any],
) -> None:
    from django.test import override_settings

    api = django_api()
    watched = Watched()

    async def scenario() -> bool:
        old = api.async_gateway()  # still referenced: not collected
        await old.list_models()
        with override_settings(GATEWAYCLIENT=setting):
            await asyncio.sleep(0)  # the close runs as a task of this loop
            return await asyncio.to_thread(watched.all_closed)

    with watched.server, override_settings(GATEWAYCLIENT={"BASE_URL": watched.server.url}):
        assert asyncio.run(scenario())


# -- event loops -------------------------------------------------------------------------------


def test_the_async_client_serves_every_event_loop_without_a_warning(
    setting: Dict[str, Any],
) -> None:
    from asgiref.sync import async_to_sync

    api = django_api()

    async def ask(question: str) -> Any:
        answer = await api.async_gateway().chat_completion(MODEL, user(question))
        return api.async_gateway(), answer.choices[0].message.content

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = [asyncio.run(ask("run one")), asyncio.run(ask("run two"))]
        results.append(async_to_sync(ask)("async_to_sync"))
        in_thread: List[Any] = []
        thread = threading.Thread(target=lambda: in_thread.append(asyncio.run(ask("thread"))))
        thread.start()
        thread.join(10)
        results += in_thread
        gc.collect()
    assert len({id(client) for client, _ in results}) == 1
    questions = ["run one", "run two", "async_to_sync", "thread"]
    assert [text for _, text in results] == [expected_reply(MODEL, user(q)) for q in questions]


# -- forks -----------------------------------------------------------------------------------------

FORK_SCRIPT = """
import json, os, sys, threading
sys.path.insert(0, {tests!r})
from django_support import configure_django
configure_django()
from django.conf import settings
settings.GATEWAYCLIENT = {{"BASE_URL": {url!r}, "AUTH_TOKEN": {token!r}}}
from gatewayclient.contrib.django import _clients, async_gateway, gateway

MODEL = "openai/gpt-4o-mini"
parent = gateway(), async_gateway()
parent[0].chat_completion(MODEL, [{{"role": "user", "content": "asked by the parent"}}])

def in_child():
    sync, async_ = gateway(), async_gateway()
    answer = sync.chat_completion(MODEL, [{{"role": "user", "content": "asked by the child"}}])
    return {{
        "new_sync": sync is not parent[0],
        "new_async": async_ is not parent[1],
        "kept": gateway() is sync and async_gateway() is async_,
        "requests": sync.usage.total.requests,
        "answer": answer.choices[0].message.content,
    }}

def fork(hold_lock):
    held, release = threading.Event(), threading.Event()
    def holder():
        with _clients._lock:  # another thread of the parent holds the lock at the fork
            held.set()
            release.wait()
    thread = threading.Thread(target=holder)
    if hold_lock:
        thread.start()
        held.wait()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        import signal
        signal.alarm(10)  # a deadlocked child dies instead of hanging the test
        os.write(write, json.dumps(in_child()).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    _, status = os.waitpid(pid, 0)
    release.set()
    if hold_lock:
        thread.join()
    return json.loads(data) if data else {{"status": status}}

print(json.dumps({{
    "free": fork(False),
    "held": fork(True),
    "parent_kept": gateway() is parent[0] and async_gateway() is parent[1],
    "parent_requests": parent[0].usage.total.requests,
}}))
parent[0].close()
"""


def test_a_forked_child_builds_its_own_clients(gw: FakeGateway) -> None:
    script = FORK_SCRIPT.format(tests=str(TESTS), url=gw.url, token=gw.token)
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    report = json.loads(result.stdout)
    child = {
        "new_sync": True,
        "new_async": True,
        "kept": True,
        "requests": 1,  # its own call only: the parent's usage stayed with the parent
        "answer": expected_reply(MODEL, user("asked by the child")),
    }
    assert report == {"free": child, "held": child, "parent_kept": True, "parent_requests": 1}
