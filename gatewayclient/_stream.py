"""One chat stream's state: received bytes in, chunks for the caller out, the answer assembled.

A client feeds every network read to ``StreamState.feed`` (``b""`` at the end of the body) and
asks ``take`` for the next chunk: a ``ChatCompletionChunk``, ``NEED_DATA`` (read more) or ``END``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from ._json_model import decode_json_text
from ._usage import UsageTracker
from .errors import (
    GatewayClientError,
    GatewayConnectionError,
    GatewayStreamError,
    GatewayTimeoutError,
    error_from_event,
    redact_error,
)
from .models import (
    ChatCompletion,
    ChatCompletionChunk,
    CompletionUsage,
)
from .sse import ServerSentEvent, SSEDecoder

__all__ = ["END", "END_READS", "NEED_DATA", "StreamState"]


class _Signal:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Signal("NEED_DATA")
END_READS = 4  # reads allowed after [DONE] for the body to end before its connection is dropped
END = _Signal("END")
_HEAD_FIELDS = ("id", "created", "model", "system_fingerprint", "service_tier")


def _index(value: Any, default: int) -> int:
    if value is None:
        return default
    if type(value) is not int:
        raise GatewayStreamError(f"a chunk's index is not an integer: {value!r}")
    return value


def _check_tool_calls(tool_calls: Any) -> None:
    """Raise for tool calls that ``_ChoiceParts.add`` could not take in."""
    if not tool_calls:
        return
    if type(tool_calls) is not list:
        raise GatewayStreamError("a chunk's tool_calls is not a list")
    for position, call in enumerate(tool_calls):
        if type(call) is not dict:
            raise GatewayStreamError("a chunk's tool call is not an object")
        _index(call.get("index"), position)


def _check_choice(choice: Any) -> None:
    """Raise for a choice that ``StreamState._take_in`` could not take in."""
    if type(choice) is not dict:
        raise GatewayStreamError("a chunk's choice is not an object")
    index = choice.get("index")
    if index is not None and type(index) is not int:
        _index(index, 0)
    delta = choice.get("delta")
    if delta is None:
        return
    if type(delta) is not dict:
        raise GatewayStreamError("a chunk's delta is not an object")
    if len(delta) > 1 or type(delta.get("content")) is not str:  # not a text-only delta
        _check_tool_calls(delta.get("tool_calls"))


# Pieces of a choice's text kept apart before they are joined into one string. A stream's
# piece is a token or two: its own str object (about 55 bytes) and a list slot for a few
# characters. Joined 32 at a time, the answer a stream holds costs about a tenth of that.
_FOLD = 32


class _ChoiceParts:
    """What one choice index has received so far."""

    __slots__ = ("content", "finish_reason", "folded", "refusal", "role", "tools")

    def __init__(self) -> None:
        self.role: Optional[str] = None
        self.folded: List[str] = []  # the text's earlier pieces, joined _FOLD at a time
        self.content: List[str] = []  # the latest pieces (fewer than _FOLD)
        self.refusal: List[str] = []
        self.tools: Dict[int, Dict[str, Any]] = {}
        self.finish_reason: Optional[str] = None

    def add(self, delta: Dict[str, Any]) -> Optional[str]:
        """Take one delta in; returns its text, if any."""
        content = delta.get("content")
        if type(content) is str:
            self.keep(content)
            if len(delta) == 1:
                return content  # the common chunk: text only
        else:
            content = None
        role = delta.get("role")
        if type(role) is str:
            self.role = role
        refusal = delta.get("refusal")
        if type(refusal) is str:
            self.refusal.append(refusal)
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            if type(tool_calls) is not list:
                raise GatewayStreamError("a chunk's tool_calls is not a list")
            for position, call in enumerate(tool_calls):
                self._add_tool_call(position, call)
        return content

    def keep(self, text: str) -> None:
        """Add a piece of the choice's text."""
        content = self.content
        content.append(text)
        if len(content) == _FOLD:
            self.folded.append("".join(content))
            content.clear()

    def _add_tool_call(self, position: int, call: Any) -> None:
        if type(call) is not dict:
            raise GatewayStreamError("a chunk's tool call is not an object")
        index = _index(call.get("index"), position)
        parts = self.tools.setdefault(
            index, {"id": None, "type": "function", "name": [], "arguments": []}
        )
        for key in ("id", "type"):
            if type(call.get(key)) is str:
                parts[key] = call[key]
        function = call.get("function")
        if type(function) is dict:
            for key in ("name", "arguments"):
                if type(function.get(key)) is str:
                    parts[key].append(function[key])

    def message(self) -> Dict[str, Any]:
        message: Dict[str, Any] = {"role": self.role or "assistant"}
        received = self.folded or self.content
        message["content"] = (
            "".join(self.folded + self.content) if received or not self.tools else None
        )
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.tools:
            message["tool_calls"] = [
                {
                    "id": parts["id"],
                    "type": parts["type"],
                    "function": {
                        "name": "".join(parts["name"]),
                        "arguments": "".join(parts["arguments"]),
                    },
                }
                for _, parts in sorted(self.tools.items())
            ]
        return message


