"""Batches, written once for both clients: checking every item before anything is sent, the
results in input order, the 401 that stops what has not been sent, and the checkpoint file.

Every item is checked first by the core's own checks of a single call (its Call built and kept
for the first ones, ``check_chat`` alone past ``KEPT_BYTES``). A run hands its runner (threads
in ``_batch_threads``, tasks in ``_batch_tasks``) the next item to send as its ``Call``, built
once; the runner sends it with the client's retries, fallbacks and rate budget and hands back
the outcome. Outcomes become checkpoint lines in the OpenAI Batch API's
output format, written, flushed and fsynced before they count; an item is counted, and frees
its place among the ``concurrency`` in flight, only then, so that a run killed at any moment
has at most ``concurrency`` items sent and not on file. ``gatewayclient.batch`` reads the
Batch API's input format for the command line.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from functools import partial
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Generic,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from ._core import Call
from ._progress import Progress
from .errors import GatewayAuthError, GatewayClientError, GatewayValidationError
from .models import ChatCompletion

if TYPE_CHECKING:
    from ._core import ChatArgs, CheckedChat, GatewayCore

__all__ = [
    "BatchResult",
    "Checkpoint",
    "Outcome",
    "Pending",
    "Run",
    "chat_call",
    "chat_run",
    "check_concurrency",
    "embeddings_call",
]

T = TypeVar("T")
PathLike = Union[str, "os.PathLike[str]"]
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True)
class BatchResult(Generic[T]):
    """One item's outcome: its ``custom_id``, and its ``response`` or its typed ``error``."""

    custom_id: str
    response: Optional[T] = None
    error: Optional[GatewayClientError] = None

    @property
    def ok(self) -> bool:
        return self.error is None


# -- building and checking items ---------------------------------------------------------------


_PLAIN_ITEM = frozenset({"custom_id", "model", "messages"})


def _chat_args(item: Mapping[str, Any]) -> ChatArgs:
    """``chat_completion``'s arguments in ``item`` (a ``custom_id`` key aside)."""
    if item.keys() <= _PLAIN_ITEM:  # the common item: no copy of it needed
        return item.get("model"), item.get("messages"), None, None, None, {}
    params = {key: value for key, value in item.items() if key != "custom_id"}
    model, messages = params.pop("model", None), params.pop("messages", None)
    temperature, max_tokens = params.pop("temperature", None), params.pop("max_tokens", None)
    return model, messages, temperature, max_tokens, params.pop("top_p", None), params


def chat_call(core: GatewayCore, item: Mapping[str, Any]) -> Call:
    """The Call of ``chat_completion(**item)`` (a ``custom_id`` key aside): every check runs."""
    return core.chat(*_chat_args(item))


def embeddings_call(core: GatewayCore, item: Mapping[str, Any]) -> Call:
    """The Call of ``embeddings(**item)``."""
    params = dict(item)
    model, text = params.pop("model", None), params.pop("input", None)
    return core.embeddings(model, text, params)


def check_concurrency(concurrency: Any) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise GatewayValidationError(f"concurrency must be an int >= 1, got {concurrency!r}")
    return concurrency


def _custom_id(request: Mapping[str, Any], position: int) -> str:
    custom_id = request.get("custom_id", None)
    if custom_id is None:
        return str(position)
    if not isinstance(custom_id, str) or not custom_id:
        raise GatewayValidationError(
            f"requests[{position}]: custom_id must be a non-empty string, got {custom_id!r}"
        )
    return custom_id


# A batch's first calls are kept as built for their check and sent as they are (a batch's first
# items go at once); past this many bytes of them (a built call holds about 1.4 KB besides its
# body), items are checked without building their calls, each built when it is sent, so a long
# batch never holds its requests twice.
KEPT_BYTES = 16 * 1024 * 1024
CALL_BYTES = 1400


def check_chat_requests(
    core: GatewayCore, requests: Iterable[Mapping[str, Any]]
) -> List[Tuple[str, Union[Call, CheckedChat]]]:
    """Each request's custom_id with its Call (kept while they fit in ``KEPT_BYTES``) or, past
    that, what ``core.check_chat`` passed (every check of the call, which is built when it is
    sent); a bad one or a repeated custom_id is a GatewayValidationError naming it."""
    if isinstance(requests, (str, bytes, Mapping)):
        raise GatewayValidationError("requests must be an iterable of mappings, one per call")
    checked: List[Tuple[str, Union[Call, CheckedChat]]] = []
    first: Dict[str, int] = {}
    room = KEPT_BYTES
    for position, request in enumerate(requests):
        if not isinstance(request, Mapping):
            raise GatewayValidationError(
                f"requests[{position}] must be a mapping of chat_completion's arguments, "
                f"got {type(request).__name__}"
            )
        custom_id = _custom_id(request, position)
        if custom_id in first:
            raise GatewayValidationError(
                f"requests[{position}]: custom_id {custom_id!r} repeats "
                f"requests[{first[custom_id]}]"
            )
        first[custom_id] = position
        try:
            if room > 0:
                call = core.chat(*_chat_args(request))
                room -= len(call.request.body or b"") + CALL_BYTES
                checked.append((custom_id, call))
            else:
                checked.append((custom_id, core.check_chat(_chat_args(request))))
        except GatewayValidationError as exc:
            raise GatewayValidationError(
                f"requests[{position}] (custom_id {custom_id!r}): {exc}"
            ) from exc
    return checked


