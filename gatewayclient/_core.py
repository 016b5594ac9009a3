"""The sans-I/O core shared by both clients: requests to send, answers to make of responses.

Nothing here opens a socket, sleeps or knows an event loop. A client asks ``GatewayCore`` for a
``Call`` (the request to send and how to read its answer), sends it, and hands back the status,
headers and body; for streams it feeds the received bytes to a ``StreamState``.
"""

from __future__ import annotations

import json
import os
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar
from urllib.parse import quote

from ._checks import (
    CallOptions,
    call_options,
    check_input,
    check_messages,
    check_model,
    check_parameter_names,
    check_provider,
    check_sampling,
    encode_json,
)
from ._json_model import decode_json_text
from ._stream import END, END_READS, NEED_DATA, StreamState
from ._usage import UsageTotals, UsageTracker
from ._version import __version__
from .budget import estimate_tokens
from .config import ClientConfig, RetryPolicy, merge_headers
from .errors import (
    GatewayClientError,
    GatewayResponseError,
    GatewayStreamError,
    GatewayValidationError,
    error_from_event,
    error_from_response,
    redact_error,
    request_id_from,
)
from .models import ChatCompletion, EmbeddingResponse, GatewayObject, ModelList, ProviderModels

__all__ = [
    "END",
    "END_READS",
    "NEED_DATA",
    "Call",
    "GatewayCore",
    "Request",
    "StreamCall",
    "StreamState",
    "UsageTotals",
    "UsageTracker",
]

_FALLBACK_STATUSES = (404, 405)
# chat()'s arguments: model, messages, temperature, max_tokens, top_p and the other parameters
ChatArgs = Tuple[Any, Any, Any, Any, Any, Dict[str, Any]]
CheckedChat = Tuple[Dict[str, Any], CallOptions, Tuple[str, ...]]  # what check_chat passed
_DEFAULT_POLICY = RetryPolicy()


class Request:
    """One HTTP request, ready for a transport: method, absolute URL, headers and body bytes."""

    __slots__ = ("body", "headers", "method", "path", "timeout", "url")

    def __init__(
        self,
        method: str,
        url: str,
        path: str,
        headers: Dict[str, str],
        body: Optional[bytes],
        timeout: Optional[float],
    ) -> None:
        self.method = method
        self.url = url
        self.path = path
        self.headers = headers
        self.body = body
        self.timeout = timeout

    @property
    def label(self) -> str:
        """``METHOD URL``, for logs and errors (the headers, which carry the token, never)."""
        return f"{self.method} {self.url}"

    def __repr__(self) -> str:
        return f"Request({self.label})"


class Call:
    """A request, the retry policy it runs under, and how to read its answer; ``handle`` may
    answer with a follow-up Call."""

    __slots__ = (
        "body",
        "cost",
        "fallback",
        "model",
        "next_models",
        "operation",
        "parse",
        "policy",
        "request",
        "retarget",
        "secret",
    )

    def __init__(
        self,
        request: Request,
        parse: Callable[[Any], Any],
        secret: Optional[str],
        fallback: Optional[Callable[[], Call]] = None,
        policy: Optional[RetryPolicy] = None,
    ) -> None:
        self.request = request
        self.parse = parse
        self.secret = secret
        self.fallback = fallback  # a provider route's answer from /models instead
        self.policy = _DEFAULT_POLICY if policy is None else policy
        self.model: Optional[str] = None
        self.operation = "call"  # chat, embeddings, or the discovery method's name (telemetry)
        self.body: Optional[Dict[str, Any]] = None  # a POST's JSON, before encoding
        self.cost = 0  # the tokens a rate budget reserves for it
        self.next_models: Tuple[str, ...] = ()  # fallback models still to try
        self.retarget: Optional[Callable[[str], Call]] = None  # this call, for another model

    def handle(self, status: int, headers: Mapping[str, str], body: bytes) -> Any:
        if 200 <= status < 300:
            try:
                result = self.parse(decode_json(body))
            except GatewayClientError as error:
                raise redact_error(error, self.secret) from error.__cause__  # may echo the token
            if isinstance(result, GatewayObject):
                result._request_id = request_id_from(headers, self.secret)
            return result
        if self.fallback is not None and status in _FALLBACK_STATUSES:
            return self.fallback()
        raise error_from_response(status, headers, body, secret=self.secret)


