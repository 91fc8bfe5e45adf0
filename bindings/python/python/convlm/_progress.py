"""How a training call shows its progress in Python: a ``tqdm.auto`` bar when tqdm is installed
(a widget in a notebook), else plain lines; the lines (validation loss, samples) as the
``convlm`` command prints them."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """A bar and lines, fed by the compiled module while a call runs."""

    #: Seconds between two plain progress lines (without tqdm).
    PLAIN_EVERY = 10.0

    def __init__(self) -> None:
        self._bar: Any = None
        self._plain: tuple[int, str] | None = None
        self._last_plain = 0.0
        try:
            from tqdm.auto import tqdm  # type: ignore[import-untyped, unused-ignore]
        except ImportError:
            tqdm = None
        self._tqdm = tqdm

    def start(self, total: int, initial: int, unit: str) -> None:
        """Starts a bar of ``total`` units (steps, seconds or bytes) at ``initial``."""
        self.close()
        if self._tqdm is not None:
            scale = unit == "B"
            self._bar = self._tqdm(total=total, initial=initial, unit=unit, unit_scale=scale, dynamic_ncols=True, leave=False)
        else:
            self._plain = (total, unit)
            self._last_plain = time.monotonic()

    def update(self, position: int, text: str) -> None:
        """Moves the bar to ``position`` with ``text`` beside it."""
        if self._bar is not None:
            self._bar.n = min(position, self._bar.total or position)
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.refresh()
        elif self._plain is not None and time.monotonic() - self._last_plain >= self.PLAIN_EVERY:
            self._last_plain = time.monotonic()
            total, unit = self._plain
            print(f"{position}/{total} {unit}  {text}", file=sys.stdout, flush=True)

    def write(self, line: str) -> None:
        """Prints a line (above the bar)."""
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line, file=sys.stdout, flush=True)

    def close(self) -> None:
        """Ends the bar (if any)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._plain = None
