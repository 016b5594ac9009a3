"""Every code snippet of the user's reference document, run against a FakeGateway.

The reference is the documentation of ``flow_sdk.GatewayClient``, kept verbatim in
``tests/reference_snippets/gateway_client_reference.txt``. Our contract (``API.md``): every snippet
runs with only its import line changed, ``from flow_sdk ...`` becoming ``from gatewayclient ...``.

Each ``SNIPPET_*`` constant below is one snippet of the reference, its code text unchanged but for
that import line and the indentation the flattened document lost.
``test_snippets_are_the_reference_code`` proves it: every snippet's lines, stripped, appear one
after the other in the reference, import lines mapped back to ``flow_sdk``.

A snippet runs as the body of an ``async def`` (indented, compiled, awaited under ``asyncio.run``),
with ``gateway`` bound to an ``AsyncGatewayClient`` of a FakeGateway (a real HTTP server on
127.0.0.1) when the snippet does not make its own; snippets that call ``GatewayClient()`` read
``PLATFORM_API_URL`` and ``AUTH_TOKEN``, which point at the same FakeGateway. What a snippet prints
is compared exactly with what the FakeGateway's deterministic formulas give. Every run must also be
clean: no ResourceWarning, no "Unclosed client session", no "Event loop is closed".
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Coroutine, Dict, Iterator, List, Optional, Tuple

import aiohttp
import pytest

from gatewayclient import AsyncGatewayClient, ChatCompletion, ChatCompletionChunk
from gatewayclient.testing import (
    MODELS,
    PROVIDERS,
    FakeGateway,
    expected_reply,
    expected_usage,
)

REFERENCE = Path(__file__).parent / "reference_snippets" / "gateway_client_reference.txt"
MODEL = "openai/gpt-4o"

# -- the snippets, in the reference's order -------------------------------------------------------

# "Initialization", first half: from environment variables.
SNIPPET_INIT_FROM_ENV = """\
from gatewayclient import GatewayClient
# From environment variables (PLATFORM_API_URL, AUTH_TOKEN)
gateway = GatewayClient()
"""

# "Initialization", second half: explicit configuration.
SNIPPET_INIT_EXPLICIT = """\
# Explicit configuration
gateway = GatewayClient(
    base_url="https://api.flow.marut.cloud",
    auth_token="your-jwt-token",
    timeout=60.0,
)
"""

# "Initialization": the whole snippet.
SNIPPET_INITIALIZATION = SNIPPET_INIT_FROM_ENV + SNIPPET_INIT_EXPLICIT

# "Context Manager"
SNIPPET_CONTEXT_MANAGER = """\
async with GatewayClient() as gateway:
    response = await gateway.chat_completion(
        model="openai/gpt-4o",
        messages=[{"role": "user", "content": "Hello!"}],
    )
# HTTP client is automatically closed
"""

# "Chat Completions" / "Non-Streaming"
SNIPPET_NON_STREAMING = """\
response = await gateway.chat_completion(
    model="openai/gpt-4o",
    messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Explain quantum computing in one paragraph."},
    ],
    temperature=0.7,
    max_tokens=256,
)
# Response follows the OpenAI format
print(response["choices"][0]["message"]["content"])
print(f"Tokens used: {response['usage']['total_tokens']}")
"""

# "Non-Streaming" / "Response Format" (data, not code: parsed, not run)
EXAMPLE_CHAT_COMPLETION = """\
{
  "id": "chatcmpl-abc123",
  "object": "chat.completion",
  "model": "openai/gpt-4o",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "Quantum computing is..."
      },
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 42,
    "completion_tokens": 128,
    "total_tokens": 170
  }
}
"""

# "Streaming"
SNIPPET_STREAMING = """\
async for chunk in gateway.stream_chat_completion(
    model="openai/gpt-4o",
    messages=[{"role": "user", "content": "Write a short story about a robot."}],
    max_tokens=500,
):
    delta = chunk["choices"][0]["delta"]
    content = delta.get("content", "")
    print(content, end="", flush=True)
