"""Streaming: print the answer as it arrives, with the sync and with the async client.

After the stream ends, ``stream.completion()`` gives the whole answer as one ChatCompletion
(text, finish reason, usage) and ``stream.usage`` the tokens it cost.

    export PLATFORM_API_URL=https://gateway.example.com AUTH_TOKEN=...
    python examples/streaming.py "Tell me about rivers"
"""

import asyncio
import sys

from gatewayclient import AsyncGatewayClient, SyncGatewayClient

MODEL = "openai/gpt-4o-mini"


def stream_sync(client, messages):
    # `with` the stream: leaving the block early (break, exception) frees the connection.
    with client.stream_chat_completion(MODEL, messages, max_tokens=200) as stream:
        for chunk in stream:
            # The first chunk carries only the role, so its content is None.
            print(chunk.choices[0].delta.content or "", end="", flush=True)
        print()
        report(stream.completion(), stream.usage)


async def stream_async(gateway, messages):
    # No `await` before stream_chat_completion(): the request goes out on first iteration.
    async with gateway.stream_chat_completion(MODEL, messages, max_tokens=200) as stream:
        async for chunk in stream:
            print(chunk.choices[0].delta.content or "", end="", flush=True)
        print()
        report(stream.completion(), stream.usage)


def report(completion, usage):
    choice = completion.choices[0]
    print(f"[{len(choice.message.content)} characters, finish_reason={choice.finish_reason}]")
    # The client asks for usage in the stream (stream_options.include_usage) by itself.
    if usage is not None:
        print(f"[usage: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion]")


async def main_async(messages):
    # The async client belongs in a coroutine: its session is made inside the running loop.
    async with AsyncGatewayClient() as gateway:
        await stream_async(gateway, messages)


if __name__ == "__main__":
    question = " ".join(sys.argv[1:]) or "Write a haiku about the sea."
    messages = [{"role": "user", "content": question}]
    print("--- sync")
    with SyncGatewayClient() as client:
        stream_sync(client, messages)
    print("--- async")
    asyncio.run(main_async(messages))
