"""Start, probe and stop a LiteLLM proxy on 127.0.0.1 for the interop suite (standard library).

Used by ``conftest.py``; the tests import ``MASTER_KEY``, ``Proxy`` and ``post_json`` from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "litellm_config.yaml"
LEGACY_CONFIG = HERE / "litellm_legacy_config.yaml"
MASTER_KEY = "sk-interop-master"
START_TIMEOUT = 50.0  # under pytest-timeout's 60 s for the first test's setup

# Everything LiteLLM would otherwise fetch at start (cost map, beta headers, blog posts, policy
# templates, router presets) is read from the wheel instead; telemetry is vetoed.
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_TELEMETRY_DISABLED": "true",
    "LITELLM_MASTER_KEY": MASTER_KEY,
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
# The second proxy's switch to LiteLLM's legacy limiter (fractional retry-after).
LEGACY_ENV = {"LEGACY_MULTI_INSTANCE_RATE_LIMITING": "true"}
# Settings in the caller's environment that would change the proxy under test.
DROPPED_ENV = (
    "DATABASE_URL",
    "LITELLM_CONFIG",
    "CONFIG_FILE_PATH",
    "LEGACY_MULTI_INSTANCE_RATE_LIMITING",
)

# No environment proxies for our own probes, whatever the caller's environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Proxy:
    """A proxy under test: its base URL, and its process when this session started it."""

    def __init__(
        self,
        url: str,
        process: Optional[subprocess.Popen[bytes]] = None,
        log: Optional[Path] = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.process = process
        self.log = log

    @property
    def pid(self) -> Optional[int]:
        return None if self.process is None else self.process.pid

    def log_tail(self, lines: int = 60) -> str:
        if self.log is None or not self.log.exists():
            return "(no log: this proxy was started outside the test session)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_until_live(self, timeout: float = START_TIMEOUT) -> Optional[str]:
        """None once ``/health/liveliness`` answers 200, else why it did not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return f"the proxy exited with status {self.process.returncode} while starting"
            with contextlib.suppress(OSError):
                if http_status(self.url + "/health/liveliness") == 200:
                    return None
            time.sleep(0.25)
        return f"the proxy did not answer /health/liveliness within {timeout:.0f} s"

    def terminate(self) -> None:
        """SIGTERM to the proxy's PID, if this session started it and it still runs."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the proxy's PID; SIGKILL if it is still there ``grace`` seconds later."""
        process = self.process
        if process is None:
            return
        self.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def litellm_command() -> Optional[str]:
    """``LITELLM_BIN``, else the ``litellm`` beside this interpreter, else one on PATH."""
    explicit = os.environ.get("LITELLM_BIN")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "litellm"
    if beside.exists():
        return str(beside)
    return shutil.which("litellm")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    command: str,
    workdir: Path,
    config: Path = CONFIG,
    extra_env: Optional[Mapping[str, str]] = None,
) -> Proxy:
    """Launch ``litellm --config ... --host 127.0.0.1 --port <free>``; returns at once."""
    env = {key: value for key, value in os.environ.items() if key not in DROPPED_ENV}
    env.update(OFFLINE_ENV)
    env.update(extra_env or {})
    port = free_port()
    log = workdir / "proxy.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [command, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Proxy(f"http://127.0.0.1:{port}", process, log)


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def post_json(url: str, body: Dict[str, Any], key: str = MASTER_KEY, timeout: float = 30.0) -> Any:
    """One POST straight to the proxy, bypassing gatewayclient (warm-up and blocker calls)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with _OPENER.open(request, timeout=timeout) as response:
        return json.loads(response.read())
