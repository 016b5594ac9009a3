"""The retry policy with fake attempts (no server): counts, waits, hints, logs, isolation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional

import pytest

import gatewayclient
from gatewayclient import retry
from gatewayclient._core import GatewayCore
from gatewayclient.config import ClientConfig, RetryPolicy
from gatewayclient.errors import (
    GatewayAuthError,
    GatewayBadRequestError,
    GatewayClientError,
    GatewayConfigError,
    GatewayConnectionError,
    GatewayModelNotFoundError,
    GatewayProviderError,
    GatewayRateLimitError,
    GatewayResponseError,
    GatewayServerError,
    GatewayStreamError,
    GatewayTimeoutError,
    GatewayValidationError,
)

TOKEN = "sk-retry-secret-42aa17"
ZERO_WAIT = RetryPolicy(max_retries=2, backoff_base=0)


def retryable_errors() -> list[Any]:
    return [
        pytest.param(lambda: GatewayRateLimitError("slow", status_code=429), id="429"),
        pytest.param(lambda: GatewayServerError("boom", status_code=500), id="500"),
        pytest.param(lambda: GatewayProviderError("upstream", status_code=502), id="502"),
        pytest.param(lambda: GatewayServerError("down", status_code=503), id="503"),
        pytest.param(lambda: GatewayServerError("slow", status_code=504), id="504"),
        pytest.param(lambda: GatewayServerError("overloaded", status_code=529), id="529"),
        pytest.param(lambda: GatewayConnectionError("reset"), id="connection"),
        pytest.param(lambda: GatewayTimeoutError("timed out"), id="timeout"),
    ]


def final_errors() -> list[Any]:
    return [
        pytest.param(lambda: GatewayBadRequestError("bad", status_code=400), id="400"),
        pytest.param(lambda: GatewayAuthError("who", status_code=401), id="401"),
        pytest.param(lambda: GatewayAuthError("no", status_code=403), id="403"),
        pytest.param(lambda: GatewayModelNotFoundError("what", status_code=404), id="404"),
        pytest.param(lambda: GatewayBadRequestError("big", status_code=413), id="413"),
        pytest.param(lambda: GatewayBadRequestError("bad", status_code=422), id="422"),
        pytest.param(lambda: GatewayClientError("teapot", status_code=418), id="418"),
        pytest.param(lambda: GatewayClientError("nope", status_code=501), id="501"),
        pytest.param(lambda: GatewayStreamError("cut"), id="stream"),
        pytest.param(lambda: GatewayResponseError("not json"), id="response"),
        pytest.param(lambda: GatewayValidationError("bad argument"), id="validation"),
        pytest.param(lambda: GatewayConfigError("bad config"), id="config"),
        pytest.param(lambda: ValueError("a bug"), id="ValueError"),
        pytest.param(lambda: KeyError("a bug"), id="KeyError"),
    ]


class Script:
    """A fake attempt: raises the scripted errors in turn, then returns ``result``."""

    def __init__(self, *errors: BaseException, result: Any = "ok") -> None:
        self.errors = list(errors)
        self.raised: list[BaseException] = []
        self.result = result
        self.calls = 0
        self.times: list[float] = []

    def next_error(self) -> Optional[BaseException]:
        return self.errors.pop(0) if self.errors else None

    def __call__(self) -> Any:
        self.calls += 1
        self.times.append(time.monotonic())
        error = self.next_error()
        if error is None:
            return self.result
        self.raised.append(error)
        raise error

    async def coroutine(self) -> Any:
        await asyncio.sleep(0)
        return self()


class Always(Script):
    """A fake attempt that always fails, with a new error each time."""

    def __init__(self, make: Callable[[], BaseException]) -> None:
        super().__init__()
        self.make = make

    def next_error(self) -> Optional[BaseException]:
        return self.make()


def run_sync(policy: RetryPolicy, script: Script) -> Any:
    return retry.run(policy, script, "POST https://gateway.example.com/v1/chat/completions")


def run_async(policy: RetryPolicy, script: Script) -> Any:
    return asyncio.run(
        retry.arun(policy, script.coroutine, "POST https://gateway.example.com/v1/chat/completions")
    )


RUNNERS = [pytest.param(run_sync, id="run"), pytest.param(run_async, id="arun")]


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gatewayclient" and r.levelno >= logging.WARNING]


# -- counting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("max_retries", [0, 1, 2, 3, 5])
def test_max_retries_counts_retries_not_attempts(runner: Any, max_retries: int) -> None:
    script = Always(lambda: GatewayServerError("down", status_code=503))
    with pytest.raises(GatewayServerError) as caught:
        runner(RetryPolicy(max_retries=max_retries, backoff_base=0), script)
    assert script.calls == max_retries + 1
    assert caught.value is script.raised[-1]


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("make", retryable_errors())
def test_max_retries_zero_makes_exactly_one_call(
    runner: Any, make: Callable[[], BaseException]
) -> None:
    script = Always(make)
    with pytest.raises(type(make())) as caught:
        runner(RetryPolicy(max_retries=0, backoff_base=0), script)
    assert script.calls == 1
    assert caught.value is script.raised[0]


@pytest.mark.parametrize("runner", RUNNERS)
def test_first_success_is_returned_at_once(runner: Any) -> None:
    script = Script(result={"answer": 42})
    assert runner(ZERO_WAIT, script) == {"answer": 42}
    assert script.calls == 1


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("make", retryable_errors())
def test_retryable_errors_are_retried_until_success(
    runner: Any, make: Callable[[], BaseException]
) -> None:
    script = Script(make(), make(), result="third time")
    assert runner(ZERO_WAIT, script) == "third time"
    assert script.calls == 3


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("make", final_errors())
def test_non_retryable_errors_are_raised_at_once(
    runner: Any, make: Callable[[], BaseException]
) -> None:
    error = make()
    script = Script(error)
    with pytest.raises(type(error)) as caught:
        runner(RetryPolicy(max_retries=5, backoff_base=0), script)
    assert caught.value is error
    assert script.calls == 1


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_non_retryable_error_after_a_retry_ends_the_call(runner: Any) -> None:
    final = GatewayAuthError("expired", status_code=401)
    script = Script(GatewayServerError("down", status_code=503), final)
    with pytest.raises(GatewayAuthError) as caught:
        runner(RetryPolicy(max_retries=5, backoff_base=0), script)
    assert caught.value is final
    assert script.calls == 2


@pytest.mark.parametrize("runner", RUNNERS)
def test_no_tenacity_type_reaches_the_caller(runner: Any) -> None:
    script = Always(lambda: GatewayConnectionError("refused"))
    with pytest.raises(GatewayConnectionError) as caught:
        runner(ZERO_WAIT, script)
    assert type(caught.value).__module__ == "gatewayclient.errors"


# -- waiting ------------------------------------------------------------------------------------


def fake_state(error: Optional[BaseException], attempt_number: int) -> Any:
    outcome = SimpleNamespace(exception=lambda: error, failed=error is not None)
    return SimpleNamespace(outcome=outcome, attempt_number=attempt_number)


@pytest.mark.parametrize("hint", [0.0, 0.01, 0.25, 1.5, 59.0, 60.0])
@pytest.mark.parametrize("attempt_number", [1, 2, 5])
def test_a_server_hint_is_the_wait(hint: float, attempt_number: int) -> None:
    error = GatewayRateLimitError("slow", status_code=429, retry_after=hint)
    assert retry._wait_seconds(RetryPolicy(), fake_state(error, attempt_number)) == hint


def test_a_hint_on_any_retryable_error_is_the_wait() -> None:
    error = GatewayServerError("down", status_code=503, retry_after=2.0)
    assert retry._wait_seconds(RetryPolicy(), fake_state(error, 1)) == 2.0


@pytest.mark.parametrize(
    ("policy", "attempts"),
    [
        (RetryPolicy(), range(1, 10)),
        (RetryPolicy(backoff_base=0.1, backoff_max=1.0), range(1, 8)),
        (RetryPolicy(backoff_base=2.0, backoff_max=3.0), range(1, 4)),
    ],
)
def test_backoff_is_full_jitter_under_the_capped_exponential(
    policy: RetryPolicy, attempts: Any
) -> None:
    error = GatewayServerError("down", status_code=503)
    for attempt_number in attempts:
        ceiling = min(policy.backoff_max, policy.backoff_base * 2 ** (attempt_number - 1))
        waits = [retry._wait_seconds(policy, fake_state(error, attempt_number)) for _ in range(400)]
        assert all(0 <= wait <= ceiling for wait in waits), attempt_number
        assert max(waits) > 0.6 * ceiling  # jittered over the whole range, not a constant
        assert min(waits) < 0.4 * ceiling


@pytest.mark.parametrize("attempt_number", [20, 64, 1024, 1025, 1100, 5000])
def test_late_attempts_wait_at_most_the_cap(attempt_number: int) -> None:
    error = GatewayServerError("down", status_code=503)
    policy = RetryPolicy(max_retries=10_000)
    waits = [retry._wait_seconds(policy, fake_state(error, attempt_number)) for _ in range(50)]
    assert all(0 <= wait <= policy.backoff_max for wait in waits)


def test_default_backoff_is_half_a_second_doubling_to_eight() -> None:
    policy = RetryPolicy()
    assert (policy.backoff_base, policy.backoff_max) == (0.5, 8.0)
    assert (policy.max_retries, policy.max_retry_after) == (2, 60.0)


def test_zero_backoff_base_means_zero_waits() -> None:
    error = GatewayServerError("down", status_code=503)
    policy = RetryPolicy(backoff_base=0)
    assert {retry._wait_seconds(policy, fake_state(error, n)) for n in range(1, 6)} == {0.0}


@pytest.mark.parametrize("runner", RUNNERS)
def test_the_hint_is_actually_waited(runner: Any) -> None:
    policy = RetryPolicy(max_retries=2, max_retry_after=1.0, backoff_base=0)
    script = Script(GatewayRateLimitError("slow", status_code=429, retry_after=0.05))
    started = time.monotonic()
    assert runner(policy, script) == "ok"
    assert script.calls == 2
    assert script.times[1] - script.times[0] >= 0.045
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("runner", RUNNERS)
def test_zero_wait_policy_retries_quickly(runner: Any) -> None:
    script = Always(lambda: GatewayServerError("down", status_code=503))
    started = time.monotonic()
    with pytest.raises(GatewayServerError):
        runner(RetryPolicy(max_retries=5, backoff_base=0), script)
    assert script.calls == 6
    assert time.monotonic() - started < 2


# -- a hint longer than max_retry_after ---------------------------------------------------------


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_hint_longer_than_max_retry_after_is_raised_at_once(runner: Any) -> None:
    error = GatewayRateLimitError("come back later", status_code=429, retry_after=120.0)
    script = Script(error)
    started = time.monotonic()
    with pytest.raises(GatewayRateLimitError) as caught:
        runner(RetryPolicy(max_retries=3, max_retry_after=60.0, backoff_base=0), script)
    assert caught.value is error
    assert caught.value.retry_after == 120.0
    assert script.calls == 1
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_too_long_hint_after_a_retry_ends_the_call(runner: Any) -> None:
    long_wait = GatewayServerError("maintenance", status_code=503, retry_after=3600.0)
    script = Script(GatewayServerError("down", status_code=503), long_wait)
    with pytest.raises(GatewayServerError) as caught:
        runner(RetryPolicy(max_retries=5, max_retry_after=1.0, backoff_base=0), script)
    assert caught.value is long_wait
    assert caught.value.retry_after == 3600.0
    assert script.calls == 2


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_hint_equal_to_max_retry_after_is_waited(runner: Any) -> None:
    policy = RetryPolicy(max_retries=1, max_retry_after=0.05, backoff_base=0)
    script = Script(GatewayRateLimitError("slow", status_code=429, retry_after=0.05))
    assert runner(policy, script) == "ok"
    assert script.calls == 2
    assert script.times[1] - script.times[0] >= 0.045


@pytest.mark.parametrize(
    ("hint", "limit", "expected"),
    [(None, 60.0, True), (0.0, 60.0, True), (60.0, 60.0, True), (60.01, 60.0, False)],
)
def test_should_retry_compares_the_hint_with_the_limit(
    hint: Optional[float], limit: float, expected: bool
) -> None:
    error = GatewayRateLimitError("slow", status_code=429, retry_after=hint)
    assert retry.should_retry(RetryPolicy(max_retry_after=limit), error) is expected


@pytest.mark.parametrize("make", final_errors())
def test_should_retry_refuses_final_errors(make: Callable[[], BaseException]) -> None:
    assert retry.should_retry(RetryPolicy(), make()) is False


# -- logging -----------------------------------------------------------------------------------


def _echoing_call() -> tuple[str, Callable[[], BaseException]]:
    """What the clients pass: the request's repr, and a 503 whose body echoes the token."""
    core = GatewayCore(
        ClientConfig.create(
            "https://gateway.example.com", TOKEN, 60.0, max_retries=2, max_retry_after=60.0,
            api_prefix="/v1", default_headers=None, verify=True, max_connections=100,
            retry_policy=None,
        )
    )  # fmt: skip
    call = core.chat("openai/gpt-4o", [{"role": "user", "content": "hi"}], None, None, None, {})
    body = f'{{"error": {{"message": "key {TOKEN} is busy"}}}}'.encode()

    def make() -> BaseException:
        try:
            call.handle(503, {"Retry-After": "0.01", "x-request-id": "req-1"}, body)
        except GatewayClientError as error:
            return error
        raise AssertionError("a 503 must raise")

    return repr(call.request), make


