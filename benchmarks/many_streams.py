"""Many streams open at once in one process: N async tasks or N threads, each reading a drip.

Run by ``run.py`` as ``python benchmarks/many_streams.py '<json spec>'``; prints one JSON line.
Against ``drip_server.py`` (one event every ``interval`` per stream, ``chunks`` events a stream):

1. the file limit raised to its hard limit (the case fails, saying so, when that is too low);
2. the client built for N connections (``max_connections=N``; raw aiohttp: a connector with
   ``limit=N``; raw requests: a pool of N), then a warm-up of a few short streams. The raw
   clients have their defaults (no read timeout); ``+read-timeout`` gives them gatewayclient's
   default (60 s for the connect and for each wait for bytes), to show what that part costs;
3. idle: ``gc.collect()``, then the resident set and the open file descriptors are counted;
4. N streams started together, each counting its chunks (and holding the last one it read
   until the next arrives, as a caller's loop variable does). When the last one has its first chunk
   ("all open"), the resident set is read again: (RSS then - idle RSS) / N is the memory per
   open stream. Client CPU per chunk is taken over the steady state, from "all open" until the
   first stream finishes (every one of the N streams open throughout);
5. after every stream ended, each must have given exactly ``chunks`` chunks; the client is
   closed (async: its loop too), and the file descriptors are counted again: none may be left.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import sys
import threading
import time
from functools import partial
from typing import Any, Callable, Dict, List, Optional

import payloads

HEADERS = {"Authorization": "Bearer x"}
WARMUP_CHUNKS = 2
FD_MARGIN = 64  # descriptors a process needs besides its streams (stdio, the loop, imports)


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def raise_file_limit(streams: int) -> Dict[str, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = streams + FD_MARGIN
    if hard != resource.RLIM_INFINITY and hard < wanted:
        raise SystemExit(
            f"the hard file limit ({hard}) is below the {wanted} descriptors {streams} streams "
            "need: raise it (ulimit -Hn, or LimitNOFILE for a service) and run again"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return {"soft_before": soft, "hard": hard}


class Tally:
    """What the N streams report as they go, and the samples taken at the two moments."""

    on_all_open: Optional[Callable[[], None]] = None  # profile_case.py --memory: a snapshot

    def __init__(self, streams: int) -> None:
        self.streams = streams
        self.counts: List[int] = [0] * streams  # each written only by its own stream
        self.times: List[List[float]] = [[0.0, 0.0] for _ in range(streams)]
        self.lock = threading.Lock()
        self.opened = 0
        self.finished = 0
        self.at_open: Dict[str, float] = {}
        self.at_first_end: Dict[str, float] = {}
        self.all_open = threading.Event()
        self.started = time.perf_counter()

    def sample(self) -> Dict[str, float]:
        return {"cpu": time.process_time(), "wall": time.perf_counter(), "sys": os.times()[1],
                "chunks": sum(self.counts), "rss": rss_bytes(), "fds": fds(),
                "open": self.opened - self.finished}  # fmt: skip

    def first(self, index: int) -> None:
        """Stream ``index`` has its first chunk."""
        self.times[index][0] = time.perf_counter()
        with self.lock:
            self.opened += 1
            if self.opened == self.streams:
                self.at_open = self.sample()
                self.all_open.set()
                hook = Tally.on_all_open  # from the class: a plain function
                if hook is not None:
                    hook()

    def end(self, index: int) -> None:
        self.times[index][1] = time.perf_counter()
        with self.lock:
            self.finished += 1
            if self.finished == 1:
                self.at_first_end = self.sample()


# -- async: N tasks in one event loop -----------------------------------------------------------


def aiohttp_stream(url: str, streams: int, read_timeout: bool = False) -> Any:
    import aiohttp

    timeout = aiohttp.client.DEFAULT_TIMEOUT
    if read_timeout:  # as gatewayclient's default timeout sets it: each wait for bytes bounded
        timeout = aiohttp.ClientTimeout(total=None, connect=60, sock_connect=60, sock_read=60)
    connector = aiohttp.TCPConnector(limit=streams)
    session = aiohttp.ClientSession(connector=connector, timeout=timeout)
    target = url + "/v1/chat/completions"

    async def read(chunks: int, tally: Tally, index: int) -> None:
        body = {"model": payloads.MODEL, "messages": payloads.MESSAGES, "stream": True,
                "max_tokens": chunks}  # fmt: skip
        count = 0
        async with session.post(target, json=body, headers=HEADERS) as response:
            assert response.status == 200, response.status
            async for line in response.content:
                if line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
                    chunk = json.loads(line[6:])  # kept until the next, as a for loop keeps it
                    chunk["choices"][0]["delta"].get("content")
                    count += 1
                    tally.counts[index] = count
                    if count == 1:
                        tally.first(index)
        tally.end(index)

    return read, session.close


def gc_async_stream(url: str, streams: int) -> Any:
    import gatewayclient

    client = gatewayclient.AsyncGatewayClient(url, "x", max_connections=streams)

    async def read(chunks: int, tally: Tally, index: int) -> None:
        count = 0
        stream = client.stream_chat_completion(payloads.MODEL, payloads.MESSAGES, max_tokens=chunks)
        async for chunk in stream:
            chunk.choices[0].delta.content  # noqa: B018 - reading it is the point
            count += 1
            tally.counts[index] = count
            if count == 1:
                tally.first(index)
        tally.end(index)

    return read, client.aclose


async def run_async(spec: Dict[str, Any]) -> Dict[str, Any]:
    streams, chunks = spec["n"], spec["chunks"]
    build = {
        "aiohttp": aiohttp_stream,
        "gc-async": gc_async_stream,
        "aiohttp+read-timeout": partial(aiohttp_stream, read_timeout=True),
    }[spec["client"]]
    read, close = build(spec["url"], streams)
    warm = Tally(spec["warmup"])
    await asyncio.gather(*(read(WARMUP_CHUNKS, warm, i) for i in range(warm.streams)))
    gc.collect()
    idle = {"rss": rss_bytes(), "fds": fds(), "cpu": time.process_time()}
    tally = Tally(streams)
    tasks = [asyncio.ensure_future(read(chunks, tally, i)) for i in range(streams)]
    await asyncio.wait_for(asyncio.gather(*tasks), spec["deadline_s"])
    end = tally.sample()
    await close()
    return _result(spec, tally, idle, end)


# -- sync: N threads ----------------------------------------------------------------------------


def requests_stream(url: str, streams: int, read_timeout: bool = False) -> Any:
    import requests
    import requests.adapters

    session = requests.Session()
    session.trust_env = False  # as gatewayclient has it (see workloads.py)
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=streams)
    session.mount("http://", adapter)
    target = url + "/v1/chat/completions"
    timeout = 60 if read_timeout else None  # gatewayclient's default: connect and each read

    def read(chunks: int, tally: Tally, index: int) -> None:
        body = {"model": payloads.MODEL, "messages": payloads.MESSAGES, "stream": True,
                "max_tokens": chunks}  # fmt: skip
        count = 0
        post = session.post(target, json=body, headers=HEADERS, stream=True, timeout=timeout)
        with post as response:
            assert response.status_code == 200, response.status_code
            for line in response.iter_lines():
                if line.startswith(b"data: ") and line != b"data: [DONE]":
                    chunk = json.loads(line[6:])  # kept until the next, as a for loop keeps it
                    chunk["choices"][0]["delta"].get("content")
                    count += 1
                    tally.counts[index] = count
                    if count == 1:
                        tally.first(index)
        tally.end(index)

    return read, session.close


def gc_sync_stream(url: str, streams: int) -> Any:
    import gatewayclient

    client = gatewayclient.SyncGatewayClient(url, "x", max_connections=streams)

    def read(chunks: int, tally: Tally, index: int) -> None:
        stream = client.stream_chat_completion(payloads.MODEL, payloads.MESSAGES, max_tokens=chunks)
        for count, chunk in enumerate(stream, 1):
            chunk.choices[0].delta.content  # noqa: B018
            tally.counts[index] = count
            if count == 1:
                tally.first(index)
        tally.end(index)

    return read, client.close


def _threads(read: Callable[[int, Tally, int], None], chunks: int, tally: Tally) -> List[Any]:
    failures: List[BaseException] = []

    def one(index: int) -> None:
        try:
            read(chunks, tally, index)
        except BaseException as exc:  # reported by the caller: a stream must not fail silently
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(tally.streams)]
    for thread in threads:
        thread.start()
    return [threads, failures]


def run_sync(spec: Dict[str, Any]) -> Dict[str, Any]:
    streams, chunks = spec["n"], spec["chunks"]
    build = {
        "requests": requests_stream,
        "gc-sync": gc_sync_stream,
        "requests+read-timeout": partial(requests_stream, read_timeout=True),
    }[spec["client"]]
    read, close = build(spec["url"], streams)
    warm = Tally(spec["warmup"])
    for thread in _threads(read, WARMUP_CHUNKS, warm)[0]:
        thread.join()
    gc.collect()
    idle = {"rss": rss_bytes(), "fds": fds(), "cpu": time.process_time()}
    tally = Tally(streams)
    threads, failures = _threads(read, chunks, tally)
    deadline = time.monotonic() + spec["deadline_s"]
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if failures or any(thread.is_alive() for thread in threads):
        raise RuntimeError(f"{len(failures)} streams failed, first: {failures[:1]!r}")
    end = tally.sample()
    close()
    return _result(spec, tally, idle, end)


# -- the result ---------------------------------------------------------------------------------


def _result(spec: Dict[str, Any], tally: Tally, idle: Dict[str, float], end: Dict[str, float]):
    streams, chunks = spec["n"], spec["chunks"]
    opened, first_end = tally.at_open, tally.at_first_end
    if not opened or first_end["wall"] < opened["wall"]:
        raise RuntimeError("a stream finished before all were open: make the streams longer")
    steady = {key: first_end[key] - opened[key] for key in ("cpu", "wall", "chunks", "sys")}
    ideal = (chunks - 1) * spec["interval_ms"] / 1e3
    stretch = sorted((last - first) / ideal for first, last in tally.times) if ideal else [1.0]
    return {
        "cpu_s": steady["cpu"],
        "wall_s": steady["wall"],
        "units": steady["chunks"],
        "calls": streams,
        "connections": 0,
        "aiohttp_loaded": "aiohttp" in sys.modules,
        "system_share": steady["sys"] / steady["cpu"],  # of the CPU: in the kernel
        "rss_per_stream_kb": (opened["rss"] - idle["rss"]) / streams / 1024,
        "open_at_sample": opened["open"],
        "complete": sum(count == chunks for count in tally.counts),
        "open_cpu_per_stream_us": (opened["cpu"] - idle["cpu"]) / streams * 1e6,
        "open_s": opened["wall"] - tally.started,
        "total_cpu_per_chunk_us": (end["cpu"] - idle["cpu"]) / max(1, end["chunks"]) * 1e6,
        "fds_idle": idle["fds"],
        "fds_open": opened["fds"],
        "stretch_median": stretch[len(stretch) // 2],
        "stretch_max": stretch[-1],
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    limits = raise_file_limit(spec["n"])
    before = fds()
    if spec["client"].startswith(("aiohttp", "gc-async")):
        result = asyncio.run(run_async(spec))
    else:
        result = run_sync(spec)
    gc.collect()
    result.update(file_limit=limits, fds_before=before, fds_left=fds() - before)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
