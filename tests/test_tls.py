"""TLS on both clients: certificates verified by default, ``verify=`` taking a CA bundle (or
False), the CA-bundle variables read once at construction; checked against FakeGateway serving
HTTPS on 127.0.0.1 with certificates made by trustme."""

from __future__ import annotations

import asyncio
import pickle
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
import trustme
from twin import Twin

from gatewayclient import AsyncGatewayClient, RetryPolicy, SyncGatewayClient
from gatewayclient.errors import GatewayConfigError, GatewayConnectionError, GatewayTimeoutError
from gatewayclient.testing import FakeGateway, expected_embedding, expected_reply

HELLO = [{"role": "user", "content": "Hello over TLS!"}]
CHAT_MODEL = "openai/gpt-4o"
EMBEDDING_MODEL = "openai/text-embedding-3-small"
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
# A refused handshake is a connection error, retried twice with zero waits: well under this.
BOUND_SECONDS = 10.0
FAST = RetryPolicy(max_retries=2, backoff_base=0.0)


def _server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def https_server(ca: trustme.CA) -> Iterator[FakeGateway]:
    with FakeGateway(ssl_context=_server_context(ca, "127.0.0.1", "localhost")) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def wrong_host_server(ca: trustme.CA) -> Iterator[FakeGateway]:
    """Signed by the right CA, but for another host name than the one dialled."""
    with FakeGateway(ssl_context=_server_context(ca, "example.test")) as gateway:
        yield gateway


@pytest.fixture
def https_gw(https_server: FakeGateway) -> Iterator[FakeGateway]:
    https_server.clear_faults()
    https_server.clear_requests()
    yield https_server
    https_server.clear_faults()


@pytest.fixture(autouse=True)
def no_ca_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without the CA-bundle variables, whatever the shell running it set."""
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make(kind: str, https_gw: FakeGateway) -> Iterator[Callable[..., Twin]]:
    """Build clients of this test's kind for the HTTPS gateway; closed after the test."""
    made: List[Twin] = []

    def build(url: str | None = None, **kwargs: Any) -> Twin:
        kwargs.setdefault("retry_policy", FAST)
        twin = Twin(kind, url or https_gw.url, https_gw.token, **kwargs)
        made.append(twin)
        return twin

    yield build
    for twin in made:
        twin.close()


def _assert_refused(call: Callable[[], Any], token: str) -> GatewayConnectionError:
    """``call`` fails fast with a GatewayConnectionError of gatewayclient's own making."""
    started = time.monotonic()
    with pytest.raises(GatewayConnectionError) as caught:
        call()
    elapsed = time.monotonic() - started
    error = caught.value
    assert elapsed < BOUND_SECONDS, elapsed
    assert type(error).__module__.startswith("gatewayclient"), type(error)
    assert not isinstance(error, GatewayTimeoutError), error
    assert token not in str(error) and token not in repr(error)
    return error


def _use_everything(twin: Twin) -> None:
    """A JSON call, a stream and embeddings, each checked against what FakeGateway answers."""
    models = twin.call("list_models")
    assert CHAT_MODEL in [model.id for model in models.data]
    answer = twin.call("chat_completion", CHAT_MODEL, HELLO)
    assert answer.choices[0].message.content == expected_reply(CHAT_MODEL, HELLO)
    chunks = twin.collect(twin.stream(CHAT_MODEL, HELLO))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == expected_reply(CHAT_MODEL, HELLO)
    vectors = twin.call("embeddings", EMBEDDING_MODEL, "tls")
    assert vectors.data[0].embedding == pytest.approx(expected_embedding(EMBEDDING_MODEL, "tls"))


# -- the HTTPS FakeGateway itself ------------------------------------------------------------


def test_fake_gateway_with_an_ssl_context_serves_https(https_gw: FakeGateway) -> None:
    assert https_gw.url.startswith("https://127.0.0.1:")
    assert https_gw.api_url == https_gw.url + "/v1"


def test_fake_gateway_without_an_ssl_context_serves_plain_http() -> None:
    with FakeGateway() as gateway:
        assert gateway.url.startswith("http://127.0.0.1:")


def test_fake_gateway_serves_https_from_the_running_loop(ca: trustme.CA, ca_bundle: str) -> None:
    async def serve_and_ask() -> None:
        async with FakeGateway(ssl_context=_server_context(ca, "127.0.0.1")) as gateway:
            assert gateway.url.startswith("https://")
            async with AsyncGatewayClient(gateway.url, gateway.token, verify=ca_bundle) as client:
                assert (await client.list_models()).data

    asyncio.run(serve_and_ask())


