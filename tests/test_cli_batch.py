"""``gatewayclient batch`` end to end against FakeGateway: a Batch API input file of chat and
embeddings lines, its output file (resumed), bad lines named before anything is sent, the
--rpm/--tpm/--redis budget and the progress bar."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

import gatewayclient._cli_batch as cli_batch
import gatewayclient.cli as cli
from gatewayclient import RateLimit
from gatewayclient.testing import FakeGateway, expected_embedding, expected_reply

pytestmark = pytest.mark.timeout(60)

MODEL = "openai/gpt-4o-mini"
EMBEDDING_MODEL = "openai/text-embedding-3-small"


def chat_line(n: int, **body: Any) -> Dict[str, Any]:
    messages = [{"role": "user", "content": f"item {n}"}]
    return {"custom_id": f"chat-{n}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": messages, **body}}  # fmt: skip


def embed_line(n: int) -> Dict[str, Any]:
    body = {"model": EMBEDDING_MODEL, "input": [f"text {n}", f"more {n}"], "dimensions": 4}
    return {"custom_id": f"embed-{n}", "method": "POST", "url": "/v1/embeddings", "body": body}


def write_input(path: Path, lines: List[Any]) -> Path:
    text = (line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text("".join(line + "\n" for line in text), "utf-8")
    return path


def output_lines(path: Path) -> Dict[str, List[Dict[str, Any]]]:
    found: Dict[str, List[Dict[str, Any]]] = {}
    for raw in path.read_text("utf-8").splitlines():
        line = json.loads(raw)
        found.setdefault(line["custom_id"], []).append(line)
    return found


@pytest.fixture
def run(
    gw: FakeGateway,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Any]:
    """``run(input_lines, *options)``: the batch command in process; (status, stderr, output)."""
    for name in ("PLATFORM_API_URL", "AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    def batch(lines: List[Any], *options: str, token: str = gw.token) -> Any:
        source = write_input(tmp_path / "input.jsonl", lines)
        output = tmp_path / "output.jsonl"
        argv = ["batch", str(source), "--output", str(output), "--base-url", gw.url]
        status = cli.main([*argv, "--token", token, "--max-retries", "0", *options])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return status, err, output

    return batch


def test_a_file_of_chat_and_embeddings_lines_runs_end_to_end(
    gw: FakeGateway, tmp_path: Path
) -> None:
    source = write_input(tmp_path / "in.jsonl", [chat_line(0), embed_line(1), chat_line(2)])
    output = tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("PLATFORM_API_URL", "AUTH_TOKEN")}
    argv = [sys.executable, "-m", "gatewayclient", "batch", str(source), "-o", str(output),
            "--base-url", gw.url, "--token", gw.token, "--concurrency", "2"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "3/3" in done.stderr  # the progress bar
    assert done.stderr.rstrip().endswith(
        "3 requests: 3 answered, 0 failed; output in " + str(output)
    )
    found = output_lines(output)
    assert sorted(found) == ["chat-0", "chat-2", "embed-1"]
    for n in (0, 2):
        body = found[f"chat-{n}"][0]["response"]["body"]
        reply = expected_reply(MODEL, [{"role": "user", "content": f"item {n}"}])
        assert body["choices"][0]["message"]["content"] == reply
    vectors = [item["embedding"] for item in found["embed-1"][0]["response"]["body"]["data"]]
    assert vectors == [expected_embedding(EMBEDDING_MODEL, t, 4) for t in ("text 1", "more 1")]
    assert {line["response"]["request_id"] for [line] in found.values()} == {
        r.request_id for r in gw.requests
    }


def test_the_output_file_is_resumed(run: Callable[..., Any], gw: FakeGateway) -> None:
    lines = [chat_line(n) for n in range(5)]
    gw.fail(400, times=1)
    status, err, output = run(lines, "--concurrency", "1")
    assert status == 1  # a line failed
    assert "5 requests: 4 answered, 1 failed" in err
    gw.clear_requests()
    status, err, output = run(lines)
    assert status == 0
    assert "5 requests: 1 answered, 0 failed, 4 answered before" in err
    assert [r.json["messages"][0]["content"] for r in gw.requests] == ["item 0"]
    found = output_lines(output)
    assert [line["error"] is None for line in found["chat-0"]] == [False, True]
    assert all(len([x for x in found[f"chat-{n}"] if x["error"] is None]) == 1 for n in range(5))


BAD_LINES = {
    "not json": ("{not json", "line 2 is not JSON"),
    "not an object": ([1, 2], "line 2 is not a JSON object"),
    "no custom_id": ({"method": "POST", "url": "/v1/embeddings", "body": {}}, "line 2: custom_id"),
    "a GET": ({**chat_line(1), "method": "GET"}, "line 2: expected method POST"),
    "another url": ({**chat_line(1), "url": "/v1/completions"}, "line 2: expected method POST"),
    "no body": ({**chat_line(1), "body": None}, "line 2: body must be a JSON object"),
    "no model": ({**chat_line(1), "body": {"messages": []}}, "line 2 ('chat-1'): model"),
    "temperature": (chat_line(1, temperature=9), "line 2 ('chat-1'): temperature"),
    "stream": (chat_line(1, stream=True), "line 2 ('chat-1'): pass no 'stream'"),
    "empty input": ({**embed_line(1), "body": {"model": EMBEDDING_MODEL, "input": []}}, "line 2"),
    "repeated custom_id": (chat_line(0), "line 2: custom_id 'chat-0' is repeated"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_bad_line_is_named_before_anything_is_sent(
    run: Callable[..., Any], gw: FakeGateway, case: str
) -> None:
    bad, message = BAD_LINES[case]
    status, err, output = run([chat_line(0), bad, chat_line(2)])
    assert status == 2
    assert message in err
    assert gw.requests == []
    assert not output.exists()


def test_a_line_over_the_tpm_budget_is_a_bad_line(run: Callable[..., Any], gw: FakeGateway) -> None:
    status, err, _ = run([chat_line(0), chat_line(1, max_tokens=500)], "--tpm", "100")
    assert status == 2 and "line 2 ('chat-1')" in err
    assert gw.requests == []


def test_rpm_paces_the_requests(
    run: Callable[..., Any], gw: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: List[RateLimit] = []

    def short_window(**options: Any) -> RateLimit:  # --rpm's minute, shortened to 0.3 s
        made.append(RateLimit(per=0.3, **options))
        return made[-1]

    monkeypatch.setattr(cli_batch, "RateLimit", short_window)
    started = time.monotonic()
    status, _, _ = run([chat_line(n) for n in range(3)], "--rpm", "1", "--no-progress")
    assert status == 0
    assert time.monotonic() - started >= 0.55  # two waits for the next window
    assert made[0].requests == 1 and made[0].tokens is None and made[0].storage is None


def test_redis_shares_the_budget(
    run: Callable[..., Any], gw: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: List[Dict[str, Any]] = []
    monkeypatch.setattr(cli_batch, "RateLimit", lambda **options: seen.append(options))
    run([chat_line(0)], "--rpm", "50", "--tpm", "9000", "--redis", "redis://127.0.0.1:1/0")
    assert seen == [{"requests": 50, "tokens": 9000, "storage": "redis://127.0.0.1:1/0"}]


def test_redis_needs_a_budget_and_a_redis_url(run: Callable[..., Any], gw: FakeGateway) -> None:
    status, err, _ = run([chat_line(0)], "--redis", "redis://127.0.0.1:6379/0")
    assert status == 2 and "--rpm or --tpm" in err
    status, err, _ = run([chat_line(0)], "--rpm", "5", "--redis", "http://127.0.0.1:6379")
    assert status == 1 and "storage" in err
    assert gw.requests == []


def test_a_401_stops_the_run_and_says_so(run: Callable[..., Any], gw: FakeGateway) -> None:
    status, err, output = run([chat_line(n) for n in range(6)], "-c", "1", token="wrong")
    assert status == 1
    assert "1 failed, 5 not sent" in err and "HTTP 401" in err
    assert len(gw.requests) == 1
    assert list(output_lines(output)) == ["chat-0"]
    assert "wrong" not in output.read_text()


def test_no_bar_with_no_progress_and_a_missing_input_is_a_usage_error(
    run: Callable[..., Any], gw: FakeGateway, tmp_path: Path
) -> None:
    status, err, _ = run([chat_line(0)], "--no-progress")
    assert status == 0 and "it/s" not in err and "req/s" not in err and "1/1" not in err
    missing = str(tmp_path / "missing.jsonl")
    call = partial(cli.main, ["batch", missing, "-o", str(tmp_path / "o"), "--base-url", gw.url])
    assert call() == 2
