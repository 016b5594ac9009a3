"""CA directories (OpenSSL's hashed layout, as ``requests`` accepts them) on both clients:
``verify="/path/to/dir"`` and ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` naming one, checked
over HTTPS on 127.0.0.1 with trustme certificates. The directory's file names are computed here
in Python (OpenSSL's subject hash), so the suite needs no ``openssl`` command."""

from __future__ import annotations

import hashlib
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
import trustme
from cryptography import x509
from twin import Twin

from gatewayclient import AsyncGatewayClient, RetryPolicy, SyncGatewayClient
from gatewayclient.errors import GatewayConfigError, GatewayConnectionError, GatewayTimeoutError
from gatewayclient.testing import FakeGateway, expected_reply

HELLO = [{"role": "user", "content": "Hello over TLS!"}]
CHAT_MODEL = "openai/gpt-4o"
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
FAST = RetryPolicy(max_retries=1, backoff_base=0.0)
CLIENTS = [SyncGatewayClient, AsyncGatewayClient]


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def _oid(dotted: str) -> bytes:
    numbers = [int(part) for part in dotted.split(".")]
    body = bytearray([40 * numbers[0] + numbers[1]])
    for number in numbers[2:]:
        groups = [number & 0x7F]
        while number > 0x7F:
            number >>= 7
            groups.append(0x80 | (number & 0x7F))
        body += bytes(reversed(groups))
    return _der(0x06, bytes(body))


def subject_hash(pem: bytes) -> str:
    """OpenSSL's ``X509_NAME_hash`` of a certificate's subject (``openssl x509 -subject_hash``):
    SHA-1 of the canonical name (each value a lower-cased UTF8String with whitespace collapsed,
    the RDN sets concatenated without the outer SEQUENCE), first four bytes little-endian."""
    canonical = b""
    for rdn in x509.load_pem_x509_certificate(pem).subject.rdns:
        entries = []
        for attribute in rdn:
            value = " ".join(str(attribute.value).split())
            value = "".join(c.lower() if "A" <= c <= "Z" else c for c in value)
            entries.append(
                _der(0x30, _oid(attribute.oid.dotted_string) + _der(0x0C, value.encode()))
            )
        canonical += _der(0x31, b"".join(sorted(entries)))
    digest = hashlib.sha1(canonical).digest()
    return f"{int.from_bytes(digest[:4], 'little'):08x}"


def hashed_directory(path: Path, *cas: trustme.CA) -> Path:
    """A directory holding these CAs' certificates under OpenSSL's ``<hash>.<n>`` names."""
    path.mkdir()
    for ca in cas:
        pem = ca.cert_pem.bytes()
        name, suffix = subject_hash(pem), 0
        while (path / f"{name}.{suffix}").exists():
            suffix += 1
        (path / f"{name}.{suffix}").write_bytes(pem)
    return path


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def https_server(ca: trustme.CA) -> Iterator[FakeGateway]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with FakeGateway(ssl_context=context) as gateway:
        yield gateway


@pytest.fixture
def https_gw(https_server: FakeGateway) -> Iterator[FakeGateway]:
    https_server.clear_faults()
    https_server.clear_requests()
    yield https_server


@pytest.fixture
def ca_directory(ca: trustme.CA, tmp_path: Path) -> Path:
    return hashed_directory(tmp_path / "certs", trustme.CA(), ca)


@pytest.fixture
def wrong_ca_directory(tmp_path: Path) -> Path:
    return hashed_directory(tmp_path / "other-certs", trustme.CA(), trustme.CA())


@pytest.fixture(autouse=True)
def no_ca_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make(kind: str, https_gw: FakeGateway) -> Iterator[Callable[..., Twin]]:
    made: List[Twin] = []

    def build(**kwargs: Any) -> Twin:
        kwargs.setdefault("retry_policy", FAST)
        twin = Twin(kind, https_gw.url, https_gw.token, **kwargs)
        made.append(twin)
        return twin

    yield build
    for twin in made:
        twin.close()


def _chat_and_stream(twin: Twin) -> None:
    answer = twin.call("chat_completion", CHAT_MODEL, HELLO)
    assert answer.choices[0].message.content == expected_reply(CHAT_MODEL, HELLO)
    chunks = twin.collect(twin.stream(CHAT_MODEL, HELLO))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected_reply(
        CHAT_MODEL, HELLO
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="cross-check needs openssl")
def test_the_subject_hash_computed_here_is_the_one_openssl_computes(
    ca: trustme.CA, tmp_path: Path
) -> None:
    for authority in (ca, trustme.CA(), trustme.CA(organization_name="Mixed Case  Org")):
        pem = tmp_path / "ca.pem"
        authority.cert_pem.write_to_path(str(pem))
        command = ["openssl", "x509", "-noout", "-subject_hash", "-in", str(pem)]
        openssl = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30)
        assert subject_hash(authority.cert_pem.bytes()) == openssl.stdout.strip()


