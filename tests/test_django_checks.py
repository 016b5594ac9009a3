"""The GATEWAYCLIENT setting of gatewayclient.contrib.django: its keys, `manage.py check` (ids
gatewayclient.E001-E003, every problem at once, never the token) and the app's registration."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from django_support import configure_django

import gatewayclient

APP = "gatewayclient.contrib.django"
ABSENT: Any = object()
URL = "http://127.0.0.1:9"  # never connected to: checks build the configuration only
TOKEN = "sk-live-NEVER-SHOWN-4f1c9a"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "django_app"

# One valid value for every key: the keys are the constructors' keywords in upper case.
VALID: Dict[str, Any] = {
    "BASE_URL": URL,
    "AUTH_TOKEN": TOKEN,
    "TIMEOUT": 5,
    "MAX_RETRIES": 1,
    "MAX_RETRY_AFTER": 2.5,
    "API_PREFIX": "/v1",
    "DEFAULT_HEADERS": {"X-Team": "search"},
    "VERIFY": False,
    "MAX_CONNECTIONS": 10,
    "RETRY_POLICY": {"max_retries": 3, "backoff_base": 0},
    "RATE_LIMIT": {"requests": 500, "tokens": 200_000, "max_wait": 1.0},
    "FALLBACKS": {"openai/gpt-4o": ["anthropic/claude-sonnet-4-20250514"]},
}


@pytest.fixture(autouse=True)
def django_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    configure_django()
    monkeypatch.delenv("PLATFORM_API_URL", raising=False)
    monkeypatch.delenv("AUTH_TOKEN", raising=False)
    yield


def run_checks(setting: Any = ABSENT, installed: bool = True) -> List[Any]:
    from django.conf import settings
    from django.core import checks
    from django.test import override_settings

    with override_settings(INSTALLED_APPS=[APP] if installed else []):
        if setting is ABSENT:
            del settings.GATEWAYCLIENT
        else:
            settings.GATEWAYCLIENT = setting
        return list(checks.run_checks(tags=["gatewayclient"]))


def described(messages: List[Any]) -> List[str]:
    return [f"{m.id} {m.msg}" for m in messages]


# -- the keys ------------------------------------------------------------------------------------


def test_the_keys_are_both_constructors_keywords_in_upper_case() -> None:
    for client in (gatewayclient.SyncGatewayClient, gatewayclient.AsyncGatewayClient):
        keywords = [name for name in inspect.signature(client).parameters]
        assert sorted(name.upper() for name in keywords) == sorted(VALID)


def test_a_setting_using_every_key_has_no_problem() -> None:
    assert run_checks(VALID) == []


def test_base_url_and_auth_token_fall_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert described(run_checks({"TIMEOUT": 5})) == [
        "gatewayclient.E003 No gateway URL: GATEWAYCLIENT['BASE_URL'] is not set, nor is "
        "PLATFORM_API_URL"
    ]
    monkeypatch.setenv("PLATFORM_API_URL", URL)
    monkeypatch.setenv("AUTH_TOKEN", TOKEN)
    assert run_checks({"TIMEOUT": 5}) == []
    assert run_checks() == []  # no setting at all: the environment is enough


# -- the checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (
            {"BASE_URL": URL, "TIMEOUTS": 5},
            "gatewayclient.E001 GATEWAYCLIENT has an unknown key 'TIMEOUTS': did you mean "
            "'TIMEOUT'?",
        ),
        (
            {"base_url": URL, "BASE_URL": URL},
            "gatewayclient.E001 GATEWAYCLIENT has an unknown key 'base_url': did you mean "
            "'BASE_URL'?",
        ),
        (
            {"BASE_URL": URL, "COLOUR": "blue"},
            "gatewayclient.E001 GATEWAYCLIENT has an unknown key 'COLOUR'",
        ),
        (
            {"BASE_URL": URL, "RATE_LIMIT": {"request": 5}},
            "gatewayclient.E001 GATEWAYCLIENT['RATE_LIMIT'] has an unknown key 'request': did "
            "you mean 'requests'?",
        ),
        (
            {"BASE_URL": URL, "RETRY_POLICY": {"MAX_RETRIES": 5}},
            "gatewayclient.E001 GATEWAYCLIENT['RETRY_POLICY'] has an unknown key "
            "'MAX_RETRIES': did you mean 'max_retries'?",
        ),
    ],
)
def test_an_unknown_key_is_e001_with_the_likely_one(setting: Any, expected: str) -> None:
    messages = run_checks(setting)
    assert described(messages) == [expected]
    assert messages[0].is_serious()
    assert "upper case" in messages[0].hint or "takes the keywords of" in messages[0].hint


def test_a_nested_unknown_key_names_the_keywords_of_its_class() -> None:
    (message,) = run_checks({"BASE_URL": URL, "RATE_LIMIT": {"rpm": 5}})
    assert message.hint == (
        "RATE_LIMIT takes the keywords of RateLimit: key, max_wait, per, requests, storage, tokens."
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"TIMEOUT": -1}, "GATEWAYCLIENT['TIMEOUT'] is refused: timeout must be"),
        ({"MAX_RETRIES": "2"}, "GATEWAYCLIENT['MAX_RETRIES'] is refused: max_retries must be"),
        ({"MAX_CONNECTIONS": 0}, "GATEWAYCLIENT['MAX_CONNECTIONS'] is refused: max_connections"),
        ({"BASE_URL": 42}, "GATEWAYCLIENT['BASE_URL'] must be a string, not int"),
        ({"BASE_URL": "ftp://gateway"}, "GATEWAYCLIENT['BASE_URL'] is refused: base_url must be"),
        ({"VERIFY": "/no/such/ca.pem"}, "GATEWAYCLIENT['VERIFY'] is refused: verify must be"),
        ({"DEFAULT_HEADERS": {"X-A": "a\nb"}}, "GATEWAYCLIENT['DEFAULT_HEADERS'] is refused"),
        ({"FALLBACKS": ["openai/gpt-4o"]}, "GATEWAYCLIENT['FALLBACKS'] is refused: fallbacks"),
        ({"RATE_LIMIT": [500]}, "GATEWAYCLIENT['RATE_LIMIT'] must be a dict of RateLimit's"),
        ({"RATE_LIMIT": {}}, "GATEWAYCLIENT['RATE_LIMIT'] is refused: RateLimit needs"),
        (
            {"RATE_LIMIT": {"requests": 5, "storage": "http://cache"}},
            "GATEWAYCLIENT['RATE_LIMIT'] is refused: RateLimit storage must be",
        ),
        ({"RETRY_POLICY": {"max_retries": -1}}, "GATEWAYCLIENT['RETRY_POLICY'] is refused"),
    ],
)
def test_a_value_the_client_refuses_is_e002(change: Dict[str, Any], expected: str) -> None:
    setting = {key: value for key, value in VALID.items() if key != "RETRY_POLICY"}
    (message,) = run_checks({**setting, **change})
    assert message.id == "gatewayclient.E002"
    assert message.msg.startswith(expected), message.msg
    assert "keyword of the same name" in message.hint


def test_a_setting_that_is_not_a_dict_is_e002() -> None:
    assert described(run_checks([("BASE_URL", URL)])) == [
        "gatewayclient.E002 GATEWAYCLIENT must be a dict, not list"
    ]


def test_a_bad_environment_variable_is_e002_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_API_URL", "ftp://gateway")
    (message,) = run_checks({"TIMEOUT": 5})
    assert message.id == "gatewayclient.E002"
    assert message.msg.startswith("The client's configuration is refused: PLATFORM_API_URL")


@pytest.mark.parametrize("setting", [ABSENT, {}, {"BASE_URL": ""}, {"BASE_URL": "  "}])
def test_no_base_url_at_all_is_e003(setting: Any) -> None:
    (message,) = run_checks(setting)
    assert message.id == "gatewayclient.E003"
    assert message.hint == (
        "Set GATEWAYCLIENT['BASE_URL'] or the PLATFORM_API_URL environment variable."
    )


def test_every_problem_is_reported_at_once() -> None:
    messages = run_checks({"TIMEOUTS": 5, "RETRIES": 2, "RATE_LIMIT": "500/min"})
    assert [m.id for m in messages] == [
        "gatewayclient.E001",
        "gatewayclient.E001",
        "gatewayclient.E002",
        "gatewayclient.E003",
    ]


# -- the token is never shown ------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"AUTH_TOKEN": TOKEN[:8] + "\n" + TOKEN[8:]},
        {"AUTH_TOKEN": TOKEN, "BASE_URL": f"ftp://{TOKEN}.example"},
        {"AUTH_TOKEN": TOKEN, "BASE_URL": f"http://user:{TOKEN}@127.0.0.1:9"},
        {"AUTH_TOKEN": TOKEN, "DEFAULT_HEADERS": {"Authorization": f"Bearer {TOKEN}\r\n"}},
        {"AUTH_TOKEN": TOKEN, "BASE_URL": f"http://127.0.0.1:9/{TOKEN}#"},
        {"AUTH_TOKEN": TOKEN, "TIMEOUT": TOKEN},
    ],
)
def test_no_check_message_shows_the_token(
    change: Dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    messages = run_checks({**VALID, **change})
    assert [m.id for m in messages] == ["gatewayclient.E002"]
    shown = " ".join(f"{m} {m.msg} {m.hint} {m!r}" for m in messages) + caplog.text
    assert TOKEN not in shown and "NEVER-SHOWN" not in shown, shown


def test_no_check_message_shows_a_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTH_TOKEN", TOKEN)
    messages = run_checks({"BASE_URL": f"ftp://{TOKEN}.example"})  # the client echoes a URL
    assert [m.id for m in messages] == ["gatewayclient.E002"]
    assert TOKEN not in str(messages[0])
    assert messages[0].msg.endswith("got 'ftp://***.example'")


# -- the app -------------------------------------------------------------------------------------


def test_the_checks_run_only_while_the_app_is_installed() -> None:
    assert [m.id for m in run_checks({"TIMEOUTS": 5}, installed=True)] == [
        "gatewayclient.E001",
        "gatewayclient.E003",
    ]
    assert run_checks({"TIMEOUTS": 5}, installed=False) == []


def test_ready_running_again_registers_the_check_once() -> None:
    from django.apps import apps
    from django.test import override_settings

    for _ in range(3):  # each override of INSTALLED_APPS builds the app configs and runs ready()
        with override_settings(INSTALLED_APPS=[APP]):
            assert apps.get_app_config("gatewayclient").name == APP
    assert described(run_checks({"BASE_URL": URL, "TIMEOUTS": 5})) == [
        "gatewayclient.E001 GATEWAYCLIENT has an unknown key 'TIMEOUTS': did you mean 'TIMEOUT'?"
    ]


def test_installing_the_app_creates_no_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.test import override_settings

    built: List[object] = []

    class Counting(gatewayclient.SyncGatewayClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gatewayclient, "SyncGatewayClient", Counting)
    with override_settings(INSTALLED_APPS=[APP], GATEWAYCLIENT=VALID):
        importlib.import_module(APP)
        assert built == []


def manage_py_check(tmp_path: Path, settings_source: str, **env: str) -> Any:
    (tmp_path / "checked_settings.py").write_text(settings_source)
    environ = {k: v for k, v in os.environ.items() if k not in ("PLATFORM_API_URL", "AUTH_TOKEN")}
    environ.update(
        DJANGO_SETTINGS_MODULE="checked_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(EXAMPLE)]),
        **env,
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=EXAMPLE,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_manage_py_check_reports_the_setting_in_a_real_project(tmp_path: Path) -> None:
    bad = manage_py_check(
        tmp_path,
        "from gatewaysite.settings import *\n"
        f"GATEWAYCLIENT = {{'TIMEOUTS': 30, 'AUTH_TOKEN': {TOKEN + chr(10)!r}}}\n",
    )
    assert bad.returncode == 1
    assert "(gatewayclient.E001) GATEWAYCLIENT has an unknown key 'TIMEOUTS'" in bad.stderr
    assert "did you mean 'TIMEOUT'?" in bad.stderr
    assert "(gatewayclient.E003) No gateway URL" in bad.stderr
    assert TOKEN not in bad.stderr + bad.stdout

    good = manage_py_check(
        tmp_path, "from gatewaysite.settings import *\n", PLATFORM_API_URL="http://127.0.0.1:9"
    )
    assert (good.returncode, good.stderr) == (0, "")
    assert "System check identified no issues" in good.stdout