print() # newline after streaming completes
"""

# "Streaming": "Each chunk follows the OpenAI streaming format" (data, not code: parsed, not run)
EXAMPLE_CHUNK = """\
{
  "id": "chatcmpl-abc123",
  "object": "chat.completion.chunk",
  "model": "openai/gpt-4o",
  "choices": [
    {
      "index": 0,
      "delta": {
        "content": "Once"
      },
      "finish_reason": null
    }
  ]
}
"""

# "Collecting a Full Streamed Response"
SNIPPET_COLLECT_STREAM = """\
full_content = ""
async for chunk in gateway.stream_chat_completion(
    model="openai/gpt-4o",
    messages=[{"role": "user", "content": "List 5 programming languages."}],
):
    delta = chunk["choices"][0]["delta"]
    content = delta.get("content", "")
    full_content += content
print(full_content)
"""

# "Model Discovery" / "List Provider Models". One space in f" {model['id']}" as the reference
# has it (the flattened text holds no run of two spaces anywhere, so the original may have had two).
SNIPPET_LIST_PROVIDER_MODELS = """\
# List all models from a specific provider
openai_models = await gateway.list_provider_models("openai")
print(f"Provider: {openai_models['provider']}")
print(f"Total models: {openai_models['total']}")
for model in openai_models["models"]:
    print(f" {model['id']}")
"""

# "Model Discovery" / "List Known Providers"
SNIPPET_LIST_KNOWN_PROVIDERS = """\
providers = await gateway.list_known_providers()
print(providers)
# ["openai", "anthropic", "google", "azure", "mistral", ...]
"""

# "Error Handling"
SNIPPET_ERROR_HANDLING = """\
from gatewayclient.gateway_client import (
    GatewayClient,
    GatewayClientError,
    GatewayAuthError,
    GatewayRateLimitError,
    GatewayModelNotFoundError,
    GatewayProviderError,
)
try:
    response = await gateway.chat_completion(
        model="openai/gpt-4o",
        messages=[{"role": "user", "content": "Hello"}],
    )
except GatewayAuthError:
    print("Authentication failed -- check your token")
except GatewayModelNotFoundError:
    print("Model not available -- check model ID")
except GatewayRateLimitError:
    print("Rate limited -- implement backoff and retry")
except GatewayProviderError:
    print("Upstream provider error -- try again later")
except GatewayClientError as e:
    print(f"Gateway error: {e}")
