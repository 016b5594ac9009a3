"""The package's layering (STYLE.md "Layout"), read from the source with ast, and lazy imports."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import gatewayclient

PACKAGE_DIR = Path(gatewayclient.__file__).parent
PACKAGE = "gatewayclient"

SANS_IO = [
    "errors",
    "config",
    "_json_model",
    "models",
    "sse",
    "_checks",
    "_core",
    "_failures",
    "budget",
    "_stream",
    "_usage",
    "_version",
]
IO_LIBRARIES = ["requests", "urllib3", "aiohttp", "tenacity", "asyncio", "socket", "ssl"]
CLIENT_MODULES = {f"{PACKAGE}.sync_client", f"{PACKAGE}.async_client"}
CLIENT_NAMES = {
    "SyncGatewayClient": f"{PACKAGE}.sync_client",
    "SyncStream": f"{PACKAGE}.sync_client",
    "AsyncGatewayClient": f"{PACKAGE}.async_client",
    "AsyncStream": f"{PACKAGE}.async_client",
    "GatewayClient": f"{PACKAGE}.async_client",
}
# The command line layer: cli, __main__, the demo that cli runs and cli's helper modules.
COMMAND_LINE = {
    f"{PACKAGE}.{name}"
    for name in ("cli", "__main__", "_demo", "_cli_base", "_cli_serve", "_cli_batch")
}
PUBLIC_MODULES = {
    PACKAGE,
    f"{PACKAGE}.batch",
    f"{PACKAGE}.errors",
    f"{PACKAGE}.gateway_client",
    f"{PACKAGE}.testing",
    *COMMAND_LINE,
}
ORACLE_MUST_NOT_IMPORT = {
    f"{PACKAGE}.{name}" for name in ("_core", "_stream", "sse", "models", "_json_model", "errors")
}
# Imports point down: a module imports only modules of a lower rank (errors: anyone may).
RANKS = {
    "errors": 0,
    "_version": 0,
    "_json_model": 0,  # the models' base: imports errors only
    "config": 1,
    "models": 1,
    "sse": 1,
    "_usage": 1,
    "_failures": 1,  # the words of transport failures, for both transports
    "budget": 0,  # RateLimit and its in-process window (config holds one)
    "_loops": 0,  # what belongs to one event loop, closed with it
    "_telemetry": 1,  # OpenTelemetry spans and metrics: the only opentelemetry user
    "_budget_redis": 1,  # the rate budget's window in Redis: the only Redis user
    "_traffic": 2,  # waiting for the rate budget, and model fallbacks
    "_checks": 2,  # call arguments, checked before a request exists
    "_stream": 2,
    "retry": 2,
    "_core": 3,
    "_base": 4,  # what the two clients share beyond the core
    "_sync_transport": 4,  # requests and urllib3: the session, the pool, their exceptions
    "_async_transport": 4,  # aiohttp: sessions per loop, bounded waits, its exceptions
    "_halt": 0,  # stopping a sync batch's worker threads: their waits and blocked reads
    "_progress": 0,  # a batch's progress bar: the only tqdm user
    "_batch": 4,  # batches: checks, input order, the 401 stop, the checkpoint file
    "_vectors": 5,  # batch_embeddings: the split, the vectors in order, base64 decoded
    "_batch_threads": 5,  # the sync client's batch runner (threads)
    "_batch_tasks": 5,  # the async client's batch runner (tasks)
    "batch": 5,  # running a Batch API input file (public: the batch command's engine)
    "sync_client": 6,
    "async_client": 6,
    "gateway_client": 7,
    "": 7,  # the package itself (__init__)
    "testing": 8,
    "contrib": 8,  # framework integrations (Django, Airflow): above the clients, public names only
    "_demo": 9,
    "_cli_base": 9,  # names, argument types, text checks and output shared by the commands
    "_cli_serve": 10,  # the serve command (foreground and background)
    "_cli_batch": 10,  # the batch command
    "cli": 11,
    "__main__": 12,
}


@dataclass(frozen=True)
class Import:
    target: str  # absolute dotted name
    line: int
    top_level: bool  # runs when the module is imported (not in a function, not TYPE_CHECKING)
    via_package: bool = False  # a client name taken from the package (its lazy __getattr__)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    module_name(path): path
    for path in sorted(PACKAGE_DIR.rglob("*.py"))
    if "__pycache__" not in path.parts
}
CONTRIB = {name for name in MODULES if name.startswith(f"{PACKAGE}.contrib")}
AIRFLOW_PROVIDER = f"{PACKAGE}.contrib.airflow"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")
    drop = node.level - 1 if is_package else node.level
    base = base[: len(base) - drop] if drop else base
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> list[Import]:
    tree = ast.parse(MODULES[module].read_text("utf-8"))
    found: list[Import] = []

    def visit(node: ast.AST, top_level: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno, top_level) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            if node.module is not None:
                found.append(Import(base, node.lineno, top_level))
            for alias in node.names:
                # `from . import retry` imports a module; `from gatewayclient import
                # SyncGatewayClient` loads a client module through the package's __getattr__.
                if base == PACKAGE and alias.name in CLIENT_NAMES:
                    found.append(Import(CLIENT_NAMES[alias.name], node.lineno, top_level, True))
                elif f"{base}.{alias.name}" in MODULES:
                    found.append(Import(f"{base}.{alias.name}", node.lineno, top_level))
                elif node.module is None:
                    found.append(Import(base, node.lineno, top_level))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            top_level = False
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, top_level)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, top_level)

    visit(tree, True)
    return found


def library(target: str) -> str:
    return target.split(".")[0]


def internal(target: str) -> bool:
    return target == PACKAGE or target.startswith(PACKAGE + ".")


def rank_key(module: str) -> str:
    inner = module[len(PACKAGE) + 1 :] if module != PACKAGE else ""
    return inner.split(".")[0]


def where(module: str, found: Import) -> str:
    return f"{MODULES[module].relative_to(PACKAGE_DIR.parent)}:{found.line} imports {found.target}"


# -- the module table --------------------------------------------------------------------------


def test_the_package_has_the_expected_modules() -> None:
    for name in [*SANS_IO, "retry", "sync_client", "async_client", "gateway_client"]:
        assert f"{PACKAGE}.{name}" in MODULES
    assert f"{PACKAGE}.testing" in MODULES


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_has_a_layer(module: str) -> None:
    assert rank_key(module) in RANKS, f"{module}: place it in a layer of STYLE.md (RANKS here)"


def test_imports_inside_functions_and_type_checking_are_seen() -> None:
    retry_imports = {found.target: found.top_level for found in imports_of(f"{PACKAGE}.retry")}
    assert retry_imports.get("tenacity") is False  # imported lazily, inside run()
    init_imports = imports_of(PACKAGE)
    assert any(found.target in CLIENT_MODULES for found in init_imports)


# -- third-party and I/O libraries -------------------------------------------------------------


@pytest.mark.parametrize("name", SANS_IO)
def test_sans_io_modules_import_no_io_library(name: str) -> None:
    module = f"{PACKAGE}.{name}"
    bad = [where(module, f) for f in imports_of(module) if library(f.target) in IO_LIBRARIES]
    assert bad == []


@pytest.mark.parametrize(
    ("libraries", "allowed"),
    [
        (["tenacity"], lambda module: module == f"{PACKAGE}.retry"),
        (["redis", "limits"], lambda module: module == f"{PACKAGE}._budget_redis"),
        (["opentelemetry"], lambda module: module == f"{PACKAGE}._telemetry"),
        (["django", "asgiref"], lambda module: module.startswith(f"{PACKAGE}.contrib.django")),
        (["tqdm"], lambda module: module == f"{PACKAGE}._progress"),
        (["numpy"], lambda module: module == f"{PACKAGE}._vectors"),
        (
            ["requests", "urllib3"],
            lambda module: module in (f"{PACKAGE}.sync_client", f"{PACKAGE}._sync_transport"),
        ),
        (["airflow"], lambda module: module.startswith(AIRFLOW_PROVIDER)),
        (
            ["aiohttp"],
            lambda module: (
                module in (f"{PACKAGE}.async_client", f"{PACKAGE}._async_transport")
                or module.startswith(f"{PACKAGE}.testing")
            ),
        ),
    ],
    ids=[
        "tenacity-only-in-retry",
        "redis-and-limits-only-in-the-budget-window",
        "opentelemetry-only-in-telemetry",
        "django-only-in-contrib-django",
        "tqdm-only-in-the-progress-bar",
        "numpy-only-in-the-batch-vectors",
        "requests-only-in-the-sync-client-and-its-transport",
        "airflow-only-in-contrib-airflow",
        "aiohttp-only-in-the-async-client-its-transport-and-testing",
    ],
)
def test_each_library_has_its_one_home(libraries: list[str], allowed: object) -> None:
    bad = [
        where(module, found)
        for module in MODULES
        for found in imports_of(module)
        if library(found.target) in libraries and not allowed(module)  # type: ignore[operator]
    ]
    assert bad == []


# -- internal imports ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(f"{PACKAGE}.testing")))
def test_testing_is_an_independent_oracle(module: str) -> None:
    bad = [
        where(module, found)
        for found in imports_of(module)
        if any(
            found.target == banned or found.target.startswith(banned + ".")
            for banned in ORACLE_MUST_NOT_IMPORT
        )
    ]
    assert bad == []


@pytest.mark.parametrize("module", sorted(COMMAND_LINE & set(MODULES)))
def test_command_line_uses_only_the_public_package(module: str) -> None:
    bad = [
        where(module, found)
        for found in imports_of(module)
        if internal(found.target) and not found.via_package and found.target not in PUBLIC_MODULES
    ]
    tree = ast.parse(MODULES[module].read_text("utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _resolve(module, node) == PACKAGE:
            bad += [
                f"{module}:{node.lineno} imports private name {alias.name}"
                for alias in node.names
                if alias.name not in gatewayclient.__all__
            ]
    assert bad == []


CLIENT_IMPORTERS = {
    PACKAGE,
    f"{PACKAGE}.gateway_client",
    f"{PACKAGE}.testing.plugin",
    *COMMAND_LINE,
    *CONTRIB,  # through the package, lazily: test_contrib_uses_only_the_public_package
}


@pytest.mark.parametrize("module", sorted(CONTRIB))
def test_contrib_uses_only_the_public_package(module: str) -> None:
    """An integration sees what a user sees: the package's public names (a client only when
    first used, so that a Django project using one kind never loads the other's library),
    the errors, and its own modules."""
    bad = []
    for found in imports_of(module):
        if not internal(found.target) or found.target in (PACKAGE, f"{PACKAGE}.errors"):
            continue
        if found.target.startswith(f"{PACKAGE}.contrib"):
            continue
        if found.via_package and not found.top_level:
            continue
        bad.append(where(module, found))
    tree = ast.parse(MODULES[module].read_text("utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _resolve(module, node) == PACKAGE:
            bad += [
                f"{module}:{node.lineno} imports private name {alias.name}"
                for alias in node.names
                if alias.name not in gatewayclient.__all__
            ]
    assert bad == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(AIRFLOW_PROVIDER)))
def test_the_airflow_provider_imports_airflow_only_through_its_sdk(module: str) -> None:
    """Airflow 3's task SDK is the interface providers are to use (``airflow.sdk``), and only
    the hook's module imports it at all."""
    found = [f for f in imports_of(module) if library(f.target) == "airflow"]
    assert [where(module, f) for f in found if f.target.split(".")[:2] != ["airflow", "sdk"]] == []
    if module != f"{AIRFLOW_PROVIDER}.hook":
        assert [where(module, f) for f in found] == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_top_layers_import_a_client(module: str) -> None:
    clients = [f for f in imports_of(module) if f.target in CLIENT_MODULES and f.target != module]
    if module in CLIENT_IMPORTERS:
        if module == PACKAGE:  # lazily: never while `import gatewayclient` runs
            assert [where(module, f) for f in clients if f.top_level] == []
        return
    assert [where(module, f) for f in clients] == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    own = rank_key(module)
    bad = []
    for found in imports_of(module):
        if not internal(found.target) or found.target == f"{PACKAGE}.errors":
            continue
        target = rank_key(found.target)
        if target == own and own in ("testing", "contrib"):
            continue  # the testing package's own modules, an integration's own modules
        if found.target == module or (module == PACKAGE and target == ""):
            continue
        if target not in RANKS or own not in RANKS or RANKS[target] >= RANKS[own]:
            bad.append(where(module, found))
    assert bad == []