# -- the checkpoint file -------------------------------------------------------------------------


def answer_line(custom_id: str, call: Call, answer: Any) -> Dict[str, Any]:
    """A success in the Batch API's output format (``response.body``: the answer's JSON)."""
    return {
        "id": f"batch_req_{os.urandom(12).hex()}",
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "request_id": answer._request_id,
            "body": answer._raw,
        },
        "error": None,
    }


def error_line(custom_id: str, error: GatewayClientError) -> Dict[str, Any]:
    """A failure: ``error`` says what went wrong; ``response`` holds the gateway's error answer
    when there was one (never a 2xx, so it is never taken for an answer)."""
    response = None
    if error.status_code is not None:
        response = {
            "status_code": error.status_code,
            "request_id": error.request_id,
            "body": error.body,
        }
    code = error.error_code if error.error_code is not None else type(error).__name__
    return {
        "id": f"batch_req_{os.urandom(12).hex()}",
        "custom_id": custom_id,
        "response": response,
        "error": {"code": str(code), "message": str(error)},
    }


def stored_answer(line: Any) -> Optional[Any]:
    """The answer's JSON when ``line`` records a success, else None."""
    response = line.get("response")
    if line.get("error") is not None or not isinstance(response, dict):
        return None
    status = response.get("status_code")
    body = response.get("body")
    if type(status) is not int or not 200 <= status < 300 or not isinstance(body, dict):
        return None
    return body


