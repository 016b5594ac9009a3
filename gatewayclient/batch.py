"""Run an OpenAI Batch API input file, as ``gatewayclient batch`` does, in bounded memory.

``run_file(client, "requests.jsonl", "answers.jsonl")`` checks every line in a first pass that
keeps no line (only a 16-byte digest of each ``custom_id``, to find a repeated one), then sends
in a second pass that holds only the items in flight, appending each finished one to the output
file in the Batch API's output format; a second run with the same output file sends only what
has no answer there yet. Lines are ``{"custom_id", "method": "POST", "url", "body"}`` for
``/v1/chat/completions`` (``body``: ``chat_completion``'s arguments) and ``/v1/embeddings``
(``embeddings``' arguments).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from functools import partial
from typing import Any, Awaitable, Callable, Dict, Iterator, Mapping, Optional, Set, Tuple, Union

from ._batch import (
    BatchResult,
    Checkpoint,
    PathLike,
    Pending,
    Run,
    chat_call,
    check_concurrency,
    embeddings_call,
    stored_answer,
)
from ._progress import Progress
from .errors import GatewayClientError, GatewayValidationError

__all__ = ["BatchResult", "FileReport", "run_file"]

_BUILDERS: Mapping[str, Callable[[Any, Mapping[str, Any]], Any]] = {
    "/v1/chat/completions": chat_call,
    "/v1/embeddings": embeddings_call,
}


@dataclass(frozen=True)
class FileReport:
    """What a run of a batch file did: lines ``answered`` and ``failed`` by this run,
    ``stored`` (answered by an earlier run, not sent), and ``unsent`` (a 401 stopped the run:
    ``stopped_by``); the output file holds one line for each answered or failed item."""

    total: int
    answered: int
    failed: int
    stored: int
    unsent: int
    stopped_by: Optional[GatewayClientError]


def run_file(
    client: Any, input: PathLike, output: PathLike, *, concurrency: int = 8, progress: bool = False
) -> Union[FileReport, Awaitable[FileReport]]:
    """Check ``input`` whole, then send what has no answer in ``output`` yet, at most
    ``concurrency`` at once, with the client's retries, fallbacks and rate budget. A bad line
    is a GatewayValidationError naming its number, nothing sent. With an AsyncGatewayClient,
    await the result."""
    check_concurrency(concurrency)
    core = client._core
    checkpoint = Checkpoint(output)
    # Each answered custom_id's digest, marked once the input names it: answered lines are
    # kept out of the first pass's own set, so a resumed run holds one digest a line.
    answered = {
        _digest(custom_id): False for custom_id, line in checkpoint.lines() if stored_answer(line)
    }
    total, stored = _check(core, input, answered)
    checkpoint.open()
    pending = (
        Pending(number, custom_id, partial(build, core, body))
        for number, custom_id, build, body in _lines(input)
        if _digest(custom_id) not in answered
    )
    bar = Progress(total, done=stored, enabled=bool(progress))
    run = Run(pending, bar, checkpoint=checkpoint)
    ran = client._run_batch(run, concurrency)
    if inspect.isawaitable(ran):
        return _later(ran, total, stored)
    return _report(run, total, stored)


async def _later(ran: Awaitable[Run], total: int, stored: int) -> FileReport:
    return _report(await ran, total, stored)


def _report(run: Run, total: int, stored: int) -> FileReport:
    unsent = total - stored - run.answered - run.failed
    return FileReport(total, run.answered, run.failed, stored, unsent, run.stopped_by)


def _digest(custom_id: str) -> bytes:
    return hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _check(core: Any, input: PathLike, answered: Dict[bytes, bool]) -> Tuple[int, int]:
    """First pass: every line checked, its Call built and dropped; (lines, already answered)."""
    seen: Set[bytes] = set()
    total = stored = 0
    for number, custom_id, build, body in _lines(input):
        digest = _digest(custom_id)
        if answered.get(digest, digest in seen):
            raise GatewayValidationError(f"line {number}: custom_id {custom_id!r} is repeated")
        if digest in answered:
            answered[digest] = True
            stored += 1
        else:
            seen.add(digest)
        try:
            build(core, body)
        except GatewayValidationError as exc:
            raise GatewayValidationError(f"line {number} ({custom_id!r}): {exc}") from exc
        total += 1
    return total, stored


def _lines(input: PathLike) -> Iterator[Tuple[int, str, Callable[[Any, Any], Any], Any]]:
    """Each request line's number, custom_id, builder and body (blank lines skipped)."""
    with open(input, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if raw.strip():
                yield (number, *_parse(number, raw))


def _parse(number: int, raw: bytes) -> Tuple[str, Callable[[Any, Any], Any], Any]:
    try:
        line = json.loads(raw)
    except (ValueError, RecursionError):
        raise GatewayValidationError(f"line {number} is not JSON") from None
    if not isinstance(line, dict):
        raise GatewayValidationError(f"line {number} is not a JSON object")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise GatewayValidationError(f"line {number}: custom_id must be a non-empty string")
    method, url, body = line.get("method", "POST"), line.get("url"), line.get("body")
    build = _BUILDERS.get(url) if isinstance(url, str) else None
    if method != "POST" or build is None:
        raise GatewayValidationError(
            f"line {number}: expected method POST and url /v1/chat/completions or "
            f"/v1/embeddings, got {method!r} {url!r}"
        )
    if not isinstance(body, dict):
        raise GatewayValidationError(f"line {number}: body must be a JSON object")
    return custom_id, build, body
