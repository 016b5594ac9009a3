"""``Twin``: either client behind one blocking interface, so one test body serves both."""

from __future__ import annotations

import asyncio
from typing import Any, List

from gatewayclient import AsyncGatewayClient, SyncGatewayClient


class Twin:
    """One client of either kind behind a blocking interface: ``twin.call("list_models")``."""

    def __init__(self, kind: str, *args: Any, **kwargs: Any) -> None:
        self.kind = kind
        if kind == "sync":
            self.loop = None
            self.client: Any = SyncGatewayClient(*args, **kwargs)
        else:
            self.loop = asyncio.new_event_loop()
            self.client = AsyncGatewayClient(*args, **kwargs)

    def run(self, value: Any) -> Any:
        return self.loop.run_until_complete(value) if self.loop is not None else value

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.run(getattr(self.client, method)(*args, **kwargs))

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.stream_chat_completion(*args, **kwargs)

    def next(self, stream: Any) -> Any:
        """The next chunk, or raises StopIteration."""
        if self.loop is None:
            return next(stream)

        async def step() -> Any:
            try:
                return True, await stream.__anext__()
            except StopAsyncIteration:
                return False, None

        more, chunk = self.loop.run_until_complete(step())
        if not more:
            raise StopIteration
        return chunk

    def take(self, stream: Any, count: int) -> List[Any]:
        return [self.next(stream) for _ in range(count)]

    def collect(self, stream: Any, into: List[Any] | None = None) -> List[Any]:
        chunks = [] if into is None else into
        while True:
            try:
                chunks.append(self.next(stream))
            except StopIteration:
                return chunks

    def close_stream(self, stream: Any) -> None:
        self.run(stream.close() if self.loop is None else stream.aclose())

    def close(self) -> None:
        if self.loop is None:
            self.client.close()
            return
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
