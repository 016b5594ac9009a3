"""URLs that would send something else than the user meant: userinfo in ``base_url`` (its
password in reprs, errors and logs; Basic auth instead of the token), an empty ``?`` or ``#``
that puts the endpoint in the query or fragment, and provider names that are dot segments."""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest
from aiohttp import web
from loopback import LoopbackServer
from twin import Twin

from gatewayclient import AsyncGatewayClient, SyncGatewayClient
from gatewayclient.config import ENV_AUTH_TOKEN, ENV_BASE_URL, ClientConfig
from gatewayclient.errors import GatewayConfigError, GatewayValidationError
from gatewayclient.testing import FakeGateway

PASSWORD = "pw-5ecret-d0-not-show"
USER = "alice-the-user"
TOKEN = "sk-url-test-token"
CLIENTS = [SyncGatewayClient, AsyncGatewayClient]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_BASE_URL, ENV_AUTH_TOKEN):
        monkeypatch.delenv(name, raising=False)


def config(base_url: Any, api_prefix: str = "/v1") -> ClientConfig:
    return ClientConfig.create(
        base_url, TOKEN, 60.0, max_retries=2, max_retry_after=60.0, api_prefix=api_prefix,
        default_headers=None, verify=True, max_connections=100, retry_policy=None,
    )  # fmt: skip


def refused(build: Callable[[], Any], *secrets: str) -> str:
    """``build`` raises a GatewayConfigError whose text and chain carry none of ``secrets``."""
    with pytest.raises(GatewayConfigError) as caught:
        build()
    texts = [str(caught.value), repr(caught.value), repr(caught.value.args)]
    cause = caught.value.__cause__ or caught.value.__context__
    if cause is not None:
        texts += [str(cause), repr(cause)]
    for secret in secrets:
        for text in texts:
            assert secret not in text, text
    return str(caught.value)


# -- userinfo in base_url ------------------------------------------------------------------------

USERINFO_URLS = [
    f"http://{USER}:{PASSWORD}@gateway.example.com",
    f"https://{USER}:{PASSWORD}@gateway.example.com:8443/v1",
    f"http://{USER}@gateway.example.com",
    f"http://:{PASSWORD}@gateway.example.com",
    f"http://{USER}:@gateway.example.com",
    "http://@gateway.example.com",
    f"http://{USER}:{PASSWORD}@127.0.0.1:4000",
    f"http://{USER}:{PASSWORD}@[::1]:4000/gateway",
]


@pytest.mark.parametrize("url", USERINFO_URLS)
def test_userinfo_in_base_url_is_refused_without_echoing_it(url: str) -> None:
    message = refused(lambda: config(url), PASSWORD, USER)
    assert message.startswith("base_url")
    assert "auth_token" in message  # says what to do instead


@pytest.mark.parametrize("url", USERINFO_URLS[:3])
def test_userinfo_in_platform_api_url_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv(ENV_BASE_URL, url)
    message = refused(lambda: config(None), PASSWORD, USER)
    assert message.startswith(ENV_BASE_URL)  # the variable is the culprit, not an argument


@pytest.mark.parametrize("source", ["argument", "environment"])
@pytest.mark.parametrize("url", USERINFO_URLS[:3])
@pytest.mark.parametrize("client_class", CLIENTS)
def test_clients_refuse_userinfo_at_construction(
    client_class: type[Any], monkeypatch: pytest.MonkeyPatch, url: str, source: str
) -> None:
    # Before: the sync client sent Basic auth instead of the token and showed the password in
    # its repr; the async one raised a bare ValueError on every call.
    if source == "environment":
        monkeypatch.setenv(ENV_BASE_URL, url)
    argument = url if source == "argument" else None
    refused(lambda: client_class(argument, TOKEN), PASSWORD, USER, TOKEN)


@pytest.mark.parametrize(
    "url",
    [
        f"ftp://{USER}:{PASSWORD}@gateway.example.com",
        f"http://{USER}:{PASSWORD}@gateway.example.com:abc",
        f"http://{USER}:{PASSWORD}@gateway.example.com:99999",
        f"{USER}:{PASSWORD}@gateway.example.com",
        f"//{USER}:{PASSWORD}@gateway.example.com",
        f"http://{USER}:{PASSWORD}@",
        f"http:///{USER}:{PASSWORD}@gateway.example.com",
        f"http://gateway.example.com:abc/{USER}:{PASSWORD}@x",
        f"http://gateway.example.com/v1?key={PASSWORD}",
        f"http://gateway.example.com/v1#{PASSWORD}",
        f"gateway.example.com/v1?key={PASSWORD}",
        f"http://gateway.example.com:abc/?key={PASSWORD}",
    ],
)
def test_no_config_error_about_a_url_echoes_its_userinfo_or_query(url: str) -> None:
    refused(lambda: config(url), PASSWORD)


