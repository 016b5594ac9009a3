"""The command line, run in process (``cli.main(argv)``) and as ``python -m gatewayclient``,
against a FakeGateway on loopback."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

import gatewayclient.cli as cli
from gatewayclient import SyncGatewayClient
from gatewayclient._demo import run_demo
from gatewayclient.errors import GatewayValidationError
from gatewayclient.testing import (
    MODELS,
    PROVIDERS,
    FakeGateway,
    expected_embedding,
    expected_reply,
    expected_usage,
)

pytestmark = pytest.mark.timeout(60)

CHAT_MODEL = "openai/gpt-4o-mini"
EMBEDDING_MODEL = "openai/text-embedding-3-small"
ENV_NAMES = ("PLATFORM_API_URL", "AUTH_TOKEN")
SUBPROCESS_TIMEOUT = 30


@dataclass
class Result:
    status: int
    out: str
    err: str


def user(text: str) -> List[Dict[str, Any]]:
    return [{"role": "user", "content": text}]


def assert_one_error_line(result: Result, *fragments: str) -> None:
    assert result.status == 1
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("gatewayclient: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGateway]:
    with FakeGateway() as gateway:
        yield gateway


@pytest.fixture
def gw(server: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGateway]:
    """The module's FakeGateway, clean for each test; no configuration in the environment."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    server.clear_faults()
    server.clear_requests()
    yield server
    server.clear_faults()


@pytest.fixture
def conn(gw: FakeGateway) -> List[str]:
    return ["--base-url", gw.url, "--token", gw.token]


@pytest.fixture
def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """``run(*argv, stdin=None)``: ``cli.main`` in process, with its exit status and output."""

    def run_main(*argv: str, stdin: Optional[str] = None) -> Result:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        status = cli.main(list(argv))
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return Result(status, out, err)

    return run_main


