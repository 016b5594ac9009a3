"""The provider in a real Airflow 3: found through its entry point, its connection form as
Airflow reads it, ``GatewayHook`` built from connections given as AIRFLOW_CONN_* variables (a
URI and JSON), ``test_connection`` and ``airflow connections test`` against a FakeGateway."""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator
from urllib.parse import quote

import pytest
from conftest import airflow, run_airflow

from gatewayclient import (
    AsyncGatewayClient,
    GatewayRateLimitError,
    SyncGatewayClient,
)
from gatewayclient.contrib.airflow import GatewayHook, get_provider_info
from gatewayclient.testing import FakeGateway, expected_reply

TOKEN = "sk-gateway-airflow-hook-5ecret"
MESSAGES = [{"role": "user", "content": "Which connection is this?"}]
MODEL = "openai/gpt-4o-mini"


@pytest.fixture
def gw() -> Iterator[FakeGateway]:
    with FakeGateway(token=TOKEN) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AIRFLOW_CONN_"):
            monkeypatch.delenv(name)


def json_connection(gw: FakeGateway, **extra: Any) -> str:
    return json.dumps(
        {"conn_type": "gateway", "host": gw.url, "password": TOKEN, "extra": extra or None}
    )


def uri_connection(gw: FakeGateway, token: str = TOKEN) -> str:
    # Airflow's URI for a host with its protocol: gateway://http://:TOKEN@127.0.0.1:PORT
    return f"gateway://http://:{quote(token, safe='')}@{gw.host}:{gw.port}/?timeout=5&max_retries=1"


def asks(client: SyncGatewayClient) -> str:
    completion = client.chat_completion(MODEL, MESSAGES)
    return str(completion.choices[0].message.content)


# -- the provider as Airflow sees it ----------------------------------------------------------


def test_airflow_finds_the_gateway_connection_type_and_its_hook() -> None:
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook = ProvidersManagerTaskRuntime().hooks["gateway"]
    assert hook is not None
    assert (hook.hook_class_name, hook.package_name) == (
        "gatewayclient.contrib.airflow.GatewayHook",
        "gatewayclient",
    )
    assert hook.connection_id_attribute_name == "gateway_conn_id"
    assert hook.hook_name == "AI gateway (gatewayclient)"


def test_airflow_draws_the_form_from_the_provider_info() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    behaviour = manager.field_behaviours["gateway"]
    assert behaviour["hidden_fields"] == ["login"]
    assert behaviour["relabeling"]["password"] == "Auth token"
    fields = {
        name.rsplit("__", 1)[1]: widget
        for name, widget in manager.connection_form_widgets.items()
        if name.startswith("extra__gateway__")
    }
    assert list(fields) == ["timeout", "max_retries", "api_prefix", "rate_limit", "fallbacks"]
    assert fields["rate_limit"].field["schema"]["title"] == "Rate limit"
    assert not any(widget.is_sensitive for widget in fields.values())


def test_the_provider_info_follows_airflows_schemas() -> None:
    """The runtime schema (what Airflow checks when it loads a provider) and the stricter one
    Apache's own providers are written against, for the connection type."""
    import jsonschema
    from airflow import providers_manager

    info = get_provider_info()
    root = Path(providers_manager.__file__).parent
    runtime = json.loads((root / "provider_info.schema.json").read_text())
    jsonschema.validate(info, runtime)
    strict = json.loads((root / "provider.yaml.schema.json").read_text())
    kinds = strict["properties"]["connection-types"]
    jsonschema.validate(info["connection-types"], kinds)


def test_airflow_lists_the_provider() -> None:
    listed = airflow("providers", "get", "gatewayclient", "--output", "json", env=dict(os.environ))
    assert '"gatewayclient"' in listed and '"0.1.0"' in listed


# -- GatewayHook -----------------------------------------------------------------------------


