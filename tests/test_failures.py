"""Errors and retries over loopback, on both clients: the status table, Retry-After, timeouts,
refused connections and bad bodies."""

from __future__ import annotations

import logging
import socket
import time
from typing import Callable, Type

import pytest
from twin import Twin

from gatewayclient import (
    GatewayAuthError,
    GatewayBadRequestError,
    GatewayClientError,
    GatewayConnectionError,
    GatewayModelNotFoundError,
    GatewayProviderError,
    GatewayRateLimitError,
    GatewayResponseError,
    GatewayServerError,
    GatewayTimeoutError,
    RetryPolicy,
)
from gatewayclient.testing import FakeGateway

HELLO = [{"role": "user", "content": "Hello!"}]
MODEL = "openai/gpt-4o"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, GatewayBadRequestError),
        (401, GatewayAuthError),
        (403, GatewayAuthError),
        (404, GatewayModelNotFoundError),
        (408, GatewayTimeoutError),
        (409, GatewayBadRequestError),
        (413, GatewayBadRequestError),
        (418, GatewayClientError),
        (422, GatewayBadRequestError),
        (429, GatewayRateLimitError),
        (500, GatewayServerError),
        (501, GatewayClientError),
        (502, GatewayProviderError),
        (503, GatewayServerError),
        (504, GatewayServerError),
        (529, GatewayServerError),
    ],
)
def test_each_status_raises_its_typed_error_with_every_field(
    make: Callable[..., Twin], gw: FakeGateway, status: int, error: Type[GatewayClientError]
) -> None:
    twin = make(max_retries=0)
    body = {"error": {"message": f"scripted {status}", "type": "some_type", "code": "some_code"}}
    gw.fail(status, body=body, headers={"x-request-id": "req-42"})
    with pytest.raises(error) as info:
        twin.call("chat_completion", MODEL, HELLO)
    assert type(info.value) is error
    assert info.value.status_code == status
    assert info.value.message == f"scripted {status}"
    assert (info.value.error_type, info.value.error_code) == ("some_type", "some_code")
    assert info.value.request_id == "req-42"
    assert info.value.body == body
    assert info.value.retry_after is None
    assert len(gw.requests) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"detail": "Not Found"}, "Not Found"),
        ({"message": "plain message"}, "plain message"),
        ("upstream exploded", "upstream exploded"),
        ({"html-message": "Portkey: the upstream said no"}, "Portkey: the upstream said no"),
    ],
)
def test_error_message_from_every_body_shape(
    twin: Twin, gw: FakeGateway, body: object, message: str
) -> None:
    gw.fail(400, body=body)
    with pytest.raises(GatewayBadRequestError) as info:
        twin.call("list_models")
    assert info.value.message == message


def test_an_html_502_page_from_a_proxy_is_a_provider_error(
    make: Callable[..., Twin], gw: FakeGateway
) -> None:
    gw.html_error(502)
    with pytest.raises(GatewayProviderError) as info:
        make(max_retries=0).call("chat_completion", MODEL, HELLO)
    assert info.value.status_code == 502 and "<" not in info.value.message


def test_an_error_status_with_an_empty_body_names_the_status(
    make: Callable[..., Twin], gw: FakeGateway
) -> None:
    gw.empty_body(503)
    with pytest.raises(GatewayServerError) as info:
        make(max_retries=0).call("list_models")
    assert "503" in info.value.message


@pytest.mark.parametrize("fault", ["malformed", "empty"])
def test_a_200_without_the_promised_json_is_a_response_error(
    twin: Twin, gw: FakeGateway, fault: str
) -> None:
    gw.malformed_body() if fault == "malformed" else gw.empty_body(200)
    with pytest.raises(GatewayResponseError):
        twin.call("chat_completion", MODEL, HELLO)
    assert len(gw.requests) == 1  # not retried
    assert twin.client.usage.total.requests == 0


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 529])
def test_retryable_statuses_are_retried_until_success(
    twin: Twin, gw: FakeGateway, status: int
) -> None:
    gw.fail(status, times=2)
    assert twin.call("chat_completion", MODEL, HELLO).choices
    assert len(gw.requests) == 3
    assert len({r.headers["idempotency-key"] for r in gw.requests}) == 1
    assert twin.client.usage.total.requests == 1  # one call, whatever its attempts


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
def test_other_statuses_are_never_retried(twin: Twin, gw: FakeGateway, status: int) -> None:
    gw.fail(status, times=3)
    with pytest.raises(GatewayClientError):
        twin.call("chat_completion", MODEL, HELLO)
    assert len(gw.requests) == 1


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_max_retries_counts_retries_not_attempts(
    make: Callable[..., Twin], gw: FakeGateway, retries: int
) -> None:
    from gatewayclient import RetryPolicy

    twin = make(retry_policy=RetryPolicy(max_retries=retries, backoff_base=0))
    gw.fail(503, times=10)
    with pytest.raises(GatewayServerError):
        twin.call("list_models")
    assert len(gw.requests) == retries + 1


