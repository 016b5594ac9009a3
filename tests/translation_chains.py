"""The chains of exceptions requests, urllib3 and aiohttp really raise, each with the class,
retryability and words the translation must give it (used by ``test_translation``)."""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
import zlib
from typing import Any, List, Optional, Type

import aiohttp
import aiohttp.http_exceptions as aiohttp_http
import requests
import requests.exceptions
import urllib3
import urllib3.exceptions as u3
from translation_cases import (
    TEXT,
    USERINFO_URL,
    certificate_error,
    connection,
    connection_key,
    pool,
    prepared,
    request_info,
    response,
)

from gatewayclient import (
    GatewayClientError,
    GatewayConnectionError,
    GatewayResponseError,
    GatewayTimeoutError,
)

# Each row: (id, a function making the exception as raised, the class expected, retryable,
# words the message must hold).


def caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


def refused() -> BaseException:
    return ConnectionRefusedError(errno.ECONNREFUSED, f"Connection refused {TEXT}")


def max_retry(reason: BaseException) -> u3.MaxRetryError:
    return u3.MaxRetryError(pool(), USERINFO_URL, reason=reason)


def new_connection(cause: BaseException) -> BaseException:
    return caused(u3.NewConnectionError(connection(), f"Failed to establish: {TEXT}"), cause)


def urllib3_tls(inner: ssl.SSLError) -> u3.SSLError:
    return u3.SSLError(inner)


def wrong_version() -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: WRONG_VERSION_NUMBER] wrong version number {TEXT}")
    error.reason = "WRONG_VERSION_NUMBER"  # type: ignore[misc]  # OpenSSL's mnemonic
    return error


def with_request(cls: Type[requests.RequestException], *args: Any) -> BaseException:
    return cls(*args, request=prepared(), response=response())


