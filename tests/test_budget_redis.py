"""The rate budget through a real redis-server (tests/redis_server.py): the window shared by
every RateLimit with the same URL and key, on Redis's clock, in at most two round trips a call;
a 429's pause shared; cancellation that reserves nothing; and the storage's faults (stopped,
restarted, stalled), which never fail a call."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
import textwrap
import time
from typing import Any, Callable, Dict, Iterator, List

import pytest
from redis_server import RedisServer
from twin import Twin

import gatewayclient._budget_redis as budget_redis
from gatewayclient import RateLimit
from gatewayclient._traffic import atake, take, window
from gatewayclient.budget import LocalWindow, Ticket
from gatewayclient.errors import GatewayRateLimitError
from gatewayclient.testing import FakeGateway

MODEL = "openai/gpt-4o"
HELLO = [{"role": "user", "content": "Hello there, gateway!"}]
TRANSIT = 0.05  # how much closer two arrivals may be than their departures (see README)


def shared(server: RedisServer, *args: Any, **kwargs: Any) -> RateLimit:
    kwargs.setdefault("key", "test")
    return RateLimit(*args, storage=server.url, **kwargs)


def admitted(limit: RateLimit, cost: int = 0) -> Ticket:
    got = window(limit).take(cost)
    assert isinstance(got, Ticket), f"no room: wait {got}"
    assert not isinstance(got.store, LocalWindow), "Redis was not used"
    return got


def waits(limit: RateLimit, cost: int = 0) -> float:
    got = window(limit).take(cost)
    assert not isinstance(got, Ticket), "admitted"
    return got


def keys(server: RedisServer) -> Dict[str, int]:
    """The budget's keys in Redis: the log's size, and the tokens held."""
    with server.client() as client:
        return {
            "log": client.zcard("gatewayclient:{test}:log"),
            "held": int(client.get("gatewayclient:{test}:held") or 0),
        }


# -- the window, shared -------------------------------------------------------------------------


def test_budgets_with_the_same_url_and_key_share_one_window(redis_server: RedisServer) -> None:
    one, two = shared(redis_server, 2, per=0.5), shared(redis_server, 2, per=0.5)
    admitted(one)
    admitted(two)
    assert 0.4 < waits(one) <= 0.5 and 0.4 < waits(two) <= 0.5
    admitted(shared(redis_server, 2, per=0.5, key="another"))
    time.sleep(waits(one))
    admitted(two)


def test_tokens_through_redis_are_reserved_and_corrected(redis_server: RedisServer) -> None:
    limit = shared(redis_server, tokens=100, per=10)
    first = admitted(limit, 60)
    admitted(limit, 30)
    assert 9.5 < waits(limit, 20) <= 10
    window(limit).settle(first, 50)
    second = admitted(limit, 20)
    assert keys(redis_server) == {"log": 3, "held": 100}
    window(limit).settle(second, 25)  # above its reservation: charged at once
    assert keys(redis_server)["held"] == 105
    assert waits(limit, 0) > 9  # over the budget until the oldest leaves
    assert (first.tokens, second.tokens) == (50, 25)


def test_the_redis_window_is_exact_over_time(redis_server: RedisServer) -> None:
    limit = shared(redis_server, 3, tokens=1000, per=0.3)
    tickets = [take(limit, 100) for _ in range(12)]  # four windows' worth
    times = [ticket.at for ticket in tickets]
    assert times == sorted(times)
    for index in range(3, 12):  # the fourth after any ticket comes a full window later
        assert times[index] - times[index - 3] >= 0.3
    assert times[-1] - times[0] < 4 * 0.3  # and not much later: not timid


def test_the_window_runs_on_the_redis_clock_not_the_hosts(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = shared(redis_server, 2, per=0.5)
    admitted(limit)
    admitted(limit)
    real_time, real_monotonic = time.time, time.monotonic
    for offset in (-1e6, 1e6):  # this host's clocks far behind, then far ahead
        monkeypatch.setattr(time, "time", lambda shift=offset: real_time() + shift)
        monkeypatch.setattr(time, "monotonic", lambda shift=offset: real_monotonic() + shift)
        assert 0 < waits(shared(redis_server, 2, per=0.5)) <= 0.5
    monkeypatch.undo()
    time.sleep(0.5)
    admitted(limit)


def test_a_pause_reaches_every_budget_sharing_the_key(redis_server: RedisServer) -> None:
    one, two = shared(redis_server, 100), shared(redis_server, 100)
    window(one).pause(0.4)
    assert 0.3 < waits(two) <= 0.4
    assert keys(redis_server)["log"] == 0


# -- both clients -------------------------------------------------------------------------------


@pytest.fixture
def clients(kind: str, gw: FakeGateway) -> Iterator[Callable[..., Twin]]:
    made: List[Twin] = []

    def build(limit: RateLimit, **kwargs: Any) -> Twin:
        made.append(Twin(kind, gw.url, gw.token, rate_limit=limit, **kwargs))
        return made[-1]

    yield build
    for twin in made:
        twin.close()


def test_clients_of_separate_budgets_share_through_redis(
    redis_server: RedisServer, gw: FakeGateway, clients: Callable[..., Twin]
) -> None:
    one = clients(shared(redis_server, 2, max_wait=0))
    two = clients(shared(redis_server, 2, max_wait=0))
    one.call("chat_completion", MODEL, HELLO)
    two.collect(two.stream(MODEL, HELLO))
    with pytest.raises(GatewayRateLimitError) as caught:
        one.call("list_models")
    assert caught.value.status_code is None and len(gw.requests) == 2
    assert keys(redis_server)["log"] == 2


def test_a_429_pauses_every_process_through_redis(
    redis_server: RedisServer, gw: FakeGateway, clients: Callable[..., Twin]
) -> None:
    first = clients(shared(redis_server, 100), max_retries=0)
    second = clients(shared(redis_server, 100))
    gw.fail(429, retry_after=0.4)
    with pytest.raises(GatewayRateLimitError):
        first.call("chat_completion", MODEL, HELLO)
    second.call("chat_completion", MODEL, HELLO)
    limited, then = gw.arrivals
    assert limited.status == 429 and then.at - limited.at >= 0.4 - TRANSIT


def commands(inspector: Any) -> Dict[str, int]:
    """Commands Redis ran since the last reset, by name (those inside scripts included)."""
    stats = inspector.info("commandstats")
    return {name[len("cmdstat_") :]: value["calls"] for name, value in stats.items()}


@pytest.mark.parametrize("tokens", [None, 100_000])
def test_at_most_two_round_trips_a_call_when_the_budget_has_room(
    redis_server: RedisServer, gw: FakeGateway, clients: Callable[..., Twin], tokens: Any
) -> None:
    twin = clients(shared(redis_server, 1000, tokens))
    twin.call("chat_completion", MODEL, HELLO)  # connects and loads the scripts
    with redis_server.client() as inspector:
        inspector.config_resetstat()
        for _ in range(10):
            twin.call("chat_completion", MODEL, HELLO)
        ran = commands(inspector)
    # What the client sent, leaving out what the scripts ran inside Redis and this inspection.
    inside = {"zadd", "zrange", "zrangebyscore", "zremrangebyscore", "zcard", "get", "set"}
    inside |= {"incrby", "decrby", "pexpire", "time", "zscore", "zrem", "config|resetstat"}
    sent = {name: calls for name, calls in ran.items() if name not in inside}
    # A take each; a settle each only when a token budget has a reservation to correct.
    assert sent == {"evalsha": 10 if tokens is None else 20}


# -- cancellation -------------------------------------------------------------------------------


def test_a_task_cancelled_during_the_round_trip_reserves_nothing(
    redis_server: RedisServer,
) -> None:
    limit = shared(redis_server, 1000, tokens=10**6)
    outcomes: List[str] = []

    async def main() -> None:
        await atake(limit, 7)  # connected, scripts loaded
        for delay in range(30):  # cancelled after 0, 1, 2 ... turns of the loop
            task = asyncio.ensure_future(atake(limit, 5))
            for _ in range(delay):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
                outcomes.append("ticket")  # it had its ticket before the cancel came
            except asyncio.CancelledError:
                outcomes.append("cancelled")
        await asyncio.sleep(0.1)  # any ticket given back by now

    asyncio.run(main())
    kept = outcomes.count("ticket")
    assert "cancelled" in outcomes and kept  # both cases met (the script ran in both)
    assert keys(redis_server) == {"log": 1 + kept, "held": 7 + 5 * kept}


# -- faults of the storage ----------------------------------------------------------------------

STALL_MARGIN = 0.25  # a stalled call's time past STALL_BOUND: the HTTP call and scheduling


@pytest.fixture
def quick_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis retried after 1 s (the contract's lower bound) rather than 2: a shorter test."""
    monkeypatch.setattr(budget_redis, "RETRY_AFTER", 1.0)


