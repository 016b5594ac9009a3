"""The examples/, run the way their readers would run them, against a FakeGateway on loopback.

Scripts run in a subprocess with PLATFORM_API_URL and AUTH_TOKEN set; the aiohttp service runs
under aiohttp's test client and as a real process on 127.0.0.1; the Django project answers
real requests through its URL routing with django.test.Client. The Airflow DAG runs in its own
virtual environment (examples/airflow_dag/run_dag_test.sh); here it is only parsed.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import requests

from gatewayclient.testing import FakeGateway, expected_embedding, expected_reply, expected_usage

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 60  # seconds, for every subprocess
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def gw() -> Iterator[FakeGateway]:
    """A FakeGateway of this test's own (not the suite's shared one): the example processes
    find it through PLATFORM_API_URL, and its recorded requests are this test's alone."""
    with FakeGateway() as gateway:
        yield gateway


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py as a module (its ``__main__`` block does not run)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gateway_env(gw: FakeGateway, **overrides: str) -> Dict[str, str]:
    env = {**os.environ, "PLATFORM_API_URL": gw.url, "AUTH_TOKEN": gw.token}
    env.pop("PYTHONWARNINGS", None)
    env.update(overrides)
    return env


def assert_no_leak_warnings(stderr: str) -> None:
    for marker in ("ResourceWarning", "Unclosed", "Event loop is closed", "Traceback"):
        assert marker not in stderr, stderr


