"""Handling the gateway's failures: typed errors, retries, timeouts and a fallback model.

What the client does by itself: it retries 429, 5xx, dropped connections and timeouts
(``max_retries`` times, exponential backoff with jitter, or exactly as long as the gateway's
``Retry-After`` says), and logs each retry on the ``gatewayclient`` logger at WARNING. What is
left to you: the typed errors below, once the retries are spent or when retrying cannot help.

    export PLATFORM_API_URL=https://gateway.example.com AUTH_TOKEN=...
    python examples/error_handling.py --model openai/gpt-4o "Hello?"
    python examples/error_handling.py --timeout 5 --max-retries 4 "Hello?"
"""

import argparse
import logging
import sys

from gatewayclient import (
    GatewayAuthError,
    GatewayClientError,
    GatewayConfigError,
    GatewayConnectionError,
    GatewayModelNotFoundError,
    GatewayProviderError,
    GatewayRateLimitError,
    GatewayTimeoutError,
    GatewayValidationError,
    SyncGatewayClient,
)


def ask(client, model, fallback, question):
    messages = [{"role": "user", "content": question}]
    try:
        return client.chat_completion(model, messages)
    except GatewayModelNotFoundError as exc:  # 404: a typo, or a model the gateway dropped
        print(f"model {model!r} not found ({exc.message}); falling back to {fallback!r}")
        return client.chat_completion(fallback, messages)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="Say hello.")
    parser.add_argument("--model", default="openai/gpt-4o")
    parser.add_argument("--fallback-model", default="openai/gpt-4o-mini")
    parser.add_argument("--timeout", type=float, default=30.0, help="connect / read, seconds")
    parser.add_argument("--max-retries", type=int, default=2, help="retries, not attempts")
    parser.add_argument("--max-retry-after", type=float, default=20.0)
    args = parser.parse_args(argv)

    # Show the client's retry warnings ("... failed (HTTP 502: ...); retry 1 of 2 in 0.31 s").
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    try:
        client = SyncGatewayClient(
            timeout=args.timeout,  # bounds the connect and each wait for bytes, not the call
            max_retries=args.max_retries,  # 0: exactly one attempt
            # A Retry-After longer than this is not waited for: the error is raised at once.
            max_retry_after=args.max_retry_after,
        )
    except GatewayConfigError as exc:  # no PLATFORM_API_URL, a malformed URL, ...
        print(f"configuration: {exc}", file=sys.stderr)
        return 78

    # The exit codes follow sysexits.h, so a supervisor can tell "retry later" (75) from
    # "fix the configuration" (77, 78).
    with client:
        try:
            answer = ask(client, args.model, args.fallback_model, args.question)
        except GatewayAuthError as exc:  # 401/403: retrying will not help, the token is wrong
            print(f"auth failed (HTTP {exc.status_code}): check AUTH_TOKEN", file=sys.stderr)
            return 77
        except GatewayRateLimitError as exc:  # 429 after the retries, or a wait too long
            when = f"in {exc.retry_after:g} s" if exc.retry_after is not None else "later"
            print(f"rate limited: try again {when}", file=sys.stderr)
            return 75
        except GatewayProviderError as exc:  # 502: the upstream LLM provider failed
            print(f"provider failed: {exc.message} (request id {exc.request_id})", file=sys.stderr)
            return 69
        except GatewayTimeoutError:  # check it before its base class, GatewayConnectionError
            print(f"timed out after {args.timeout:g} s per attempt", file=sys.stderr)
            return 69
        except GatewayConnectionError as exc:  # refused, reset, dropped
            print(exc, file=sys.stderr)  # "cannot connect to the gateway at ...: ..."
            return 69
        except GatewayValidationError as exc:  # bad arguments; nothing was sent
            print(f"invalid request: {exc}", file=sys.stderr)
            return 64
        except GatewayClientError as exc:  # anything else: 500s, 400s, malformed bodies, ...
            print(f"gateway error: {exc!r}", file=sys.stderr)
            return 1

    print(answer.choices[0].message.content)
    return 0


if __name__ == "__main__":
    sys.exit(main())