def python_m(
    *argv: str, env: Optional[Dict[str, str]] = None, stdin: str = "", flags: tuple = ()
) -> Result:
    """``python -m gatewayclient *argv`` in a subprocess (killed on timeout)."""
    environ = {key: value for key, value in os.environ.items() if key not in ENV_NAMES}
    environ.update(env or {})
    proc = subprocess.run(
        [sys.executable, *flags, "-m", "gatewayclient", *argv],
        input=stdin, capture_output=True, text=True, env=environ, timeout=SUBPROCESS_TIMEOUT,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


# -- chat ---------------------------------------------------------------------------------------


def test_chat_streams_the_deterministic_reply(run: Callable[..., Result], conn: List[str],
                                              gw: FakeGateway) -> None:  # fmt: skip
    result = run("chat", *conn, "Hello", "there")
    assert result.status == 0
    assert result.out == expected_reply(CHAT_MODEL, user("Hello there")) + "\n"
    assert result.err == ""
    (request,) = gw.requests
    assert request.json["stream"] is True
    assert request.json["messages"] == user("Hello there")


def test_chat_sends_system_model_temperature_and_max_tokens(
    run: Callable[..., Result], conn: List[str], gw: FakeGateway
) -> None:
    model = "anthropic/claude-haiku-4-20250414"
    argv = ["-m", model, "--system", "Be brief", "-t", "0.5", "--max-tokens", "3", "Hi you"]
    result = run("chat", *conn, *argv)
    assert result.status == 0
    assert result.out == expected_reply(model, user("Hi you"), max_tokens=3) + "\n"
    body = gw.requests[0].json
    assert body["messages"] == [{"role": "system", "content": "Be brief"}, *user("Hi you")]
    assert (body["model"], body["temperature"], body["max_tokens"]) == (model, 0.5, 3)


def test_chat_no_stream_prints_the_reply(
    run: Callable[..., Result], conn: List[str], gw: FakeGateway
) -> None:
    result = run("chat", *conn, "--no-stream", "Hello")
    assert result.status == 0
    assert result.out == expected_reply(CHAT_MODEL, user("Hello")) + "\n"
    assert "stream" not in gw.requests[0].json


@pytest.mark.parametrize("mode", [[], ["--no-stream"]], ids=["stream", "no-stream"])
def test_chat_json_is_the_whole_completion(
    run: Callable[..., Result], conn: List[str], mode: List[str]
) -> None:
    result = run("chat", *conn, "--json", *mode, "Hello JSON")
    assert result.status == 0
    completion = json.loads(result.out)
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == expected_reply(
        CHAT_MODEL, user("Hello JSON")
    )
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"] == expected_usage(CHAT_MODEL, user("Hello JSON"))


def test_chat_reads_the_prompt_from_stdin_given_dash(
    run: Callable[..., Result], conn: List[str]
) -> None:
    result = run("chat", *conn, "-", stdin="from a pipe\n")
    assert result.status == 0
    assert result.out == expected_reply(CHAT_MODEL, user("from a pipe")) + "\n"


def test_python_m_chat_reads_stdin_and_the_environment(gw: FakeGateway) -> None:
    env = {"PLATFORM_API_URL": gw.url, "AUTH_TOKEN": gw.token}
    result = python_m("chat", env=env, stdin="piped prompt\n")
    assert (result.status, result.err) == (0, "")
    assert result.out == expected_reply(CHAT_MODEL, user("piped prompt")) + "\n"


def test_chat_without_a_prompt_is_a_usage_error(
    run: Callable[..., Result], conn: List[str]
) -> None:
    result = run("chat", *conn, stdin="  \n")
    assert result.status == 2
    assert "no prompt" in result.err


# -- embed --------------------------------------------------------------------------------------


def test_embed_prints_dimensions_and_first_values(
    run: Callable[..., Result], conn: List[str]
) -> None:
    texts = ["first text", "second one"]
    result = run("embed", *conn, *texts)
    assert result.status == 0
    lines = result.out.splitlines()
    assert len(lines) == 2
    for index, (line, text) in enumerate(zip(lines, texts)):
        first = expected_embedding(EMBEDDING_MODEL, text)[0]
        assert line.startswith(f"{index}  1536 dimensions  [{first:.6f}, ")
        assert line.endswith(json.dumps(text))


def test_embed_json_with_dimensions(run: Callable[..., Result], conn: List[str]) -> None:
    result = run("embed", *conn, "--json", "--dimensions", "8", "-m", EMBEDDING_MODEL, "hi")
    assert result.status == 0
    response = json.loads(result.out)
    vector = response["data"][0]["embedding"]
    assert vector == pytest.approx(expected_embedding(EMBEDDING_MODEL, "hi", 8))


def test_embed_reads_one_text_per_stdin_line(run: Callable[..., Result], conn: List[str]) -> None:
    result = run("embed", *conn, stdin="alpha\n\nbeta gamma\n")
    assert result.status == 0
    assert [line.rsplit("  ", 1)[1] for line in result.out.splitlines()] == [
        '"alpha"',
        '"beta gamma"',
    ]


# -- models and providers -----------------------------------------------------------------------


def test_models_lists_every_model_id(run: Callable[..., Result], conn: List[str]) -> None:
    result = run("models", *conn)
    assert result.status == 0
    assert result.out.splitlines() == [model.id for model in MODELS]


def test_models_of_one_provider(run: Callable[..., Result], conn: List[str]) -> None:
    result = run("models", *conn, "--provider", "anthropic")
    assert result.status == 0
    assert result.out.splitlines() == [m.id for m in MODELS if m.provider == "anthropic"]


def test_models_json_is_the_model_list(run: Callable[..., Result], conn: List[str]) -> None:
    result = run("models", *conn, "--json")
    listing = json.loads(result.out)
    assert listing["object"] == "list"
    assert [entry["id"] for entry in listing["data"]] == [model.id for model in MODELS]


def test_models_of_an_unknown_provider_is_empty_with_a_note(
    run: Callable[..., Result], conn: List[str]
) -> None:
    result = run("models", *conn, "-p", "nobody")
    assert (result.status, result.out) == (0, "")
    assert "no models for provider 'nobody'" in result.err


@pytest.mark.parametrize("as_json", [False, True])
def test_providers_lists_names(run: Callable[..., Result], conn: List[str], as_json: bool) -> None:
    result = run("providers", *conn, *(["--json"] if as_json else []))
    assert result.status == 0
    names = json.loads(result.out) if as_json else result.out.splitlines()
    assert names == list(PROVIDERS)


def test_connection_options_also_work_before_the_command(
    run: Callable[..., Result], gw: FakeGateway
) -> None:
    result = run("--base-url", gw.url, "--token", gw.token, "--timeout", "5", "providers")
    assert result.status == 0
    assert result.out.splitlines() == list(PROVIDERS)


def test_configuration_from_the_environment(
    run: Callable[..., Result], gw: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_API_URL", gw.url)
    monkeypatch.setenv("AUTH_TOKEN", gw.token)
    result = run("providers")
    assert (result.status, result.out.splitlines()) == (0, list(PROVIDERS))  # the token was sent


# -- expected failures: one line on stderr, exit 1 ----------------------------------------------


def test_no_base_url_configured(run: Callable[..., Result], gw: FakeGateway) -> None:
    result = run("models")
    assert_one_error_line(result, "--base-url", "PLATFORM_API_URL")
    assert gw.requests == []


def test_wrong_token_is_an_auth_error_and_never_printed(
    run: Callable[..., Result], gw: FakeGateway
) -> None:
    secret = "sk-wrong-secret-0123456789"
    result = run("chat", "--base-url", gw.url, "--token", secret, "Hello")
    assert_one_error_line(result, "401")
    assert secret not in result.out + result.err


def test_connection_refused(run: Callable[..., Result]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = run("models", "--base-url", url, "--token", "t")
    assert_one_error_line(result, f"cannot connect to the gateway at {url}", "refused")


def test_unknown_model(run: Callable[..., Result], conn: List[str]) -> None:
    result = run("chat", *conn, "-m", "openai/gpt-99", "Hello")
    assert_one_error_line(result, "404", "openai/gpt-99")


def test_rate_limit_after_the_retries(
    run: Callable[..., Result], conn: List[str], gw: FakeGateway
) -> None:
    gw.fail(429, times=5, retry_after=0)
    result = run("embed", *conn, "--max-retries", "1", "text")
    assert_one_error_line(result, "429")
    assert len(gw.requests) == 2


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["chat", "-t", "5", "Hello"], "from 0 to 2"),
        (["chat", "--temperature", "-0.5", "Hello"], "from 0 to 2"),
        (["chat", "-t", "nan", "Hello"], "from 0 to 2"),
        (["embed", ""], "text 1 is empty"),
        (["embed", "fine", "   "], "text 2 is empty"),
        (["chat", "-m", "", "Hello"], "model"),  # refused by the client, before sending
        (["embed", "-m", "", "text"], "model"),
        (["models", "-p", ""], "provider"),
        (["chat", "--timeout", "1e10", "Hello"], "at most 86400"),
    ],
)
def test_argument_values_refused_before_sending_are_usage_errors(
    run: Callable[..., Result], conn: List[str], gw: FakeGateway, argv: List[str], fragment: str
) -> None:
    result = run(*argv[:1], *conn, *argv[1:])
    assert (result.status, result.out) == (2, "")
    assert result.err.startswith("usage: gatewayclient ")
    assert result.err.splitlines()[-1].startswith(f"gatewayclient {argv[0]}: error: ")
    assert fragment in result.err.splitlines()[-1]
    assert gw.requests == []


