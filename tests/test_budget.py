"""The rate budget's pure parts: the window arithmetic (tables and properties), the token
estimate, RateLimit's arguments, its repr and pickling. No server; times are given."""

from __future__ import annotations

import importlib.util
import math
import pickle
from typing import Any, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gatewayclient.budget as budget
from gatewayclient import RateLimit, SyncGatewayClient
from gatewayclient.budget import LocalWindow, Ticket, estimate_tokens
from gatewayclient.errors import GatewayConfigError, GatewayValidationError


def ticket(window: LocalWindow, cost: int, now: float) -> Ticket:
    got = window.take(cost, now)
    assert isinstance(got, Ticket), f"expected a ticket at {now}, got a wait of {got}"
    return got


def wait(window: LocalWindow, cost: int, now: float) -> float:
    got = window.take(cost, now)
    assert not isinstance(got, Ticket), f"expected a wait at {now}, got a ticket"
    return got


# -- the window, by hand ------------------------------------------------------------------------


def test_requests_per_window_wait_for_the_oldest_to_leave() -> None:
    window = LocalWindow(3, None, 10.0)
    for now in (0.0, 1.0, 2.0):
        ticket(window, 0, now)
    assert wait(window, 0, 3.0) == 7.0
    assert wait(window, 0, 9.5) == 0.5
    ticket(window, 0, 10.0)  # the first left at exactly 0 + per
    assert wait(window, 0, 10.0) == 1.0


def test_tokens_per_window_wait_until_enough_have_left() -> None:
    window = LocalWindow(None, 100, 10.0)
    ticket(window, 60, 0.0)
    ticket(window, 30, 1.0)
    assert wait(window, 20, 2.0) == 8.0  # the 60 must leave
    ticket(window, 10, 2.0)  # exactly full
    assert wait(window, 1, 2.0) == 8.0
    assert wait(window, 70, 2.0) == 9.0  # the 60 and the 30 must leave
    ticket(window, 70, 11.0)


def test_settling_lower_frees_tokens_at_once_and_higher_takes_them() -> None:
    window = LocalWindow(None, 100, 10.0)
    first = ticket(window, 80, 0.0)
    assert wait(window, 30, 1.0) == 9.0
    window.settle(first, 50)
    second = ticket(window, 30, 1.0)
    window.settle(second, 45)  # an answer above its reservation: charged at once
    assert wait(window, 10, 2.0) == 8.0
    assert first.tokens == 50 and second.tokens == 45


def test_a_ticket_settled_after_it_left_the_window_changes_nothing() -> None:
    window = LocalWindow(None, 100, 10.0)
    old = ticket(window, 100, 0.0)
    ticket(window, 100, 10.0)
    window.settle(old, 0)
    assert wait(window, 1, 11.0) == 9.0


def test_a_pause_holds_everyone_and_is_never_shortened() -> None:
    window = LocalWindow(10, 1000, 10.0)
    window.pause(5.0, now=1.0)
    assert wait(window, 0, 2.0) == 4.0
    window.pause(1.0, now=2.0)  # ends earlier than the one in force: no effect
    assert wait(window, 0, 3.0) == 3.0
    ticket(window, 0, 6.0)


def test_the_wait_is_the_longest_of_requests_tokens_and_pause() -> None:
    window = LocalWindow(2, 100, 10.0)
    ticket(window, 90, 0.0)
    ticket(window, 5, 4.0)
    assert wait(window, 20, 5.0) == 5.0  # tokens: the 90 leaves at 10; requests: also at 10
    window.pause(7.0, now=5.0)
    assert wait(window, 20, 5.0) == 7.0


# -- the window, for any sequence ---------------------------------------------------------------

PER = 8.0
Step = Tuple[str, float, int]  # (operation, time passed before it, amount)
steps = st.lists(
    st.tuples(
        st.sampled_from(["take", "take", "take", "settle", "pause"]),
        st.integers(0, 24).map(lambda quarters: quarters / 4),  # exact binary fractions
        st.integers(0, 60),
    ),
    max_size=60,
)


