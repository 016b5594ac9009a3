"""What may travel in an HTTP header: the token (argument or $AUTH_TOKEN), ``default_headers``
and per-call ``extra_headers``. A character a header cannot carry is refused before anything is
sent, naming the setting or header and the character's position, never the value."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import pytest
from twin import Twin

from gatewayclient import AsyncGatewayClient, SyncGatewayClient
from gatewayclient.config import ENV_AUTH_TOKEN, ENV_BASE_URL, ClientConfig, header_problem
from gatewayclient.errors import GatewayConfigError, GatewayValidationError
from gatewayclient.testing import FakeGateway

TOKEN = "sk-header-test-0123456789abcdefghijklmno"  # 40 characters
CLIENTS = [SyncGatewayClient, AsyncGatewayClient]
HELLO = [{"role": "user", "content": "Hello!"}]

# Characters an HTTP header cannot carry (RFC 9110 section 5.5: field values are visible ASCII,
# spaces and tabs; obs-text is refused too, as the twins would encode it differently).
BAD_CHARACTERS = [
    pytest.param("\u200b", "U+200B", id="zero-width-space"),
    pytest.param("\u00e9", "U+00E9", id="latin-1-e-acute"),
    pytest.param("\u00a0", "U+00A0", id="no-break-space"),
    pytest.param("\u2014", "U+2014", id="em-dash"),
    pytest.param("\U0001f600", "U+1F600", id="emoji"),
    pytest.param("\udce9", "U+DCE9", id="lone-surrogate"),
    pytest.param("\x00", "U+0000", id="nul"),
    pytest.param("\x07", "U+0007", id="bell"),
    pytest.param("\x1b", "U+001B", id="escape"),
    pytest.param("\x7f", "U+007F", id="delete"),
    pytest.param("\x0b", "U+000B", id="vertical-tab"),
    pytest.param("\x0c", "U+000C", id="form-feed"),
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_BASE_URL, ENV_AUTH_TOKEN):
        monkeypatch.delenv(name, raising=False)


def config(
    auth_token: Optional[str] = None, default_headers: Optional[Dict[str, str]] = None
) -> ClientConfig:
    return ClientConfig.create(
        "http://127.0.0.1:4000", auth_token, 60.0, max_retries=2, max_retry_after=60.0,
        api_prefix="/v1", default_headers=default_headers, verify=True, max_connections=100,
        retry_policy=None,
    )  # fmt: skip


def refused(build: Callable[[], Any], secret: str) -> str:
    with pytest.raises(GatewayConfigError) as caught:
        build()
    message = str(caught.value)
    assert secret not in message and secret not in repr(caught.value)
    assert secret.strip() not in message
    return message


# -- the token -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("character", "code"), BAD_CHARACTERS)
def test_a_token_with_a_character_a_header_cannot_carry_is_refused(
    character: str, code: str
) -> None:
    token = TOKEN + character
    message = refused(lambda: config(auth_token=token), token)
    assert message.startswith("auth_token")
    assert code in message and "at position 41 of 41" in message


def test_the_position_counts_from_one_in_the_token_as_given() -> None:
    token = "  sk-ab\u200bcd"  # leading spaces are not counted away
    message = refused(lambda: config(auth_token=token), token)
    assert "U+200B (ZERO WIDTH SPACE) at position 8 of 10" in message, message


def test_a_token_from_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_AUTH_TOKEN, TOKEN + "\u200b")
    message = refused(config, TOKEN)
    assert message.startswith(ENV_AUTH_TOKEN)
    assert "U+200B" in message


@pytest.mark.parametrize("inside", ["\n", "\r", "\r\n", "\x00"])
def test_a_line_break_inside_a_token_is_refused(inside: str) -> None:
    token = TOKEN[:10] + inside + TOKEN[10:]
    message = refused(lambda: config(auth_token=token), token)
    assert "position 11" in message


@pytest.mark.parametrize("inside", [" ", "\t", "  "])
def test_a_space_or_tab_inside_a_token_travels_as_given(inside: str) -> None:
    token = TOKEN[:10] + inside + TOKEN[10:]
    assert config(auth_token=token).auth_token == token


@pytest.mark.parametrize("token", [f"Bearer {TOKEN}", f"bearer {TOKEN}\n", f" BEARER  {TOKEN}"])
def test_a_token_given_with_its_bearer_prefix_says_so(token: str) -> None:
    message = refused(lambda: config(auth_token=token), TOKEN)
    assert "'Bearer '" in message and "alone" in message


@pytest.mark.parametrize(
    "token", [TOKEN + "\n", TOKEN + "\r\n", f" {TOKEN} ", f"\t{TOKEN}\n\n", f"\n{TOKEN}"]
)
def test_whitespace_around_a_token_is_removed(token: str) -> None:
    # A token pasted from a file or `echo` into a secret often ends with a newline.
    assert config(auth_token=token).auth_token == TOKEN


def test_whitespace_around_a_token_from_the_environment_is_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_AUTH_TOKEN, TOKEN + "\n")
    assert config().auth_token == TOKEN


@pytest.mark.parametrize("token", [" ", "\n", " \t\r\n "])
def test_a_token_of_whitespace_only_counts_as_none(token: str) -> None:
    assert config(auth_token=token).auth_token is None


@pytest.mark.parametrize("client_class", CLIENTS)
@pytest.mark.parametrize("source", ["argument", "environment"])
def test_clients_refuse_a_token_with_a_zero_width_space_at_construction(
    client_class: type[Any], gw: FakeGateway, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    # Before: the sync client raised UnicodeEncodeError on every call (the token in the error's
    # text); the async one sent the token with the character UTF-8 encoded.
    token = gw.token + "\u200b"
    if source == "environment":
        monkeypatch.setenv(ENV_AUTH_TOKEN, token)
    argument = token if source == "argument" else None
    refused(lambda: client_class(gw.url, argument), gw.token)
    assert gw.requests == []


def test_both_clients_send_a_token_pasted_with_a_newline_trimmed(
    make: Callable[..., Twin], gw: FakeGateway
) -> None:
    twin = make(auth_token=gw.token + "\n")
    assert twin.call("list_models").data  # FakeGateway checks the bearer token
    assert len(gw.requests) == 1


# -- default_headers and extra_headers ----------------------------------------------------------


@pytest.mark.parametrize(("character", "code"), BAD_CHARACTERS)
def test_a_default_header_value_with_a_character_a_header_cannot_carry_is_refused(
    character: str, code: str
) -> None:
    value = "key-" + character
    message = refused(lambda: config(default_headers={"X-Api-Key": value}), value)
    assert message.startswith("default_headers")
    assert "'X-Api-Key'" in message
    assert f"{code}" in message and "position 5 of 5" in message


@pytest.mark.parametrize("value", [" key", "key ", "\tkey", "key\t"])
def test_a_default_header_value_with_surrounding_whitespace_is_refused(value: str) -> None:
    message = refused(lambda: config(default_headers={"X-Api-Key": value}), value)
    assert "'X-Api-Key'" in message and "whitespace" in message


@pytest.mark.parametrize("name", ["X-T\u00ebam", "X-Team\u200b", "X\x00", "X-Team "])
def test_a_default_header_name_outside_the_token_characters_is_refused(name: str) -> None:
    with pytest.raises(GatewayConfigError):
        config(default_headers={name: "value"})


@pytest.mark.parametrize("value", ["", "a b", "a\tb", "!#$%&'*+-.^_`|~\"(),/:;<=>?@[\\]{}"])
def test_header_values_of_visible_ascii_spaces_and_tabs_are_kept(value: str) -> None:
    assert config(default_headers={"X-A": value}).default_headers == (("X-A", value),)
    assert header_problem({"X-A": value}) is None


@pytest.mark.parametrize("client_class", CLIENTS)
def test_clients_refuse_a_default_header_that_cannot_travel(
    client_class: type[Any], gw: FakeGateway
) -> None:
    with pytest.raises(GatewayConfigError):
        client_class(gw.url, gw.token, default_headers={"X-Team": "caf\u00e9"})
    assert gw.requests == []


@pytest.mark.parametrize(("character", "code"), BAD_CHARACTERS)
def test_an_extra_header_that_cannot_travel_is_a_validation_error_and_nothing_is_sent(
    make: Callable[..., Twin], gw: FakeGateway, character: str, code: str
) -> None:
    twin = make()
    value = "secret-value-" + character
    for call in (
        lambda: twin.call("chat_completion", "openai/gpt-4o", HELLO, extra_headers={"X-K": value}),
        lambda: twin.collect(twin.stream("openai/gpt-4o", HELLO, extra_headers={"X-K": value})),
        lambda: twin.call("embeddings", "openai/text-embedding-3-small", "hi", extra_headers={
            "X-K": value}),
    ):  # fmt: skip
        with pytest.raises(GatewayValidationError) as caught:
            call()
        message = str(caught.value)
        assert "'X-K'" in message and code in message
        assert "secret-value" not in message
    assert gw.requests == []


def test_header_values_with_a_tab_or_space_inside_reach_the_gateway(
    make: Callable[..., Twin], gw: FakeGateway
) -> None:
    twin = make(default_headers={"X-Team": "search\tteam one"})
    twin.call("list_models")
    twin.call("chat_completion", "openai/gpt-4o", HELLO, extra_headers={"X-Run": "run 7\tof 9"})
    assert [request.headers.get("x-team") for request in gw.requests] == ["search\tteam one"] * 2
    assert gw.requests[1].headers.get("x-run") == "run 7\tof 9"