def test_a_validation_error_from_the_client_is_a_usage_error(
    run: Callable[..., Result], conn: List[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(self: SyncGatewayClient) -> None:
        raise GatewayValidationError("some argument is wrong")

    monkeypatch.setattr(SyncGatewayClient, "list_models", refused)
    result = run("models", *conn)
    assert (result.status, result.out) == (2, "")
    assert result.err.splitlines()[-1] == "gatewayclient models: error: some argument is wrong"


def test_retries_are_silent_unless_verbose(
    run: Callable[..., Result], conn: List[str], gw: FakeGateway
) -> None:
    gw.fail(429, times=1, retry_after=0)
    quiet = run("providers", *conn)
    assert (quiet.status, quiet.err) == (0, "")
    gw.fail(429, times=1, retry_after=0)
    loud = run("providers", *conn, "-v")
    assert loud.status == 0
    assert re.fullmatch(r"gatewayclient: WARNING: .*429.*retry 1 of 2.*\n", loud.err)
    assert loud.out.splitlines() == list(PROVIDERS)


def test_a_stream_cut_midway_ends_the_line_then_one_error_line(
    run: Callable[..., Result], conn: List[str], gw: FakeGateway
) -> None:
    gw.cut_stream(after=3)  # the role chunk, "Hello ", "from ", then the connection closes
    result = run("chat", *conn, "Hello")
    assert result.status == 1
    assert result.out == "Hello from \n"
    assert_one_error_line(Result(1, "", result.err), "stream")


def test_ctrl_c_during_a_stream_exits_130_quietly(gw: FakeGateway) -> None:
    with FakeGateway() as own:  # its own gateway: no other request can take the scripted stall
        ctrl_c_during_a_stream(own)


def ctrl_c_during_a_stream(gw: FakeGateway) -> None:
    gw.stall(20, when="mid_stream", after=2)
    environ = {**os.environ, "PLATFORM_API_URL": gw.url, "AUTH_TOKEN": gw.token}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatewayclient", "chat", "Hello"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ,
        # A background job inherits SIGINT ignored, and Python then installs no handler: give
        # the child the default disposition, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.read(len("Hello ")) == "Hello "  # the stream has started
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out, err) == (130, "\n", "")
    assert [r.path for r in gw.requests] == ["/v1/chat/completions"]


def test_keyboard_interrupt_exits_130_quietly(
    run: Callable[..., Result], conn: List[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: SyncGatewayClient) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(SyncGatewayClient, "list_models", interrupted)
    assert run("models", *conn) == Result(130, "", "")


# -- usage errors: exit 2 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["chat", "--bogus", "Hello"],
        ["chat", "--timeout", "0", "Hello"],
        ["chat", "--max-tokens", "0", "Hello"],
        ["chat", "--temperature", "warm", "Hello"],
        ["models", "--max-retries", "-1"],
        ["serve", "--port", "http"],
        ["serve", "--port", "70000"],
        ["serve", "--port", "-1"],
        ["chat", "--timeout", "inf", "Hello"],
    ],
)
def test_usage_errors_exit_2(run: Callable[..., Result], gw: FakeGateway, argv: List[str]) -> None:
    result = run(*argv)
    assert result.status == 2
    assert "usage: gatewayclient" in result.err
    assert gw.requests == []


