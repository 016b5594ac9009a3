"""The second part's features as client variants for ``workloads.py``: a rate budget in process
or through Redis, OpenTelemetry absent or with its SDK, and counting Redis's commands.

- ``+local``: ``RateLimit`` with room (10^9 requests, 10^12 tokens a minute), in this process;
- ``+redis``: the same budget through the runner's redis-server (``spec["redis_url"]``); after
  the timed calls, more calls with redis-py's sends counted give the round trips per call;
- ``+no-otel``: opentelemetry made unimportable before anything is imported (a meta-path hook,
  as if it were not installed);
- ``+otel-sdk``: the SDK's tracer provider (in-memory span exporter, simple processor) and meter
  provider (in-memory reader) set before the client is built, as a traced service has them.
- no variant: opentelemetry's API installed (it is in the test extra) and no SDK configured.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence

BIG = {"requests": 10**9, "tokens": 10**12}


class _NotInstalled:
    def find_spec(self, name: str, path: Optional[Sequence[str]] = None, target: Any = None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"{name} is hidden by the benchmark (+no-otel)")
        return None


def prepare(variant: str) -> None:
    """What must happen before gatewayclient is imported."""
    if variant == "no-otel":
        sys.meta_path.insert(0, _NotInstalled())  # type: ignore[arg-type]
    elif variant == "otel-sdk":
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def client_options(variant: str, spec: Dict[str, Any]) -> Dict[str, Any]:
    """Keyword arguments for the client's constructor."""
    if variant in ("local", "redis"):
        from gatewayclient import RateLimit

        if variant == "local":
            return {"rate_limit": RateLimit(**BIG)}
        key = f"bench-{os.getpid()}"  # a fresh budget each measurement
        return {"rate_limit": RateLimit(**BIG, storage=spec["redis_url"], key=key)}
    return {}


def variant_of(spec: Dict[str, Any]) -> str:
    return str(spec["client"]).split("@", 1)[0].partition("+")[2]


def uses_redis(spec: Dict[str, Any]) -> bool:
    return variant_of(spec) == "redis"


@contextlib.contextmanager
def counting_round_trips() -> Iterator[List[int]]:
    """Counts what redis-py sends (one count per command, or per pipeline) while open: the
    round trips. Counted on the client because Redis's own statistics also count the commands
    a script runs inside the server."""
    import redis.asyncio.connection
    import redis.connection

    sent = [0]
    sync_class, async_class = (
        redis.connection.AbstractConnection,
        redis.asyncio.connection.AbstractConnection,
    )
    sync_send, async_send = sync_class.send_packed_command, async_class.send_packed_command

    def send(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        return sync_send(self, *args, **kwargs)

    async def asend(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        return await async_send(self, *args, **kwargs)

    sync_class.send_packed_command = send  # type: ignore[method-assign]
    async_class.send_packed_command = asend  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        sync_class.send_packed_command = sync_send  # type: ignore[method-assign]
        async_class.send_packed_command = async_send  # type: ignore[method-assign]


def exported_spans() -> int:
    """Spans the SDK's exporter holds (0 without the SDK): the traced calls were traced."""
    if "opentelemetry.sdk.trace" not in sys.modules:
        return 0
    from opentelemetry import trace

    provider: Any = trace.get_tracer_provider()
    processors = getattr(provider._active_span_processor, "_span_processors", ())
    return sum(len(p.span_exporter.get_finished_spans()) for p in processors)


def package_dirs() -> List[str]:
    """The directories gatewayclient's loaded modules came from (a ``@base`` run must show
    only the baseline's: an editable install would fill in modules the baseline lacks)."""
    found = set()
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "gatewayclient" and getattr(module, "__file__", None):
            found.add(os.path.dirname(module.__file__))
    return sorted(found)
