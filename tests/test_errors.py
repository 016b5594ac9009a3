"""Tests for gatewayclient.errors: the status table, message extraction, Retry-After, events."""

from __future__ import annotations

import ast
import json
import math
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from requests.structures import CaseInsensitiveDict

from gatewayclient import errors
from gatewayclient.errors import (
    GatewayAuthError,
    GatewayBadRequestError,
    GatewayClientError,
    GatewayConfigError,
    GatewayConnectionError,
    GatewayModelNotFoundError,
    GatewayProviderError,
    GatewayRateLimitError,
    GatewayResponseError,
    GatewayServerError,
    GatewayStreamError,
    GatewayTimeoutError,
    GatewayValidationError,
    error_class_for_status,
    error_from_event,
    error_from_response,
    parse_duration,
    parse_retry_after,
)

ALL_CLASSES = [
    GatewayClientError,
    GatewayAuthError,
    GatewayModelNotFoundError,
    GatewayRateLimitError,
    GatewayProviderError,
    GatewayServerError,
    GatewayBadRequestError,
    GatewayConnectionError,
    GatewayTimeoutError,
    GatewayStreamError,
    GatewayResponseError,
    GatewayValidationError,
    GatewayConfigError,
]
RETRYABLE = {
    GatewayRateLimitError,
    GatewayProviderError,
    GatewayServerError,
    GatewayConnectionError,
    GatewayTimeoutError,
}
SECRET = "sk-live-0123456789abcdef"
NOW = 1_445_412_470.0  # 2015-10-21 07:27:50 UTC


# --- the module itself ----------------------------------------------------------------------


def test_all_is_sorted_and_every_name_exists() -> None:
    assert errors.__all__ == sorted(errors.__all__)
    for name in errors.__all__:
        assert hasattr(errors, name)


def test_module_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(errors.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & {"requests", "aiohttp", "tenacity", "asyncio", "socket", "multidict"}
    stdlib = getattr(sys, "stdlib_module_names", None)
    if stdlib is not None:
        assert imported - {"__future__"} <= set(stdlib)


def test_module_parses_as_python_3_9() -> None:
    ast.parse(Path(errors.__file__).read_text(encoding="utf-8"), feature_version=(3, 9))


def test_module_docstring_draws_every_exception_class() -> None:
    doc = errors.__doc__ or ""
    for cls in ALL_CLASSES:
        assert cls.__name__ in doc


# --- the exception classes ------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_every_class_derives_from_the_base(cls: type[GatewayClientError]) -> None:
    assert issubclass(cls, GatewayClientError)
    assert issubclass(cls, Exception)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_retryable_flag_is_set_exactly_on_transient_errors(cls: type[GatewayClientError]) -> None:
    assert cls.retryable is (cls in RETRYABLE)


@pytest.mark.parametrize("cls", [GatewayValidationError, GatewayConfigError])
def test_argument_and_config_errors_are_value_errors(cls: type[GatewayClientError]) -> None:
    with pytest.raises(ValueError):
        raise cls("bad")


@pytest.mark.parametrize(
    "cls", sorted(set(ALL_CLASSES) - {GatewayValidationError, GatewayConfigError}, key=str)
)
def test_other_errors_are_not_value_errors(cls: type[GatewayClientError]) -> None:
    assert not issubclass(cls, ValueError)


def test_timeout_is_a_connection_error() -> None:
    assert issubclass(GatewayTimeoutError, GatewayConnectionError)
    assert GatewayTimeoutError("slow").retryable


def test_constructor_stores_every_attribute() -> None:
    error = GatewayRateLimitError(
        "slow down",
        status_code=429,
        error_type="rate_limit_error",
        error_code="429",
        request_id="req-1",
        body={"error": {"message": "slow down"}},
        retry_after=1.5,
    )
    assert error.message == "slow down"
    assert error.status_code == 429
    assert error.error_type == "rate_limit_error"
    assert error.error_code == "429"
    assert error.request_id == "req-1"
    assert error.body == {"error": {"message": "slow down"}}
    assert error.retry_after == 1.5
    assert error.args == ("slow down",)


def test_attributes_default_to_none() -> None:
    error = GatewayStreamError("cut")
    for name in ("status_code", "error_type", "error_code", "request_id", "body", "retry_after"):
        assert getattr(error, name) is None


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "boom"),
        ({"status_code": 500}, "HTTP 500: boom"),
        ({"request_id": "r-9"}, "boom (request id r-9)"),
        ({"status_code": 502, "request_id": "r-9"}, "HTTP 502: boom (request id r-9)"),
    ],
)
def test_str_prefixes_status_and_suffixes_request_id(kwargs: dict[str, Any], expected: str) -> None:
    assert str(GatewayClientError("boom", **kwargs)) == expected


