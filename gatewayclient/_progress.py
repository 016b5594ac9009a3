"""A batch's progress bar: tqdm on stderr, imported only when a bar is asked for."""

from __future__ import annotations

import sys
from typing import Any, Optional

from .errors import GatewayConfigError

__all__ = ["Progress"]


class Progress:
    """Done / total, rate, failures and tokens; does nothing at all when not ``enabled``."""

    def __init__(self, total: int, *, done: int = 0, unit: str = "req", enabled: bool) -> None:
        self.total = total
        self.done = done  # on file before the run
        self.failed = 0
        self.tokens = 0
        self._bar: Optional[Any] = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError as exc:
                raise GatewayConfigError(
                    "progress=True draws its bar with tqdm, which is not installed: "
                    "pip install 'gatewayclient[progress]'"
                ) from exc

            self._bar = tqdm(
                total=total,
                initial=done,
                unit=unit,
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
            )
            self._bar.set_postfix(failed=0, tokens=0, refresh=False)

    @property
    def shown(self) -> bool:
        """Whether a bar is drawn (else ``advance`` need not be called)."""
        return self._bar is not None

    def advance(self, done: int, failed: int, tokens: int) -> None:
        """``done`` more finished, ``failed`` of them with an error, using ``tokens``."""
        bar = self._bar
        if bar is None:
            return
        if failed or tokens:
            self.failed += failed
            self.tokens += tokens
            bar.set_postfix(failed=self.failed, tokens=self.tokens, refresh=False)
        bar.update(done)

    def close(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()
