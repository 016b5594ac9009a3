"""Configuration: arguments and environment in, one validated ClientConfig out (no server)."""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any

import pytest

from gatewayclient import AsyncGatewayClient, SyncGatewayClient
from gatewayclient.config import ENV_AUTH_TOKEN, ENV_BASE_URL, ClientConfig, RetryPolicy
from gatewayclient.errors import GatewayClientError, GatewayConfigError

TOKEN = "sk-config-secret-7f3a9c"
CLIENTS = [SyncGatewayClient, AsyncGatewayClient]
PROXY_VARIABLES = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "REQUEST_METHOD",  # urllib ignores HTTP_PROXY when this is set (CGI)
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_BASE_URL, ENV_AUTH_TOKEN, *PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)


def make(base_url: Any = "http://localhost:4000", auth_token: Any = None, **kwargs: Any):
    options: dict[str, Any] = {
        "timeout": 60.0,
        "max_retries": 2,
        "max_retry_after": 60.0,
        "api_prefix": "/v1",
        "default_headers": None,
        "verify": True,
        "max_connections": 100,
        "retry_policy": None,
    }
    options.update(kwargs)
    timeout = options.pop("timeout")
    return ClientConfig.create(base_url, auth_token, timeout, **options)


def gateway_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "gatewayclient"]


# -- base URL and token: arguments, then the environment -------------------------------------


def test_base_url_comes_from_platform_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_API_URL", "https://env.example.com")
    config = make(base_url=None)
    assert config.base_url == "https://env.example.com"
    assert config.api_root == "https://env.example.com/v1"


def test_token_comes_from_auth_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_TOKEN", TOKEN)
    assert make().auth_token == TOKEN


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_API_URL", "https://env.example.com")
    monkeypatch.setenv("AUTH_TOKEN", "env-token")
    config = make(base_url="https://arg.example.com", auth_token=TOKEN)
    assert config.base_url == "https://arg.example.com"
    assert config.auth_token == TOKEN


def test_no_token_anywhere_means_none() -> None:
    assert make().auth_token is None


@pytest.mark.parametrize("client_class", CLIENTS)
def test_clients_read_both_variables(
    monkeypatch: pytest.MonkeyPatch, client_class: type[Any]
) -> None:
    monkeypatch.setenv("PLATFORM_API_URL", "https://env.example.com/")
    monkeypatch.setenv("AUTH_TOKEN", TOKEN)
    client = client_class()
    assert client.base_url == "https://env.example.com"
    assert client._core.config.auth_token == TOKEN


@pytest.mark.parametrize("base_url", [None, "", "   "])
def test_missing_base_url_names_argument_and_variable(base_url: Any) -> None:
    with pytest.raises(GatewayConfigError) as caught:
        make(base_url=base_url)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, GatewayClientError)
    assert "base_url" in str(caught.value)
    assert "PLATFORM_API_URL" in str(caught.value)


@pytest.mark.parametrize("client_class", CLIENTS)
def test_clients_without_any_base_url_raise_config_error(client_class: type[Any]) -> None:
    with pytest.raises(GatewayConfigError, match="PLATFORM_API_URL") as caught:
        client_class()
    assert "base_url" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_empty_platform_api_url_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_API_URL", "")
    with pytest.raises(GatewayConfigError, match="PLATFORM_API_URL"):
        make(base_url=None)