def test_repr_names_class_status_and_message() -> None:
    error = GatewayAuthError("no key", status_code=401)
    assert repr(error) == "GatewayAuthError(status_code=401, message='no key')"
    assert repr(GatewayConfigError("x")) == "GatewayConfigError(status_code=None, message='x')"


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_every_class_survives_a_pickle_round_trip(cls: type[GatewayClientError]) -> None:
    error = cls(
        "it failed",
        status_code=503,
        error_type="overloaded_error",
        error_code=529,
        request_id="req-42",
        body={"error": {"message": "it failed"}, "list": [1, 2.5, None]},
        retry_after=2.25,
    )
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        clone = pickle.loads(pickle.dumps(error, protocol=protocol))
        assert type(clone) is cls
        assert vars(clone) == vars(error)
        assert str(clone) == str(error)
        assert repr(clone) == repr(error)
        assert clone.args == error.args


def test_pickle_keeps_extra_attributes_set_after_construction() -> None:
    error = GatewayStreamError("cut")
    error.chunks_received = 3  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(error)).chunks_received == 3


def test_error_from_response_result_survives_pickle() -> None:
    error = error_from_response(
        429, {"retry-after": "3"}, b'{"error":{"message":"m","code":"429"}}'
    )
    clone = pickle.loads(pickle.dumps(error))
    assert (type(clone), clone.retry_after, clone.error_code, clone.body) == (
        GatewayRateLimitError,
        3.0,
        "429",
        {"error": {"message": "m", "code": "429"}},
    )


# --- the status table -----------------------------------------------------------------------

STATUS_TABLE = [
    (400, GatewayBadRequestError),
    (401, GatewayAuthError),
    (403, GatewayAuthError),
    (404, GatewayModelNotFoundError),
    (409, GatewayBadRequestError),
    (413, GatewayBadRequestError),
    (422, GatewayBadRequestError),
    (429, GatewayRateLimitError),
    (500, GatewayServerError),
    (502, GatewayProviderError),
    (503, GatewayServerError),
    (504, GatewayServerError),
    (529, GatewayServerError),
    (402, GatewayClientError),
    (405, GatewayClientError),
    (408, GatewayTimeoutError),
    (418, GatewayClientError),
    (501, GatewayClientError),
    (505, GatewayClientError),
    (599, GatewayClientError),
    (302, GatewayClientError),
]


@pytest.mark.parametrize(("status", "cls"), STATUS_TABLE)
def test_status_maps_to_its_class(status: int, cls: type[GatewayClientError]) -> None:
    assert error_class_for_status(status) is cls


@pytest.mark.parametrize(("status", "cls"), STATUS_TABLE)
def test_error_from_response_builds_the_class_of_the_status(
    status: int, cls: type[GatewayClientError]
) -> None:
    error = error_from_response(status, {}, b'{"error": {"message": "m"}}')
    assert type(error) is cls
    assert error.status_code == status


@pytest.mark.parametrize("status", [418, 501, 505])
def test_unlisted_status_is_plain_and_not_retryable(status: int) -> None:
    error = error_from_response(status, {}, b"nope")
    assert type(error) is GatewayClientError
    assert not error.retryable


# --- message, type, code and body -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": {"message": "bad model", "type": "x"}}', "bad model"),
        (b'{"error": "plain text error"}', "plain text error"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b'{"detail": {"reason": "quota"}}', '{"reason": "quota"}'),
        (
            b'{"detail": [{"loc": ["body", "model"], "msg": "field required"}]}',
            '[{"loc": ["body", "model"], "msg": "field required"}]',
        ),
        (b'{"message": "Internal failure"}', "Internal failure"),
        (b'{"error": {"message": "wins"}, "detail": "loses", "message": "loses"}', "wins"),
        (b'{"error": {"message": ""}, "detail": "fallback"}', "fallback"),
        (b'{"error": {"message": null}, "message": "top"}', "top"),
        (b'{"error": {"message": {"nested": 1}}}', '{"nested": 1}'),
        (b'{"html-message": "upstream said no"}', "upstream said no"),
        (b'{"html-message": "  line one\\n  line two "}', "line one line two"),
        (b'{"html-message": "<html><title>Bad upstream</title></html>"}', "Bad upstream"),
        (b'{"any_single_field": "its text"}', "its text"),
        (b'{"html-message": ""}', '{"html-message": ""}'),
        (b'{"html-message": 5}', '{"html-message": 5}'),
        (b'{"a": "one", "b": "two"}', '{"a": "one", "b": "two"}'),
        (b"Internal Server Error", "Internal Server Error"),
        (b"  upstream\n\n  timed   out\t ", "upstream timed out"),
        (b'{"unexpected": true}', '{"unexpected": true}'),
        (b"[1, 2, 3]", "[1, 2, 3]"),
        (b"42", "42"),
        ('{"error": {"message": "caf\u00e9 \u2603"}}'.encode(), "caf\u00e9 \u2603"),
        (b'\xef\xbb\xbf{"error": {"message": "with BOM"}}', "with BOM"),
    ],
)
def test_message_comes_from_every_body_shape(body: bytes, message: str) -> None:
    assert error_from_response(400, {}, body).message == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"<html><head><title>502 Bad Gateway</title></head><body><h1>502</h1>"
            b"<hr><center>nginx</center></body></html>",
            "502 Bad Gateway",
        ),
        (b"<!DOCTYPE html><html><TITLE>\n  Gone &amp; away\n</TITLE></html>", "Gone & away"),
        (b"<html><body><h1>Service</h1> <p>down</p></body></html>", "Service down"),
    ],
)
def test_html_page_gives_its_title_or_its_text(body: bytes, message: str) -> None:
    assert error_from_response(502, {}, body).message == message


