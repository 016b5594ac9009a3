"""One measurement, in the fresh process it runs in: warm up, then time N units of one case.

Run by ``run.py`` as ``python benchmarks/workloads.py '<json spec>'``; prints one JSON line:
client CPU (``time.process_time``, this process only: the servers run elsewhere) and wall time
for the timed units, and the TCP connections opened while timing.

A unit is one call (chat, embeddings) or one chunk (streams: a call yields 1,000). Each client
reads what a caller would: the message text, the vector, every chunk's ``delta.content``.
A client's ``+variant`` (``features.py``) switches a feature on; a rate-budget variant is timed
in blocks of calls alternating with its plain twin in this same process (``paired``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import statistics
import sys
import time
from functools import partial
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

import features
import payloads

CHAT_BODY = {"model": payloads.MODEL, "messages": payloads.MESSAGES}
STREAM_BODY = {**CHAT_BODY, "stream": True}
EMBED_BODY = {"model": payloads.EMBEDDING_MODEL, "input": "text"}
HEADERS = {"Authorization": "Bearer x"}
SYNC_CLIENTS = ("requests", "gc-sync", "openai-sync")
REDIS_URL = ""  # profile_case.py's redis-server (run.py passes its own in the spec)
PAIRED_BLOCK = 50  # calls per block when a variant alternates with its plain twin
TRIP_CALLS = 100  # calls whose Redis round trips are counted (after the timed ones)
ASYNC_CLIENTS = ("aiohttp", "gc-async", "openai-async")

# -- counting connections: a client that reconnects per call pays for it in CPU --------------

_connects = 0
_real_connect = socket.socket.connect


def _counting_connect(self: socket.socket, address: Any) -> None:
    global _connects
    _connects += 1
    _real_connect(self, address)


socket.socket.connect = _counting_connect  # type: ignore[method-assign]


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(f"wrong answer: {what}")


# -- sync clients -------------------------------------------------------------------------------


def requests_calls(case: str, url: str, trust_env: bool = False) -> Callable[[], int]:
    import requests

    session = requests.Session()
    # Off, as gatewayclient has it: with it on, requests re-reads the environment (proxies,
    # .netrc, CA bundle) on every call. "requests-env" measures the defaults.
    session.trust_env = trust_env
    chat_url, embed_url = url + "/v1/chat/completions", url + "/v1/embeddings"

    def chat() -> int:
        response = session.post(chat_url, json=CHAT_BODY, headers=HEADERS)
        _check(response.status_code == 200, "status")
        return len(response.json()["choices"][0]["message"]["content"]) and 1

    def stream() -> int:
        count = 0
        with session.post(chat_url, json=STREAM_BODY, headers=HEADERS, stream=True) as response:
            _check(response.status_code == 200, "status")
            for line in response.iter_lines():
                if line.startswith(b"data: ") and line != b"data: [DONE]":
                    json.loads(line[6:])["choices"][0]["delta"].get("content")
                    count += 1
        return count

    def embed() -> int:
        response = session.post(embed_url, json=EMBED_BODY, headers=HEADERS)
        _check(response.status_code == 200, "status")
        return len(response.json()["data"][0]["embedding"]) // payloads.EMBEDDING_DIMENSIONS

    return {"chat": chat, "stream": stream, "embed": embed}[case]


def gc_sync_calls(case: str, url: str, **options: Any) -> Callable[[], int]:
    import gatewayclient

    client = gatewayclient.SyncGatewayClient(base_url=url, auth_token="x", **options)

    def chat() -> int:
        response = client.chat_completion(payloads.MODEL, payloads.MESSAGES)
        return len(response.choices[0].message.content) and 1

    def stream() -> int:
        count = 0
        for chunk in client.stream_chat_completion(payloads.MODEL, payloads.MESSAGES):
            chunk.choices[0].delta.content  # noqa: B018 - reading it is the point
            count += 1
        return count

    def embed() -> int:
        response = client.embeddings(payloads.EMBEDDING_MODEL, "text")
        return len(response.data[0].embedding) // payloads.EMBEDDING_DIMENSIONS

    return {"chat": chat, "stream": stream, "embed": embed}[case]


def openai_sync_calls(case: str, url: str) -> Callable[[], int]:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)

    def chat() -> int:
        response = client.chat.completions.create(
            model=payloads.MODEL,
            messages=payloads.MESSAGES,  # type: ignore[arg-type]
        )
        return len(response.choices[0].message.content or "") and 1

    def stream() -> int:
        count = 0
        for chunk in client.chat.completions.create(
            model=payloads.MODEL,
            messages=payloads.MESSAGES,  # type: ignore[arg-type]
            stream=True,
        ):
            chunk.choices[0].delta.content  # noqa: B018
            count += 1
        return count

    def embed() -> int:
        response = client.embeddings.create(
            model=payloads.EMBEDDING_MODEL, input="text", encoding_format="float"
        )
        return len(response.data[0].embedding) // payloads.EMBEDDING_DIMENSIONS

    return {"chat": chat, "stream": stream, "embed": embed}[case]


# -- async clients (built inside the running loop) ----------------------------------------------

AsyncCall = Callable[[], Awaitable[int]]
CLOSERS: List[Callable[[], Awaitable[Any]]] = []  # run by ``close_async`` in the same loop


async def close_async() -> None:
    while CLOSERS:
        await CLOSERS.pop()()


def aiohttp_calls(case: str, url: str) -> AsyncCall:
    import aiohttp

    session = aiohttp.ClientSession()  # as a caller writes it: defaults
    CLOSERS.append(session.close)
    chat_url, embed_url = url + "/v1/chat/completions", url + "/v1/embeddings"

    async def chat() -> int:
        async with session.post(chat_url, json=CHAT_BODY, headers=HEADERS) as response:
            _check(response.status == 200, "status")
            data = await response.json()
        return len(data["choices"][0]["message"]["content"]) and 1

    async def stream() -> int:
        count = 0
        async with session.post(chat_url, json=STREAM_BODY, headers=HEADERS) as response:
            _check(response.status == 200, "status")
            async for line in response.content:
                if line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
                    json.loads(line[6:])["choices"][0]["delta"].get("content")
                    count += 1
        return count

    async def embed() -> int:
        async with session.post(embed_url, json=EMBED_BODY, headers=HEADERS) as response:
            _check(response.status == 200, "status")
            data = await response.json()
        return len(data["data"][0]["embedding"]) // payloads.EMBEDDING_DIMENSIONS

    return {"chat": chat, "stream": stream, "embed": embed}[case]


def gc_async_calls(case: str, url: str, **options: Any) -> AsyncCall:
    import gatewayclient

    client = gatewayclient.AsyncGatewayClient(base_url=url, auth_token="x", **options)
    CLOSERS.append(client.aclose)

    async def chat() -> int:
        response = await client.chat_completion(payloads.MODEL, payloads.MESSAGES)
        return len(response.choices[0].message.content) and 1

    async def stream() -> int:
        count = 0
        async for chunk in client.stream_chat_completion(payloads.MODEL, payloads.MESSAGES):
            chunk.choices[0].delta.content  # noqa: B018
            count += 1
        return count

    async def embed() -> int:
        response = await client.embeddings(payloads.EMBEDDING_MODEL, "text")
        return len(response.data[0].embedding) // payloads.EMBEDDING_DIMENSIONS

    return {"chat": chat, "stream": stream, "embed": embed}[case]


def openai_async_calls(case: str, url: str) -> AsyncCall:
    import openai

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    CLOSERS.append(client.close)

    async def chat() -> int:
        response = await client.chat.completions.create(
            model=payloads.MODEL,
            messages=payloads.MESSAGES,  # type: ignore[arg-type]
        )
        return len(response.choices[0].message.content or "") and 1

    async def stream() -> int:
        count = 0
        async for chunk in await client.chat.completions.create(
            model=payloads.MODEL,
            messages=payloads.MESSAGES,  # type: ignore[arg-type]
            stream=True,
        ):
            chunk.choices[0].delta.content  # noqa: B018
            count += 1
        return count

    async def embed() -> int:
        response = await client.embeddings.create(
            model=payloads.EMBEDDING_MODEL, input="text", encoding_format="float"
        )
        return len(response.data[0].embedding) // payloads.EMBEDDING_DIMENSIONS

    return {"chat": chat, "stream": stream, "embed": embed}[case]


SYNC_BUILDERS = {
    "requests": requests_calls,
    "requests-env": partial(requests_calls, trust_env=True),
    "gc-sync": gc_sync_calls,
    "openai-sync": openai_sync_calls,
}
ASYNC_BUILDERS = {
    "aiohttp": aiohttp_calls,
    "gc-async": gc_async_calls,
    "openai-async": openai_async_calls,
}

# -- measuring ----------------------------------------------------------------------------------


def _units_per_call(kind: str) -> int:
    return payloads.STREAM_CHUNKS if kind == "stream" else 1


def _expect(got: int, kind: str) -> None:
    _check(got == _units_per_call(kind), f"{kind} gave {got} units")


def _build(builders: Dict[str, Any], spec: Dict[str, Any]) -> Any:
    """The client's calls: its base builder, given its variant's options (see features.py)."""
    base, _, variant = spec["client"].split("@", 1)[0].partition("+")
    options = features.client_options(variant, spec)
    return builders[base](spec["kind"], spec["url"], **options)


def _paired(spec: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """A rate-budget variant is timed against its plain twin in this same process, blocks of
    calls alternating: the budget's few microseconds stand out from the differences between
    processes (tens of microseconds per call on a shared machine)."""
    if features.variant_of(spec) in ("local", "redis"):
        return {**spec, "client": spec["client"].split("+", 1)[0]}
    return None


def _timed_sync(
    calls: List[Callable[[], int]], kind: str, n: int
) -> Tuple[List[List[float]], List[List[float]]]:
    """CPU and wall seconds of each of ``calls`` for ``n`` calls, in alternating blocks; and
    each block's CPU seconds per call."""
    block = PAIRED_BLOCK if len(calls) > 1 else n
    totals = [[0.0, 0.0] for _ in calls]
    blocks: List[List[float]] = [[] for _ in calls]
    for start in range(0, n, block):
        order = list(enumerate(calls)) if start // block % 2 == 0 else list(enumerate(calls))[::-1]
        for index, call in order:  # ABBA: neither goes first more often
            count = min(block, n - start)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(count):
                _expect(call(), kind)
            cpu = time.process_time() - cpu
            totals[index][0] += cpu
            totals[index][1] += time.perf_counter() - wall
            blocks[index].append(cpu / count)
    return totals, blocks


