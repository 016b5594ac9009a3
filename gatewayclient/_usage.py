"""Token usage totals per client: overall and per requested model, safe under threads and tasks."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Dict

__all__ = ["UsageTotals", "UsageTracker"]


def _count(usage: Any, key: str) -> int:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass(frozen=True)
class UsageTotals:
    """Token counts and completed calls; an immutable snapshot."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0

    def add(self, usage: Any) -> UsageTotals:
        return UsageTotals(
            self.prompt_tokens + _count(usage, "prompt_tokens"),
            self.completion_tokens + _count(usage, "completion_tokens"),
            self.total_tokens + _count(usage, "total_tokens"),
            self.requests + 1,
        )


class UsageTracker:
    """``client.usage``: ``total`` and ``by_model[model]``, updated by every completed call.

    One call counts once however many attempts it took; ``by_model`` is keyed by the model the
    caller asked for. Reads return snapshots, so iterating never races a writer.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = UsageTotals()
        self._by_model: Dict[str, UsageTotals] = {}

    def record(self, model: str, usage: Any) -> None:
        with self._lock:
            self._total = self._total.add(usage)
            self._by_model[model] = self._by_model.get(model, UsageTotals()).add(usage)

    @property
    def total(self) -> UsageTotals:
        return self._total

    @property
    def by_model(self) -> Dict[str, UsageTotals]:
        with self._lock:
            return dict(self._by_model)

    def reset(self) -> None:
        with self._lock:
            self._total = UsageTotals()
            self._by_model = {}

    def __repr__(self) -> str:
        total = self._total
        return (
            f"UsageTracker(requests={total.requests}, prompt_tokens={total.prompt_tokens}, "
            f"completion_tokens={total.completion_tokens}, total_tokens={total.total_tokens})"
        )
