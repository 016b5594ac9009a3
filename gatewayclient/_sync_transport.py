"""The sync client's transport on requests: one session per process, the pool's limits, the body
as it arrives, and the one place where requests and urllib3 exceptions become ours."""

from __future__ import annotations

import contextlib
import functools
import http.client
import http.cookiejar
import io
import math
import os
import re
import socket
import ssl
import struct
import sys
import threading
import time
from functools import partial
from typing import Any, Iterator, List, Optional, Tuple, Union

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.exceptions

from . import _halt
from ._core import END_READS, Request
from ._failures import (
    MAX_HEADERS,
    MAX_REDIRECTS,
    Failure,
    Translate,
    failure_error,
    length_defect,
    os_reason,
)
from .config import ClientConfig

__all__ = ["Translate", "Transport", "raw_chunks", "shut"]

_TUNNEL_STATUS = re.compile(r"Tunnel connection failed: ([0-9]{3})")


def _chain(exc: BaseException) -> List[BaseException]:
    """``exc`` and every exception it wraps (requests and urllib3 wrap in args and ``reason``)."""
    found: List[BaseException] = []
    pending = [exc]
    while pending and len(found) < 16:
        current = pending.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        inner = [getattr(current, "reason", None), current.__cause__, current.__context__]
        inner += [*current.args[:2], getattr(current, "original_error", None)]
        pending += [item for item in inner if isinstance(item, BaseException)]
    return found


def _first(found: List[BaseException], *kinds: type) -> Any:
    return next((exc for exc in found if isinstance(exc, kinds)), None)


def _os_failure(kind: str, found: List[BaseException]) -> Failure:
    error = next(
        (e for e in found if type(e).__module__ == "builtins" and isinstance(e, OSError)), None
    )
    return Failure(kind, reason=os_reason(None if error is None else error.errno))


def _proxy_failure(found: List[BaseException], proxy: Optional[str]) -> Failure:
    for exc in found:
        match = _TUNNEL_STATUS.search(str(exc)) if type(exc) is OSError else None
        if match:  # urllib3 words a refused CONNECT so; only the status is taken from it
            status = int(match.group(1))
            kind = "proxy_refused" if 400 <= status < 500 else "proxy"
            return Failure(kind, status=status, proxy=proxy, reason=f"the proxy answered {status}")
    failure = _os_failure("proxy", found)
    return Failure("proxy", reason=failure.reason, proxy=proxy)


def _head_failure(found: List[BaseException]) -> Optional[Failure]:
    if _first(found, http.client.RemoteDisconnected, http.client.IncompleteRead):
        return None  # a closed connection, not a malformed answer
    if _first(found, http.client.LineTooLong):
        return Failure("malformed", reason="a line of its head is too long")
    if _first(found, http.client.BadStatusLine):
        return Failure("malformed", reason="its status line is not HTTP")
    head = _first(found, http.client.HTTPException, urllib3.exceptions.InvalidHeader)
    if head is not None:  # the library's words are looked at, never shown
        text = str(head)
        if "headers" in text:
            return Failure("malformed", reason=f"more than {MAX_HEADERS} headers")
        if "Content-Length" in text:
            return Failure("malformed", reason="its Content-Length is not one number")
        return Failure("malformed", reason="its head cannot be read")
    return None


# What this transport's libraries raise (http.client's own exceptions may surface unwrapped).
_FOREIGN = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,
    http.client.HTTPException,
)


