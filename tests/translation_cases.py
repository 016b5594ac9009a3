"""Every exception class a transport may meet, instantiated with a secret wherever its library
puts text: request headers (``Authorization: Bearer ...``, ``Proxy-Authorization``), a proxy's
credentials, messages, URLs with userinfo, an OSError's strerror and filename, nested causes.

Instances are built from each constructor's signature with ``ARGUMENTS`` (parameter name, or
``Class.parameter`` where one name means different things); a class that cannot be built is an
error of this table, never a silent skip.
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import inspect
import socket
import ssl
import warnings
from email.errors import MessageDefect
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Type

import aiohttp
import aiohttp.client_exceptions
import aiohttp.http_exceptions
import requests
import requests.exceptions
import urllib3
import urllib3.connection
import urllib3.exceptions
from aiohttp.client_reqrep import ConnectionKey, RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

SECRET = "sk-translation-secret-4242"
PROXY_SECRET = "proxy-pass-4242"
USERINFO_URL = f"http://alice:{SECRET}@127.0.0.1:4000/v1/chat/completions?api_key={SECRET}"
PROXY_URL = f"http://puser:{PROXY_SECRET}@127.0.0.1:3128"
FORBIDDEN = (SECRET, PROXY_SECRET, "Bearer", "alice", "puser")
TEXT = f"failed: Authorization: Bearer {SECRET}; Proxy-Authorization: Basic {PROXY_SECRET}"
HEADERS = {
    "Authorization": f"Bearer {SECRET}",
    "Proxy-Authorization": f"Basic {PROXY_SECRET}",
    "Cookie": f"session={SECRET}",
}

# Classes of these namespaces that no HTTP request of ours can raise (websockets, aiohttp's
# internal end-of-stream signal): named with the reason, and not walked.
NOT_FROM_A_REQUEST: Dict[str, str] = {
    "aiohttp._websocket.models.WebSocketError": "websocket frames only; we never upgrade",
    "aiohttp.client_exceptions.WSMessageTypeError": "ws.receive_json() only (a TypeError)",
    "aiohttp.streams.EofStream": "aiohttp's internal signal, caught inside its stream reader",
}


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _secret_error() -> Exception:
    return ConnectionResetError(errno.ECONNRESET, TEXT, USERINFO_URL)


def request_info() -> RequestInfo:
    url = URL(USERINFO_URL)
    headers = CIMultiDictProxy(CIMultiDict(HEADERS))
    return RequestInfo(url, "POST", headers, url)


def connection_key() -> ConnectionKey:
    with warnings.catch_warnings():  # aiohttp 3.14 deprecates BasicAuth, yet keeps it in the key
        warnings.simplefilter("ignore", DeprecationWarning)
        auth = aiohttp.BasicAuth("puser", PROXY_SECRET)
    return ConnectionKey(
        host="127.0.0.1",
        port=4000,
        is_ssl=True,
        ssl=True,
        proxy=URL(PROXY_URL),
        proxy_auth=auth,
        proxy_headers_hash=hash(PROXY_SECRET),
    )


def pool() -> urllib3.HTTPConnectionPool:
    return urllib3.HTTPConnectionPool("127.0.0.1", 4000, headers=HEADERS)


def connection() -> urllib3.connection.HTTPConnection:
    return urllib3.connection.HTTPConnection("127.0.0.1", 4000)


def certificate_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {TEXT}")
    error.verify_message = "self-signed certificate in certificate chain"  # OpenSSL's words
    error.verify_code = 19
    return error


def prepared() -> requests.PreparedRequest:
    request = requests.PreparedRequest()
    request.prepare(method="POST", url=USERINFO_URL, headers=HEADERS, data=b"{}")
    return request


def response() -> requests.Response:
    answer = requests.Response()
    answer.status_code = 407
    answer.url = USERINFO_URL
    answer.headers.update(HEADERS)
    answer.request = prepared()
    return answer


Factory = Callable[[], Any]
ARGUMENTS: Dict[str, Factory] = {
    "message": lambda: TEXT,
    "msg": lambda: TEXT,
    "description": lambda: TEXT,
    "line": lambda: TEXT,
    "hdr": lambda: TEXT,
    "line_type": lambda: TEXT,
    "version": lambda: TEXT,
    "scheme": lambda: TEXT,
    "location": lambda: USERINFO_URL,
    "url": lambda: USERINFO_URL,
    "path": lambda: f"/tmp/{SECRET}.sock",
    "unparsed_data": lambda: TEXT,
    "length": lambda: TEXT.encode(),
    "host": lambda: "127.0.0.1",
    "port": lambda: 4000,
    "pool": pool,
    "conn": connection,
    "response": lambda: urllib3.HTTPResponse(body=b"", headers=HEADERS, preload_content=False),
    "reason": _secret_error,
    "error": _secret_error,
    "os_error": lambda: ConnectionRefusedError(errno.ECONNREFUSED, TEXT),
    "certificate_error": certificate_error,
    "connection_key": connection_key,
    "request_info": request_info,
    "history": tuple,
    "status": lambda: 400,
    "code": lambda: None,
    "headers": lambda: CIMultiDict(HEADERS),
    "retries": lambda: 3,
    "defects": lambda: [MessageDefect(TEXT)],
    "limit": lambda: 8190,
    "actual_size": lambda: "9000",
    "expected": lambda: 100,
    "partial": lambda: 50,
    "got": lambda: TEXT.encode(),
    # Where one name means different things:
    "ClientHttpProxyError.status": lambda: 407,
    "ServerFingerprintMismatch.expected": lambda: TEXT.encode(),
    "IncompleteRead.partial": lambda: TEXT.encode(),  # http.client's: the bytes received
    "BadStatusLine.error": lambda: TEXT,
    "BadHttpMethod.error": lambda: TEXT,
}

# Classes whose ``*args`` mean something particular.
POSITIONAL: Dict[str, Factory] = {
    "requests.exceptions.JSONDecodeError": lambda: [TEXT, TEXT, 0],  # json's (msg, doc, pos)
}

ERRNO = {
    ConnectionRefusedError: errno.ECONNREFUSED,
    ConnectionResetError: errno.ECONNRESET,
    ConnectionAbortedError: errno.ECONNABORTED,
    BrokenPipeError: errno.EPIPE,
    TimeoutError: errno.ETIMEDOUT,
    FileNotFoundError: errno.ENOENT,
    PermissionError: errno.EACCES,
}


def _signature(cls: type) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(cls)
    except (TypeError, ValueError):
        return None  # a constructor written in C: it takes positional arguments


def _argument(cls: type, name: str) -> Any:
    for mro in cls.__mro__:
        factory = ARGUMENTS.get(f"{mro.__name__}.{name}")
        if factory is not None:
            return factory()
    if name not in ARGUMENTS:
        raise LookupError(f"no value for parameter {name!r} of {qualified(cls)}")
    return ARGUMENTS[name]()


def _from_signature(cls: type, signature: inspect.Signature) -> BaseException:
    args: List[Any] = []
    kwargs: Dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            args += POSITIONAL.get(qualified(cls), lambda: [TEXT, _secret_error()])()
        elif param.kind is param.VAR_KEYWORD:
            if issubclass(cls, requests.RequestException):
                kwargs.update(request=prepared(), response=response())
        elif param.kind is param.KEYWORD_ONLY:
            kwargs[param.name] = _argument(cls, param.name)
        else:
            args.append(_argument(cls, param.name))
    made: BaseException = cls(*args, **kwargs)
    return made


def _errno(cls: type) -> int:
    return next((ERRNO[base] for base in cls.__mro__ if base in ERRNO), errno.EIO)


def build(cls: Type[BaseException]) -> BaseException:
    """An instance of ``cls`` holding the secret everywhere it keeps text, with a cause and
    a context that hold it too. Raises for a class this table cannot build."""
    signature = _signature(cls)
    if issubclass(cls, http.client.RemoteDisconnected):
        exc: BaseException = cls(TEXT)
    elif issubclass(cls, OSError) and cls.__module__ in ("builtins", "socket", "ssl"):
        exc = cls(_errno(cls), TEXT, USERINFO_URL)  # errno, strerror, filename
    elif issubclass(cls, OSError) and signature is None:
        exc = cls(_errno(cls), TEXT)  # aiohttp's ClientOSError(*os_error.args)
    elif signature is None:
        exc = cls(TEXT, _secret_error())
    else:
        exc = _from_signature(cls, signature)
    exc.__cause__ = RuntimeError(TEXT)
    exc.__context__ = _secret_error()
    return exc


def _classes(module: ModuleType, names: Optional[List[str]] = None) -> List[type]:
    found = []
    for name in names if names is not None else dir(module):
        value = getattr(module, name, None)
        if (
            inspect.isclass(value)
            and issubclass(value, BaseException)
            and not issubclass(value, Warning)
        ):
            found.append(value)
    return found


def _subclasses(root: type) -> List[type]:
    seen = [root]
    for cls in seen:
        seen += [sub for sub in cls.__subclasses__() if sub not in seen]
    return seen


def _own(classes: List[type], *packages: str) -> List[type]:
    return [cls for cls in classes if cls.__module__.split(".")[0] in packages]


def _unique(classes: List[type]) -> List[type]:
    kept: Dict[str, type] = {}
    for cls in classes:
        if qualified(cls) not in NOT_FROM_A_REQUEST:
            kept.setdefault(qualified(cls), cls)
    return sorted(kept.values(), key=qualified)


def stdlib_classes() -> List[type]:
    """The OSError family (builtins, socket, ssl) and http.client's exceptions."""
    os_errors = [c for c in _subclasses(OSError) if c.__module__ in ("builtins", "socket", "ssl")]
    http_client = [
        c for c in _subclasses(http.client.HTTPException) if c.__module__ == "http.client"
    ]
    return _unique([*os_errors, socket.timeout, asyncio.TimeoutError, *http_client])


def sync_classes() -> List[type]:
    """What the sync transport may meet: requests' and urllib3's exceptions, and the stdlib's."""
    library = _classes(requests.exceptions) + _classes(urllib3.exceptions)
    return _unique(_own(library, "requests", "urllib3") + stdlib_classes())


def aiohttp_classes() -> List[type]:
    """aiohttp's public exceptions (``aiohttp.__all__``, its client and http exceptions)."""
    library = _classes(aiohttp, list(aiohttp.__all__))
    library += _classes(aiohttp.client_exceptions) + _classes(aiohttp.http_exceptions)
    return _own(library, "aiohttp")


def async_classes() -> List[type]:
    os_errors = [c for c in stdlib_classes() if issubclass(c, OSError)]
    return _unique(aiohttp_classes() + os_errors + [asyncio.TimeoutError])


def every_listed_class() -> List[str]:
    """Every class the namespaces hold before ``NOT_FROM_A_REQUEST`` is taken out."""
    return [qualified(cls) for cls in aiohttp_classes()]
