"""The example Django project (examples/django_app, using gatewayclient.contrib.django) under
real servers on 127.0.0.1, started here on free ports with every warning an error: gunicorn
(WSGI: 2 pre-forked gthread workers) and uvicorn (ASGI). Many concurrent requests, each a
distinct question whose answer must come back to it; a browser that leaves mid-stream; a
master whose clients never reach its workers. Each server is stopped by its PID (SIGTERM, then
SIGKILL for its process group), whatever the test's outcome."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple
from urllib.parse import urlencode

import django
import pytest
import requests
from django_support import SlowGateway, sse_text

from gatewayclient.testing import FakeGateway, expected_reply

pytestmark = pytest.mark.timeout(120)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "django_app"
MODEL = "openai/gpt-4o-mini"
REQUESTS = 100
WARNING_WORDS = ("warning", "error", "traceback", "exception")

GUNICORN_CONFIG = """
import json, os

control_socket_disable = True  # gunicorn >= 25.1 would open one in the home directory
graceful_timeout = 3
_master = {{}}


def when_ready(server):
    # In the master, after --preload and before the fork: it builds its clients and uses one.
    from gatewayclient.contrib.django import async_gateway, gateway

    _master["clients"] = gateway(), async_gateway()
    if {master_asks!r}:
        question = [{{"role": "user", "content": "asked by the master"}}]
        gateway().chat_completion({model!r}, question)


def post_fork(server, worker):
    from gatewayclient.contrib.django import async_gateway, gateway

    report = {{
        "new_sync": gateway() is not _master["clients"][0],
        "new_async": async_gateway() is not _master["clients"][1],
        "requests": gateway().usage.total.requests,
    }}
    with open(os.path.join({reports!r}, "%d.json" % os.getpid()), "w") as file:
        json.dump(report, file)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """A server process of this test, in a process group of its own; ``stop()`` sends SIGTERM
    to its PID, then SIGKILL to the group if it has not ended within ``grace`` seconds."""

    def __init__(self, command: List[str], env: Dict[str, str], logs: Path, grace: float = 8):
        self.command, self.env, self.grace = command, env, grace
        self.out, self.err = logs / "stdout.log", logs / "stderr.log"
        self.process: Any = None

    def start(self, ready: Callable[[], bool]) -> None:
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                self.command, cwd=EXAMPLE, env=self.env, stdout=out, stderr=err,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while not ready():
            assert self.process.poll() is None, f"the server ended: {self.stderr()}"
            assert time.monotonic() < deadline, f"the server did not start: {self.stderr()}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(self.grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # its workers too
            self.process.wait(10)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


