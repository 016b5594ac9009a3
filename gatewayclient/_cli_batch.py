"""``gatewayclient batch``: run an OpenAI Batch API input file, resuming from its output file.

Public API only. A bad line is a usage error (exit 2) named by its line number, reported
before anything is sent; a run that leaves any line failed or unsent exits 1 after saying how
many; Ctrl-C stops the requests in flight and leaves an output file that the same command
resumes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from functools import partial
from typing import Any, Callable, Optional

from gatewayclient import RateLimit, SyncGatewayClient
from gatewayclient._cli_base import count, error, note
from gatewayclient.batch import FileReport, run_file

__all__ = ["add_batch"]


def add_batch(
    commands: Any,
    connection: argparse.ArgumentParser,
    client: Callable[..., SyncGatewayClient],
) -> None:
    """The ``batch`` command's parser; ``client(args, rate_limit=...)`` builds its client."""
    batch = commands.add_parser(
        "batch", parents=[connection], help="run an OpenAI Batch API input file (resumable)",
        description="Send each line of an OpenAI Batch API input file ({custom_id, method, url, "
        "body} lines for /v1/chat/completions and /v1/embeddings) and append each answer to "
        "OUTPUT in the Batch API's output format. Every line is checked before anything is "
        "sent. Run it again with the same OUTPUT to send only what has no answer there yet.",
    )  # fmt: skip
    batch.add_argument("input", metavar="INPUT.jsonl", help="the Batch API input file")
    batch.add_argument("-o", "--output", metavar="OUTPUT.jsonl", required=True,
                       help="the output file: written as items finish, resumed from")  # fmt: skip
    batch.add_argument("-c", "--concurrency", type=count(1, 1000), default=8, metavar="N",
                       help="requests at once (default: 8)")  # fmt: skip
    batch.add_argument("--rpm", type=count(1), metavar="N", help="at most N requests a minute")
    batch.add_argument("--tpm", type=count(1), metavar="N", help="at most N tokens a minute")
    batch.add_argument("--redis", metavar="URL",
                       help="share the --rpm/--tpm budget through Redis (redis://...)")  # fmt: skip
    batch.add_argument("--no-progress", action="store_true", help="draw no progress bar")
    batch.set_defaults(handler=partial(_cmd_batch, client=client), command_parser=batch)


def _rate_limit(args: argparse.Namespace) -> Optional[RateLimit]:
    if args.rpm is None and args.tpm is None:
        if args.redis is not None:
            args.command_parser.error("--redis shares a budget: give it with --rpm or --tpm")
        return None
    return RateLimit(requests=args.rpm, tokens=args.tpm, storage=args.redis)


def _cmd_batch(args: argparse.Namespace, client: Callable[..., SyncGatewayClient]) -> int:
    limit = _rate_limit(args)
    if not os.path.isfile(args.input) or not os.access(args.input, os.R_OK):
        args.command_parser.error(f"cannot read the input file {args.input!r}")
    progress = not args.no_progress
    if progress and importlib.util.find_spec("tqdm") is None:
        note("no progress bar: pip install 'gatewayclient[progress]' for one")
        progress = False
    try:
        with client(args, rate_limit=limit) as gateway:
            report = run_file(
                gateway, args.input, args.output, concurrency=args.concurrency, progress=progress
            )
    except OSError as exc:  # the output file cannot be read or written
        error(f"cannot use the output file {args.output!r}: {exc.strerror or exc}")
        return 1
    assert isinstance(report, FileReport)
    note(_summary(report, args.output))
    if report.stopped_by is not None:
        raise report.stopped_by
    return 0 if report.failed == 0 else 1


def _summary(report: FileReport, output: str) -> str:
    parts = [f"{report.answered} answered", f"{report.failed} failed"]
    if report.stored:
        parts.append(f"{report.stored} answered before")
    if report.unsent:
        parts.append(f"{report.unsent} not sent")
    return f"{report.total} requests: {', '.join(parts)}; output in {output}"