def test_long_text_body_is_shortened_with_an_ellipsis() -> None:
    error = error_from_response(500, {}, b"word " * 1000)
    assert len(error.message) <= 300
    assert error.message.endswith("\u2026")
    assert error.body == "word " * 1000


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        (503, "", "HTTP 503 Service Unavailable with an empty body"),
        (500, "", "HTTP 500 Internal Server Error with an empty body"),
        (529, "", "HTTP 529 Overloaded with an empty body"),
        (502, "Bad Gateway Custom", "HTTP 502 Bad Gateway Custom with an empty body"),
        (599, "", "HTTP 599 with an empty body"),
    ],
)
def test_empty_body_message_names_status_and_reason(status: int, reason: str, message: str) -> None:
    for body in (b"", b"  \r\n "):
        error = error_from_response(status, {}, body, reason=reason)
        assert error.message == message
        assert error.body is None


def test_type_and_code_are_kept_as_received() -> None:
    litellm = b'{"error":{"message":"m","type":"throttling_error","param":null,"code":"429"}}'
    error = error_from_response(429, {}, litellm)
    assert error.error_type == "throttling_error"
    assert error.error_code == "429"
    assert error_from_response(429, {}, b'{"error":{"message":"m","code":429}}').error_code == 429
    symbolic = b'{"error":{"message":"m","code":"context_length_exceeded"}}'
    assert error_from_response(400, {}, symbolic).error_code == "context_length_exceeded"


def test_missing_type_and_code_are_none() -> None:
    error = error_from_response(404, {}, b'{"detail": "Not Found"}')
    assert (error.error_type, error.error_code) == (None, None)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": {"message": "m"}}', {"error": {"message": "m"}}),
        (b"[1, 2]", [1, 2]),
        (b"3.5", 3.5),
        (b"not json", "not json"),
        (b"", None),
        (b"\xff\xfeoops", "\ufffd\ufffdoops"),
    ],
)
def test_body_is_parsed_json_or_decoded_text(body: bytes, expected: Any) -> None:
    assert error_from_response(500, {}, body).body == expected


@pytest.mark.parametrize(
    "body", [b"\x80\x81\x82", b"[" * 100_000, b'{"error": [1]}', b'{"error": 5}', b"null", b"true"]
)
def test_odd_bodies_do_not_raise(body: bytes) -> None:
    error = error_from_response(500, {}, body)
    assert isinstance(error, GatewayServerError)
    assert isinstance(error.message, str)
    assert error.message


# --- request id -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "request_id"),
    [
        ({"x-request-id": "a"}, "a"),
        ({"X-Request-ID": "a"}, "a"),
        ({"request-id": "b"}, "b"),
        ({"x-litellm-call-id": "c"}, "c"),
        ({"x-amzn-RequestId": "d"}, "d"),
        ({"CF-RAY": "e"}, "e"),
        ({"cf-ray": "e", "x-litellm-call-id": "c", "x-request-id": "a"}, "a"),
        ({"cf-ray": "e", "x-litellm-call-id": "c"}, "c"),
        ({"x-request-id": "  ", "request-id": "b"}, "b"),
        ({"content-type": "application/json"}, None),
        ({}, None),
    ],
)
def test_request_id_comes_from_the_first_present_header(
    headers: dict[str, str], request_id: Any
) -> None:
    assert error_from_response(500, headers, b"x").request_id == request_id


def test_case_insensitive_mappings_from_requests_and_aiohttp_are_accepted() -> None:
    for headers in (
        CaseInsensitiveDict({"X-Request-Id": "r1", "Retry-After": "7"}),
        CIMultiDictProxy(CIMultiDict({"X-Request-Id": "r1", "Retry-After": "7"})),
    ):
        error = error_from_response(429, headers, b"{}")
        assert (error.request_id, error.retry_after) == ("r1", 7.0)


