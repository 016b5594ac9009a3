"""``gatewayclient demo``: a tour of every feature of both clients against an in-process
FakeGateway on 127.0.0.1, printed for a human reader. Public API only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any, Dict, Iterator, List, Optional, Protocol, Tuple

from gatewayclient import (
    AsyncGatewayClient,
    ChatCompletion,
    ChatCompletionChunk,
    CompletionUsage,
    EmbeddingResponse,
    ModelList,
    ProviderModels,
    SyncGatewayClient,
    UsageTracker,
)
from gatewayclient.errors import (
    GatewayAuthError,
    GatewayClientError,
    GatewayModelNotFoundError,
    GatewayValidationError,
)
from gatewayclient.testing import FakeGateway

__all__ = ["run_demo"]

CHAT_MODEL = "openai/gpt-4o-mini"
STREAM_MODEL = "anthropic/claude-sonnet-4-20250514"
EMBEDDING_MODEL = "openai/text-embedding-3-small"
UNKNOWN_MODEL = "openai/gpt-99-turbo"
PROVIDER = "anthropic"
CHAT_PATH = "/v1/chat/completions"
RETRY_AFTER = 0.1
TIMEOUT = 10.0


def _ask(text: str) -> List[Dict[str, Any]]:
    return [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": text},
    ]


def _reply(completion: ChatCompletion) -> Tuple[Optional[str], Optional[str]]:
    """The first choice's text and finish reason."""
    choice = completion.choices[0] if completion.choices else None
    if choice is None:
        return None, None
    return (choice.message.content if choice.message else None), choice.finish_reason


class Output(Protocol):
    """Where the tour is written: ``sys.stdout``, a ``StringIO``, or the command line's writer."""

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


