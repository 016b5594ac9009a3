"""The JSON views: POST /ask answers a question, GET /usage reports this process's tokens."""

import json
import logging
import math

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_POST

from gatewayclient import GatewayClientError, GatewayRateLimitError, SyncGatewayClient

log = logging.getLogger(__name__)

# ONE client per process, shared by every request and every thread: it holds a pool of
# keep-alive connections (so requests skip the TCP and TLS handshakes) and is thread-safe.
# It reads PLATFORM_API_URL and AUTH_TOKEN from the environment when this module is imported.
# After a fork (gunicorn --preload) it opens fresh connections in the child by itself.
gateway = SyncGatewayClient(timeout=30, max_retries=2)


@require_POST
def ask(request):
    try:
        payload = json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": "the body must be JSON"}, status=400)
    question = payload.get("question") if isinstance(payload, dict) else None
    if not isinstance(question, str) or not question.strip():
        return JsonResponse({"error": "'question' must be a non-empty string"}, status=400)

    try:
        completion = gateway.chat_completion(
            settings.GATEWAY_MODEL, [{"role": "user", "content": question}], max_tokens=300
        )
    except GatewayRateLimitError as exc:  # the client already retried; pass the hint on
        response = JsonResponse({"error": "the gateway is busy, try again later"}, status=503)
        if exc.retry_after is not None:
            response["Retry-After"] = str(math.ceil(exc.retry_after))
        return response
    except GatewayClientError:
        log.exception("gateway call failed")  # details in the log, not in the response
        return JsonResponse({"error": "the gateway failed"}, status=502)

    return JsonResponse(
        {
            "answer": completion.choices[0].message.content,
            "model": completion.model,
            "usage": completion.usage.to_dict(),
        }
    )


@require_GET
def usage(request):
    total = gateway.usage.total
    return JsonResponse(
        {
            "requests": total.requests,
            "prompt_tokens": total.prompt_tokens,
            "completion_tokens": total.completion_tokens,
            "total_tokens": total.total_tokens,
        }
    )
