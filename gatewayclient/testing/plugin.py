"""pytest plugin: a FakeGateway per test and clients bound to it.

Fixtures:

- ``fake_gateway``: a started :class:`FakeGateway` (own thread, random port), stopped after the
  test.
- ``gateway_client``: a ``SyncGatewayClient`` for ``fake_gateway``, closed after the test.
- ``async_gateway_client``: an ``AsyncGatewayClient`` for ``fake_gateway``, not yet opened: use
  it as ``async with async_gateway_client as client:`` inside the test's event loop, which
  closes it there (an aiohttp session belongs to the loop that made it).
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from ._gateway import FakeGateway


@pytest.fixture
def fake_gateway() -> Iterator[FakeGateway]:
    """A running FakeGateway, stopped (thread joined, port closed) after the test."""
    with FakeGateway() as gateway:
        yield gateway


@pytest.fixture
def gateway_client(fake_gateway: FakeGateway) -> Iterator[Any]:
    """A ``SyncGatewayClient`` talking to ``fake_gateway``, closed after the test."""
    # Imported here, not at the top: the plugin loads before (and without) the client modules.
    from gatewayclient import SyncGatewayClient  # type: ignore[attr-defined,unused-ignore]

    client = SyncGatewayClient(base_url=fake_gateway.url, auth_token=fake_gateway.token)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def async_gateway_client(fake_gateway: FakeGateway) -> Iterator[Any]:
    """An unopened ``AsyncGatewayClient`` for ``fake_gateway``: ``async with`` it in the test."""
    from gatewayclient import AsyncGatewayClient  # type: ignore[attr-defined,unused-ignore]

    yield AsyncGatewayClient(base_url=fake_gateway.url, auth_token=fake_gateway.token)
