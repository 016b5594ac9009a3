"""Answer an OpenAI Batch API input file through the gateway, scaled out over Airflow workers.

    split  ->  answer_shard[0], answer_shard[1], ...  ->  merge

``split`` checks the input file (``{"custom_id", "method", "url", "body"}`` lines for
``/v1/chat/completions``) and cuts it into ``shards`` files of consecutive lines. Each mapped
``answer_shard`` (dynamic task mapping: one task instance per shard, run in parallel by the
workers) sends its shard with ``batch_chat_completions`` through the ``gateway`` connection's
client, so every shard draws on the connection's rate budget: with a ``rate_limit`` that names a
Redis ``storage``, all the shards together stay within it, on any number of workers. ``merge``
writes the output file in the Batch API's output format: one line per input line, in input order.

Each shard keeps a checkpoint: a shard retried or rerun after a crash sends only what has no
answer yet (and at most ``concurrency`` items a second time). Trigger it with a conf such as
``{"input": "/data/requests.jsonl", "output": "/data/answers.jsonl", "shards": 8}``; the files
and ``work_dir`` must be on storage that every worker sees (a shared volume).

Its tests: ``bash examples/airflow_dag/run_dag_test.sh``.
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List

from airflow.sdk import Param, dag, get_current_context, task

from gatewayclient.contrib.airflow import GatewayHook

CHAT_URL = "/v1/chat/completions"


def read_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """Each non-blank line of a JSON Lines file, with its number."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if raw.strip():
                yield number, raw


def check_input(path: str) -> int:
    """The number of requests in a Batch API input file; ValueError naming the first bad line.
    (Each request's body is checked again, whole, by ``batch_chat_completions``.)"""
    seen = set()
    for number, raw in read_lines(path):
        try:
            line = json.loads(raw)
        except ValueError:
            raise ValueError(f"{path} line {number} is not JSON") from None
        custom_id = line.get("custom_id") if isinstance(line, dict) else None
        if not isinstance(custom_id, str) or not custom_id:
            raise ValueError(f"{path} line {number}: custom_id must be a non-empty string")
        if custom_id in seen:
            raise ValueError(f"{path} line {number}: custom_id {custom_id!r} is repeated")
        seen.add(custom_id)
        if line.get("method", "POST") != "POST" or line.get("url") != CHAT_URL:
            raise ValueError(f"{path} line {number}: this DAG sends POST {CHAT_URL} only")
        if not isinstance(line.get("body"), dict):
            raise ValueError(f"{path} line {number}: body must be a JSON object")
    if not seen:
        raise ValueError(f"{path} holds no request")
    return len(seen)


def split_file(path: str, directory: str, shards: int) -> List[Dict[str, Any]]:
    """Cut the input into at most ``shards`` files of consecutive lines under ``directory``; one
    description per shard: its input file, its checkpoint (which is its output) and its size."""
    total = check_input(path)
    size = math.ceil(total / shards)
    os.makedirs(directory, exist_ok=True)
    parts: List[Dict[str, Any]] = []
    handle = None
    for position, (_, raw) in enumerate(read_lines(path)):
        if position % size == 0:
            if handle is not None:
                handle.close()
            index = len(parts)
            name = os.path.join(directory, f"shard-{index:04d}")
            parts.append({"index": index, "input": f"{name}.input.jsonl", "requests": 0})
            parts[-1]["output"] = f"{name}.output.jsonl"
            handle = open(parts[-1]["input"], "wb")  # noqa: SIM115 - closed at the next shard
        handle.write(raw if raw.endswith(b"\n") else raw + b"\n")
        parts[-1]["requests"] += 1
    if handle is not None:
        handle.close()
    return parts


def shard_requests(path: str) -> Iterator[Dict[str, Any]]:
    """A shard's lines as ``batch_chat_completions`` items: the body, and the custom_id."""
    for _, raw in read_lines(path):
        line = json.loads(raw)
        yield {**line["body"], "custom_id": line["custom_id"]}