# --- retry_after on every status ------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 404, 500, 502, 503, 529, 418])
def test_retry_after_is_read_for_every_status(status: int) -> None:
    error = error_from_response(status, {"Retry-After": "12"}, b"x")
    assert error.retry_after == 12.0


def test_retry_after_is_none_without_a_hint() -> None:
    assert error_from_response(429, {"content-type": "text/plain"}, b"x").retry_after is None


def test_error_from_response_uses_now_for_an_http_date() -> None:
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert error_from_response(503, headers, b"", now=NOW).retry_after == 10.0


@pytest.mark.parametrize("status", [400, 404, 500, 502, 503, 529, 418, 408])
def test_retry_after_ms_is_read_for_every_status(status: int) -> None:
    assert error_from_response(status, {"retry-after-ms": "250"}, b"x").retry_after == 0.25


RATE_LIMIT_ONLY_HINTS = [
    pytest.param({"x-ratelimit-reset-requests": "1s"}, 1.0, id="reset-requests"),
    pytest.param({"x-ratelimit-reset-tokens": "6m0s"}, 360.0, id="reset-tokens"),
    pytest.param({"llm_provider-retry-after": "60"}, 60.0, id="llm_provider"),
]


@pytest.mark.parametrize(("headers", "seconds"), RATE_LIMIT_ONLY_HINTS)
def test_rate_limit_hints_count_on_a_429(headers: dict[str, str], seconds: float) -> None:
    assert error_from_response(429, headers, b"x").retry_after == seconds


@pytest.mark.parametrize(("headers", "seconds"), RATE_LIMIT_ONLY_HINTS)
@pytest.mark.parametrize("status", [400, 401, 404, 408, 422, 500, 502, 503, 504, 529])
def test_rate_limit_hints_copied_onto_other_statuses_are_ignored(
    status: int, headers: dict[str, str], seconds: float
) -> None:
    # Portkey copies an OpenAI-like upstream's headers onto every answer.
    assert error_from_response(status, headers, b"x").retry_after is None


def test_retry_after_still_wins_on_a_5xx_that_also_carries_resets() -> None:
    headers = {"x-ratelimit-reset-requests": "30s", "retry-after": "2"}
    assert error_from_response(503, headers, b"x").retry_after == 2.0
    assert error_from_response(503, {**headers, "retry-after-ms": "500"}, b"x").retry_after == 0.5


def test_parse_retry_after_reads_the_rate_limit_hints_only_when_asked() -> None:
    headers = {"x-ratelimit-reset-requests": "3s", "llm_provider-retry-after": "9"}
    assert parse_retry_after(headers) == 3.0
    assert parse_retry_after(headers, rate_limited=False) is None
    assert parse_retry_after({**headers, "retry-after": "4"}, rate_limited=False) == 4.0


# --- x-ratelimit-reset-* as a point in time ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param(str(int(NOW) + 30), 30.0, id="epoch-s"),
        pytest.param(f"{NOW + 2.5:.3f}", 2.5, id="epoch-s-fraction"),
        pytest.param(str(int(NOW * 1000) + 1500), 1.5, id="epoch-ms"),
        pytest.param(str(int(NOW) - 100), 0.0, id="epoch-s-past"),
        pytest.param(str(int(NOW * 1000) - 100), 0.0, id="epoch-ms-past"),
        pytest.param("1000000000", 0.0, id="threshold-s"),
        pytest.param("999999999", 999999999.0, id="below-threshold-is-seconds"),
        pytest.param("1000000000000", 0.0, id="threshold-ms"),
        pytest.param("1700000000s", 1700000000.0, id="with-a-unit-is-a-duration"),
    ],
)
def test_an_epoch_reset_is_read_as_a_point_in_time(value: str, seconds: float) -> None:
    for kind in ("requests", "tokens"):
        headers = {f"x-ratelimit-reset-{kind}": value}
        assert parse_retry_after(headers, now=NOW) == pytest.approx(seconds)
        error = error_from_response(429, headers, b"x", now=NOW)
        assert error.retry_after == pytest.approx(seconds)


def test_an_epoch_reset_uses_the_clock_when_now_is_not_given() -> None:
    import time

    headers = {"x-ratelimit-reset-tokens": str(int(time.time()) + 100)}
    seconds = parse_retry_after(headers)
    assert seconds is not None and 95 <= seconds <= 100
    assert error_from_response(429, headers, b"").retry_after == pytest.approx(seconds, abs=5)