def server_env(gateway_url: str, token: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GATEWAY"))}
    env.update(
        PLATFORM_API_URL=gateway_url,
        AUTH_TOKEN=token,
        DJANGO_SETTINGS_MODULE="gatewaysite.settings",
        PYTHONWARNINGS="error",
        PYTHONPATH=os.pathsep.join([str(EXAMPLE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def gunicorn(
    gateway_url: str, token: str, tmp: Path, master_asks: bool = True
) -> Tuple[Server, int, Path]:
    port, reports = free_port(), tmp / "reports"
    reports.mkdir()
    config = tmp / "gunicorn_conf.py"
    source = GUNICORN_CONFIG.format(model=MODEL, reports=str(reports), master_asks=master_asks)
    config.write_text(source)
    command = [
        sys.executable, "-W", "error", "-m", "gunicorn", "-c", str(config),
        "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread", "--threads", "4",
        "--workers", "2", "--preload", "gatewaysite.wsgi:application",
    ]  # fmt: skip
    server = Server(command, server_env(gateway_url, token), tmp)
    return server, port, reports


def uvicorn(gateway_url: str, token: str, tmp: Path) -> Tuple[Server, int]:
    port = free_port()
    command = [
        sys.executable, "-W", "error", "-m", "uvicorn", "--host", "127.0.0.1",
        "--port", str(port), "--lifespan", "off", "--timeout-graceful-shutdown", "3",
        "--no-access-log", "gatewaysite.asgi:application",
    ]  # fmt: skip
    return Server(command, server_env(gateway_url, token), tmp), port


def worker_reports(reports: Path) -> Callable[[], bool]:
    return lambda: len(list(reports.glob("*.json"))) == 2


@pytest.fixture
def running(tmp_path: Path) -> Iterator[List[Server]]:
    """The servers this test starts: stopped whatever the test's outcome."""
    servers: List[Server] = []
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


# -- answers under load ------------------------------------------------------------------------


def user(text: str) -> List[Dict[str, str]]:
    return [{"role": "user", "content": text}]


def ask(port: int, path: str, question: str) -> str:
    """One request as a browser would send it; the answer's text."""
    url = f"http://127.0.0.1:{port}{path}"
    if path.endswith("stream"):
        response = requests.get(url, params={"question": question}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "text/event-stream"
        return sse_text(response.content)
    response = requests.post(url, json={"question": question}, timeout=30)
    assert response.status_code == 200, response.text
    answer: str = response.json()["answer"]
    return answer


def load(port: int, paths: List[str], label: str) -> None:
    """REQUESTS requests at once from 32 threads, each asking its own question."""
    jobs = [(paths[i % len(paths)], f"question {i} to {label}") for i in range(REQUESTS)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda job: ask(port, *job), jobs))
    assert answers == [expected_reply(MODEL, user(q), 300) for _, q in jobs]


def assert_quiet(server: Server) -> None:
    """Nothing on stderr but the servers' own INFO lines: no warning, error or traceback."""
    for line in server.stderr().splitlines():
        assert not any(word in line.lower() for word in WARNING_WORDS), server.stderr()


def test_gunicorn_threads_answer_every_request_with_its_own_answer(
    tmp_path: Path, running: List[Server]
) -> None:
    with FakeGateway() as gateway:
        server, port, reports = gunicorn(gateway.url, gateway.token, tmp_path)
        running.append(server)
        server.start(worker_reports(reports))
        # The master built its clients and called once before forking; each worker has its own.
        for report in reports.glob("*.json"):
            assert json.loads(report.read_text()) == {
                "new_sync": True,
                "new_async": True,
                "requests": 0,
            }
        load(port, ["/ask", "/stream", "/aask"], "gunicorn")
        asked = [r.json["messages"][0]["content"] for r in gateway.requests]
        assert asked.count("asked by the master") == 1
        assert len(asked) == REQUESTS + 1
        server.stop()
    assert server.process.returncode == 0
    assert_quiet(server)


def test_uvicorn_answers_every_request_with_its_own_answer(
    tmp_path: Path, running: List[Server]
) -> None:
    with FakeGateway() as gateway:
        server, port = uvicorn(gateway.url, gateway.token, tmp_path)
        running.append(server)
        server.start(lambda: accepts(port))
        load(port, ["/aask", "/astream", "/ask"], "uvicorn")
        assert len(gateway.requests) == REQUESTS
        server.stop()
    assert server.process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    assert_quiet(server)


# -- a browser that leaves mid-stream ----------------------------------------------------------


def browse_then_leave(port: int, path: str, question: str) -> None:
    """Open a relayed stream, read until two ticks of the answer have arrived, hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as browser:
        query = urlencode({"question": question})
        browser.sendall(f"GET {path}?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = b""
        while b"tick1" not in received:
            piece = browser.recv(65536)
            assert piece, f"the stream ended early: {received!r}"
            received += piece
        assert received.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("kind", ["gunicorn", "uvicorn"])
def test_a_browser_leaving_mid_stream_closes_the_gateway_stream(
    tmp_path: Path, running: List[Server], kind: str
) -> None:
    if kind == "uvicorn" and django.VERSION < (5, 0):
        pytest.skip("Django < 5.0 does not tell an ASGI view that its client has gone")
    with SlowGateway() as slow:
        if kind == "gunicorn":
            server, port, reports = gunicorn(slow.url, "test-token", tmp_path, master_asks=False)
            running.append(server)
            server.start(worker_reports(reports))
            path = "/stream"
        else:
            server, port = uvicorn(slow.url, "test-token", tmp_path)
            running.append(server)
            server.start(lambda: accepts(port))
            path = "/astream"
        left = time.monotonic()
        browse_then_leave(port, path, f"leaving {kind}")
        assert slow.outcome(timeout=10) == (f"leaving {kind}", "closed")
        assert time.monotonic() - left < 5  # the stream itself would have gone on for 30 s
        server.stop()
    assert_quiet(server)