# -- what importing costs ------------------------------------------------------------------------


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(PACKAGE_DIR.parent),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_gatewayclient_loads_no_http_library() -> None:
    out = _run(
        """
        import sys
        import gatewayclient
        heavy = ["requests", "urllib3", "aiohttp", "tenacity", "dataclasses_json", "marshmallow",
                 "tqdm", "numpy"]
        print(sorted(name for name in heavy if name in sys.modules))
        """
    )
    assert out.strip() == "[]"


def test_sync_client_leaves_aiohttp_tenacity_and_dataclasses_json_out() -> None:
    out = _run(
        """
        import sys
        import gatewayclient
        gatewayclient.SyncGatewayClient
        client = gatewayclient.SyncGatewayClient("http://127.0.0.1:9", "token")
        stream = client.stream_chat_completion("openai/gpt-4o", [{"role": "user", "content": "x"}])
        stream.close()
        client.close()
        heavy = ["aiohttp", "tenacity", "dataclasses_json", "marshmallow"]
        print(sorted(name for name in heavy if name in sys.modules))
        """
    )
    assert out.strip() == "[]"


def test_async_client_leaves_requests_tenacity_and_dataclasses_json_out() -> None:
    out = _run(
        """
        import sys
        import gatewayclient
        gatewayclient.AsyncGatewayClient
        client = gatewayclient.AsyncGatewayClient("http://127.0.0.1:9", "token")
        stream = client.stream_chat_completion("openai/gpt-4o", [{"role": "user", "content": "x"}])
        heavy = ["requests", "tenacity", "dataclasses_json", "marshmallow"]
        print(sorted(name for name in heavy if name in sys.modules))
        """
    )
    assert out.strip() == "[]"


