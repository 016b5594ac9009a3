"""The sync client's plain connections wait in the kernel (``KernelTimedSocket``): one recv()
per read instead of Python's poll() + recv(), with the same bounds and the same errors.

The socket tests use a real TCP connection on 127.0.0.1; the client tests, FakeGateway."""

from __future__ import annotations

import _socket
import contextlib
import socket
import struct
import threading
import time
from typing import Any, Iterator, List, Tuple

import pytest
import urllib3.util.connection

from gatewayclient import GatewayTimeoutError, SyncGatewayClient
from gatewayclient._sync_transport import KernelTimedSocket, timeval
from gatewayclient.testing import FakeGateway

MODEL = "openai/gpt-4o"
HELLO = [{"role": "user", "content": "Hello!"}]


@contextlib.contextmanager
def connected(timeout: Any) -> Iterator[Tuple[KernelTimedSocket, socket.socket]]:
    """A KernelTimedSocket connected to a peer socket on loopback; both closed after."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        plain = socket.create_connection(listener.getsockname(), timeout=5)
        peer, _ = listener.accept()
    sock = KernelTimedSocket.adopt(plain)
    try:
        sock.settimeout(timeout)
        yield sock, peer
    finally:
        sock.close()
        peer.close()


def kernel_wait(sock: socket.socket, option: int = socket.SO_RCVTIMEO) -> float:
    seconds, micro = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, option, 16))
    return float(seconds + micro / 1e6)


def test_a_wait_that_runs_out_is_a_socket_timeout_from_one_blocking_recv() -> None:
    with connected(0.25) as (sock, _):
        assert _socket.socket.gettimeout(sock) is None  # Python's own wait (a poll) is off
        assert sock.gettimeout() == sock.timeout == 0.25  # what callers set is what they read
        assert kernel_wait(sock) == pytest.approx(0.25, abs=0.02)
        assert kernel_wait(sock, socket.SO_SNDTIMEO) == pytest.approx(0.25, abs=0.02)
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            sock.recv_into(bytearray(16))
        assert 0.2 <= time.monotonic() - started < 2
        with pytest.raises(socket.timeout):
            sock.recv(16)


def test_what_arrives_within_the_wait_is_read() -> None:
    with connected(2) as (sock, peer):
        peer.sendall(b"hello")
        buffer = bytearray(16)
        assert sock.recv_into(buffer) == 5 and bytes(buffer[:5]) == b"hello"
        peer.sendall(b"again")
        assert sock.recv(16) == b"again"
        peer.close()
        assert sock.recv(16) == b""  # the end of the stream, as ever


def test_a_send_the_peer_never_takes_is_a_socket_timeout() -> None:
    with connected(0.3) as (sock, _):
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            sock.sendall(b"x" * (64 << 20))  # far more than both sockets' buffers hold
        assert time.monotonic() - started < 3
    with connected(0.3) as (sock, _), pytest.raises(socket.timeout):
        while True:
            sock.send(b"x" * 65536)


def test_a_send_bounds_all_of_its_data_not_each_part_that_leaves() -> None:
    """As Python's sendall: a peer that keeps taking a little does not stretch the timeout."""
    with connected(0.5) as (sock, peer):
        stop = threading.Event()

        def trickle() -> None:  # 64 KiB every 50 ms: progress, but far too slow for 64 MiB
            peer.settimeout(0.2)
            while not stop.is_set():
                with contextlib.suppress(socket.timeout):
                    peer.recv(65536)
                stop.wait(0.05)

        reader = threading.Thread(target=trickle)
        reader.start()
        try:
            started = time.monotonic()
            with pytest.raises(socket.timeout):
                sock.sendall(memoryview(b"x" * (64 << 20)))
            assert 0.45 <= time.monotonic() - started < 1.5
            assert kernel_wait(sock, socket.SO_SNDTIMEO) == pytest.approx(0.5, abs=0.02)
        finally:
            stop.set()
            reader.join()


def test_its_binary_reader_reads_and_times_out_as_pythons_does() -> None:
    """What http.client reads through (``makefile("rb")``): C reads, Python's errors."""
    with connected(0.25) as (sock, peer):
        reader = sock.makefile("rb")
        try:
            assert type(reader.raw).__name__ == "_KernelTimedIO"
            peer.sendall(b"line one\r\nrest")
            assert reader.readline() == b"line one\r\n"
            assert reader.read1(100) == b"rest"
            started = time.monotonic()
            with pytest.raises(socket.timeout):
                reader.read1(100)
            assert 0.2 <= time.monotonic() - started < 2
            with pytest.raises(OSError, match="timed out object"):
                reader.read1(100)
        finally:
            reader.close()
    with connected(0.0) as (sock, peer), sock.makefile("rb") as reader:
        assert reader.raw.readinto(bytearray(8)) is None  # non-blocking: nothing there yet
        peer.sendall(b"now")
        time.sleep(0.05)
        assert reader.read1(8) == b"now"
    with connected(0.25) as (sock, peer), sock.makefile("r", encoding="utf-8") as text:
        peer.sendall("héllo\n".encode())
        assert text.readline() == "héllo\n"  # other modes: Python's own reader
        with pytest.raises(socket.timeout):
            text.readline()


