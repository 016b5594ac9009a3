"""A plain blocking script: ask the gateway a few questions, then print what they cost.

The gateway comes from the environment, as in a real deployment::

    export PLATFORM_API_URL=https://gateway.example.com   # the /v1 prefix is added for you
    export AUTH_TOKEN=...                                 # sent as "Authorization: Bearer ..."
    python examples/sync_script.py "What is the capital of France?" "And of Italy?"
"""

import sys

from gatewayclient import GatewayClientError, SyncGatewayClient

MODEL = "openai/gpt-4o-mini"
SYSTEM = {"role": "system", "content": "You answer in one short sentence."}
DEFAULT_QUESTIONS = ["What is the capital of France?", "Name a prime number above 10."]


def main(questions):
    # No arguments: base_url and auth_token are read from PLATFORM_API_URL and AUTH_TOKEN.
    # The `with` block closes the pooled connections when the script is done.
    with SyncGatewayClient(timeout=30) as client:
        for question in questions:
            messages = [SYSTEM, {"role": "user", "content": question}]
            answer = client.chat_completion(MODEL, messages, temperature=0.2, max_tokens=200)
            print(f"Q: {question}")
            print(f"A: {answer.choices[0].message.content}")
            # Each answer carries its own usage...
            print(f"   ({answer.usage.total_tokens} tokens)")

        # ...and the client keeps running totals, overall and per model.
        total = client.usage.total
        print(
            f"usage: {total.requests} requests, {total.prompt_tokens} prompt + "
            f"{total.completion_tokens} completion = {total.total_tokens} tokens"
        )
        for model, used in client.usage.by_model.items():
            print(f"usage[{model}]: {used.total_tokens} tokens in {used.requests} requests")


if __name__ == "__main__":
    try:
        main(sys.argv[1:] or DEFAULT_QUESTIONS)
    except GatewayClientError as exc:  # every gatewayclient error, config included
        sys.exit(f"gateway error: {exc}")