def test_the_airflow_provider_loads_airflow_only_for_the_hook(tmp_path: Path) -> None:
    """With an importable ``airflow`` (a stand-in: Airflow is not installed here), importing
    the package, its clients, its command line and the provider's info loads none of it;
    ``GatewayHook`` loads ``airflow.sdk`` and nothing else of it."""
    sdk = tmp_path / "airflow" / "sdk"
    sdk.mkdir(parents=True)
    (tmp_path / "airflow" / "__init__.py").write_text("")
    (sdk / "__init__.py").write_text("class BaseHook:\n    def __init__(self, **kwargs): pass\n")
    out = _run(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import gatewayclient, gatewayclient.contrib, gatewayclient.testing, gatewayclient.cli
        gatewayclient.SyncGatewayClient, gatewayclient.AsyncGatewayClient
        import gatewayclient.contrib.airflow as provider
        provider.get_provider_info()
        loaded = lambda: sorted(name for name in sys.modules if name.split(".")[0] == "airflow")
        print(loaded())
        from gatewayclient.contrib.airflow import *
        print(GatewayHook.__module__, GatewayHook.__mro__[1].__module__, loaded())
        """
    )
    assert out.splitlines() == [
        "[]",
        "gatewayclient.contrib.airflow.hook airflow.sdk ['airflow', 'airflow.sdk']",
    ]


def test_no_import_of_the_package_or_its_clients_loads_django() -> None:
    out = _run(
        """
        import sys
        import gatewayclient, gatewayclient.contrib, gatewayclient.testing, gatewayclient.cli
        gatewayclient.SyncGatewayClient, gatewayclient.AsyncGatewayClient
        print(sorted(name for name in sys.modules if name.split(".")[0] == "django"))
        """
    )
    assert out.strip() == "[]"


def test_the_django_app_loads_no_client_library_until_a_client_is_asked_for() -> None:
    out = _run(
        """
        import sys
        import django
        from django.conf import settings
        settings.configure(INSTALLED_APPS=["gatewayclient.contrib.django"])
        django.setup()
        from gatewayclient.contrib.django import async_gateway, gateway
        print(sorted(name for name in ("requests", "aiohttp") if name in sys.modules))
        """
    )
    assert out.strip() == "[]"


def test_a_sync_program_never_imports_asyncio_or_aiohttp() -> None:
    # asyncio alone costs a sync program's start ~10 ms (it came in through the rate budget's
    # awaitable wait): it is imported where the async client needs it, never before.
    out = _run(
        """
        import sys
        import gatewayclient
        limit = gatewayclient.RateLimit(requests=100, tokens=10_000)
        client = gatewayclient.SyncGatewayClient("http://127.0.0.1:9", "x", rate_limit=limit)
        client.batch_chat_completions([])
        client.close()
        print(sorted(name for name in ("asyncio", "aiohttp") if name in sys.modules))
        """
    )
    assert out.strip() == "[]"


def test_gateway_client_alias_loads_only_the_async_client() -> None:
    out = _run(
        """
        import sys
        from gatewayclient import GatewayClient
        print(GatewayClient.__name__, "requests" in sys.modules)
        """
    )
    assert out.split() == ["AsyncGatewayClient", "False"]


# -- the public namespace -----------------------------------------------------------------------


def test_dunder_all_is_sorted() -> None:
    assert list(gatewayclient.__all__) == sorted(gatewayclient.__all__)
    assert len(set(gatewayclient.__all__)) == len(gatewayclient.__all__)


@pytest.mark.parametrize(
    "module",
    sorted(
        name
        for name, path in MODULES.items()
        if "__all__" in path.read_text("utf-8")
        and not name.endswith("__main__")
        # They need Airflow: test_the_airflow_provider_loads_airflow_only_for_the_hook
        and not name.startswith(AIRFLOW_PROVIDER)
    ),
)
def test_every_name_in_dunder_all_resolves(module: str) -> None:
    import importlib

    imported = importlib.import_module(module)
    names = list(imported.__all__)
    assert names, module
    for name in names:
        assert getattr(imported, name) is not None, f"{module}.{name}"


def test_dir_lists_the_public_names() -> None:
    assert set(gatewayclient.__all__) <= set(dir(gatewayclient))


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        gatewayclient.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
