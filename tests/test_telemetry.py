"""OpenTelemetry on both clients, checked with the real SDK (in-memory span exporter and metric
reader): the GenAI spans and metrics, streams' spans ending with the stream, retries, fallbacks
and rate-budget waits as events, failures, content capture, the token nowhere, parent and child
spans across tasks, and nothing imported or set when it is not the application's doing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any, Dict, Iterator, List

import pytest
from twin import Twin

from gatewayclient import (
    AsyncGatewayClient,
    GatewayServerError,
    RateLimit,
    RetryPolicy,
)
from gatewayclient.testing import FakeGateway, expected_usage

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry import metrics  # noqa: E402
from opentelemetry.sdk.metrics import Histogram, MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import (  # noqa: E402
    AggregationTemporality,
    InMemoryMetricReader,
)
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

MODEL = "openai/gpt-4o"
SECOND = "anthropic/claude-sonnet-4-20250514"
EMBED = "openai/text-embedding-3-small"
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
TOKEN = "sk-telemetry-secret-7f3a"
CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

_EXPORTER = InMemorySpanExporter()
# Delta temporality: each collection holds what was recorded since the one before.
_READER = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})


@pytest.fixture(scope="module", autouse=True)
def sdk() -> Iterator[None]:
    """The application's providers, set once for this process (the API allows one)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    yield


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    _READER.get_metrics_data()  # drop what earlier tests recorded
    yield _EXPORTER


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gw() -> Iterator[FakeGateway]:
    with FakeGateway(token=TOKEN) as gateway:
        yield gateway


def finished(exporter: InMemorySpanExporter) -> List[Any]:
    return list(exporter.get_finished_spans())


def collect() -> Dict[str, List[Any]]:
    """The data points recorded since the last collection, by metric name."""
    data = _READER.get_metrics_data()
    found: Dict[str, List[Any]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def assert_no_token(span: Any) -> None:
    text = json.dumps(
        [dict(span.attributes or {})] + [dict(e.attributes or {}) for e in span.events],
        default=str,
    )
    assert TOKEN not in text
    assert "Bearer" not in text


def test_a_chat_call_makes_a_genai_span_and_metrics(
    kind: str, gw: FakeGateway, spans: InMemorySpanExporter
) -> None:
    twin = Twin(kind, gw.url, TOKEN)
    try:
        answer = twin.call("chat_completion", MODEL, HELLO, temperature=0.2, max_tokens=50,
                           top_p=0.9, seed=7, stop=["\n"])  # fmt: skip
    finally:
        twin.close()
    (span,) = finished(spans)
    assert span.name == f"chat {MODEL}"
    assert span.kind == trace.SpanKind.CLIENT
    usage = expected_usage(MODEL, HELLO)
    attributes = dict(span.attributes)
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": MODEL,
        "server.address": "127.0.0.1",
        "server.port": gw.port,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.seed": 7,
        "gen_ai.request.stop_sequences": ("\n",),
        "gen_ai.response.model": answer.model,
        "gen_ai.response.id": answer.id,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": usage["prompt_tokens"],
        "gen_ai.usage.output_tokens": usage["completion_tokens"],
    }
    assert span.status.status_code == trace.StatusCode.UNSET
    assert_no_token(span)
    recorded = collect()
    (duration,) = recorded["gen_ai.client.operation.duration"]
    assert duration.count == 1
    assert list(duration.explicit_bounds) == [
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92
    ]  # fmt: skip
    assert dict(duration.attributes)["gen_ai.response.model"] == answer.model
    tokens = {
        dict(p.attributes)["gen_ai.token.type"]: p for p in recorded["gen_ai.client.token.usage"]
    }
    assert tokens["input"].sum == usage["prompt_tokens"]
    assert tokens["output"].sum == usage["completion_tokens"]
    assert list(tokens["input"].explicit_bounds)[:3] == [1, 4, 16]
    assert list(tokens["input"].explicit_bounds)[-1] == 67108864


