"""The Airflow provider's parts that need no Airflow: the provider info and its entry point, the
connection form, and how a connection's fields become a client's settings. The hook itself,
Airflow's providers manager, ``airflow connections test`` and the DAGs run with Airflow 3 in a
virtual environment of their own (examples/airflow_dag/run_dag_test.sh)."""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any, Dict, Optional

import pytest

import gatewayclient
from gatewayclient import GatewayConfigError, RateLimit, SyncGatewayClient
from gatewayclient.contrib import airflow as provider
from gatewayclient.contrib.airflow._connection import base_url, client_settings

TOKEN = "sk-airflow-5ecret-token"
EXTRA_KEYS = ["timeout", "max_retries", "api_prefix", "rate_limit", "fallbacks"]


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PLATFORM_API_URL", "AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def connection_type() -> Dict[str, Any]:
    (only,) = provider.get_provider_info()["connection-types"]
    return dict(only)


def settings(
    host: Optional[str] = "https://gateway.example.com",
    extra: Optional[Dict[str, Any]] = None,
    *,
    schema: Optional[str] = None,
    port: Optional[int] = None,
    password: Optional[str] = TOKEN,
) -> Dict[str, Any]:
    return client_settings(host, schema, port, password, extra or {})


def refused(*args: Any, **kwargs: Any) -> str:
    """The GatewayConfigError that ``settings(...)`` raises; it never holds the token."""
    with pytest.raises(GatewayConfigError) as caught:
        settings(*args, **kwargs)
    assert TOKEN not in str(caught.value)
    return str(caught.value)


# -- the provider info and its entry point --------------------------------------------------------


def test_provider_info_names_this_package_and_the_gateway_connection_type() -> None:
    info = provider.get_provider_info()
    # Airflow refuses a provider whose package-name is not its distribution's name.
    assert info["package-name"] == importlib.metadata.metadata("gatewayclient")["Name"]
    assert info["versions"] == [gatewayclient.__version__]
    assert info["name"] and info["description"]
    kind = connection_type()
    assert kind["connection-type"] == "gateway"
    assert kind["hook-class-name"] == "gatewayclient.contrib.airflow.GatewayHook"
    module, _, name = kind["hook-class-name"].rpartition(".")
    assert module == provider.__name__
    assert name in dir(provider) and name in provider.__all__


def test_the_entry_point_airflow_reads_gives_the_provider_info() -> None:
    entries = importlib.metadata.distribution("gatewayclient").entry_points
    found = [entry for entry in entries if entry.group == "apache_airflow_provider"]
    assert [entry.value for entry in found] == ["gatewayclient.contrib.airflow:get_provider_info"]
    assert found[0].load() is provider.get_provider_info


def test_each_call_gives_a_fresh_copy() -> None:
    first = provider.get_provider_info()
    first["connection-types"][0]["conn-fields"]["timeout"]["label"] = "changed"
    first["connection-types"][0]["ui-field-behaviour"]["hidden-fields"].append("host")
    assert provider.get_provider_info() != first


# -- the connection form ---------------------------------------------------------------------


def test_the_form_has_a_field_for_each_extra_setting_and_no_other() -> None:
    fields = connection_type()["conn-fields"]
    assert list(fields) == EXTRA_KEYS
    for name, field in fields.items():
        assert field["label"] and field["description"], name
        assert "null" in field["schema"]["type"], name  # each may be left empty
        settings(extra={name: None})  # and an empty one is accepted
    assert fields["rate_limit"]["schema"]["type"][0] == "object"
    assert fields["fallbacks"]["schema"]["type"][0] == "object"


def test_the_form_hides_login_and_labels_what_the_client_reads() -> None:
    behaviour = connection_type()["ui-field-behaviour"]
    assert behaviour["hidden-fields"] == ["login"]
    assert set(behaviour["relabeling"]) == {"host", "schema", "port", "password"}
    assert "token" in behaviour["relabeling"]["password"].lower()
    assert base_url(behaviour["placeholders"]["host"], None, None) == "https://gateway.example.com"


def test_the_extra_placeholder_is_a_connection_the_clients_accept() -> None:
    example = json.loads(connection_type()["ui-field-behaviour"]["placeholders"]["extra"])
    assert set(example) <= set(EXTRA_KEYS)
    made = settings(extra=example)
    assert isinstance(made["rate_limit"], RateLimit)
    assert made["rate_limit"].storage == example["rate_limit"]["storage"]
    SyncGatewayClient(**made).close()


# -- host, schema and port: the base URL ------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        ("https://gateway.example.com", None, None, "https://gateway.example.com"),
        ("https://gateway.example.com/team/", "", None, "https://gateway.example.com/team/"),
        # Airflow's URI gateway://http://:TOKEN@127.0.0.1:4000 gives the port apart.
        ("http://127.0.0.1", None, 4000, "http://127.0.0.1:4000"),
        ("https://gateway.example.com:8443", "HTTPS", 8443, "https://gateway.example.com:8443"),
        ("gateway.example.com", None, None, "https://gateway.example.com"),
        ("gateway.example.com", "http", 8080, "http://gateway.example.com:8080"),
        ("gateway.example.com/team", "https", 8443, "https://gateway.example.com:8443/team"),
        (" 127.0.0.1 ", "http", 4000, "http://127.0.0.1:4000"),
        (None, None, None, None),
        ("", "", None, None),
    ],
)
def test_host_schema_and_port_make_the_base_url(
    host: Optional[str], schema: Optional[str], port: Optional[int], expected: Optional[str]
) -> None:
    assert base_url(host, schema, port) == expected


