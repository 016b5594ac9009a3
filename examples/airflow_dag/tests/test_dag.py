"""The example DAG run end to end with ``dag.test()`` against a FakeGateway and a real Redis
budget, then its file handling (split, merge) at its edges."""

from __future__ import annotations

import collections
import json
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from batch_files import asked_for, check_output, input_lines, read_lines, write_lines
from conftest import DAGS, HOME
from redis_server import RedisServer

from gatewayclient.testing import FakeGateway

TOKEN = "sk-gateway-dag-test-5ecret-token"


@pytest.fixture(scope="module")
def dag_module() -> Iterator[Any]:
    """The DAG file as deployed in the DAGs folder (dag.test() runs only what a bundle holds)."""
    sys.path.insert(0, str(DAGS))
    try:
        import gateway_batch_dag

        yield gateway_batch_dag
    finally:
        sys.path.remove(str(DAGS))


def logs_under(directory: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in directory.rglob("*") if p.is_file())


def test_dag_test_answers_every_line_once_under_the_connections_redis_budget(
    dag_module: Any,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    inputs = input_lines(30)
    source = write_lines(tmp_path / "requests.jsonl", inputs)
    output = tmp_path / "answers.jsonl"
    budget = {"requests": 100, "per": 1.0, "storage": redis_server.url, "key": uuid.uuid4().hex}
    with redis_server.client() as redis:
        redis.config_resetstat()
    with FakeGateway(token=TOKEN) as gw:
        conn = {"conn_type": "gateway", "host": gw.url, "password": TOKEN}
        conn["extra"] = {"timeout": 30, "rate_limit": budget}
        monkeypatch.setenv("AIRFLOW_CONN_GATEWAY_DEFAULT", json.dumps(conn))
        conf = {"input": str(source), "output": str(output), "shards": 3, "concurrency": 4}
        run = dag_module.gateway_batch_dag.test(run_conf=conf)
        recorded = gw.requests

    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    expected = {("split", -1), ("merge", -1)} | {("answer_shard", i) for i in range(3)}
    assert states == dict.fromkeys(expected, "success")
    assert run.state == "success"
    check_output(output, inputs, {r.request_id for r in recorded})
    asked = collections.Counter(asked_for(r.json["messages"][0]["content"]) for r in recorded)
    assert asked == collections.Counter(line["custom_id"] for line in inputs)  # each once
    with redis_server.client() as redis:
        scripts = redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert scripts >= len(inputs)  # every request took its place in the Redis window
    out, err = capfd.readouterr()
    logs = out + err + logs_under(HOME / "logs")
    assert "shard 2: 10 answered, 0 failed" in logs  # the task logs are the ones read here
    assert TOKEN not in logs


# -- split and merge ---------------------------------------------------------------------------


def test_split_cuts_consecutive_lines_into_shards(dag_module: Any, tmp_path: Path) -> None:
    inputs = input_lines(10)
    source = write_lines(tmp_path / "in.jsonl", inputs)
    shards = dag_module.split_file(str(source), str(tmp_path / "run"), 4)
    assert [shard["requests"] for shard in shards] == [3, 3, 3, 1]
    assert [shard["index"] for shard in shards] == [0, 1, 2, 3]
    cut = [line for shard in shards for line in read_lines(Path(shard["input"]))]
    assert cut == inputs
    assert shards[2]["output"] == str(tmp_path / "run" / "shard-0002.output.jsonl")
    more = dag_module.split_file(str(source), str(tmp_path / "many"), 50)
    assert [shard["requests"] for shard in more] == [1] * 10


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("not json", "line 2 is not JSON"),
        ('{"custom_id": "row-0000", "url": "/v1/chat/completions", "body": {}}', "repeated"),
        ('{"custom_id": "x", "url": "/v1/embeddings", "body": {}}', "POST /v1/chat/completions"),
        ('{"custom_id": "x", "url": "/v1/chat/completions", "body": []}', "body must be"),
        ('{"url": "/v1/chat/completions", "body": {}}', "custom_id must be"),
    ],
)
def test_split_refuses_a_bad_line_naming_it(
    dag_module: Any, tmp_path: Path, line: str, words: str
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(input_lines(1)[0]) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=words):
        dag_module.split_file(str(source), str(tmp_path / "run"), 2)
    assert not (tmp_path / "run").exists()  # checked before any shard is written


def test_split_refuses_an_empty_file(dag_module: Any, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n")
    with pytest.raises(ValueError, match="holds no request"):
        dag_module.split_file(str(source), str(tmp_path / "run"), 2)


def answer(custom_id: str, content: str) -> Dict[str, Any]:
    body = {"choices": [{"message": {"role": "assistant", "content": content}}]}
    response = {"status_code": 200, "request_id": f"req-{content}", "body": body}
    return {
        "id": f"batch_req_{content}",
        "custom_id": custom_id,
        "response": response,
        "error": None,
    }


def failure(custom_id: str) -> Dict[str, Any]:
    error = {"code": "server_error", "message": "HTTP 502"}
    return {"id": "batch_req_x", "custom_id": custom_id, "response": None, "error": error}


def two_shards(tmp_path: Path, first: List[Dict[str, Any]], second: List[Dict[str, Any]]) -> Any:
    inputs = input_lines(4)
    shards = []
    for index, (lines, answers) in enumerate([(inputs[:2], first), (inputs[2:], second)]):
        shard = {"index": index, "input": str(write_lines(tmp_path / f"{index}.in", lines))}
        shard["output"] = str(write_lines(tmp_path / f"{index}.out", answers))
        shards.append(shard)
    return shards


def test_merge_keeps_input_order_and_each_items_last_line(dag_module: Any, tmp_path: Path) -> None:
    # A checkpoint in finishing order; row-0000 failed, then a rerun answered it.
    first = [failure("row-0000"), answer("row-0001", "b"), answer("row-0000", "a")]
    second = [answer("row-0003", "d"), failure("row-0002")]
    shards = two_shards(tmp_path, first, second)
    output = tmp_path / "merged.jsonl"
    counts = dag_module.merge_files(list(reversed(shards)), str(output))
    assert counts == {"answered": 3, "failed": 1}
    assert read_lines(output) == [
        answer("row-0000", "a"),
        answer("row-0001", "b"),
        failure("row-0002"),
        answer("row-0003", "d"),
    ]
    assert not Path(f"{output}.partial").exists()


def test_merge_refuses_an_input_without_an_answer(dag_module: Any, tmp_path: Path) -> None:
    shards = two_shards(tmp_path, [answer("row-0000", "a"), answer("row-0001", "b")], [])
    output = tmp_path / "merged.jsonl"
    with pytest.raises(ValueError, match=r"shard 1: 'row-0002' has no answer .* answer_shard\[1\]"):
        dag_module.merge_files(shards, str(output))
    assert not output.exists()


def test_each_run_has_a_directory_of_its_own(dag_module: Any) -> None:
    where = dag_module.run_directory("", "/data/out.jsonl", "manual__2025-01-01T00:00:00+00:00")
    assert where == "/data/out.jsonl.shards/manual__2025-01-01T00_00_00_00_00"
    assert dag_module.run_directory("/srv/shards", "/data/out.jsonl", "r1") == "/srv/shards/r1"