class Oracle:
    """What the window should answer, from the plain list of what it admitted."""

    def __init__(self, requests: Optional[int], tokens: Optional[int]) -> None:
        self.requests, self.tokens = requests, tokens
        self.admitted: List[Ticket] = []
        self.paused_until = 0.0

    def fits(self, cost: int, at: float) -> bool:
        inside = [t for t in self.admitted if t.at > at - PER]
        held = sum(t.tokens for t in inside)
        return (
            at >= self.paused_until
            and (self.requests is None or len(inside) < self.requests)
            and (self.tokens is None or held + cost <= self.tokens)
        )

    def first_fit(self, cost: int, now: float) -> float:
        candidates = [now, self.paused_until] + [t.at + PER for t in self.admitted]
        return min(c for c in candidates if c >= now and self.fits(cost, c))

    def check_every_window(self) -> None:
        for start in {t.at for t in self.admitted}:
            inside = [t for t in self.admitted if start <= t.at < start + PER]
            assert self.requests is None or len(inside) <= self.requests
            assert self.tokens is None or sum(t.tokens for t in inside) <= self.tokens


@settings(max_examples=300, deadline=None)
@given(
    requests=st.one_of(st.none(), st.integers(1, 5)),
    tokens=st.one_of(st.none(), st.integers(60, 150)),
    operations=steps,
)
def test_no_window_is_ever_overfull_and_each_wait_is_exactly_the_first_fit(
    requests: Optional[int], tokens: Optional[int], operations: List[Step]
) -> None:
    if requests is None and tokens is None:
        requests = 3
    window, oracle = LocalWindow(requests, tokens, PER), Oracle(requests, tokens)
    now = 100.0
    for operation, passed, amount in operations:
        now += passed
        if operation == "take":
            got = window.take(amount, now)
            if isinstance(got, Ticket):
                assert oracle.fits(amount, now)
                oracle.admitted.append(got)
            else:
                assert got > 0 and now + got == oracle.first_fit(amount, now)
        elif operation == "settle" and oracle.admitted:
            held = oracle.admitted[amount % len(oracle.admitted)]
            if held.tokens >= 0:  # settles only lower here; a ticket gone stays gone
                window.settle(held, held.tokens * amount // 60)
        elif operation == "pause":
            window.pause(amount / 8, now)
            oracle.paused_until = max(oracle.paused_until, now + amount / 8)
        oracle.check_every_window()


# -- the estimate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "messages, inputs, max_tokens, expected",
    [
        ([{"role": "user", "content": "abcd"}], None, None, 1),
        ([{"role": "user", "content": "abcde"}], None, None, 2),  # rounded up
        ([{"role": "user", "content": ""}], None, None, 0),
        (
            [{"role": "user", "content": "abc"}, {"role": "assistant", "content": "de"}],
            None,
            None,
            2,
        ),
        ([{"role": "user", "content": "abcd"}], None, 10, 11),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "abcdef"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                        {"type": "text", "text": "gh"},
                    ],
                }
            ],
            None,
            None,
            2,
        ),
        ([{"role": "assistant", "content": None, "tool_calls": []}], None, 5, 5),
        (None, "abcdefghi", None, 3),
        (None, ["abc", "defgh"], None, 2),  # summed, then divided: 8 / 4
        (None, ["a", "b", "c"], None, 1),  # not 3: rounded once, after the sum
        ([{"role": "user", "content": "x"}], None, True, 1),  # a bool is no max_tokens
    ],
)
def test_estimate_tokens(messages: Any, inputs: Any, max_tokens: Any, expected: int) -> None:
    assert estimate_tokens(messages, inputs, max_tokens) == expected


@given(
    texts=st.lists(st.text(max_size=40), max_size=6),
    max_tokens=st.one_of(st.none(), st.integers(1, 10_000)),
)
def test_the_estimate_is_characters_over_four_rounded_up_plus_max_tokens(
    texts: List[str], max_tokens: Optional[int]
) -> None:
    messages = [{"role": "user", "content": text} for text in texts]
    expected = math.ceil(sum(map(len, texts)) / 4) + (max_tokens or 0)
    assert estimate_tokens(messages, None, max_tokens) == expected
    assert estimate_tokens(None, texts, max_tokens) == expected


