"""Socket accounting for the reliability suite: after a fault and a normal call, a client holds
at most its kept-alive connections, and none at all once its pool is closed."""

from __future__ import annotations

import time

from loopback import open_sockets
from twin import Twin


def settle(limit: int, within: float = 3.0) -> int:
    """The process's open sockets, polled until at most ``limit`` (the server sides of closed
    connections close a moment later) or until ``within`` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        count = open_sockets()
        if count <= limit or time.monotonic() > deadline:
            return count
        time.sleep(0.02)


def close_pool(twin: Twin) -> None:
    """Close the client's connections; the client stays usable (it reconnects)."""
    if twin.loop is None:
        twin.client.close()
    else:
        twin.run(twin.client.aclose())


def assert_released(twin: Twin, baseline: int, pooled: int = 1) -> None:
    """No socket leaked since ``baseline`` (counted before the client connected): with the
    client open, at most ``pooled`` kept-alive connections (two sockets each on loopback);
    with its pool closed, none."""
    held = settle(baseline + 2 * pooled)
    assert held <= baseline + 2 * pooled, (
        f"{held - baseline} sockets above the baseline with the client open; "
        f"at most {pooled} kept-alive connection(s), two sockets each, may remain"
    )
    close_pool(twin)
    left = settle(baseline)
    assert left <= baseline, f"{left - baseline} sockets still open after closing the pool"
