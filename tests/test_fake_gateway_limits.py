"""FakeGateway's tokens-per-minute limit, its arrival log and its fixed latency, from the outside
(plain requests on loopback), and ``gatewayclient serve --rpm --tpm --window --latency`` as a
process of its own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List

import pytest
import requests

from gatewayclient import SyncGatewayClient
from gatewayclient.testing import Arrival, FakeGateway, count_tokens, expected_usage

HELLO = [{"role": "user", "content": "Hello there, gateway!"}]
CHAT_TOKENS = expected_usage("openai/gpt-4o", HELLO)["total_tokens"]


def chat(session: requests.Session, gateway: FakeGateway, **body: Any) -> requests.Response:
    payload: Dict[str, Any] = {"model": "openai/gpt-4o", "messages": HELLO, **body}
    return session.post(f"{gateway.api_url}/chat/completions", json=payload)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.headers["Authorization"] = "Bearer test-token"
        yield http


def test_tpm_limit_counts_the_tokens_each_answer_reports(session: requests.Session) -> None:
    now = [500.0]
    tpm = 2 * CHAT_TOKENS + 1  # two answers fit, not three
    with FakeGateway(tpm_limit=tpm, clock=lambda: now[0]) as gateway:
        first = chat(session, gateway)
        assert first.json()["usage"]["total_tokens"] == CHAT_TOKENS
        assert first.headers["x-ratelimit-limit-tokens"] == str(tpm)
        assert first.headers["x-ratelimit-remaining-tokens"] == str(tpm - CHAT_TOKENS)
        assert "x-ratelimit-limit-requests" not in first.headers  # no rpm limit here
        assert chat(session, gateway).headers["x-ratelimit-remaining-tokens"] == "1"
        now[0] += 20
        refused = chat(session, gateway)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "40"
        assert refused.headers["x-ratelimit-reset-tokens"] == "40s"
        assert "tokens per minute" in refused.json()["error"]["message"]
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        # A refused request counts for nothing; an embeddings request counts its input's tokens.
        text = "one two"  # two tokens, and one is left
        embed = session.post(
            f"{gateway.api_url}/embeddings",
            json={"model": "openai/text-embedding-3-small", "input": text},
        )
        assert embed.status_code == 429 and count_tokens(text) == 2
        listed = session.get(f"{gateway.api_url}/models")
        assert listed.status_code == 200  # no tokens: it fits
        now[0] += 40
        assert chat(session, gateway).status_code == 200  # a new window
        gateway.tpm_limit = None
        assert "x-ratelimit-limit-tokens" not in chat(session, gateway).headers


def test_a_streamed_answer_counts_its_usage_even_when_not_asked(session: requests.Session) -> None:
    with FakeGateway(tpm_limit=CHAT_TOKENS) as gateway:
        with chat(session, gateway, stream=True) as streamed:
            assert streamed.status_code == 200
            assert b"[DONE]" in streamed.content
        assert chat(session, gateway).status_code == 429
        assert [a.tokens for a in gateway.arrivals] == [CHAT_TOKENS, 0]


def test_rpm_and_tpm_together_refuse_on_the_first_one_reached(session: requests.Session) -> None:
    with FakeGateway(rpm_limit=1, tpm_limit=10 * CHAT_TOKENS) as gateway:
        assert chat(session, gateway).status_code == 200
        refused = chat(session, gateway)
        assert refused.status_code == 429
        assert "requests per minute" in refused.json()["error"]["message"]
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.headers["x-ratelimit-remaining-tokens"] == str(9 * CHAT_TOKENS)


def test_the_arrival_log_records_time_path_model_tokens_and_status(
    session: requests.Session,
) -> None:
    with FakeGateway(rpm_limit=2) as gateway:
        before = time.monotonic()
        chat(session, gateway)
        session.get(f"{gateway.api_url}/models")
        chat(session, gateway)  # 429
        chat(session, gateway, model="nobody/none")  # 429 too: counted before the model check
        session.get(f"{gateway.url}/health")  # not under /v1: not logged
        after = time.monotonic()
        arrivals = gateway.arrivals
        assert [(a.path, a.model, a.tokens, a.status) for a in arrivals] == [
            ("/v1/chat/completions", "openai/gpt-4o", CHAT_TOKENS, 200),
            ("/v1/models", None, 0, 200),
            ("/v1/chat/completions", "openai/gpt-4o", 0, 429),
            ("/v1/chat/completions", "nobody/none", 0, 429),
        ]
        times = [a.at for a in arrivals]
        assert before <= times[0] <= times[1] <= times[2] <= times[3] <= after
        assert all(isinstance(a, Arrival) for a in arrivals)
        gateway.clear_requests()
        assert gateway.arrivals == [] and gateway.requests == []


def test_errors_answered_are_logged_with_no_tokens(session: requests.Session) -> None:
    with FakeGateway() as gateway:
        gateway.fail(503)
        chat(session, gateway)
        session.post(f"{gateway.api_url}/chat/completions", json={"model": "openai/gpt-4o"})
        assert [(a.status, a.tokens) for a in gateway.arrivals] == [(503, 0), (400, 0)]


def test_latency_is_waited_before_each_answer(session: requests.Session) -> None:
    with FakeGateway(latency=0.2) as gateway:
        started = time.monotonic()
        assert chat(session, gateway).status_code == 200
        assert time.monotonic() - started >= 0.2
        started = time.monotonic()
        session.get(f"{gateway.url}/health")
        assert time.monotonic() - started < 0.2  # /health is never delayed
        gateway.latency = 0.0
        started = time.monotonic()
        chat(session, gateway)
        assert time.monotonic() - started < 0.2
        gateway.reset()
        assert gateway.latency == 0.2 and gateway.tpm_limit is None


# -- gatewayclient serve --rpm --tpm --window --latency -----------------------------------------


def serve(*flags: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "gatewayclient", "serve", "--port", "0", *flags]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def processes() -> Iterator[List[subprocess.Popen[str]]]:
    started: List[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        process.communicate(timeout=10)


def test_serve_with_limits_and_latency_runs_as_a_process(
    processes: List[subprocess.Popen[str]],
) -> None:
    process = serve("--rpm", "2", "--tpm", "100000", "--window", "30", "--latency", "0.1")
    processes.append(process)
    assert process.stdout is not None
    match = re.fullmatch(r"export PLATFORM_API_URL=(\S+)\n", process.stdout.readline())
    assert match, "serve printed no URL"
    with SyncGatewayClient(match.group(1), "test-token", max_retries=0) as client:
        started = time.monotonic()
        client.chat_completion("openai/gpt-4o", HELLO)
        assert time.monotonic() - started >= 0.1
        with requests.Session() as http:
            http.headers["Authorization"] = "Bearer test-token"
            second = http.get(match.group(1) + "/v1/models")
            assert second.headers["x-ratelimit-limit-tokens"] == "100000"
            third = http.get(match.group(1) + "/v1/models")
        assert third.status_code == 429
        assert 29 <= float(third.headers["Retry-After"]) <= 30


@pytest.mark.parametrize(
    "flags", [["--rpm", "0"], ["--tpm", "x"], ["--window", "0"], ["--latency", "-1"]]
)
def test_serve_refuses_bad_limits(flags: List[str]) -> None:
    command = [sys.executable, "-m", "gatewayclient", "serve", "--port", "0", *flags]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert flags[0] in result.stderr and "Traceback" not in result.stderr