@pytest.mark.parametrize("asynchronous", [False, True], ids=["run", "arun"])
def test_each_retry_logs_one_warning_with_status_and_wait(
    caplog: pytest.LogCaptureFixture, asynchronous: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayclient")
    what, make = _echoing_call()
    script = Script(make(), make(), result="ok")
    policy = RetryPolicy(max_retries=3, backoff_base=0)
    if asynchronous:
        assert asyncio.run(retry.arun(policy, script.coroutine, what)) == "ok"
    else:
        assert retry.run(policy, script, what) == "ok"
    warnings = records(caplog)
    assert len(warnings) == 2
    for record in warnings:
        message = record.getMessage()
        assert record.levelno == logging.WARNING
        assert "503" in message
        assert re.search(r"0\.01|10 ?ms", message), message
        assert TOKEN not in message
        assert TOKEN not in str(record.args)


@pytest.mark.parametrize("runner", RUNNERS)
def test_exhausted_retries_log_one_warning_per_retry(
    caplog: pytest.LogCaptureFixture, runner: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayclient")
    script = Always(lambda: GatewayProviderError("upstream", status_code=502))
    with pytest.raises(GatewayProviderError):
        runner(RetryPolicy(max_retries=3, backoff_base=0), script)
    warnings = records(caplog)
    assert len(warnings) == 3
    assert all("502" in record.getMessage() for record in warnings)


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize(
    "script_factory",
    [
        pytest.param(lambda: Script(), id="success"),
        pytest.param(lambda: Script(GatewayAuthError("no", status_code=401)), id="final-error"),
    ],
)
def test_no_retry_logs_nothing(
    caplog: pytest.LogCaptureFixture, runner: Any, script_factory: Callable[[], Script]
) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayclient")
    with contextlib.suppress(GatewayClientError):
        runner(ZERO_WAIT, script_factory())
    assert records(caplog) == []


def test_max_retries_zero_logs_no_retry(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayclient")
    with pytest.raises(GatewayServerError):
        run_sync(
            RetryPolicy(max_retries=0), Always(lambda: GatewayServerError("x", status_code=500))
        )
    assert records(caplog) == []


# -- nothing printed unless the application configures logging ----------------------------------

RETRIED_CALLS = """
    import asyncio, logging, sys
    from gatewayclient import AsyncGatewayClient, RetryPolicy, SyncGatewayClient
    from gatewayclient.testing import FakeGateway

    if sys.argv[1:] == ["configured"]:
        logging.basicConfig()
    policy = RetryPolicy(max_retries=2, backoff_base=0)
    with FakeGateway() as gw:
        gw.fail(503, times=1)
        with SyncGatewayClient(gw.url, gw.token, retry_policy=policy) as client:
            client.list_models()

        async def main():
            gw.fail(429, times=1, retry_after=0)
            async with AsyncGatewayClient(gw.url, gw.token, retry_policy=policy) as client:
                await client.list_models()

        asyncio.run(main())
        print(len(gw.requests))
"""


def _retried_calls(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RETRIED_CALLS), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(Path(gatewayclient.__file__).parent.parent),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4"  # two calls, each retried once
    return result


def test_a_retry_prints_nothing_when_logging_is_not_configured() -> None:
    assert _retried_calls().stderr == ""


def test_a_retry_is_printed_once_the_application_configures_logging() -> None:
    lines = _retried_calls("configured").stderr.splitlines()
    assert len(lines) == 2, lines
    assert all(
        line.startswith("WARNING:gatewayclient:") and "retry 1 of 2" in line for line in lines
    )


def test_the_package_logger_has_a_null_handler_and_propagates() -> None:
    # In a fresh interpreter: an application's logging.config (the Django example's, run by
    # this suite) may rightly replace the package logger's handlers.
    out = _python(
        """
        import logging
        import gatewayclient

        logger = logging.getLogger("gatewayclient")
        print([type(handler).__name__ for handler in logger.handlers], logger.propagate)
        """
    )
    assert out == "['NullHandler'] True"


@pytest.mark.parametrize("runner", RUNNERS)
def test_caplog_sees_retries_without_setting_a_level(
    caplog: pytest.LogCaptureFixture, runner: Any
) -> None:
    script = Script(GatewayServerError("down", status_code=503), result="ok")
    assert runner(ZERO_WAIT, script) == "ok"
    assert [record.levelno for record in records(caplog)] == [logging.WARNING]


# -- tenacity stays unloaded on the happy path --------------------------------------------------


def _python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(Path(gatewayclient.__file__).parent.parent),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_tenacity_is_not_imported_when_the_first_attempt_succeeds() -> None:
    out = _python(
        """
        import asyncio, sys
        from gatewayclient import retry
        from gatewayclient.config import RetryPolicy
        from gatewayclient.errors import GatewayAuthError, GatewayServerError

        assert retry.run(RetryPolicy(), lambda: 1, "call") == 1

        async def attempt():
            return 2

        assert asyncio.run(retry.arun(RetryPolicy(), attempt, "call")) == 2

        def final():
            raise GatewayAuthError("no", status_code=401)

        try:
            retry.run(RetryPolicy(), final, "call")
        except GatewayAuthError:
            pass

        def once():
            raise GatewayServerError("down", status_code=503)

        try:
            retry.run(RetryPolicy(max_retries=0), once, "call")
        except GatewayServerError:
            pass
        print("tenacity" in sys.modules)
        """
    )
    assert out == "False"


def test_tenacity_is_imported_once_a_retry_is_due() -> None:
    out = _python(
        """
        import sys
        from gatewayclient import retry
        from gatewayclient.config import RetryPolicy
        from gatewayclient.errors import GatewayServerError

        failures = [GatewayServerError("down", status_code=503)]

        def attempt():
            if failures:
                raise failures.pop()
            return "ok"

        assert retry.run(RetryPolicy(backoff_base=0), attempt, "call") == "ok"
        print("tenacity" in sys.modules)
        """
    )
    assert out == "True"


# -- a fresh controller per call ---------------------------------------------------------------


def test_concurrent_threads_retry_independently() -> None:
    policy = RetryPolicy(max_retries=3, max_retry_after=1.0, backoff_base=0)
    pairs = 6
    barrier = threading.Barrier(pairs * 2)
    outcomes: dict[str, Any] = {}

    def hint_error() -> BaseException:
        return GatewayServerError("down", status_code=503, retry_after=0.01)

    def failing(name: str) -> None:
        script = Always(hint_error)
        barrier.wait()
        try:
            retry.run(policy, script, name)
        except GatewayServerError:
            outcomes[name] = ("raised", script.calls)

    def recovering(name: str) -> None:
        script = Script(hint_error(), hint_error(), result=name)
        barrier.wait()
        outcomes[name] = (retry.run(policy, script, name), script.calls)

    threads = []
    for number in range(pairs):
        threads.append(threading.Thread(target=failing, args=(f"fail-{number}",)))
        threads.append(threading.Thread(target=recovering, args=(f"ok-{number}",)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for number in range(pairs):
        assert outcomes[f"fail-{number}"] == ("raised", 4)
        assert outcomes[f"ok-{number}"] == (f"ok-{number}", 3)


def test_concurrent_tasks_retry_independently() -> None:
    policy = RetryPolicy(max_retries=3, max_retry_after=1.0, backoff_base=0)

    def hint_error() -> BaseException:
        return GatewayServerError("down", status_code=503, retry_after=0.01)

    async def failing() -> Any:
        script = Always(hint_error)

        async def attempt() -> Any:
            await asyncio.sleep(0)
            return script()

        try:
            await retry.arun(policy, attempt, "failing")
        except GatewayServerError:
            return ("raised", script.calls)
        return ("returned", script.calls)

    async def recovering(name: str) -> Any:
        script = Script(hint_error(), hint_error(), result=name)
        return (await retry.arun(policy, script.coroutine, name), script.calls)

    async def main() -> list[Any]:
        jobs = []
        for number in range(6):
            jobs += [failing(), recovering(f"ok-{number}")]
        return list(await asyncio.gather(*jobs))

    results = asyncio.run(main())
    assert results[0::2] == [("raised", 4)] * 6
    assert results[1::2] == [(f"ok-{n}", 3) for n in range(6)]


def test_the_same_policy_serves_consecutive_calls() -> None:
    policy = RetryPolicy(max_retries=1, backoff_base=0)
    for _ in range(3):
        script = Always(lambda: GatewayConnectionError("reset"))
        with pytest.raises(GatewayConnectionError):
            retry.run(policy, script, "call")
        assert script.calls == 2
