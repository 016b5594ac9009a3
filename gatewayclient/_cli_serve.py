"""``gatewayclient serve``: the fake gateway in the foreground until SIGINT or SIGTERM, or in a
detached background process that outlives the command (POSIX only), for a shell::

    eval "$(gatewayclient serve --background --port 0)"   # exports the URL, token and PID
    kill "$GATEWAYCLIENT_SERVE_PID"

Public API only.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import shlex
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

from gatewayclient._cli_base import (
    ENV_AUTH_TOKEN,
    ENV_BASE_URL,
    ENV_SERVE_PID,
    FAKE_TOKEN,
    PROG,
    count,
    error,
    note,
    write,
)

if TYPE_CHECKING:
    from gatewayclient.testing import FakeGateway

__all__ = ["add_serve", "can_detach", "serve_foreground", "start_background", "stop_background"]

Ready = Callable[["FakeGateway"], None]


def add_serve(commands: Any) -> None:
    """The ``serve`` command's parser."""
    serve = commands.add_parser(
        "serve", help="run a FakeGateway until Ctrl-C or SIGTERM",
        description="Run the fake gateway (deterministic answers). The first two lines on stdout "
        f"are 'export {ENV_BASE_URL}=...' and 'export {ENV_AUTH_TOKEN}=...'. With --background, "
        f"a third gives its PID ({ENV_SERVE_PID}) and the command returns once it listens: "
        f'eval "$({PROG} serve --background --port 0)", then kill "${ENV_SERVE_PID}".',
    )  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=count(0, 65535), default=8080,
                       help="port to listen on, 0 for a free one (default: 8080)")  # fmt: skip
    # SUPPRESS: a --token given before the command (a connection option) is not overwritten.
    serve.add_argument("--token", default=argparse.SUPPRESS,
                       help=f"the token it accepts (default: {FAKE_TOKEN})")  # fmt: skip
    serve.add_argument("--background", action="store_true",
                       help="serve from a detached process, print its PID, return")  # fmt: skip
    serve.add_argument("--rpm", type=count(1), default=None, metavar="N",
                       help="answer 429 past N requests per window (default: none)")  # fmt: skip
    serve.add_argument("--tpm", type=count(1), default=None, metavar="N",
                       help="answer 429 past N tokens (as answered) per window")  # fmt: skip
    serve.add_argument("--window", type=_seconds(positive=True), default=60.0,
                       metavar="SECONDS", help="the rate limits' window (default: 60)")  # fmt: skip
    serve.add_argument("--latency", type=_seconds(positive=False), default=0.0,
                       metavar="SECONDS", help="wait before each answer (default: 0)")  # fmt: skip
    serve.set_defaults(handler=_cmd_serve, command_parser=serve)


def _seconds(positive: bool) -> Callable[[str], float]:
    """A number of seconds: finite, and > 0 (or >= 0)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            bound = "> 0" if positive else ">= 0"
            raise argparse.ArgumentTypeError(f"must be a number of seconds {bound}, got {text!r}")
        return value

    return parse


def _options(args: argparse.Namespace) -> Dict[str, Any]:
    """FakeGateway's keywords for the rate limits and the latency asked for."""
    return {
        "rpm_limit": args.rpm,
        "tpm_limit": args.tpm,
        "window": args.window,
        "latency": args.latency,
    }