def classify(exc: BaseException, proxy: Optional[str], timeout: Optional[float]) -> Any:
    """The Failure that a requests or urllib3 exception (or an OSError under them) stands for;
    None for anything else (a bug must surface as itself)."""
    if isinstance(exc, urllib3.exceptions.ProxySchemeUnsupported):  # a ValueError, unwrapped
        return Failure("proxy", reason="the proxy's scheme is not supported", proxy=proxy)
    if not isinstance(exc, _FOREIGN):
        return None
    found = _chain(exc)
    pool = _first(found, urllib3.exceptions.EmptyPoolError, urllib3.exceptions.ClosedPoolError)
    if pool is not None:
        if isinstance(pool, urllib3.exceptions.ClosedPoolError):
            return Failure("dropped", reason="the client was closed")
        return Failure("connect_timeout", seconds=timeout)
    if _first(found, requests.TooManyRedirects):
        return Failure("redirects")
    if _first(found, requests.exceptions.InvalidSchema, urllib3.exceptions.LocationValueError):
        return Failure("redirect_target")
    certificate = _first(found, ssl.SSLCertVerificationError)
    if certificate is not None:
        verify = getattr(certificate, "verify_message", None)
        return Failure("tls_verify", reason=verify or "the certificate is not trusted")
    if _first(found, requests.exceptions.ProxyError, urllib3.exceptions.ProxyError):
        return _proxy_failure(found, proxy)
    if _first(found, urllib3.exceptions.NameResolutionError, socket.gaierror):
        return Failure("dns")
    if _first(found, urllib3.exceptions.NewConnectionError):
        return _os_failure("connect", found)
    if _first(found, urllib3.exceptions.ConnectTimeoutError, requests.ConnectTimeout):
        return Failure("connect_timeout", seconds=timeout)
    if _first(found, urllib3.exceptions.ReadTimeoutError, requests.ReadTimeout):
        return Failure("read_timeout", seconds=timeout)
    if _first(found, TimeoutError):  # a bare socket timeout: sendall() of the request stalled
        return Failure("write_timeout", seconds=timeout)
    if _first(found, urllib3.exceptions.DecodeError, requests.exceptions.ContentDecodingError):
        return Failure("decode", reason="corrupt data")
    tls = _first(found, ssl.SSLError)
    if tls is not None and not isinstance(tls, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return Failure("tls", reason=str(getattr(tls, "reason", None) or "a TLS error"))
    head = _head_failure(found)
    if head is not None:
        return head
    if _first(found, OSError, urllib3.exceptions.ProtocolError, http.client.HTTPException):
        return _os_failure("dropped", found)
    return Failure("other", reason=type(exc).__name__)


# -- waits the kernel bounds --------------------------------------------------------------------
#
# Python bounds a socket's wait with a poll() before each recv() (two system calls, and two
# releases of the GIL, for every read): a stream pays that for every chunk, and 200 threads
# streaming pay it in contention as well (measured in ``benchmarks/many_streams.py``: raw requests
# with a read timeout cost 1.11-1.18x raw requests without one). On Linux a plain connection's
# socket instead blocks in recv() with SO_RCVTIMEO (and SO_SNDTIMEO for sends) set to the same
# timeout: one call per read, the same bound. The kernel's "would block" after that time is the
# socket timeout Python would have raised, so everything above (http.client, urllib3, our
# ``classify``) sees what it sees today. TLS connections keep Python's way: OpenSSL would take
# the kernel's timeout for a non-blocking read. So do sockets that are not the standard library's
# (gevent's or eventlet's, when they patch ``socket``): they wait in their own loops.
_KERNEL_WAITS = sys.platform.startswith("linux") and socket.socket.__module__ == "socket"
_TIMEVAL = "@ll"  # struct timeval on Linux: seconds, microseconds (both C longs)
_recv_into = socket.socket.recv_into
_recv = socket.socket.recv
_send = socket.socket.send
_sendall = socket.socket.sendall
_settimeout = socket.socket.settimeout


def timeval(seconds: float) -> bytes:
    """``seconds`` as a struct timeval, rounded up to the microsecond (a zero would mean
    "wait forever" to the kernel)."""
    whole = int(seconds)
    micro = math.ceil((seconds - whole) * 1e6)
    if micro >= 1_000_000:
        whole, micro = whole + 1, 0
    return struct.pack(_TIMEVAL, whole, micro)


def _timed(method: Any) -> Any:
    """``method`` of the socket, with a blocking descriptor's EAGAIN (its SO_*TIMEO ran out)
    raised as ``socket.timeout``; a non-blocking socket's as it is."""

    def call(self: KernelTimedSocket, *args: Any) -> Any:
        try:
            return method(self, *args)
        except BlockingIOError:
            if self._wait:
                raise socket.timeout("timed out") from None
            raise

    call.__name__ = method.__name__
    return call


class KernelTimedSocket(socket.socket):
    """A connected TCP socket whose timeout (``settimeout``, as Python's) is kept by the kernel:
    the descriptor blocks, SO_RCVTIMEO and SO_SNDTIMEO bound each wait, and a wait that runs out
    raises ``socket.timeout`` as Python's own would. ``settimeout(0)`` is non-blocking as ever."""

    __slots__ = ("_kernel", "_wait")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: Any = None):
        super().__init__(family, type, proto, fileno)
        self._wait: Optional[float] = 0.0  # what the descriptor is until settimeout says
        self._kernel = 0.0  # the kernel's bound now; 0: none

    @classmethod
    def adopt(cls, sock: socket.socket) -> KernelTimedSocket:
        """``sock``'s connection in a KernelTimedSocket, with ``sock``'s timeout (``sock`` is
        detached: it no longer owns the descriptor)."""
        timeout = sock.gettimeout()
        adopted = cls(sock.family, sock.type, sock.proto, sock.detach())
        adopted.settimeout(timeout)
        return adopted

    def settimeout(self, value: Optional[float]) -> None:
        if value is not None and value > 0:
            if value != self._kernel:
                packed = timeval(value)
                self.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, packed)
                self.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, packed)
                self._kernel = value
            if self._wait == 0.0:  # the descriptor is non-blocking: make it block
                _settimeout(self, None)
        else:
            _settimeout(self, value)  # None: block, 0: never block (a bad value raises here)
            if value is None and self._kernel:
                forever = struct.pack(_TIMEVAL, 0, 0)
                self.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, forever)
                self.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, forever)
                self._kernel = 0.0
        self._wait = value

    def gettimeout(self) -> Optional[float]:
        return self._wait

    @property
    def timeout(self) -> Optional[float]:
        return self._wait

    def setblocking(self, flag: bool) -> None:
        self.settimeout(None if flag else 0.0)

    def makefile(self, mode: str = "r", buffering: Optional[int] = None, **kwargs: Any) -> Any:
        """As Python's; ``"rb"`` (what http.client asks for) reads through ``_KernelTimedIO``,
        one C ``recv_into`` per read."""
        if mode != "rb" or buffering is not None or kwargs:
            return super().makefile(mode, buffering, **kwargs)  # type: ignore[call-overload]
        raw = _KernelTimedIO(self, "rb")
        self._io_refs += 1  # type: ignore[attr-defined]  # as socket.makefile counts it
        return io.BufferedReader(raw, io.DEFAULT_BUFFER_SIZE)

    # A wait that runs out: EAGAIN from a blocking descriptor, raised as Python's timeout.
    recv_into = _timed(_recv_into)
    recv = _timed(_recv)
    send = _timed(_send)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """As Python's: all of ``data`` within the timeout, in all (not per send()). A request
        the kernel takes at once (most) is one send(); a slower peer's rest is sent with the
        kernel's bound narrowed to what is left of the timeout."""
        wait = self._wait
        if not wait:
            _sendall(self, data, flags)
            return
        started = time.monotonic()
        total = len(data) if type(data) is bytes else memoryview(data).nbytes
        try:
            sent = _send(self, data, flags)
        except BlockingIOError:
            raise socket.timeout("timed out") from None
        if sent < total:
            self._send_rest(memoryview(data).cast("B"), sent, flags, started + wait)

    def _send_rest(self, view: memoryview, sent: int, flags: int, deadline: float) -> None:
        try:
            while sent < len(view):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("timed out")
                self.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(left))
                sent += _send(self, view[sent:], flags)
        except BlockingIOError:
            raise socket.timeout("timed out") from None
        finally:
            view.release()
            with contextlib.suppress(OSError):  # a socket closed meanwhile keeps no bound
                self.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(self._kernel))