def test_a_refused_url_is_still_shown_without_its_secrets() -> None:
    message = refused(lambda: config("ftp://gateway.example.com/v1"))
    assert "'ftp://gateway.example.com/v1'" in message
    message = refused(lambda: config(f"http:///{USER}:{PASSWORD}@gateway.example.com"), PASSWORD)
    assert "'http://***@gateway.example.com'" in message  # urlsplit sees a path, no userinfo


def test_a_token_passed_as_the_base_url_is_not_echoed() -> None:
    # The arguments swapped: SyncGatewayClient(token, url).
    with pytest.raises(GatewayConfigError) as caught:
        ClientConfig.create(
            TOKEN, "http://gateway.example.com", 60.0, max_retries=2, max_retry_after=60.0,
            api_prefix="/v1", default_headers=None, verify=True, max_connections=100,
            retry_policy=None,
        )  # fmt: skip
    assert TOKEN not in str(caught.value)


def test_an_at_sign_in_the_path_is_not_userinfo() -> None:
    assert config("https://gateway.example.com/team@example/").api_root == (
        "https://gateway.example.com/team@example/v1"
    )


# -- an empty query or fragment ------------------------------------------------------------------

EMPTY_QUERY_OR_FRAGMENT = [
    "http://gateway.example.com?",
    "http://gateway.example.com#",
    "http://gateway.example.com/?",
    "http://gateway.example.com/v1?",
    "http://gateway.example.com/v1#",
    "http://gateway.example.com/v1/#",
    "http://gateway.example.com/v1?#",
    "http://gateway.example.com/v1?/",
]


@pytest.mark.parametrize("url", EMPTY_QUERY_OR_FRAGMENT)
def test_an_empty_query_or_fragment_in_base_url_is_refused(url: str) -> None:
    message = refused(lambda: config(url))
    assert "query" in message and "fragment" in message


@pytest.mark.parametrize("api_prefix", ["/v1?", "/v1#", "/v1?x=1", "#"])
def test_an_api_prefix_with_a_query_or_fragment_is_refused(api_prefix: str) -> None:
    message = refused(lambda: config("http://gateway.example.com", api_prefix))
    assert "api_prefix" in message


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/v1?", "http://127.0.0.1:9#"])
@pytest.mark.parametrize("client_class", CLIENTS)
def test_clients_refuse_an_empty_query_or_fragment(client_class: type[Any], url: str) -> None:
    refused(lambda: client_class(url, TOKEN))


# -- provider names that are dot segments --------------------------------------------------------


@pytest.mark.parametrize("provider", [".", "..", "caf\udce9"])
def test_a_provider_name_that_cannot_be_a_path_segment_is_refused_and_nothing_is_sent(
    make: Callable[..., Twin], gw: FakeGateway, provider: str
) -> None:
    # Before: ".." asked for /v1/models (the dot segment removed by the transport).
    twin = make()
    with pytest.raises(GatewayValidationError) as caught:
        twin.call("list_provider_models", provider)
    assert "provider" in str(caught.value)
    assert gw.requests == []


@pytest.fixture
def provider_route() -> Iterator[LoopbackServer]:
    async def answer(request: web.Request) -> web.StreamResponse:
        provider = request.match_info["provider"]
        return web.json_response({"provider": provider, "total": 0, "models": []})

    with LoopbackServer([("GET", "/v1/providers/{provider}/models", answer)]) as server:
        yield server


@pytest.mark.parametrize(
    ("provider", "raw_path"),
    [
        ("%2e%2e", "/v1/providers/%252e%252e/models"),
        ("%2E", "/v1/providers/%252E/models"),
        ("...", "/v1/providers/.../models"),
        ("a..b", "/v1/providers/a..b/models"),
        ("my provider", "/v1/providers/my%20provider/models"),
        ("x?y#z", "/v1/providers/x%3Fy%23z/models"),
    ],
)
def test_other_provider_names_reach_the_provider_route_as_one_segment(
    kind: str, provider_route: LoopbackServer, provider: str, raw_path: str
) -> None:
    twin = Twin(kind, provider_route.url, TOKEN, max_retries=0, timeout=5)
    try:
        answer = twin.call("list_provider_models", provider)
    finally:
        twin.close()
    sent: List[str] = [request.raw_path for request in provider_route.seen]
    assert sent == [raw_path]
    assert answer.provider == provider  # the server decoded exactly the name given
