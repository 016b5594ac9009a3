"""The benchmark's local servers on 127.0.0.1, each in a process of its own.

- nginx (when a binary is installed): the fixed chat and embeddings answers, from a config
  written to a temporary directory (``daemon off``, one worker, keep-alive without limit).
- An aiohttp server (``python benchmarks/servers.py``, which prints its port): the SSE stream,
  always, each event sent with its own ``await resp.write()``, so a 1,000-chunk answer is 1,000
  HTTP chunks, as a gateway relaying tokens sends it (nginx serving a file would coalesce them);
  also the chat and embeddings answers when nginx is missing.
- On demand (``start_drip``, ``start_vectors``): the drip servers of the many-streams cases
  (``drip_server.py``: several processes on one port, one event every interval per stream) and
  ``bench_batch.py``'s vectors server (256 vectors a request, floats or base64).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import payloads

_NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    etag off;
    server_tokens off;
    default_type application/json;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {tmp}/www;
        # A POST to a static file is a 405; answer it with the file instead.
        error_page 405 =200 $uri;
        location = /v1/chat/completions {{ try_files /chat.json =404; }}
        location = /v1/embeddings {{ try_files /embeddings.json =404; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}")


class Servers:
    """Started servers: ``api_url`` for chat and embeddings, ``stream_url`` for streams; on
    demand the drip servers (many slow streams) and the vectors server (base64)."""

    def __init__(self, tmp: Path, use_nginx: bool = True) -> None:
        self.processes: List[subprocess.Popen[bytes]] = []
        self.drip_pids: List[int] = []
        try:
            self.stream_url = self._start_aiohttp()
            self.nginx = shutil.which("nginx") or (
                "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
            )
            if use_nginx and self.nginx:
                self.api_url = self._start_nginx(self.nginx, tmp)
                self.kind = "nginx " + nginx_version(self.nginx)
            else:
                self.api_url = self.stream_url
                self.kind = "aiohttp " + _aiohttp_version()
        except BaseException:
            self.stop()
            raise

    def _start_aiohttp(self) -> str:
        script = str(Path(__file__).resolve())
        process = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE)
        self.processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.isdigit():
            raise RuntimeError(f"the aiohttp server did not start (it said {line!r})")
        _wait_for_port(int(line), process, "the aiohttp server")
        return f"http://127.0.0.1:{line}"

    def start_drip(self, interval_ms: float, processes: int = 2) -> str:
        """``processes`` drip servers (``drip_server.py``) sharing one port; the URL."""
        port = free_port()
        script = str(Path(__file__).resolve().parent / "drip_server.py")
        for _ in range(processes):
            argv = [sys.executable, script, str(port), str(interval_ms)]
            process = subprocess.Popen(argv, stdout=subprocess.PIPE)
            self.processes.append(process)
            self.drip_pids.append(process.pid)
            assert process.stdout is not None
            if process.stdout.readline().strip() != b"ready":
                raise RuntimeError("a drip server did not start")
        return f"http://127.0.0.1:{port}"

    def start_vectors(self) -> str:
        """``bench_batch.py``'s server of 256 vectors a request, floats or base64; the URL."""
        port = free_port()
        script = str(Path(__file__).resolve().parent / "bench_batch.py")
        process = subprocess.Popen([sys.executable, script, "--serve", str(port)])
        self.processes.append(process)
        _wait_for_port(port, process, "the vectors server")
        return f"http://127.0.0.1:{port}"

    def drip_cpu(self) -> List[float]:
        """CPU seconds each drip server has used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        used = []
        for pid in self.drip_pids:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            used.append((int(fields[11]) + int(fields[12])) / ticks)  # utime + stime
        return used

    def _start_nginx(self, binary: str, tmp: Path) -> str:
        www = tmp / "www"
        www.mkdir(parents=True, exist_ok=True)
        (www / "chat.json").write_bytes(payloads.CHAT)
        (www / "embeddings.json").write_bytes(payloads.EMBEDDINGS)
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(tmp=tmp, port=port))
        process = subprocess.Popen(
            [binary, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")],
            stdout=subprocess.DEVNULL,
        )
        self.processes.append(process)
        _wait_for_port(port, process, "nginx")
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def nginx_version(binary: str) -> str:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
    return out.rsplit("/", 1)[-1] if "/" in out else out


def _aiohttp_version() -> str:
    from importlib.metadata import version

    return version("aiohttp")


# -- the aiohttp server process -----------------------------------------------------------------


async def _serve(port: int) -> None:
    from aiohttp import web

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if b'"stream"' not in body:
            return web.Response(body=payloads.CHAT, content_type="application/json")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for event in payloads.STREAM_EVENTS:
            await response.write(event)  # one write, one HTTP chunk, per event
        await response.write_eof()
        return response

    async def embeddings(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=payloads.EMBEDDINGS, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=300)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    sockets = site._server.sockets if site._server else ()  # type: ignore[union-attr]
    print(sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    asyncio.run(_serve(int(args[0]) if args else 0))


if __name__ == "__main__":
    main()
