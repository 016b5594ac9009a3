"""Batch API input files for the tests, and reading back what the DAG and the gateway saw."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List

from gatewayclient.testing import expected_reply

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-20250414", "google/gemini-2.0-flash"]
MAX_TOKENS = 16
_ASKED = re.compile(r"^Request (row-\d+):")


def input_lines(count: int) -> List[Dict[str, Any]]:
    """``count`` chat requests, each naming its custom_id in its text (how the gateway's
    record of a request tells which line it came from)."""
    return [
        {
            "custom_id": f"row-{number:04d}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": MODELS[number % len(MODELS)],
                "messages": [
                    {
                        "role": "user",
                        "content": f"Request row-{number:04d}: summarise the rate budget in a "
                        "few words.",
                    }
                ],
                "max_tokens": MAX_TOKENS,
            },
        }
        for number in range(count)
    ]


def write_lines(path: Path, lines: List[Dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def read_lines(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def asked_for(content: str) -> str:
    """The custom_id whose request carried this message text."""
    found = _ASKED.match(content)
    assert found, content
    return found.group(1)


def check_output(output: Path, inputs: List[Dict[str, Any]], request_ids: set) -> None:
    """The merged output answers every input exactly once, in input order, each with the
    gateway's answer to that very request."""
    lines = read_lines(output)
    assert [line["custom_id"] for line in lines] == [line["custom_id"] for line in inputs]
    for line, request in zip(lines, inputs):
        assert line["error"] is None, line
        response = line["response"]
        assert response["status_code"] == 200
        assert response["request_id"] in request_ids
        body = request["body"]
        expected = expected_reply(body["model"], body["messages"], body["max_tokens"])
        assert response["body"]["choices"][0]["message"]["content"] == expected
