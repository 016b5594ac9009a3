"""Both clients against a real LiteLLM proxy on 127.0.0.1 (mock deployments, no network).

The proxy and its config are in this directory (``conftest.py``, ``litellm_config.yaml``,
``litellm_auth.py``); ``scripts/interop.sh`` builds the environment and runs this suite. Each test
runs once per client (``kind`` is ``sync`` or ``async``). LiteLLM's quirks that the client
absorbs each have a test named ``test_quirk_*``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable, Dict, List

import pytest
from interop_proxy import MASTER_KEY, Proxy, post_json

from gatewayclient import RetryPolicy
from gatewayclient.errors import (
    GatewayAuthError,
    GatewayBadRequestError,
    GatewayRateLimitError,
    GatewayServerError,
    GatewayTimeoutError,
)

pytestmark = pytest.mark.interop

CHAT_MODELS = [
    "openai/gpt-4o",
    "anthropic/claude-sonnet-4-20250514",
    "google/gemini-2.0-flash",
    "mistral/mistral-large-latest",
]
EMBEDDING_MODEL = "openai/text-embedding-3-small"
RPM_MODEL = "limits/rpm-3"  # deployment rpm 3: 429 with only llm_provider-retry-after: 60
PARALLEL_MODEL = "limits/parallel-1"  # one request in flight, 1 s each: 429 with no hint
SLOW_MODEL = "faults/slow"  # answers after 2 s
FAILING_MODEL = "faults/always-500"
OVERLOADED_MODEL = "faults/overloaded-529"  # 529 with an empty reason phrase
# The config's order.
ALL_MODELS = [
    *CHAT_MODELS,
    EMBEDDING_MODEL,
    RPM_MODEL,
    PARALLEL_MODEL,
    SLOW_MODEL,
    FAILING_MODEL,
    OVERLOADED_MODEL,
]
MESSAGES = [{"role": "user", "content": "Hello!"}]


def reply(model: str) -> str:
    return f"Hello from mock {model}"


def fresh_key(prefix: str) -> str:
    """A key of its own for one test, so that per-key windows never carry over between tests."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


class Blocker:
    """One call straight to the proxy in a thread, holding a slot for ``mock_delay`` (1 s)."""

    def __init__(self, proxy: Proxy, model: str, key: str = MASTER_KEY) -> None:
        self.url = proxy.url + "/v1/chat/completions"
        self.body = {"model": model, "messages": MESSAGES}
        self.key = key
        self.result: Any = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        try:
            self.result = post_json(self.url, self.body, self.key)["choices"][0]["message"][
                "content"
            ]
        except Exception as error:  # reported by the test through .result
            self.result = error

    def __enter__(self) -> Blocker:
        self.thread.start()
        time.sleep(0.3)  # the blocker's request is in flight (a warm proxy takes ~10 ms)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.thread.join(timeout=30)


# --- the calls -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_completion(make_client: Callable[..., Any], model: str) -> None:
    client = make_client()
    resp = client.call("chat_completion", model, MESSAGES, temperature=0.2, max_tokens=16)
    assert resp.choices[0].message.content == reply(model)
    assert resp["choices"][0]["message"]["role"] == "assistant"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == model  # LiteLLM echoes the public name, not the deployment behind it
    assert resp.id.startswith("chatcmpl-")
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (10, 20)
    assert resp.usage.total_tokens == 30
    usage = client.client.usage
    assert usage.by_model[model].requests == 1
    assert usage.total.total_tokens == 30


def test_chat_completion_passes_extra_params(make_client: Callable[..., Any]) -> None:
    client = make_client()
    resp = client.call("chat_completion", "openai/gpt-4o", MESSAGES, n=2, seed=7, user="interop")
    assert [choice.message.content for choice in resp.choices] == [reply("openai/gpt-4o")] * 2