def test_zero_never_blocks_and_none_waits_for_ever() -> None:
    with connected(0.2) as (sock, peer):
        sock.settimeout(0.0)
        started = time.monotonic()
        with pytest.raises(BlockingIOError) as info:  # not a timeout: nothing was waited for
            sock.recv_into(bytearray(16))
        assert not isinstance(info.value, socket.timeout)
        assert time.monotonic() - started < 0.1
        assert sock.gettimeout() == 0.0 and not sock.getblocking()

        sock.settimeout(None)  # the kernel's bound goes too
        assert sock.gettimeout() is None and kernel_wait(sock) == 0.0
        late = threading.Timer(0.6, peer.sendall, args=(b"late",))
        late.start()
        try:
            started = time.monotonic()
            assert sock.recv(16) == b"late"  # past the old 0.2 s bound
            assert time.monotonic() - started >= 0.5
        finally:
            late.cancel()
            late.join()

        sock.setblocking(False)
        assert sock.gettimeout() == 0.0
        sock.settimeout(0.2)  # from non-blocking back to a bounded wait
        assert sock.getblocking() and _socket.socket.gettimeout(sock) is None
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            sock.recv(16)
        assert 0.15 <= time.monotonic() - started < 2
        sock.setblocking(True)
        assert sock.gettimeout() is None and kernel_wait(sock) == 0.0


def test_a_bad_timeout_is_refused_as_python_refuses_it() -> None:
    with connected(1) as (sock, _):
        with pytest.raises(ValueError):
            sock.settimeout(-1)
        assert sock.gettimeout() == 1


def test_a_timeval_is_rounded_up_to_the_microsecond() -> None:
    def unpacked(seconds: float) -> Tuple[int, int]:
        whole, micro = struct.unpack("@ll", timeval(seconds))
        return whole, micro

    assert unpacked(60) == (60, 0)
    assert unpacked(0.25) == (0, 250000)
    assert unpacked(1e-9) == (0, 1)  # never 0, which would mean "wait for ever"
    assert unpacked(2.9999999) == (3, 0)
    assert unpacked(30 * 86400) == (2592000, 0)  # the longest timeout the client takes


@pytest.fixture
def adopted(monkeypatch: pytest.MonkeyPatch) -> List[KernelTimedSocket]:
    """Every socket the sync client's connections adopt, in order."""
    made: List[KernelTimedSocket] = []
    adopt = KernelTimedSocket.adopt

    def spy(sock: socket.socket) -> KernelTimedSocket:
        made.append(adopt(sock))
        return made[-1]

    monkeypatch.setattr(KernelTimedSocket, "adopt", staticmethod(spy))
    return made


def test_the_sync_clients_plain_connections_wait_in_the_kernel(
    gw: FakeGateway, adopted: List[KernelTimedSocket]
) -> None:
    with SyncGatewayClient(gw.url, gw.token, timeout=7, max_retries=0) as client:
        client.list_models()
        chunks = list(client.stream_chat_completion(MODEL, HELLO))
        assert chunks
        assert len(adopted) == 1  # one connection, kept and used again
        sock = adopted[0]
        assert sock.gettimeout() == 7 and kernel_wait(sock) == pytest.approx(7, abs=0.02)
        assert _socket.socket.gettimeout(sock) is None


def test_a_kept_connections_wait_follows_each_calls_timeout(
    gw: FakeGateway, adopted: List[KernelTimedSocket]
) -> None:
    with SyncGatewayClient(gw.url, gw.token, timeout=30, max_retries=0) as client:
        client.list_models()  # the connection is kept, bounded at 30 s
        gw.stall(3)
        started = time.monotonic()
        with pytest.raises(GatewayTimeoutError):
            client.chat_completion(MODEL, HELLO, timeout=0.3)
        assert time.monotonic() - started < 2.3
        assert len(adopted) == 1  # the short bound was the kept connection's

        client.chat_completion(MODEL, HELLO, timeout=0.3)  # a new connection, kept at 0.3 s
        gw.stall(0.8)
        started = time.monotonic()
        assert client.chat_completion(MODEL, HELLO, timeout=5).choices  # not cut at 0.3 s
        assert time.monotonic() - started >= 0.75
        assert len(adopted) == 2


class ForeignSocket(socket.socket):
    """A socket class that is not the standard library's, as gevent's or eventlet's are."""


def test_a_socket_of_another_library_keeps_its_own_waits(
    gw: FakeGateway, adopted: List[KernelTimedSocket], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: List[socket.socket] = []
    create = urllib3.util.connection.create_connection

    def foreign(*args: Any, **kwargs: Any) -> socket.socket:
        plain = create(*args, **kwargs)
        made.append(ForeignSocket(plain.family, plain.type, plain.proto, plain.detach()))
        made[-1].settimeout(kwargs.get("timeout", args[1] if len(args) > 1 else None))
        return made[-1]

    monkeypatch.setattr(urllib3.util.connection, "create_connection", foreign)
    with SyncGatewayClient(gw.url, gw.token, timeout=7, max_retries=0) as client:
        assert client.list_models().data
        assert len(made) == 1 and not adopted
        assert made[0].gettimeout() == 7 and kernel_wait(made[0]) == 0.0
