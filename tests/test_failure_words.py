"""The words of transport failures (``_failures``), as tables: every kind's class, retryability
and message, and every response-head defect both twins refuse. Item 20 of issue 9: one place
words every failure, from safe facts only."""

from __future__ import annotations

from typing import List, Optional, Tuple, Type

import pytest

from gatewayclient import (
    GatewayClientError,
    GatewayConnectionError,
    GatewayResponseError,
    GatewayTimeoutError,
)
from gatewayclient._failures import _KINDS, Failure, failure_error, length_defect, origin_of

URL = "http://gw.test:4000/v1/chat/completions"
LABEL = f"POST {URL}"
GATEWAY = "cannot connect to the gateway at http://gw.test:4000"
PROXY = "http://puser:proxy-pass@proxy.test:3128"

KINDS: List[Tuple[Failure, Type[GatewayClientError], bool, str]] = [
    (
        Failure("connect", reason="connection refused"),
        GatewayConnectionError, True, f"{GATEWAY}: connection refused",
    ),
    (
        Failure("dns"),
        GatewayConnectionError, True, f"{GATEWAY}: its host name could not be resolved",
    ),
    (
        Failure("connect_timeout", seconds=1.5),
        GatewayTimeoutError, True,
        f"{GATEWAY}: no connection within 1.5 s "
        "(none of max_connections free, or connecting took longer)",
    ),
    (
        Failure("read_timeout", seconds=30.0),
        GatewayTimeoutError, True, f"{LABEL} timed out: the gateway sent nothing for 30 s",
    ),
    (
        Failure("write_timeout", seconds=0.25),
        GatewayTimeoutError, True,
        f"{LABEL} timed out: the gateway took none of the request for 0.25 s",
    ),
    (
        Failure("dropped", reason="connection reset by the gateway"),
        GatewayConnectionError, True,
        f"{LABEL}: the connection was closed before the answer was complete "
        "(connection reset by the gateway)",
    ),
    (
        Failure("tls_verify", reason="self-signed certificate"),
        GatewayConnectionError, False,
        f"{GATEWAY}: TLS certificate verification failed: self-signed certificate",
    ),
    (
        Failure("tls", reason="WRONG_VERSION_NUMBER"),
        GatewayConnectionError, True, f"{GATEWAY}: the TLS handshake failed (WRONG_VERSION_NUMBER)",
    ),
    (
        Failure("proxy", reason="connection refused", proxy=PROXY),
        GatewayConnectionError, True,
        f"{GATEWAY} through the proxy at http://proxy.test:3128: connection refused",
    ),
    (
        Failure("proxy_refused", status=407, proxy=PROXY),
        GatewayConnectionError, False,
        f"{GATEWAY}: the proxy at http://proxy.test:3128 answered 407 "
        "Proxy Authentication Required",
    ),
    (
        Failure("malformed", reason="more than 100 headers"),
        GatewayResponseError, False,
        f"{LABEL}: the gateway's answer is not valid HTTP (more than 100 headers)",
    ),
    (
        Failure("decode", reason="corrupt data"),
        GatewayResponseError, False,
        f"{LABEL}: the answer's compressed body could not be decoded (corrupt data)",
    ),
    (Failure("redirects"), GatewayClientError, False, f"{LABEL}: stopped after 20 redirects"),
    (
        Failure("redirect_target"),
        GatewayClientError, False,
        f"{LABEL}: the gateway redirected to a URL that cannot be followed",
    ),
    (Failure("other", reason="UploadAbortedError"), GatewayClientError, False,
     f"{LABEL} failed (UploadAbortedError)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("failure", "cls", "retryable", "message"), KINDS, ids=[row[0].kind for row in KINDS]
)
def test_each_kind_of_failure_has_its_class_retryability_and_words(
    failure: Failure, cls: Type[GatewayClientError], retryable: bool, message: str
) -> None:
    error = failure_error(failure, LABEL, URL)
    assert type(error) is cls
    assert error.retryable is retryable
    assert error.message == message and str(error).endswith(message)
    assert error.status_code == (407 if failure.kind == "proxy_refused" else None)
    assert "puser" not in message and "proxy-pass" not in message


def test_the_table_names_every_kind_there_is() -> None:
    assert sorted(row[0].kind for row in KINDS) == sorted(_KINDS)


def test_an_unknown_kind_is_worded_as_other() -> None:
    error = failure_error(Failure("no-such-kind", reason="Oops"), LABEL, URL)
    assert type(error) is GatewayClientError and error.message == f"{LABEL} failed (Oops)"


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (Failure("read_timeout"), "sent nothing for ? s"),  # timeout=None: no number to give
        (Failure("dropped"), "complete (no details)"),
        (Failure("dropped", reason="a\nb\x00c\u200b"), "complete (a b c)"),
        (Failure("proxy", reason="refused"), "through the proxy at the configured proxy"),
        (Failure("proxy_refused", status=499, proxy=PROXY), "answered 499"),
        (Failure("proxy_refused", status=None), "answered an error"),
    ],
)
def test_missing_or_odd_facts_still_make_one_clean_line(failure: Failure, words: str) -> None:
    assert words in failure_error(failure, LABEL, URL).message


def test_a_reason_is_cut_to_one_short_line() -> None:
    message = failure_error(Failure("tls", reason="x" * 5000), LABEL, URL).message
    assert "x" * 200 in message and "x" * 201 not in message


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://alice:secret@gw.test/v1", "https://gw.test"),
        ("http://[::1]:8080/v1?key=secret#frag", "http://[::1]:8080"),
        ("http://GW.test:80/", "http://gw.test:80"),
    ],
)
def test_an_origin_has_no_userinfo_path_or_query(url: str, origin: str) -> None:
    assert origin_of(url) == origin


NOT_ONE = "its Content-Length is not one number"
# What the sync twin checks itself (aiohttp refuses these in its parser); requests joins
# repeated Content-Length values with ", ".
LENGTHS: List[Tuple[str, Optional[str], Optional[str]]] = [
    ("absent", None, None),
    ("ordinary", "12", None),
    ("padded", " 12 ", None),
    ("nope", "nope", NOT_ONE),
    ("two-values", "12, 13", NOT_ONE),
    ("repeated-same", "12, 12", NOT_ONE),
    ("signed", "+12", NOT_ONE),
    ("negative", "-1", NOT_ONE),
    ("empty", "", NOT_ONE),
    ("fullwidth", "\uff11\uff12", NOT_ONE),
]


@pytest.mark.parametrize(("given", "defect"), [r[1:] for r in LENGTHS], ids=[r[0] for r in LENGTHS])
def test_a_content_length_that_is_not_one_number_is_a_defect(
    given: Optional[str], defect: Optional[str]
) -> None:
    assert length_defect(given) == defect
