"""The interop suite's proxies: LiteLLM on 127.0.0.1, started for the session, stopped by PID.

These tests run only when asked for: with ``-m interop`` (``scripts/interop.sh`` does that), or
with ``GATEWAYCLIENT_INTEROP_URL`` set. Otherwise they are deselected, so the default ``pytest``
run never starts anything.

Two proxies, both with this directory's custom auth hook (``litellm_auth.py``):

- ``main``: ``litellm_config.yaml``, LiteLLM's default (v3) rate limiter. Most tests use it.
- ``legacy``: ``litellm_legacy_config.yaml`` with ``LEGACY_MULTI_INSTANCE_RATE_LIMITING=true``,
  whose limiter answers 429 with a fractional ``retry-after``.

Once collection has selected interop tests, each proxy is launched at once (both start in
parallel) from the ``litellm`` command of this interpreter's environment (or ``LITELLM_BIN``),
on a free port, fully offline, and stopped by its PID when the session ends, whatever happened.
The PIDs are also written, one a line, to the file named by ``GATEWAYCLIENT_INTEROP_PIDFILE``,
so that the calling script can stop them if pytest itself is killed.
``GATEWAYCLIENT_INTEROP_URL`` (and ``GATEWAYCLIENT_INTEROP_LEGACY_URL``) name proxies already
running with these configs instead; those are neither started nor stopped here.

A proxy that does not start or does not answer fails the tests that need it. Only a ``litellm``
command that is not installed at all skips them, and only outside CI: with ``CI=true`` (or
``GATEWAYCLIENT_INTEROP_STRICT=1``, which the script sets) that fails too.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import interop_proxy as lp
import pytest


class Missing(str):
    """Why there is no proxy, when that is a reason to skip (outside CI)."""


URL_ENV = {"main": "GATEWAYCLIENT_INTEROP_URL", "legacy": "GATEWAYCLIENT_INTEROP_LEGACY_URL"}
PIDFILE_ENV = "GATEWAYCLIENT_INTEROP_PIDFILE"
CONFIGS = {"main": (lp.CONFIG, {}), "legacy": (lp.LEGACY_CONFIG, lp.LEGACY_ENV)}

# name -> the Proxy launched or named, or why there is none: a Missing (the command is not
# installed: skipped outside CI) or a str (it could not be launched: always a failure).
_proxies: Dict[str, Union[lp.Proxy, Missing, str]] = {}
_workdir: Optional[Path] = None


def must_run() -> bool:
    """In CI (``CI=true``) or under ``scripts/interop.sh``, a proxy that cannot run fails."""
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes")
        for name in ("CI", "GATEWAYCLIENT_INTEROP_STRICT")
    )


def interop_requested(config: pytest.Config) -> bool:
    markexpr = str(config.getoption("-m") or "")
    asked = "interop" in markexpr and "not interop" not in markexpr
    return asked or bool(os.environ.get(URL_ENV["main"]))


def _is_interop(item: pytest.Item) -> bool:
    return item.get_closest_marker("interop") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """Deselect the interop tests unless they were asked for."""
    if interop_requested(config):
        return
    deselected = [item for item in items if _is_interop(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not _is_interop(item)]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Launch the proxies (without waiting) as soon as interop tests are selected."""
    if session.config.option.collectonly or not any(_is_interop(i) for i in session.items):
        return
    global _workdir
    command = lp.litellm_command()
    _workdir = workdir = Path(tempfile.mkdtemp(prefix="gatewayclient-interop-"))
    for name, (config, extra_env) in CONFIGS.items():
        given = os.environ.get(URL_ENV[name])
        if given:
            _proxies[name] = lp.Proxy(given)
        elif command is None:
            _proxies[name] = Missing("the `litellm` command is not installed in this environment")
        else:
            folder = workdir / name
            folder.mkdir()
            try:
                _proxies[name] = lp.start(command, folder, config, extra_env)
            except OSError as error:
                _proxies[name] = f"`{command}` could not be launched: {error}"
    pidfile = os.environ.get(PIDFILE_ENV)
    pids = [str(p.pid) for p in _proxies.values() if isinstance(p, lp.Proxy) and p.pid]
    if pidfile and pids:
        Path(pidfile).write_text("".join(f"{pid}\n" for pid in pids))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop every proxy this session launched; keep their logs only when something failed."""
    started = [proxy for proxy in _proxies.values() if isinstance(proxy, lp.Proxy)]
    for proxy in started:
        proxy.terminate()  # all at once: each takes about 2 s to shut down
    for proxy in started:
        proxy.stop()
    if _workdir is not None:
        if exitstatus == 0:
            shutil.rmtree(_workdir, ignore_errors=True)
        else:
            sys.stderr.write(f"\nLiteLLM proxy logs kept in {_workdir}\n")


def _ready(name: str) -> lp.Proxy:
    proxy = _proxies.get(name, "the interop proxies were not launched")
    if isinstance(proxy, Missing) and not must_run():
        pytest.skip(f"{proxy}; `bash scripts/interop.sh` sets it up and runs this suite")
    if isinstance(proxy, str):
        pytest.fail(f"the interop suite must run here, but {proxy}", pytrace=False)
    started = time.monotonic()
    problem = proxy.wait_until_live()
    if problem is not None:
        pytest.fail(f"{name} proxy: {problem} ({proxy.url})\n{proxy.log_tail()}", pytrace=False)
    warm_up = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "warm up"}]}
    try:  # the first request pays for LiteLLM's lazy imports
        lp.post_json(proxy.url + "/v1/chat/completions", warm_up)
    except (OSError, ValueError) as error:
        pytest.fail(f"{name} proxy is live but a chat call failed: {error}\n{proxy.log_tail()}")
    took = time.monotonic() - started
    sys.stderr.write(f"\n{name} LiteLLM proxy at {proxy.url} (pid {proxy.pid}), {took:.1f} s\n")
    return proxy


@pytest.fixture(scope="session")
def litellm_proxy() -> lp.Proxy:
    """The main proxy (v3 limiter), live and warmed up."""
    return _ready("main")


@pytest.fixture(scope="session")
def legacy_proxy() -> lp.Proxy:
    """The proxy with the legacy limiter, live and warmed up."""
    return _ready("legacy")


def _client_factory(kind: str, proxy: lp.Proxy) -> Iterator[Callable[..., Any]]:
    from twin import Twin

    made: List[Any] = []

    def build(key: str = lp.MASTER_KEY, **kwargs: Any) -> Any:
        twin = Twin(kind, proxy.url, key, **kwargs)
        made.append(twin)
        return twin

    yield build
    for twin in made:
        twin.close()


@pytest.fixture
def make_client(kind: str, litellm_proxy: lp.Proxy) -> Iterator[Callable[..., Any]]:
    """Build ``Twin`` clients of this test's kind (sync or async) against the main proxy."""
    yield from _client_factory(kind, litellm_proxy)


@pytest.fixture
def make_legacy_client(kind: str, legacy_proxy: lp.Proxy) -> Iterator[Callable[..., Any]]:
    """The same against the legacy-limiter proxy."""
    yield from _client_factory(kind, legacy_proxy)