# (id, the exception as raised, the class expected, retryable, words the message must hold)
SYNC_CHAINS: List[Any] = [
    (
        "refused",
        lambda: with_request(requests.ConnectionError, max_retry(new_connection(refused()))),
        GatewayConnectionError, True, "connection refused",
    ),
    (
        "aborted-remote-disconnected",
        lambda: with_request(
            requests.ConnectionError,
            u3.ProtocolError("Connection aborted.", http.client.RemoteDisconnected(TEXT)),
        ),
        GatewayConnectionError, True, "closed before the answer was complete",
    ),
    (
        "aborted-reset",
        lambda: with_request(
            requests.ConnectionError,
            u3.ProtocolError("Connection aborted.", ConnectionResetError(errno.ECONNRESET, TEXT)),
        ),
        GatewayConnectionError, True, "connection reset by the gateway",
    ),
    (
        "broken-incomplete-read",
        lambda: with_request(
            requests.exceptions.ChunkedEncodingError,
            u3.ProtocolError(f"Connection broken: {TEXT}", u3.IncompleteRead(10, 5)),
        ),
        GatewayConnectionError, True, "closed before the answer was complete",
    ),
    (
        "invalid-chunk-length",
        lambda: with_request(
            requests.exceptions.ChunkedEncodingError,
            u3.ProtocolError(
                f"Connection broken: {TEXT}",
                u3.InvalidChunkLength(urllib3.HTTPResponse(body=b"", preload_content=False), b"zz"),
            ),
        ),
        GatewayConnectionError, True, "closed before the answer was complete",
    ),
    (
        "read-timeout",
        lambda: with_request(
            requests.ReadTimeout,
            u3.ReadTimeoutError(pool(), USERINFO_URL, f"Read timed out {TEXT}"),
        ),
        GatewayTimeoutError, True, "sent nothing for 1.5 s",
    ),
    (
        "connect-timeout",
        lambda: with_request(
            requests.ConnectTimeout,
            max_retry(u3.ConnectTimeoutError(connection(), f"Connection timed out {TEXT}")),
        ),
        GatewayTimeoutError, True, "no connection within 1.5 s",
    ),
    (
        "write-timeout",
        lambda: with_request(
            requests.ConnectionError,
            u3.ProtocolError("Connection aborted.", TimeoutError(errno.ETIMEDOUT, TEXT)),
        ),
        GatewayTimeoutError, True, "took none of the request for 1.5 s",
    ),
    (
        "certificate",
        lambda: with_request(
            requests.exceptions.SSLError, max_retry(urllib3_tls(certificate_error()))
        ),
        GatewayConnectionError, False, "certificate verification failed: self-signed",
    ),
    (
        "tls-handshake",
        lambda: with_request(requests.exceptions.SSLError, max_retry(urllib3_tls(wrong_version()))),
        GatewayConnectionError, True, "TLS handshake failed (WRONG_VERSION_NUMBER)",
    ),
    (
        "proxy-407",
        lambda: with_request(
            requests.exceptions.ProxyError,
            max_retry(u3.ProxyError(
                "Unable to connect to proxy",
                OSError(f"Tunnel connection failed: 407 Proxy Authentication Required {TEXT}"),
            )),
        ),
        GatewayConnectionError, False, "the proxy at http://127.0.0.1:3128 answered 407",
    ),
    (
        "proxy-refused",
        lambda: with_request(
            requests.exceptions.ProxyError,
            max_retry(u3.ProxyError("Unable to connect to proxy", new_connection(refused()))),
        ),
        GatewayConnectionError, True, "through the proxy at http://127.0.0.1:3128",
    ),
    (
        "dns",
        lambda: with_request(
            requests.ConnectionError,
            max_retry(u3.NameResolutionError(
                "gateway.invalid", connection(), socket.gaierror(socket.EAI_NONAME, TEXT)
            )),
        ),
        GatewayConnectionError, True, "could not be resolved",
    ),
    (
        "corrupt-gzip",
        lambda: with_request(
            requests.exceptions.ContentDecodingError,
            u3.DecodeError(f"failed to decode it {TEXT}", zlib.error(TEXT)),
        ),
        GatewayResponseError, False, "could not be decoded",
    ),
    (
        "redirects",
        lambda: with_request(requests.TooManyRedirects, f"Exceeded 20 redirects. {TEXT}"),
        GatewayClientError, False, "stopped after 20 redirects",
    ),
    (
        "redirect-schema",
        lambda: with_request(requests.exceptions.InvalidSchema, f"No adapter for {USERINFO_URL}"),
        GatewayClientError, False, "redirected to a URL that cannot be followed",
    ),
    (
        "line-too-long",
        lambda: with_request(
            requests.ConnectionError,
            u3.ProtocolError("Connection aborted.", http.client.LineTooLong(TEXT)),
        ),
        GatewayResponseError, False, "not valid HTTP (a line of its head is too long)",
    ),
    (
        "bad-status-line",
        lambda: with_request(
            requests.ConnectionError,
            u3.ProtocolError("Connection aborted.", http.client.BadStatusLine(TEXT)),
        ),
        GatewayResponseError, False, "not valid HTTP (its status line is not HTTP)",
    ),
    (
        "pool-empty",
        lambda: u3.EmptyPoolError(pool(), f"Pool is empty {TEXT}"),
        GatewayTimeoutError, True, "no connection within 1.5 s (none of max_connections free",
    ),
    (
        "pool-closed",
        lambda: with_request(requests.ConnectionError, u3.ClosedPoolError(pool(), TEXT)),
        GatewayConnectionError, True, "the client was closed",
    ),
]  # fmt: skip


def http_error(status: int, cause: Optional[BaseException] = None, message: str = TEXT) -> Any:
    error = aiohttp.ClientResponseError(
        request_info(), (), status=status, message=message, headers=None
    )
    return caused(error, cause) if cause is not None else error


