"""Token usage totals per client: overall and per requested model, safe under threads and tasks."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

__all__ = ["UsageTotals", "UsageTracker"]


def _counts(usage: Any) -> Tuple[int, int, int]:
    """prompt, completion and total tokens of an answer's usage; anything odd counts 0."""
    if type(usage) is not dict:
        return 0, 0, 0
    return (
        _count(usage.get("prompt_tokens")),
        _count(usage.get("completion_tokens")),
        _count(usage.get("total_tokens")),
    )


def _count(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


@dataclass(frozen=True)
class UsageTotals:
    """Token counts and completed calls; an immutable snapshot."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0


class UsageTracker:
    """``client.usage``: ``total`` and ``by_model[model]``, updated by every completed call.

    One call counts once however many attempts it took; ``by_model`` is keyed by the model the
    caller asked for. Reads return snapshots, so iterating never races a writer.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = [0, 0, 0, 0]
        self._by_model: Dict[str, List[int]] = {}

    def record(self, model: str, usage: Any) -> None:
        prompt, completion, total = _counts(usage)
        with self._lock:
            row = self._by_model.get(model)
            if row is None:
                row = self._by_model[model] = [0, 0, 0, 0]
            for counters in (self._total, row):
                counters[0] += prompt
                counters[1] += completion
                counters[2] += total
                counters[3] += 1

    @property
    def total(self) -> UsageTotals:
        with self._lock:
            return UsageTotals(*self._total)

    @property
    def by_model(self) -> Dict[str, UsageTotals]:
        with self._lock:
            return {model: UsageTotals(*row) for model, row in self._by_model.items()}

    def reset(self) -> None:
        with self._lock:
            self._total = [0, 0, 0, 0]
            self._by_model = {}

    def __repr__(self) -> str:
        total = self.total
        return (
            f"UsageTracker(requests={total.requests}, prompt_tokens={total.prompt_tokens}, "
            f"completion_tokens={total.completion_tokens}, total_tokens={total.total_tokens})"
        )