# -- verification by default -------------------------------------------------------------------


def test_default_verification_refuses_a_certificate_from_an_unknown_ca(
    make: Callable[..., Twin], https_gw: FakeGateway
) -> None:
    twin = make()
    _assert_refused(lambda: twin.call("list_models"), https_gw.token)
    _assert_refused(lambda: twin.collect(twin.stream(CHAT_MODEL, HELLO)), https_gw.token)
    _assert_refused(lambda: twin.call("embeddings", EMBEDDING_MODEL, "tls"), https_gw.token)
    assert https_gw.requests == []  # no request, so no token, crossed the unverified link


def test_default_verification_with_the_default_retry_policy_fails_in_bounded_time(
    kind: str, https_gw: FakeGateway
) -> None:
    twin = Twin(kind, https_gw.url, https_gw.token, timeout=5.0)
    try:
        _assert_refused(lambda: twin.call("list_models"), https_gw.token)
    finally:
        twin.close()
    assert https_gw.requests == []


def test_a_refused_certificate_says_why(make: Callable[..., Twin], https_gw: FakeGateway) -> None:
    twin = make(retry_policy=RetryPolicy(max_retries=0))
    error = _assert_refused(lambda: twin.call("list_models"), https_gw.token)
    assert isinstance(error.__cause__, Exception)  # chained to the library's own exception
    assert "certificate" in str(error).lower() or "ssl" in str(error).lower(), str(error)


# -- verify= -------------------------------------------------------------------------------------


def test_verify_with_the_ca_bundle_succeeds(
    make: Callable[..., Twin], https_gw: FakeGateway, ca_bundle: str
) -> None:
    _use_everything(make(verify=ca_bundle))
    assert len(https_gw.requests) == 4


def test_verify_with_the_ca_bundle_as_a_path_object(
    make: Callable[..., Twin], ca_bundle: str
) -> None:
    assert make(verify=Path(ca_bundle)).call("list_models").data


def test_verify_with_the_ca_bundle_matches_a_dns_name_in_the_certificate(
    make: Callable[..., Twin], https_gw: FakeGateway, ca_bundle: str
) -> None:
    twin = make(f"https://localhost:{https_gw.port}", verify=ca_bundle)
    assert twin.call("list_models").data


def test_verify_false_accepts_any_certificate(make: Callable[..., Twin]) -> None:
    _use_everything(make(verify=False))


def test_verify_false_also_accepts_a_certificate_for_another_host(
    make: Callable[..., Twin], wrong_host_server: FakeGateway
) -> None:
    assert make(wrong_host_server.url, verify=False).call("list_models").data


def test_a_certificate_for_another_host_name_is_refused(
    make: Callable[..., Twin], wrong_host_server: FakeGateway, ca_bundle: str
) -> None:
    wrong_host_server.clear_requests()
    twin = make(wrong_host_server.url, verify=ca_bundle)
    error = _assert_refused(lambda: twin.call("list_models"), wrong_host_server.token)
    assert "mismatch" in str(error).lower(), str(error)  # the CA is trusted; the name is not
    _assert_refused(lambda: twin.collect(twin.stream(CHAT_MODEL, HELLO)), wrong_host_server.token)
    assert wrong_host_server.requests == []