def test_an_embeddings_call_makes_its_span(
    kind: str, gw: FakeGateway, spans: InMemorySpanExporter
) -> None:
    twin = Twin(kind, gw.url, TOKEN)
    try:
        twin.call("embeddings", EMBED, ["a", "b"], encoding_format="float")
    finally:
        twin.close()
    (span,) = finished(spans)
    assert span.name == f"embeddings {EMBED}"
    attributes = dict(span.attributes)
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.request.encoding_formats"] == ("float",)
    assert attributes["gen_ai.usage.input_tokens"] > 0


def test_discovery_calls_make_plain_client_spans(
    kind: str, gw: FakeGateway, spans: InMemorySpanExporter
) -> None:
    twin = Twin(kind, gw.url, TOKEN)
    try:
        twin.call("list_models")
        twin.call("list_known_providers")
        twin.call("list_provider_models", "openai")
    finally:
        twin.close()
    names = [span.name for span in finished(spans)]
    assert names == ["list_models", "list_known_providers", "list_provider_models"]
    for span in finished(spans):
        assert span.kind == trace.SpanKind.CLIENT
        assert dict(span.attributes)["server.port"] == gw.port
        assert not any(key.startswith("gen_ai.") for key in span.attributes)
    assert "gen_ai.client.operation.duration" not in collect()


def test_a_failed_call_records_its_error_type(
    kind: str, gw: FakeGateway, spans: InMemorySpanExporter
) -> None:
    gw.fail(503, times=1)
    twin = Twin(kind, gw.url, TOKEN, max_retries=0)
    try:
        with pytest.raises(GatewayServerError):
            twin.call("chat_completion", MODEL, HELLO)
    finally:
        twin.close()
    (span,) = finished(spans)
    assert span.status.status_code == trace.StatusCode.ERROR
    assert span.attributes["error.type"] == "GatewayServerError"
    (duration,) = collect()["gen_ai.client.operation.duration"]
    assert dict(duration.attributes)["error.type"] == "GatewayServerError"
    assert_no_token(span)


def test_retries_and_fallbacks_are_events_on_the_span(
    kind: str, gw: FakeGateway, spans: InMemorySpanExporter
) -> None:
    gw.fail(503, times=2)
    twin = Twin(kind, gw.url, TOKEN, retry_policy=RetryPolicy(max_retries=1, backoff_base=0))
    try:
        twin.call("chat_completion", MODEL, HELLO, fallback_models=[SECOND])
    finally:
        twin.close()
    (span,) = finished(spans)
    events = [(event.name, dict(event.attributes)) for event in span.events]
    assert [name for name, _ in events] == ["gatewayclient.retry", "gatewayclient.fallback"]
    retry, fallback = events[0][1], events[1][1]
    assert retry["gatewayclient.retry.attempt"] == 1
    assert retry["http.response.status_code"] == 503
    assert fallback["gatewayclient.fallback.from"] == MODEL
    assert fallback["gatewayclient.fallback.to"] == SECOND
    assert span.attributes["gen_ai.response.model"] == SECOND
    assert span.status.status_code == trace.StatusCode.UNSET


def test_a_wait_for_the_rate_budget_is_an_event(
    kind: str, gw: FakeGateway, spans: InMemorySpanExporter
) -> None:
    twin = Twin(kind, gw.url, TOKEN, rate_limit=RateLimit(requests=1, per=0.3))
    try:
        twin.call("list_models")
        twin.call("chat_completion", MODEL, HELLO)
    finally:
        twin.close()
    chat = finished(spans)[-1]
    waits = [event for event in chat.events if event.name == "gatewayclient.rate_limit.wait"]
    assert len(waits) == 1
    assert 0 < waits[0].attributes["gatewayclient.wait"] <= 0.3


