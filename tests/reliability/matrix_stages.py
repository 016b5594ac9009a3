"""Where the twin matrix's cases run (stages: the servers, the base URL, the environment
at construction) and what some of them check beyond the record."""

from __future__ import annotations

import base64
import functools
import ssl
from contextlib import ExitStack
from typing import Any, Dict, List, NamedTuple, Optional

import trustme
from misbehaving import proxy_refusing, redirect, tunnel
from rawserver import RawServer, Responder, normal_answer
from test_raw_faults import free_port, replaced_characters, text_of, the_big_answer, the_big_line
from twin import Twin
from twin_harness import PROXY_SECRET, SECRET, Outcome, Stage, one_call, words_of

# -- stages ------------------------------------------------------------------------------------


class Certificates(NamedTuple):
    untrusted: ssl.SSLContext  # a server certificate from a CA the client does not know
    trusted: ssl.SSLContext  # one from the CA in ``ca_file``
    ca_file: str


def make_certificates(directory: str) -> Certificates:
    """Two CAs: one the client is told to trust (its PEM in ``directory``), one it is not."""

    def context(ca: trustme.CA) -> ssl.SSLContext:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
        return server

    trusted = trustme.CA()
    ca_file = f"{directory}/ca.pem"
    trusted.cert_pem.write_to_path(ca_file)
    return Certificates(context(trustme.CA()), context(trusted), ca_file)


def serving(make: Any = None, *, handler: Any = None) -> Any:
    """A stage of one RawServer answering every request with ``make()`` (a fresh responder
    per twin: some count their requests) or taking every connection with ``handler``."""

    def stage(stack: ExitStack, certs: Certificates) -> Stage:
        default: Optional[Responder] = make() if make is not None else None
        server = stack.enter_context(RawServer(default=default, handler=handler))
        return Stage(server.url, server)

    return stage


def refused(stack: ExitStack, certs: Certificates) -> Stage:
    """Nothing listens on the port; the fault ends when a gateway comes up there."""
    port = free_port()

    def come_up() -> int:
        stack.enter_context(RawServer(port=port))
        return 1  # its listening socket

    return Stage(f"http://127.0.0.1:{port}", revive=come_up)


def untrusted_tls(stack: ExitStack, certs: Certificates) -> Stage:
    server = stack.enter_context(RawServer(tls=certs.untrusted))
    return Stage(server.url, server)


def another_host(stack: ExitStack, certs: Certificates) -> Stage:
    target = stack.enter_context(RawServer())
    location = f"http://localhost:{target.port}{{path}}"
    origin = stack.enter_context(RawServer(default=redirect(location)))
    return Stage(origin.url, origin, others=[target])


def through_a_proxy(https: bool) -> Any:
    """A gateway behind a proxy named by HTTPS_PROXY (HTTP_PROXY) at construction; the proxy
    answers 407; once the fault ends it tunnels (forwards)."""

    def stage(stack: ExitStack, certs: Certificates) -> Stage:
        gateway = stack.enter_context(RawServer(tls=certs.trusted if https else None))
        proxy = stack.enter_context(RawServer(default=proxy_refusing))
        variable = "HTTPS_PROXY" if https else "HTTP_PROXY"
        env = {variable: f"http://puser:{PROXY_SECRET}@127.0.0.1:{proxy.port}"}
        client = {"verify": certs.ca_file} if https else {}

        def let_through() -> int:
            proxy.recover(tunnel if https else normal_answer)
            return 0

        return Stage(gateway.url, proxy, env=env, client=client, revive=let_through)

    return stage


# -- checks ------------------------------------------------------------------------------------


def no_proxy_credentials(outcome: Outcome, stage: Stage, api: str) -> None:
    basic = base64.b64encode(f"puser:{PROXY_SECRET}".encode()).decode()
    text = words_of(outcome.error)
    assert PROXY_SECRET not in text and basic not in text and "puser" not in text


def certificate_named(outcome: Outcome, stage: Stage, api: str) -> None:
    assert "certificate verification failed" in words_of(outcome.error)


def token_kept_home(outcome: Outcome, stage: Stage, api: str) -> None:
    assert stage.server is not None
    assert stage.server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert "authorization" not in stage.others[0].requests[0].headers


def no_cookie_replayed(outcome: Outcome, stage: Stage, api: str) -> None:
    assert stage.server is not None
    assert "cookie" not in stage.server.requests[1].headers


def big_answer(outcome: Outcome, stage: Stage, api: str) -> None:
    the_big_answer(outcome.result)


def big_line_intact(outcome: Outcome, stage: Stage, api: str) -> None:
    the_big_line(outcome.result)


def replaced(outcome: Outcome, stage: Stage, api: str) -> None:
    replaced_characters(outcome.result)


def k_chunks_first(outcome: Outcome, stage: Stage, api: str) -> None:
    assert text_of(outcome.result) == "w0 w1 "


@functools.lru_cache(maxsize=2)
def big_upload(megabytes: int) -> List[Dict[str, str]]:
    return [{"role": "user", "content": "x" * (megabytes * 1024 * 1024)}]


def uploading(megabytes: int) -> Any:
    def run(twin: Twin, api: str, stage: Stage) -> Outcome:
        return one_call(twin, api, stage, messages=big_upload(megabytes))

    return run
