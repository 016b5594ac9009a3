"""The views: POST /ask answers a question as JSON, GET /stream relays the answer as it is
written; /aask and /astream are their async twins (for ASGI servers); GET /usage reports this
process's tokens."""

import json
import logging
import math
import os

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_POST

from gatewayclient import GatewayClientError, GatewayRateLimitError
from gatewayclient.contrib.django import arelay_stream, async_gateway, gateway, relay_stream

log = logging.getLogger(__name__)

# gateway() and async_gateway() return this process's one client of each kind, built from
# settings.GATEWAYCLIENT on first use: shared by every request and thread (the sync client
# pools keep-alive connections; the async one keeps a session per event loop). A worker forked
# by gunicorn builds its own; override_settings(GATEWAYCLIENT=...) in a test builds new ones.


class BadQuestion(ValueError):
    pass


def question_from_body(request):
    try:
        payload = json.loads(request.body)
    except ValueError:
        raise BadQuestion("the body must be JSON") from None
    return checked(payload.get("question") if isinstance(payload, dict) else None)


def checked(question):
    if not isinstance(question, str) or not question.strip():
        raise BadQuestion("'question' must be a non-empty string")
    return question


def ask_for(question):
    """The keyword arguments of one call, shared by the four views."""
    return {
        "model": settings.GATEWAY_MODEL,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 300,
    }


def relay_format(request):
    return "text" if request.GET.get("format") == "text" else "sse"


def answer(completion):
    return JsonResponse(
        {
            "answer": completion.choices[0].message.content,
            "model": completion.model,
            "usage": completion.usage.to_dict(),
        }
    )


def failure(exc):
    """The response for a failed call (streams: one that failed before its first chunk)."""
    if isinstance(exc, BadQuestion):
        return JsonResponse({"error": str(exc)}, status=400)
    if isinstance(exc, GatewayRateLimitError):  # the client already retried; pass the hint on
        response = JsonResponse({"error": "the gateway is busy, try again later"}, status=503)
        if exc.retry_after is not None:
            response["Retry-After"] = str(math.ceil(exc.retry_after))
        return response
    log.error("gateway call failed: %s", exc)  # details in the log, not in the response
    return JsonResponse({"error": "the gateway failed"}, status=502)


@require_POST
def ask(request):
    try:
        return answer(gateway().chat_completion(**ask_for(question_from_body(request))))
    except (BadQuestion, GatewayClientError) as exc:
        return failure(exc)


@require_POST
async def aask(request):
    try:
        question = question_from_body(request)
        return answer(await async_gateway().chat_completion(**ask_for(question)))
    except (BadQuestion, GatewayClientError) as exc:
        return failure(exc)


@require_GET
def stream(request):
    """Server-sent events as the gateway sends them (``?format=text``: the text only). A
    browser that goes away closes the gateway stream."""
    try:
        chunks = gateway().stream_chat_completion(**ask_for(checked(request.GET.get("question"))))
        return relay_stream(chunks, format=relay_format(request))
    except (BadQuestion, GatewayClientError) as exc:
        return failure(exc)


@require_GET
async def astream(request):
    try:
        question = checked(request.GET.get("question"))
        chunks = async_gateway().stream_chat_completion(**ask_for(question))
        return await arelay_stream(chunks, format=relay_format(request))
    except (BadQuestion, GatewayClientError) as exc:
        return failure(exc)


@require_GET
def usage(request):
    def totals(client):
        total = client.usage.total
        return {
            "requests": total.requests,
            "prompt_tokens": total.prompt_tokens,
            "completion_tokens": total.completion_tokens,
            "total_tokens": total.total_tokens,
        }

    return JsonResponse(
        {"pid": os.getpid(), "sync": totals(gateway()), "async": totals(async_gateway())}
    )