def test_retry_after_is_waited_and_logged(
    make: Callable[..., Twin], gw: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    twin = make(max_retries=2)
    gw.fail(429, retry_after=0.3)
    caplog.set_level(logging.WARNING, logger="gatewayclient")
    started = time.monotonic()
    assert twin.call("chat_completion", MODEL, HELLO).choices
    assert 0.3 <= time.monotonic() - started < 2.0
    (record,) = [r for r in caplog.records if r.name == "gatewayclient"]
    assert record.levelno == logging.WARNING
    assert "429" in record.getMessage() and "0.30 s" in record.getMessage()
    assert gw.token not in record.getMessage()


def test_a_longer_retry_after_than_allowed_is_raised_at_once(
    make: Callable[..., Twin], gw: FakeGateway
) -> None:
    twin = make(max_retries=2, max_retry_after=1.0)
    gw.fail(429, retry_after=30)
    started = time.monotonic()
    with pytest.raises(GatewayRateLimitError) as info:
        twin.call("chat_completion", MODEL, HELLO)
    assert time.monotonic() - started < 1.0
    assert info.value.retry_after == 30
    assert len(gw.requests) == 1


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "150"}, 0.15),
        ({"x-ratelimit-reset-requests": "0.1s", "x-ratelimit-reset-tokens": "200ms"}, 0.2),
        ({"llm_provider-retry-after": "0.1"}, 0.1),
    ],
)
def test_every_rate_limit_hint_sets_retry_after(
    make: Callable[..., Twin], gw: FakeGateway, headers: dict, seconds: float
) -> None:
    gw.fail(429, headers=headers)
    with pytest.raises(GatewayRateLimitError) as info:
        make(max_retries=0).call("list_models")
    assert info.value.retry_after == pytest.approx(seconds)


PORTKEY_COPIED = {"x-ratelimit-reset-requests": "30s", "x-ratelimit-reset-tokens": "1m0s"}


@pytest.mark.parametrize("status", [400, 408, 500, 503])
def test_rate_limit_resets_on_another_status_are_not_its_retry_after(
    make: Callable[..., Twin], gw: FakeGateway, status: int
) -> None:
    gw.fail(status, headers={**PORTKEY_COPIED, "llm_provider-retry-after": "9"})
    with pytest.raises(GatewayClientError) as info:
        make(max_retries=0).call("list_models")
    assert info.value.status_code == status
    assert info.value.retry_after is None


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_carrying_copied_resets_backs_off_and_is_retried(
    make: Callable[..., Twin], gw: FakeGateway, status: int
) -> None:
    # Were the copied 60 s reset read as the wait, the call would give up at once.
    twin = make(retry_policy=RetryPolicy(max_retries=1, max_retry_after=1.0, backoff_base=0.1))
    gw.fail(status, headers=PORTKEY_COPIED)
    started = time.monotonic()
    assert twin.call("list_models").data
    assert time.monotonic() - started < 1.0
    assert len(gw.requests) == 2


def test_retry_after_on_a_5xx_with_copied_resets_is_still_the_wait(
    make: Callable[..., Twin], gw: FakeGateway
) -> None:
    twin = make(retry_policy=RetryPolicy(max_retries=1, max_retry_after=1.0, backoff_base=0))
    gw.fail(503, headers=PORTKEY_COPIED, retry_after=0.3)
    started = time.monotonic()
    assert twin.call("list_models").data
    assert 0.3 <= time.monotonic() - started < 2.0


@pytest.mark.parametrize("unit", [1, 1000])
def test_a_429_with_an_epoch_reset_waits_until_then(
    make: Callable[..., Twin], gw: FakeGateway, unit: int
) -> None:
    twin = make(retry_policy=RetryPolicy(max_retries=1, max_retry_after=5.0, backoff_base=0))
    reset = int((time.time() + 1.0) * unit)  # whole seconds (or ms) from now: within 1 s
    gw.fail(429, headers={"x-ratelimit-reset-requests": str(reset)})
    started = time.monotonic()
    assert twin.call("list_models").data
    assert time.monotonic() - started < 2.5
    assert len(gw.requests) == 2


def test_a_408_is_raised_as_a_timeout_after_its_retries(
    make: Callable[..., Twin], gw: FakeGateway
) -> None:
    gw.fail(408, times=5, body={"error": {"message": "upstream timed out"}})
    with pytest.raises(GatewayTimeoutError) as info:
        make().call("chat_completion", MODEL, HELLO)
    assert (info.value.status_code, info.value.message) == (408, "upstream timed out")
    assert len(gw.requests) == 3


