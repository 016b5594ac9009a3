"""OpenTelemetry spans and metrics, in the GenAI semantic conventions, for both clients: the only
module that imports opentelemetry, and only once a call is made with ``opentelemetry-api``
installed. Without it every function here returns at once. It uses the tracer and meter
providers the application configured (or none: the API's no-ops), and never sets one.

A call is one ``Observation``: a CLIENT span named ``chat {model}`` / ``embeddings {model}``
(or the discovery method's name), made current while the call runs so that retries, fallbacks
and rate-budget waits land on it as events, ended with the answer or the error; and the
``gen_ai.client.operation.duration`` and ``gen_ai.client.token.usage`` histograms. The token
never reaches an attribute: nothing here reads a request's headers.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

from ._version import __version__

__all__ = ["Observation", "arun", "event", "observe", "run", "stream_ended"]

CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# The conventions' advisory bucket boundaries (seconds; tokens).
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92]  # fmt: skip
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                 16777216, 67108864]  # fmt: skip
# gen_ai.provider.name's well-known values, by the prefix of a gateway's model name.
_PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "azure": "azure.ai.openai",
    "mistral": "mistral_ai",
    "cohere": "cohere",
    "groq": "groq",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
    "xai": "x_ai",
    "bedrock": "aws.bedrock",
    "ibm": "ibm.watsonx.ai",
}
# Request fields recorded as gen_ai.request.* (the conventions' names).
_SAMPLING = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
    "stop": "gen_ai.request.stop_sequences",
    "encoding_format": "gen_ai.request.encoding_formats",
}


class _Instruments:
    """The opentelemetry API's objects, made once (proxies: they follow providers set later)."""

    def __init__(self) -> None:
        from opentelemetry import metrics, trace

        self.trace = trace
        self.tracer = trace.get_tracer("gatewayclient", __version__)
        meter = metrics.get_meter("gatewayclient", __version__)
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.client_kind = trace.SpanKind.CLIENT
        self.error_status = trace.Status(trace.StatusCode.ERROR)
        self._metrics = metrics
        # Until the application sets a provider there is nothing to record, and a call skips
        # all of this. The API's getters cost two environment lookups a call (they may load a
        # provider named by OTEL_PYTHON_*_PROVIDER); its globals, read directly, cost nothing.
        # Where a variable names a provider, or the globals are not where this API version
        # keeps them, the getters are asked instead.
        import opentelemetry.metrics._internal as metrics_internal

        self._globals = (trace, metrics_internal)
        self._fast = all(
            hasattr(module, name)
            for module, name in zip(self._globals, ("_TRACER_PROVIDER", "_METER_PROVIDER"))
        ) and not any(
            name in os.environ
            for name in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")
        )
        self._unset_tracer = trace.ProxyTracerProvider
        self._unset_meter = type(metrics.get_meter_provider())
        self._servers: Dict[str, Dict[str, Any]] = {}

    def configured(self) -> bool:
        """Whether the application has set a tracer or a meter provider."""
        if self._fast:
            tracing, metering = self._globals
            return tracing._TRACER_PROVIDER is not None or metering._METER_PROVIDER is not None
        return not isinstance(self.trace.get_tracer_provider(), self._unset_tracer) or (
            type(self._metrics.get_meter_provider()) is not self._unset_meter
        )

    def server(self, root: str) -> Dict[str, Any]:
        """server.address and server.port of an API root (computed once per root)."""
        found = self._servers.get(root)
        if found is None:
            from urllib.parse import urlsplit

            parts = urlsplit(root)
            found = {
                "server.address": parts.hostname or "",
                "server.port": parts.port or (443 if parts.scheme == "https" else 80),
            }
            if len(self._servers) < 64:
                self._servers[root] = found
        return found


_instruments: Any = None  # None: not looked for yet; False: opentelemetry is not installed


def _get() -> Optional[_Instruments]:
    global _instruments
    if _instruments is None:
        try:
            _instruments = _Instruments()
        except ImportError:
            _instruments = False
    return _instruments or None


def provider_of(model: Optional[str]) -> str:
    prefix = model.split("/", 1)[0] if model and "/" in model else ""
    return _PROVIDERS.get(prefix, prefix or "_OTHER")


class Observation:
    """One call's span and metrics: ``with observation.current():`` while it runs, then
    ``succeeded(answer)`` or ``failed(error)``, then ``end()`` (once, whatever happened)."""

    def __init__(
        self, tools: _Instruments, span: Any, metric: Optional[Dict[str, Any]], body: Any
    ) -> None:
        self._tools = tools
        self.span = span
        self._metric = metric  # the histograms' attributes (None: not a GenAI operation)
        self._body = body
        self._started = time.monotonic()
        self._ended = False

    @contextmanager
    def current(self) -> Iterator[None]:
        with self._tools.trace.use_span(self.span, end_on_exit=False, record_exception=False):
            yield

    def succeeded(self, answer: Any) -> None:
        if self._metric is not None and hasattr(answer, "get"):
            self._record_answer(answer, self._metric)

    def failed(self, error: BaseException) -> None:
        kind = type(error).__name__
        if self._metric is not None:
            self._metric["error.type"] = kind
        if self.span.is_recording():
            self.span.set_attribute("error.type", kind)
            self.span.set_status(self._tools.error_status)

    def end(self, **attributes: Any) -> None:
        if self._ended:
            return
        self._ended = True
        if attributes and self.span.is_recording():
            self.span.set_attributes(attributes)
        self.span.end()
        if self._metric is not None:
            self._tools.duration.record(time.monotonic() - self._started, self._metric)

    def _record_answer(self, answer: Any, metric: Dict[str, Any]) -> None:
        model = answer.get("model")
        if isinstance(model, str):
            metric["gen_ai.response.model"] = model
        usage = answer.get("usage")
        counts = _token_counts(usage)
        for kind, count in counts:
            self._tools.tokens.record(count, {**metric, "gen_ai.token.type": kind})
        span = self.span
        if not span.is_recording():
            return
        attributes: Dict[str, Any] = {f"gen_ai.usage.{kind}_tokens": n for kind, n in counts}
        if isinstance(model, str):
            attributes["gen_ai.response.model"] = model
        if isinstance(answer.get("id"), str):
            attributes["gen_ai.response.id"] = answer.get("id")
        reasons = _finish_reasons(answer.get("choices"))
        if reasons:
            attributes["gen_ai.response.finish_reasons"] = reasons
        if _capturing() and answer.get("choices") is not None:
            attributes["gen_ai.output.messages"] = _output_messages(answer.get("choices"))
        span.set_attributes(attributes)


