"""Item 21 of issue 9: the twin behaviour matrix. One table of misbehaving raw-socket servers,
each run against both clients, for chat and for streams where it applies, with
``max_retries=0`` and with two zero-wait retries. Each twin's record (the error's class,
``status_code`` and ``retryable``, the attempts, what the server saw, the chunks delivered) must
equal the other's and the table's; each twin must keep the time bound; then no socket is left
behind and the same client answers a normal call. Signatures alike are not twins alike: this is.
"""

from __future__ import annotations

import functools
from typing import Any, Iterator, List

import pytest
from matrix_stages import (
    Certificates,
    another_host,
    big_answer,
    big_line_intact,
    certificate_named,
    k_chunks_first,
    make_certificates,
    no_cookie_replayed,
    no_proxy_credentials,
    refused,
    replaced,
    serving,
    through_a_proxy,
    token_kept_home,
    untrusted_tls,
    uploading,
)
from misbehaving import (
    AZURE_FILTER,
    BAD_HEADS,
    GOOD_HEADS,
    WHOLE_ANSWER,
    answer,
    close_before_head,
    cycling,
    error_body,
    events_then,
    held_stream,
    html_502,
    json_cut,
    kept_open_after_done,
    never_read,
    redirect,
    reset_before_head,
    reset_on_accept,
    stall,
    status,
    words,
)
from rawserver import NORMAL_EVENTS
from test_raw_faults import (  # noqa: F401 - free_the_payloads drops the big bodies afterwards
    big_json,
    big_line,
    free_the_payloads,
    invalid_utf8_in_string,
    invalid_utf8_in_structure,
)
from twin_harness import (
    Expect,
    Row,
    abandoned_after_one_chunk,
    called_twice,
    chat_while_the_pool_is_held,
    closed_from_elsewhere,
    one_call,
    run_twin,
)

from gatewayclient import (
    GatewayClientError,
    GatewayConnectionError,
    GatewayProviderError,
    GatewayRateLimitError,
    GatewayResponseError,
    GatewayServerError,
    GatewayStreamError,
    GatewayTimeoutError,
)

# aiohttp warns of any request body over 1 MiB given as bytes; the row "upload-2MB" holds that
# against the async twin, the upload-stall rows look at the timeout alone.
LARGE_BODY_WARNING = pytest.mark.filterwarnings(
    "ignore:Sending a large body directly with raw bytes:ResourceWarning"
)


# -- the table ---------------------------------------------------------------------------------

CONNECTION = Expect(GatewayConnectionError, retried=True)
TIMEOUT = Expect(GatewayTimeoutError, retried=True)
UNREADABLE = Expect(GatewayResponseError)
OK = Expect()
STALL = 0.3  # the client's timeout where the case waits for it to run out