def _paired_result(totals: List[List[float]], blocks: List[List[float]]) -> Dict[str, Any]:
    """The twin's totals, and the median over block pairs of (variant - twin) CPU per call:
    robust to the bursts (a collection, a page fault, a neighbour) that land in one block and
    move the totals by more than the budget's own few microseconds."""
    deltas = [variant - twin for variant, twin in zip(blocks[0], blocks[1])]
    return {
        "cpu_s": totals[1][0],
        "wall_s": totals[1][1],
        "block_delta_us": statistics.median(deltas) * 1e6,
    }


def measure_sync(spec: Dict[str, Any]) -> Dict[str, Any]:
    kind, n, twin = spec["kind"], spec["n"], _paired(spec)
    calls = [_build(SYNC_BUILDERS, spec)]
    if twin is not None:
        calls.append(_build(SYNC_BUILDERS, twin))
    for call in calls:
        for _ in range(spec["warmup"]):
            _expect(call(), kind)
    gc.collect()
    connects = _connects
    totals, blocks = _timed_sync(calls, kind, n)
    (cpu, wall), connects = totals[0], _connects - connects
    result = _result(spec, cpu, wall, n * _units_per_call(kind), connects)
    if twin is not None:
        result["paired"] = _paired_result(totals, blocks)
    if features.uses_redis(spec):  # counted after the timing: counting costs CPU
        with features.counting_round_trips() as sent:
            for _ in range(TRIP_CALLS):
                calls[0]()
        result["trips"] = sent[0] / TRIP_CALLS
    result["spans"] = features.exported_spans()
    return result