class StreamCall:
    """A streaming chat request: checks the response head, then makes a StreamState of it."""

    __slots__ = (
        "body",
        "cost",
        "hide_usage_chunk",
        "model",
        "next_models",
        "operation",
        "policy",
        "request",
        "retarget",
        "secret",
        "usage",
    )

    def __init__(
        self,
        request: Request,
        model: str,
        usage: UsageTracker,
        hide_usage_chunk: bool,
        secret: Optional[str],
        policy: Optional[RetryPolicy] = None,
    ) -> None:
        self.request = request
        self.model = model
        self.usage = usage
        self.hide_usage_chunk = hide_usage_chunk
        self.secret = secret
        self.policy = _DEFAULT_POLICY if policy is None else policy  # opening is retried
        self.operation = "chat"
        self.body: Optional[Dict[str, Any]] = None
        self.cost = 0
        self.next_models: Tuple[str, ...] = ()
        self.retarget: Optional[Callable[[str], StreamCall]] = None

    def new_state(self) -> StreamState:
        return StreamState(self.model, self.usage, self.hide_usage_chunk, self.secret)

    def accepts(self, status: int, headers: Mapping[str, str]) -> bool:
        """Whether the response is an event stream (else its whole body goes to ``reject``)."""
        content_type = headers.get("content-type") or "text/event-stream"
        # RFC 9110 section 8.3.1: type and subtype are case-insensitive.
        return 200 <= status < 300 and content_type[:17].lower() == "text/event-stream"

    def reject(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayClientError:
        if not 200 <= status < 300:
            return error_from_response(status, headers, body, secret=self.secret)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict) and "error" in data:
            return error_from_event(data, headers, secret=self.secret)
        content_type = headers.get("content-type", "")
        error = GatewayStreamError(
            f"expected an event stream, got {content_type or 'no content type'}",
            status_code=status,
        )
        return redact_error(error, self.secret)  # header text may echo the token


AnyCall = TypeVar("AnyCall", Call, StreamCall)