@pytest.mark.parametrize("now", [float("-inf"), float("inf"), float("nan")])
def test_an_epoch_reset_against_a_non_finite_now_is_no_hint(now: float) -> None:
    assert parse_retry_after({"x-ratelimit-reset-requests": "1700000000"}, now=now) is None


def test_an_epoch_reset_and_a_duration_reset_compare_as_waits() -> None:
    headers = {
        "x-ratelimit-reset-requests": str(int(NOW) + 5),
        "x-ratelimit-reset-tokens": "20s",
    }
    assert parse_retry_after(headers, now=NOW) == pytest.approx(20.0)


# --- secret redaction -----------------------------------------------------------------------


def test_secret_is_redacted_from_message_and_nested_body() -> None:
    body = json.dumps(
        {
            "error": {
                "message": f"Invalid key {SECRET}.",
                "details": [{"token": SECRET}, f"Bearer {SECRET}"],
                SECRET: "as a key",
            }
        }
    ).encode()
    error = error_from_response(401, {"x-request-id": "r"}, body, secret=SECRET)
    assert error.message == "Invalid key [REDACTED]."
    assert SECRET not in json.dumps(error.body)
    assert error.body["error"]["details"] == [{"token": "[REDACTED]"}, "Bearer [REDACTED]"]
    assert SECRET not in str(error) + repr(error)


def test_secret_is_redacted_from_a_text_body() -> None:
    error = error_from_response(401, {}, f"bad token {SECRET} here".encode(), secret=SECRET)
    assert error.message == "bad token [REDACTED] here"
    assert error.body == "bad token [REDACTED] here"


def test_secret_escaped_in_json_is_still_redacted() -> None:
    escaped = "".join(f"\\u{ord(ch):04x}" for ch in SECRET)
    body = ('{"error": {"message": "key ' + escaped + '"}}').encode()
    error = error_from_response(401, {}, body, secret=SECRET)
    assert error.message == "key [REDACTED]"


def test_secret_cut_by_shortening_leaks_no_prefix() -> None:
    body = ("x" * 290 + " " + SECRET + " trailing").encode()
    error = error_from_response(401, {}, body, secret=SECRET)
    assert SECRET[:6] not in error.message
    assert SECRET not in error.body


def test_secret_in_a_single_string_field_is_redacted() -> None:
    body = json.dumps({"html-message": "x" * 290 + f" Bearer {SECRET} echoed"}).encode()
    error = error_from_response(401, {}, body, secret=SECRET)
    assert SECRET[:6] not in error.message and SECRET not in json.dumps(error.body)


def test_secret_in_reason_and_request_id_is_redacted() -> None:
    error = error_from_response(401, {"x-request-id": SECRET}, b"", reason=SECRET, secret=SECRET)
    assert SECRET not in str(error) + repr(error)


@pytest.mark.parametrize("secret", [None, ""])
def test_no_secret_leaves_text_untouched(secret: Any) -> None:
    error = error_from_response(401, {}, b'{"error": {"message": "key abc"}}', secret=secret)
    assert error.message == "key abc"


@settings(max_examples=200)
@given(st.integers(100, 599), st.text(), st.text())
def test_secret_never_survives_in_any_response_error(status: int, before: str, after: str) -> None:
    for body in (before + SECRET + after, json.dumps({"error": {"message": before + SECRET}})):
        error = error_from_response(status, {}, body.encode(), secret=SECRET)
        assert SECRET not in str(error) + repr(error) + json.dumps(error.body)


# --- error_from_event -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "cls", "status"),
    [
        ({"code": 429, "status": 500}, GatewayRateLimitError, 429),
        ({"code": "429", "status": 500}, GatewayRateLimitError, 429),
        ({"code": " 502 ", "status": "500"}, GatewayProviderError, 502),
        ({"code": "rate_limit_exceeded", "status": 503}, GatewayServerError, 503),
        ({"code": "context_length_exceeded", "status": "400"}, GatewayBadRequestError, 400),
        ({"status": 401}, GatewayAuthError, 401),
        ({"code": 404, "type": "rate_limit_error"}, GatewayModelNotFoundError, 404),
        ({"status": 529, "type": "invalid_request_error"}, GatewayServerError, 529),
        ({"code": 418}, GatewayClientError, 418),
        ({"code": True, "type": "permission_error"}, GatewayAuthError, None),
        ({"code": 4290, "type": "not_found_error"}, GatewayModelNotFoundError, None),
        ({"code": "\u0664\u0662\u0669"}, GatewayServerError, None),
        ({"code": 42.9, "status": None}, GatewayServerError, None),
    ],
)
def test_event_class_follows_numeric_code_then_status_then_type(
    error: dict[str, Any], cls: type[GatewayClientError], status: Any
) -> None:
    result = error_from_event({"error": {"message": "m", **error}})
    assert type(result) is cls
    assert result.status_code == status