async def _measure_async(spec: Dict[str, Any]) -> Dict[str, Any]:
    kind, n, concurrency, twin = spec["kind"], spec["n"], spec.get("concurrency", 1), _paired(spec)
    calls = [_build(ASYNC_BUILDERS, spec)]
    if twin is not None:
        calls.append(_build(ASYNC_BUILDERS, twin))

    async def lane(call: AsyncCall, count: int) -> None:
        for _ in range(count):
            _expect(await call(), kind)

    async def run(call: AsyncCall, count: int) -> None:
        share, extra = divmod(count, concurrency)
        await asyncio.gather(*(lane(call, share + (i < extra)) for i in range(concurrency)))

    for call in calls:
        await run(call, spec["warmup"])
    gc.collect()
    connects = _connects
    block = PAIRED_BLOCK if twin is not None else n
    totals = [[0.0, 0.0] for _ in calls]
    blocks: List[List[float]] = [[] for _ in calls]
    for start in range(0, n, block):
        order = list(enumerate(calls)) if start // block % 2 == 0 else list(enumerate(calls))[::-1]
        for index, call in order:
            count = min(block, n - start)
            wall, cpu = time.perf_counter(), time.process_time()
            await run(call, count)
            cpu = time.process_time() - cpu
            totals[index][0] += cpu
            totals[index][1] += time.perf_counter() - wall
            blocks[index].append(cpu / count)
    (cpu, wall), connects = totals[0], _connects - connects
    result = _result(spec, cpu, wall, n * _units_per_call(kind), connects)
    if twin is not None:
        result["paired"] = _paired_result(totals, blocks)
    if features.uses_redis(spec):
        with features.counting_round_trips() as sent:
            await run(calls[0], TRIP_CALLS)
        result["trips"] = sent[0] / TRIP_CALLS
    result["spans"] = features.exported_spans()
    await close_async()
    return result


def measure_async(spec: Dict[str, Any]) -> Dict[str, Any]:
    return asyncio.run(_measure_async(spec))


def _result(spec: Dict[str, Any], cpu: float, wall: float, units: int, connects: int) -> dict:
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "units": units,
        "calls": spec["n"],
        "connections": connects,
        "aiohttp_loaded": "aiohttp" in sys.modules,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    features.prepare(spec["client"].split("@", 1)[0].partition("+")[2])
    if spec["client"].split("@", 1)[0].split("+", 1)[0] in SYNC_BUILDERS:
        result = measure_sync(spec)
    else:
        result = measure_async(spec)
    result["package_dirs"] = features.package_dirs()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