def test_a_stream_answered_408_is_retried(twin: Twin, gw: FakeGateway) -> None:
    gw.fail(408)
    assert twin.collect(twin.stream(MODEL, HELLO))
    assert len(gw.requests) == 2


RATE_LIMIT_EVENT = {"message": "slow down", "type": "tokens", "code": "rate_limit_exceeded"}


def test_an_in_stream_rate_limit_exceeded_is_a_rate_limit_error(
    twin: Twin, gw: FakeGateway
) -> None:
    gw.stream_error(RATE_LIMIT_EVENT, after=1)
    stream = twin.stream(MODEL, HELLO)
    with pytest.raises(GatewayRateLimitError) as info:
        twin.collect(stream)
    assert (info.value.message, info.value.error_code) == ("slow down", "rate_limit_exceeded")
    assert len(gw.requests) == 1


def test_a_first_event_rate_limit_exceeded_is_retried(twin: Twin, gw: FakeGateway) -> None:
    gw.stream_error(RATE_LIMIT_EVENT, after=0)
    assert twin.collect(twin.stream(MODEL, HELLO))
    assert len(gw.requests) == 2


def test_the_gateway_rate_limit_is_retried_transparently(
    make: Callable[..., Twin], gateway_server: FakeGateway
) -> None:
    with FakeGateway(rpm_limit=2, window=0.5) as limited:
        twin = make(base_url=limited.url, auth_token=limited.token, max_retries=2)
        for _ in range(3):
            assert twin.call("list_models").data
        assert [r.path for r in limited.requests].count("/v1/models") == 4


def test_a_reset_connection_is_retried(twin: Twin, gw: FakeGateway) -> None:
    gw.reset_connection(times=2)
    assert twin.call("chat_completion", MODEL, HELLO).choices
    assert len(gw.requests) == 3


def test_a_reset_mid_body_is_retried(twin: Twin, gw: FakeGateway) -> None:
    gw.reset_connection(when="mid_body")
    assert twin.call("list_models").data


def test_a_reset_without_retries_is_a_connection_error(
    make: Callable[..., Twin], gw: FakeGateway
) -> None:
    twin = make(max_retries=0)
    twin.call("list_models")  # a pooled connection, which a transport might silently retry on
    gw.reset_connection()
    with pytest.raises(GatewayConnectionError) as info:
        twin.call("list_models")
    assert not isinstance(info.value, GatewayTimeoutError)
    assert len(gw.requests) == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connection_is_a_connection_error(make: Callable[..., Twin]) -> None:
    twin = make(base_url=f"http://127.0.0.1:{free_port()}", max_retries=0, timeout=2)
    started = time.monotonic()
    with pytest.raises(GatewayConnectionError):
        twin.call("list_models")
    assert time.monotonic() - started < 2


def test_a_stall_before_the_headers_times_out(make: Callable[..., Twin], gw: FakeGateway) -> None:
    twin = make(timeout=0.3, max_retries=0)
    gw.stall(3)
    started = time.monotonic()
    with pytest.raises(GatewayTimeoutError):
        twin.call("chat_completion", MODEL, HELLO)
    assert time.monotonic() - started < 2.3
    assert twin.call("chat_completion", MODEL, HELLO).choices  # the client still works


def test_a_per_call_timeout_overrides_the_client_default(
    make: Callable[..., Twin], gw: FakeGateway
) -> None:
    twin = make(timeout=30, max_retries=0)
    gw.stall(3)
    started = time.monotonic()
    with pytest.raises(GatewayTimeoutError):
        twin.call("chat_completion", MODEL, HELLO, timeout=0.3)
    assert time.monotonic() - started < 2.3


def test_timeouts_are_retried(make: Callable[..., Twin], gw: FakeGateway) -> None:
    twin = make(timeout=0.3)
    gw.stall(1)
    assert twin.call("list_models").data
    assert len(gw.requests) == 2


def test_a_wrong_token_is_an_auth_error(make: Callable[..., Twin]) -> None:
    with pytest.raises(GatewayAuthError) as info:
        make(auth_token="wrong-token").call("list_models")
    assert info.value.status_code == 401
    assert "wrong-token" not in str(info.value) and "wrong-token" not in repr(info.value.body)


def test_a_token_not_allowed_a_model_gets_403(make: Callable[..., Twin], gw: FakeGateway) -> None:
    gw.add_token("narrow-token", models=["openai/gpt-4o-mini"])
    twin = make(auth_token="narrow-token")
    assert twin.call("chat_completion", "openai/gpt-4o-mini", HELLO).choices
    with pytest.raises(GatewayAuthError) as info:
        twin.call("chat_completion", MODEL, HELLO)
    assert info.value.status_code == 403


def test_an_unknown_model_is_model_not_found(twin: Twin) -> None:
    with pytest.raises(GatewayModelNotFoundError):
        twin.call("chat_completion", "openai/no-such-model", HELLO)
