"""What every ``gatewayclient`` command shares: its names, argument types, text checks (argv,
stdin and environment values must be valid UTF-8), and output that fails cleanly.

A closed stdout, a reader that went away and a full disk are not tracebacks: writing raises
``OutputError``, which the entry point turns into exit status 1 (quietly when nobody is
reading). Text that is not UTF-8 raises ``TextError``, a usage error that names where the bad
bytes are, never what they are (a token may be one of them).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from typing import Callable, Optional, Sequence

PROG = "gatewayclient"
ENV_BASE_URL = "PLATFORM_API_URL"
ENV_AUTH_TOKEN = "AUTH_TOKEN"
ENV_SERVE_PID = "GATEWAYCLIENT_SERVE_PID"
FAKE_TOKEN = "test-token"
MAX_TIMEOUT = 86400.0  # a day; much longer overflows the socket layer's clock (about 9e9 s)


class TextError(Exception):
    """Text from argv, stdin or the environment that is not valid UTF-8: ``str(exc)`` says
    where, never what."""


class OutputError(Exception):
    """Writing to stdout failed. Not an OSError, so that it is never taken for a failure to
    listen or to connect."""

    def __init__(self, cause: Optional[OSError]) -> None:
        super().__init__(cause)
        self.cause = cause


# -- argument types -----------------------------------------------------------------------------


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def timeout(text: str) -> float:
    value = number(text)
    if not 0 < value <= MAX_TIMEOUT:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a number > 0 and at most 86400, got {text!r}")
    return value


def temperature(text: str) -> float:
    value = number(text)
    if not 0 <= value <= 2:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 2, got {text!r}")
    return value


def count(minimum: int, maximum: Optional[int] = None) -> Callable[[str], int]:
    """An integer argument from ``minimum`` (to ``maximum``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"must be an integer {bounds}, got {text!r}")
        return value

    return parse


# -- text in ------------------------------------------------------------------------------------


def is_text(value: str) -> bool:
    """False for a string holding lone surrogates: bytes that were not valid in the locale's
    encoding, kept by Python's ``surrogateescape`` (argv, environment, stdin)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encoding(name: Optional[str]) -> str:
    name = name or "utf-8"
    return "UTF-8" if name.lower().replace("-", "").replace("_", "") == "utf8" else name


def check_argv(argv: Sequence[str]) -> None:
    """Refuse an argument that is not text, before anything reads it."""
    for position, argument in enumerate(argv, 1):
        if is_text(argument):
            continue
        option, equals, _ = argument.partition("=")
        previous = argv[position - 2] if position > 1 else ""
        where = f"argument {position}"
        if equals and option.startswith("--") and is_text(option):
            where += f" (the value of {option})"
        elif previous.startswith("-") and is_text(previous):
            where += f" (after {previous})"
        raise TextError(f"{where} is not valid {_encoding(sys.getfilesystemencoding())} text")


def check_environment(*names: str) -> Optional[str]:
    """The first of these environment variables whose value is not text, if any."""
    return next((name for name in names if not is_text(os.environ.get(name, ""))), None)


def environment_message(name: str) -> str:
    return f"{name} is not valid {_encoding(sys.getfilesystemencoding())} text"


def stdin_text() -> str:
    """All of stdin ("" when the process has none); TextError when it is not text."""
    if sys.stdin is None:
        return ""
    try:
        text = sys.stdin.read()
    except UnicodeDecodeError:  # a strict decoder (PYTHONIOENCODING=utf-8:strict)
        text = "\udcff"
    if not is_text(text):
        raise TextError(f"standard input is not valid {_encoding(sys.stdin.encoding)} text")
    return text


# -- text out -----------------------------------------------------------------------------------


def write(text: str) -> None:
    """Write to stdout and flush; OutputError when that fails."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        raise OutputError(exc) from exc


class Stdout:
    """stdout for the demo's report, failing like ``write``."""

    def write(self, text: str) -> None:
        write(text)

    def flush(self) -> None:
        pass


def _say(line: str) -> None:
    if sys.stderr is not None:  # None: started with stderr closed, nowhere to say it
        with contextlib.suppress(OSError):
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


def error(message: str, prog: str = PROG) -> None:
    """One line on stderr: ``gatewayclient: error: ...``."""
    _say(f"{prog}: error: {' '.join(message.split())}")


def note(message: str) -> None:
    _say(f"{PROG}: {message}")


def output_failed(cause: Optional[OSError]) -> int:
    """Exit status 1 once stdout failed; quiet when the reader went away (``| head``) or stdout
    is closed (``>&-``), else one line (a full disk)."""
    if cause is not None and cause.errno not in (errno.EPIPE, errno.EBADF):
        error(f"cannot write the output: {cause.strerror or cause}")
    # Keep the interpreter's final flush of stdout from failing again.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 1