# -- joining base_url and api_prefix -----------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "api_prefix", "api_root"),
    [
        ("http://h:4000", "/v1", "http://h:4000/v1"),
        ("http://h:4000/", "/v1", "http://h:4000/v1"),
        ("http://h:4000/v1", "/v1", "http://h:4000/v1"),
        ("http://h:4000/v1/", "/v1", "http://h:4000/v1"),
        ("https://host/gateway", "/v1", "https://host/gateway/v1"),
        ("https://host/gateway/", "/v1", "https://host/gateway/v1"),
        ("https://host/gateway/v1", "/v1", "https://host/gateway/v1"),
        ("http://h:4000", "", "http://h:4000"),
        ("http://h:4000/", "", "http://h:4000"),
        ("https://host/openai/v2", "", "https://host/openai/v2"),
        ("http://h:4000", "v1", "http://h:4000/v1"),
        ("http://h:4000", "/v1/", "http://h:4000/v1"),
        ("http://h:4000/v1", "v1", "http://h:4000/v1"),
        ("http://h:4000", "/api/v2", "http://h:4000/api/v2"),
        ("https://api.flow.marut.cloud", "/v1", "https://api.flow.marut.cloud/v1"),
        ("http://127.0.0.1:8080", "/v1", "http://127.0.0.1:8080/v1"),
        ("http://[::1]:4000", "/v1", "http://[::1]:4000/v1"),
    ],
)
def test_api_root_joins_base_url_and_prefix(base_url: str, api_prefix: str, api_root: str) -> None:
    assert make(base_url=base_url, api_prefix=api_prefix).api_root == api_root


def test_a_path_that_only_contains_the_prefix_still_gets_it() -> None:
    assert make(base_url="http://h/v10").api_root == "http://h/v10/v1"


def test_trailing_slash_is_not_part_of_base_url() -> None:
    assert make(base_url="https://host/gateway/").base_url == "https://host/gateway"


@pytest.mark.parametrize(
    "base_url",
    [
        "localhost:4000",
        "gateway.example.com",
        "//gateway.example.com",
        "ftp://gateway.example.com",
        "file:///tmp/gateway",
        "ws://gateway.example.com",
        "http://",
        "http:///v1",
        "http://:4000",
        "http://h:abc",
        "http://h:99999",
        "http://h:4000/v1?key=value",
        "http://h:4000/v1#fragment",
    ],
)
def test_bad_base_urls_are_config_errors(base_url: str) -> None:
    with pytest.raises(GatewayConfigError):
        make(base_url=base_url)


@pytest.mark.parametrize("base_url", ["ftp://h", "http://h:abc", "http://h/?q=1"])
@pytest.mark.parametrize("client_class", CLIENTS)
def test_clients_reject_bad_base_urls(client_class: type[Any], base_url: str) -> None:
    with pytest.raises(GatewayConfigError):
        client_class(base_url)


@pytest.mark.parametrize("api_prefix", [None, 1, b"/v1"])
def test_api_prefix_must_be_a_string(api_prefix: Any) -> None:
    with pytest.raises(GatewayConfigError):
        make(api_prefix=api_prefix)


# -- the token stays secret ----------------------------------------------------------------------


def test_config_repr_and_str_hide_the_token() -> None:
    config = make(base_url="https://gateway.example.com", auth_token=TOKEN)
    for text in (repr(config), str(config), f"{config}", f"{config!r}"):
        assert TOKEN not in text
        assert "gateway.example.com" in text


@pytest.mark.parametrize("client_class", CLIENTS)
def test_client_repr_and_str_hide_the_token(client_class: type[Any]) -> None:
    client = client_class("https://gateway.example.com", TOKEN)
    for text in (repr(client), str(client), repr(client._core.config), repr(client.usage)):
        assert TOKEN not in text


@pytest.mark.parametrize("client_class", CLIENTS)
def test_client_repr_hides_a_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, client_class: type[Any]
) -> None:
    monkeypatch.setenv("AUTH_TOKEN", TOKEN)
    client = client_class("https://gateway.example.com")
    assert TOKEN not in repr(client)
    assert TOKEN not in str(client)


@pytest.mark.parametrize("token", ["abc\ndef", "abc\rdef", 123, b"bytes-token"])
def test_unusable_tokens_are_config_errors(token: Any) -> None:
    with pytest.raises(GatewayConfigError) as caught:
        make(auth_token=token)
    if isinstance(token, str):
        assert token not in str(caught.value)


def test_an_empty_token_counts_as_none() -> None:
    assert make(auth_token="").auth_token is None


