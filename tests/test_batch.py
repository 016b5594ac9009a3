"""Batches on both clients, against FakeGateway: checks before sending, input order, per-item
errors, the 401 stop, retries, fallbacks and the rate budget per item, checkpoints that resume,
progress, and batch_embeddings (base64 included)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from twin import Twin

from gatewayclient import BatchResult, ChatCompletion, RateLimit, _batch, _vectors
from gatewayclient.errors import (
    GatewayAuthError,
    GatewayBadRequestError,
    GatewayModelNotFoundError,
    GatewayRateLimitError,
    GatewayValidationError,
)
from gatewayclient.testing import FakeGateway, expected_embedding, expected_reply

MODEL = "openai/gpt-4o-mini"
EMBEDDING_MODEL = "openai/text-embedding-3-small"


def request(n: int, **fields: Any) -> Dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"item {n}"}], **fields}


def requests_of(count: int) -> List[Dict[str, Any]]:
    return [request(n, custom_id=f"id-{n}") for n in range(count)]


def sent_items(gw: FakeGateway) -> List[str]:
    """The 'item N' prompts the gateway received, in arrival order."""
    return [
        r.json["messages"][0]["content"]
        for r in gw.requests
        if r.path.endswith("/chat/completions")
    ]


def lines(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def answered_ids(path: Path) -> List[str]:
    return [line["custom_id"] for line in lines(path) if line["error"] is None]


# -- results -------------------------------------------------------------------------------------


def test_results_come_in_input_order_with_their_custom_ids(twin: Twin, gw: FakeGateway) -> None:
    items = requests_of(20)
    items[5].pop("custom_id")
    results = twin.call("batch_chat_completions", items, concurrency=4)
    assert [r.custom_id for r in results] == [f"id-{n}" if n != 5 else "5" for n in range(20)]
    for n, result in enumerate(results):
        assert isinstance(result, BatchResult) and result.ok and result.error is None
        assert isinstance(result.response, ChatCompletion)
        messages = [{"role": "user", "content": f"item {n}"}]
        assert result.response.choices[0].message.content == expected_reply(MODEL, messages)
    assert len(gw.requests) == 20
    assert twin.client.usage.total.requests == 20


def test_an_empty_batch_sends_nothing(twin: Twin, gw: FakeGateway) -> None:
    assert twin.call("batch_chat_completions", []) == []
    assert twin.call("batch_embeddings", EMBEDDING_MODEL, []) == []
    assert gw.requests == []


def test_at_most_concurrency_requests_are_in_flight(
    make: Callable[..., Twin], gw: FakeGateway
) -> None:
    twin = make()
    gw.stall(1.0, times=9)  # every request waits before its head: none ends early
    done: List[Any] = []
    worker = threading.Thread(
        target=lambda: done.append(
            twin.call("batch_chat_completions", requests_of(9), concurrency=3)
        )
    )
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while len(gw.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert len(gw.requests) == 3  # the fourth waits for a place
    finally:
        worker.join(30)
    assert len(done) == 1 and all(r.ok for r in done[0])
    assert len(gw.requests) == 9


# -- checked before anything is sent -------------------------------------------------------------


BAD_ITEMS = {
    "not a mapping": (["model"], r"requests\[3\] must be a mapping"),
    "no model": ({"messages": [{"role": "user", "content": "x"}]}, r"requests\[3\].*model"),
    "bad role": ({"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, r"role"),
    "temperature": (request(3, temperature=5), r"requests\[3\].*temperature"),
    "misspelt parameter": (request(3, temprature=0.5), r"did you mean 'temperature'"),
    "stream": (request(3, stream=True), r"stream"),
    "custom_id not a string": (request(3, custom_id=7), r"custom_id must be a non-empty string"),
    "repeated custom_id": (request(3, custom_id="id-1"), r"'id-1' repeats requests\[1\]"),
    "bad fallback_models": (request(3, fallback_models="openai/gpt-4o"), r"fallback_models"),
    "not JSON": (request(3, extra_body={"tags": {1, 2}}), r"requests\[3\].*cannot be sent as JSON"),
}

# Items are checked by building their Calls (kept to be sent) and, past KEPT_BYTES of them,
# by check_chat alone: every refusal holds either way.
KEPT = pytest.mark.parametrize("kept", [True, False], ids=["built", "checked-only"])


@pytest.mark.parametrize("case", sorted(BAD_ITEMS))
@KEPT
def test_a_bad_item_is_named_and_nothing_is_sent(
    twin: Twin,
    gw: FakeGateway,
    case: str,
    kept: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not kept:
        monkeypatch.setattr(_batch, "KEPT_BYTES", 0)
    bad, message = BAD_ITEMS[case]
    items: List[Any] = requests_of(5)
    items[3] = bad
    checkpoint = tmp_path / "answers.jsonl"
    with pytest.raises(GatewayValidationError, match=message):
        twin.call("batch_chat_completions", items, checkpoint=checkpoint)
    assert gw.requests == []
    assert not checkpoint.exists()


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, True, None])
def test_concurrency_must_be_a_positive_int(twin: Twin, gw: FakeGateway, concurrency: Any) -> None:
    with pytest.raises(GatewayValidationError, match="concurrency"):
        twin.call("batch_chat_completions", requests_of(2), concurrency=concurrency)
    with pytest.raises(GatewayValidationError, match="concurrency"):
        twin.call("batch_embeddings", EMBEDDING_MODEL, ["a"], concurrency=concurrency)
    assert gw.requests == []


@KEPT
def test_an_item_over_the_token_budget_is_refused_before_sending(
    make: Callable[..., Twin], gw: FakeGateway, kept: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not kept:
        monkeypatch.setattr(_batch, "KEPT_BYTES", 0)
    twin = make(rate_limit=RateLimit(tokens=50))
    items = requests_of(3)
    items[2]["max_tokens"] = 100
    with pytest.raises(GatewayValidationError, match=r"requests\[2\]"):
        twin.call("batch_chat_completions", items)
    assert gw.requests == []


# -- per-item errors, the 401 stop ---------------------------------------------------------------


def test_a_failed_item_holds_its_typed_error_and_the_others_go_on(
    twin: Twin, gw: FakeGateway
) -> None:
    items = requests_of(6)
    items[2]["model"] = "openai/no-such-model"
    gw.fail(400, times=1, path="/v1/embeddings")  # never met: only chat is sent
    results = twin.call("batch_chat_completions", items, concurrency=2)
    assert [r.ok for r in results] == [True, True, False, True, True, True]
    assert isinstance(results[2].error, GatewayModelNotFoundError)
    assert results[2].response is None
    assert len(gw.requests) == 6


def test_a_401_stops_what_has_not_been_sent(make: Callable[..., Twin], gw: FakeGateway) -> None:
    twin = make(auth_token="wrong-token")
    results = twin.call("batch_chat_completions", requests_of(12), concurrency=2)
    assert len(gw.requests) <= 2
    assert all(
        isinstance(r.error, GatewayAuthError) and r.error.status_code == 401 for r in results
    )
    assert [r.custom_id for r in results] == [f"id-{n}" for n in range(12)]


def test_a_403_for_one_model_stops_nothing(make: Callable[..., Twin], gw: FakeGateway) -> None:
    gw.add_token("team-token", models=[MODEL])
    twin = make(auth_token="team-token")
    items = requests_of(6)
    items[1]["model"] = "openai/gpt-4o"
    results = twin.call("batch_chat_completions", items, concurrency=1)
    assert [r.ok for r in results] == [True, False, True, True, True, True]
    assert isinstance(results[1].error, GatewayAuthError) and results[1].error.status_code == 403


def test_items_are_retried_fall_back_and_pass_the_rate_budget(
    make: Callable[..., Twin], gw: FakeGateway
) -> None:
    twin = make(rate_limit=RateLimit(requests=7, max_wait=0))
    gw.fail(503, times=2)
    items = requests_of(4)
    items[3] = request(3, custom_id="id-3", model="openai/no-such-model", fallback_models=[MODEL])
    results = twin.call("batch_chat_completions", items, concurrency=1)
    assert [r.ok for r in results] == [True, True, True, True]
    assert results[3].response.model == MODEL  # answered by the fallback
    assert len(gw.requests) == 7  # 4 items, 2 retries of the first, 1 fallback: the budget
    more = twin.call("batch_chat_completions", requests_of(1), concurrency=1)
    assert isinstance(more[0].error, GatewayRateLimitError) and more[0].error.status_code is None


# -- checkpoints ---------------------------------------------------------------------------------


def test_each_item_is_one_line_in_the_batch_output_format(
    twin: Twin, gw: FakeGateway, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "answers.jsonl"
    items = requests_of(5)
    items[4]["model"] = "openai/no-such-model"
    results = twin.call("batch_chat_completions", items, concurrency=2, checkpoint=checkpoint)
    by_prompt = {r.json["messages"][0]["content"]: r.request_id for r in gw.requests}
    found = {line["custom_id"]: line for line in lines(checkpoint)}
    assert sorted(found) == [f"id-{n}" for n in range(5)]
    for n, result in enumerate(results[:4]):
        line = found[f"id-{n}"]
        assert set(line) == {"id", "custom_id", "response", "error"}
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"] == {
            "status_code": 200,
            "request_id": by_prompt[f"item {n}"],  # the answer's x-request-id
            "body": result.response.to_dict(),
        }
    failed = found["id-4"]
    assert failed["response"]["status_code"] == 404
    assert failed["response"]["request_id"] == by_prompt["item 4"]
    assert failed["error"]["code"] and "no-such-model" in failed["error"]["message"]
    assert gw.token not in checkpoint.read_text("utf-8")


def test_a_second_run_sends_only_what_failed_or_never_ran(
    twin: Twin, gw: FakeGateway, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "answers.jsonl"
    gw.fail(400, times=1)
    first = twin.call(
        "batch_chat_completions", requests_of(6), concurrency=1, checkpoint=checkpoint
    )
    assert [r.ok for r in first] == [False, True, True, True, True, True]
    gw.clear_requests()
    second = twin.call(
        "batch_chat_completions", requests_of(8), concurrency=3, checkpoint=checkpoint
    )
    assert sorted(sent_items(gw)) == ["item 0", "item 6", "item 7"]
    assert all(r.ok for r in second)
    assert [r.response.to_dict() for r in second[1:6]] == [r.response.to_dict() for r in first[1:6]]
    assert sorted(answered_ids(checkpoint)) == [f"id-{n}" for n in range(8)]  # each once
    assert twin.client.usage.total.requests == 5 + 3  # stored answers are not calls


def test_a_torn_last_line_is_ignored_and_cut_off(
    twin: Twin, gw: FakeGateway, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "answers.jsonl"
    twin.call("batch_chat_completions", requests_of(4), concurrency=1, checkpoint=checkpoint)
    text = checkpoint.read_text("utf-8")
    torn_id = lines(checkpoint)[-1]["custom_id"]
    checkpoint.write_text(text[: len(text) - 40], "utf-8")  # killed mid-write
    gw.clear_requests()
    results = twin.call("batch_chat_completions", requests_of(4), checkpoint=checkpoint)
    assert all(r.ok for r in results)
    assert sent_items(gw) == [f"item {torn_id.split('-')[1]}"]
    assert sorted(answered_ids(checkpoint)) == [f"id-{n}" for n in range(4)]


def test_a_line_that_is_not_a_batch_line_is_refused(
    twin: Twin, gw: FakeGateway, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "answers.jsonl"
    checkpoint.write_text('{"custom_id": "id-0", "response": null, "error": null}\nnot json\n\n')
    with pytest.raises(GatewayValidationError, match="line 2 is not a batch output line"):
        twin.call("batch_chat_completions", requests_of(2), checkpoint=checkpoint)
    assert gw.requests == []


def test_lines_of_other_items_are_kept_and_ignored(
    twin: Twin, gw: FakeGateway, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "answers.jsonl"
    twin.call("batch_chat_completions", [request(9, custom_id="other")], checkpoint=checkpoint)
    gw.clear_requests()
    results = twin.call("batch_chat_completions", requests_of(2), checkpoint=checkpoint)
    assert all(r.ok for r in results) and len(gw.requests) == 2
    assert sorted(answered_ids(checkpoint)) == ["id-0", "id-1", "other"]


def test_every_line_is_fsynced_before_it_counts(
    twin: Twin, gw: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: List[int] = []
    real_fsync = _batch.os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(len((tmp_path / "answers.jsonl").read_bytes().splitlines()))

    monkeypatch.setattr(_batch.os, "fsync", fsync)
    counted: List[int] = []
    real_count = _batch.Run.count

    def count(self: Any, outcomes: Any) -> None:
        counted.append(self.answered + self.failed + len(outcomes))
        real_count(self, outcomes)

    monkeypatch.setattr(_batch.Run, "count", count)
    twin.call(
        "batch_chat_completions",
        requests_of(6),
        concurrency=2,
        checkpoint=tmp_path / "answers.jsonl",
    )
    assert counted and counted[-1] == 6
    for total in counted:  # whenever items were counted, their lines had been synced
        assert any(lines_synced >= total for lines_synced in synced)


# -- progress -----------------------------------------------------------------------------------


def test_progress_draws_a_bar_on_stderr_even_without_a_terminal(
    twin: Twin, gw: FakeGateway, capfd: pytest.CaptureFixture[str]
) -> None:
    items = requests_of(5)
    items[0]["model"] = "openai/no-such-model"
    twin.call("batch_chat_completions", items, progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    assert "5/5" in err and "failed=1" in err and "tokens=" in err


def test_no_bar_without_progress(
    twin: Twin, gw: FakeGateway, capfd: pytest.CaptureFixture[str]
) -> None:
    twin.call("batch_chat_completions", requests_of(3))
    twin.call("batch_embeddings", EMBEDDING_MODEL, ["a", "b"])
    assert capfd.readouterr() == ("", "")


def test_progress_without_tqdm_is_a_config_error(
    twin: Twin, gw: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from gatewayclient.errors import GatewayConfigError

    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(GatewayConfigError, match=r"gatewayclient\[progress\]"):
        twin.call("batch_chat_completions", requests_of(2), progress=True)
    assert gw.requests == []


# -- embeddings ---------------------------------------------------------------------------------


def texts(count: int) -> List[str]:
    return [f"text number {n}" for n in range(count)]


def test_embeddings_come_in_input_order_in_requests_of_batch_size(
    twin: Twin, gw: FakeGateway
) -> None:
    vectors = twin.call("batch_embeddings", EMBEDDING_MODEL, texts(10), batch_size=3, concurrency=2)
    assert vectors == [expected_embedding(EMBEDDING_MODEL, text) for text in texts(10)]
    assert sorted(len(r.json["input"]) for r in gw.requests) == [1, 3, 3, 3]
    assert all("encoding_format" not in r.json for r in gw.requests)  # floats by default


@pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "no-numpy"])
def test_base64_is_asked_for_and_decoded_to_floats(
    twin: Twin, gw: FakeGateway, monkeypatch: pytest.MonkeyPatch, numpy: bool
) -> None:
    if not numpy:
        monkeypatch.setattr(_vectors, "_NUMPY", [None])
    else:
        import numpy as np

        monkeypatch.setattr(_vectors, "_NUMPY", [np])
    vectors = twin.call(
        "batch_embeddings",
        EMBEDDING_MODEL,
        texts(5),
        batch_size=2,
        encoding_format="base64",
        dimensions=8,
    )
    assert vectors == [expected_embedding(EMBEDDING_MODEL, text, 8) for text in texts(5)]
    assert all(type(value) is float for vector in vectors for value in vector)
    assert {r.json["encoding_format"] for r in gw.requests} == {"base64"}


def test_the_first_embeddings_error_is_raised_after_the_requests_in_flight(
    twin: Twin, gw: FakeGateway
) -> None:
    gw.fail(400, times=1)
    with pytest.raises(GatewayBadRequestError):
        twin.call("batch_embeddings", EMBEDDING_MODEL, texts(40), batch_size=2, concurrency=2)
    assert len(gw.requests) <= 3  # the failed one, the one beside it, at most one started meanwhile


BAD_EMBEDDINGS = {
    "a string": ("just one text", {}, "inputs must be a sequence"),
    "an empty text": (["a", "", "c"], {}, r"inputs\[1\] must be a non-empty string"),
    "not a text": (["a", 3], {}, r"inputs\[1\]"),
    "batch_size 0": (["a"], {"batch_size": 0}, "batch_size"),
    "no model": (["a"], {"model": ""}, r"inputs\[0:256\].*model"),
    "misspelt parameter": (["a"], {"dimensoins": 8}, "did you mean 'dimensions'"),
}


@pytest.mark.parametrize("case", sorted(BAD_EMBEDDINGS))
def test_bad_embeddings_batches_send_nothing(twin: Twin, gw: FakeGateway, case: str) -> None:
    inputs, given, message = BAD_EMBEDDINGS[case]
    options = dict(given)
    model = options.pop("model", EMBEDDING_MODEL)
    with pytest.raises(GatewayValidationError, match=message):
        twin.call("batch_embeddings", model, inputs, **options)
    assert gw.requests == []


def test_the_first_items_are_sent_as_built_for_their_check_and_later_ones_built_when_sent(
    twin: Twin, gw: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every item is checked once; the Calls built for the first checks (while they fit in
    KEPT_BYTES) are sent as they are, and each later item's Call is built once, when it is
    sent, from what its check passed: no item's request is built twice."""
    core_type = type(twin.client._core)
    made: Dict[str, List[str]] = {"chat": [], "check_chat": [], "checked_chat": []}

    def watch(name: str) -> None:
        real = getattr(core_type, name)

        def watched(self: Any, *args: Any) -> Any:
            result = real(self, *args)
            body = result.body if name != "check_chat" else result[0]
            made[name].append(body["messages"][0]["content"])
            return result

        monkeypatch.setattr(core_type, name, watched)

    one_call = len(_batch.chat_call(twin.client._core, request(0)).request.body) + _batch.CALL_BYTES
    for name in made:
        watch(name)
    monkeypatch.setattr(_batch, "KEPT_BYTES", 3 * one_call - 1)  # room for 3 calls
    results = twin.call("batch_chat_completions", requests_of(5), concurrency=2)
    assert all(r.ok for r in results)
    items = [f"item {n}" for n in range(5)]
    assert made["chat"] == items[:3]  # built by their check, kept, sent as built
    assert made["check_chat"] == items[3:]  # checked only
    assert sorted(made["checked_chat"]) == items[3:]  # built once, when sent
    assert sorted(sent_items(gw)) == items
    keys = [r.headers["idempotency-key"] for r in gw.requests]
    assert len(set(keys)) == 5  # every item its own request all the same


