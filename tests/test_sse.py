"""Tests for the sans-I/O event-stream decoder (WHATWG "Interpreting an event stream")."""

from __future__ import annotations

import re
from typing import Iterable, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayclient.sse import ServerSentEvent, SSEDecoder


def ev(
    data: str, event: str = "message", id: Optional[str] = None, retry: Optional[int] = None
) -> ServerSentEvent:
    return ServerSentEvent(event=event, data=data, id=id, retry=retry)


def decode(pieces: Iterable[bytes]) -> list[ServerSentEvent]:
    """Feed every piece to one decoder, then flush: all the events of the stream."""
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    return events + decoder.flush()


def one_byte_at_a_time(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


# Complete streams (every event followed by a blank line): feed() alone yields all events.
STREAMS = [
    # line endings
    ("lf", b"data: a\n\n", [ev("a")]),
    ("crlf", b"data: a\r\n\r\n", [ev("a")]),
    ("cr", b"data: a\r\r", [ev("a")]),
    ("mixed_line_ends", b"data: a\r\ndata: b\rdata: c\n\r\n", [ev("a\nb\nc")]),
    ("lf_then_cr_is_two_line_ends", b"data: a\n\r", [ev("a")]),
    ("cr_then_crlf_is_two_line_ends", b"data: a\r\r\n", [ev("a")]),
    ("crlf_is_one_line_end", b"data: a\r\ndata: b\r\n\r\n", [ev("a\nb")]),
    # data field
    ("data_without_space", b"data:a\n\n", [ev("a")]),
    ("only_one_space_removed", b"data:  a\n\n", [ev(" a")]),
    ("trailing_space_kept", b"data: a \n\n", [ev("a ")]),
    ("tab_after_colon_kept", b"data:\ta\n\n", [ev("\ta")]),
    ("colon_inside_value_kept", b'data: {"a": 1}\n\n', [ev('{"a": 1}')]),
    ("multi_line_data_joined", b"data: a\ndata: b\ndata: c\n\n", [ev("a\nb\nc")]),
    ("empty_data_line_dispatches_empty", b"data:\n\n", [ev("")]),
    ("field_name_without_colon", b"data\n\n", [ev("")]),
    ("two_empty_data_lines", b"data\ndata\n\n", [ev("\n")]),
    ("nul_in_data_kept", b"data: a\x00b\n\n", [ev("a\x00b")]),
    ("done_sentinel", b"data: [DONE]\n\n", [ev("[DONE]")]),
    ("several_events", b"data: 1\n\ndata: 2\n\ndata: 3\n\n", [ev("1"), ev("2"), ev("3")]),
    # comments and unknown fields
    ("comment_only", b": keep-alive\n\n", []),
    ("bare_colon_comment", b":\n\n", []),
    ("comment_between_data", b"data: a\n: c\ndata: b\n\n", [ev("a\nb")]),
    ("unknown_field_ignored", b"foo: bar\ndata: a\n\n", [ev("a")]),
    ("field_names_case_sensitive", b"Data: a\nEVENT: x\n\n", []),
    # event field
    ("event_type", b"event: add\ndata: a\n\n", [ev("a", event="add")]),
    ("empty_event_is_message", b"event:\ndata: a\n\n", [ev("a")]),
    ("last_event_field_wins", b"event: a\nevent: b\ndata: x\n\n", [ev("x", event="b")]),
    (
        "event_resets_after_dispatch",
        b"event: add\ndata: a\n\ndata: b\n\n",
        [ev("a", "add"), ev("b")],
    ),
    ("event_resets_without_dispatch", b"event: add\n\ndata: b\n\n", [ev("b")]),
    # id field
    ("id", b"id: 1\ndata: a\n\n", [ev("a", id="1")]),
    ("id_persists", b"id: 1\ndata: a\n\ndata: b\n\n", [ev("a", id="1"), ev("b", id="1")]),
    ("id_replaced", b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n", [ev("a", id="1"), ev("b", id="2")]),
    (
        "empty_id_sets_empty",
        b"id: 1\ndata: a\n\nid\ndata: b\n\n",
        [ev("a", id="1"), ev("b", id="")],
    ),
    (
        "id_with_nul_ignored",
        b"id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n",
        [ev("a", id="1"), ev("b", id="1")],
    ),
    ("id_without_data_persists", b"id: 7\n\ndata: a\n\n", [ev("a", id="7")]),
    # retry field
    ("retry", b"retry: 3000\ndata: a\n\n", [ev("a", retry=3000)]),
    ("retry_zero", b"retry: 0\ndata: a\n\n", [ev("a", retry=0)]),
    (
        "retry_only_for_its_event",
        b"retry: 10\ndata: a\n\ndata: b\n\n",
        [ev("a", retry=10), ev("b")],
    ),
    ("invalid_retry_keeps_valid", b"retry: 10\nretry: x\ndata: a\n\n", [ev("a", retry=10)]),
    ("retry_without_data_dropped", b"retry: 10\n\ndata: a\n\n", [ev("a")]),
    # empty events and dispatch
    ("blank_lines_only", b"\n\n\r\n\r", []),
    ("event_without_data_not_dispatched", b"event: x\nid: 1\n\n", []),
    # byte order mark and UTF-8
    ("bom_stripped", b"\xef\xbb\xbfdata: a\n\n", [ev("a")]),
    ("only_one_bom_stripped", b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n", [ev("b")]),
    ("bom_inside_value_kept", b"data: \xef\xbb\xbfa\n\n", [ev("\ufeffa")]),
    ("utf8_text", "data: héllo €😀\n\n".encode(), [ev("héllo €😀")]),
    ("invalid_utf8_replaced", b"data: a\xffb\n\n", [ev("a\ufffdb")]),
    ("truncated_sequence_replaced", b"data: a\xe2\x82b\n\n", [ev("a\ufffdb")]),
    (
        "unicode_line_separators_are_not_line_ends",
        "data: a\u2028b\x85c\x0bd\n\n".encode(),
        [ev("a\u2028b\x85c\x0bd")],
    ),
]

STREAM_CASES = [pytest.param(stream, expected, id=name) for name, stream, expected in STREAMS]
INVALID_RETRIES = ["3s", "-1", "+1", "1.5", "1e3", "", " 10", "10 ", "\uff13", "\u00b2", "\u0663"]


@pytest.mark.parametrize(("stream", "expected"), STREAM_CASES)
def test_complete_stream_decodes_to_events_in_one_feed(
    stream: bytes, expected: list[ServerSentEvent]
) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(stream) == expected
    assert decoder.flush() == []


@pytest.mark.parametrize(("stream", "expected"), STREAM_CASES)
def test_complete_stream_decodes_the_same_one_byte_at_a_time(
    stream: bytes, expected: list[ServerSentEvent]
) -> None:
    assert decode(one_byte_at_a_time(stream)) == expected


@pytest.mark.parametrize("value", INVALID_RETRIES)
def test_retry_that_is_not_only_ascii_digits_is_ignored(value: str) -> None:
    stream = f"retry: {value}\ndata: a\n\n".encode()  # the value after its one space is removed
    assert decode([stream]) == [ev("a")]


def test_retry_too_long_for_int_is_ignored_without_error() -> None:
    events = decode([b"retry: " + b"9" * 5000 + b"\ndata: a\n\n"])
    assert [e.data for e in events] == ["a"]


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        ([b"data: a\r", b"\ndata: b\r\n\r\n"], [ev("a\nb")]),
        ([b"data: a\r", b"", b"\ndata: b\n\n"], [ev("a\nb")]),
        ([b"data: a\r", b"\n", b"data: b\n\n"], [ev("a\nb")]),
        ([b"data: a\r", b"\r"], [ev("a")]),
        ([b"data: a\r\n\r", b"\n"], [ev("a")]),
        ([b"data: a\r", b"\n\r", b"\n", b"data: b\r", b"\n\r", b"\n"], [ev("a"), ev("b")]),
    ],
    ids=[
        "cr_lf_across_feeds",
        "empty_feed_between",
        "lone_lf_feed",
        "cr_cr",
        "blank_crlf_split",
        "repeated",
    ],
)
def test_crlf_split_across_feeds_is_one_line_end(
    pieces: list[bytes], expected: list[ServerSentEvent]
) -> None:
    assert decode(pieces) == expected


def test_feed_returns_only_the_events_its_chunk_completed() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\ndata: b\n\ndata: c") == [ev("a"), ev("b")]
    assert decoder.feed(b"\n\n") == [ev("c")]
    assert decoder.feed(b"") == []


def test_line_split_over_many_feeds_is_one_line() -> None:
    assert decode([b"da", b"ta", b": ", b"he", b"llo", b"\n", b"\n"]) == [ev("hello")]


@pytest.mark.parametrize(
    ("char", "offset"),
    [(c, i) for c in ["é", "€", "😀"] for i in range(1, len(c.encode()))],
)
def test_multibyte_character_split_across_feeds_comes_out_whole(char: str, offset: int) -> None:
    prefix = b"data: x"
    stream = prefix + char.encode() + b"y\n\n"
    cut = len(prefix) + offset
    assert decode([stream[:cut], stream[cut:]]) == [ev(f"x{char}y")]


@pytest.mark.parametrize("offset", [1, 2])
def test_bom_split_across_feeds_is_stripped(offset: int) -> None:
    stream = b"\xef\xbb\xbfdata: a\n\n"
    assert decode([stream[:offset], stream[offset:]]) == [ev("a")]


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        ([b"data: [DONE]"], [ev("[DONE]")]),
        ([b"data: a\n"], [ev("a")]),
        ([b"data: a\r"], [ev("a")]),
        ([b"data: a\ndata: b"], [ev("a\nb")]),
        ([b"data: a\nevent: end"], [ev("a", event="end")]),
        ([b"data: a\n", b"id: 9"], [ev("a", id="9")]),
        ([b"data"], [ev("")]),
        ([b"data: a\xe2\x82"], [ev("a\ufffd")]),
        ([b"event: x"], []),
        ([b": comment"], []),
        ([b"data: a\n\n"], []),
        ([], []),
    ],
    ids=[
        "unterminated_done",
        "pending_event",
        "pending_event_after_cr",
        "unterminated_data_line_joins_pending",
        "unterminated_event_line_applies",
        "unterminated_id_line_applies",
        "unterminated_bare_field",
        "truncated_character_replaced",
        "no_data_nothing_pending",
        "unterminated_comment",
        "already_dispatched",
        "empty_stream",
    ],
)
def test_flush_processes_unterminated_line_and_dispatches_pending_event(
    pieces: list[bytes], expected: list[ServerSentEvent]
) -> None:
    decoder = SSEDecoder()
    for piece in pieces:
        decoder.feed(piece)
    assert decoder.flush() == expected