@pytest.mark.parametrize(
    ("error_type", "cls"),
    [
        ("rate_limit_error", GatewayRateLimitError),
        ("authentication_error", GatewayAuthError),
        ("permission_error", GatewayAuthError),
        ("not_found_error", GatewayModelNotFoundError),
        ("invalid_request_error", GatewayBadRequestError),
        ("provider_error", GatewayProviderError),
        ("upstream_error", GatewayProviderError),
        ("overloaded_error", GatewayServerError),
        ("api_error", GatewayServerError),
        ("throttling_error", GatewayServerError),
        ("", GatewayServerError),
        (None, GatewayServerError),
        (7, GatewayServerError),
    ],
)
def test_event_type_maps_to_its_class(error_type: Any, cls: type[GatewayClientError]) -> None:
    result = error_from_event({"error": {"message": "m", "type": error_type}})
    assert type(result) is cls
    assert result.status_code is None


def test_event_without_type_is_a_server_error() -> None:
    assert type(error_from_event({"error": {"message": "m"}})) is GatewayServerError


def test_event_keeps_message_type_code_and_payload() -> None:
    payload = {"error": {"message": "quota", "type": "throttling_error", "code": "429"}}
    result = error_from_event(payload)
    assert (result.message, result.error_type, result.error_code) == (
        "quota",
        "throttling_error",
        "429",
    )
    assert result.body == payload
    assert str(result) == "HTTP 429: quota"


def test_event_accepts_a_text_error_and_an_unwrapped_error_object() -> None:
    assert error_from_event({"error": "stream failed"}).message == "stream failed"
    unwrapped = error_from_event({"message": "bare", "type": "not_found_error"})
    assert (type(unwrapped), unwrapped.message) == (GatewayModelNotFoundError, "bare")


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        [1, {"error": 2}],
        7,
        2.5,
        "text",
        True,
        {},
        {"error": None},
        {"error": [1]},
        {"error": {"message": None}},
        {"error": {"message": ""}},
        {"error": {"code": {"a": [1]}}},
    ],
)
def test_odd_event_payloads_give_a_server_error_with_a_message(payload: Any) -> None:
    result = error_from_event(payload)
    assert isinstance(result, GatewayServerError)
    assert isinstance(result.message, str)
    assert result.message


def test_event_message_falls_back_to_a_sentence_naming_the_type() -> None:
    assert "overloaded_error" in error_from_event({"error": {"type": "overloaded_error"}}).message


def test_event_code_that_is_not_text_or_int_is_kept_as_json_text() -> None:
    assert error_from_event({"error": {"code": ["a"]}}).error_code == '["a"]'


@pytest.mark.parametrize(
    ("fields", "headers", "expected"),
    [
        ({}, None, None),
        ({}, {"Retry-After": "4"}, 4.0),
        ({"retry_after": 2}, None, 2.0),
        ({"retry_after": "2.5"}, None, 2.5),
        ({"retry_after_ms": 1500}, None, 1.5),
        ({"retry_after_ms": "250"}, None, 0.25),
        ({"retry_after_ms": 100, "retry_after": 9}, None, 0.1),
        ({"retry_after": 3}, {"retry-after": "30"}, 3.0),
        ({"retry_after": -1}, {"retry-after": "30"}, 30.0),
        ({"retry_after": "soon"}, None, None),
        ({"retry_after": True}, None, None),
        ({"retry_after": float("nan")}, None, None),
        ({"retry_after": 10**400}, None, None),
    ],
)
def test_event_retry_after_comes_from_fields_then_headers(
    fields: dict[str, Any], headers: Any, expected: Any
) -> None:
    result = error_from_event({"error": {"message": "m", **fields}}, headers)
    assert result.retry_after == expected


@pytest.mark.parametrize(
    ("fields", "cls"),
    [
        ({"code": "rate_limit_exceeded", "type": "requests"}, GatewayRateLimitError),
        ({"code": "rate_limit_exceeded", "type": "tokens"}, GatewayRateLimitError),
        ({"code": "rate_limit_exceeded"}, GatewayRateLimitError),
        ({"code": "rate_limit_exceeded", "status": 500}, GatewayServerError),
        ({"code": "rate_limit_exceeded", "type": "invalid_request_error"}, GatewayRateLimitError),
        ({"code": "some_other_code", "type": "invalid_request_error"}, GatewayBadRequestError),
        ({"code": 408}, GatewayTimeoutError),
    ],
)
def test_event_rate_limit_code_is_a_rate_limit_error(
    fields: dict[str, Any], cls: type[GatewayClientError]
) -> None:
    error = error_from_event({"error": {"message": "m", **fields}})
    assert type(error) is cls
    assert error.error_code == fields["code"]


