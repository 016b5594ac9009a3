"""The fake gateway's aiohttp application: recording, faults, auth and rate limit around the
route handlers. Order per request: read its body (up to the size limit), record it if it is
under ``/v1``, serve a scripted fault, check the bearer token, count it (and the tokens its
answer will report) against the token's window, wait the fixed latency, then answer; its
arrival is logged with the status answered. Every error answer, the router's included, is an
OpenAI error envelope."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, FrozenSet, List, Optional

from aiohttp import web

from ._catalog import MODELS, MODELS_BY_ID, PROVIDERS, CatalogModel
from ._chat import (
    answer_tokens,
    chat_completion,
    chat_events,
    embeddings,
    parse_chat,
    require_model,
)
from ._faults import (
    BEFORE_HEADERS,
    CLOSING,
    RESET,
    STALL,
    STATUS_LIKE,
    Fault,
    abort_connection,
    fault_response,
    pause,
    send_partial_then_reset,
    send_stream,
)
from ._state import Arrival, GatewayState, RecordedRequest, redact_headers
from ._wire import ApiError, format_seconds

STATE = web.AppKey("gatewayclient.testing.state", GatewayState)
MAX_BODY = web.AppKey("gatewayclient.testing.max_body_size", int)
API_PREFIX = "/v1"
CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
_UNPARSED = object()


def _request_key(name: str, kind: type) -> Any:
    """A key for per-request storage: a ``web.RequestKey`` where aiohttp has it (3.13+ warns
    about plain strings), else the string itself."""
    factory = getattr(web, "RequestKey", None)
    return name if factory is None else factory(f"gatewayclient.testing.{name}", kind)


_REQUEST_ID = _request_key("request_id", str)
_BODY = _request_key("body", object)
_EXTRA_HEADERS = _request_key("headers", dict)
_TOKENS = _request_key("tokens", int)


@dataclass(frozen=True)
class Context:
    """What a route handler needs beyond the request: the parsed body, the token's model
    allowance (None: every model) and a fault that acts while the answer is written."""

    body: Any
    allowed: Optional[FrozenSet[str]]
    fault: Optional[Fault]

    def model(self, model_id: str) -> CatalogModel:
        model = MODELS_BY_ID.get(model_id)
        if model is None:
            raise ApiError(404, f"The model '{model_id}' does not exist.", code="model_not_found")
        if self.allowed is not None and model_id not in self.allowed:
            message = f"This token is not allowed to use the model '{model_id}'."
            raise ApiError(403, message, code="model_not_allowed")
        return model

    def visible_models(self) -> List[Dict[str, Any]]:
        return [m.to_json() for m in MODELS if self.allowed is None or m.id in self.allowed]


Handler = Callable[[web.Request, Context], Awaitable[web.StreamResponse]]


def _error_response(exc: ApiError) -> web.Response:
    return web.json_response(exc.body, status=exc.status, headers=exc.headers)


def _parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return _UNPARSED


async def _read_body(request: web.Request) -> Optional[bytes]:
    """The whole body, or None when it is over the application's size limit (a declared
    ``Content-Length`` over it is refused without reading)."""
    limit = request.app[MAX_BODY]  # request.read() enforces it too
    if request.content_length is not None and request.content_length > limit:
        return None  # aiohttp reads and drops the rest after the answer (lingering close)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None


def _too_large(request: web.Request) -> ApiError:
    limit = request.app[MAX_BODY]
    size = request.content_length
    message = (
        f"The request body{'' if size is None else f' ({size} bytes)'} is larger than this"
        f" gateway accepts: at most {limit} bytes."
    )
    return ApiError(413, message, code="request_too_large")


def _is_api(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


@web.middleware
async def _record(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Give every request an id, record those under ``/v1`` (and log their arrival with the
    status answered), and answer a body over the size limit and the router's errors with an
    error envelope."""
    arrived = time.monotonic()
    status = 0
    try:
        response = await _answer(request, handler)
        status = response.status
        return response
    finally:
        if _is_api(request.path):
            body = request.get(_BODY)
            model = body.get("model") if isinstance(body, dict) else None
            tokens = request.get(_TOKENS, 0) if 200 <= status < 300 else 0
            arrival = Arrival(
                arrived, request.path, model if isinstance(model, str) else None, tokens, status
            )
            request.app[STATE].arrive(arrival)


async def _answer(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request[_REQUEST_ID] = "req_" + uuid.uuid4().hex[:24]
    raw = await _read_body(request)
    request[_BODY] = body = _parse_body(raw or b"")
    if _is_api(request.path):
        request.app[STATE].record(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query={key: request.query[key] for key in request.query},
                headers=redact_headers(request.headers.items()),
                json=None if body is _UNPARSED else body,
                body=raw or b"",
                request_id=request[_REQUEST_ID],
            )
        )
    if raw is None:
        return _error_response(_too_large(request))
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        message = f"Invalid URL ({request.method} {request.path}): {exc.reason}."
        return _error_response(ApiError(exc.status, message, headers=headers))


async def _add_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    response.headers.setdefault("x-request-id", request.get(_REQUEST_ID, ""))
    for name, value in request.get(_EXTRA_HEADERS, {}).items():
        response.headers.setdefault(name, value)