def _exports(url: str, token: str) -> str:
    return (
        f"export {ENV_BASE_URL}={shlex.quote(url)}\nexport {ENV_AUTH_TOKEN}={shlex.quote(token)}\n"
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    token: str = args.token or FAKE_TOKEN

    def ready(gw: FakeGateway) -> None:
        write(_exports(gw.url, gw.token))
        note(f"fake gateway listening on {gw.url} (Ctrl-C to stop)")

    try:
        if not args.background:
            serve_foreground(args.host, args.port, token, ready, _options(args))
            return 0
        if not can_detach():
            args.command_parser.error("--background needs os.fork (POSIX): serve in the foreground")
        url, pid = start_background(args.host, args.port, token, _options(args))
    except OSError as exc:  # cannot listen: the port is taken, the address is not ours...
        error(f"cannot serve on {args.host} port {args.port}: {exc.strerror or exc}")
        return 1
    try:
        write(_exports(url, token) + f"export {ENV_SERVE_PID}={pid}\n")
    except BaseException:  # nobody can learn where it is or how to stop it
        stop_background(pid)
        raise
    note(f"fake gateway listening on {url} (pid {pid}; stop it with: kill {pid})")
    return 0


@contextlib.contextmanager
def _signals(handler: Callable[[int, Optional[FrameType]], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``handler`` (main thread only); the old handlers come back after."""
    main_thread = threading.current_thread() is threading.main_thread()
    numbers = (signal.SIGINT, signal.SIGTERM) if main_thread else ()
    saved = [(number, signal.signal(number, handler)) for number in numbers]
    try:
        yield
    finally:
        for number, previous in saved:
            signal.signal(number, previous)


def serve_foreground(
    host: str, port: int, token: str, ready: Ready, options: Optional[Dict[str, Any]] = None
) -> None:
    """Serve until SIGINT or SIGTERM; ``ready(gateway)`` runs once it listens. ``options`` are
    more of FakeGateway's keywords. An address it cannot listen on raises OSError."""
    from gatewayclient.testing import FakeGateway

    gateway = FakeGateway(host=host, port=port, token=token, **(options or {}))
    stop_requested: List[int] = []

    def started(gw: FakeGateway) -> None:
        ready(gw)
        if stop_requested:  # a signal arrived while it was starting
            gw.stop()

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        stop_requested.append(signum)
        gateway.stop()

    with _signals(on_signal):
        gateway.run(started)


def can_detach() -> bool:
    """Whether this platform can run the gateway in the background (it needs ``os.fork``)."""
    return hasattr(os, "fork") and hasattr(os, "setsid")


def start_background(
    host: str, port: int, token: str, options: Optional[Dict[str, Any]] = None
) -> Tuple[str, int]:
    """Start the gateway in a detached process (a session of its own, standard streams on
    /dev/null) and return its URL and PID once it listens. Stop it with SIGTERM (or SIGINT).
    An address it cannot listen on raises OSError, and no process is left behind."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the server: it never returns into the caller's code
        os.close(read_end)
        status = 1
        try:
            status = _serve_detached(host, port, token, write_end, options)
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "r", encoding="utf-8") as reader:
            report = reader.read()  # the server closes its end once it listens, or fails
    except BaseException:  # Ctrl-C while it starts: nobody would learn its PID
        stop_background(pid)
        raise
    kind, _, rest = report.partition(" ")
    if kind == "listening":
        return rest, pid
    os.waitpid(pid, 0)
    raise OSError(errno.EIO, rest if kind == "failed" and rest else "the server did not start")


def stop_background(pid: int) -> None:
    """Stop a server that ``start_background`` started and this process has not left yet."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


def _serve_detached(
    host: str, port: int, token: str, report_fd: int, options: Optional[Dict[str, Any]]
) -> int:
    """The background process: detach, serve, and report readiness (or failure) on
    ``report_fd``. Its standard streams go to /dev/null, so that a shell's ``$(...)`` reading
    the command's output does not wait for the server."""
    os.setsid()  # no controlling terminal: the terminal's Ctrl-C and hang-up do not reach it
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    reported: List[bool] = []

    def report(text: str) -> None:
        if not reported:
            reported.append(True)
            os.write(report_fd, text.encode("utf-8", "backslashreplace"))
            os.close(report_fd)

    try:
        serve_foreground(host, port, token, lambda gw: report(f"listening {gw.url}"), options)
    except OSError as exc:
        report(f"failed {exc.strerror or exc}")
        return 1
    return 0
