"""Incremental Server-Sent Events decoder: bytes in, events out, no I/O.

Follows the WHATWG HTML Standard, section 9.2.6 "Interpreting an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
The caller reads raw chunks from any transport, passes each to ``SSEDecoder.feed`` and gets
back the events that chunk completed; at end of stream it calls ``SSEDecoder.flush``.
"""

from __future__ import annotations

import codecs
from typing import NamedTuple, Optional

__all__ = ["SSEDecoder", "ServerSentEvent"]


class ServerSentEvent(NamedTuple):
    """One dispatched event, as the WHATWG "dispatch the event" step builds it."""

    event: str
    """The event type; "message" when no non-empty ``event:`` field was given."""
    data: str
    """The ``data:`` lines of the event joined with "\\n"."""
    id: Optional[str]
    """The last event ID buffer at dispatch (persists across events); None if never set."""
    retry: Optional[int]
    """The reconnection time (ms) from a valid ``retry:`` field in this event, else None."""


# Builds a ServerSentEvent without the Python-level NamedTuple.__new__ frame (hot path).
_new_event = tuple.__new__


def _retry_value(value: str) -> Optional[int]:
    # WHATWG: "If the field value consists of only ASCII digits ... Otherwise, ignore the field."
    # str.isdigit alone would accept non-ASCII digits such as "\u0663" or "\u00b2".
    if not (value.isascii() and value.isdigit()):
        return None
    try:
        return int(value)
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows
        return None


class SSEDecoder:
    """Turn the bytes of one ``text/event-stream`` into ``ServerSentEvent`` values.

    ``feed(chunk)`` accepts any split of the stream (a UTF-8 character or a CRLF pair may be cut
    between chunks) and returns the events completed by that chunk, in order.

    ``flush()`` ends the stream. It is deliberately more lenient than WHATWG, which discards
    an unterminated last line and any event not followed by a blank line: here the unterminated
    last line is processed as a line, then an event still pending with data is dispatched, so a
    server that ends with ``data: [DONE]`` and no blank line still delivers it. Afterwards the
    decoder is back in its initial state (a new stream may start, with its own BOM).
    """

    __slots__ = (
        "_after_cr",
        "_at_start",
        "_clean",
        "_data",
        "_decode",
        "_decoder",
        "_event",
        "_last_id",
        "_partial",
        "_retry",
    )

    def __init__(self) -> None:
        # WHATWG: streams are always UTF-8 decoded; invalid bytes become U+FFFD, never an error.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._decode = self._decoder.decode
        self._reset()

    def _reset(self) -> None:
        self._decoder.reset()
        self._at_start = True  # no character decoded yet: a leading BOM is still to strip
        self._after_cr = False  # the last text ended in "\r": a "\n" next completes a CRLF
        self._partial: list[str] = []  # pieces of an unfinished line, joined once at its end
        self._data: list[str] = []  # data buffer, kept as lines: "\n".join at dispatch
        self._event = ""
        self._last_id: Optional[str] = None
        self._retry: Optional[int] = None
        self._clean = False  # between events, nothing held: a read may take the hot path

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode the next chunk of the stream; return the events it completed, in order."""
        data = self.whole_data(chunk)
        if data is not None:
            return [_new_event(ServerSentEvent, ("message", data, self._last_id, None))]
        return self.feed_lines(chunk)

    def whole_data(self, chunk: bytes) -> Optional[str]:
        """The hot path: when nothing is held from earlier reads and ``chunk`` is one whole
        event of a single ``data: `` line (a chat stream's chunk, as gateways send them), that
        event's data; the event is ``("message", data, last_id, None)``, and nothing is left
        held. None for any other read, which ``feed_lines`` then takes; ``feed`` does both."""
        if self._clean and chunk.endswith(b"\n\n") and chunk.startswith(b"data: "):
            end = len(chunk) - 2
            if chunk.find(b"\n") == end and b"\r" not in chunk:
                try:
                    return chunk[6:end].decode("utf-8")
                except UnicodeDecodeError:
                    return None  # invalid bytes (U+FFFD) or a cut character: the general path
        return None

    @property
    def last_id(self) -> Optional[str]:
        """The last event ID buffer (what an event dispatched now carries as ``id``)."""
        return self._last_id

    def feed_lines(self, chunk: bytes) -> list[ServerSentEvent]:
        """``feed`` through the general path, for a read that ``whole_data`` did not take."""
        events = self._feed(chunk)
        self._clean = not (
            self._partial
            or self._data
            or self._event
            or self._after_cr
            or self._at_start
            or self._retry is not None
            or self._decoder.getstate()[0]
        )
        return events

    def _feed(self, chunk: bytes) -> list[ServerSentEvent]:
        text = self._decode(chunk)
        if not text:
            return []
        if self._at_start or self._after_cr:
            text = self._strip_start(text)
            if not text:
                return []
        if "\r" in text:
            # WHATWG: lines end in CRLF, LF or CR. A CR ending this text may pair with an LF
            # starting the next one; the line has ended either way, so remember only to skip it.
            self._after_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        partial = self._partial
        if partial:
            partial.append(lines[0])
            if len(lines) == 1:
                return []
            lines[0] = "".join(partial)
            partial.clear()
        last = lines.pop()
        if last:
            partial.append(last)
        return self._process(lines)

    def _strip_start(self, text: str) -> str:
        if self._at_start:
            self._at_start = False
            # WHATWG: "The UTF-8 decode algorithm strips one leading UTF-8 Byte Order Mark".
            if text[0] == "\ufeff":
                text = text[1:]
        if self._after_cr and text:
            self._after_cr = False
            if text[0] == "\n":
                text = text[1:]
        return text

    def flush(self) -> list[ServerSentEvent]:
        """End the stream: return the events still pending (see the class docstring), reset."""
        # An incomplete UTF-8 sequence left in the decoder becomes U+FFFD (never a line end).
        self._partial.append(self._decode(b"", True))
        # Lenient: the unterminated last line counts as a line, then the end of the stream as
        # the blank line that dispatches a pending event.
        events = self._process(["".join(self._partial), ""])
        self._reset()
        return events

    def _process(self, lines: list[str]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        for line in lines:
            if line.startswith("data: "):  # the hot path: one copy, no partition
                self._data.append(line[6:])
            elif line:
                self._field(line)
            elif self._data:
                # WHATWG "dispatch the event": the data buffer loses its trailing "\n" (here:
                # lines joined with "\n"); the event type resets; the last event ID persists.
                events.append(
                    _new_event(
                        ServerSentEvent,
                        (
                            self._event or "message",
                            "\n".join(self._data),
                            self._last_id,
                            self._retry,
                        ),
                    )
                )
                self._data = []
                self._event = ""
                self._retry = None
            else:
                # WHATWG: a blank line with an empty data buffer dispatches nothing but still
                # resets the event type buffer (and, here, this block's retry).
                self._event = ""
                self._retry = None
        return events

    def _field(self, line: str) -> None:
        # WHATWG: "field:value", one leading space of the value removed; no colon means the
        # whole line is the field name. A leading colon gives field "": a comment, ignored.
        field, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._last_id = value
        elif field == "retry":
            retry = _retry_value(value)
            if retry is not None:
                self._retry = retry