# -- numbers and other settings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_retries", -1),
        ("max_retries", 1.5),
        ("max_retries", True),
        ("max_retries", "2"),
        ("max_retries", None),
        ("max_retry_after", -1),
        ("max_retry_after", math.nan),
        ("max_retry_after", math.inf),
        ("max_retry_after", "60"),
        ("timeout", 0),
        ("timeout", -1),
        ("timeout", -0.5),
        ("timeout", math.nan),
        ("timeout", math.inf),
        ("timeout", 1e10),  # the socket layer would overflow on every call
        ("timeout", 30 * 86400 + 1),
        ("timeout", "60"),
        ("timeout", True),
        ("timeout", (5, 10)),
        ("max_connections", 0),
        ("max_connections", -1),
        ("max_connections", 1.5),
        ("max_connections", True),
        ("max_connections", "100"),
        ("max_connections", None),
        ("verify", None),
        ("verify", 1),
        ("verify", "yes"),
        ("verify", "/nonexistent/ca-bundle.pem"),
        ("default_headers", [("X-A", "1")]),
        ("default_headers", {"X-A": 1}),
        ("default_headers", {1: "x"}),
        pytest.param("default_headers", {"X-A": "v\r\nX-B: 1"}, id="header-crlf-in-value"),
        pytest.param("default_headers", {"X-A": "line\nbreak"}, id="header-lf-in-value"),
        pytest.param("default_headers", {"X-A": "nul\x00"}, id="header-nul-in-value"),
        pytest.param("default_headers", {"X A": "v"}, id="header-space-in-name"),
        pytest.param("default_headers", {"X-A:": "v"}, id="header-colon-in-name"),
        pytest.param("default_headers", {"": "v"}, id="header-empty-name"),
    ],
)
def test_invalid_settings_are_config_errors(option: str, value: Any) -> None:
    with pytest.raises(GatewayConfigError) as caught:
        make(**{option: value})
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_retries", -1),
        ("timeout", 0),
        ("max_connections", 0),
        ("verify", "/nonexistent/ca-bundle.pem"),
        ("max_retry_after", -5),
    ],
)
@pytest.mark.parametrize("client_class", CLIENTS)
def test_clients_reject_invalid_settings_at_construction(
    client_class: type[Any], option: str, value: Any
) -> None:
    with pytest.raises(GatewayConfigError):
        client_class("http://localhost:4000", **{option: value})


@pytest.mark.parametrize(
    ("option", "value", "attribute", "expected"),
    [
        ("timeout", 5, "timeout", 5.0),
        ("timeout", 0.25, "timeout", 0.25),
        ("timeout", None, "timeout", None),
        ("timeout", 30 * 86400, "timeout", 30 * 86400.0),
        ("max_connections", 1, "max_connections", 1),
        ("verify", False, "verify", False),
    ],
)
def test_valid_settings_are_kept(option: str, value: Any, attribute: str, expected: Any) -> None:
    assert getattr(make(**{option: value}), attribute) == expected


def test_verify_accepts_the_path_of_a_ca_bundle(tmp_path: Any) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert make(verify=str(bundle)).verify == str(bundle)


def test_max_retries_and_max_retry_after_make_the_retry_policy() -> None:
    policy = make(max_retries=0, max_retry_after=1.5).retry
    assert policy.max_retries == 0
    assert policy.max_retry_after == 1.5


def test_an_explicit_retry_policy_wins() -> None:
    policy = RetryPolicy(max_retries=5, backoff_base=0)
    assert make(max_retries=1, retry_policy=policy).retry is policy


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"max_retries": 1.0},
        {"max_retry_after": -1.0},
        {"backoff_base": math.nan},
        {"backoff_max": -0.1},
    ],
)
def test_retry_policy_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(GatewayConfigError):
        RetryPolicy(**kwargs)


def test_default_headers_are_kept_in_order() -> None:
    config = make(default_headers={"X-Team": "search", "X-Env": "dev"})
    assert config.default_headers == (("X-Team", "search"), ("X-Env", "dev"))


def test_config_is_frozen() -> None:
    config = make()
    with pytest.raises(AttributeError):
        config.api_root = "http://elsewhere"  # type: ignore[misc]


@pytest.mark.parametrize("client_class", CLIENTS)
def test_max_connections_defaults_to_100(client_class: type[Any]) -> None:
    parameter = inspect.signature(client_class).parameters["max_connections"]
    assert parameter.default == 100
    assert client_class("http://localhost:4000")._core.config.max_connections == 100