def test_stream_with_usage(make_client: Callable[..., Any]) -> None:
    client = make_client()
    model = "anthropic/claude-sonnet-4-20250514"
    stream = client.stream(model, MESSAGES)
    chunks = client.collect(stream)
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert text == reply(model)
    assert all(chunk.model == model for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert stream.usage is not None
    usage = stream.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    whole = stream.completion()
    assert whole.choices[0].message.content == reply(model)
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage.total_tokens == usage.total_tokens
    tracked = client.client.usage
    assert tracked.by_model[model].requests == 1
    assert tracked.total.total_tokens == usage.total_tokens  # counted once


def test_stream_without_usage_when_caller_sets_stream_options(
    make_client: Callable[..., Any],
) -> None:
    client = make_client()
    stream = client.stream("openai/gpt-4o", MESSAGES, stream_options={"include_usage": False})
    chunks = client.collect(stream)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == reply(
        "openai/gpt-4o"
    )
    assert stream.usage is None
    assert all("usage" not in chunk for chunk in chunks)
    assert client.client.usage.by_model["openai/gpt-4o"].requests == 1


def test_stream_left_early_then_client_still_works(make_client: Callable[..., Any]) -> None:
    client = make_client()
    stream = client.stream("mistral/mistral-large-latest", MESSAGES)
    first = client.next(stream)
    assert first["choices"][0]["delta"]["content"]
    client.close_stream(stream)
    resp = client.call("chat_completion", "mistral/mistral-large-latest", MESSAGES)
    assert resp.choices[0].message.content == reply("mistral/mistral-large-latest")


@pytest.mark.parametrize("given", ["one text", ["a list", "of texts"]])
def test_embeddings(make_client: Callable[..., Any], given: Any) -> None:
    client = make_client()
    resp = client.call("embeddings", EMBEDDING_MODEL, given)
    assert resp.model == EMBEDDING_MODEL
    assert resp.object == "list"
    # LiteLLM's mock gives one vector whatever the input.
    assert [item.embedding for item in resp.data] == [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]
    assert resp["data"][0]["index"] == 0
    assert resp.usage.prompt_tokens == 10
    tracked = client.client.usage.by_model[EMBEDDING_MODEL]
    assert (tracked.requests, tracked.prompt_tokens) == (1, 10)
    # LiteLLM says total_tokens 0 beside prompt_tokens 10; the tracker keeps what was sent.
    assert tracked.total_tokens == resp.usage.total_tokens


def test_list_models(make_client: Callable[..., Any]) -> None:
    models = make_client().call("list_models")
    assert models.object == "list"
    assert [model.id for model in models.data] == ALL_MODELS
    first = models.data[0]
    assert first.object == "model" and first.owned_by == "openai"
    assert isinstance(first.created, int)
    # Fields LiteLLM adds from its cost map are kept as received.
    assert models.to_dict()["data"][0]["max_input_tokens"] == 128000
    assert models.to_dict()["data"][4]["mode"] == "embedding"


def test_providers_fall_back_to_models(make_client: Callable[..., Any]) -> None:
    """LiteLLM has no /providers routes (404 ``{"detail": "Not Found"}``): derived from /models."""
    client = make_client()
    providers = ["openai", "anthropic", "google", "mistral", "limits", "faults"]
    assert client.call("list_known_providers") == providers  # first-seen order, no duplicates
    openai = client.call("list_provider_models", "openai")
    assert openai.provider == "openai"
    assert openai.total == 2
    assert [model.id for model in openai.models] == ["openai/gpt-4o", EMBEDDING_MODEL]
    google = client.call("list_provider_models", "google")
    assert (google.total, [m.id for m in google.models]) == (1, ["google/gemini-2.0-flash"])
    nobody = client.call("list_provider_models", "cohere")
    assert (nobody.provider, nobody.total, nobody.models) == ("cohere", 0, [])


# --- errors ----------------------------------------------------------------------------------


def test_wrong_key_is_an_auth_error(make_client: Callable[..., Any]) -> None:
    wrong = "sk-interop-wrong-" + uuid.uuid4().hex
    client = make_client(wrong)
    with pytest.raises(GatewayAuthError) as caught:
        client.call("chat_completion", "openai/gpt-4o", MESSAGES)
    error = caught.value
    assert error.status_code == 401
    assert error.error_type == "auth_error"
    assert "Invalid proxy server token" in error.message
    assert wrong not in str(error) and wrong not in repr(error) and wrong not in str(error.body)
    with pytest.raises(GatewayAuthError):
        client.call("list_models")
    with pytest.raises(GatewayAuthError):
        client.collect(client.stream("openai/gpt-4o", MESSAGES))


def test_no_key_is_an_auth_error(
    make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Authorization header at all: 401 (a 500 text/plain without ``prisma`` installed)."""
    monkeypatch.delenv("AUTH_TOKEN", raising=False)
    client = make_client(None)
    with pytest.raises(GatewayAuthError) as caught:
        client.call("chat_completion", "openai/gpt-4o", MESSAGES)
    assert caught.value.status_code == 401
    assert "No api key passed in" in caught.value.message


def test_unknown_model_is_a_bad_request(make_client: Callable[..., Any]) -> None:
    client = make_client()
    with pytest.raises(GatewayBadRequestError) as caught:
        client.call("chat_completion", "openai/no-such-model", MESSAGES)
    error = caught.value
    assert error.status_code == 400
    assert error.error_type == "invalid_request_error"
    assert "Invalid model name" in error.message
    assert error.request_id  # from x-litellm-call-id
    with pytest.raises(GatewayBadRequestError):
        client.collect(client.stream("openai/no-such-model", MESSAGES))
    with pytest.raises(GatewayBadRequestError):
        client.call("embeddings", "openai/no-such-embedding", "text")
    assert client.client.usage.total.requests == 0


def test_per_key_rpm_limit_raises_with_retry_after(make_client: Callable[..., Any]) -> None:
    """The key's rpm_limit is 2 (custom auth): the third call in the window is a 429."""
    client = make_client(fresh_key("sk-interop-rpm-"), max_retries=0)
    for _ in range(2):
        client.call("chat_completion", "openai/gpt-4o", MESSAGES)
    started = time.monotonic()
    with pytest.raises(GatewayRateLimitError) as caught:
        client.call("chat_completion", "openai/gpt-4o", MESSAGES)
    assert time.monotonic() - started < 5
    error = caught.value
    assert error.status_code == 429
    assert error.retry_after == 60.0  # LiteLLM's v3 limiter always says retry-after: 60
    assert error.error_type == "throttling_error"
    assert "Rate limit exceeded" in error.message
    with pytest.raises(GatewayRateLimitError):  # a stream is refused the same way, before SSE
        client.collect(client.stream("openai/gpt-4o", MESSAGES))
    assert client.client.usage.total.requests == 2


def test_per_key_429_asking_too_long_is_not_waited_for(make_client: Callable[..., Any]) -> None:
    """retry-after 60 is over max_retry_after 5: raised at once, even with retries left."""
    client = make_client(fresh_key("sk-interop-rpm-"), max_retries=3, max_retry_after=5)
    for _ in range(2):
        client.call("chat_completion", "openai/gpt-4o", MESSAGES)
    started = time.monotonic()
    with pytest.raises(GatewayRateLimitError) as caught:
        client.call("chat_completion", "openai/gpt-4o", MESSAGES)
    assert time.monotonic() - started < 5
    assert caught.value.retry_after == 60.0


def test_per_key_parallel_limit(make_client: Callable[..., Any], litellm_proxy: Proxy) -> None:
    """max_parallel_requests 1 on the key: a call while another is in flight is a 429."""
    key = fresh_key("sk-interop-parallel-")
    blocker = Blocker(litellm_proxy, PARALLEL_MODEL, key)
    with blocker:
        client = make_client(key, max_retries=0)
        with pytest.raises(GatewayRateLimitError) as caught:
            client.call("chat_completion", "openai/gpt-4o", MESSAGES)
    assert caught.value.retry_after == 60.0
    assert blocker.result == reply(PARALLEL_MODEL)


def test_retried_429_succeeds_once_the_limit_allows(
    make_client: Callable[..., Any], litellm_proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    """A deployment with max_parallel_requests 1 and mock_delay 1 s: while a blocker holds the
    slot, the client's call gets 429 (LiteLLM sends no retry hint here), backs off, and its
    retry succeeds once the slot is free, about 1 s later."""
    policy = RetryPolicy(max_retries=8, backoff_base=0.5, backoff_max=1.0)
    client = make_client(retry_policy=policy)
    caplog.set_level(logging.WARNING, logger="gatewayclient")
    with Blocker(litellm_proxy, PARALLEL_MODEL) as blocker:
        started = time.monotonic()
        resp = client.call("chat_completion", PARALLEL_MODEL, MESSAGES)
        took = time.monotonic() - started
    assert blocker.result == reply(PARALLEL_MODEL)
    assert resp.choices[0].message.content == reply(PARALLEL_MODEL)
    retries = [r for r in caplog.records if r.name == "gatewayclient" and "429" in r.getMessage()]
    assert retries, "the first attempt should have met the blocker's 429"
    assert 0.5 < took < 10
    usage = client.client.usage.by_model[PARALLEL_MODEL]
    assert usage.requests == 1  # one call, however many attempts


def test_retried_429_stream_succeeds(
    make_client: Callable[..., Any], litellm_proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream refused with 429 before its first chunk is retried like any call."""
    client = make_client(retry_policy=RetryPolicy(max_retries=8, backoff_max=1.0))
    caplog.set_level(logging.WARNING, logger="gatewayclient")
    with Blocker(litellm_proxy, PARALLEL_MODEL):
        chunks = client.collect(client.stream(PARALLEL_MODEL, MESSAGES))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == reply(PARALLEL_MODEL)
    assert any("429" in r.getMessage() for r in caplog.records if r.name == "gatewayclient")


def test_read_timeout(make_client: Callable[..., Any]) -> None:
    """A deployment that takes 2 s, a client timeout of 0.5 s: GatewayTimeoutError, fast."""
    client = make_client(timeout=0.5, max_retries=0)
    started = time.monotonic()
    with pytest.raises(GatewayTimeoutError):
        client.call("chat_completion", SLOW_MODEL, MESSAGES)
    with pytest.raises(GatewayTimeoutError):  # LiteLLM sends no header before the first chunk
        client.collect(client.stream(SLOW_MODEL, MESSAGES))
    assert time.monotonic() - started < 4
    generous = make_client(max_retries=0)
    resp = generous.call("chat_completion", SLOW_MODEL, MESSAGES, timeout=10)
    assert resp.choices[0].message.content == reply(SLOW_MODEL)


def test_server_error_is_retried_then_raised(
    make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(retry_policy=RetryPolicy(max_retries=2, backoff_base=0))
    caplog.set_level(logging.WARNING, logger="gatewayclient")
    with pytest.raises(GatewayServerError) as caught:
        client.call("chat_completion", FAILING_MODEL, MESSAGES)
    assert caught.value.status_code == 500
    assert caught.value.error_code == "500"
    assert "InternalServerError" in caught.value.message
    retries = [r for r in caplog.records if r.name == "gatewayclient" and "500" in r.getMessage()]
    assert len(retries) == 2  # max_retries=2: three attempts, two retries logged
    assert client.client.usage.total.requests == 0


def test_529_with_an_empty_reason_phrase(
    make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """``HTTP/1.1 529 `` (no reason phrase), to a call or a stream: a server error, retried."""
    client = make_client(retry_policy=RetryPolicy(max_retries=1, backoff_base=0))
    caplog.set_level(logging.WARNING, logger="gatewayclient")
    with pytest.raises(GatewayServerError) as call:
        client.call("chat_completion", OVERLOADED_MODEL, MESSAGES)
    with pytest.raises(GatewayServerError) as stream:
        client.collect(client.stream(OVERLOADED_MODEL, MESSAGES))
    for caught in (call, stream):
        assert caught.value.status_code == 529
        assert caught.value.error_code == "529"
        assert "mock error raised mid-stream" in caught.value.message
    retries = [r for r in caplog.records if r.name == "gatewayclient" and "529" in r.getMessage()]
    assert len(retries) == 2  # one retry for each


# --- LiteLLM's quirks, each absorbed -----------------------------------------------------------


def test_quirk_usage_chunk_has_choices_and_cost(make_client: Callable[..., Any]) -> None:
    """LiteLLM's usage chunk has ``choices: [{"index": 0, "delta": {}}]`` (OpenAI sends ``[]``)
    and an extra ``cost`` in ``usage``. It is yielded like any other chunk (safe to index), its
    usage is recorded once, and the extra field is kept."""
    client = make_client()
    stream = client.stream("openai/gpt-4o", MESSAGES)
    chunks = client.collect(stream)
    for chunk in chunks:
        assert chunk["choices"][0]["delta"] is not None  # the reference's loop never breaks
    last = chunks[-1]
    assert last.usage is not None, "LiteLLM's usage chunk (non-empty choices) is yielded"
    assert last.to_dict()["choices"] == [{"index": 0, "delta": {}}]
    assert "cost" in last.to_dict()["usage"]
    assert [c.usage is not None for c in chunks].count(True) == 1
    assert stream.usage.to_dict()["cost"] == last.to_dict()["usage"]["cost"]
    assert stream.usage.total_tokens == last.usage.total_tokens
    whole = stream.completion()
    assert whole.choices[0].message.content == reply("openai/gpt-4o")  # nothing counted twice
    assert len(whole.choices) == 1
    tracked = client.client.usage.total
    assert (tracked.requests, tracked.total_tokens) == (1, last.usage.total_tokens)


def test_quirk_error_code_is_a_string(make_client: Callable[..., Any]) -> None:
    """LiteLLM's ``code`` is the HTTP status as a string; kept as received, the class comes from
    the status."""
    client = make_client(max_retries=0)
    with pytest.raises(GatewayBadRequestError) as bad:
        client.call("chat_completion", "openai/no-such-model", MESSAGES)
    assert bad.value.error_code == "400"
    denied = make_client("sk-interop-not-a-key", max_retries=0)
    with pytest.raises(GatewayAuthError) as auth:
        denied.call("list_models")
    assert auth.value.error_code == "401"
    limited = make_client(fresh_key("sk-interop-rpm-"), max_retries=0)
    with pytest.raises(GatewayRateLimitError) as throttled:
        for _ in range(3):
            limited.call("chat_completion", "openai/gpt-4o", MESSAGES)
    assert throttled.value.error_code == "429"


def test_quirk_param_is_the_string_none(make_client: Callable[..., Any]) -> None:
    """Auth errors say ``"param": "None"`` (a string): the error still parses whole."""
    client = make_client("sk-interop-not-a-key-either")
    with pytest.raises(GatewayAuthError) as caught:
        client.call("chat_completion", "openai/gpt-4o", MESSAGES)
    error = caught.value
    body: Dict[str, Any] = error.body
    assert body["error"]["param"] == "None"
    assert error.message == "Authentication Error, Invalid proxy server token passed."
    assert (error.status_code, error.error_type, error.error_code) == (401, "auth_error", "401")
    assert error.retry_after is None


def test_quirk_llm_provider_retry_after_is_a_rate_limit_hint(
    make_client: Callable[..., Any],
) -> None:
    """A deployment's own rpm (usage-based-routing-v2) answers 429 with no Retry-After, only
    ``llm_provider-retry-after: 60``: that is the error's ``retry_after``."""
    client = make_client(max_retries=0)
    errors: List[GatewayRateLimitError] = []
    # rpm 3 lets 2 calls per UTC minute through; 5 calls see a 429 even across a minute boundary.
    for _ in range(5):
        try:
            client.call("chat_completion", RPM_MODEL, MESSAGES)
        except GatewayRateLimitError as error:
            errors.append(error)
            break
    assert errors, "5 calls against an rpm-3 deployment should have met a 429"
    error = errors[0]
    assert error.retry_after == 60.0
    assert "No deployments available" in error.message
    assert error.error_code == "429"


# --- LiteLLM's legacy limiter: a fractional retry-after ------------------------------------------


def test_legacy_limiter_fractional_retry_after(
    make_legacy_client: Callable[..., Any], legacy_proxy: Proxy
) -> None:
    """With LEGACY_MULTI_INSTANCE_RATE_LIMITING=true, a per-key limit answers 429 with
    ``retry-after`` = the seconds left until the next UTC minute, with microseconds
    ("47.612578"): the client keeps the fraction."""
    key = fresh_key("sk-interop-parallel-")
    with Blocker(legacy_proxy, "openai/gpt-4o", key) as blocker:  # mock_delay 1 s there
        client = make_legacy_client(key, max_retries=0)
        with pytest.raises(GatewayRateLimitError) as caught:
            client.call("chat_completion", "openai/gpt-4o", MESSAGES)
    assert blocker.result == reply("openai/gpt-4o")
    retry_after = caught.value.retry_after
    assert retry_after is not None
    assert 0 < retry_after <= 60
    assert retry_after != int(retry_after)  # microsecond resolution: never whole in practice
    assert "Max Parallel Request Limit" in caught.value.message


def test_legacy_limiter_hint_longer_than_accepted_is_raised_at_once(
    make_legacy_client: Callable[..., Any],
) -> None:
    """The legacy per-key rpm (2 per UTC minute) asks to wait until the next minute; with
    ``max_retry_after`` below that the 429 is raised at once, carrying the hint."""
    client = make_legacy_client(fresh_key("sk-interop-rpm-"), max_retries=3, max_retry_after=0.001)
    errors: List[GatewayRateLimitError] = []
    started = time.monotonic()
    for _ in range(5):  # 2 pass per UTC minute: 5 calls meet a 429 even across a boundary
        try:
            client.call("chat_completion", "openai/gpt-4o", MESSAGES)
        except GatewayRateLimitError as error:
            errors.append(error)
            break
    assert errors, "5 calls with an rpm-2 key should have met a 429"
    assert errors[0].retry_after is not None and 0 < errors[0].retry_after <= 60
    assert time.monotonic() - started < 15  # each passing call takes mock_delay 1 s