def _token_counts(usage: Any) -> List[Tuple[str, int]]:
    if not hasattr(usage, "get"):
        return []
    counts = [("input", usage.get("prompt_tokens")), ("output", usage.get("completion_tokens"))]
    return [(kind, n) for kind, n in counts if type(n) is int and n >= 0]


def _finish_reasons(choices: Any) -> List[str]:
    if not isinstance(choices, list):
        return []
    reasons = [c.get("finish_reason") for c in choices if isinstance(c, dict)]
    return [reason for reason in reasons if isinstance(reason, str)]


def _capturing() -> bool:
    return os.environ.get(CAPTURE, "").strip().lower() == "true"


def _parts(content: Any) -> List[Dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, list):
        return [
            {"type": "text", "content": part["text"]}
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
    return []


def _input_messages(messages: Any) -> str:
    shaped = [
        {"role": message.get("role"), "parts": _parts(message.get("content"))}
        for message in messages or ()
        if isinstance(message, dict)
    ]
    return json.dumps(shaped, ensure_ascii=False, default=str)


def _output_messages(choices: Any) -> str:
    shaped = []
    for choice in choices if isinstance(choices, list) else ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            shaped.append(
                {
                    "role": message.get("role") or "assistant",
                    "parts": _parts(message.get("content")),
                    "finish_reason": choice.get("finish_reason"),
                }
            )
    return json.dumps(shaped, ensure_ascii=False, default=str)


_GENAI = frozenset({"chat", "embeddings"})


def observe(call: Any, root: str) -> Optional[Observation]:
    """A started Observation for a call (its ``operation``, ``model`` and ``body``), or None
    when opentelemetry is not installed. ``chat`` and ``embeddings`` make GenAI spans and
    metrics; a discovery call (``list_models`` ...) a plain CLIENT span of that name. ``root``
    is the API root the request goes to (server.address and server.port)."""
    tools = _get()
    if tools is None or not tools.configured():
        return None
    server = tools.server(root)
    operation, model = call.operation, call.model
    if operation not in _GENAI:
        span = tools.tracer.start_span(operation, kind=tools.client_kind, attributes=server)
        return Observation(tools, span, None, None)
    metric: Dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": provider_of(model),
        "gen_ai.request.model": model,
        **server,
    }
    span = tools.tracer.start_span(
        f"{operation} {model}", kind=tools.client_kind, attributes=metric
    )
    if span.is_recording() and isinstance(call.body, dict):
        span.set_attributes(_request_attributes(call.body))
    return Observation(tools, span, metric, call.body)


def _request_attributes(body: Dict[str, Any]) -> Dict[str, Any]:
    attributes: Dict[str, Any] = {}
    for field, name in _SAMPLING.items():
        value = body.get(field)
        if value is None:
            continue
        if name.endswith(("stop_sequences", "encoding_formats")):
            value = [value] if isinstance(value, str) else list(value)
        if isinstance(value, (bool, int, float, str, list)):
            attributes[name] = value
    if _capturing() and "messages" in body:
        attributes["gen_ai.input.messages"] = _input_messages(body["messages"])
    return attributes


def stream_ended(
    observation: Optional[Observation], how: str, answer: Any, error: Optional[BaseException]
) -> None:
    """End a stream's span: ``how`` it ended (done, closed, cancelled, failed), what had
    reached the caller (``answer``, for usage and finish reasons), the error if it failed."""
    if observation is None:
        return
    if error is not None and how == "failed":
        observation.failed(error)
    elif answer is not None:
        observation.succeeded(answer)
    observation.end(**{"gatewayclient.stream.end": how})


def event(name: str, **attributes: Any) -> None:
    """An event on the current span (a retry, a fallback, a wait for the rate budget)."""
    tools = _instruments or None  # never imports: an event needs a call already observed
    if tools is None:
        return
    span = tools.trace.get_current_span()
    if span.is_recording():
        span.add_event(name, {k: v for k, v in attributes.items() if v is not None})


T = TypeVar("T")


def _itself(result: Any) -> Any:
    return result


def run(
    observation: Observation, call: Callable[[], T], answer_of: Callable[[T], Any] = _itself
) -> T:
    """``call()`` with ``observation``'s span current, recorded and ended with its outcome
    (``answer_of`` finds the answer in what ``call`` returns)."""
    try:
        with observation.current():
            result = call()
    except BaseException as error:
        observation.failed(error)
        observation.end()
        raise
    observation.succeeded(answer_of(result))
    observation.end()
    return result


async def arun(
    observation: Observation,
    call: Callable[[], Awaitable[T]],
    answer_of: Callable[[T], Any] = _itself,
) -> T:
    """The awaitable twin of ``run``."""
    try:
        with observation.current():
            result = await call()
    except BaseException as error:
        observation.failed(error)
        observation.end()
        raise
    observation.succeeded(answer_of(result))
    observation.end()
    return result
