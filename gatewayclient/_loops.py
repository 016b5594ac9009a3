"""Resources that belong to one event loop (an aiohttp session, a Redis client): closed by the
loop's own shutdown when a runner shuts its generators down, and by hand when a loop was closed
without that (``new_event_loop()`` ... ``close()``). asyncio only; no I/O library."""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

__all__ = ["close_socket", "drive", "keeper"]


async def keeper(close: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """An async generator to start inside a loop and keep: asyncio.run() (like every
    well-behaved runner) closes such generators before it closes the loop, and so runs
    ``close`` inside that loop, with no "Unclosed ..." warning and no "Event loop is closed"."""
    try:
        yield
    finally:
        await close()


def drive(awaitable: Awaitable[Any]) -> bool:
    """Run a coroutine that should not wait on its (closed) loop to its end, by hand. False
    when it did try to wait: it is then closed where it stood."""
    coroutine: Any = awaitable
    try:
        coroutine.send(None)
    except StopIteration:
        return True
    coroutine.close()
    return False


def close_socket(transport: Any) -> None:
    """Close the socket under a transport of a closed loop. Such a transport cannot close itself
    (it would schedule its own cleanup on that loop); its socket is closed directly and
    forgotten, and the transport marked closing, so that nothing warns about it later (an
    asyncio StreamWriter over it warns when collected unless its transport is closing)."""
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    for candidate in (transport, inner):
        sock = getattr(candidate, "_sock", None)
        if candidate is not None and sock is not None:
            sock.close()
            candidate._sock = None
    if transport is not None:  # a plain transport says it is closing by _closing, TLS by _closed
        for flag in ("_closing", "_closed"):
            if getattr(transport, flag, None) is False:
                setattr(transport, flag, True)
