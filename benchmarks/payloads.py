"""The fixed answers every benchmark server sends: bytes built once, the same for every client."""

from __future__ import annotations

import json
import random

MODEL = "openai/gpt-4o"
MESSAGES = [{"role": "user", "content": "hi"}]
EMBEDDING_MODEL = "openai/text-embedding-3-small"
EMBEDDING_DIMENSIONS = 1536
STREAM_CHUNKS = 1000


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


CHAT = _dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I help you today?",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 9,
            "total_tokens": 18,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": "fp_bench",
    }
)

_rng = random.Random(1536)
EMBEDDINGS = (
    b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":['
    + ",".join(f"{_rng.uniform(-0.1, 0.1):.10f}" for _ in range(EMBEDDING_DIMENSIONS)).encode()
    + b']}],"model":"text-embedding-3-small","usage":{"prompt_tokens":1,"total_tokens":1}}'
)


def _chunk(index: int) -> bytes:
    delta = {"role": "assistant", "content": ""} if index == 0 else {"content": f" w{index:05d}"}
    last = index == STREAM_CHUNKS - 1
    return _dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": "stop" if last else None,
                }
            ],
        }
    )


# One element per write: 1,000 chunk events, then the end marker.
STREAM_EVENTS = [b"data: " + _chunk(i) + b"\n\n" for i in range(STREAM_CHUNKS)]
STREAM_EVENTS.append(b"data: [DONE]\n\n")
