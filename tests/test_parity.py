"""The twins mirror each other: same public names and signatures, differing only in async."""

from __future__ import annotations

import asyncio
import inspect
import re
from typing import Any, Callable

import pytest

import gatewayclient
from gatewayclient import AsyncGatewayClient, AsyncStream, SyncGatewayClient, SyncStream, errors
from gatewayclient.errors import GatewayValidationError

CLOSERS = {"close", "aclose"}
API_METHODS = [
    "chat_completion",
    "stream_chat_completion",
    "embeddings",
    "list_models",
    "list_provider_models",
    "list_known_providers",
    "batch_chat_completions",
    "batch_embeddings",
]
MESSAGES = [{"role": "user", "content": "Hello!"}]
ERROR_NAMES = [
    name
    for name in errors.__all__
    if isinstance(getattr(errors, name), type) and issubclass(getattr(errors, name), Exception)
]


def public_names(obj: Any) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")} - CLOSERS


def to_async(annotation: Any) -> Any:
    if isinstance(annotation, str):
        return re.sub(r"\bSync(?=[A-Z])", "Async", annotation)
    return annotation


def members(cls: type) -> list[str]:
    return sorted(name for name in public_names(cls) if callable(inspect.getattr_static(cls, name)))


TWINS = [(SyncGatewayClient, AsyncGatewayClient), (SyncStream, AsyncStream)]


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("sync_class", "async_class"), TWINS, ids=["client", "stream"])
def test_twins_have_the_same_public_names(sync_class: type, async_class: type) -> None:
    assert public_names(sync_class) == public_names(async_class)


def test_client_instances_have_the_same_public_attributes() -> None:
    sync_client = SyncGatewayClient("http://127.0.0.1:9")
    async_client = AsyncGatewayClient("http://127.0.0.1:9")
    assert public_names(sync_client) == public_names(async_client)
    assert "usage" in public_names(sync_client)
    assert type(sync_client.usage) is type(async_client.usage)
    sync_client.close()


def test_clients_have_the_reference_methods() -> None:
    for name in API_METHODS:
        assert callable(getattr(SyncGatewayClient, name))
        assert callable(getattr(AsyncGatewayClient, name))


def test_closers_and_context_managers() -> None:
    assert callable(SyncGatewayClient.close)
    assert not hasattr(SyncGatewayClient, "aclose")
    assert inspect.iscoroutinefunction(AsyncGatewayClient.aclose)
    assert inspect.iscoroutinefunction(AsyncGatewayClient.close)
    assert callable(SyncGatewayClient.__enter__)
    assert callable(SyncGatewayClient.__exit__)
    assert inspect.iscoroutinefunction(AsyncGatewayClient.__aenter__)
    assert inspect.iscoroutinefunction(AsyncGatewayClient.__aexit__)


def test_stream_closers_iterators_and_context_managers() -> None:
    assert callable(SyncStream.close)
    assert not hasattr(SyncStream, "aclose")
    assert inspect.iscoroutinefunction(AsyncStream.aclose)
    assert callable(SyncStream.__iter__)
    assert callable(SyncStream.__next__)
    assert callable(SyncStream.__enter__)
    assert callable(SyncStream.__exit__)
    assert callable(AsyncStream.__aiter__)
    assert inspect.iscoroutinefunction(AsyncStream.__anext__)
    assert inspect.iscoroutinefunction(AsyncStream.__aenter__)
    assert inspect.iscoroutinefunction(AsyncStream.__aexit__)


# -- signatures ------------------------------------------------------------------------------


def _signature_pairs() -> list[Any]:
    pairs = []
    for sync_class, async_class in TWINS:
        for name in [*members(sync_class), "__init__"]:
            pairs.append(
                pytest.param(sync_class, async_class, name, id=f"{sync_class.__name__}.{name}")
            )
    return pairs


@pytest.mark.parametrize(("sync_class", "async_class", "name"), _signature_pairs())
def test_twin_methods_have_the_same_signature(
    sync_class: type, async_class: type, name: str
) -> None:
    sync_signature = inspect.signature(getattr(sync_class, name))
    async_signature = inspect.signature(getattr(async_class, name))
    sync_parameters = list(sync_signature.parameters.values())
    async_parameters = list(async_signature.parameters.values())
    assert [p.name for p in sync_parameters] == [p.name for p in async_parameters]
    for sync_parameter, async_parameter in zip(sync_parameters, async_parameters):
        assert sync_parameter.kind == async_parameter.kind, sync_parameter.name
        assert sync_parameter.default == async_parameter.default, sync_parameter.name
        assert to_async(sync_parameter.annotation) == async_parameter.annotation, (
            sync_parameter.name
        )
    assert to_async(sync_signature.return_annotation) == async_signature.return_annotation


@pytest.mark.parametrize(("sync_class", "async_class"), TWINS, ids=["client", "stream"])
def test_twin_properties_match(sync_class: type, async_class: type) -> None:
    sync_properties = {
        name: prop
        for name in public_names(sync_class)
        if isinstance(prop := inspect.getattr_static(sync_class, name), property)
    }
    for name, prop in sync_properties.items():
        twin = inspect.getattr_static(async_class, name)
        assert isinstance(twin, property), name
        sync_return = inspect.signature(prop.fget).return_annotation  # type: ignore[arg-type]
        async_return = inspect.signature(twin.fget).return_annotation  # type: ignore[arg-type]
        assert to_async(sync_return) == async_return, name