def test_flush_resets_the_decoder_for_a_new_stream() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"\xef\xbb\xbfid: 1\nevent: x\nretry: 5\ndata: a\n\ndata: partial\xe2")
    assert decoder.flush() == [ev("partial\ufffd", id="1")]
    assert decoder.flush() == []
    assert decoder.feed(b"\xef\xbb\xbfdata: b\n\n") == [ev("b")]


def test_event_is_an_immutable_named_tuple() -> None:
    event = ServerSentEvent("message", "a", None, None)
    assert (event.event, event.data, event.id, event.retry) == ("message", "a", None, None)
    with pytest.raises(AttributeError):
        event.data = "b"  # type: ignore[misc]


@pytest.mark.parametrize("piece_size", [64 * 1024, 1024])
def test_ten_megabyte_line_in_small_reads_is_decoded(piece_size: int) -> None:
    size = 10 * 1024 * 1024
    stream = b"data: " + b"x" * size + b"\n\n"
    pieces = (stream[i : i + piece_size] for i in range(0, len(stream), piece_size))
    events = decode(pieces)
    assert len(events) == 1
    assert len(events[0].data) == size


def test_many_events_in_one_feed_are_all_decoded() -> None:
    stream = b"".join(b'data: {"n": %d}\n\n' % i for i in range(200_000))
    events = SSEDecoder().feed(stream)
    assert len(events) == 200_000
    assert events[-1].data == '{"n": 199999}'