@pytest.mark.parametrize("client_class", [SyncGatewayClient, AsyncGatewayClient])
def test_verify_naming_a_missing_file_is_a_config_error_at_construction(
    client_class: type[Any], https_gw: FakeGateway, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-ca.pem")
    with pytest.raises(GatewayConfigError) as caught:
        client_class(https_gw.url, https_gw.token, verify=missing)
    assert missing in str(caught.value)
    assert https_gw.requests == []


@pytest.mark.parametrize("bundle", ["garbage", "empty", "directory"])
@pytest.mark.parametrize("client_class", [SyncGatewayClient, AsyncGatewayClient])
def test_verify_naming_something_that_is_not_a_ca_bundle_is_a_config_error_at_construction(
    client_class: type[Any], https_gw: FakeGateway, tmp_path: Path, bundle: str
) -> None:
    path = tmp_path / "ca.pem"
    if bundle == "directory":
        path.mkdir()
    else:
        path.write_text("not a certificate\n" if bundle == "garbage" else "")
    with pytest.raises(GatewayConfigError) as caught:
        client_class(https_gw.url, https_gw.token, verify=str(path))
    assert type(caught.value).__module__.startswith("gatewayclient"), type(caught.value)
    assert https_gw.requests == []


# -- the CA-bundle variables, read once at construction ------------------------------------------


@pytest.mark.parametrize("variable", CA_VARIABLES)
def test_a_ca_bundle_variable_set_before_construction_is_used(
    make: Callable[..., Twin], monkeypatch: pytest.MonkeyPatch, ca_bundle: str, variable: str
) -> None:
    monkeypatch.setenv(variable, ca_bundle)
    _use_everything(make())


@pytest.mark.parametrize("variable", CA_VARIABLES)
def test_a_ca_bundle_variable_set_after_construction_has_no_effect(
    make: Callable[..., Twin],
    https_gw: FakeGateway,
    monkeypatch: pytest.MonkeyPatch,
    ca_bundle: str,
    variable: str,
) -> None:
    twin = make()
    monkeypatch.setenv(variable, ca_bundle)
    _assert_refused(lambda: twin.call("list_models"), https_gw.token)
    assert https_gw.requests == []


def test_a_ca_bundle_variable_removed_after_construction_is_still_used(
    make: Callable[..., Twin], monkeypatch: pytest.MonkeyPatch, ca_bundle: str
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
    twin = make()
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    _use_everything(twin)


def test_an_explicit_verify_false_wins_over_a_ca_bundle_variable(
    make: Callable[..., Twin],
    monkeypatch: pytest.MonkeyPatch,
    wrong_host_server: FakeGateway,
    ca_bundle: str,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
    assert make(wrong_host_server.url, verify=False).call("list_models").data


def test_a_pickled_client_keeps_the_ca_bundle_the_variable_named_at_construction(
    kind: str, https_gw: FakeGateway, monkeypatch: pytest.MonkeyPatch, ca_bundle: str
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
    client_class: Any = SyncGatewayClient if kind == "sync" else AsyncGatewayClient
    original = client_class(https_gw.url, https_gw.token, retry_policy=FAST)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    copy = pickle.loads(pickle.dumps(original))
    if kind == "sync":
        with original, copy:
            assert copy.list_models().data
        return

    async def ask() -> None:
        async with original, copy:
            assert (await copy.list_models()).data

    asyncio.run(ask())


# -- the async client's lifecycle over HTTPS -----------------------------------------------------

LIFECYCLE_PRELUDE = """
import asyncio, gc, sys
from gatewayclient import AsyncGatewayClient
URL, TOKEN, CA = sys.argv[1], sys.argv[2], sys.argv[3]
HELLO = [{"role": "user", "content": "Hello!"}]
async def use(client):
    await client.chat_completion("openai/gpt-4o", HELLO)
    async for _ in client.stream_chat_completion("openai/gpt-4o", HELLO):
        pass
    await client.embeddings("openai/text-embedding-3-small", "tls")
"""

LIFECYCLES = {
    "one client, asyncio.run twice, never closed": """
        client = AsyncGatewayClient(URL, TOKEN, verify=CA)
        asyncio.run(use(client))
        asyncio.run(use(client))
        del client
        gc.collect()
    """,
    "one client, asyncio.run twice, then aclose in a third": """
        client = AsyncGatewayClient(URL, TOKEN, verify=CA)
        asyncio.run(use(client))
        asyncio.run(use(client))
        asyncio.run(client.aclose())
    """,
    "a stream abandoned mid-way, then the loop ends": """
        client = AsyncGatewayClient(URL, TOKEN, verify=CA)
        async def abandon():
            async for _ in client.stream_chat_completion("openai/gpt-4o", HELLO):
                break
        asyncio.run(abandon())
        asyncio.run(use(client))
        gc.collect()
    """,
}


@pytest.mark.parametrize("case", sorted(LIFECYCLES))
def test_async_client_lifecycle_over_https_emits_no_warning(
    https_gw: FakeGateway, ca_bundle: str, case: str
) -> None:
    code = LIFECYCLE_PRELUDE + textwrap.dedent(LIFECYCLES[case]) + "\nprint('ok')\n"
    command = [sys.executable, "-X", "dev", "-W", "error", "-c", code]
    result = subprocess.run(
        [*command, https_gw.url, https_gw.token, ca_bundle],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    for needle in (
        "Unclosed",
        "unclosed",
        "Event loop is closed",
        "Warning",
        "Traceback",
        "Exception ignored",
    ):
        assert needle not in result.stderr, result.stderr
