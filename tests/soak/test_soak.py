"""Soak: one client under sustained concurrent load; every answer is its own request's, no
error, no memory growth.

The FakeGateway runs in a subprocess (``python -m gatewayclient serve --port 0``), so the traced
memory of this process is the client's alone. ``tracemalloc`` starts once the first tenth of the
work (the warm-up: pools filled, lazy imports and caches done) has run; what is still allocated
at the end, after ``gc.collect()``, minus what was at the start must stay within ``MAX_GROWTH``.
Tracing costs time, so the calls/s printed are those of a traced run.

Run with ``python -m pytest -m soak``; the default run leaves these tests out (``-m "not soak"``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import shlex
import subprocess
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from gatewayclient import AsyncGatewayClient, SyncGatewayClient
from gatewayclient.testing import expected_embedding, expected_reply, expected_usage

pytestmark = [pytest.mark.soak, pytest.mark.timeout(900)]

SYNC_THREADS = 16
SYNC_CALLS_PER_THREAD = 1_000
ASYNC_CONCURRENCY = 500
ASYNC_ROUNDS = 20
WARM_UP_SHARE = 0.1
MAX_GROWTH = 2 * 1024 * 1024  # bytes of traced memory still held after the warm-up

CHAT_MODELS = (
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "anthropic/claude-sonnet-4-20250514",
    "google/gemini-2.0-flash",
    "mistral/mistral-large-latest",
)
EMBEDDING_MODEL = "mistral/mistral-embed"
EMBEDDING_DIMENSIONS = 8
TOKEN = "soak-token"
SERVER_START_TIMEOUT = 30.0


# -- the gateway, in a process of its own ------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, str]]:
    """``(base_url, token)`` of a ``gatewayclient serve`` subprocess, stopped after the module."""
    log = tmp_path_factory.mktemp("soak") / "serve.stderr"
    environ = {k: v for k, v in os.environ.items() if k not in ("PLATFORM_API_URL", "AUTH_TOKEN")}
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gatewayclient", "serve", "--port", "0", "--token", TOKEN],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=environ,
        )  # fmt: skip
    try:
        exports = _read_exports(proc, log)
        yield exports["PLATFORM_API_URL"], exports["AUTH_TOKEN"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def _read_exports(proc: subprocess.Popen, log: Path) -> Dict[str, str]:  # type: ignore[type-arg]
    assert proc.stdout is not None
    lines: List[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout.readline() for _ in "ab"))
    reader.start()
    reader.join(SERVER_START_TIMEOUT)
    exports = {}
    for line in lines:
        name, _, value = line.strip().removeprefix("export ").partition("=")
        if value:
            exports[name] = shlex.split(value)[0]
    if set(exports) != {"PLATFORM_API_URL", "AUTH_TOKEN"}:
        raise RuntimeError(f"gatewayclient serve did not start: {lines!r} {log.read_text()!r}")
    return exports


# -- one call: its request, and the check that the answer is that request's ---------------------


@dataclass
class Tally:
    """What one worker saw; written by that worker only, read once it has finished."""

    calls: int = 0
    chats: int = 0
    streams: int = 0
    embeddings: int = 0
    errors: int = 0
    mismatches: int = 0
    prompt_tokens: int = 0
    total_tokens: int = 0
    examples: List[str] = field(default_factory=list)

    def failed(self, what: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(what)

    def add(self, other: Tally) -> None:
        for name in (f.name for f in fields(self) if f.name != "examples"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.examples.extend(other.examples[: max(0, 5 - len(self.examples))])


def kind_of(number: int) -> str:
    """Of every ten calls: one stream, one embeddings call, eight chat completions."""
    return {3: "stream", 7: "embeddings"}.get(number % 10, "chat")


def request_for(marker: str, number: int) -> Tuple[str, List[Dict[str, Any]]]:
    model = CHAT_MODELS[number % len(CHAT_MODELS)]
    messages = [
        {"role": "system", "content": "You answer soak tests."},
        {"role": "user", "content": "an earlier question"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": f"soak {marker} please echo {marker}"},
    ]
    return model, messages


def check_chat(tally: Tally, marker: str, model: str, messages: Any, resp: Any) -> None:
    content = resp.choices[0].message.content
    usage = resp["usage"]
    if content != expected_reply(model, messages) or marker not in content:
        tally.mismatches += 1
        tally.failed(f"{marker}: chat answered {content!r}")
    elif dict(usage) != expected_usage(model, messages):
        tally.mismatches += 1
        tally.failed(f"{marker}: chat usage {dict(usage)!r}")
    tally.chats += 1
    tally.prompt_tokens += usage["prompt_tokens"]
    tally.total_tokens += usage["total_tokens"]


def check_stream(
    tally: Tally, marker: str, model: str, messages: Any, text: str, stream: Any
) -> None:
    usage = stream.usage
    expected = expected_reply(model, messages)
    if text != expected or marker not in text:
        tally.mismatches += 1
        tally.failed(f"{marker}: stream sent {text!r}")
    elif stream.completion().choices[0].message.content != expected:
        tally.mismatches += 1
        tally.failed(f"{marker}: stream completion() differs from its chunks")
    elif usage is None or usage.to_dict() != expected_usage(model, messages):
        tally.mismatches += 1
        tally.failed(f"{marker}: stream usage {usage!r}")
    tally.streams += 1
    if usage is not None:
        tally.prompt_tokens += usage.prompt_tokens
        tally.total_tokens += usage.total_tokens


def check_embeddings(tally: Tally, marker: str, texts: List[str], resp: Any) -> None:
    vectors = [item.embedding for item in resp.data]
    expected = [expected_embedding(EMBEDDING_MODEL, t, EMBEDDING_DIMENSIONS) for t in texts]
    if vectors != expected:
        tally.mismatches += 1
        tally.failed(f"{marker}: embeddings are not those of {texts!r}")
    tally.embeddings += 1
    tally.prompt_tokens += resp.usage.prompt_tokens
    tally.total_tokens += resp.usage.total_tokens


def embedding_texts(marker: str) -> List[str]:
    return [f"first {marker}", f"second {marker} text"]


def sync_call(client: SyncGatewayClient, tally: Tally, marker: str, number: int) -> None:
    model, messages = request_for(marker, number)
    kind = kind_of(number)
    if kind == "chat":
        check_chat(tally, marker, model, messages, client.chat_completion(model, messages))
    elif kind == "stream":
        with client.stream_chat_completion(model, messages) as stream:
            text = "".join(c["choices"][0]["delta"].get("content", "") or "" for c in stream)
        check_stream(tally, marker, model, messages, text, stream)
    else:
        texts = embedding_texts(marker)
        resp = client.embeddings(EMBEDDING_MODEL, texts, dimensions=EMBEDDING_DIMENSIONS)
        check_embeddings(tally, marker, texts, resp)


async def async_call(client: AsyncGatewayClient, tally: Tally, marker: str, number: int) -> None:
    model, messages = request_for(marker, number)
    kind = kind_of(number)
    if kind == "chat":
        check_chat(tally, marker, model, messages, await client.chat_completion(model, messages))
    elif kind == "stream":
        pieces = []
        async with client.stream_chat_completion(model, messages) as stream:
            async for chunk in stream:
                pieces.append(chunk["choices"][0]["delta"].get("content", "") or "")
        check_stream(tally, marker, model, messages, "".join(pieces), stream)
    else:
        texts = embedding_texts(marker)
        resp = await client.embeddings(EMBEDDING_MODEL, texts, dimensions=EMBEDDING_DIMENSIONS)
        check_embeddings(tally, marker, texts, resp)


# -- memory ----------------------------------------------------------------------------------


class MemoryProbe:
    """Traced memory from ``start()`` (after the warm-up) to ``stop()``, both after a full GC."""

    def __init__(self) -> None:
        self.baseline = 0
        self.growth = 0
        self.peak = 0
        self.top: List[str] = []

    def start(self) -> None:
        gc.collect()
        tracemalloc.start(1)  # one frame per trace: ten would make the run ten times slower
        self.baseline = tracemalloc.get_traced_memory()[0]

    def stop(self) -> None:
        gc.collect()
        current, self.peak = tracemalloc.get_traced_memory()
        self.growth = current - self.baseline
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        self.top = [str(stat) for stat in stats.statistics("lineno")[:8]]

    def report(self) -> str:
        lines = [
            f"  traced memory growth after warm-up: {self.growth / 1024:.0f} KiB "
            f"(bound {MAX_GROWTH / 1024:.0f} KiB), traced peak {self.peak / 1024:.0f} KiB",
            "  largest allocations still held at the end:",
        ]
        return "\n".join(lines + [f"    {line}" for line in self.top])


def verdict(tally: Tally, expected_calls: int, usage: Any) -> None:
    assert tally.errors == 0, f"{tally.errors} calls failed, e.g. {tally.examples}"
    assert tally.mismatches == 0, (
        f"{tally.mismatches} answers not their request's: {tally.examples}"
    )
    assert tally.calls == expected_calls
    assert tally.chats + tally.streams + tally.embeddings == expected_calls
    total = usage.total
    assert total.requests == expected_calls, total
    assert (total.prompt_tokens, total.total_tokens) == (tally.prompt_tokens, tally.total_tokens)


def report(
    capsys: pytest.CaptureFixture[str], title: str, tally: Tally, seconds: float, probe: MemoryProbe
) -> None:
    with capsys.disabled():
        print(
            f"\n{title}: {tally.calls} calls ({tally.chats} chat, {tally.streams} stream, "
            f"{tally.embeddings} embeddings) in {seconds:.1f} s = {tally.calls / seconds:.0f} "
            f"calls/s, {tally.errors} errors, {tally.mismatches} mismatches\n{probe.report()}"
        )


# -- the soaks -------------------------------------------------------------------------------


def test_sync_client_shared_by_16_threads_for_16000_calls(
    gateway: Tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, token = gateway
    warm_up = int(SYNC_CALLS_PER_THREAD * WARM_UP_SHARE)
    tallies = [Tally() for _ in range(SYNC_THREADS)]
    probe = MemoryProbe()
    # The last thread to finish its warm-up starts tracing, then all go on together.
    barrier = threading.Barrier(SYNC_THREADS, action=probe.start)

    def work(client: SyncGatewayClient, number: int) -> None:
        tally = tallies[number]
        for call in range(SYNC_CALLS_PER_THREAD):
            if call == warm_up:
                barrier.wait()
            marker = f"t{number}-c{call}"
            try:
                sync_call(client, tally, marker, call)
            except Exception as exc:
                tally.errors += 1
                tally.failed(f"{marker}: {exc!r}")
            tally.calls += 1

    with SyncGatewayClient(url, token, max_retries=0) as client:
        threads = [
            threading.Thread(target=work, args=(client, n), name=f"soak-{n}")
            for n in range(SYNC_THREADS)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        del threads
        probe.stop()
        tally = Tally()
        for each in tallies:
            tally.add(each)
        report(capsys, "soak sync (16 threads x 1000 calls, one client)", tally, seconds, probe)
        verdict(tally, SYNC_THREADS * SYNC_CALLS_PER_THREAD, client.usage)
    assert probe.growth <= MAX_GROWTH, probe.report()


def test_async_client_500_concurrent_calls_for_20_rounds(
    gateway: Tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, token = gateway
    warm_up = int(ASYNC_ROUNDS * WARM_UP_SHARE)
    tally = Tally()
    probe = MemoryProbe()

    async def one(client: AsyncGatewayClient, marker: str, number: int) -> None:
        try:
            await async_call(client, tally, marker, number)
        except Exception as exc:
            tally.errors += 1
            tally.failed(f"{marker}: {exc!r}")
        tally.calls += 1

    async def soak() -> Any:
        async with AsyncGatewayClient(url, token, max_retries=0) as client:
            for round_no in range(ASYNC_ROUNDS):
                if round_no == warm_up:
                    probe.start()
                await asyncio.gather(
                    *(one(client, f"r{round_no}-c{n}", n) for n in range(ASYNC_CONCURRENCY))
                )
            for _ in range(3):  # let the loop drop the last round's finished tasks
                await asyncio.sleep(0)
            probe.stop()
            return client.usage

    started = time.perf_counter()
    usage = asyncio.run(soak())
    seconds = time.perf_counter() - started
    report(
        capsys, "soak async (500 concurrent calls x 20 rounds, one client)", tally, seconds, probe
    )
    verdict(tally, ASYNC_CONCURRENCY * ASYNC_ROUNDS, usage)
    assert probe.growth <= MAX_GROWTH, probe.report()