def test_chat_signature_follows_the_contract() -> None:
    parameters = inspect.signature(SyncGatewayClient.chat_completion).parameters
    assert list(parameters) == [
        "self",
        "model",
        "messages",
        "temperature",
        "max_tokens",
        "top_p",
        "params",
    ]
    kinds = {name: p.kind for name, p in parameters.items()}
    assert kinds["model"] is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert kinds["messages"] is inspect.Parameter.POSITIONAL_OR_KEYWORD
    for name in ("temperature", "max_tokens", "top_p"):
        assert kinds[name] is inspect.Parameter.KEYWORD_ONLY
        assert parameters[name].default is None
    assert kinds["params"] is inspect.Parameter.VAR_KEYWORD
    stream_parameters = inspect.signature(SyncGatewayClient.stream_chat_completion).parameters
    assert list(stream_parameters) == list(parameters)


def test_other_signatures_follow_the_contract() -> None:
    def names(method: Callable[..., Any]) -> list[str]:
        return list(inspect.signature(method).parameters)

    assert names(SyncGatewayClient.embeddings) == ["self", "model", "input", "params"]
    assert names(SyncGatewayClient.list_models) == ["self"]
    assert names(SyncGatewayClient.list_provider_models) == ["self", "provider"]
    assert names(SyncGatewayClient.list_known_providers) == ["self"]


# -- sync vs async callables ------------------------------------------------------------------


@pytest.mark.parametrize("name", [m for m in API_METHODS if m != "stream_chat_completion"])
def test_async_api_methods_are_coroutine_functions(name: str) -> None:
    assert inspect.iscoroutinefunction(getattr(AsyncGatewayClient, name))
    assert not inspect.iscoroutinefunction(getattr(SyncGatewayClient, name))


def test_async_stream_chat_completion_is_a_plain_function() -> None:
    method = AsyncGatewayClient.stream_chat_completion
    assert not inspect.iscoroutinefunction(method)
    assert not inspect.isasyncgenfunction(method)
    assert not inspect.isgeneratorfunction(method)


def test_async_stream_is_used_without_await() -> None:
    client = AsyncGatewayClient("http://127.0.0.1:9")
    stream = client.stream_chat_completion("openai/gpt-4o", MESSAGES, max_tokens=500)
    assert isinstance(stream, AsyncStream)
    assert not inspect.isawaitable(stream)
    assert hasattr(stream, "__aiter__")
    assert hasattr(stream, "__aenter__")
    assert stream.__aiter__() is stream
    assert stream.usage is None
    assert stream.completion().choices == []
    asyncio.run(stream.aclose())


def test_sync_stream_is_iterable_at_once() -> None:
    client = SyncGatewayClient("http://127.0.0.1:9")
    stream = client.stream_chat_completion("openai/gpt-4o", MESSAGES, max_tokens=500)
    assert isinstance(stream, SyncStream)
    assert iter(stream) is stream
    assert stream.usage is None
    assert stream.completion().choices == []
    stream.close()
    client.close()


@pytest.mark.parametrize("client_class", [SyncGatewayClient, AsyncGatewayClient])
def test_stream_arguments_are_checked_at_the_call(client_class: type) -> None:
    client = client_class("http://127.0.0.1:9")
    with pytest.raises(GatewayValidationError):
        client.stream_chat_completion("openai/gpt-4o", [])
    with pytest.raises(GatewayValidationError):
        client.stream_chat_completion("", MESSAGES)


@pytest.mark.parametrize(("sync_class", "async_class"), TWINS, ids=["client", "stream"])
def test_plain_methods_stay_plain_on_both(sync_class: type, async_class: type) -> None:
    for name in members(sync_class):
        if sync_class is SyncGatewayClient and name in API_METHODS:
            continue
        sync_member = getattr(sync_class, name)
        async_member = getattr(async_class, name)
        assert not inspect.iscoroutinefunction(sync_member), name
        assert not inspect.iscoroutinefunction(async_member), name


def test_completion_is_a_plain_method_on_both_streams() -> None:
    assert not inspect.iscoroutinefunction(SyncStream.completion)
    assert not inspect.iscoroutinefunction(AsyncStream.completion)
    assert isinstance(inspect.getattr_static(SyncStream, "usage"), property)
    assert isinstance(inspect.getattr_static(AsyncStream, "usage"), property)


# -- names the reference imports ------------------------------------------------------------


def test_gateway_client_is_the_async_client() -> None:
    assert gatewayclient.GatewayClient is AsyncGatewayClient


def test_gateway_client_module_exports_the_clients() -> None:
    from gatewayclient import gateway_client

    assert gateway_client.GatewayClient is AsyncGatewayClient
    assert gateway_client.AsyncGatewayClient is AsyncGatewayClient
    assert gateway_client.SyncGatewayClient is SyncGatewayClient


@pytest.mark.parametrize("name", ERROR_NAMES)
def test_every_error_is_exported_everywhere(name: str) -> None:
    from gatewayclient import gateway_client

    error_class = getattr(errors, name)
    assert getattr(gateway_client, name) is error_class
    assert name in gateway_client.__all__
    assert getattr(gatewayclient, name) is error_class
    assert name in gatewayclient.__all__


def test_reference_import_line_works() -> None:
    from gatewayclient.gateway_client import (
        GatewayAuthError,
        GatewayClient,
        GatewayClientError,
        GatewayModelNotFoundError,
        GatewayProviderError,
        GatewayRateLimitError,
    )

    assert GatewayClient is AsyncGatewayClient
    for error_class in (
        GatewayAuthError,
        GatewayModelNotFoundError,
        GatewayProviderError,
        GatewayRateLimitError,
    ):
        assert issubclass(error_class, GatewayClientError)
