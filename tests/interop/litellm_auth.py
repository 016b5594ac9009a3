"""The LiteLLM proxy's ``general_settings.custom_auth`` hook for the interop suite.

Without a database, LiteLLM answers a key other than the master key with 400 "No connected
db."; this hook accepts a fixed set of keys and raises for any other one, which LiteLLM's auth
handler turns into 401. It also gives some keys per-key limits (LiteLLM's v3 limiter reads
them from the returned ``UserAPIKeyAuth``):

- ``sk-interop-master``: the master key, no limit.
- ``sk-interop-rpm-<anything>``: ``rpm_limit=2`` (a window of about 60 s, 429 with
  ``retry-after: 60``). Each test uses a suffix of its own so that tests do not share a window.
- ``sk-interop-parallel-<anything>``: ``max_parallel_requests=1``.

Loaded by LiteLLM from the config's directory; it runs inside the proxy, not in pytest.
"""

from __future__ import annotations

from typing import Optional

from fastapi import Request
from litellm.proxy._types import UserAPIKeyAuth

MASTER_KEY = "sk-interop-master"
RPM_PREFIX = "sk-interop-rpm-"
PARALLEL_PREFIX = "sk-interop-parallel-"


async def user_api_key_auth(request: Request, api_key: Optional[str]) -> UserAPIKeyAuth:
    if not api_key:  # LiteLLM passes what it found, None or "" included
        raise Exception("No api key passed in.")
    if api_key == MASTER_KEY:
        return UserAPIKeyAuth(api_key=api_key)
    if api_key.startswith(RPM_PREFIX) and len(api_key) > len(RPM_PREFIX):
        return UserAPIKeyAuth(api_key=api_key, rpm_limit=2)
    if api_key.startswith(PARALLEL_PREFIX) and len(api_key) > len(PARALLEL_PREFIX):
        return UserAPIKeyAuth(api_key=api_key, max_parallel_requests=1)
    raise Exception("Invalid proxy server token passed.")
