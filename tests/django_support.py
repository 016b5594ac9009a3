"""What the Django tests share: Django set up once per process, a gateway whose streams never
end by themselves (and that tells when its client went away), and reading relayed events."""

from __future__ import annotations

import asyncio
import json
import queue
from typing import Any, Dict, List, Optional, Tuple

from aiohttp import web
from loopback import LoopbackServer


def configure_django() -> None:
    """Django set up in this process by whichever test needs it first (the test files run in any
    order, test_examples.py among them); each test then overrides the settings it needs."""
    import django
    from django.apps import apps
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            SECRET_KEY="django-tests",
            ALLOWED_HOSTS=["testserver"],
            INSTALLED_APPS=[],
            DATABASES={},
            USE_TZ=True,
        )
    if not apps.ready:
        django.setup()


class SlowGateway:
    """``POST /v1/chat/completions`` answered by a stream that sends a chunk every
    ``interval`` seconds and ends only after ``limit`` seconds; each stream's fate is put on
    ``outcomes`` as ``(question, "closed" | "ran out")``: "closed" as soon as a write finds
    that the client closed its connection."""

    def __init__(self, interval: float = 0.05, limit: float = 30.0) -> None:
        self.interval = interval
        self.limit = limit
        self.outcomes: queue.Queue[Tuple[str, str]] = queue.Queue()
        self.server = LoopbackServer([("POST", "/v1/chat/completions", self._chat)])

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> SlowGateway:
        self.server.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.server.__exit__(*exc_info)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        question = str(body["messages"][-1]["content"])
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limit
        outcome, tick = "ran out", 0
        try:
            await response.write(_chunk(body["model"], {"role": "assistant", "content": ""}))
            while loop.time() < deadline:
                await response.write(_chunk(body["model"], {"content": f"tick{tick} "}))
                tick += 1
                await asyncio.sleep(self.interval)
        except ConnectionResetError:  # aiohttp: "Cannot write to closing transport"
            outcome = "closed"
        self.outcomes.put((question, outcome))
        return response

    def outcome(self, timeout: float) -> Optional[Tuple[str, str]]:
        """The next stream's fate, or None if no stream ended within ``timeout`` seconds."""
        try:
            return self.outcomes.get(timeout=timeout)
        except queue.Empty:
            return None


def _chunk(model: str, delta: Dict[str, Any]) -> bytes:
    chunk = {
        "id": "chatcmpl-slow",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


def sse_data(body: bytes) -> List[str]:
    """The ``data`` of each event of a relayed body (one ``data:`` line per event)."""
    events = body.decode().split("\n\n")
    assert events[-1] == "", "the body must end with a whole event"
    data = []
    for event in events[:-1]:
        assert event.startswith("data: ") and "\n" not in event, event
        data.append(event[len("data: ") :])
    return data


def sse_text(body: bytes) -> str:
    """The text of the first choice, joined from a relayed SSE body that ends with [DONE]."""
    data = sse_data(body)
    assert data[-1] == "[DONE]"
    text = ""
    for item in data[:-1]:
        choices = json.loads(item)["choices"]
        text += (choices[0]["delta"].get("content") or "") if choices else ""
    return text
