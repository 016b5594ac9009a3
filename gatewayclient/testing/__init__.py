"""Test support: FakeGateway, a real HTTP server speaking the gateway API on loopback, and the
pure functions that compute what it answers (see ``_catalog`` for the formulas)."""

from ._catalog import (
    MODELS,
    PROVIDERS,
    CatalogModel,
    count_tokens,
    encode_embedding,
    expected_embedding,
    expected_finish_reason,
    expected_reply,
    expected_tool_arguments,
    expected_tool_call,
    expected_usage,
    message_text,
)
from ._faults import Fault
from ._gateway import FakeGateway
from ._state import Arrival, RecordedRequest

__all__ = [
    "MODELS",
    "Arrival",
    "PROVIDERS",
    "CatalogModel",
    "FakeGateway",
    "Fault",
    "RecordedRequest",
    "count_tokens",
    "encode_embedding",
    "expected_embedding",
    "expected_finish_reason",
    "expected_reply",
    "expected_tool_arguments",
    "expected_tool_call",
    "expected_usage",
    "message_text",
]
