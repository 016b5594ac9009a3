"""An aiohttp web service that answers questions through the gateway.

One AsyncGatewayClient lives as long as the application: it is created on startup (inside the
running event loop, where its aiohttp session belongs) and closed on cleanup, through
``app.cleanup_ctx``. Every request shares its connection pool and its usage totals.

    export PLATFORM_API_URL=https://gateway.example.com AUTH_TOKEN=...
    python examples/asyncio_service.py        # serves on 127.0.0.1:8080 (HOST, PORT to change)
    curl -s localhost:8080/ask -d '{"question": "What is an API gateway?"}'
    curl -s localhost:8080/usage

With OpenTelemetry's SDK installed (pip install opentelemetry-sdk), OTEL_TRACES_EXPORTER=console
prints each call's span (``chat openai/gpt-4o-mini``: model, tokens, timing) on stdout. The
application sets the tracer provider; gatewayclient only uses whichever one is set.
"""

import logging
import math
import os

from aiohttp import web

from gatewayclient import (
    AsyncGatewayClient,
    GatewayClientError,
    GatewayModelNotFoundError,
    GatewayRateLimitError,
)

DEFAULT_MODEL = "openai/gpt-4o-mini"
GATEWAY = web.AppKey("gateway", AsyncGatewayClient)
log = logging.getLogger(__name__)


async def gateway_client(app):
    """cleanup_ctx: the code before ``yield`` runs on startup, the code after on cleanup."""
    # PLATFORM_API_URL and AUTH_TOKEN are read here; a missing URL fails the startup.
    async with AsyncGatewayClient(timeout=30, max_retries=2) as gateway:
        app[GATEWAY] = gateway
        yield
    # Leaving `async with` closed the session: no "Unclosed client session" at shutdown.


def error(status, message, **headers):
    return web.json_response({"error": message}, status=status, headers=headers)


async def ask(request):
    """POST /ask {"question": ..., "model"?: ...} -> {"answer", "model", "usage"}."""
    try:
        payload = await request.json()
    except ValueError:
        return error(400, "the body must be JSON")
    question = payload.get("question") if isinstance(payload, dict) else None
    if not isinstance(question, str) or not question.strip():
        return error(400, "'question' must be a non-empty string")
    model = payload.get("model") or DEFAULT_MODEL

    gateway = request.app[GATEWAY]
    try:
        completion = await gateway.chat_completion(
            model, [{"role": "user", "content": question}], max_tokens=300
        )
    except GatewayModelNotFoundError:
        return error(404, f"unknown model {model!r}")
    except GatewayRateLimitError as exc:
        # The client already retried; pass the gateway's hint on to our own caller.
        wait = {"Retry-After": str(math.ceil(exc.retry_after))} if exc.retry_after else {}
        return error(503, "the gateway is busy, try again later", **wait)
    except GatewayClientError:
        log.exception("gateway call failed")  # details in our log, not in the response
        return error(502, "the gateway failed")

    return web.json_response(
        {
            "answer": completion.choices[0].message.content,
            "model": completion.model,
            "usage": completion.usage.to_dict(),
        }
    )


async def usage(request):
    """GET /usage -> this process's token totals, across every request served so far."""
    total = request.app[GATEWAY].usage.total
    return web.json_response(
        {
            "requests": total.requests,
            "prompt_tokens": total.prompt_tokens,
            "completion_tokens": total.completion_tokens,
            "total_tokens": total.total_tokens,
        }
    )


def create_app():
    app = web.Application()
    app.cleanup_ctx.append(gateway_client)
    app.router.add_post("/ask", ask)
    app.router.add_get("/usage", usage)
    return app


def trace_to_console():
    """The application's choice, never the library's: a tracer provider printing spans."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


def main():
    logging.basicConfig(level=logging.INFO)
    if os.environ.get("OTEL_TRACES_EXPORTER") == "console":
        trace_to_console()
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    # run_app stops on Ctrl-C or SIGTERM and runs the cleanup (closing the client) on the way out.
    web.run_app(create_app(), host=host, port=port)


if __name__ == "__main__":
    main()