def test_embedding_requests_are_built_once_while_kept_and_again_when_sent_past_that(
    twin: Twin, gw: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """batch_embeddings keeps the Calls built by its check while they fit in KEPT_BYTES and
    sends them as built; a later request is built again when it is sent."""
    core_type = type(twin.client._core)
    built: List[List[str]] = []
    real = core_type.embeddings

    def watched(self: Any, model: Any, text: Any, params: Any) -> Any:
        built.append(list(text))
        return real(self, model, text, params)

    one_call = len(twin.client._core.embeddings(EMBEDDING_MODEL, ["t0", "t1"], {}).request.body)
    monkeypatch.setattr(core_type, "embeddings", watched)
    monkeypatch.setattr(_batch, "KEPT_BYTES", 2 * (one_call + _batch.CALL_BYTES) - 1)
    texts = [f"t{n}" for n in range(8)]
    vectors = twin.call("batch_embeddings", EMBEDDING_MODEL, texts, batch_size=2, concurrency=2)
    assert len(vectors) == 8
    slices = [texts[n : n + 2] for n in range(0, 8, 2)]
    assert built[:4] == slices  # the check builds each request once
    assert sorted(built[4:]) == slices[2:]  # past the first two, built again when sent
    assert len(gw.requests) == 4


def test_a_cancelled_async_batch_keeps_the_lines_it_was_writing(
    gw: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while a worker thread writes a checkpoint line: the batch waits for that write
    before it writes what else had finished and closes the file, so no finished item is lost
    (a write still queued when the file closed used to find it closed and write nothing)."""
    import asyncio

    from gatewayclient import AsyncGatewayClient

    path = tmp_path / "out.jsonl"
    original = _batch.Checkpoint.write
    entered, release = threading.Event(), threading.Event()
    handed: List[bytes] = []

    def slow_write(self: _batch.Checkpoint, lines: Any) -> None:
        handed.extend(lines)
        if lines and not entered.is_set():
            entered.set()
            release.wait(10)  # the first write is held until the batch has been cancelled
        original(self, lines)

    monkeypatch.setattr(_batch.Checkpoint, "write", slow_write)
    requests = requests_of(20)

    async def main() -> float:
        async with AsyncGatewayClient(gw.url, gw.token) as client:
            batch = client.batch_chat_completions(requests, concurrency=2, checkpoint=path)
            task = asyncio.ensure_future(batch)
            await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
            timer = threading.Timer(0.3, release.set)
            timer.start()
            task.cancel()
            started = time.monotonic()
            try:
                with pytest.raises(asyncio.CancelledError):
                    await task
            finally:
                release.set()
                timer.join()
            return time.monotonic() - started

    waited = asyncio.run(main())
    on_file = [json.loads(line)["custom_id"] for line in path.read_bytes().splitlines()]
    handed_ids = [json.loads(line)["custom_id"] for line in handed]
    assert handed_ids and sorted(on_file) == sorted(handed_ids)  # every line handed is on file
    assert len(set(on_file)) == len(on_file)  # once each
    assert waited >= 0.25  # the cancelled batch waited for the write in progress