def test_check_cost_refuses_an_estimate_above_the_budget() -> None:
    limit = RateLimit(tokens=100)
    limit.check_cost(100)
    with pytest.raises(GatewayValidationError, match="estimated at 101 tokens"):
        limit.check_cost(101)
    RateLimit(requests=1).check_cost(10**9)  # no token budget: any cost


# -- RateLimit's arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"requests": 0},
        {"requests": -1},
        {"requests": True},
        {"requests": 1.5},
        {"requests": "3"},
        {"tokens": 0},
        {"tokens": 2.0},
        {"requests": 1, "per": 0},
        {"requests": 1, "per": -1.0},
        {"requests": 1, "per": math.inf},
        {"requests": 1, "per": math.nan},
        {"requests": 1, "per": True},
        {"requests": 1, "per": "60"},
        {"requests": 1, "storage": "http://127.0.0.1:6379"},
        {"requests": 1, "storage": "127.0.0.1:6379"},
        {"requests": 1, "storage": 6379},
        {"requests": 1, "key": ""},
        {"requests": 1, "key": 5},
        {"requests": 1, "key": "k" * 201},
        {"requests": 1, "max_wait": -1},
        {"requests": 1, "max_wait": math.nan},
        {"requests": 1, "max_wait": "1"},
    ],
)
def test_bad_arguments_are_a_config_error(arguments: Any) -> None:
    with pytest.raises(GatewayConfigError):
        RateLimit(**arguments)


def test_good_arguments_are_kept() -> None:
    limit = RateLimit(5, 1000, per=2, storage="unix:///run/redis.sock", key="team-a", max_wait=0)
    assert (limit.requests, limit.tokens, limit.per, limit.key) == (5, 1000, 2.0, "team-a")
    assert limit.max_wait == 0.0 and limit.storage == "unix:///run/redis.sock"
    assert RateLimit(tokens=10).requests is None


def test_a_storage_password_never_shows() -> None:
    url = "redis://user:s3cret@127.0.0.1:6379/0"
    limit = RateLimit(10, storage=url)
    assert "s3cret" not in repr(limit) and "user:***@127.0.0.1:6379" in repr(limit)
    assert "s3cret" not in repr(RateLimit(10, storage="rediss://:s3cret@h/1"))
    with pytest.raises(GatewayConfigError) as caught:
        RateLimit(10, storage="http://user:s3cret@127.0.0.1")
    assert "s3cret" not in str(caught.value)


def test_repr_names_the_settings() -> None:
    assert repr(RateLimit(5, per=1)) == "RateLimit(requests=5, tokens=None, per=1.0)"
    assert repr(RateLimit(tokens=9, storage="redis://h", key="k", max_wait=2)) == (
        "RateLimit(requests=None, tokens=9, per=60.0, storage='redis://h', key='k', max_wait=2.0)"
    )


@pytest.mark.parametrize("missing", [("redis",), ("limits",), ("redis", "limits")])
def test_storage_without_its_packages_says_how_to_install_them(
    monkeypatch: pytest.MonkeyPatch, missing: Tuple[str, ...]
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name in missing else real(name, *args)

    monkeypatch.setattr(budget.importlib.util, "find_spec", find_spec)
    with pytest.raises(GatewayConfigError, match=r"pip install 'gatewayclient\[redis\]'") as caught:
        RateLimit(10, storage="redis://127.0.0.1:6379")
    assert all(name in str(caught.value) for name in missing)
    RateLimit(10)  # no storage: nothing needed


def test_constructing_connects_to_nothing() -> None:
    # Nothing listens there; neither the budget nor a client given it finds out.
    limit = RateLimit(10, storage="redis://127.0.0.1:9/0")
    with SyncGatewayClient("http://127.0.0.1:9", "t", rate_limit=limit):
        pass
    assert limit._shared is None


def test_pickling_keeps_the_settings_and_gives_a_window_of_its_own() -> None:
    limit = RateLimit(3, 300, per=5, storage="redis://:pw@127.0.0.1:6379/2", key="k", max_wait=1)
    ticket(limit.local, 10, 0.0)
    copy = pickle.loads(pickle.dumps(limit))
    assert repr(copy) == repr(limit) and copy.storage == limit.storage
    assert copy.local is not limit.local and list(copy.local._log) == []