def test_python_m_help_and_version() -> None:
    help_text = python_m("--help")
    assert help_text.status == 0
    for command in ("chat", "embed", "models", "providers", "serve", "demo"):
        assert command in help_text.out
    version = python_m("--version")
    assert (version.status, version.out.split()[0]) == (0, "gatewayclient")


def test_python_m_expected_failure_exit_status() -> None:
    result = python_m("providers")
    assert_one_error_line(result, "PLATFORM_API_URL")


# -- serve --------------------------------------------------------------------------------------


@pytest.fixture
def serve() -> Iterator[Callable[..., subprocess.Popen]]:  # type: ignore[type-arg]
    """Start ``python -m gatewayclient serve ...``; every process is killed after the test."""
    started: List[subprocess.Popen] = []  # type: ignore[type-arg]

    def start(*argv: str) -> subprocess.Popen:  # type: ignore[type-arg]
        environ = {key: value for key, value in os.environ.items() if key not in ENV_NAMES}
        proc = subprocess.Popen(
            [sys.executable, "-W", "error", "-m", "gatewayclient", "serve", *argv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ,
        )  # fmt: skip
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=SUBPROCESS_TIMEOUT)


def read_exports(proc: subprocess.Popen) -> Dict[str, str]:  # type: ignore[type-arg]
    """The first two stdout lines, ``export NAME=value``, read while the server keeps running."""
    assert proc.stdout is not None
    exports = {}
    for _ in range(2):
        line = proc.stdout.readline()
        name, _, value = line.strip().removeprefix("export ").partition("=")
        exports[name] = shlex.split(value)[0]
    return exports


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_prints_exports_serves_and_stops_cleanly(
    serve: Callable[..., subprocess.Popen],  # type: ignore[type-arg]
    stop: signal.Signals,
) -> None:
    proc = serve("--port", "0", "--token", "s3cret token")
    exports = read_exports(proc)
    assert list(exports) == ["PLATFORM_API_URL", "AUTH_TOKEN"]
    assert exports["AUTH_TOKEN"] == "s3cret token"
    url = exports["PLATFORM_API_URL"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    with SyncGatewayClient(url, exports["AUTH_TOKEN"]) as client:
        reply = client.chat_completion(CHAT_MODEL, user("Hi serve"))
        assert reply.choices[0].message.content == expected_reply(CHAT_MODEL, user("Hi serve"))
        assert client.list_known_providers() == list(PROVIDERS)
    started = time.monotonic()
    proc.send_signal(stop)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert time.monotonic() - started < 5
    assert out == ""
    assert err.splitlines() == [f"gatewayclient: fake gateway listening on {url} (Ctrl-C to stop)"]


def test_serve_on_a_busy_port_is_one_error_line(
    run: Callable[..., Result], gw: FakeGateway
) -> None:
    result = run("serve", "--port", str(gw.port))
    assert_one_error_line(result, f"port {gw.port}")


# -- demo ---------------------------------------------------------------------------------------

DEMO_SECTIONS = [
    "chat completion",
    "streaming",
    "embeddings",
    "model discovery",
    "a 429 retried transparently",
    "typed errors",
]


def usage_rows(text: str, title: str) -> Dict[str, List[int]]:
    block = text.split(f"  {title}\n", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in block.splitlines()[1:]:
        name, *numbers = line.split()
        rows[name] = [int(number) for number in numbers]
    return rows


def test_demo_tours_both_clients(gw: FakeGateway) -> None:
    started = time.monotonic()
    result = python_m("demo", flags=("-W", "error"))  # -X dev would add asyncio's slow-step notes
    assert time.monotonic() - started < 15
    assert (result.status, result.err) == (0, "")
    for client in ("SyncGatewayClient", "AsyncGatewayClient"):
        for section in DEMO_SECTIONS:
            assert f"== {client}: {section}" in result.out
        rows = usage_rows(result.out, client)
        total = rows.pop("total")
        assert total == [sum(column) for column in zip(*rows.values())]
        assert rows[CHAT_MODEL][0] == 2  # the retried call counts once
    for expected in ("GatewayModelNotFoundError", "GatewayAuthError", "GatewayValidationError"):
        assert result.out.count(f"caught {expected}") == 2
    assert result.out.count("the gateway got 2 requests") == 2
    assert "== Usage" in result.out
    assert "test-token" not in result.out


def test_demo_in_process_leaves_no_thread_behind() -> None:
    before = set(threading.enumerate())
    out = io.StringIO()
    assert run_demo(out) == 0
    assert set(threading.enumerate()) <= before
    assert "== Done ==" in out.getvalue()
