"""Semantic search in a few lines: embed documents and a query, rank by cosine similarity.

One embeddings call covers the query and every document; the ranking is plain Python.

    export PLATFORM_API_URL=https://gateway.example.com AUTH_TOKEN=...
    python examples/embeddings.py "how do I reset my password?"
"""

import math
import sys

from gatewayclient import SyncGatewayClient

MODEL = "openai/text-embedding-3-small"
DOCUMENTS = [
    "To reset your password, open Settings and choose 'Forgot password'.",
    "Invoices are sent by email on the first day of each month.",
    "Our office is closed on public holidays.",
    "Two-factor authentication can be enabled under Security.",
]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def rank(client, query, documents):
    """(score, document) pairs, best match first."""
    # One request for the query and all documents: `input` takes a list of strings.
    response = client.embeddings(MODEL, [query, *documents])
    # Each item says which input it belongs to; order by `index` rather than trusting position.
    vectors = [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
    query_vector, document_vectors = vectors[0], vectors[1:]
    scores = [cosine(query_vector, vector) for vector in document_vectors]
    return sorted(zip(scores, documents), reverse=True)


def main(query):
    with SyncGatewayClient() as client:
        for position, (score, document) in enumerate(rank(client, query, DOCUMENTS), 1):
            print(f"{position}. {score:+.4f}  {document}")
        print(f"[{client.usage.total.prompt_tokens} tokens embedded]")


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "how do I reset my password?")