ASYNC_CHAINS: List[Any] = [
    (
        "refused",
        lambda: caused(aiohttp.ClientConnectorError(connection_key(), refused()), refused()),
        GatewayConnectionError, True, "connection refused",
    ),
    (
        "certificate",
        lambda: aiohttp.ClientConnectorCertificateError(connection_key(), certificate_error()),
        GatewayConnectionError, False, "certificate verification failed: self-signed",
    ),
    (
        "tls-handshake",
        lambda: aiohttp.ClientConnectorSSLError(connection_key(), wrong_version()),
        GatewayConnectionError, True, "TLS handshake failed (WRONG_VERSION_NUMBER)",
    ),
    (
        "dns",
        lambda: aiohttp.ClientConnectorDNSError(
            connection_key(), socket.gaierror(socket.EAI_NONAME, TEXT)
        ),
        GatewayConnectionError, True, "could not be resolved",
    ),
    (
        "proxy-refused",
        lambda: aiohttp.ClientProxyConnectionError(connection_key(), refused()),
        GatewayConnectionError, True, "through the proxy at http://127.0.0.1:3128",
    ),
    (
        "proxy-407",
        lambda: aiohttp.ClientHttpProxyError(
            request_info(), (), status=407, message=TEXT, headers=None
        ),
        GatewayConnectionError, False, "the proxy at http://127.0.0.1:3128 answered 407",
    ),
    (
        "line-too-long",
        lambda: http_error(400, aiohttp_http.LineTooLong(TEXT, 8190, "9000")),
        GatewayResponseError, False, "not valid HTTP (a line of its head is too long)",
    ),
    (
        "bad-status-line",
        lambda: http_error(400, aiohttp_http.BadStatusLine(TEXT)),
        GatewayResponseError, False, "not valid HTTP (its status line is not HTTP)",
    ),
    (
        "too-many-headers",
        lambda: http_error(400, aiohttp_http.BadHttpMessage("Too many headers received"),
                           "Too many headers received"),
        GatewayResponseError, False, "not valid HTTP (more than 99 headers)",
    ),
    (
        "content-length",
        lambda: http_error(400, aiohttp_http.InvalidHeader(b"Content-Length"),
                           "Invalid header value char: Content-Length"),
        GatewayResponseError, False, "not valid HTTP (its Content-Length is not one number)",
    ),
    (
        "redirects",
        lambda: aiohttp.TooManyRedirects(request_info(), (), status=307, message=TEXT),
        GatewayClientError, False, "stopped after 20 redirects",
    ),
    (
        "redirect-not-a-url",
        lambda: aiohttp.InvalidUrlRedirectClientError(USERINFO_URL, TEXT),
        GatewayClientError, False, "redirected to a URL that cannot be followed",
    ),
    (
        "redirect-not-http",
        lambda: aiohttp.NonHttpUrlRedirectClientError(USERINFO_URL),
        GatewayClientError, False, "redirected to a URL that cannot be followed",
    ),
    (
        "payload-cut",
        lambda: caused(
            aiohttp.ClientPayloadError(f"Response payload is not completed: {TEXT}"),
            aiohttp_http.ContentLengthError(TEXT),
        ),
        GatewayConnectionError, True, "the body was cut short",
    ),
    (
        "corrupt-gzip",
        lambda: caused(
            aiohttp.ClientPayloadError(f"payload error {TEXT}"),
            aiohttp_http.ContentEncodingError(TEXT),
        ),
        GatewayResponseError, False, "could not be decoded",
    ),
    (
        "disconnected",
        lambda: aiohttp.ServerDisconnectedError(TEXT),
        GatewayConnectionError, True, "the gateway closed the connection",
    ),
    (
        "reset",
        lambda: aiohttp.ClientOSError(errno.ECONNRESET, TEXT),
        GatewayConnectionError, True, "connection reset by the gateway",
    ),
    (
        "read-timeout",
        lambda: aiohttp.SocketTimeoutError(f"Timeout on reading data from socket {TEXT}"),
        GatewayTimeoutError, True, "sent nothing for 1.5 s",
    ),
    (
        "connect-timeout",
        lambda: aiohttp.ConnectionTimeoutError(f"Connection timeout to host {USERINFO_URL}"),
        GatewayTimeoutError, True, "no connection within 1.5 s",
    ),
    (
        "fingerprint",
        lambda: aiohttp.ServerFingerprintMismatch(TEXT.encode(), b"x", "127.0.0.1", 4000),
        GatewayConnectionError, False, "fingerprint does not match",
    ),
]  # fmt: skip