@pytest.mark.parametrize("how", ["done", "closed", "failed"])
def test_a_streams_span_ends_with_the_stream(
    kind: str, gw: FakeGateway, spans: InMemorySpanExporter, how: str
) -> None:
    if how == "failed":
        gw.stream_error({"message": "down", "code": 500}, after=1)
    twin = Twin(kind, gw.url, TOKEN, max_retries=0)
    try:
        stream = twin.stream(MODEL, HELLO)
        twin.next(stream)
        assert finished(spans) == []  # open while the stream is
        if how == "done":
            twin.collect(stream)
        elif how == "closed":
            twin.close_stream(stream)
        else:
            with pytest.raises(GatewayServerError):
                twin.collect(stream)
    finally:
        twin.close()
    (span,) = finished(spans)
    assert span.name == f"chat {MODEL}"
    assert span.attributes["gatewayclient.stream.end"] == how
    if how == "done":
        usage = expected_usage(MODEL, HELLO)
        assert span.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
        assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    if how == "failed":
        assert span.status.status_code == trace.StatusCode.ERROR
        assert span.attributes["error.type"] == "GatewayServerError"


def test_a_cancelled_streams_span_ends(gw: FakeGateway, spans: InMemorySpanExporter) -> None:
    gw.stall(5, when="mid_stream", after=1)

    async def main() -> None:
        async with AsyncGatewayClient(gw.url, TOKEN) as client:

            async def consume() -> None:
                async for _ in client.stream_chat_completion(MODEL, HELLO):
                    pass

            task = asyncio.ensure_future(consume())
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    (span,) = finished(spans)
    assert span.attributes["gatewayclient.stream.end"] == "cancelled"
    assert span.status.status_code == trace.StatusCode.UNSET


@pytest.mark.parametrize("capture", [None, "false", "true"])
def test_message_content_is_recorded_only_when_asked(
    kind: str,
    gw: FakeGateway,
    spans: InMemorySpanExporter,
    capture: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if capture is None:
        monkeypatch.delenv(CAPTURE, raising=False)
    else:
        monkeypatch.setenv(CAPTURE, capture)
    twin = Twin(kind, gw.url, TOKEN)
    try:
        answer = twin.call("chat_completion", MODEL, HELLO)
    finally:
        twin.close()
    (span,) = finished(spans)
    attributes = dict(span.attributes)
    if capture != "true":
        assert "gen_ai.input.messages" not in attributes
        assert "gen_ai.output.messages" not in attributes
        assert "Hello!" not in json.dumps(attributes, default=str)
        return
    assert json.loads(attributes["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Hello!"}]},
    ]
    (output,) = json.loads(attributes["gen_ai.output.messages"])
    assert output["parts"] == [{"type": "text", "content": answer.choices[0].message.content}]
    assert_no_token(span)