async def _early_fault(request: web.Request, fault: Fault) -> Optional[web.StreamResponse]:
    """Serve a fault that acts before the answer; None when the answer should follow."""
    if fault.kind in STATUS_LIKE:
        return fault_response(fault)
    if fault.kind == RESET and fault.when == BEFORE_HEADERS:
        abort_connection(request)
        return web.Response()  # never reaches the wire: the connection is gone
    if fault.kind == STALL and fault.when == BEFORE_HEADERS:
        await pause(request, fault.seconds)
    return None


def _authenticate(request: web.Request, state: GatewayState) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    known = scheme.lower() == "bearer" and bool(token) and state.token_models(token)[0]
    if not known:
        message = "Missing or unknown bearer token in the Authorization header."
        raise ApiError(401, message, code="invalid_api_key")
    return token


def _count_request(request: web.Request, state: GatewayState, token: str) -> None:
    """Count the request, and the tokens its answer will report, against the token's window."""
    body = request[_BODY]
    if request.path in (CHAT_PATH, EMBEDDINGS_PATH):
        request[_TOKENS] = answer_tokens(body, request.path == CHAT_PATH)
    limit, token_limit = state.rpm_limit, state.tpm_limit
    if limit is None and token_limit is None:
        return
    decision = state.limiter.check(token, limit, token_limit, request.get(_TOKENS, 0))
    request[_EXTRA_HEADERS] = decision.headers()
    if not decision.allowed:
        headers = {"Retry-After": format_seconds(decision.reset_seconds)}
        if limit is not None and decision.remaining <= 0:
            message = f"Rate limit reached: {limit} requests per minute for this token."
        else:
            message = f"Rate limit reached: {token_limit} tokens per minute for this token."
        raise ApiError(429, message, code="rate_limit_exceeded", headers=headers)


def _route(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        body = request[_BODY]
        is_stream = (
            request.path == CHAT_PATH and isinstance(body, dict) and body.get("stream") is True
        )
        fault = state.faults.take(request.path, is_stream)
        if fault is not None and fault.acts_early:
            early = await _early_fault(request, fault)
            if early is not None:
                return early
            fault = None
        try:
            token = _authenticate(request, state)
            _count_request(request, state, token)
            if state.latency > 0:
                await asyncio.sleep(state.latency)
            if body is _UNPARSED:
                raise ApiError(400, "We could not parse the JSON body of your request.")
            context = Context(body, state.token_models(token)[1], fault)
            response = await handler(request, context)
        except ApiError as exc:
            response = _error_response(exc)
        if fault is not None and fault.kind == RESET and isinstance(response, web.Response):
            return await send_partial_then_reset(request, response)
        return response

    return serve


async def _health(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def _list_models(request: web.Request, ctx: Context) -> web.StreamResponse:
    return web.json_response({"object": "list", "data": ctx.visible_models()})


async def _get_model(request: web.Request, ctx: Context) -> web.StreamResponse:
    return web.json_response(ctx.model(request.match_info["model_id"]).to_json())


async def _list_providers(request: web.Request, ctx: Context) -> web.StreamResponse:
    return web.json_response(list(PROVIDERS))


async def _provider_models(request: web.Request, ctx: Context) -> web.StreamResponse:
    provider = request.match_info["provider"]
    if provider not in PROVIDERS:
        raise ApiError(404, f"Unknown provider '{provider}'.", code="provider_not_found")
    models = [m for m in ctx.visible_models() if m["owned_by"] == provider]
    return web.json_response({"provider": provider, "total": len(models), "models": models})


async def _chat(request: web.Request, ctx: Context) -> web.StreamResponse:
    model = ctx.model(require_model(ctx.body))
    if model.is_embedding:
        message = f"The model '{model.id}' is an embedding model: it does not support chat."
        raise ApiError(400, message, code="model_not_supported", param="model")
    chat = parse_chat(ctx.body)
    completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    if chat.stream:
        return await send_stream(request, chat_events(chat, completion_id, created), ctx.fault)
    return web.json_response(chat_completion(chat, completion_id, created))


async def _embeddings(request: web.Request, ctx: Context) -> web.StreamResponse:
    model = ctx.model(require_model(ctx.body))
    if not model.is_embedding:
        message = f"The model '{model.id}' is a chat model: it does not support embeddings."
        raise ApiError(400, message, code="model_not_supported", param="model")
    return web.json_response(embeddings(model, ctx.body))


def build_app(state: GatewayState, max_body_size: int) -> web.Application:
    """The aiohttp application serving ``state``'s gateway, accepting bodies up to
    ``max_body_size`` bytes."""
    app = web.Application(middlewares=[_record], client_max_size=max_body_size)
    app[STATE] = state
    app[MAX_BODY] = max_body_size
    app[CLOSING] = asyncio.Event()
    app.on_response_prepare.append(_add_headers)
    app.router.add_get("/health", _health)
    app.router.add_post(CHAT_PATH, _route(_chat))
    app.router.add_post(EMBEDDINGS_PATH, _route(_embeddings))
    app.router.add_get("/v1/models", _route(_list_models))
    app.router.add_get("/v1/models/{model_id:.+}", _route(_get_model))
    app.router.add_get("/v1/providers", _route(_list_providers))
    app.router.add_get("/v1/providers/{provider}/models", _route(_provider_models))
    return app