def test_verify_with_a_ca_directory_succeeds(
    make: Callable[..., Twin], https_gw: FakeGateway, ca_directory: Path
) -> None:
    _chat_and_stream(make(verify=str(ca_directory)))
    assert len(https_gw.requests) == 2


def test_verify_with_a_ca_directory_as_a_path_object(
    make: Callable[..., Twin], ca_directory: Path
) -> None:
    assert make(verify=ca_directory).call("list_models").data


@pytest.mark.parametrize("variable", CA_VARIABLES)
def test_a_ca_variable_naming_a_directory_is_used(
    make: Callable[..., Twin], monkeypatch: pytest.MonkeyPatch, ca_directory: Path, variable: str
) -> None:
    # Before: every constructor failed with "verify='...' is not a CA bundle", a verify= the
    # user never passed.
    monkeypatch.setenv(variable, str(ca_directory))
    _chat_and_stream(make())


def test_a_ca_directory_without_the_servers_ca_fails_with_a_certificate_error(
    make: Callable[..., Twin], https_gw: FakeGateway, wrong_ca_directory: Path
) -> None:
    twin = make(verify=str(wrong_ca_directory))
    for call in (
        lambda: twin.call("list_models"),
        lambda: twin.collect(twin.stream(CHAT_MODEL, HELLO)),
    ):
        with pytest.raises(GatewayConnectionError) as caught:
            call()
        assert not isinstance(caught.value, GatewayTimeoutError)
        assert "certificate" in str(caught.value).lower(), str(caught.value)
        assert https_gw.token not in str(caught.value)
    assert https_gw.requests == []  # no request, so no token, crossed the unverified link


@pytest.mark.parametrize("content", ["empty", "unhashed"])
@pytest.mark.parametrize("client_class", CLIENTS)
def test_a_directory_without_hashed_certificates_is_a_config_error_naming_verify(
    client_class: type[Any], https_gw: FakeGateway, ca: trustme.CA, tmp_path: Path, content: str
) -> None:
    directory = tmp_path / "certs"
    directory.mkdir()
    if content == "unhashed":
        ca.cert_pem.write_to_path(str(directory / "ca.pem"))  # `openssl rehash` never ran
    with pytest.raises(GatewayConfigError) as caught:
        client_class(https_gw.url, https_gw.token, verify=str(directory))
    message = str(caught.value)
    assert message.startswith("verify=") and str(directory) in message
    assert "rehash" in message


@pytest.mark.parametrize("variable", CA_VARIABLES)
@pytest.mark.parametrize("client_class", CLIENTS)
def test_a_bad_ca_path_from_a_variable_names_the_variable(
    client_class: type[Any],
    https_gw: FakeGateway,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    variable: str,
) -> None:
    for bad in ("not-a-bundle.pem", "empty-directory"):
        path = tmp_path / bad
        if bad.endswith("directory"):
            path.mkdir()
        else:
            path.write_text("not a certificate\n")
        monkeypatch.setenv(variable, str(path))
        with pytest.raises(GatewayConfigError) as caught:
            client_class(https_gw.url, https_gw.token)
        message = str(caught.value)
        assert message.startswith(variable) and str(path) in message
        assert "verify=" not in message


def test_the_sync_client_asks_whether_its_ca_path_is_a_directory_once(
    ca: trustme.CA, ca_directory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests asks ``os.path.isdir(verify)`` on every call, plain HTTP included (a stat() per
    request, to build the pool key); the sync client answers it once per CA path, and its pools
    get the key requests would give them: ``ca_cert_dir`` for a directory, ``ca_certs`` for a
    bundle file. (Over HTTPS requests' ``cert_verify`` still looks at the path on every call:
    it raises when the bundle has gone.)"""
    import os.path

    import requests.adapters

    bundle = tmp_path / "bundle.pem"
    ca.cert_pem.write_to_path(str(bundle))
    asked: List[str] = []
    real_isdir = os.path.isdir

    def counting_isdir(path: Any) -> bool:
        asked.append(str(path))
        return real_isdir(path)

    with FakeGateway() as gateway:
        for verify in (str(ca_directory), str(bundle)):
            with SyncGatewayClient(gateway.url, "test-token", verify=verify) as client:
                with monkeypatch.context() as patch:
                    patch.setattr(os.path, "isdir", counting_isdir)
                    for _ in range(3):
                        assert client.chat_completion(CHAT_MODEL, HELLO).choices[0].message.content
                assert asked.count(verify) == 1  # 3 before: one per call
                adapter = client._transport.session().get_adapter(gateway.url)
                request = requests.Request("POST", gateway.url).prepare()
                ours = adapter.build_connection_pool_key_attributes(request, verify)
                theirs = requests.adapters._urllib3_request_context(
                    request, verify, None, adapter.poolmanager
                )
                assert ours == theirs
                assert ("ca_cert_dir" in ours[1]) is (verify == str(ca_directory))