# --- property tests ---------------------------------------------------------------------------


def reference_decode(stream: bytes) -> list[ServerSentEvent]:
    """A deliberately plain, whole-stream reading of the WHATWG rules plus the lenient flush."""
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    events: list[ServerSentEvent] = []
    data: list[str] = []
    event, last_id, retry = "", None, None
    for line in [*re.split("\r\n|\r|\n", text), ""]:
        if not line:
            if data:
                events.append(ServerSentEvent(event or "message", "\n".join(data), last_id, retry))
            data, event, retry = [], "", None
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and re.fullmatch("[0-9]+", value):
            retry = int(value)
    return events


TOKENS = [
    b"data",
    b"event",
    b"id",
    b"retry",
    b":",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"1",
    b"a",
    b"\x00",
]
TOKENS += [b"\xef\xbb\xbf", "é€😀".encode(), b"\xff", b"\xe2\x82", b"\xf0\x9f"]
sse_like_bytes = st.lists(st.sampled_from(TOKENS) | st.binary(max_size=3), max_size=60).map(
    b"".join
)


def split_at(stream: bytes, points: list[int]) -> list[bytes]:
    cuts = [0, *sorted(p % (len(stream) + 1) for p in points), len(stream)]
    return [stream[a:b] for a, b in zip(cuts, cuts[1:])]


@settings(max_examples=500)
@given(stream=sse_like_bytes | st.binary(max_size=200), points=st.lists(st.integers(0, 10_000)))
def test_any_split_into_reads_gives_the_same_events(stream: bytes, points: list[int]) -> None:
    assert decode(split_at(stream, points)) == decode([stream])


@settings(max_examples=500)
@given(stream=sse_like_bytes | st.binary(max_size=200))
def test_decoding_matches_a_plain_whole_stream_reading_of_the_rules(stream: bytes) -> None:
    assert decode([stream]) == reference_decode(stream)