@pytest.mark.parametrize(
    ("host", "schema", "port", "words"),
    [
        ("gateway.example.com", "postgres", None, "http or https"),
        ("https://gateway.example.com", "http", None, "schema says 'http'"),
        ("https://gateway.example.com:8443", None, 443, "port 8443 and its port field 443"),
        (None, "https", None, "no host"),
        ("", None, 4000, "no host"),
    ],
)
def test_contradicting_fields_are_a_config_error(
    host: Optional[str], schema: Optional[str], port: Optional[int], words: str
) -> None:
    assert words in refused(host, schema=schema, port=port)


def test_no_host_and_no_password_leave_the_environment_to_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = settings(None, password="")
    assert made == {"base_url": None, "auth_token": None}
    monkeypatch.setenv("PLATFORM_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AUTH_TOKEN", TOKEN)
    client = SyncGatewayClient(**made)
    assert client.base_url == "http://127.0.0.1:9"
    client.close()


# -- the JSON extra -------------------------------------------------------------------------------


def test_the_extra_gives_the_clients_settings() -> None:
    extra = {
        "timeout": 12.5,
        "max_retries": 0,
        "api_prefix": "/api/v2",
        "rate_limit": {"requests": 50, "tokens": 9000, "per": 2, "key": "team-a", "max_wait": 5},
        "fallbacks": {"openai/gpt-4o": ["anthropic/claude-sonnet-4-20250514"]},
    }
    made = settings(extra=extra)
    budget = made.pop("rate_limit")
    assert made == {
        "base_url": "https://gateway.example.com",
        "auth_token": TOKEN,
        "timeout": 12.5,
        "max_retries": 0,
        "api_prefix": "/api/v2",
        "fallbacks": extra["fallbacks"],
    }
    assert (budget.requests, budget.tokens, budget.per, budget.key, budget.max_wait) == (
        50,
        9000,
        2.0,
        "team-a",
        5.0,
    )
    client = SyncGatewayClient(**made, rate_limit=budget)
    assert client._core.config.api_root == "https://gateway.example.com/api/v2"
    client.close()


def test_a_uri_connection_gives_its_extra_as_text() -> None:
    # gateway://...?timeout=30&max_retries=3&rate_limit=%7B%22requests%22%3A+5%7D&...
    extra = {
        "timeout": "30",
        "max_retries": " 3 ",
        "rate_limit": '{"requests": 5, "storage": "redis://127.0.0.1:6379/0"}',
        "fallbacks": '{"openai/gpt-4o": ["openai/gpt-4o-mini"]}',
    }
    made = settings(extra=extra)
    assert (made["timeout"], made["max_retries"]) == (30.0, 3)
    assert (made["rate_limit"].requests, made["rate_limit"].storage) == (
        5,
        "redis://127.0.0.1:6379/0",
    )
    assert made["fallbacks"] == {"openai/gpt-4o": ["openai/gpt-4o-mini"]}


def test_empty_fields_keep_the_clients_defaults() -> None:
    extra = {"timeout": None, "max_retries": "", "rate_limit": {}, "fallbacks": None}
    made = settings(extra=extra)
    assert made == {
        "base_url": "https://gateway.example.com",
        "auth_token": TOKEN,
        "rate_limit": None,
    }


def test_an_empty_api_prefix_means_the_url_is_the_api_root() -> None:
    made = settings("https://gateway.example.com/openai", {"api_prefix": ""})
    assert made["api_prefix"] == ""
    client = SyncGatewayClient(**made)
    assert client._core.config.api_root == "https://gateway.example.com/openai"
    client.close()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"max_retry": 5}, "unknown key(s) in the connection's extra: 'max_retry'"),
        ({"timeout": "soon"}, "timeout must be a number"),
        ({"max_retries": "2.5"}, "max_retries must be a number"),
        ({"api_prefix": 1}, "api_prefix must be a string"),
        ({"rate_limit": [5]}, "rate_limit must be a JSON object, got list"),
        ({"fallbacks": "openai/gpt-4o"}, "fallbacks must be a JSON object"),
        ({"rate_limit": {"rpm": 5}}, "unknown key(s) in extra rate_limit: 'rpm'"),
        ({"rate_limit": {"requests": 0}}, "requests"),
        ({"rate_limit": {"requests": 5, "storage": "memcached://x"}}, "storage"),
    ],
)
def test_a_bad_extra_is_a_config_error_naming_the_setting(
    extra: Dict[str, Any], words: str
) -> None:
    assert words in refused(extra=extra)


def test_an_unknown_key_error_lists_the_keys_it_takes() -> None:
    assert ", ".join(EXTRA_KEYS) in refused(extra={"verify": False})


def test_a_rate_limit_that_is_not_json_is_not_echoed() -> None:
    # Its text may hold Redis's password.
    text = '{"requests": 5, "storage": "redis://:hunter2-pw@redis:6379/0"'  # no closing brace
    message = refused(extra={"rate_limit": text})
    assert "hunter2" not in message
    assert "not JSON" in message