def decode_json(body: bytes) -> Any:
    try:
        # The common answer: UTF-8 JSON from its first byte (json.loads(bytes) would look for
        # UTF-16 and -32 first). Anything else takes json.loads's whole path below.
        return decode_json_text(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        pass
    if not body.strip():
        raise GatewayResponseError("the gateway answered with an empty body where JSON was due")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        preview = body[:200].decode("utf-8", "replace")
        raise GatewayResponseError(
            f"the gateway's answer is not valid JSON: {preview!r}", body=preview
        ) from exc


class GatewayCore:
    """Builds every Call of the API for one client configuration, and keeps its usage."""

    def __init__(self, config: ClientConfig, usage: Optional[UsageTracker] = None) -> None:
        self.config = config
        self.usage = UsageTracker() if usage is None else usage
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": f"gatewayclient/{__version__}",
        }
        if config.auth_token:
            headers["Authorization"] = f"Bearer {config.auth_token}"
        headers = merge_headers(headers, config.default_headers)
        self._headers = headers
        # The header sets of a JSON POST and of a stream, merged once (names match whatever
        # their case); each call copies one and sets its own Idempotency-Key.
        post = [("Content-Type", "application/json"), ("Idempotency-Key", "")]
        self._json_headers = merge_headers(headers, post)
        self._stream_headers = merge_headers(
            headers,
            [
                *post,
                ("Accept", "text/event-stream"),
                ("Accept-Encoding", "identity"),  # a compressed stream arrives in bursts
                ("Cache-Control", "no-cache"),
            ],
        )

    def _request(
        self,
        method: str,
        path: str,
        body: Optional[Dict[str, Any]] = None,
        options: Optional[CallOptions] = None,
    ) -> Request:
        extra, timeout = (options.headers, options.timeout) if options else ({}, None)
        data = None
        headers = self._headers
        if body is not None:
            data = encode_json(body)
            headers = dict(self._stream_headers if body.get("stream") else self._json_headers)
            headers["Idempotency-Key"] = os.urandom(16).hex()
        if extra:
            headers = merge_headers(headers, extra.items())
        elif body is None:
            headers = dict(headers)
        url = self.config.api_root + path
        return Request(
            method,
            url,
            path,
            headers,
            data,
            timeout if timeout is not None else self.config.timeout,
        )

    def _chat_body(
        self,
        model: Any,
        messages: Any,
        temperature: Any,
        max_tokens: Any,
        top_p: Any,
        params: Dict[str, Any],
    ) -> Tuple[Dict[str, Any], CallOptions]:
        body: Dict[str, Any] = {"model": check_model(model), "messages": check_messages(messages)}
        check_sampling(temperature, max_tokens, top_p)
        options = call_options(params, self.config.retry)
        if params:
            if "stream" in params:
                raise GatewayValidationError(
                    "pass no 'stream' argument: use chat_completion() or stream_chat_completion()"
                )
            check_parameter_names(params)
        fields = {"temperature": temperature, "max_tokens": max_tokens, "top_p": top_p, **params}
        body.update((key, value) for key, value in fields.items() if value is not None)
        if options.extra_body:
            body.update(options.extra_body)  # last, as is: it wins over a named parameter
        return body, options

    def chat(
        self,
        model: Any,
        messages: Any,
        temperature: Any,
        max_tokens: Any,
        top_p: Any,
        params: Dict[str, Any],
    ) -> Call:
        body, options = self._chat_body(model, messages, temperature, max_tokens, top_p, params)
        return self._chat_call(body, options, self._fallbacks(body["model"], options))

    def check_chat(self, args: ChatArgs) -> CheckedChat:
        """Every check ``chat(*args)`` makes, without building its Call: what ``checked_chat``
        builds it from later (a batch checks all its items first and builds each when it sends
        it, holding no request bytes meanwhile)."""
        body, options = self._chat_body(*args)
        encode_json(body)  # what JSON cannot carry is refused now, not when it is sent
        self._cost(body)
        return body, options, self._fallbacks(body["model"], options)

    def checked_chat(
        self, body: Dict[str, Any], options: CallOptions, fallbacks: Tuple[str, ...]
    ) -> Call:
        """The Call of a chat that ``check_chat`` passed."""
        return self._chat_call(body, options, fallbacks)

    def _chat_call(
        self, body: Dict[str, Any], options: CallOptions, fallbacks: Tuple[str, ...]
    ) -> Call:
        request = self._request("POST", "/chat/completions", body, options)
        call = Call(request, self._counted(ChatCompletion, body["model"]), self.config.auth_token)
        call.policy = options.policy
        call.operation = "chat"
        again = partial(self._chat_call, options=options) if fallbacks else None
        return self._traffic(call, body, fallbacks, again)

    def stream(
        self,
        model: Any,
        messages: Any,
        temperature: Any,
        max_tokens: Any,
        top_p: Any,
        params: Dict[str, Any],
    ) -> StreamCall:
        body, options = self._chat_body(model, messages, temperature, max_tokens, top_p, params)
        body["stream"] = True
        hide_usage_chunk = body.get("stream_options") is None
        if hide_usage_chunk:
            body["stream_options"] = {"include_usage": True}
        return self._stream_call(
            body, options, hide_usage_chunk, self._fallbacks(body["model"], options)
        )

    def _stream_call(
        self,
        body: Dict[str, Any],
        options: CallOptions,
        hide_usage_chunk: bool,
        fallbacks: Tuple[str, ...],
    ) -> StreamCall:
        request = self._request("POST", "/chat/completions", body, options)
        call = StreamCall(
            request,
            body["model"],
            self.usage,
            hide_usage_chunk,
            self.config.auth_token,
            options.policy,
        )
        again = partial(self._stream_call, options=options, hide_usage_chunk=hide_usage_chunk)
        return self._traffic(call, body, fallbacks, again)

    def embeddings(self, model: Any, input: Any, params: Dict[str, Any]) -> Call:
        options = call_options(params, self.config.retry)
        body: Dict[str, Any] = {"model": check_model(model), "input": check_input(input)}
        if params:
            check_parameter_names(params)
            body.update((key, value) for key, value in params.items() if value is not None)
        if options.extra_body:
            body.update(options.extra_body)
        return self._embeddings_call(body, options, self._fallbacks(body["model"], options))

    def _embeddings_call(
        self, body: Dict[str, Any], options: CallOptions, fallbacks: Tuple[str, ...]
    ) -> Call:
        request = self._request("POST", "/embeddings", body, options)
        parse = self._counted(EmbeddingResponse, body["model"])
        call = Call(request, parse, self.config.auth_token, policy=options.policy)
        call.operation = "embeddings"
        return self._traffic(call, body, fallbacks, partial(self._embeddings_call, options=options))

    def _fallbacks(self, model: str, options: CallOptions) -> Tuple[str, ...]:
        if options.fallbacks is not None:
            return options.fallbacks
        return tuple(self.config.fallbacks.get(model, ()))

    def _traffic(
        self, call: AnyCall, body: Dict[str, Any], fallbacks: Tuple[str, ...], again: Any
    ) -> AnyCall:
        """Give a POST call its model, its token reservation and its fallbacks: ``again(body,
        fallbacks=...)`` builds the same call for another model."""
        call.model = body["model"]
        call.body = body
        if self.config.rate_limit is not None:
            call.cost = self._cost(body)
        if fallbacks:
            call.next_models = fallbacks

            def retarget(model: str) -> Any:
                return again({**body, "model": model}, fallbacks=fallbacks[1:])

            call.retarget = retarget
        return call

    def _cost(self, body: Dict[str, Any]) -> int:
        """The tokens a rate budget with a token limit reserves for ``body``; one that could
        never fit that limit is a GatewayValidationError."""
        limit = self.config.rate_limit
        if limit is None or limit.tokens is None:
            return 0
        cost = estimate_tokens(
            body.get("messages"),
            body.get("input"),
            body.get("max_tokens", body.get("max_completion_tokens")),
        )
        limit.check_cost(cost)
        return cost

    def _counted(self, model: Any, asked: str) -> Callable[[Any], Any]:
        """A parser that builds ``model`` and records the answer's usage under ``asked``."""
        usage = self.usage

        def parse(data: Any) -> Any:
            result = model._from_json(data)
            usage.record(asked, data.get("usage"))
            return result

        return parse

    def _get(
        self, path: str, parse: Callable[[Any], Any], fallback: Optional[Callable[[], Call]] = None
    ) -> Call:
        request = self._request("GET", path)
        return Call(request, parse, self.config.auth_token, fallback, self.config.retry)

    def models(self) -> Call:
        return _named(self._get("/models", parse_model_list), "list_models")

    def providers(self) -> Call:
        def fallback() -> Call:
            return self._get("/models", providers_from_models)

        return _named(self._get("/providers", parse_providers, fallback), "list_known_providers")

    def provider_models(self, provider: Any) -> Call:
        name = check_provider(provider)

        def parse(data: Any) -> ProviderModels:
            return parse_provider_models(name, data)

        def fallback() -> Call:
            return self._get("/models", lambda data: provider_models_from_models(name, data))

        call = self._get(f"/providers/{quote(name, safe='')}/models", parse, fallback)
        return _named(call, "list_provider_models")