line_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=8)
event_spec = st.tuples(
    st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=12),  # data
    st.none() | line_text,  # event
    st.none() | line_text.filter(lambda s: "\0" not in s),  # id
    st.none() | st.integers(0, 10**9),  # retry
    st.none() | line_text,  # comment
)


@st.composite
def well_formed_streams(draw: st.DrawFn) -> tuple[bytes, list[ServerSentEvent]]:
    lines: list[str] = []
    expected: list[ServerSentEvent] = []
    last_id: Optional[str] = None
    for data, event, id_, retry, comment in draw(st.lists(event_spec, max_size=6)):
        fields = [("event", event), ("id", id_), ("retry", retry), ("", comment)]
        lines += draw(st.permutations([f"{k}: {v}" for k, v in fields if v is not None]))
        lines += [f"data: {part}" for part in data.split("\n")]
        lines += [""] * draw(st.integers(1, 2))
        last_id = id_ if id_ is not None else last_id
        expected.append(ev(data, event or "message", last_id, retry))
    text, previous_end = "\ufeff" if draw(st.booleans()) else "", ""
    for line in lines:
        end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        if previous_end == "\r" and not line and end == "\n":
            end = "\r\n"  # "\r" + "\n" would be one CRLF: no writer can put a blank line there
        text, previous_end = text + line + end, end
    return text.encode(), expected


@settings(max_examples=300)
@given(case=well_formed_streams(), points=st.lists(st.integers(0, 10_000), max_size=20))
def test_well_formed_stream_decodes_to_exactly_the_events_written(
    case: tuple[bytes, list[ServerSentEvent]], points: list[int]
) -> None:
    stream, expected = case
    decoder = SSEDecoder()
    events = [e for piece in split_at(stream, points) for e in decoder.feed(piece)]
    assert events == expected
    assert decoder.flush() == []


@settings(max_examples=300)
@given(pieces=st.lists(st.binary(max_size=50) | sse_like_bytes, max_size=10))
def test_arbitrary_bytes_never_raise(pieces: list[bytes]) -> None:
    for event in decode(pieces):
        assert isinstance(event, ServerSentEvent)
        assert isinstance(event.event, str) and isinstance(event.data, str)


data_only_event = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=8).map(
    lambda data: f"data: {data}\n\n".encode()
)
# Reads that are whole data-only events (one is the hot path), alone or several together, among
# reads that leave something held: a field of the next event, part of a line, a cut character.
read_pieces = st.lists(
    st.lists(data_only_event, min_size=1, max_size=3).map(b"".join) | sse_like_bytes,
    max_size=12,
)


@settings(max_examples=500)
@given(pieces=read_pieces)
def test_reads_of_whole_events_decode_as_a_byte_at_a_time_reading_does(
    pieces: list[bytes],
) -> None:
    stream = b"".join(pieces)
    one_byte_reads = [stream[i : i + 1] for i in range(len(stream))]
    assert decode(pieces) == decode(one_byte_reads) == reference_decode(stream)


def test_reads_of_whole_data_events_take_the_hot_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first read (which may start with a BOM), a read of one whole ``data:`` event
    makes it without the line machinery; a read of several events, or one that holds
    something back, or one that follows such a read, takes the general path."""
    general: list[bytes] = []
    original = SSEDecoder._feed

    def counted(self: SSEDecoder, chunk: bytes) -> list[ServerSentEvent]:
        general.append(chunk)
        return original(self, chunk)

    monkeypatch.setattr(SSEDecoder, "_feed", counted)
    decoder = SSEDecoder()
    reads = [b"", b"data: a\n\n", b"data: b\n\n", "data: é\n\ndata: c\n\n".encode()]
    reads += [b"id: 7\n", b"data: d\n\n", b"event: x\n", b"data: e\n\n", b"retry: 5\n"]
    reads += [b"data: f\n\n", b"data: g\n\n", "\ufeffdata: h\n\n".encode()]
    events = [event for read in reads for event in decoder.feed(read)]
    assert events == [
        *(ev("a"), ev("b"), ev("é"), ev("c"), ev("d", id="7")),
        ev("e", "x", "7"),
        ev("f", id="7", retry=5),
        ev("g", id="7"),  # a BOM after the first character is no BOM: "\ufeffdata" no field
    ]
    assert general == [
        b"",  # nothing decoded yet: a BOM may still start the stream
        b"data: a\n\n",
        "data: é\n\ndata: c\n\n".encode(),  # two events
        b"id: 7\n",  # not an event
        b"event: x\n",  # a field held for the next read
        b"data: e\n\n",
        b"retry: 5\n",
        b"data: f\n\n",
        "\ufeffdata: h\n\n".encode(),
    ]