_CHUNK_FIELDS = frozenset((*_HEAD_FIELDS, "object", "choices", "usage"))
# What the caller has been handed, in order: a chunk with the deltas it carries, a chunk kept
# back (a usage-only or an empty-choices chunk the client asked not to yield), or [DONE]; and
# for the common chunk (one choice, index 0, a text-only delta, nothing else to take in) its
# text, which is then all that taking it in adds.
_Entry = Tuple[Optional[ChatCompletionChunk], Dict[str, Any], Optional[str]]
_DONE: Dict[str, Any] = {}
_DONE_ENTRY: _Entry = (None, _DONE, None)
_Common = Tuple[ChatCompletionChunk, Dict[str, Any], str]  # a common chunk's entry
_new_chunk = ChatCompletionChunk._from_json


class StreamState:
    """Decodes one stream attempt; ``restart`` forgets everything for a retried attempt.

    What a chunk adds to the answer (text, tool calls, usage) is taken in when the caller takes
    that chunk, not when it is received: ``completion()`` and the usage totals hold what reached
    the caller, and a stream abandoned with its end already received counts as abandoned."""

    def __init__(
        self, model: str, usage: UsageTracker, hide_usage_chunk: bool, secret: Optional[str] = None
    ) -> None:
        self._model = model
        self._tracker = usage
        self._hide_usage_chunk = hide_usage_chunk
        self._secret = secret
        self.restart()

    def restart(self, headers: Optional[Mapping[str, str]] = None) -> None:
        """Forget everything; ``headers`` are the new attempt's response head (their retry
        hints apply to an error event)."""
        self._headers = headers
        self._decoder = SSEDecoder()
        # A list, not a deque: an empty deque holds a 64-slot block (760 bytes per open stream),
        # and pop(0) from the few entries of one read costs what popleft() does.
        self._pending: List[_Entry] = []
        self._choices: Dict[int, _ChoiceParts] = {}
        self._head: Dict[str, Any] = {}
        self._extra: Dict[str, Any] = {}
        self._usage: Optional[Dict[str, Any]] = None
        self._error: Optional[GatewayClientError] = None
        self._received_done = False
        self.done = False
        self.started = False

    @property
    def ready(self) -> bool:
        """A chunk (or the end) is waiting: opening the stream has succeeded."""
        return bool(self._pending) or self.done

    @property
    def usage(self) -> Optional[CompletionUsage]:
        return None if self._usage is None else CompletionUsage._from_json(self._usage)

    def take(self) -> Union[ChatCompletionChunk, _Signal]:
        """The next chunk for the caller, ``NEED_DATA`` or ``END``; raises the stream's error
        once every chunk received before it has been taken."""
        pending = self._pending
        while pending:
            chunk, obj, text = pending.pop(0)
            if text is not None:  # the common chunk: its text is all it adds
                return self._take_text(chunk, obj, text)  # type: ignore[arg-type]
            if obj is _DONE:
                self.done = True
                self._tracker.record(self._model, self._usage)
                return END
            self._take_in(obj)
            if chunk is not None:
                self.started = True
                return chunk
            self._extra.update((k, v) for k, v in obj.items() if k not in _CHUNK_FIELDS)
        if self._error is not None:
            raise self._error
        return END if self.done else NEED_DATA

    def _take_text(
        self, chunk: ChatCompletionChunk, obj: Dict[str, Any], text: str
    ) -> ChatCompletionChunk:
        """Take the common chunk: its text is all it adds to the answer."""
        if not self._head:
            self._head = {key: obj[key] for key in _HEAD_FIELDS if obj.get(key) is not None}
        parts = self._choices.get(0)
        if parts is None:
            parts = self._choices[0] = _ChoiceParts()
        parts.keep(text)
        self.started = True
        return chunk

    def _take_in(self, obj: Dict[str, Any]) -> None:
        """Add what a chunk carries (checked when it was received) to the answer."""
        if not self._head:
            self._head = {key: obj[key] for key in _HEAD_FIELDS if obj.get(key) is not None}
        usage = obj.get("usage")
        if usage is not None:
            self._usage = usage if type(usage) is dict else None
        choices = self._choices
        for choice in obj.get("choices") or ():
            index = choice.get("index", 0)
            parts = choices.get(index if type(index) is int else 0)
            if parts is None:
                parts = choices[index if type(index) is int else 0] = _ChoiceParts()
            finish_reason = choice.get("finish_reason")
            if type(finish_reason) is str:
                parts.finish_reason = finish_reason
            delta = choice.get("delta")
            if delta is not None:
                parts.add(delta)

    def feed(self, data: bytes) -> None:
        """Consume one read of the body; ``b""`` means the body ended.

        An error (an error event, bad data, an early end) is raised at once when no chunk is
        waiting, else kept for ``take``: what the gateway sent before it is never lost, and an
        error counts as "before the first chunk" (retryable) only when no chunk preceded it.
        """
        self._feed(data, self._decoder.whole_data(data) if data else None)

    def _feed(self, data: bytes, text: Optional[str]) -> None:
        """``feed``, given what ``whole_data`` said of ``data``."""
        try:
            if data:
                decoder = self._decoder
                if text is None:
                    events = decoder.feed_lines(data)
                elif self._received_done:
                    return
                else:
                    entry = self._common(text)
                    if entry is not None:
                        self._pending.append(entry)
                        return
                    events = [ServerSentEvent("message", text, decoder.last_id, None)]
            else:
                events = self._decoder.flush()
                if events and not self.started and not self._pending:
                    events = self._first_events_at_eof(events)
            for event in events:
                if self._received_done:
                    break
                self._event(event)
            if not data and not self._received_done:
                if not self.started and not self._pending:
                    raise GatewayConnectionError("the stream closed before its first event")
                raise GatewayStreamError("the stream ended before [DONE]: the answer is incomplete")
        except GatewayClientError as error:
            self._keep(error)

    def _keep(self, error: GatewayClientError) -> None:
        """An error of a read: raised now when no chunk is waiting, else kept for ``take``."""
        redact_error(error, self._secret)  # wire text may echo the token
        if not self._pending:
            raise error
        self._error = error

    def feed_take(self, data: bytes) -> Union[ChatCompletionChunk, _Signal]:
        """``feed(data)``, then ``take()``, as a client's loop does after ``take()`` asked for
        data. The common chunk read as one whole event, with nothing waiting before it, goes
        straight from the read to the caller."""
        if data and not self._pending and not self._received_done:
            text = self._decoder.whole_data(data)
            if text is not None:
                entry = self._common(text)
                if entry is not None:
                    return self._take_text(entry[0], entry[1], entry[2])
                try:  # any other event: the general path, as feed() takes it
                    self._event(ServerSentEvent("message", text, self._decoder.last_id, None))
                except GatewayClientError as error:
                    self._keep(error)
                return self.take()
            self._feed(data, None)  # not one whole event: the line machinery
            return self.take()
        self.feed(data)
        return self.take()

    def _common(self, data: str) -> Optional[_Common]:
        """The common chunk's entry, for an event's ``data``: one choice, index 0, a text-only
        delta, no finish_reason, no usage, no error. None for anything else (the general path
        then takes the event, with every check)."""
        try:
            obj = decode_json_text(data)
        except (ValueError, RecursionError):
            return None
        if type(obj) is not dict:
            return None
        choices = obj.get("choices")
        if type(choices) is not list or len(choices) != 1:
            return None
        choice = choices[0]
        if type(choice) is not dict or choice.get("finish_reason") is not None:
            return None
        index = choice.get("index", 0)
        delta = choice.get("delta")
        if index != 0 or type(index) is not int or type(delta) is not dict or len(delta) != 1:
            return None
        text = delta.get("content")
        if type(text) is not str or obj.get("usage") is not None or obj.get("error") is not None:
            return None
        return (_new_chunk(obj), obj, text)

    def _first_events_at_eof(self, events: List[ServerSentEvent]) -> List[ServerSentEvent]:
        # Events completed only by the end of the body, before any chunk: a body cut inside its
        # first event is a dropped connection (retryable), not a malformed stream.
        last = events[-1]
        try:
            json.loads(last.data) if last.data != "[DONE]" else None
        except (ValueError, RecursionError):
            return events[:-1]
        return events

    def read_failed(self, error: GatewayConnectionError) -> Exception:
        """The error to raise for a failed read: once a chunk was taken, a cut stream.

        Reads happen only when no chunk is waiting, so a failed read loses nothing received."""
        if not self.started or isinstance(error, GatewayTimeoutError):
            return error
        return GatewayStreamError(f"the stream was cut: {error.message}")

    def _event(self, event: ServerSentEvent) -> None:
        kind, data = event.event, event.data
        if kind != "message" and kind != "error":
            return  # keep-alives and other named events carry no chunk
        if data == "[DONE]":
            self._received_done = True
            self._pending.append(_DONE_ENTRY)
            return
        try:
            obj = decode_json_text(data)
        except (ValueError, RecursionError):
            raise GatewayStreamError(f"an event is not valid JSON: {data[:200]!r}") from None
        if type(obj) is not dict:
            raise GatewayStreamError(f"an event is not a JSON object: {data[:200]!r}")
        if kind == "error" or obj.get("error") is not None:
            raise error_from_event(obj, self._headers, secret=self._secret)
        self._chunk(obj)

    def _chunk(self, obj: Dict[str, Any]) -> None:
        choices = obj.get("choices")
        if choices:
            if type(choices) is not list:
                raise GatewayStreamError("a chunk's choices is not a list")
            for choice in choices:
                _check_choice(choice)
            self._pending.append((_new_chunk(obj), obj, None))
        elif self._hide_usage_chunk:
            # The usage chunk this client asked for, or one with nothing for the caller (Azure's
            # prompt_filter_results): taken in on the way, never yielded, so that
            # chunk["choices"][0] is always safe. Its other fields go into completion().
            self._pending.append((None, obj, None))
        else:
            self._pending.append((_new_chunk(obj), obj, None))

    def completion(self) -> ChatCompletion:
        """What has arrived so far as one ChatCompletion (the whole answer after the end)."""
        raw: Dict[str, Any] = {"object": "chat.completion", **self._extra, **self._head}
        raw["choices"] = [
            {"index": index, "message": parts.message(), "finish_reason": parts.finish_reason}
            for index, parts in sorted(self._choices.items())
        ]
        if self._usage is not None:
            raw["usage"] = self._usage
        return ChatCompletion._from_json(raw)