"""

# "Usage Tracking"
SNIPPET_USAGE_TRACKING = """\
response = await gateway.chat_completion(
    model="openai/gpt-4o",
    messages=[{"role": "user", "content": "Hello!"}],
)
usage = response["usage"]
print(f"Prompt tokens: {usage['prompt_tokens']}")
print(f"Completion tokens: {usage['completion_tokens']}")
print(f"Total tokens: {usage['total_tokens']}")
"""

# Every snippet and example, in the order the reference shows them.
REFERENCE_ORDER = [
    SNIPPET_INITIALIZATION,
    SNIPPET_CONTEXT_MANAGER,
    SNIPPET_NON_STREAMING,
    EXAMPLE_CHAT_COMPLETION,
    SNIPPET_STREAMING,
    EXAMPLE_CHUNK,
    SNIPPET_COLLECT_STREAM,
    SNIPPET_LIST_PROVIDER_MODELS,
    SNIPPET_LIST_KNOWN_PROVIDERS,
    SNIPPET_ERROR_HANDLING,
    SNIPPET_USAGE_TRACKING,
]

# -- running a snippet ----------------------------------------------------------------------------

LEAK_MARKERS = ("Unclosed", "Event loop is closed", "ResourceWarning", "was never awaited")


def as_async_function(snippet: str) -> str:
    """The snippet as the body of ``async def _snippet()``, which returns its local names."""
    return "async def _snippet():\n" + textwrap.indent(snippet, "    ") + "    return locals()\n"


async def run_snippet(snippet: str, name: str, **names: Any) -> Dict[str, Any]:
    """Run ``snippet`` in the running loop with ``names`` as its globals; its locals come back."""
    namespace: Dict[str, Any] = dict(names)
    exec(compile(as_async_function(snippet), f"<reference: {name}>", "exec"), namespace)
    result: Dict[str, Any] = await namespace["_snippet"]()
    return result


def run_clean(
    main: Callable[[], Coroutine[Any, Any, Any]],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> Tuple[Any, str]:
    """``asyncio.run(main())``, then a garbage collection; returns its result and its stdout.

    Fails on any ResourceWarning, on stderr or log text naming an unclosed session or connector,
    a closed event loop or a coroutine never awaited.
    """
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result: Any = asyncio.run(main())
        gc.collect()
    out, err = capsys.readouterr()
    resource = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert resource == []
    for marker in LEAK_MARKERS:
        assert marker not in err
        assert marker not in caplog.text
    return result, out


def client_for(gw: FakeGateway, **options: Any) -> AsyncGatewayClient:
    """An async client of ``gw``, made outside any event loop as a module-level one would be."""
    options.setdefault("auth_token", gw.token)
    return AsyncGatewayClient(base_url=gw.url, **options)


def run_with_gateway(
    snippet: str,
    name: str,
    gateway: AsyncGatewayClient,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> Tuple[Dict[str, Any], str]:
    """Run a snippet that uses ``gateway`` without making it; the client is closed afterwards."""

    async def main() -> Dict[str, Any]:
        async with gateway:
            return await run_snippet(snippet, name, gateway=gateway)

    namespace, out = run_clean(main, capsys, caplog)
    assert isinstance(namespace, dict)
    return namespace, out


def chat_requests(gw: FakeGateway) -> List[Any]:
    return [r for r in gw.requests if r.path == "/v1/chat/completions"]


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches beyond 127.0.0.1: resolving or connecting to any other host fails."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else address
        assert host in ("127.0.0.1", "::1"), f"a test tried to reach {address!r}"

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        assert host in (None, "127.0.0.1", "::1", "localhost"), f"a test tried to resolve {host!r}"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture
def gw(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGateway]:
    """A FakeGateway on loopback, with PLATFORM_API_URL and AUTH_TOKEN pointing at it."""
    with FakeGateway() as server:
        monkeypatch.setenv("PLATFORM_API_URL", server.url)
        monkeypatch.setenv("AUTH_TOKEN", server.token)
        yield server


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> List[aiohttp.ClientSession]:
    """Every aiohttp session created during the test, in order."""
    created: List[aiohttp.ClientSession] = []
    real_init = aiohttp.ClientSession.__init__

    def init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        created.append(self)

    monkeypatch.setattr(aiohttp.ClientSession, "__init__", init)
    return created


# -- the snippets are the reference's code --------------------------------------------------------


def _reference_lines() -> List[str]:
    return [line.strip() for line in REFERENCE.read_text(encoding="utf-8").splitlines()]


def _as_in_reference(snippet: str) -> List[str]:
    """The snippet's lines as the flattened reference has them: stripped, ``flow_sdk`` imports."""
    lines = []
    for line in snippet.splitlines():
        if line.startswith("from gatewayclient"):
            line = line.replace("from gatewayclient", "from flow_sdk", 1)
        lines.append(line.strip())
    return lines


def test_snippets_are_the_reference_code() -> None:
    reference = _reference_lines()
    position = 0
    for snippet in REFERENCE_ORDER:
        wanted = _as_in_reference(snippet)
        found = next(
            (
                i
                for i in range(position, len(reference) - len(wanted) + 1)
                if reference[i : i + len(wanted)] == wanted
            ),
            None,
        )
        assert found is not None, f"not in the reference (in order):\n{snippet}"
        position = found + len(wanted)


def test_only_import_lines_differ_from_the_reference() -> None:
    for snippet in REFERENCE_ORDER:
        changed = [
            line
            for line, original in zip(snippet.splitlines(), _as_in_reference(snippet))
            if line.strip() != original
        ]
        assert all(line.startswith("from gatewayclient") for line in changed)


def test_every_code_line_of_the_reference_is_covered() -> None:
    code_starts = (
        *("from flow_sdk", "gateway = ", "async ", "await ", "response = ", "print("),
        *("for ", "try:", "except ", "full_content", "providers = ", "usage = "),
    )
    covered = {line for snippet in REFERENCE_ORDER for line in _as_in_reference(snippet)}
    code = [line for line in _reference_lines() if line.startswith(code_starts)]
    assert len(code) > 30
    assert [line for line in code if line not in covered] == []


