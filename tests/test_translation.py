"""Item 20 of issue 9: each transport has one translation point, and every exception of its
libraries' public hierarchy goes through it into a typed error whose words hold no secret.

Every class of ``requests.exceptions``, ``urllib3.exceptions``, aiohttp's public namespace and
the standard library's OSError, ssl and http.client families is built with the token, a proxy's
credentials and userinfo in everything it holds (``translation_cases``), raised inside the
transport's ``Translate`` and checked; so are the chains the libraries really raise. Cancellation
and plain bugs pass through as themselves.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any, Callable, List, Optional, Type

import aiohttp
import aiohttp.http_exceptions as aiohttp_http
import pytest
import requests
import requests.exceptions
import urllib3.exceptions as u3
from translation_cases import (
    FORBIDDEN,
    NOT_FROM_A_REQUEST,
    PROXY_URL,
    TEXT,
    aiohttp_classes,
    async_classes,
    build,
    qualified,
    request_info,
    sync_classes,
)
from translation_chains import ASYNC_CHAINS, SYNC_CHAINS

from gatewayclient import (
    GatewayClientError,
    GatewayConnectionError,
    _async_transport,
    _sync_transport,
)
from gatewayclient._core import Request
from gatewayclient._failures import Translate

URL = "http://127.0.0.1:4000/v1/chat/completions"
Translator = Callable[[Request, Optional[str]], Any]


def sync_translate(request: Request, proxy: Optional[str]) -> Translate:
    return Translate(request, proxy, _sync_transport.classify)


def async_translate(request: Request, proxy: Optional[str]) -> Translate:
    return Translate(request, proxy, _async_transport.classify)


def through(translate: Translator, exc: BaseException) -> BaseException:
    """What leaves ``with translate(request, proxy): raise exc``."""
    request = Request("POST", URL, "/chat/completions", {"Authorization": TEXT}, b"{}", 1.5)
    try:
        with translate(request, PROXY_URL):
            raise exc
    except BaseException as out:
        return out
    raise AssertionError("Translate swallowed the exception")


def assert_typed_and_safe(out: BaseException, exc: BaseException) -> GatewayClientError:
    assert isinstance(out, GatewayClientError), f"{qualified(type(exc))} escaped as {type(out)}"
    assert out.__cause__ is exc and out.__suppress_context__, "not chained with `raise ... from`"
    words = " ".join([out.message, str(out), repr(out), repr(out.args), repr(vars(out))])
    for forbidden in FORBIDDEN:
        assert forbidden not in words, f"{forbidden!r} in the words of {type(out).__name__}"
    assert out.message.startswith(("POST " + URL, "cannot connect to the gateway at"))
    assert isinstance(out.retryable, bool)
    return out


# -- every class, as it is ------------------------------------------------------------------


@pytest.mark.parametrize("cls", sync_classes(), ids=qualified)
def test_every_exception_the_sync_transport_meets_becomes_a_safe_typed_error(
    cls: Type[BaseException],
) -> None:
    exc = build(cls)
    assert_typed_and_safe(through(sync_translate, exc), exc)


@pytest.mark.parametrize("cls", async_classes(), ids=qualified)
def test_every_exception_the_async_transport_meets_becomes_a_safe_typed_error(
    cls: Type[BaseException],
) -> None:
    exc = build(cls)
    assert_typed_and_safe(through(async_translate, exc), exc)


def test_the_check_sees_a_leaked_header_and_an_untyped_escape() -> None:
    """The check above can fail: a message built from the foreign exception's repr (as the
    old translation did) and an exception that leaves untyped are both caught."""
    exc = aiohttp.ClientResponseError(request_info(), (), status=400, message="bad")
    leaky = GatewayClientError(f"POST {URL} failed: {exc!r}")
    leaky.__cause__, leaky.__suppress_context__ = exc, True
    with pytest.raises(AssertionError, match="in the words of"):
        assert_typed_and_safe(leaky, exc)
    with pytest.raises(AssertionError, match="escaped"):
        assert_typed_and_safe(exc, exc)


def test_the_walk_covers_the_namespaces_and_names_what_it_leaves_out() -> None:
    assert len(sync_classes()) > 60 and len(async_classes()) > 50
    walked = {qualified(cls) for cls in aiohttp_classes()}
    assert set(NOT_FROM_A_REQUEST) <= walked, "a left-out class no longer exists: drop it"
    assert not set(NOT_FROM_A_REQUEST) & {qualified(c) for c in async_classes()}
    for needed in (requests.exceptions.ProxyError, u3.NameResolutionError, ssl.SSLEOFError):
        assert needed in sync_classes()
    for needed in (aiohttp.ClientHttpProxyError, aiohttp_http.LineTooLong, socket.gaierror):
        assert needed in async_classes()


# -- cancellation and bugs pass through -------------------------------------------------------

PASS_THROUGH = [
    asyncio.CancelledError(),
    KeyboardInterrupt(),
    SystemExit(3),
    GeneratorExit(),
    ValueError(TEXT),
    KeyError(TEXT),
    TypeError(TEXT),
    AttributeError(TEXT),
    RuntimeError(TEXT),
    AssertionError(TEXT),
]


@pytest.mark.parametrize("translate", [sync_translate, async_translate])
@pytest.mark.parametrize("exc", PASS_THROUGH, ids=lambda exc: type(exc).__name__)
def test_cancellation_and_bugs_pass_through_untranslated(
    translate: Translator, exc: BaseException
) -> None:
    assert through(translate, exc) is exc


def chain_params(chains: List[Any]) -> List[Any]:
    return [pytest.param(*rest, id=name) for name, *rest in chains]


@pytest.mark.parametrize(("make", "cls", "retryable", "words"), chain_params(SYNC_CHAINS))
def test_what_requests_and_urllib3_really_raise_is_typed_and_worded_safely(
    make: Callable[[], BaseException], cls: type, retryable: bool, words: str
) -> None:
    exc = make()
    out = assert_typed_and_safe(through(sync_translate, exc), exc)
    assert (type(out), out.retryable) == (cls, retryable), out.message
    assert words in out.message


@pytest.mark.parametrize(("make", "cls", "retryable", "words"), chain_params(ASYNC_CHAINS))
def test_what_aiohttp_really_raises_is_typed_and_worded_safely(
    make: Callable[[], BaseException], cls: type, retryable: bool, words: str
) -> None:
    exc = make()
    out = assert_typed_and_safe(through(async_translate, exc), exc)
    assert (type(out), out.retryable) == (cls, retryable), out.message
    assert words in out.message


def test_a_refused_proxy_carries_its_status_and_no_credentials() -> None:
    for translate, make in (
        (sync_translate, dict((c[0], c[1]) for c in SYNC_CHAINS)["proxy-407"]),
        (async_translate, dict((c[0], c[1]) for c in ASYNC_CHAINS)["proxy-407"]),
    ):
        out = through(translate, make())
        assert isinstance(out, GatewayConnectionError) and out.status_code == 407