def test_calls_in_tasks_are_children_of_the_callers_span(
    gw: FakeGateway, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("the-application")

    async def main() -> None:
        async with AsyncGatewayClient(gw.url, TOKEN) as client:
            with tracer.start_as_current_span("handle request"):
                await asyncio.gather(
                    *(client.chat_completion(MODEL, HELLO) for _ in range(3)),
                    client.embeddings(EMBED, "x"),
                )
            await client.list_models()  # outside: a root span

    asyncio.run(main())
    by_name: Dict[str, List[Any]] = {}
    for span in finished(spans):
        by_name.setdefault(span.name, []).append(span)
    (parent,) = by_name["handle request"]
    children = by_name[f"chat {MODEL}"] + by_name[f"embeddings {EMBED}"]
    assert len(children) == 4
    assert {child.parent.span_id for child in children} == {parent.context.span_id}
    assert {child.context.trace_id for child in children} == {parent.context.trace_id}
    assert by_name["list_models"][0].parent is None


def test_sync_calls_are_children_of_the_callers_span(
    gw: FakeGateway, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("the-application")
    twin = Twin("sync", gw.url, TOKEN)
    try:
        with tracer.start_as_current_span("job"):
            twin.call("chat_completion", MODEL, HELLO)
            twin.collect(twin.stream(MODEL, HELLO))
    finally:
        twin.close()
    job = next(span for span in finished(spans) if span.name == "job")
    calls = [span for span in finished(spans) if span.name != "job"]
    assert len(calls) == 2
    assert all(span.parent.span_id == job.context.span_id for span in calls)


def _run(code: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_without_opentelemetry_nothing_of_it_is_imported(gw: FakeGateway) -> None:
    """A fresh interpreter in which opentelemetry cannot be imported (as if not installed):
    calls, streams and errors work, and nothing tried to import it more than once."""
    out = _run(
        """
        import sys
        class NotInstalled:
            tries = 0
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    NotInstalled.tries += 1
                    raise ImportError(name)
                return None
        sys.meta_path.insert(0, NotInstalled())
        from gatewayclient import SyncGatewayClient
        with SyncGatewayClient(sys.argv[1], sys.argv[2]) as client:
            for _ in range(3):
                client.chat_completion("openai/gpt-4o", [{"role": "user", "content": "hi"}])
            list(client.stream_chat_completion("openai/gpt-4o", [{"role": "user", "content": "x"}]))
        print(NotInstalled.tries, any(n.startswith("opentelemetry") for n in sys.modules))
        """,
        gw.url,
        TOKEN,
    )
    assert out == "1 False"


def test_the_client_never_sets_a_provider(gw: FakeGateway) -> None:
    out = _run(
        """
        import sys
        from opentelemetry import metrics, trace
        tracer_provider, meter_provider = trace.get_tracer_provider(), metrics.get_meter_provider()
        from gatewayclient import SyncGatewayClient
        with SyncGatewayClient(sys.argv[1], sys.argv[2]) as client:
            client.chat_completion("openai/gpt-4o", [{"role": "user", "content": "hi"}])
        print(trace.get_tracer_provider() is tracer_provider,
              metrics.get_meter_provider() is meter_provider,
              type(tracer_provider).__name__)
        """,
        gw.url,
        TOKEN,
    )
    assert out == "True True ProxyTracerProvider"


def test_import_gatewayclient_imports_no_opentelemetry() -> None:
    out = _run("import sys, gatewayclient; print('opentelemetry' in sys.modules)")
    assert out == "False"


def test_a_provider_set_after_the_first_call_is_used_from_then_on(gw: FakeGateway) -> None:
    """Nothing is recorded while no provider is set (the no-op path costs next to nothing),
    and a provider the application sets later is used from the next call."""
    out = _run(
        """
        import sys
        from gatewayclient import SyncGatewayClient
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        hello = [{"role": "user", "content": "hi"}]
        with SyncGatewayClient(sys.argv[1], sys.argv[2]) as client:
            client.chat_completion("openai/gpt-4o", hello)
            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            client.chat_completion("openai/gpt-4o", hello)
        print([span.name for span in exporter.get_finished_spans()])
        """,
        gw.url,
        TOKEN,
    )
    assert out == "['chat openai/gpt-4o']"


def test_the_api_globals_read_on_every_call_are_where_the_client_looks() -> None:
    """The no-op path reads the API's provider globals directly; if an API version moves them,
    the client falls back to the API's getters (slower): this test says so first."""
    import opentelemetry.metrics._internal as metrics_internal

    from gatewayclient import _telemetry

    assert hasattr(trace, "_TRACER_PROVIDER")
    assert hasattr(metrics_internal, "_METER_PROVIDER")
    tools = _telemetry._get()
    assert tools is not None and tools._fast


def test_a_batch_makes_a_span_per_item_under_the_callers(
    kind: str, gw: FakeGateway, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("the-application")
    items = [{"custom_id": f"i{n}", "model": MODEL, "messages": HELLO} for n in range(4)]
    twin = Twin(kind, gw.url, TOKEN)
    try:
        with tracer.start_as_current_span("nightly job"):
            results = twin.call("batch_chat_completions", items, concurrency=2)
    finally:
        twin.close()
    assert all(result.ok for result in results)
    job = next(span for span in finished(spans) if span.name == "nightly job")
    calls = [span for span in finished(spans) if span.name == f"chat {MODEL}"]
    assert len(calls) == 4
    assert all(span.parent is not None for span in calls)
    assert {span.parent.span_id for span in calls} == {job.context.span_id}
    assert all(span.attributes["gen_ai.usage.output_tokens"] > 0 for span in calls)