ROWS: List[Row] = [
    Row("refused", refused, CONNECTION, count="none"),
    Row("reset-on-accept", serving(handler=reset_on_accept), CONNECTION, count="connections"),
    Row("reset-before-head", serving(lambda: reset_before_head), CONNECTION),
    Row("close-before-head", serving(lambda: close_before_head), CONNECTION),
    Row("json-reset-mid-body", serving(lambda: json_cut(True)), CONNECTION, apis=("chat",)),
    Row("json-close-mid-body", serving(lambda: json_cut(False)), CONNECTION, apis=("chat",)),
    *[
        Row(
            f"stream-{ending}-after-2",
            serving(functools.partial(events_then, words(2), ending)),
            Expect(GatewayStreamError, chunks=2),
            apis=("stream",),
            check=k_chunks_first,
        )
        for ending in ("reset", "close")
    ],
    *[
        Row(
            f"stream-{ending}-before-a-chunk",
            serving(functools.partial(events_then, [], ending)),
            CONNECTION,
            apis=("stream",),
        )
        for ending in ("reset", "close")
    ],
    Row("stall-before-head", serving(lambda: stall), TIMEOUT, timeout=STALL, slow=True),
    Row(
        "stall-mid-stream-after-1",
        serving(lambda: events_then(words(1), "stall")),
        Expect(GatewayTimeoutError, retryable=True, chunks=1),
        apis=("stream",),
        timeout=STALL,
        slow=True,
    ),
    Row(
        "upload-stall-20MB",
        serving(handler=never_read),
        TIMEOUT,
        timeout=STALL,
        slow=True,
        count="connections",
        run=uploading(20),
        marks=(LARGE_BODY_WARNING,),
    ),
    Row(
        "upload-2MB",
        serving(),
        OK,
        run=uploading(2),
        retries=(0,),
    ),
    *[
        Row(f"head-{name}", serving(lambda responder=responder: responder), UNREADABLE)
        for name, responder in BAD_HEADS.items()
    ],
    *[
        Row(f"head-{name}", serving(lambda responder=responder: responder), OK, apis=("chat",))
        for name, responder in GOOD_HEADS.items()
    ],
    Row(
        "redirect-loop",
        serving(lambda: redirect("{path}")),
        Expect(GatewayClientError),
        seen=lambda attempts: 21 * attempts,  # the request and 20 redirects
    ),
    Row("redirect-to-another-host", another_host, OK, check=token_kept_home, pooled=2),
    Row(
        "corrupt-gzip",
        serving(
            lambda: answer(
                chat=b"not gzip", events=b"not gzip", headers=[("Content-Encoding", "gzip")]
            )
        ),
        UNREADABLE,
    ),
    Row(
        "proxy-407-to-connect",
        through_a_proxy(https=True),
        Expect(GatewayConnectionError, status=407),
        count="connects",
        check=no_proxy_credentials,
        pooled=2,  # the kept-alive tunnel: client to proxy, and proxy to gateway
    ),
    Row(
        "proxy-407-plain-http",
        through_a_proxy(https=False),
        Expect(GatewayClientError, status=407),
        check=no_proxy_credentials,
    ),
    Row(
        "tls-untrusted-certificate",
        untrusted_tls,
        Expect(GatewayConnectionError),
        count="connections",
        check=certificate_named,
        recover="no client that verifies certificates can reach this server",
    ),
    Row(
        "pool-exhausted",
        serving(lambda: held_stream),
        TIMEOUT,
        apis=("chat",),
        timeout=0.5,
        client={"timeout": 5, "max_connections": 1},
        slow=True,
        run=chat_while_the_pool_is_held,
        seen=lambda attempts: 1,  # the stream's request; the chat call never got a connection
    ),
    Row(
        "kept-open-after-done",
        serving(lambda: kept_open_after_done),
        OK,
        apis=("stream",),
        timeout=None,
        bound=0.5,
    ),
    Row(
        "closed-from-elsewhere",
        serving(lambda: events_then(words(1), "stall")),
        Expect(chunks=1),
        apis=("stream",),
        client={"timeout": 5},
        bound=0.5,
        run=closed_from_elsewhere,
    ),
    Row(
        "event-stream-type-in-capitals",
        serving(lambda: answer(content_type="Text/Event-Stream; Charset=UTF-8")),
        OK,
        apis=("stream",),
    ),
    Row(
        "azure-filter-chunk-hidden",
        serving(lambda: answer(events=AZURE_FILTER + b"".join(NORMAL_EVENTS))),
        OK,
        apis=("stream",),
    ),
    Row(
        "azure-filter-chunk-yielded-with-stream-options",
        serving(lambda: answer(events=AZURE_FILTER + b"".join(NORMAL_EVENTS))),
        Expect(chunks=4),
        apis=("stream",),
        run=lambda twin, api, stage: one_call(
            twin, api, stage, stream_options={"include_usage": True}
        ),
    ),
    Row(
        "abandoned-stream",
        serving(lambda: answer(events=WHOLE_ANSWER)),
        Expect(chunks=1, extra=(0, "Hello")),
        apis=("stream",),
        run=abandoned_after_one_chunk,
    ),
    Row(
        "set-cookie",
        serving(lambda: answer(headers=[("Set-Cookie", "session=s3cr3t; Path=/")])),
        OK,
        run=called_twice,
        seen=lambda attempts: 2,
        check=no_cookie_replayed,
    ),
    Row(
        "status-408",
        serving(lambda: status(408, error_body("Request Timeout", "timeout"))),
        Expect(GatewayTimeoutError, status=408, retried=True),
    ),
    Row(
        "429-retry-after",
        serving(
            lambda: status(429, error_body("slow down", "rate_limit"), [("Retry-After", "0.1")])
        ),
        Expect(GatewayRateLimitError, status=429, retried=True),
        waits=0.1,
    ),
    Row(
        "5xx-storm",
        serving(lambda: cycling(503, 500, 502)),
        lambda api, retries: (
            Expect(GatewayServerError, status=503, retried=True)
            if retries == 0
            else Expect(GatewayProviderError, status=502, retried=True)
        ),
    ),
    Row(
        "html-502-from-a-proxy",
        serving(lambda: html_502),
        Expect(GatewayProviderError, status=502, retried=True),
    ),
    Row("empty-200", serving(lambda: status(200, b"")), UNREADABLE, apis=("chat",)),
    Row(
        "invalid-json",
        serving(lambda: answer(chat=b"{not json", events=b"data: {not json}\n\n")),
        lambda api, retries: UNREADABLE if api == "chat" else Expect(GatewayStreamError),
    ),
    # A big body is no fault: retries would change nothing, and it is the slowest row.
    Row(
        "50MB-json",
        serving(functools.partial(big_json, "length")),
        OK,
        apis=("chat",),
        retries=(0,),
        timeout=5.0,
        check=big_answer,
    ),
    Row(
        "10MB-data-line",
        serving(functools.partial(big_line, "chunked")),
        Expect(chunks=2),
        apis=("stream",),
        retries=(0,),
        timeout=5.0,
        check=big_line_intact,
    ),
    Row(
        "invalid-utf8-in-a-string",
        serving(invalid_utf8_in_string),
        Expect(chunks=2),
        apis=("stream",),
        check=replaced,
    ),
    Row(
        "invalid-utf8-in-the-json",
        serving(functools.partial(invalid_utf8_in_structure, False)),
        Expect(GatewayStreamError),
        apis=("stream",),
    ),
]