RESETS = {"x-ratelimit-reset-requests": "30s", "llm_provider-retry-after": "40"}


@pytest.mark.parametrize(
    ("fields", "headers", "expected"),
    [
        ({"type": "rate_limit_error"}, RESETS, 30.0),
        ({"code": "rate_limit_exceeded"}, RESETS, 30.0),
        ({"code": 429}, RESETS, 30.0),
        ({"type": "server_error"}, RESETS, None),
        ({"type": "overloaded_error"}, RESETS, None),
        ({"code": 503}, RESETS, None),
        ({}, RESETS, None),
        ({"type": "server_error"}, {**RESETS, "retry-after": "3"}, 3.0),
        ({"type": "server_error"}, {**RESETS, "retry-after-ms": "300"}, 0.3),
        ({"type": "server_error", "retry_after": 2}, RESETS, 2.0),
    ],
)
def test_event_reads_rate_limit_hints_only_for_a_rate_limit_error(
    fields: dict[str, Any], headers: dict[str, str], expected: Any
) -> None:
    error = error_from_event({"error": {"message": "m", **fields}}, headers)
    assert error.retry_after == expected


def test_event_reads_an_epoch_reset_against_now() -> None:
    headers = {"x-ratelimit-reset-tokens": str(int(NOW * 1000) + 7000)}
    error = error_from_event({"error": {"type": "rate_limit_error"}}, headers, now=NOW)
    assert error.retry_after == pytest.approx(7.0)


def test_event_request_id_comes_from_the_stream_headers() -> None:
    assert error_from_event({"error": {}}, {"X-Request-Id": "s-1"}).request_id == "s-1"


def test_event_secret_is_redacted_everywhere() -> None:
    payload = {"error": {"message": f"bad {SECRET}", "type": SECRET, "code": SECRET, "x": [SECRET]}}
    result = error_from_event(payload, {"x-request-id": SECRET}, secret=SECRET)
    assert SECRET not in str(result) + repr(result) + json.dumps(result.body)
    assert (result.error_type, result.error_code) == ("[REDACTED]", "[REDACTED]")
    assert payload["error"]["message"] == f"bad {SECRET}"
    assert error_from_event({"error": SECRET}, secret=SECRET).message == "[REDACTED]"


# --- parse_retry_after ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "120"}, 120.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "0.772804"}, 0.772804),
        ({"retry-after": " 5 "}, 5.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 10.0),
        ({"Retry-After": "Wednesday, 21-Oct-15 07:28:00 GMT"}, 10.0),
        ({"Retry-After": "Wed Oct 21 07:28:00 2015"}, 10.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:00:00 GMT"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "20.5"}, 0.0205),
        ({"x-ratelimit-reset-requests": "1m30s"}, 90.0),
        ({"x-ratelimit-reset-tokens": "20ms"}, 0.02),
        ({"x-ratelimit-reset-tokens": "0.5s"}, 0.5),
        ({"x-ratelimit-reset-requests": "6m0s"}, 360.0),
        ({"x-ratelimit-reset-requests": "2.5"}, 2.5),
        ({"llm_provider-retry-after": "60"}, 60.0),
        ({"LLM_Provider-Retry-After": "0.25"}, 0.25),
        ({}, None),
        ({"content-type": "application/json"}, None),
    ],
)
def test_every_retry_after_form_is_read(headers: dict[str, str], expected: Any) -> None:
    assert parse_retry_after(headers, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "100", "retry-after": "9"}, 0.1),
        ({"retry-after": "9", "x-ratelimit-reset-requests": "30s"}, 9.0),
        ({"x-ratelimit-reset-requests": "30s", "llm_provider-retry-after": "60"}, 30.0),
        (
            {
                "llm_provider-retry-after": "60",
                "x-ratelimit-reset-tokens": "2s",
                "retry-after": "3",
                "retry-after-ms": "4000",
            },
            4.0,
        ),
    ],
)
def test_retry_after_sources_follow_the_precedence(
    headers: dict[str, str], expected: float
) -> None:
    assert parse_retry_after(headers) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("requests_reset", "tokens_reset", "expected"),
    [("1s", "6m0s", 360.0), ("2m", "20ms", 120.0), ("1.5", "1.5", 1.5), ("bad", "3s", 3.0)],
)
def test_longer_of_request_and_token_reset_wins(
    requests_reset: str, tokens_reset: str, expected: float
) -> None:
    headers = {
        "x-ratelimit-reset-requests": requests_reset,
        "x-ratelimit-reset-tokens": tokens_reset,
    }
    assert parse_retry_after(headers) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "-5", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "inf", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "", "retry-after": "2"}, 2.0),
        ({"retry-after": "-1", "x-ratelimit-reset-requests": "4s"}, 4.0),
        ({"retry-after": "soon", "x-ratelimit-reset-requests": "4s"}, 4.0),
        ({"retry-after": "1e3", "x-ratelimit-reset-requests": "4s"}, 4.0),
        ({"retry-after": "Infinity", "llm_provider-retry-after": "6"}, 6.0),
        ({"retry-after": "9" * 400, "llm_provider-retry-after": "6"}, 6.0),
        ({"retry-after": "\uff15", "llm_provider-retry-after": "6"}, 6.0),
        ({"retry-after": "Wed, 99 Foo 2015 07:28:00 GMT", "llm_provider-retry-after": "6"}, 6.0),
        ({"x-ratelimit-reset-requests": "-1s", "llm_provider-retry-after": "6"}, 6.0),
        ({"llm_provider-retry-after": "never"}, None),
        ({"llm_provider-retry-after": "-60"}, None),
    ],
)
def test_malformed_values_are_ignored_and_fall_through(
    headers: dict[str, str], expected: Any
) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_http_date_uses_the_clock_when_now_is_not_given() -> None:
    assert parse_retry_after({"retry-after": "Sun, 06 Nov 1994 08:49:37 GMT"}) == 0.0
    future = parse_retry_after({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"})
    assert future is not None and future > 1e9


# --- parse_duration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.5", 1.5),
        ("0", 0.0),
        ("1m30s", 90.0),
        ("20ms", 0.02),
        ("0.5s", 0.5),
        ("1h", 3600.0),
        ("1h2m3.5s", 3723.5),
        ("6m0s", 360.0),
        ("2m", 120.0),
        ("1s500ms", 1.5),
        ("750us", 0.00075),
        (" 3s ", 3.0),
    ],
)
def test_duration_is_read_in_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "  ", "abc", "1x", "s", "m30", "-1s", "1.2.3s", "nan", "inf", "1 m"]
)
def test_garbage_duration_is_none(text: str) -> None:
    assert parse_duration(text) is None


