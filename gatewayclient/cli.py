"""The ``gatewayclient`` command line: chat, embed, models, providers, batch, serve and demo.

Built on the public API only. An expected failure (any ``GatewayClientError``, output that
cannot be written) prints one line on stderr and exits 1; usage errors exit 2: argparse's, an
argument or stdin that is not UTF-8 text, and a value the client refuses before sending
(``GatewayValidationError``). Ctrl-C exits 130 quietly; a closed stdout (``>&-``) or a reader that
went away (``| head``) exits 1 quietly. The token is never printed, except by ``serve``, whose
export line gives the fake gateway's own token.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from gatewayclient import ChatCompletion, SyncGatewayClient, SyncStream, __version__
from gatewayclient._cli_base import (
    ENV_AUTH_TOKEN,
    ENV_BASE_URL,
    PROG,
    OutputError,
    Stdout,
    TextError,
    check_argv,
    check_environment,
    count,
    environment_message,
    error,
    note,
    output_failed,
    stdin_text,
    temperature,
    timeout,
    write,
)
from gatewayclient._cli_batch import add_batch
from gatewayclient._cli_serve import add_serve
from gatewayclient.errors import (
    GatewayClientError,
    GatewayConfigError,
    GatewayValidationError,
)

__all__ = ["build_parser", "main"]

DEFAULT_CHAT_MODEL = "openai/gpt-4o-mini"
DEFAULT_EMBEDDING_MODEL = "openai/text-embedding-3-small"
SHOWN_VALUES = 5

_EPILOG = f"""\
configuration: --base-url or ${ENV_BASE_URL}, --token or ${ENV_AUTH_TOKEN}.
exit status: 0 success, 1 gateway or configuration error, 2 usage error, 130 interrupted."""


# -- argument parsing ---------------------------------------------------------------------------


def _connection_options(suppress: bool) -> argparse.ArgumentParser:
    """The client options, accepted before and after the command; after it they are SUPPRESSed
    by default so that a value given before the command is not overwritten."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument("--base-url", metavar="URL", default=default(None),
                       help=f"gateway URL (default: ${ENV_BASE_URL})")  # fmt: skip
    group.add_argument("--token", default=default(None),
                       help=f"bearer token (default: ${ENV_AUTH_TOKEN})")  # fmt: skip
    group.add_argument("--timeout", type=timeout, metavar="SECONDS", default=default(60.0),
                       help="connect and read timeout in seconds (default: 60)")  # fmt: skip
    group.add_argument("--max-retries", type=count(0), metavar="N", default=default(2),
                       help="retries on 429, 5xx and connection errors (default: 2)")  # fmt: skip
    group.add_argument("-v", "--verbose", action="store_true", default=default(False),
                       help="log retries on stderr")  # fmt: skip
    return parent


def _add_chat(commands: Any, connection: argparse.ArgumentParser) -> None:
    chat = commands.add_parser(
        "chat", parents=[connection], help="chat with a model (streams the answer)",
        description="Send a prompt and print the answer as it arrives.",
    )  # fmt: skip
    chat.add_argument("prompt", nargs="*", help="the prompt (default or '-': read stdin)")
    chat.add_argument("-m", "--model", default=DEFAULT_CHAT_MODEL,
                      help=f"model id (default: {DEFAULT_CHAT_MODEL})")  # fmt: skip
    chat.add_argument("-s", "--system", metavar="TEXT", help="a system message first")
    chat.add_argument("-t", "--temperature", type=temperature, help="sampling temperature, 0 to 2")
    chat.add_argument("--max-tokens", type=count(1), metavar="N", help="longest answer")
    chat.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    chat.add_argument("--json", action="store_true",
                      help="print the completion as JSON (assembled from the stream)")  # fmt: skip
    chat.set_defaults(handler=_cmd_chat, command_parser=chat)


