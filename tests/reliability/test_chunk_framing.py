"""A stream's HTTP/1.1 chunked framing, written byte for byte: what a relay may send (chunk
extensions, trailer fields, hex in any case with leading zeros, an event split over chunks or
several in one) reads as the same stream, and the connection goes back to the pool; a broken
frame (a size that is not hex, a negative size, a chunk shorter than its size, cut by a clean
close or a reset) is a dropped connection before the first chunk reached the caller (retried)
and a cut stream after (never retried), on both clients alike. The sync client reads the
framing itself (``_sync_transport._chunks_of``); the async client through aiohttp's parser."""

from __future__ import annotations

import socket
import time
import zlib
from typing import Any, Callable, List, Optional, Sequence

import pytest
from leakcheck import assert_released
from loopback import open_sockets
from rawserver import NORMAL_TEXT, RawRequest, RawServer, chunk_event, head, reset
from twin import Twin

from gatewayclient import (
    GatewayClientError,
    GatewayConnectionError,
    GatewayStreamError,
    RetryPolicy,
)

MODEL = "openai/gpt-4o"
HELLO = [{"role": "user", "content": "Hi"}]
WORDS = ["one ", "two ", "three"]
EVENTS = [chunk_event({"role": "assistant", "content": ""})]
EVENTS += [chunk_event({"content": word}) for word in WORDS]
EVENTS += [chunk_event({}, "stop"), b"data: [DONE]\n\n"]
STREAM_HEAD = head(200, [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")])


def frame(piece: bytes, size_line: Optional[bytes] = None) -> bytes:
    return (size_line or b"%x" % len(piece)) + b"\r\n" + piece + b"\r\n"


def raw_stream(
    frames: Sequence[bytes], ending: str = "keep", stream_head: bytes = STREAM_HEAD
) -> Callable[..., bool]:
    """A stream answer of exactly these bytes, each write apart (a read of its own), then
    ``ending``: "keep" (the connection stays open for the next request), "fin" or "reset"."""

    def respond(conn: socket.socket, request: RawRequest) -> bool:
        conn.sendall(stream_head)
        for piece in frames:
            conn.sendall(piece)
            time.sleep(0.01)
        if ending == "reset":
            return reset(conn)
        return ending == "keep"

    return respond


LAST = b"0\r\n\r\n"


def ending_with(writes: List[bytes], last: bytes = LAST) -> List[bytes]:
    """The writes, the body's last chunk sent with the final one: the end has arrived when the
    caller takes [DONE], so the connection can go straight back to the pool."""
    return [*writes[:-1], writes[-1] + last]


WELL_FORMED = {
    "extensions": ending_with(
        [frame(e, b"%x;name=value;flag" % len(e)) for e in EVENTS], b"0;end=1\r\n\r\n"
    ),
    "hex-case-and-zeros": ending_with(
        [frame(e, b"000%X" % len(e)) for e in EVENTS], b"000\r\n\r\n"
    ),
    "events-split": ending_with(
        [frame(e[:n]) + frame(e[n:]) for e in EVENTS for n in (len(e) // 3,)]
    ),
    "events-together": ending_with([frame(b"".join(EVENTS[:3])), frame(b"".join(EVENTS[3:]))]),
    "trailer": ending_with(
        [frame(e) for e in EVENTS], b"0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n"
    ),
}


def broken(first: bool, fault: str) -> List[bytes]:
    """The stream with one broken frame: as its first frame, or after the role chunk and one
    word (both of which reach the caller first). Nothing of the broken frame reaches the
    caller: "chunk-short" sends half an event of a chunk that promised 100 bytes more."""
    kept = [] if first else [frame(EVENTS[0]), frame(EVENTS[1])]
    event = EVENTS[2]
    bad = {
        "size-not-hex": frame(event, b"zz"),
        "size-negative": frame(event, b"-%x" % len(event)),
        "size-not-hex-after-digits": frame(event, b"%xg" % len(event)),
        "chunk-short": (b"%x\r\n" % (len(event) + 100)) + event[: len(event) // 2],
    }[fault]
    return [*kept, bad]


def stream_text(twin: Twin) -> str:
    chunks = twin.collect(twin.stream(MODEL, HELLO))
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("shape", sorted(WELL_FORMED))
def test_well_formed_framing_reads_as_the_same_stream_and_the_connection_is_kept(
    kind: str, shape: str
) -> None:
    with RawServer(raw_stream(WELL_FORMED[shape])) as server:
        twin = Twin(kind, server.url, "raw-token", timeout=5)
        try:
            assert stream_text(twin) == "".join(WORDS)
            assert stream_text(twin) == NORMAL_TEXT  # the next stream, on the same connection
            assert server.connections == 1
        finally:
            twin.close()


FAULTS = ["size-not-hex", "size-negative", "size-not-hex-after-digits", "chunk-short"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("ending", ["fin", "reset"])
@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_first_frame_is_a_dropped_connection_and_is_retried(
    kind: str, fault: str, ending: str
) -> None:
    for retries, outcome in ((0, GatewayConnectionError), (1, None)):
        with RawServer(raw_stream(broken(True, fault), ending)) as server:
            policy = RetryPolicy(max_retries=retries, backoff_base=0)
            twin = Twin(kind, server.url, "raw-token", timeout=2, retry_policy=policy)
            try:
                error: Optional[GatewayClientError] = None
                try:
                    text = stream_text(twin)
                except GatewayClientError as exc:
                    error = exc
                if outcome is None:
                    assert error is None and text == NORMAL_TEXT  # the retry's normal answer
                else:
                    assert type(error) is outcome, repr(error)
                    assert "raw-token" not in str(error)
                assert len(server.requests) == retries + 1
            finally:
                twin.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("ending", ["fin", "reset"])
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("retries", [0, 2])
def test_a_broken_frame_after_a_chunk_cuts_the_stream_and_keeps_what_arrived(
    kind: str, fault: str, ending: str, retries: int
) -> None:
    policy = RetryPolicy(max_retries=retries, backoff_base=0)
    with RawServer(raw_stream(broken(False, fault), ending)) as server:
        twin = Twin(kind, server.url, "raw-token", timeout=2, retry_policy=policy)
        baseline = open_sockets()  # an event loop holds sockets of its own
        try:
            stream = twin.stream(MODEL, HELLO)
            received: List[Any] = []
            with pytest.raises(GatewayClientError) as caught:
                twin.collect(stream, received)
            assert type(caught.value) is GatewayStreamError, repr(caught.value)
            assert [c.choices[0].delta.content for c in received] == ["", WORDS[0]]
            answer = stream.completion()
            assert answer.choices[0].message.content == WORDS[0]  # nothing received is lost
            assert len(server.requests) == 1  # a cut stream is never retried
            assert stream_text(twin) == NORMAL_TEXT  # and the client goes on
            assert_released(twin, baseline)
        finally:
            twin.close()


@pytest.mark.timeout(30)
def test_a_chunk_cut_short_by_a_clean_close_hands_on_the_events_it_brought(kind: str) -> None:
    """The relay promised more bytes than it sent, then closed: the whole event that did come
    reaches the caller (as it would have, had the chunk been whole), then the stream is cut."""
    event = EVENTS[2]
    frames = [frame(EVENTS[0]), frame(EVENTS[1]), (b"%x\r\n" % (len(event) + 100)) + event]
    with RawServer(raw_stream(frames, "fin")) as server:
        twin = Twin(kind, server.url, "raw-token", timeout=2)
        try:
            stream = twin.stream(MODEL, HELLO)
            received: List[Any] = []
            with pytest.raises(GatewayStreamError):
                twin.collect(stream, received)
            assert [c.choices[0].delta.content for c in received] == ["", WORDS[0], WORDS[1]]
            assert stream.completion().choices[0].message.content == WORDS[0] + WORDS[1]
        finally:
            twin.close()


@pytest.mark.timeout(30)
def test_a_compressed_stream_is_decoded_and_the_connection_is_kept(kind: str) -> None:
    """Content-Encoding: gzip over chunked framing (a relay compressing an event stream): the
    sync client leaves such a body to urllib3's reader, which decodes it."""
    packer = zlib.compressobj(wbits=31)  # gzip
    writes = [packer.compress(event) + packer.flush(zlib.Z_SYNC_FLUSH) for event in EVENTS]
    writes[-1] += packer.flush()
    gzip_head = head(
        200,
        [
            ("Content-Type", "text/event-stream"),
            ("Content-Encoding", "gzip"),
            ("Transfer-Encoding", "chunked"),
        ],
    )
    with RawServer(
        raw_stream(ending_with([frame(w) for w in writes]), "keep", gzip_head)
    ) as server:
        twin = Twin(kind, server.url, "raw-token", timeout=5)
        try:
            assert stream_text(twin) == "".join(WORDS)
            assert stream_text(twin) == NORMAL_TEXT
            assert server.connections == 1
        finally:
            twin.close()