# -- Initialization -------------------------------------------------------------------------------


@pytest.mark.parametrize("in_loop", [True, False], ids=["in-async-def", "at-module-level"])
def test_initialization(
    gw: FakeGateway,
    in_loop: bool,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if in_loop:

        async def main() -> Dict[str, Any]:
            return await run_snippet(SNIPPET_INITIALIZATION, "Initialization")

        namespace, out = run_clean(main, capsys, caplog)
    else:  # the reference's snippet is plain module code: no event loop at all

        def plain() -> Dict[str, Any]:
            namespace: Dict[str, Any] = {}
            exec(compile(SNIPPET_INITIALIZATION, "<reference: Initialization>", "exec"), namespace)
            return namespace

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            namespace = plain()
            gc.collect()
        assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
        out = capsys.readouterr().out

    gateway = namespace["gateway"]  # the explicit configuration's client
    assert isinstance(gateway, AsyncGatewayClient)
    assert gateway.base_url == "https://api.flow.marut.cloud"
    assert "your-jwt-token" not in repr(gateway)
    assert out == ""
    assert gw.requests == []  # constructing connects nowhere


def test_initialization_from_environment(
    gw: FakeGateway, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    messages = [{"role": "user", "content": "Who configured you?"}]

    async def main() -> Tuple[str, str, int]:
        namespace = await run_snippet(SNIPPET_INIT_FROM_ENV, "Initialization (environment)")
        gateway = namespace["gateway"]
        received = len(gw.requests)  # before any call: construction sent nothing
        async with gateway:  # the client works with what the environment gave it
            response = await gateway.chat_completion(model=MODEL, messages=messages)
        return gateway.base_url, response["choices"][0]["message"]["content"], received

    (base_url, content, received), out = run_clean(main, capsys, caplog)
    assert received == 0
    assert base_url == gw.url
    assert content == expected_reply(MODEL, messages)
    assert out == ""
    (request,) = gw.requests
    assert request.headers["authorization"] == "Bearer ***"  # the token, as the server logs it


def test_explicit_configuration_needs_no_environment_and_does_not_connect(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("PLATFORM_API_URL", raising=False)
    monkeypatch.delenv("AUTH_TOKEN", raising=False)

    async def main() -> Dict[str, Any]:
        # The snippet's name comes from the Initialization snippet's import line.
        from gatewayclient import GatewayClient

        return await run_snippet(
            SNIPPET_INIT_EXPLICIT, "Initialization (explicit)", GatewayClient=GatewayClient
        )

    namespace, out = run_clean(main, capsys, caplog)
    gateway = namespace["gateway"]
    assert isinstance(gateway, AsyncGatewayClient)
    assert gateway.base_url == "https://api.flow.marut.cloud"
    assert "your-jwt-token" not in repr(gateway) + str(gateway)
    assert out == ""  # and loopback_only proves nothing tried to connect


# -- Context Manager ------------------------------------------------------------------------------


def test_context_manager(
    gw: FakeGateway,
    sessions: List[aiohttp.ClientSession],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> Tuple[Dict[str, Any], List[bool]]:
        from gatewayclient import GatewayClient  # the Initialization snippet's import line

        namespace = await run_snippet(
            SNIPPET_CONTEXT_MANAGER, "Context Manager", GatewayClient=GatewayClient
        )
        # "HTTP client is automatically closed": already here, inside the loop, not only when
        # asyncio.run() tears it down.
        return namespace, [session.closed for session in sessions]

    (namespace, closed), out = run_clean(main, capsys, caplog)
    response = namespace["response"]
    hello = [{"role": "user", "content": "Hello!"}]
    assert isinstance(response, ChatCompletion)
    assert response["choices"][0]["message"]["content"] == expected_reply(MODEL, hello)
    assert (
        response["choices"][0]["message"]["content"] == "Hello from openai/gpt-4o! You said: Hello!"
    )
    assert response["usage"]["total_tokens"] == expected_usage(MODEL, hello)["total_tokens"]
    assert namespace["gateway"].base_url == gw.url
    assert closed != []
    assert all(closed)
    assert out == ""


# -- Chat Completions -----------------------------------------------------------------------------


def _shape(value: Any) -> Any:
    """The keys of a JSON value, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def _has_shape(value: Any, shape: Any) -> bool:
    if isinstance(shape, dict):
        return isinstance(value, dict) and all(
            key in value and _has_shape(value[key], sub) for key, sub in shape.items()
        )
    if isinstance(shape, list):
        return isinstance(value, list) and all(_has_shape(item, shape[0]) for item in value)
    return True


def test_non_streaming(
    gw: FakeGateway, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    namespace, out = run_with_gateway(
        SNIPPET_NON_STREAMING, "Non-Streaming", client_for(gw), capsys, caplog
    )
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Explain quantum computing in one paragraph."},
    ]
    reply = expected_reply(MODEL, messages, max_tokens=256)
    usage = expected_usage(MODEL, messages, max_tokens=256)
    assert out == f"{reply}\nTokens used: {usage['total_tokens']}\n"
    assert out == (
        "Hello from openai/gpt-4o! You said: Explain quantum computing in one paragraph.\n"
        "Tokens used: 28\n"
    )
    # "Response follows the OpenAI format": the reference's example, key for key.
    response = namespace["response"]
    assert _has_shape(response.to_dict(), _shape(json.loads(EXAMPLE_CHAT_COMPLETION)))
    (request,) = chat_requests(gw)
    assert request.json == {
        "model": MODEL,
        "messages": messages,
        "temperature": 0.7,
        "max_tokens": 256,
    }


def test_non_streaming_reads_the_reference_response_format(
    gw: FakeGateway, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway answers with the reference's own example (no ``created``, say)."""
    example = json.loads(EXAMPLE_CHAT_COMPLETION)
    gw.fail(200, body=example)
    namespace, out = run_with_gateway(
        SNIPPET_NON_STREAMING, "Non-Streaming", client_for(gw), capsys, caplog
    )
    assert out == "Quantum computing is...\nTokens used: 170\n"
    assert namespace["response"].to_dict() == example


def test_streaming_reads_the_reference_chunk_format(
    gw: FakeGateway, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway streams the reference's own example chunk, then ``[DONE]``."""
    example = json.loads(EXAMPLE_CHUNK)
    events = f"data: {json.dumps(example)}\n\ndata: [DONE]\n\n"
    gw.fail(200, body=events, headers={"Content-Type": "text/event-stream"})
    namespace, out = run_with_gateway(
        SNIPPET_STREAMING, "Streaming", client_for(gw), capsys, caplog
    )
    assert out == "Once\n"
    assert namespace["chunk"].to_dict() == example


def test_response_format_example_reads_as_documented() -> None:
    example = json.loads(EXAMPLE_CHAT_COMPLETION)
    response = ChatCompletion.from_dict(example)
    assert response["choices"][0]["message"]["content"] == "Quantum computing is..."
    assert response.choices is not None and response.choices[0].message is not None
    assert response.choices[0].message.content == "Quantum computing is..."
    assert response["usage"]["total_tokens"] == 170
    assert response.to_dict() == example


def test_streaming(
    gw: FakeGateway, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    namespace, out = run_with_gateway(
        SNIPPET_STREAMING, "Streaming", client_for(gw), capsys, caplog
    )
    messages = [{"role": "user", "content": "Write a short story about a robot."}]
    assert out == expected_reply(MODEL, messages, max_tokens=500) + "\n"
    assert out == "Hello from openai/gpt-4o! You said: Write a short story about a robot.\n"
    chunk = namespace["chunk"]  # the last chunk the loop met: the finish chunk, empty delta
    assert isinstance(chunk, ChatCompletionChunk)
    shape = _shape(json.loads(EXAMPLE_CHUNK))
    shape["choices"][0]["delta"] = {}
    assert _has_shape(chunk.to_dict(), shape)
    (request,) = chat_requests(gw)
    assert request.json["stream"] is True
    assert request.json["max_tokens"] == 500
    assert request.json["messages"] == messages


def test_streaming_chunk_example_reads_as_documented() -> None:
    example = json.loads(EXAMPLE_CHUNK)
    chunk = ChatCompletionChunk.from_dict(example)
    delta = chunk["choices"][0]["delta"]
    assert delta.get("content", "") == "Once"
    assert chunk["choices"][0]["finish_reason"] is None
    assert chunk.to_dict() == example


def test_collecting_a_full_streamed_response(
    gw: FakeGateway, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    namespace, out = run_with_gateway(
        SNIPPET_COLLECT_STREAM,
        "Collecting a Full Streamed Response",
        client_for(gw),
        capsys,
        caplog,
    )
    messages = [{"role": "user", "content": "List 5 programming languages."}]
    reply = expected_reply(MODEL, messages)
    assert namespace["full_content"] == reply
    assert out == reply + "\n"
    assert out == "Hello from openai/gpt-4o! You said: List 5 programming languages.\n"


# -- Model Discovery ------------------------------------------------------------------------------


def test_list_provider_models(
    gw: FakeGateway, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    _, out = run_with_gateway(
        SNIPPET_LIST_PROVIDER_MODELS, "List Provider Models", client_for(gw), capsys, caplog
    )
    ids = [m.id for m in MODELS if m.provider == "openai"]
    assert out == "".join(
        [f"Provider: openai\nTotal models: {len(ids)}\n"] + [f" {i}\n" for i in ids]
    )
    assert out == (
        "Provider: openai\n"
        "Total models: 4\n"
        " openai/gpt-4o\n"
        " openai/gpt-4o-mini\n"
        " openai/text-embedding-3-small\n"
        " openai/text-embedding-3-large\n"
    )


def test_list_known_providers(
    gw: FakeGateway, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    namespace, out = run_with_gateway(
        SNIPPET_LIST_KNOWN_PROVIDERS, "List Known Providers", client_for(gw), capsys, caplog
    )
    assert namespace["providers"] == list(PROVIDERS)
    assert type(namespace["providers"]) is list
    assert out == str(list(PROVIDERS)) + "\n"
    assert out == "['openai', 'anthropic', 'google', 'azure', 'mistral']\n"


# -- Error Handling -------------------------------------------------------------------------------

AUTH = "Authentication failed -- check your token\n"
NOT_FOUND = "Model not available -- check model ID\n"
RATE_LIMITED = "Rate limited -- implement backoff and retry\n"
PROVIDER = "Upstream provider error -- try again later\n"


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# Each case: script the FakeGateway, return the client bound to ``gateway``.
Script = Callable[[FakeGateway], AsyncGatewayClient]


def _wrong_token(gw: FakeGateway) -> AsyncGatewayClient:
    return client_for(gw, auth_token="not-the-token")


def _model_not_allowed(gw: FakeGateway) -> AsyncGatewayClient:
    gw.add_token("mini-only-token", models=["openai/gpt-4o-mini"])  # gpt-4o answers 403
    return client_for(gw, auth_token="mini-only-token")


def _scripted(status: int, times: int = 1, **options: Any) -> Script:
    def script(gw: FakeGateway) -> AsyncGatewayClient:
        gw.fail(status, times=times, retry_after=0 if times > 1 else None)
        return client_for(gw, **options)

    return script


def _rate_limited_for_a_minute(gw: FakeGateway) -> AsyncGatewayClient:
    gw.rpm_limit = 0  # every request answers 429 with a Retry-After of about a minute
    return client_for(gw, max_retry_after=1.0)  # longer than allowed: raised at once


def _nginx_502(gw: FakeGateway) -> AsyncGatewayClient:
    gw.html_error(502)
    return client_for(gw, max_retries=0)


def _teapot(gw: FakeGateway) -> AsyncGatewayClient:
    gw.fail(418, headers={"x-request-id": "req_teapot"})
    return client_for(gw)


def _bad_request(gw: FakeGateway) -> AsyncGatewayClient:
    body = {"error": {"message": "Unsupported value: 'messages'.", "type": "invalid_request_error"}}
    gw.fail(400, body=body, headers={"x-request-id": "req_bad"})
    return client_for(gw)


def _server_error(gw: FakeGateway) -> AsyncGatewayClient:
    gw.fail(503, headers={"x-request-id": "req_down"})
    return client_for(gw, max_retries=0)


def _nothing_scripted(gw: FakeGateway) -> AsyncGatewayClient:
    return client_for(gw)


ERROR_CASES: Dict[str, Tuple[Script, Optional[str], int]] = {
    # name: (script, exact output, chat requests the server got)
    "401-wrong-token": (_wrong_token, AUTH, 1),
    "403-scripted": (_scripted(403), AUTH, 1),
    "403-model-not-allowed": (_model_not_allowed, AUTH, 1),
    "404-scripted": (_scripted(404), NOT_FOUND, 1),
    "429-no-retries": (_scripted(429, max_retries=0), RATE_LIMITED, 1),
    "429-retries-exhausted": (_scripted(429, times=3), RATE_LIMITED, 3),
    "429-rpm-limit-retry-after-too-long": (_rate_limited_for_a_minute, RATE_LIMITED, 1),
    "502-no-retries": (_scripted(502, max_retries=0), PROVIDER, 1),
    "502-retries-exhausted": (_scripted(502, times=3), PROVIDER, 3),
    "502-nginx-html-page": (_nginx_502, PROVIDER, 1),
    "418-other-status": (
        _teapot,
        "Gateway error: HTTP 418: Scripted error 418 I'm a Teapot (request id req_teapot)\n",
        1,
    ),
    "400-bad-request": (
        _bad_request,
        "Gateway error: HTTP 400: Unsupported value: 'messages'. (request id req_bad)\n",
        1,
    ),
    "503-server-error": (
        _server_error,
        "Gateway error: HTTP 503: Scripted error 503 Service Unavailable (request id req_down)\n",
        1,
    ),
    "no-error": (_nothing_scripted, "", 1),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_error_handling(
    gw: FakeGateway,
    case: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    script, expected, sent = ERROR_CASES[case]
    gateway = script(gw)
    started = time.monotonic()
    namespace, out = run_with_gateway(
        SNIPPET_ERROR_HANDLING, "Error Handling", gateway, capsys, caplog
    )
    assert out == expected
    assert len(chat_requests(gw)) == sent
    assert time.monotonic() - started < 10  # nobody waited out a Retry-After
    assert gw.token not in out
    assert "not-the-token" not in out and "mini-only-token" not in out
    if case == "no-error":
        hello = [{"role": "user", "content": "Hello"}]
        assert namespace["response"]["choices"][0]["message"]["content"] == expected_reply(
            MODEL, hello
        )


def test_error_handling_connection_refused(
    gw: FakeGateway, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens on the port: the snippet's last branch, ``GatewayClientError``."""
    url = f"http://127.0.0.1:{_free_loopback_port()}"
    gateway = AsyncGatewayClient(base_url=url, auth_token=gw.token, max_retries=0)
    _, out = run_with_gateway(SNIPPET_ERROR_HANDLING, "Error Handling", gateway, capsys, caplog)
    assert out.startswith("Gateway error: ")
    assert out.endswith("\n") and out.count("\n") == 1
    assert url in out
    assert gw.token not in out


# -- Usage Tracking -------------------------------------------------------------------------------


def test_usage_tracking(
    gw: FakeGateway, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    gateway = client_for(gw)
    _, out = run_with_gateway(SNIPPET_USAGE_TRACKING, "Usage Tracking", gateway, capsys, caplog)
    usage = expected_usage(MODEL, [{"role": "user", "content": "Hello!"}])
    assert out == (
        f"Prompt tokens: {usage['prompt_tokens']}\n"
        f"Completion tokens: {usage['completion_tokens']}\n"
        f"Total tokens: {usage['total_tokens']}\n"
    )
    assert out == "Prompt tokens: 4\nCompletion tokens: 6\nTotal tokens: 10\n"
    assert gateway.usage.total.total_tokens == usage["total_tokens"]
    assert gateway.usage.by_model[MODEL].requests == 1