def run_example(
    gw: FakeGateway, script: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run examples/<script> as a user would, with ResourceWarnings turned into errors."""
    command = [sys.executable, "-W", "error::ResourceWarning", str(EXAMPLES / script), *args]
    result = subprocess.run(
        command, env=gateway_env(gw, **env), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert_no_leak_warnings(result.stderr)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def user(text: str) -> List[Dict[str, str]]:
    return [{"role": "user", "content": text}]


# -- 1. sync_script.py -------------------------------------------------------------------------


def test_sync_script_prints_answers_and_usage(gw: FakeGateway) -> None:
    example = load_example("sync_script")
    result = run_example(gw, "sync_script.py")

    assert result.returncode == 0, result.stderr
    expected: List[str] = []
    totals = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for question in example.DEFAULT_QUESTIONS:
        messages = [example.SYSTEM, *user(question)]
        used = expected_usage(example.MODEL, messages, 200)
        expected += [
            f"Q: {question}",
            f"A: {expected_reply(example.MODEL, messages, 200)}",
            f"   ({used['total_tokens']} tokens)",
        ]
        totals = {key: totals[key] + used[key] for key in totals}
    count = len(example.DEFAULT_QUESTIONS)
    expected += [
        f"usage: {count} requests, {totals['prompt_tokens']} prompt + "
        f"{totals['completion_tokens']} completion = {totals['total_tokens']} tokens",
        f"usage[{example.MODEL}]: {totals['total_tokens']} tokens in {count} requests",
    ]
    assert result.stdout.splitlines() == expected
    assert [r.path for r in gw.requests] == ["/v1/chat/completions"] * count


def test_sync_script_takes_questions_from_the_command_line(gw: FakeGateway) -> None:
    result = run_example(gw, "sync_script.py", "Is it raining?")

    assert result.returncode == 0, result.stderr
    assert "A: Hello from openai/gpt-4o-mini! You said: Is it raining?" in result.stdout
    assert "usage: 1 requests," in result.stdout


def test_sync_script_without_a_gateway_url_says_so_in_one_line(gw: FakeGateway) -> None:
    result = run_example(gw, "sync_script.py", PLATFORM_API_URL="")

    assert result.returncode == 1
    assert result.stderr.strip().startswith("gateway error: no gateway URL")
    assert "PLATFORM_API_URL" in result.stderr
    assert gw.requests == []


# -- 2. asyncio_service.py ---------------------------------------------------------------------


@pytest.fixture
def service(gw: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("PLATFORM_API_URL", gw.url)
    monkeypatch.setenv("AUTH_TOKEN", gw.token)
    return load_example("asyncio_service")


def call_service(service: ModuleType, *calls: Tuple[str, str, Any]) -> List[Tuple[int, Any, Any]]:
    """Start the app under aiohttp's test client, make ``calls`` (method, path, body), stop it;
    (status, JSON body, headers) for each call."""
    from aiohttp.test_utils import TestClient, TestServer

    async def scenario() -> List[Tuple[int, Any, Any]]:
        answers = []
        async with TestClient(TestServer(service.create_app())) as client:
            for method, path, body in calls:
                data = body if isinstance(body, str) else json.dumps(body)
                async with client.request(method, path, data=data) as response:
                    answers.append((response.status, await response.json(), response.headers))
        return answers

    return asyncio.run(scenario())


def test_asyncio_service_answers_and_counts_usage(service: ModuleType, gw: FakeGateway) -> None:
    question = "What is an API gateway?"
    (status, body, _), (_, body2, _), (_, usage, _) = call_service(
        service,
        ("POST", "/ask", {"question": question}),
        ("POST", "/ask", {"question": question, "model": "anthropic/claude-haiku-4-20250414"}),
        ("GET", "/usage", None),
    )

    assert status == 200
    assert body == {
        "answer": expected_reply(service.DEFAULT_MODEL, user(question)),
        "model": service.DEFAULT_MODEL,
        "usage": expected_usage(service.DEFAULT_MODEL, user(question)),
    }
    assert body2["model"] == "anthropic/claude-haiku-4-20250414"
    assert usage["requests"] == 2
    assert usage["total_tokens"] == body["usage"]["total_tokens"] + body2["usage"]["total_tokens"]


def test_asyncio_service_maps_gateway_errors(service: ModuleType, gw: FakeGateway) -> None:
    gw.fail(429, times=3, retry_after=0.05)  # the first try and both retries
    answers = call_service(
        service,
        ("POST", "/ask", "not json"),
        ("POST", "/ask", {"question": "  "}),
        ("POST", "/ask", {"question": "Hi"}),
        ("POST", "/ask", {"question": "Hi", "model": "openai/no-such-model"}),
    )

    assert [status for status, _, _ in answers] == [400, 400, 503, 404]
    assert answers[2][2]["Retry-After"] == "1"
    assert answers[3][1] == {"error": "unknown model 'openai/no-such-model'"}
    assert len(gw.requests) == 3 + 1


def test_asyncio_service_runs_as_a_process_and_shuts_down_cleanly(gw: FakeGateway) -> None:
    port = free_port()
    command = [sys.executable, "-W", "error::ResourceWarning", str(EXAMPLES / "asyncio_service.py")]
    env = gateway_env(gw, HOST="127.0.0.1", PORT=str(port))
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.communicate()
            with contextlib.suppress(requests.ConnectionError):
                requests.get(f"{base}/usage", timeout=5).close()
                break
            assert time.monotonic() < deadline, "the service did not start listening"
            time.sleep(0.05)
        with requests.Session() as http:
            answer = http.post(f"{base}/ask", json={"question": "Up?"}, timeout=10)
            assert answer.status_code == 200
            assert answer.json()["answer"] == expected_reply("openai/gpt-4o-mini", user("Up?"))
            assert http.get(f"{base}/usage", timeout=10).json()["requests"] == 1
        process.send_signal(signal.SIGINT)  # Ctrl-C: run_app stops and runs the cleanup
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert_no_leak_warnings(stderr)


def test_asyncio_service_prints_its_spans_when_asked(gw: FakeGateway) -> None:
    port = free_port()
    command = [sys.executable, str(EXAMPLES / "asyncio_service.py")]
    env = gateway_env(gw, HOST="127.0.0.1", PORT=str(port), OTEL_TRACES_EXPORTER="console")
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.communicate()
            with contextlib.suppress(requests.ConnectionError):
                requests.post(f"{base}/ask", json={"question": "Traced?"}, timeout=10).close()
                break
            assert time.monotonic() < deadline, "the service did not start listening"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert '"name": "chat openai/gpt-4o-mini"' in stdout
    assert '"gen_ai.usage.output_tokens"' in stdout
    assert gw.token not in stdout


# -- 3. streaming.py ---------------------------------------------------------------------------


def test_streaming_prints_both_streams_then_completion_and_usage(gw: FakeGateway) -> None:
    question = "Tell me about rivers"
    result = run_example(gw, "streaming.py", *question.split())

    assert result.returncode == 0, result.stderr
    reply = expected_reply("openai/gpt-4o-mini", user(question), 200)
    used = expected_usage("openai/gpt-4o-mini", user(question), 200)
    report = [
        reply,
        f"[{len(reply)} characters, finish_reason=stop]",
        f"[usage: {used['prompt_tokens']} prompt + {used['completion_tokens']} completion]",
    ]
    assert result.stdout.splitlines() == ["--- sync", *report, "--- async", *report]
    streams = [r.json for r in gw.requests]
    assert len(streams) == 2
    assert all(s["stream"] is True for s in streams)
    assert all(s["stream_options"] == {"include_usage": True} for s in streams)


# -- 4. embeddings.py --------------------------------------------------------------------------


def test_embeddings_ranks_documents_by_cosine_similarity(gw: FakeGateway) -> None:
    example = load_example("embeddings")
    query = "where is my invoice"
    result = run_example(gw, "embeddings.py", *query.split())

    assert result.returncode == 0, result.stderr
    # The fake's vectors are unit vectors, so the cosine is the dot product.
    query_vector = expected_embedding(example.MODEL, query)
    scored = sorted(
        (
            (sum(a * b for a, b in zip(query_vector, expected_embedding(example.MODEL, doc))), doc)
            for doc in example.DOCUMENTS
        ),
        reverse=True,
    )
    lines = result.stdout.splitlines()
    assert lines[:-1] == [f"{i}. {s:+.4f}  {doc}" for i, (s, doc) in enumerate(scored, 1)]
    words = sum(len(text.split()) for text in [query, *example.DOCUMENTS])
    assert lines[-1] == f"[{words} tokens embedded]"
    (request,) = gw.requests
    assert request.json["input"] == [query, *example.DOCUMENTS]


def test_cosine_of_the_embeddings_example() -> None:
    cosine = load_example("embeddings").cosine
    assert cosine([1.0, 0.0], [2.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 3.0]) == pytest.approx(0.0)
    assert cosine([1.0, 1.0], [-1.0, -1.0]) == pytest.approx(-1.0)


# -- 5. error_handling.py ----------------------------------------------------------------------


def run_errors(
    gw: FakeGateway, *args: str, **env: str
) -> Tuple[int, List[str], List[str], List[str]]:
    result = run_example(gw, "error_handling.py", *args, **env)
    paths = [r.path for r in gw.requests]
    return result.returncode, result.stdout.splitlines(), result.stderr.splitlines(), paths


CHAT = "/v1/chat/completions"


def test_error_handling_answers_when_all_is_well(gw: FakeGateway) -> None:
    code, out, err, paths = run_errors(gw, "Hi there")
    assert (code, out, err, paths) == (
        0,
        [expected_reply("openai/gpt-4o", user("Hi there"))],
        [],
        [CHAT],
    )


def test_error_handling_falls_back_when_the_model_is_not_found(gw: FakeGateway) -> None:
    code, out, _, _ = run_errors(gw, "--model", "openai/gpt-9", "Hi")
    assert code == 0
    assert out[0].startswith("model 'openai/gpt-9' not found (The model 'openai/gpt-9' does not")
    assert out[1] == expected_reply("openai/gpt-4o-mini", user("Hi"))
    assert [r.json["model"] for r in gw.requests] == ["openai/gpt-9", "openai/gpt-4o-mini"]


def test_error_handling_reports_a_bad_token_without_retrying(gw: FakeGateway) -> None:
    code, out, err, paths = run_errors(gw, AUTH_TOKEN="not-the-token")
    assert (code, out, err, paths) == (77, [], ["auth failed (HTTP 401): check AUTH_TOKEN"], [CHAT])


def test_error_handling_retries_a_429_as_long_as_retry_after_says(gw: FakeGateway) -> None:
    gw.fail(429, retry_after=0.2)
    code, out, err, paths = run_errors(gw, "Hi")
    assert code == 0
    assert out == [expected_reply("openai/gpt-4o", user("Hi"))]
    (warning,) = err
    assert warning.startswith("WARNING gatewayclient: ")
    assert warning.endswith("failed (HTTP 429: GatewayRateLimitError); retry 1 of 2 in 0.20 s")
    assert paths == [CHAT, CHAT]


def test_error_handling_gives_up_at_once_on_a_long_retry_after(gw: FakeGateway) -> None:
    gw.fail(429, retry_after=120)  # longer than --max-retry-after (20 s): not waited for
    started = time.monotonic()
    code, out, err, paths = run_errors(gw)
    assert (code, out, err, paths) == (75, [], ["rate limited: try again in 120 s"], [CHAT])
    assert time.monotonic() - started < 10


def test_error_handling_reports_a_provider_failure_after_the_retries(gw: FakeGateway) -> None:
    gw.fail(502, times=2)
    code, _, err, paths = run_errors(gw, "--max-retries", "1")
    assert code == 69
    assert re.fullmatch(
        r"WARNING gatewayclient: .* failed \(HTTP 502: GatewayProviderError\); retry 1 of 1 in "
        r"\d+\.\d\d s",
        err[0],
    )
    assert err[-1].startswith("provider failed: Scripted error 502 Bad Gateway (request id req_")
    assert paths == [CHAT, CHAT]


def test_error_handling_reports_a_timeout(gw: FakeGateway) -> None:
    gw.stall(3)
    code, out, err, paths = run_errors(gw, "--timeout", "0.3", "--max-retries", "0")
    assert (code, out, err, paths) == (69, [], ["timed out after 0.3 s per attempt"], [CHAT])


def test_error_handling_reports_an_unreachable_gateway(gw: FakeGateway) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, _, err, _ = run_errors(gw, "--max-retries", "0", PLATFORM_API_URL=url)
    assert code == 69
    assert err == [f"cannot connect to the gateway at {url}: connection refused"]


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["--model", ""], {}, 64, "invalid request: model must be a non-empty string"),
        ([], {"PLATFORM_API_URL": ""}, 78, "configuration: no gateway URL"),
        ([], {"PLATFORM_API_URL": "ftp://gateway"}, 78, "configuration: PLATFORM_API_URL must be"),
    ],
)
def test_error_handling_reports_bad_input_before_sending_anything(
    gw: FakeGateway, args: List[str], env: Dict[str, str], code: int, message: str
) -> None:
    result_code, out, err, paths = run_errors(gw, *args, **env)
    assert (result_code, out, paths) == (code, [], [])
    assert err[0].startswith(message)


# -- 6. django_app/ ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def django_site() -> Iterator[Tuple[FakeGateway, Any]]:
    """The example project's settings in force in this process (over whatever Django setup
    another test file made), its gateway found through PLATFORM_API_URL and AUTH_TOKEN as the
    README says; everything undone afterwards (settings, env, sys.path, modules)."""
    from django.test import Client, override_settings
    from django_support import configure_django

    project = str(EXAMPLES / "django_app")
    names = ("PLATFORM_API_URL", "AUTH_TOKEN")
    saved = {name: os.environ.get(name) for name in names}
    configure_django()
    with FakeGateway() as gateway:
        os.environ.update(PLATFORM_API_URL=gateway.url, AUTH_TOKEN=gateway.token)
        sys.path.insert(0, project)
        try:
            example = importlib.import_module("gatewaysite.settings")
            values = {
                name: getattr(example, name)
                for name in dir(example)
                if name.isupper() and name not in ("DATABASES", "LOGGING")  # set up once only
            }
            with override_settings(**values):  # leaving it closes the example's clients
                yield gateway, Client
        finally:
            for name in [m for m in sys.modules if m.split(".")[0] == "gatewaysite"]:
                del sys.modules[name]
            sys.path.remove(project)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def ask_django(client: Any, body: Any, path: str = "/ask") -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json")


def django_usage(client: Any) -> Dict[str, Any]:
    response = client.get("/usage")
    assert response.status_code == 200
    result: Dict[str, Any] = response.json()
    assert result["pid"] == os.getpid()
    return result


def test_django_view_answers_through_url_routing(django_site: Tuple[FakeGateway, Any]) -> None:
    _, client_class = django_site
    client = client_class()
    before = django_usage(client)["sync"]["requests"]

    response = ask_django(client, {"question": "Who are you?"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "answer": expected_reply("openai/gpt-4o-mini", user("Who are you?"), 300),
        "model": "openai/gpt-4o-mini",
        "usage": expected_usage("openai/gpt-4o-mini", user("Who are you?"), 300),
    }
    assert django_usage(client)["sync"]["requests"] == before + 1
    assert client.get("/ask").status_code == 405  # @require_POST, through the real resolver
    assert client.get("/nowhere").status_code == 404


def test_django_async_view_answers_under_the_async_client(
    django_site: Tuple[FakeGateway, Any],
) -> None:
    from django.test import AsyncClient

    _, client_class = django_site
    before = django_usage(client_class())["async"]["requests"]

    async def ask(question: str) -> Any:
        return await AsyncClient().post(
            "/aask", data={"question": question}, content_type="application/json"
        )

    response = asyncio.run(ask("Async?"))
    assert response.status_code == 200
    assert response.json()["answer"] == expected_reply("openai/gpt-4o-mini", user("Async?"), 300)
    assert asyncio.run(ask("")).json() == {"error": "'question' must be a non-empty string"}
    assert django_usage(client_class())["async"]["requests"] == before + 1


def sse_answer(body: bytes) -> str:
    events = [e[len("data: ") :] for e in body.decode().split("\n\n") if e]
    assert events[-1] == "[DONE]"
    return "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])


def test_django_stream_views_relay_the_answer(django_site: Tuple[FakeGateway, Any]) -> None:
    from django.test import AsyncClient

    _, client_class = django_site
    expected = expected_reply("openai/gpt-4o-mini", user("Stream it"), 300)
    response = client_class().get("/stream", {"question": "Stream it"})
    assert response["Content-Type"] == "text/event-stream"
    assert sse_answer(b"".join(response.streaming_content)) == expected
    text = client_class().get("/stream", {"question": "Stream it", "format": "text"})
    assert b"".join(text.streaming_content).decode() == expected

    async def astream() -> bytes:
        response = await AsyncClient().get("/astream", {"question": "Stream it"})
        return b"".join([piece async for piece in response.streaming_content])

    assert sse_answer(asyncio.run(astream())) == expected
    assert client_class().get("/stream").json() == {
        "error": "'question' must be a non-empty string"
    }


def test_django_view_shares_one_client_across_threads(
    django_site: Tuple[FakeGateway, Any],
) -> None:
    from gatewayclient.contrib.django import gateway

    _, client_class = django_site
    before = django_usage(client_class())["sync"]["requests"]
    shared = gateway()

    def one_request(index: int) -> Optional[str]:
        response = ask_django(client_class(), {"question": f"question {index}"})
        assert response.status_code == 200
        answer: Optional[str] = response.json()["answer"]
        return answer

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one_request, range(16)))

    assert answers == [
        expected_reply("openai/gpt-4o-mini", user(f"question {i}"), 300) for i in range(16)
    ]
    assert django_usage(client_class())["sync"]["requests"] == before + 16
    assert gateway() is shared  # still the one client


def test_django_view_rejects_bad_input_and_maps_rate_limits(
    django_site: Tuple[FakeGateway, Any],
) -> None:
    gateway, client_class = django_site
    client = client_class()
    gateway.clear_requests()

    assert ask_django(client, "{not json").status_code == 400
    assert ask_django(client, {"question": ""}).json() == {
        "error": "'question' must be a non-empty string"
    }
    assert gateway.requests == []

    gateway.fail(429, times=3, retry_after=0.05)  # the first try and both retries
    busy = ask_django(client, {"question": "Now?"})
    assert busy.status_code == 503
    assert busy["Retry-After"] == "1"
    assert len(gateway.requests) == 3


def test_django_example_settings_pass_the_checks(django_site: Tuple[FakeGateway, Any]) -> None:
    from django.core import checks

    assert checks.run_checks(tags=["gatewayclient"]) == []


# -- 7. airflow_dag/ (run by run_dag_test.sh in its own venv; here only parsed) -----------------


def test_airflow_dag_parses_and_uses_the_airflow_3_taskflow_api_and_the_hook() -> None:
    source = (EXAMPLES / "airflow_dag" / "gateway_batch_dag.py").read_text()
    tree = ast.parse(source)
    imports = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert {("airflow.sdk", "dag"), ("airflow.sdk", "task")} <= imports
    assert ("gatewayclient.contrib.airflow", "GatewayHook") in imports
    assert not [module for module, _ in imports if module and module.startswith("airflow.")
                and module != "airflow.sdk"]  # fmt: skip
    decorators = {
        ast.unparse(d).split("(")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        for d in node.decorator_list
    }
    assert {"dag", "task"} <= decorators
    assert "answer_shard.expand(" in source  # dynamic task mapping: one task per shard
    assert "batch_chat_completions(" in source and "checkpoint=" in source
    script = EXAMPLES / "airflow_dag" / "run_dag_test.sh"
    assert script.exists()
    assert subprocess.run(["bash", "-n", str(script)], timeout=TIMEOUT).returncode == 0


def test_examples_do_not_hardcode_a_gateway() -> None:
    for path in EXAMPLES.rglob("*.py"):
        text = path.read_text()
        assert "base_url=" not in text, path
        assert "auth_token=" not in text, path