@pytest.mark.parametrize("client_class", CLIENTS)
def test_client_defaults_follow_the_contract(client_class: type[Any]) -> None:
    parameters = inspect.signature(client_class).parameters
    assert list(parameters)[:3] == ["base_url", "auth_token", "timeout"]
    assert parameters["base_url"].default is None
    assert parameters["auth_token"].default is None
    assert parameters["timeout"].default == 60.0
    assert parameters["max_retries"].default == 2
    assert parameters["max_retries"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["max_retry_after"].default == 60.0
    assert parameters["api_prefix"].default == "/v1"
    assert parameters["verify"].default is True
    config = client_class("http://localhost:4000")._core.config
    assert config.timeout == 60.0
    assert config.retry.max_retries == 2
    assert config.retry.max_retry_after == 60.0


# -- the plain-http warning ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    ["http://gateway.example.com", "http://10.0.0.7:4000/v1", "http://gateway.internal:8080"],
)
def test_token_over_plain_http_warns_once(caplog: pytest.LogCaptureFixture, base_url: str) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayclient")
    make(base_url=base_url, auth_token=TOKEN)
    records = gateway_records(caplog)
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert TOKEN not in records[0].getMessage()


@pytest.mark.parametrize("client_class", CLIENTS)
def test_client_with_token_over_plain_http_warns_once(
    caplog: pytest.LogCaptureFixture, client_class: type[Any]
) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayclient")
    client_class("http://gateway.example.com", TOKEN)
    records = gateway_records(caplog)
    assert [record.levelno for record in records] == [logging.WARNING]
    assert TOKEN not in records[0].getMessage()


@pytest.mark.parametrize(
    ("base_url", "token"),
    [
        ("http://localhost:4000", TOKEN),
        ("http://127.0.0.1:4000", TOKEN),
        ("http://127.1.2.3:4000", TOKEN),
        ("http://[::1]:4000", TOKEN),
        ("http://api.localhost:4000", TOKEN),
        ("https://gateway.example.com", TOKEN),
        ("https://10.0.0.7", TOKEN),
        ("http://gateway.example.com", None),
    ],
)
def test_no_warning_for_loopback_https_or_no_token(
    caplog: pytest.LogCaptureFixture, base_url: str, token: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayclient")
    make(base_url=base_url, auth_token=token)
    assert [r for r in gateway_records(caplog) if r.levelno >= logging.WARNING] == []


# -- proxies from the environment, read once ----------------------------------------------------


def test_https_proxy_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.com:3128")
    assert make(base_url="https://gateway.example.com").proxy == "http://proxy.example.com:3128"


def test_http_proxy_applies_to_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.com:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://other-proxy.example.com:3128")
    assert make(base_url="http://gateway.example.com").proxy == "http://proxy.example.com:3128"


def test_no_proxy_bypasses_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.com:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example.com,gateway.example.com")
    assert make(base_url="https://gateway.example.com").proxy is None
    assert make(base_url="https://public.example.org").proxy == "http://proxy.example.com:3128"


def test_no_proxy_variables_means_no_proxy() -> None:
    assert make(base_url="https://gateway.example.com").proxy is None


@pytest.mark.parametrize("client_class", CLIENTS)
def test_proxy_variables_are_read_once_at_construction(
    monkeypatch: pytest.MonkeyPatch, client_class: type[Any]
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.com:3128")
    client = client_class("https://gateway.example.com")
    monkeypatch.setenv("HTTPS_PROXY", "http://changed.example.com:9999")
    monkeypatch.setenv("NO_PROXY", "*")
    assert client._core.config.proxy == "http://proxy.example.com:3128"


def test_proxy_lookup_happens_once_per_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    calls: list[int] = []
    real = urllib.request.getproxies

    def counting() -> dict[str, str]:
        calls.append(1)
        return real()

    monkeypatch.setattr(urllib.request, "getproxies", counting)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.com:3128")
    client = SyncGatewayClient("https://gateway.example.com")
    assert client._core.config.proxy == "http://proxy.example.com:3128"
    assert len(calls) == 1