def params() -> Iterator[Any]:
    for row in ROWS:
        marks = [*row.marks]
        if row.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=row.xfail))
        for api in row.apis:
            for retries in row.retries:
                yield pytest.param(
                    row, api, retries, id=f"{row.name}-{api}-r{retries}", marks=marks
                )


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(str(tmp_path_factory.mktemp("matrix")))


ENVIRONMENT = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE",
               "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")  # fmt: skip


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy and no CA bundle from the shell running the suite: each stage sets its own."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("row", "api", "retries"), list(params()))
def test_both_twins_meet_a_misbehaving_server_alike(
    row: Row,
    api: str,
    retries: int,
    certificates: Certificates,
    record_property: Any,
) -> None:
    records = {}
    for kind in ("sync", "async"):
        try:
            records[kind], outcome = run_twin(
                kind, row, api, retries, certificates, record_property
            )
        except AssertionError as failure:
            raise AssertionError(f"the {kind} twin: {failure}") from failure
        expected, attempts = row.expected(api, retries)
        lower, upper = row.limit(attempts)
        assert lower <= outcome.elapsed < upper, (
            f"{kind} took {outcome.elapsed:.3f} s, not within [{lower:.2f}, {upper:.2f})"
        )
    assert records["sync"] == records["async"], f"the twins differ: {records}"
    assert records["sync"] == expected