def test_the_hook_reads_a_json_connection(gw: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GATEWAY_DEFAULT", json_connection(gw, timeout=5))
    hook = GatewayHook()
    client = hook.get_client()
    assert isinstance(client, SyncGatewayClient) and client.base_url == gw.url
    assert asks(client) == expected_reply(MODEL, MESSAGES)
    assert gw.requests[-1].headers["authorization"] == "Bearer ***"  # the token was sent
    assert hook.get_client() is client and hook.get_conn() is client


def test_the_hook_reads_a_uri_connection(gw: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MY_GATEWAY", uri_connection(gw))
    client = GatewayHook("my_gateway").get_client()
    assert client.base_url == gw.url
    assert asks(client) == expected_reply(MODEL, MESSAGES)


def test_a_host_name_with_schema_and_port(gw: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "gateway", "host": gw.host, "schema": "http", "port": gw.port}
    monkeypatch.setenv("AIRFLOW_CONN_GATEWAY_DEFAULT", json.dumps({**conn, "password": TOKEN}))
    assert asks(GatewayHook().get_client()) == expected_reply(MODEL, MESSAGES)


def test_the_async_client_across_event_loops(
    gw: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GATEWAY_DEFAULT", json_connection(gw))
    hook = GatewayHook()

    async def ask() -> str:
        client = hook.get_async_client()
        assert isinstance(client, AsyncGatewayClient) and hook.get_async_client() is client
        completion = await client.chat_completion(MODEL, MESSAGES)
        return str(completion.choices[0].message.content)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unclosed session, no loop closed under it
        answers = [asyncio.run(ask()), asyncio.run(ask())]
    assert answers == [expected_reply(MODEL, MESSAGES)] * 2


def test_the_hooks_two_clients_share_one_budget(
    gw: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget: Dict[str, Any] = {"requests": 2, "per": 60, "max_wait": 0}
    monkeypatch.setenv("AIRFLOW_CONN_GATEWAY_DEFAULT", json_connection(gw, rate_limit=budget))
    hook = GatewayHook()
    asks(hook.get_client())
    asyncio.run(hook.get_async_client().chat_completion(MODEL, MESSAGES))
    with pytest.raises(GatewayRateLimitError) as refused:
        asks(hook.get_client())
    assert refused.value.status_code is None  # the budget's own refusal: nothing was sent
    assert len(gw.requests) == 2


def test_a_new_hook_reads_an_edited_connection(
    gw: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GATEWAY_DEFAULT", json_connection(gw, api_prefix="/v1"))
    first = GatewayHook()
    first.get_client()
    monkeypatch.setenv("AIRFLOW_CONN_GATEWAY_DEFAULT", json_connection(gw, api_prefix="/v2"))
    assert first.get_async_client()._core.config.api_root == gw.url + "/v1"  # read once
    assert GatewayHook().get_client()._core.config.api_root == gw.url + "/v2"


def test_a_bad_connection_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_BROKEN", json.dumps({"conn_type": "gateway", "extra": {"x": 1}})
    )
    ok, reason = GatewayHook("broken").test_connection()
    assert not ok
    assert reason.startswith("GatewayConfigError: connection 'broken': unknown key(s)")


# -- test_connection and `airflow connections test` -------------------------------------------


def test_test_connection_lists_the_models(gw: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GATEWAY_DEFAULT", json_connection(gw))
    ok, message = GatewayHook().test_connection()
    assert ok, message
    assert [r.path for r in gw.requests] == ["/v1/models"]
    models = GatewayHook().get_client().list_models().data
    assert models and message == f"Connected to {gw.url}: {len(models)} model(s) listed"


def test_a_wrong_token_fails_with_the_reason_and_never_the_token(
    gw: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "sk-wrong-token-that-must-not-show"
    # A gateway that echoes the token it refused.
    gw.fail(401, body={"error": {"message": f"Invalid token {wrong}", "type": "auth_error"}})
    conn = json.dumps({"conn_type": "gateway", "host": gw.url, "password": wrong})
    monkeypatch.setenv("AIRFLOW_CONN_GATEWAY_DEFAULT", conn)
    ok, reason = GatewayHook().test_connection()
    assert not ok
    assert reason.startswith("GatewayAuthError: HTTP 401: Invalid token")
    assert wrong not in reason


def test_an_unreachable_gateway_fails_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeGateway() as gone:
        url = gone.url
    conn = {"conn_type": "gateway", "host": url, "password": TOKEN, "extra": {"max_retries": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_GATEWAY_DEFAULT", json.dumps(conn))
    ok, reason = GatewayHook().test_connection()
    assert not ok and reason.startswith("GatewayConnectionError: ")


@pytest.mark.parametrize("form", ["uri", "json"])
def test_airflow_connections_test_answers_true(gw: FakeGateway, form: str) -> None:
    conn = uri_connection(gw) if form == "uri" else json_connection(gw)
    env = dict(os.environ, AIRFLOW__CORE__TEST_CONNECTION="Enabled")
    env["AIRFLOW_CONN_GATEWAY_DEFAULT"] = conn
    output = airflow("connections", "test", "gateway_default", env=env)
    assert "Connection success!" in output
    assert [r.path for r in gw.requests] == ["/v1/models"]


def test_airflow_connections_test_answers_false_for_a_wrong_token(gw: FakeGateway) -> None:
    wrong = "sk-wrong-token-in-the-cli-test"
    env = dict(os.environ, AIRFLOW__CORE__TEST_CONNECTION="Enabled")
    env["AIRFLOW_CONN_GATEWAY_DEFAULT"] = uri_connection(gw, wrong)
    result = run_airflow("connections", "test", "gateway_default", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "Connection failed!" in output and "GatewayAuthError: HTTP 401" in output
    assert wrong not in output