def _named(call: Call, operation: str) -> Call:
    call.operation = operation
    return call


# -- answers ------------------------------------------------------------------------------------


def _model_entries(data: Any) -> List[Any]:
    entries = data.get("data") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise GatewayResponseError("expected a list of models", body=data)
    return entries


def parse_model_list(data: Any) -> ModelList:
    if isinstance(data, list):
        data = {"object": "list", "data": data}
    _model_entries(data)
    return ModelList._from_json(data)


def _unique(names: List[str]) -> List[str]:
    return list(dict.fromkeys(names))


def parse_providers(data: Any) -> List[str]:
    if isinstance(data, dict):
        data = data.get("providers", data.get("data"))
    if not isinstance(data, list):
        raise GatewayResponseError("expected a list of providers", body=data)
    names = [item.get("id") if isinstance(item, dict) else item for item in data]
    checked = [name for name in names if isinstance(name, str)]
    if len(checked) != len(names):
        raise GatewayResponseError("expected provider names or objects with an 'id'", body=data)
    return _unique(checked)


def parse_provider_models(provider: str, data: Any) -> ProviderModels:
    if isinstance(data, dict) and isinstance(data.get("models"), list):
        data.setdefault("provider", provider)
        data.setdefault("total", len(data["models"]))
        return ProviderModels._from_json(data)
    models = _model_entries(data)
    return ProviderModels._from_json({"provider": provider, "total": len(models), "models": models})


def _ids(data: Any) -> List[Tuple[str, Any]]:
    found = []
    for entry in _model_entries(data):
        model_id = entry.get("id") if isinstance(entry, dict) else None
        if isinstance(model_id, str) and "/" in model_id:
            found.append((model_id.split("/", 1)[0], entry))
    return found


def providers_from_models(data: Any) -> List[str]:
    return _unique([provider for provider, _ in _ids(data)])


def provider_models_from_models(provider: str, data: Any) -> ProviderModels:
    models = [entry for owner, entry in _ids(data) if owner == provider]
    return ProviderModels._from_json({"provider": provider, "total": len(models), "models": models})