def final_lines(checkpoint: str) -> Dict[str, bytes]:
    """Each custom_id's last line in a shard's checkpoint: an item that failed and was sent
    again by a rerun has its answer after its error."""
    last: Dict[str, bytes] = {}
    for _, raw in read_lines(checkpoint):
        last[json.loads(raw)["custom_id"]] = raw if raw.endswith(b"\n") else raw + b"\n"
    return last


def merge_files(shards: List[Dict[str, Any]], output: str) -> Dict[str, int]:
    """Write ``output``: for each input line, in input order, its shard's final answer line.
    ValueError if an input has none (its shard was stopped, by a 401 say: rerun that shard)."""
    answered = failed = 0
    partial = f"{output}.partial"
    with open(partial, "wb") as out:
        for shard in sorted(shards, key=lambda shard: shard["index"]):
            last = final_lines(shard["output"])
            for request in shard_requests(shard["input"]):
                line = last.get(request["custom_id"])
                if line is None:
                    raise ValueError(
                        f"shard {shard['index']}: {request['custom_id']!r} has no answer in "
                        f"{shard['output']}; run answer_shard[{shard['index']}] again"
                    )
                out.write(line)
                if json.loads(line).get("error") is None:
                    answered += 1
                else:
                    failed += 1
    os.replace(partial, output)  # readers never see half a file
    return {"answered": answered, "failed": failed}


def run_directory(work_dir: str, output: str, run_id: str) -> str:
    """Where a run keeps its shards: one directory per DAG run, so a rerun of a task finds the
    checkpoint its earlier try left."""
    base = work_dir or f"{output}.shards"
    return os.path.join(base, re.sub(r"[^A-Za-z0-9._-]", "_", run_id))


def output_path(params: Dict[str, Any]) -> str:
    return params["output"] or re.sub(r"(\.jsonl)?$", ".output.jsonl", params["input"], count=1)


@dag(
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["gatewayclient", "example"],
    params={
        "input": Param("", type="string", description="the Batch API input file (.jsonl)"),
        "output": Param("", type="string", description="where to write the answers"),
        "shards": Param(4, type="integer", minimum=1, description="parallel tasks"),
        "concurrency": Param(8, type="integer", minimum=1, description="calls per shard"),
        "work_dir": Param(
            "", type="string", description="shards' files (default: next to the output)"
        ),
        "gateway_conn_id": Param("gateway_default", type="string"),
    },
)
def gateway_batch():
    @task
    def split() -> List[Dict[str, Any]]:
        context = get_current_context()
        params = context["params"]
        if not params["input"]:
            raise ValueError("trigger with a conf naming the input file: {'input': '...'}")
        directory = run_directory(params["work_dir"], output_path(params), context["run_id"])
        return split_file(params["input"], directory, int(params["shards"]))

    @task
    def answer_shard(shard: Dict[str, Any]) -> Dict[str, Any]:
        params = get_current_context()["params"]
        with GatewayHook(params["gateway_conn_id"]).get_client() as client:
            results = client.batch_chat_completions(
                shard_requests(shard["input"]),
                concurrency=int(params["concurrency"]),
                checkpoint=shard["output"],
            )
        failed = sum(not result.ok for result in results)
        print(f"shard {shard['index']}: {len(results) - failed} answered, {failed} failed")
        return {"index": shard["index"], "answered": len(results) - failed, "failed": failed}

    @task
    def merge(shards: List[Dict[str, Any]], reports: List[Dict[str, Any]]) -> Dict[str, Any]:
        output = output_path(get_current_context()["params"])
        counts = merge_files(shards, output)
        print(f"{output}: {counts['answered']} answered, {counts['failed']} failed")
        return {"output": output, **counts}

    shards = split()
    merge(shards, answer_shard.expand(shard=shards))


gateway_batch_dag = gateway_batch()
