"""batch_embeddings, for both clients: the inputs split into requests of ``batch_size``, each
checked before anything is sent, and the vectors put back in input order, base64 decoded."""

from __future__ import annotations

import array
import base64
import sys
from functools import partial
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Sequence, Tuple

from . import _batch
from ._batch import Pending, Run, check_concurrency, stops_on_any
from ._progress import Progress
from .errors import GatewayValidationError

if TYPE_CHECKING:
    from ._core import Call, GatewayCore

__all__ = ["decode_vector", "embeddings_run", "embeddings_vectors"]


def embeddings_run(
    core: GatewayCore,
    model: Any,
    inputs: Any,
    batch_size: Any,
    concurrency: Any,
    progress: bool,
    params: Dict[str, Any],
) -> Tuple[Run, int]:
    """Check an embeddings batch (each request of at most ``batch_size`` inputs built; the
    first ones kept to be sent as built): the Run that sends them, stopping at the first
    error, and the input count."""
    check_concurrency(concurrency)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise GatewayValidationError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(inputs, (str, bytes, Mapping)) or not isinstance(inputs, Sequence):
        raise GatewayValidationError("inputs must be a sequence of strings (a list, say)")
    for position, text in enumerate(inputs):
        if not isinstance(text, str) or not text:
            raise GatewayValidationError(f"inputs[{position}] must be a non-empty string")
    starts = range(0, len(inputs), batch_size)
    build = partial(_embeddings_slice, core, model, inputs, batch_size, params)
    # The first requests' Calls are kept from their check and sent as built, as a chat batch's
    # are (``_batch.KEPT_BYTES`` of them); later ones are built again when sent.
    kept: List[Call] = []
    room = _batch.KEPT_BYTES
    for start in starts:
        try:
            call = build(start)
        except GatewayValidationError as exc:
            raise GatewayValidationError(f"inputs[{start}:{start + batch_size}]: {exc}") from exc
        if room > 0:
            room -= len(call.request.body or b"") + _batch.CALL_BYTES
            kept.append(call)
    pending = (
        Pending(index, str(start), kept[index] if index < len(kept) else partial(build, start))
        for index, start in enumerate(starts)
    )
    bar = Progress(len(starts), unit="req", enabled=bool(progress))
    run = Run(pending, bar, results=[None] * len(starts), stops=stops_on_any)
    return run, len(inputs)


def _embeddings_slice(
    core: GatewayCore,
    model: Any,
    inputs: Sequence[str],
    size: int,
    params: Dict[str, Any],
    start: int,
) -> Call:
    """The Call for ``inputs[start:start + size]``."""
    return core.embeddings(model, list(inputs[start : start + size]), dict(params))


def embeddings_vectors(run: Run, count: int, batch_size: int) -> List[List[float]]:
    """The vectors in input order, decoded (base64 included); the run's first error raised."""
    if run.first_error is not None:
        raise run.first_error
    vectors: List[Any] = [None] * count
    for number, result in enumerate(run.results or ()):
        assert result is not None and result.response is not None
        offset = number * batch_size
        for position, item in enumerate(result.response._raw.get("data") or ()):
            index = item.get("index", position)
            vectors[offset + (index if type(index) is int else position)] = decode_vector(
                item.get("embedding")
            )
    return vectors


_NUMPY: List[Any] = []  # [numpy or None], looked for once


def _numpy() -> Any:
    if not _NUMPY:
        found: Any = None
        try:
            import numpy

            found = numpy
        except ImportError:
            pass
        _NUMPY.append(found)
    return _NUMPY[0]


def decode_vector(value: Any) -> Any:
    """A vector as floats: a base64 one (little-endian float32, OpenAI's
    ``encoding_format="base64"``) decoded with numpy when installed, else with ``array``, as
    the openai SDK does; a list as it is."""
    if not isinstance(value, str):
        return value
    raw = base64.b64decode(value)
    numpy = _numpy()
    if numpy is not None:
        return numpy.frombuffer(raw, dtype="<f4").tolist()
    floats = array.array("f", raw)
    if sys.byteorder == "big":
        floats.byteswap()
    return floats.tolist()