# --- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
error_keys = st.sampled_from(
    ["message", "type", "code", "status", "retry_after", "retry_after_ms", "param", "error"]
)
error_objects = st.dictionaries(error_keys | st.text(max_size=8), json_values, max_size=7)
header_names = st.sampled_from(
    [
        "Retry-After",
        "retry-after-ms",
        "x-ratelimit-reset-requests",
        "X-RateLimit-Reset-Tokens",
        "llm_provider-retry-after",
        "x-request-id",
    ]
)
header_dicts = st.dictionaries(header_names | st.text(), st.text(), max_size=6)
bodies = st.binary() | json_values.map(lambda value: json.dumps(value).encode())


@settings(max_examples=300)
@given(st.integers(100, 599), header_dicts, bodies, st.text(), st.none() | st.text())
def test_error_from_response_never_raises_and_matches_the_table(
    status: int, headers: dict[str, str], body: bytes, reason: str, secret: Any
) -> None:
    error = error_from_response(status, headers, body, reason=reason, secret=secret, now=NOW)
    assert type(error) is error_class_for_status(status)
    assert isinstance(error.message, str)
    assert error.message
    assert error.status_code == status
    str(error), repr(error)
    retry_after = error.retry_after
    assert retry_after is None or (math.isfinite(retry_after) and retry_after >= 0)


@settings(max_examples=300)
@given(header_dicts, st.none() | st.floats(min_value=0, max_value=4e9))
def test_parse_retry_after_never_raises_and_is_a_finite_non_negative_float(
    headers: dict[str, str], now: Any
) -> None:
    seconds = parse_retry_after(headers, now=now)
    assert seconds is None or (
        isinstance(seconds, float) and math.isfinite(seconds) and seconds >= 0
    )


@given(st.text())
def test_parse_duration_never_raises(text: str) -> None:
    seconds = parse_duration(text)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


@settings(max_examples=300)
@given(
    json_values | error_objects | st.fixed_dictionaries({"error": error_objects | json_values}),
    st.none() | header_dicts,
    st.none() | st.text(max_size=5),
)
def test_error_from_event_never_raises_on_arbitrary_json(
    payload: Any, headers: Any, secret: Any
) -> None:
    error = error_from_event(payload, headers, secret=secret)
    assert isinstance(error, GatewayClientError)
    assert isinstance(error.message, str)
    assert error.message
    assert error.status_code is None or 100 <= error.status_code <= 599
    assert error.error_code is None or isinstance(error.error_code, (str, int))
    str(error), repr(error)
    pickle.loads(pickle.dumps(error))