def _add_embed(commands: Any, connection: argparse.ArgumentParser) -> None:
    embed = commands.add_parser(
        "embed", parents=[connection], help="embed texts, print their vectors' first values",
        description="Embed each text; without texts (or '-'), each stdin line is one text.",
    )  # fmt: skip
    embed.add_argument("text", nargs="*", help="the texts (default or '-': stdin lines)")
    embed.add_argument("-m", "--model", default=DEFAULT_EMBEDDING_MODEL,
                       help=f"model id (default: {DEFAULT_EMBEDDING_MODEL})")  # fmt: skip
    embed.add_argument("--dimensions", type=count(1), metavar="N", help="vector size to ask for")
    embed.add_argument("--json", action="store_true", help="print the response as JSON")
    embed.set_defaults(handler=_cmd_embed, command_parser=embed)


def _add_discovery(commands: Any, connection: argparse.ArgumentParser) -> None:
    models = commands.add_parser("models", parents=[connection], help="list model ids, one a line")
    models.add_argument("-p", "--provider", help="only this provider's models")
    models.add_argument("--json", action="store_true", help="print the response as JSON")
    models.set_defaults(handler=_cmd_models, command_parser=models)
    providers = commands.add_parser(
        "providers", parents=[connection], help="list provider names, one a line"
    )
    providers.add_argument("--json", action="store_true", help="print a JSON array")
    providers.set_defaults(handler=_cmd_providers, command_parser=providers)


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="tour every feature of both clients against an in-process FakeGateway"
    )
    demo.set_defaults(handler=_cmd_demo, command_parser=demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``gatewayclient`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG, parents=[_connection_options(suppress=False)], epilog=_EPILOG,
        description="Talk to an OpenAI-compatible AI gateway, or run a fake one.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    connection = _connection_options(suppress=True)
    _add_chat(commands, connection)
    _add_embed(commands, connection)
    _add_discovery(commands, connection)
    add_batch(commands, connection, _client)
    add_serve(commands)
    _add_demo(commands)
    return parser


# -- output helpers -----------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """The library's log (retries) on stderr with -v, else nothing: stderr keeps to one line."""
    logger = logging.getLogger("gatewayclient")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    handler.setLevel(logging.WARNING if verbose else logging.CRITICAL + 1)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


# -- commands -----------------------------------------------------------------------------------


def _base_url(args: argparse.Namespace) -> Optional[str]:
    url: Optional[str] = args.base_url or os.environ.get(ENV_BASE_URL)
    return url.strip() if url and url.strip() else None


def _client(args: argparse.Namespace, **options: Any) -> SyncGatewayClient:
    bad = check_environment(ENV_BASE_URL, ENV_AUTH_TOKEN)  # argv was checked already
    if bad is not None:
        raise GatewayConfigError(environment_message(bad))
    base_url = _base_url(args)
    if base_url is None:
        raise GatewayConfigError(f"no gateway URL: pass --base-url URL or set {ENV_BASE_URL}")
    return SyncGatewayClient(
        base_url, args.token, timeout=args.timeout, max_retries=args.max_retries, **options
    )


def _prompt(args: argparse.Namespace) -> str:
    words: List[str] = args.prompt
    text = " ".join(words) if words and words != ["-"] else stdin_text().rstrip()
    if not text.strip():
        args.command_parser.error("no prompt: give it as arguments or on stdin")
    return text


def _cmd_chat(args: argparse.Namespace) -> int:
    messages: List[Dict[str, Any]] = [{"role": "user", "content": _prompt(args)}]
    if args.system is not None:
        messages.insert(0, {"role": "system", "content": args.system})
    options = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    with _client(args) as client:
        if args.no_stream:
            _print_completion(client.chat_completion(args.model, messages, **options), args.json)
        else:
            _print_stream(client.stream_chat_completion(args.model, messages, **options), args.json)
    return 0


def _print_stream(stream: SyncStream, as_json: bool) -> None:
    """Each piece of the first choice's text as it arrives; or, with --json, the whole
    completion assembled from the stream at its end."""
    last = ""
    try:
        with stream:
            for chunk in stream:
                for choice in chunk.choices or []:
                    text = choice.delta.content if choice.delta is not None else None
                    if text and not as_json and choice.index in (0, None):
                        last = text
                        write(text)
    except BaseException:
        if last and not last.endswith("\n"):  # end the partial line before the error line
            with contextlib.suppress(OutputError, ValueError):
                write("\n")
        raise
    if as_json:
        _print_json(stream.completion().to_dict())
    elif not last.endswith("\n"):
        write("\n")


def _print_completion(completion: ChatCompletion, as_json: bool) -> None:
    if as_json:
        _print_json(completion.to_dict())
        return
    choices = completion.choices or []
    message = choices[0].message if choices else None
    text = (message.content if message is not None else None) or ""
    write(text if text.endswith("\n") else text + "\n")


def _texts(args: argparse.Namespace) -> List[str]:
    texts: List[str] = args.text
    if not texts or texts == ["-"]:
        texts = [line for line in stdin_text().splitlines() if line.strip()]
    if not texts:
        args.command_parser.error("no text: give texts as arguments or as lines on stdin")
    for position, text in enumerate(texts, 1):
        if not text.strip():
            args.command_parser.error(f"text {position} is empty")
    return texts


def _cmd_embed(args: argparse.Namespace) -> int:
    texts = _texts(args)
    params = {} if args.dimensions is None else {"dimensions": args.dimensions}
    with _client(args) as client:
        response = client.embeddings(args.model, texts[0] if len(texts) == 1 else texts, **params)
    if args.json:
        _print_json(response.to_dict())
        return 0
    for position, item in enumerate(response.data or []):
        index = item.index if item.index is not None else position
        label = texts[index] if 0 <= index < len(texts) else ""
        write(f"{index}  {_vector_summary(item.embedding)}  {_shorten(label)}\n")
    return 0


def _vector_summary(vector: Union[List[float], str, None]) -> str:
    if isinstance(vector, str):
        return f"base64, {len(vector)} characters"
    values = vector or []
    shown = ", ".join(f"{value:.6f}" for value in values[:SHOWN_VALUES])
    more = ", ..." if len(values) > SHOWN_VALUES else ""
    return f"{len(values)} dimensions  [{shown}{more}]"


def _shorten(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return json.dumps(text if len(text) <= limit else text[: limit - 1] + "…", ensure_ascii=False)


def _cmd_models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.provider is None:
            listing = client.list_models()
            models, raw = listing.data or [], listing.to_dict()
        else:
            found = client.list_provider_models(args.provider)
            models, raw = found.models or [], found.to_dict()
            if not models:
                note(f"no models for provider {args.provider!r}")
    if args.json:
        _print_json(raw)
    else:
        write("".join(f"{model.id}\n" for model in models if model.id))
    return 0


def _cmd_providers(args: argparse.Namespace) -> int:
    with _client(args) as client:
        providers = client.list_known_providers()
    if args.json:
        _print_json(providers)
    else:
        write("".join(f"{name}\n" for name in providers))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gatewayclient._demo import run_demo

    return run_demo(Stdout())


# -- entry point --------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args: Optional[argparse.Namespace] = None
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        check_argv(argv)
        args = build_parser().parse_args(argv)
        if sys.stdout is None:  # started with stdout closed (>&-): no one would see the answer
            return 1
        with _logging(args.verbose):
            status: int = args.handler(args)
        return status
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except TextError as exc:
        error(str(exc))
        return 2
    except GatewayValidationError as exc:  # a value the client refused: nothing was sent
        parser = args.command_parser if args is not None else build_parser()
        with contextlib.suppress(OSError, AttributeError):
            parser.print_usage(sys.stderr)
        error(str(exc), prog=parser.prog)
        return 2
    except GatewayClientError as exc:
        error(str(exc))  # the library words it: "cannot connect to the gateway at ...: ..."
        return 1
    except KeyboardInterrupt:
        return 130
    except (OutputError, BrokenPipeError) as exc:
        return output_failed(exc.cause if isinstance(exc, OutputError) else exc)