def redis_warnings(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "gatewayclient"
        and record.levelno == logging.WARNING
        and "Redis" in record.getMessage()
    ]


def windows_hold_at_most(times: List[float], requests: int, per: float) -> bool:
    """Whether no interval of ``per`` seconds holds more than ``requests`` of ``times``."""
    times = sorted(times)
    return all(times[i + requests] - times[i] >= per for i in range(len(times) - requests))


def test_redis_stopped_then_started_again_fails_no_call(
    quick_retry: None,
    own_redis: RedisServer,
    gw: FakeGateway,
    clients: Callable[..., Twin],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gatewayclient")
    limit = RateLimit(4, per=1.0, storage=own_redis.url, key="test")
    twin = clients(limit)
    twin.call("chat_completion", MODEL, HELLO)
    assert keys(own_redis)["log"] == 1
    own_redis.stop()
    gw.clear_requests()
    started = time.monotonic()
    while time.monotonic() - started < budget_redis.RETRY_AFTER + 1.2:  # Redis retried twice
        twin.call("chat_completion", MODEL, HELLO)
    during = [arrival.at for arrival in gw.arrivals]
    assert len(during) >= 9  # calls went on, at the in-process budget's pace:
    assert windows_hold_at_most(during, 4, 1.0 - TRANSIT)
    assert len(redis_warnings(caplog)) == 1
    own_redis.start()  # empty: it keeps nothing
    time.sleep(budget_redis.RETRY_AFTER)
    for _ in range(3):
        twin.call("chat_completion", MODEL, HELLO)
    assert keys(own_redis)["log"] >= 1  # used again
    assert len(redis_warnings(caplog)) == 1
    assert any("answers again" in record.getMessage() for record in caplog.records)


def test_a_stalled_redis_delays_no_call_past_the_bound(
    quick_retry: None,
    own_redis: RedisServer,
    gw: FakeGateway,
    clients: Callable[..., Twin],
    caplog: pytest.LogCaptureFixture,
) -> None:
    limit = RateLimit(1000, 10**6, storage=own_redis.url, key="test")
    twin = clients(limit)
    twin.call("chat_completion", MODEL, HELLO)
    own_redis.pause()
    durations: List[float] = []
    started = time.monotonic()
    while time.monotonic() - started < budget_redis.RETRY_AFTER + 0.6:  # Redis retried once
        begun = time.monotonic()
        twin.call("chat_completion", MODEL, HELLO)
        durations.append(time.monotonic() - begun)
        time.sleep(0.05)
    slow = [d for d in durations if d > budget_redis.STALL_BOUND / 2]
    assert len(slow) == 2  # the first call of the stall, and the one that tried Redis again
    assert max(durations) <= budget_redis.STALL_BOUND + STALL_MARGIN, max(durations)
    own_redis.resume()
    before = keys(own_redis)["log"]
    time.sleep(budget_redis.RETRY_AFTER)
    twin.call("chat_completion", MODEL, HELLO)
    assert keys(own_redis)["log"] == before + 1  # used again
    assert len(redis_warnings(caplog)) == 1


# -- event loops --------------------------------------------------------------------------------

SLOW_STEP = re.compile(r"^Executing <.*> took \d+\.\d+ seconds\n", re.MULTILINE)

LOOP_CASES = {
    "asyncio.run twice": """
        for _ in range(2):
            asyncio.run(use())
    """,
    "new_event_loop, run_until_complete, close without shutting generators down": """
        for _ in range(3):
            loop = asyncio.new_event_loop()
            loop.run_until_complete(use())
            loop.close()
        gc.collect()
    """,
    "threads, each with its own loop": """
        threads = [threading.Thread(target=lambda: asyncio.run(use())) for _ in range(3)]
        for t in threads: t.start()
        for t in threads: t.join()
    """,
}


@pytest.mark.parametrize("case", sorted(LOOP_CASES))
def test_event_loops_with_a_redis_budget_leave_no_warning(
    redis_server: RedisServer, gw: FakeGateway, case: str
) -> None:
    code = (
        textwrap.dedent(
            """
        import asyncio, gc, sys, threading
        from gatewayclient import AsyncGatewayClient, RateLimit
        limit = RateLimit(1000, 10**6, storage=sys.argv[3], key="loops")
        client = AsyncGatewayClient(sys.argv[1], sys.argv[2], rate_limit=limit)
        HI = [{"role": "user", "content": "Hi"}]
        async def use():
            await client.chat_completion("openai/gpt-4o", HI)
            async for _ in client.stream_chat_completion("openai/gpt-4o", HI):
                pass
        """
        )
        + textwrap.dedent(LOOP_CASES[case])
        + "\ndel client, limit\ngc.collect()\nprint('ok')\n"
    )
    command = [sys.executable, "-X", "dev", "-W", "error", "-c", code]
    result = subprocess.run(
        [*command, gw.url, gw.token, redis_server.url], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    # -X dev also notes every loop step slower than 0.1 s (an import on a loaded machine): that
    # is timing, not a warning; anything else on stderr fails the test.
    assert SLOW_STEP.sub("", result.stderr) == "", result.stderr
    with redis_server.client() as client:
        assert client.zcard("gatewayclient:{loops}:log") > 0  # Redis was used, not the fallback


def test_a_ticket_carries_the_redis_time_to_the_microsecond(redis_server: RedisServer) -> None:
    limit = shared(redis_server, 1000)
    with redis_server.client() as client:
        before = client.time()
        at = admitted(limit).at
        after = client.time()
    assert before[0] + before[1] / 1e6 <= at <= after[0] + after[1] / 1e6
    assert at != round(at, 4) or admitted(limit).at != round(admitted(limit).at, 4)