class _Report:
    """Writes the tour: section headers, indented lines, stream pieces as they arrive."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.chunks = 0

    def header(self, title: str) -> None:
        self.out.write(f"\n== {title} ==\n")
        self.out.flush()

    def line(self, text: str = "") -> None:
        self.out.write(f"  {text}\n" if text else "\n")
        self.out.flush()

    def stream_end(self, completion: ChatCompletion, usage: Optional[CompletionUsage]) -> None:
        self.piece("\n")
        finish = _reply(completion)[1]
        self.line(f"{self.chunks} chunks; stream.completion() finish_reason: {finish}")
        self.usage_line(usage)
        self.chunks = 0

    def piece(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def chat(self, completion: ChatCompletion) -> None:
        text, finish = _reply(completion)
        self.line(f"model: {completion.model}")
        self.line(f"reply: {text}")
        self.line(f"finish_reason: {finish}")
        self.usage_line(completion.usage)

    def usage_line(self, usage: Optional[CompletionUsage]) -> None:
        if usage is None:
            self.line("usage: (none sent)")
            return
        if usage.completion_tokens is None:
            self.line(f"usage: {usage.prompt_tokens} prompt = {usage.total_tokens} tokens")
            return
        self.line(
            f"usage: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion"
            f" = {usage.total_tokens} tokens"
        )

    def chunk(self, chunk: ChatCompletionChunk) -> None:
        self.chunks += 1
        for choice in chunk.choices or []:
            if choice.delta is not None and choice.delta.content:
                self.piece(choice.delta.content)

    def embeddings(self, response: EmbeddingResponse, texts: List[str]) -> None:
        self.line(f"model: {response.model}, {len(response.data or [])} vectors")
        for item in response.data or []:
            vector = item.embedding if isinstance(item.embedding, list) else []
            first = ", ".join(f"{value:+.4f}" for value in vector[:4])
            index = item.index or 0
            self.line(f"[{index}] {texts[index]!r}: {len(vector)} dimensions [{first}, ...]")
        self.usage_line(response.usage)

    def discovery(self, models: ModelList, providers: List[str], mine: ProviderModels) -> None:
        ids = [model.id or "?" for model in models.data or []]
        self.line(f"list_models(): {len(ids)} models")
        for start in range(0, len(ids), 4):
            self.line("  " + ", ".join(ids[start : start + 4]))
        self.line(f"list_known_providers(): {', '.join(providers)}")
        names = ", ".join(model.id or "?" for model in mine.models or [])
        self.line(f"list_provider_models({mine.provider!r}): {mine.total} models: {names}")

    def retried(self, logged: List[str], requests: int, completion: ChatCompletion) -> None:
        for message in logged:
            self.line(f"client log (WARNING): {message}")
        reply = _reply(completion)[0]
        self.line(f"the gateway got {requests} requests; the caller got one answer: {reply}")

    def caught(self, what: str, error: GatewayClientError, extra: str = "") -> None:
        self.line(f"{what:<22} -> caught {type(error).__name__}: {error}{extra}")

    def missed(self, what: str, expected: type) -> None:
        self.line(f"{what:<22} -> no {expected.__name__} was raised (unexpected)")

    def usage_table(self, title: str, usage: UsageTracker) -> None:
        self.line(title)
        self.line(f"{'model':<36} {'requests':>8} {'prompt':>8} {'completion':>10} {'total':>8}")
        rows = [*sorted(usage.by_model.items()), ("total", usage.total)]
        for name, row in rows:
            self.line(
                f"{name:<36} {row.requests:>8} {row.prompt_tokens:>8} "
                f"{row.completion_tokens:>10} {row.total_tokens:>8}"
            )


@contextlib.contextmanager
def _retry_log() -> Iterator[List[str]]:
    """Collect the client's WARNING lines (one per retry) instead of printing them."""
    messages: List[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logger = logging.getLogger("gatewayclient")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


# -- the sync client ----------------------------------------------------------------------------


def _sync_basics(client: SyncGatewayClient, report: _Report, label: str) -> None:
    report.header(f"{label}: chat completion")
    report.chat(client.chat_completion(CHAT_MODEL, _ask("What does an AI gateway do?")))
    report.header(f"{label}: streaming (printed as it arrives)")
    with client.stream_chat_completion(STREAM_MODEL, _ask("Stream me a short answer")) as stream:
        report.piece("  ")
        for chunk in stream:
            report.chunk(chunk)
        report.stream_end(stream.completion(), stream.usage)
    report.header(f"{label}: embeddings")
    texts = ["The quick brown fox", "jumps over the lazy dog"]
    report.embeddings(client.embeddings(EMBEDDING_MODEL, texts), texts)
    report.header(f"{label}: model discovery")
    models, providers = client.list_models(), client.list_known_providers()
    report.discovery(models, providers, client.list_provider_models(PROVIDER))


def _sync_retry(
    client: SyncGatewayClient, gateway: FakeGateway, report: _Report, label: str
) -> None:
    report.header(f"{label}: a 429 retried transparently")
    gateway.fail(429, times=1, retry_after=RETRY_AFTER, path=CHAT_PATH)
    report.line(f"scripted: the next chat request answers 429, Retry-After: {RETRY_AFTER} s")
    before = len(gateway.requests)
    with _retry_log() as logged:
        completion = client.chat_completion(CHAT_MODEL, _ask("Did the retry work?"))
    report.retried(logged, len(gateway.requests) - before, completion)


def _sync_errors(
    client: SyncGatewayClient, gateway: FakeGateway, report: _Report, label: str
) -> None:
    report.header(f"{label}: typed errors")
    try:
        client.chat_completion(UNKNOWN_MODEL, _ask("Hello?"))
        report.missed("unknown model", GatewayModelNotFoundError)
    except GatewayModelNotFoundError as error:
        report.caught("unknown model", error)
    with SyncGatewayClient(gateway.url, "not-the-token", TIMEOUT, max_retries=0) as intruder:
        try:
            intruder.list_models()
            report.missed("wrong token", GatewayAuthError)
        except GatewayAuthError as error:
            report.caught("wrong token", error)
    before = len(gateway.requests)
    try:
        client.chat_completion(CHAT_MODEL, _ask("Too hot"), temperature=3.5)
        report.missed("temperature=3.5", GatewayValidationError)
    except GatewayValidationError as error:
        sent = len(gateway.requests) - before
        report.caught("temperature=3.5", error, f" ({sent} requests sent)")


# -- the async client: the same tour, awaited -----------------------------------------------------


async def _async_basics(client: AsyncGatewayClient, report: _Report, label: str) -> None:
    report.header(f"{label}: chat completion")
    report.chat(await client.chat_completion(CHAT_MODEL, _ask("What does an AI gateway do?")))
    report.header(f"{label}: streaming (printed as it arrives)")
    async with client.stream_chat_completion(
        STREAM_MODEL, _ask("Stream me a short answer")
    ) as stream:
        report.piece("  ")
        async for chunk in stream:
            report.chunk(chunk)
        report.stream_end(stream.completion(), stream.usage)
    report.header(f"{label}: embeddings")
    texts = ["The quick brown fox", "jumps over the lazy dog"]
    report.embeddings(await client.embeddings(EMBEDDING_MODEL, texts), texts)
    report.header(f"{label}: model discovery")
    models, providers = await client.list_models(), await client.list_known_providers()
    report.discovery(models, providers, await client.list_provider_models(PROVIDER))


async def _async_retry(
    client: AsyncGatewayClient, gateway: FakeGateway, report: _Report, label: str
) -> None:
    report.header(f"{label}: a 429 retried transparently")
    gateway.fail(429, times=1, retry_after=RETRY_AFTER, path=CHAT_PATH)
    report.line(f"scripted: the next chat request answers 429, Retry-After: {RETRY_AFTER} s")
    before = len(gateway.requests)
    with _retry_log() as logged:
        completion = await client.chat_completion(CHAT_MODEL, _ask("Did the retry work?"))
    report.retried(logged, len(gateway.requests) - before, completion)


async def _async_errors(
    client: AsyncGatewayClient, gateway: FakeGateway, report: _Report, label: str
) -> None:
    report.header(f"{label}: typed errors")
    try:
        await client.chat_completion(UNKNOWN_MODEL, _ask("Hello?"))
        report.missed("unknown model", GatewayModelNotFoundError)
    except GatewayModelNotFoundError as error:
        report.caught("unknown model", error)
    async with AsyncGatewayClient(gateway.url, "not-the-token", TIMEOUT, max_retries=0) as intruder:
        try:
            await intruder.list_models()
            report.missed("wrong token", GatewayAuthError)
        except GatewayAuthError as error:
            report.caught("wrong token", error)
    before = len(gateway.requests)
    try:
        await client.chat_completion(CHAT_MODEL, _ask("Too hot"), temperature=3.5)
        report.missed("temperature=3.5", GatewayValidationError)
    except GatewayValidationError as error:
        sent = len(gateway.requests) - before
        report.caught("temperature=3.5", error, f" ({sent} requests sent)")


# -- the tour -----------------------------------------------------------------------------------


def _sync_tour(gateway: FakeGateway, report: _Report) -> UsageTracker:
    with SyncGatewayClient(gateway.url, gateway.token, TIMEOUT) as client:
        label = "SyncGatewayClient"
        _sync_basics(client, report, label)
        _sync_retry(client, gateway, report, label)
        _sync_errors(client, gateway, report, label)
        return client.usage


async def _async_tour(gateway: FakeGateway, report: _Report) -> UsageTracker:
    async with AsyncGatewayClient(gateway.url, gateway.token, TIMEOUT) as client:
        label = "AsyncGatewayClient"
        await _async_basics(client, report, label)
        await _async_retry(client, gateway, report, label)
        await _async_errors(client, gateway, report, label)
        return client.usage


def run_demo(out: Optional[Output] = None) -> int:
    """Start a FakeGateway on 127.0.0.1, tour both clients against it, print the usage tables."""
    report = _Report(out if out is not None else sys.stdout)
    with FakeGateway() as gateway:
        report.header("FakeGateway")
        report.line(f"listening on {gateway.url}: loopback only, deterministic answers")
        sync_usage = _sync_tour(gateway, report)
        async_usage = asyncio.run(_async_tour(gateway, report))
    report.header("Usage (client.usage, per requested model)")
    report.usage_table("SyncGatewayClient", sync_usage)
    report.line()
    report.usage_table("AsyncGatewayClient", async_usage)
    report.header("Done")
    report.line("the gateway is stopped and both clients are closed")
    return 0
