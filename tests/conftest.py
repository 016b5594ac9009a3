"""Fixtures shared by the suite: one FakeGateway per session, and ``twin``, which drives either
client through one blocking interface so that each behaviour is written once and run on both."""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest
from redis_server import own_redis, redis_server, redis_session  # noqa: F401  (fixtures)
from twin import Twin

from gatewayclient import RetryPolicy
from gatewayclient.testing import FakeGateway

FAST = RetryPolicy(max_retries=2, backoff_base=0.0)


@pytest.fixture(scope="session")
def gateway_server() -> Iterator[FakeGateway]:
    with FakeGateway() as gateway:
        yield gateway


@pytest.fixture
def gw(gateway_server: FakeGateway) -> Iterator[FakeGateway]:
    """The session's FakeGateway, with faults, records and limits reset around each test."""
    gateway_server.clear_faults()
    gateway_server.clear_requests()
    gateway_server.rpm_limit = None
    gateway_server.reset_rate_limit()
    yield gateway_server
    gateway_server.clear_faults()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(kind: str, gw: FakeGateway) -> Iterator[Callable[..., Twin]]:
    """Build clients of this test's kind (FakeGateway, zero-wait retries unless overridden)."""
    made: List[Twin] = []

    def build(base_url: str | None = None, auth_token: str | None = None, **kwargs: Any) -> Twin:
        kwargs.setdefault("retry_policy", FAST if "max_retries" not in kwargs else None)
        twin = Twin(kind, base_url or gw.url, auth_token or gw.token, **kwargs)
        made.append(twin)
        return twin

    yield build
    for twin in made:
        twin.close()


@pytest.fixture
def twin(make: Callable[..., Twin]) -> Twin:
    return make()
