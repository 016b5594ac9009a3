"""The command line as a process: the installed console script (or ``python -m gatewayclient``)
run with a closed or full stdout, argv and stdin bytes that are not UTF-8, and ``serve
--background`` driven from a shell exactly as the README shows it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import pytest

from gatewayclient import SyncGatewayClient
from gatewayclient.testing import PROVIDERS, FakeGateway, expected_reply

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30
ENV_NAMES = ("PLATFORM_API_URL", "AUTH_TOKEN", "GATEWAYCLIENT_SERVE_PID")
SCRIPT = Path(sys.executable).with_name("gatewayclient")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "gatewayclient"]
Arg = Union[str, bytes]


@dataclass
class Result:
    status: int
    out: bytes
    err: bytes

    @property
    def err_lines(self) -> List[str]:
        return self.err.decode("utf-8", "replace").splitlines()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGateway]:
    with FakeGateway() as gateway:
        yield gateway


@pytest.fixture
def gw(server: FakeGateway) -> FakeGateway:
    server.clear_faults()
    server.clear_requests()
    return server


def environment(gw: Optional[FakeGateway] = None, **extra: Arg) -> Dict[Arg, Arg]:
    env: Dict[Arg, Arg] = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    if gw is not None:
        env.update(PLATFORM_API_URL=gw.url, AUTH_TOKEN=gw.token)
    env.update(extra)
    return env


def gatewayclient(
    *argv: Arg,
    env: Dict[Arg, Arg],
    stdin: bytes = b"",
    stdout: Union[int, str] = subprocess.PIPE,
) -> Result:
    """The console script with ``argv`` (str or raw bytes); ``stdout="closed"`` runs it with
    file descriptor 1 closed, as ``gatewayclient ... >&-`` in a shell does."""
    command: Sequence[Arg] = [*COMMAND, *argv]
    if stdout == "closed":
        command = ["sh", "-c", 'exec "$@" >&-', "sh", *command]
        stdout = subprocess.DEVNULL  # replaced by the shell's >&-
    proc = subprocess.run(
        command, input=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=TIMEOUT
    )
    assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
    return Result(proc.returncode, proc.stdout or b"", proc.stderr)


def assert_one_line(result: Result, status: int, *fragments: str) -> None:
    assert result.status == status, result
    assert result.out == b""
    assert len(result.err_lines) == 1, result.err
    assert result.err_lines[0].startswith("gatewayclient: error: ")
    for fragment in fragments:
        assert fragment in result.err_lines[0]


# -- usage errors from the console script ---------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["chat", "-t", "5", "Hello"], ["embed", ""], ["serve", "--port", "70000"]]
)
def test_argument_errors_exit_2(gw: FakeGateway, argv: List[str]) -> None:
    result = gatewayclient(*argv, env=environment(gw))
    assert result.status == 2
    assert result.err.startswith(b"usage: gatewayclient ")
    assert gw.requests == []


# -- a closed or full stdout ------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["models"], ["chat", "Hello"], ["embed", "text"], ["providers"], ["demo"], ["serve"]],
    ids=lambda argv: argv[0],
)
def test_a_closed_stdout_is_quiet_and_sends_nothing(gw: FakeGateway, argv: List[str]) -> None:
    result = gatewayclient(*argv, env=environment(gw), stdout="closed")
    assert (result.status, result.err) == (1, b"")
    assert gw.requests == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("argv", [["models"], ["chat", "Hello"], ["demo"]], ids=lambda a: a[0])
def test_a_full_stdout_is_one_error_line(gw: FakeGateway, argv: List[str]) -> None:
    with open("/dev/full", "wb") as full:
        result = gatewayclient(*argv, env=environment(gw), stdout=full.fileno())
    assert_one_line(result, 1, "cannot write the output", "No space left on device")


# -- text that is not UTF-8 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([b"chat", b"caf\xe9"], "argument 2 is not valid UTF-8"),
        ([b"embed", b"ok", b"\xff"], "argument 3 is not valid UTF-8"),
        ([b"chat", b"--system", b"\xff\xfe", b"Hi"], "argument 3 (after --system) is not valid"),
        ([b"--token", b"s\xe9cret-token", b"models"], "argument 2 (after --token) is not valid"),
        ([b"chat", b"--token=s\xe9cret", b"Hi"], "argument 2 (the value of --token) is not"),
    ],
)
def test_argv_that_is_not_utf8_is_one_line_and_sends_nothing(
    gw: FakeGateway, argv: List[bytes], fragment: str
) -> None:
    result = gatewayclient(*argv, env=environment(gw))
    assert_one_line(result, 2, fragment)
    assert b"cret" not in result.err  # an undecodable value is never echoed: it may be a secret
    assert gw.requests == []


@pytest.mark.parametrize("errors", ["surrogateescape", "strict"])
@pytest.mark.parametrize("argv", [["chat"], ["embed"]])
def test_stdin_that_is_not_utf8_is_one_line_and_sends_nothing(
    gw: FakeGateway, argv: List[str], errors: str
) -> None:
    env = environment(gw, PYTHONIOENCODING=f"utf-8:{errors}")
    result = gatewayclient(*argv, env=env, stdin=b"caf\xe9 au lait\n")
    assert_one_line(result, 2, "standard input is not valid UTF-8")
    assert gw.requests == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("AUTH_TOKEN", b"s\xe9cret-token"), ("PLATFORM_API_URL", b"http://127.0.0.1:9/\xff")],
)
def test_an_environment_value_that_is_not_utf8_is_one_configuration_line(
    gw: FakeGateway, name: str, value: bytes
) -> None:
    env = environment(gw)
    env[name.encode()] = value
    del env[name]
    result = gatewayclient("providers", env=env)
    assert_one_line(result, 1, f"{name} is not valid UTF-8")
    assert b"cret" not in result.err
    assert gw.requests == []


# -- serve --background, from a shell ---------------------------------------------------------


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts as gone: it is no longer serving)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not process_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def started_pids() -> Iterator[List[int]]:
    """PIDs of background servers a test started: any still running is killed after it."""
    pids: List[int] = []
    yield pids
    for pid in pids:
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid)


def listening_pid(stderr: bytes) -> int:
    match = re.search(rb"\(pid (\d+); stop it with: kill \1\)", stderr)
    assert match, stderr
    return int(match.group(1))


def readme_first_try() -> str:
    """The README's shell block that starts ``serve --background`` and kills it, without its
    activation line (the test puts this interpreter's environment first on PATH instead)."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text("utf-8"), re.S)
    (block,) = [b for b in blocks if re.search(r"^eval .*^kill ", b, re.S | re.M)]
    return "".join(
        line + "\n" for line in block.splitlines() if not line.startswith((". ", "source "))
    )


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_the_readme_first_try_runs_in_a_shell(started_pids: List[int]) -> None:
    script = readme_first_try()
    assert 'eval "$(gatewayclient serve --background' in script
    assert 'kill "$GATEWAYCLIENT_SERVE_PID"' in script
    env = environment(PATH=f"{SCRIPT.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    started = time.monotonic()
    proc = subprocess.run(
        ["sh", "-e", "-c", script], cwd=ROOT, capture_output=True, env=env, timeout=TIMEOUT
    )
    assert time.monotonic() - started < 20  # $(...) did not wait for the server
    pid = listening_pid(proc.stderr)
    started_pids.append(pid)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"Traceback" not in proc.stderr
    out = proc.stdout.decode()
    assert "openai/gpt-4o-mini\n" in out  # gatewayclient models
    prompt = re.search(r'gatewayclient chat "([^"]+)"', script)
    assert prompt is not None
    reply = expected_reply("openai/gpt-4o-mini", [{"role": "user", "content": prompt.group(1)}])
    assert reply + "\n" in out
    assert wait_gone(pid), "kill $GATEWAYCLIENT_SERVE_PID did not stop the server"


def test_serve_background_prints_exports_and_the_pid_then_stops_on_sigterm(
    started_pids: List[int],
) -> None:
    result = gatewayclient(
        "serve", "--background", "--port", "0", "--token", "s3cret token", env=environment()
    )
    pid = listening_pid(result.err)
    started_pids.append(pid)
    assert result.status == 0
    lines = result.out.decode().splitlines()
    assert [line.split("=", 1)[0] for line in lines] == [
        "export PLATFORM_API_URL",
        "export AUTH_TOKEN",
        "export GATEWAYCLIENT_SERVE_PID",
    ]
    url = re.fullmatch(r"export PLATFORM_API_URL=(http://127\.0\.0\.1:\d+)", lines[0])
    assert url is not None
    assert lines[1:] == [
        "export AUTH_TOKEN='s3cret token'",
        f"export GATEWAYCLIENT_SERVE_PID={pid}",
    ]
    assert len(result.err_lines) == 1
    with SyncGatewayClient(url.group(1), "s3cret token") as client:
        assert client.list_known_providers() == list(PROVIDERS)
    os.kill(pid, signal.SIGTERM)
    assert wait_gone(pid, 5)
    port = int(url.group(1).rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass


def test_serve_background_on_a_busy_port_is_one_line(gw: FakeGateway) -> None:
    result = gatewayclient("serve", "--background", "--port", str(gw.port), env=environment())
    assert_one_line(result, 1, f"cannot serve on 127.0.0.1 port {gw.port}", "in use")
    assert SyncGatewayClient(gw.url, gw.token).list_known_providers() == list(PROVIDERS)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_serve_background_that_cannot_say_where_it_is_stops_the_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with open("/dev/full", "wb") as full:
        result = gatewayclient(
            "serve", "--background", "--port", str(port), env=environment(), stdout=full.fileno()
        )
    assert_one_line(result, 1, "cannot write the output")
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
