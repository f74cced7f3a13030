"""Progress output: what is running, for how long, and a one-line result at the end.

:class:`Meter` is the byte view of a long transfer (warm's downloads, bundle export's writes):
on a terminal a live view drawn by tqdm (a total bar and one bar per artifact in flight), in a log
a plain line every ``every`` seconds, both with the same figures: bytes done of the total, rate,
time left, what is in flight. tqdm is a dependency already (huggingface_hub's own bars): small,
pure Python, thread-safe bars with rate and time left.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_SAY = threading.Lock()


_LIVE: list[Any] = []     # the live view drawn now, if any: lines are written above its bars


def say(message: str) -> None:
    """One line to stderr; one write under a lock, so lines from threads never interleave."""
    with _SAY:
        if _LIVE:
            _LIVE[0].write(message, file=sys.stderr)
            return
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def fmt_secs(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class Step:
    """A long step: prints a heartbeat every ``every`` seconds, and one result line."""

    def __init__(self, name: str, every: float = 15.0):
        self.name = name
        self.every = every
        self.t0 = time.monotonic()
        self.detail = ""
        self.quiet = False          # a Meter draws this step's progress now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def note(self, detail: str) -> None:
        self.detail = detail

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            if self.quiet:
                continue
            extra = f": {self.detail}" if self.detail else ""
            say(f"  … {self.name} still running ({fmt_secs(self.elapsed)}){extra}")

    def start(self, announce: bool = True) -> Step:
        if announce:
            say(f"→ {self.name}")
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()


@contextmanager
def step(name: str, every: float = 15.0) -> Iterator[Step]:
    s = Step(name, every).start()
    try:
        yield s
    except BaseException:
        s.stop()
        say(f"✗ {name} failed after {fmt_secs(s.elapsed)}")
        raise
    s.stop()
    result = f": {s.detail}" if s.detail else ""
    say(f"✓ {name} ({fmt_secs(s.elapsed)}){result}")