class Checkpoint:
    """A checkpoint file: read once (``lines``), then appended to (``write``: flushed and
    fsynced before it returns). A torn last line, the mark of a process killed mid-write, is
    ignored and cut off before the first append; any other line that is not a Batch API output
    line is a GatewayValidationError, nothing sent (it is not a file to write into)."""

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()  # a write in a worker thread against close()
        self._file: Optional[Any] = None
        self._end = 0  # where the last whole line ends

    def lines(self) -> Iterator[Tuple[str, Any]]:
        """Each whole line's ``(custom_id, line)``, in order; nothing for a missing file."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                if not raw.endswith(b"\n"):
                    return  # torn: never fsynced whole, so never counted
                self._end += len(raw)
                if raw.strip():
                    yield self._parse(number, raw)

    def _parse(self, number: int, raw: bytes) -> Tuple[str, Any]:
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        custom_id = line.get("custom_id") if isinstance(line, dict) else None
        if not isinstance(custom_id, str):
            raise GatewayValidationError(
                f"checkpoint {self.path!r}: line {number} is not a batch output line "
                "(a JSON object with a custom_id)"
            )
        return custom_id, line

    def open(self) -> None:
        handle = open(self.path, "ab")  # noqa: SIM115 - kept open for the run, closed by close()
        if handle.tell() > self._end:
            handle.truncate(self._end)
        self._file = handle

    def write(self, lines: Sequence[bytes]) -> None:
        """Append ``lines``; they are on disk when this returns."""
        with self._lock:
            handle = self._file
            if handle is None or not lines:
                return
            handle.write(b"".join(lines))
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        with self._lock:
            handle, self._file = self._file, None
        if handle is not None:
            handle.close()


# -- a run ---------------------------------------------------------------------------------------


class Pending(NamedTuple):
    """An item still to send: its place, its custom_id, and its Call or how to build it."""

    position: int
    custom_id: str
    build: Union[Call, Callable[[], Call]]


class Outcome(NamedTuple):
    """What became of a sent item: the call that answered (the last fallback tried) and the
    answer, or the error."""

    item: Pending
    call: Optional[Call]
    answer: Any
    error: Optional[GatewayClientError]


def _stops_on_401(error: GatewayClientError) -> bool:
    return isinstance(error, GatewayAuthError) and error.status_code == 401


def stops_on_any(error: GatewayClientError) -> bool:
    return True


class Run:
    """One batch's bookkeeping, driven by a runner from one thread (or task): ``next()`` gives
    the next item to send, ``write(outcomes)`` puts them on file, ``count(outcomes)`` takes them
    in. ``results`` (when kept) are in input order."""

    def __init__(
        self,
        pending: Iterator[Pending],
        progress: Progress,
        *,
        results: Optional[List[Optional[BatchResult[Any]]]] = None,
        checkpoint: Optional[Checkpoint] = None,
        stops: Callable[[GatewayClientError], bool] = _stops_on_401,
    ) -> None:
        self._pending = pending
        self.progress = progress
        self.results = results
        self.checkpoint = checkpoint
        self._stops = stops
        self.stopped_by: Optional[GatewayClientError] = None
        self.first_error: Optional[GatewayClientError] = None
        self.sent = self.answered = self.failed = 0

    def next(self) -> Optional[Tuple[Pending, Call]]:
        """The next item and its Call; None once all are sent or the run was stopped."""
        if self.stopped_by is not None:
            return None
        item = next(self._pending, None)
        if item is None:
            return None
        self.sent += 1
        build = item.build
        return item, build if type(build) is Call else build()  # type: ignore[operator]

    @property
    def todo(self) -> int:
        """How many items the run has to send (the bar's total less what was on file)."""
        return self.progress.total - self.progress.done

    def stop_on(self, outcome: Outcome) -> None:
        """Stop handing out items at once if ``outcome`` is an error that stops the run (a 401
        for chat); ``count`` does it too, for runners that count before handing out more."""
        error = outcome.error
        if error is not None and self.stopped_by is None and self._stops(error):
            self.stopped_by = error

    def lines(self, outcomes: Sequence[Outcome]) -> List[bytes]:
        """The checkpoint lines of ``outcomes``."""
        if self.checkpoint is None:
            return []
        return [
            (_ENCODE(self._line(outcome)) + "\n").encode("utf-8", "surrogatepass")
            for outcome in outcomes
        ]

    def _line(self, outcome: Outcome) -> Dict[str, Any]:
        custom_id = outcome.item.custom_id
        if outcome.error is not None:
            return error_line(custom_id, outcome.error)
        assert outcome.call is not None
        return answer_line(custom_id, outcome.call, outcome.answer)

    def write(self, outcomes: Sequence[Outcome]) -> None:
        """Put ``outcomes`` on file, fsynced (blocking; nothing without a checkpoint)."""
        if self.checkpoint is not None and outcomes:
            self.checkpoint.write(self.lines(outcomes))

    def count(self, outcomes: Sequence[Outcome]) -> None:
        """Take in outcomes that are on file: results, progress, and the stop they may call."""
        for item, _, answer, error in outcomes:
            self.count_one(item, answer, error)

    def count_one(self, item: Pending, answer: Any, error: Optional[GatewayClientError]) -> None:
        """``count`` of one outcome (a runner without a checkpoint counts as each one ends)."""
        if error is None:
            self.answered += 1
        else:
            self.failed += 1
            self.first_error = self.first_error or error
            if self.stopped_by is None and self._stops(error):
                self.stopped_by = error
        if self.results is not None:
            self.results[item.position] = BatchResult(item.custom_id, answer, error)
        progress = self.progress
        if progress.shown:
            progress.advance(1, error is not None, 0 if error else _total_tokens(answer))

    def finish(self) -> None:
        """After the last outcome: what was never sent carries the error that stopped the run."""
        stop = self.stopped_by
        if stop is not None and self.results is not None:
            for item in self._pending:
                self.results[item.position] = BatchResult(item.custom_id, None, stop)

    def close(self) -> None:
        self.progress.close()
        if self.checkpoint is not None:
            self.checkpoint.close()


def _total_tokens(answer: Any) -> int:
    usage = answer._raw.get("usage") if answer is not None else None
    total = usage.get("total_tokens") if isinstance(usage, dict) else None
    return total if type(total) is int else 0


def _to_send(
    core: GatewayCore, passed: Union[Call, CheckedChat]
) -> Union[Call, Callable[[], Call]]:
    """The Call kept from an item's check, or how to build it from what its check passed."""
    if isinstance(passed, Call):
        return passed
    return partial(core.checked_chat, *passed)


def chat_run(
    core: GatewayCore,
    requests: Iterable[Mapping[str, Any]],
    concurrency: Any,
    progress: bool,
    checkpoint: Optional[PathLike],
) -> Run:
    """Check a chat batch and read its checkpoint: the Run that sends what has no answer yet."""
    check_concurrency(concurrency)
    checked = check_chat_requests(core, requests)
    stored: Dict[str, Any] = {}
    file = None
    if checkpoint is not None:
        file = Checkpoint(checkpoint)
        wanted = {custom_id for custom_id, _ in checked}
        for custom_id, line in file.lines():
            body = stored_answer(line) if custom_id in wanted else None
            if body is not None:
                stored[custom_id] = body
        file.open()
    results: List[Optional[BatchResult[Any]]] = [
        BatchResult(custom_id, ChatCompletion._from_json(stored[custom_id]))
        if custom_id in stored
        else None
        for custom_id, _ in checked
    ]
    pending = (
        Pending(index, custom_id, _to_send(core, passed))
        for index, (custom_id, passed) in enumerate(checked)
        if custom_id not in stored
    )
    bar = Progress(len(checked), done=len(stored), enabled=bool(progress))
    return Run(pending, bar, results=results, checkpoint=file)