class _KernelTimedIO(socket.SocketIO):
    """``socket.SocketIO`` over a KernelTimedSocket: the read is the socket's C ``recv_into``
    itself (no Python frame around it), and a wait that ran out is ``socket.timeout``, as
    SocketIO makes Python's own timeout."""

    _sock: KernelTimedSocket
    _timeout_occurred: bool

    def readinto(self, b: Any) -> Optional[int]:
        self._checkClosed()
        if self._timeout_occurred:
            raise OSError("cannot read from timed out object")
        try:
            return _recv_into(self._sock, b)
        except BlockingIOError:
            if not self._sock._wait:
                return None  # non-blocking and nothing there yet: SocketIO's answer
            self._timeout_occurred = True
            raise socket.timeout("timed out") from None
        except socket.timeout:
            self._timeout_occurred = True
            raise


_STANDARD = KernelTimedSocket.__mro__[1]  # the standard library's socket class


class _Connection(urllib3.connection.HTTPConnection):
    """A plain-HTTP connection whose socket waits as ``KernelTimedSocket`` does (on Linux)."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        if _KERNEL_WAITS and type(sock) is _STANDARD and sock.type == socket.SOCK_STREAM:
            return KernelTimedSocket.adopt(sock)
        return sock


class _Pool(urllib3.HTTPConnectionPool):
    """A pool whose wait for a free connection is bounded by the call's timeout, as aiohttp's
    connector is (requests passes urllib3 no pool timeout, so it would wait forever). A batch
    worker's connections are lent to its halt while in use (``_halt``), so that stopping the
    batch can wake a read blocked on one."""

    ConnectionCls: Any = _Connection

    def urlopen(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("pool_timeout") is None:
            timeout = kwargs.get("timeout")
            kwargs["pool_timeout"] = getattr(timeout, "connect_timeout", None)
        return super().urlopen(*args, **kwargs)

    def _get_conn(self, timeout: Optional[float] = None) -> Any:
        connection = super()._get_conn(timeout)
        halt = _halt.current()
        if halt is not None:
            halt.hold(connection, _shut_connection)
        return connection

    def _put_conn(self, conn: Any) -> None:
        halt = _halt.current()
        if halt is not None and conn is not None:
            halt.release(conn)
        super()._put_conn(conn)


def _shut_connection(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


class _HTTPSPool(_Pool, urllib3.HTTPSConnectionPool):
    ConnectionCls = urllib3.connection.HTTPSConnection  # Python's waits: see KernelTimedSocket


_POOL_CLASSES = {"http": _Pool, "https": _HTTPSPool}


class _Adapter(requests.adapters.HTTPAdapter):
    """At most ``max_connections`` connections at once, as on the async twin: a call waits for
    a free one for at most its timeout (requests' default opens extra ones without limit)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:
        """requests' own, without the ``os.path.isdir(verify)`` it asks on every call when
        ``verify`` names a CA bundle or directory (a ``stat()`` per request, which the
        configuration's CA path, fixed and checked at construction, answers once)."""
        if not isinstance(verify, str):
            return super().build_connection_pool_key_attributes(request, verify, cert)
        host, given = super().build_connection_pool_key_attributes(request, False, cert)
        pool: Any = dict(given)
        pool["cert_reqs"] = "CERT_REQUIRED"
        pool["ca_cert_dir" if _is_directory(verify) else "ca_certs"] = verify
        return host, pool


@functools.lru_cache(maxsize=16)
def _is_directory(path: str) -> bool:
    return os.path.isdir(path)


class Transport:
    """One requests.Session per process. ``trust_env`` is off: the configuration read the
    environment (proxies, CA bundle) once, where requests would re-read it on every call."""

    def __init__(self, config: ClientConfig, tls: object) -> None:
        # ``tls`` (checked at construction) is for the async twin: requests loads the CA bundle
        # named by ``config.verify`` itself.
        self._config = config
        self._lock = threading.Lock()
        self._session: Optional[requests.Session] = None
        self._pid = 0
        self._parked: List[Tuple[requests.Response, Iterator[bytes]]] = []
        self.proxy = config.proxy
        self._proxies = {"http": config.proxy, "https": config.proxy} if config.proxy else {}
        self._verify = config.verify

    def session(self) -> requests.Session:
        session = self._session
        if session is None or self._pid != os.getpid():
            with self._lock:
                if self._session is None or self._pid != os.getpid():
                    # After a fork the parent's pooled sockets must not be shared: start afresh,
                    # closing this process's copies of them (the parent keeps its own).
                    inherited, self._session = self._session, None
                    if inherited is not None:
                        _close_pools(inherited)
                    self._session, self._pid = self._new_session(), os.getpid()
                session = self._session
        return session

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.max_redirects = MAX_REDIRECTS
        # Each call stands alone, as on the async twin: no cookie is kept or replayed.
        session.cookies.set_policy(_NoCookies())
        adapter = _Adapter(
            pool_connections=4,
            pool_maxsize=self._config.max_connections,
            pool_block=True,
            max_retries=0,
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def translate(self, request: Request) -> Translate:
        return Translate(request, self.proxy, classify)

    def park(self, response: requests.Response, chunks: Iterator[bytes]) -> None:
        """A stream ended at ``[DONE]``; the end of its body may still be on its way. Nobody
        waits for it: the connection goes back to the pool now if the end has arrived, else at
        the next request if it has arrived by then, else it is closed."""
        if finish_buffered(response, chunks, END_READS):
            response.raw.release_conn()
            return
        with self._lock:
            self._parked.append((response, chunks))

    def _reap(self) -> None:
        with self._lock:
            parked, self._parked = self._parked, []
        if self._pid != os.getpid():  # a forked child: its copies of the parent's sockets
            for response, _ in parked:
                response.close()
            return
        for response, chunks in parked:
            if finish_buffered(response, chunks, END_READS):
                response.raw.release_conn()
            else:
                response.close()

    def send(self, request: Request, stream: bool) -> requests.Response:
        if self._parked:
            self._reap()
        prepared = requests.PreparedRequest()
        timeout: Union[Tuple[float, float], None] = (
            None if request.timeout is None else (request.timeout, request.timeout)
        )
        with Translate(request, self.proxy, classify):
            prepared.prepare(
                method=request.method, url=request.url, headers=request.headers, data=request.body
            )
            response = self.session().send(
                prepared, stream=stream, timeout=timeout, verify=self._verify, proxies=self._proxies
            )
        defect = length_defect(response.raw.headers.get("content-length"))
        if defect is not None:
            response.close()
            failure = Failure("malformed", reason=defect)
            raise failure_error(failure, request.label, request.url)
        return response

    def close(self) -> None:
        self._reap()
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            _close_pools(session)


def _close_pools(session: requests.Session) -> None:
    """Close a session's pooled connections. Session.close() only forgets urllib3's pools:
    their kept-alive sockets would stay open for as long as anything (a held error's traceback)
    references a pool. In a forked child these are the child's copies of the parent's sockets:
    closing them (no shutdown, no TLS close_notify) leaves the parent's connections alone."""
    for adapter in session.adapters.values():
        if not isinstance(adapter, requests.adapters.HTTPAdapter):
            continue
        for manager in [adapter.poolmanager, *adapter.proxy_manager.values()]:
            for key in list(manager.pools.keys()):
                pool = manager.pools.get(key)
                if pool is not None:
                    pool.close()
    session.close()


class _NoCookies(http.cookiejar.CookiePolicy):
    """A cookie policy that accepts none and returns none."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = False

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: Any) -> bool:
        return False

    def path_return_ok(self, path: str, request: Any) -> bool:
        return False


def raw_chunks(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: each network read, never requests' line iterator."""
    raw = response.raw
    if raw.chunked and raw.supports_chunked_reads():
        reader = _plain_chunked(raw)
        if reader is not None:
            return _chunks_of(raw, reader)
        # each HTTP chunk as it arrives: what raw.stream() hands on, one generator less
        return raw.read_chunked(None, decode_content=True)
    if raw.chunked:
        return raw.stream(None, decode_content=True)
    if hasattr(raw, "read1"):
        return iter(partial(raw.read1, 65536), b"")  # a body without chunked framing
    return response.iter_content(chunk_size=None)


# A chunk size line's longest (urllib3's bound, its extensions included).
_CHUNK_LINE = 65536
# What ends a chunked body, at the end of what has arrived: the last chunk (a size of zeros,
# maybe with extensions), trailer fields, the empty line; after the start or a chunk's CRLF.
_LAST_CHUNK = re.compile(rb"(?:\A|\r\n)0+(?:;[^\r\n]*)?\r\n(?:[^\r\n]+\r\n)*\r\n\Z")


def _plain_chunked(raw: Any) -> Optional[Any]:
    """The buffered reader under a chunked body that ``_chunks_of`` can read: nothing to decode
    (no Content-Encoding), nothing of it read yet, and the urllib3 internals it relies on where
    it expects them; None otherwise (urllib3's ``read_chunked`` then reads it)."""
    encoding = raw.headers.get("content-encoding", "").strip().lower()
    original = getattr(raw, "_original_response", None)
    reader = getattr(original, "fp", None)
    if (
        encoding not in ("", "identity")
        or original is None
        or original is not getattr(raw, "_fp", None)
        or getattr(raw, "chunk_left", 0) is not None
        or not hasattr(raw, "_error_catcher")
        or not all(hasattr(reader, name) for name in ("readline", "read"))
    ):
        return None
    return reader


def _chunks_of(raw: Any, reader: Any) -> Iterator[bytes]:
    """A chunked body's chunks as they arrive, read off the socket's buffered reader in C
    calls only: urllib3's ``read_chunked`` spends about 0.8 µs of Python per chunk on framing
    that a stream of small events pays for every one (its size line, its bookkeeping, its
    content decoder, a generator around the whole). The framing is checked as strictly as
    urllib3 checks it, and more: a negative size is an error here, where urllib3 would read to
    the end of the connection. Errors are urllib3's, raised the way it raises them, by its own
    ``_error_catcher``: a read timeout is ``ReadTimeoutError``, a broken body ``ProtocolError``
    (the connection is closed with it); at the end the connection goes back to the pool as
    after ``read_chunked``."""
    readline, read = reader.readline, reader.read
    with raw._error_catcher():
        while True:
            line = readline(_CHUNK_LINE + 1)
            try:
                if len(line) > _CHUNK_LINE:
                    raise ValueError
                size = int(line.split(b";", 1)[0], 16)
                if size < 0:
                    raise ValueError
            except ValueError:
                raw.close()
                if not line:
                    raise urllib3.exceptions.ProtocolError("Response ended prematurely") from None
                raise urllib3.exceptions.InvalidChunkLength(raw, line[:64]) from None
            if not size:
                break
            data = read(size)
            if len(data) != size:  # the body ended inside the chunk: what came is handed on
                if data:
                    yield data
                raise http.client.IncompleteRead(data, size - len(data))
            # The chunk's CRLF, tossed unchecked as urllib3 does, before the chunk is handed on:
            # a stream's last chunk then leaves nothing of itself in the buffer, where it would
            # hide the body's end from _end_arrived's peek.
            if len(read(2)) != 2:
                yield data
                raise http.client.IncompleteRead(b"", 2)
            yield data
        while True:  # trailer fields, up to the empty line that ends the body (or its end)
            line = readline(_CHUNK_LINE + 1)
            if len(line) > _CHUNK_LINE:
                raise urllib3.exceptions.ProtocolError("a chunked body's trailer line is too long")
            if not line or line == b"\r\n":
                break
        raw._original_response.close()  # read to its end: _error_catcher releases the connection


def _socket(response: requests.Response) -> Optional[socket.socket]:
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def shut(response: requests.Response) -> None:
    """Wake a read blocked on ``response`` in another thread: closing a socket does not, on
    Linux, but shutting it down does (the read then sees the end of the stream)."""
    sock = _socket(response)
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed or never connected
            sock.shutdown(socket.SHUT_RDWR)


def _end_arrived(response: requests.Response, sock: socket.socket) -> bool:
    """Whether the rest of the body, to its very end, is already here (buffered by the reader or
    waiting in the socket): then reading it cannot wait. Looks without consuming anything."""
    raw = response.raw
    reader = getattr(getattr(raw, "_fp", None), "fp", None)
    if reader is None or not hasattr(reader, "peek"):
        return False
    previous = sock.gettimeout()
    sock.settimeout(0.0)  # a peek with nothing buffered returns at once instead of waiting
    try:
        seen: bytes = reader.peek(65536)
    except (OSError, ValueError):
        return False
    finally:
        sock.settimeout(previous)
    if raw.chunked:  # the last chunk (its trailer fields, if any), and nothing after it
        return _LAST_CHUNK.search(seen) is not None
    remaining = raw.length_remaining
    return remaining is not None and len(seen) >= remaining


def finish_buffered(response: requests.Response, chunks: Iterator[bytes], reads: int) -> bool:
    """After a stream's last event: read the rest of the body only if all of it has arrived,
    never waiting. True when the body ended (the connection can go back to the pool)."""
    sock = _socket(response)
    if sock is None or not _end_arrived(response, sock):
        return False
    try:
        for _ in range(reads):
            if not next(chunks, b""):
                return True
    except (OSError, requests.RequestException, urllib3.exceptions.HTTPError, ValueError):
        pass  # what had arrived was not the body's end after all
    return False
