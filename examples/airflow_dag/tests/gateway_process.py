"""A FakeGateway in a process of its own, as ``gatewayclient serve`` runs one, that also hands
back what it saw: ``python gateway_process.py CONFIG`` (JSON: token, rpm, tpm, window, latency,
log) prints its URL once it listens, serves until SIGTERM, then writes to ``log`` every arrival
(its ``time.monotonic()``, status and tokens) and the first message of every chat request."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
from typing import Any

from gatewayclient.testing import FakeGateway


def main(config: Any) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda number, frame: stop.set())
    gateway = FakeGateway(
        token=config["token"],
        rpm_limit=config["rpm"],
        tpm_limit=config["tpm"],
        window=config["window"],
        latency=config["latency"],
    )
    with gateway:
        print(gateway.url, flush=True)
        while not stop.wait(0.1):
            pass
        arrivals = [dataclasses.asdict(arrival) for arrival in gateway.arrivals]
        asked = [
            {"request_id": r.request_id, "content": r.json["messages"][0]["content"]}
            for r in gateway.requests
            if r.path == "/v1/chat/completions" and isinstance(r.json, dict)
        ]
    with open(config["log"], "w") as log:
        json.dump({"arrivals": arrivals, "asked": asked}, log)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
