"""Micro-benchmark: SSEDecoder.feed per chunk, against a naive bytes.split(b"\\n") loop.

Run: python benchmarks/bench_sse.py  (best of 7 repeats; numbers are µs per feed call)
"""

from __future__ import annotations

import timeit
from typing import Callable

from gatewayclient.sse import SSEDecoder

CHUNK = (
    b'data: {"id":"chatcmpl-9x2b","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" world"},'
    b'"finish_reason":null}]}\n\n'
)
STREAM = [CHUNK.replace(b"world", b"w%05d" % i) for i in range(1000)]


def naive_feed(chunk: bytes) -> list[bytes]:
    """The json-free baseline: no decoding, no CR/CRLF, no split lines, no event fields."""
    return [line[6:] for line in chunk.split(b"\n") if line.startswith(b"data: ")]


def best_us(run: Callable[[], object], feeds: int, number: int) -> float:
    return min(timeit.repeat(run, number=number, repeat=7)) / (number * feeds) * 1e6


def main() -> None:
    decoder = SSEDecoder()
    assert len(decoder.feed(CHUNK)) == 1

    def decoder_stream() -> None:
        feed = SSEDecoder().feed
        for chunk in STREAM:
            feed(chunk)

    def naive_stream() -> None:
        for chunk in STREAM:
            naive_feed(chunk)

    rows = [
        (f"one {len(CHUNK)}-byte event chunk", best_us(lambda: decoder.feed(CHUNK), 1, 100_000),
         best_us(lambda: naive_feed(CHUNK), 1, 100_000)),
        ("1,000-event stream, event by event", best_us(decoder_stream, len(STREAM), 100),
         best_us(naive_stream, len(STREAM), 100)),
    ]  # fmt: skip
    print(f"{'case':<36} {'SSEDecoder':>11} {'naive split':>12} {'ratio':>6}")
    for name, ours, naive in rows:
        print(f"{name:<36} {ours:>8.3f} µs {naive:>9.3f} µs {ours / naive:>5.1f}x")


if __name__ == "__main__":
    main()
