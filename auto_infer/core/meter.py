"""The byte view of a long transfer: bytes done of the total, rate, time left, what is in flight.

On a terminal (stderr is a tty) a live view drawn by tqdm: one total bar and one bar per artifact
in flight, redrawn by one thread a few times a second (the downloading threads only add numbers
under a lock). In a log or under the boot hook: a plain line every ``every`` seconds
(AUTO_INFER_PROGRESS_INTERVAL) with the same figures. Bytes that other code writes where we can
only look (huggingface_hub's files) come in through ``watch(fn)``: ``fn()`` returns how many bytes
are on disk now.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from auto_infer.core import progress
from auto_infer.core.progress import Step, fmt_secs, say

REDRAW = 0.5         # seconds between two frames of the live view
WINDOW = 10.0        # seconds of history the rate is measured over


def mb(n: float) -> str:
    """A byte count for people: kB under a megabyte, GB from 10 GB on, MB between."""
    if n >= 1e10:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB" if abs(n) >= 1e5 else f"{n / 1e3:.1f} kB"


def _eta(secs: float) -> str:
    if secs < 3600:
        return fmt_secs(secs)
    return f"{int(secs // 3600)}h{int(secs % 3600 // 60):02d}m" if secs < 86400 * 7 else "more than a week"


def is_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"


class Meter:
    """``with Meter("warm", total, have, every, step) as m:`` … ``m.begin(name, size, have)``,
    ``m.add(n, name)``, ``m.end(name)``; ``total`` and ``have`` count every byte (``have``: already here)."""

    def __init__(self, label: str, total: int, have: int = 0, every: float = 10.0, step: Step | None = None,
                 live: bool | None = None):
        self.label, self.total, self.have, self.every, self.step = label, total, have, every, step
        self.live = is_terminal() if live is None else live
        self.got = 0                                   # bytes received in this run
        self.items: dict[str, list[int]] = {}          # in flight: name -> [done, size]
        self.watched: list[Callable[[], int]] = []
        self.flying: list[Callable[[], dict[str, list[int]]]] = []     # in flight, seen from outside
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.samples: deque[tuple[float, int]] = deque([(self.t0, have)])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bars: dict[str, Any] = {}

    # ---- figures (any thread) -----------------------------------------------------
    def add(self, n: int, name: str | None = None) -> None:
        with self.lock:
            self.got += n
            if name in self.items:
                self.items[name][0] += n

    def begin(self, name: str, size: int, have: int = 0) -> None:
        with self.lock:
            self.items[name] = [have, size]

    def end(self, name: str) -> None:
        with self.lock:
            self.items.pop(name, None)

    def grow(self, n: int) -> None:
        """The total learns a size late (a wheel: the lock has none, the response says it)."""
        with self.lock:
            self.total += n

    def drop(self, n: int) -> None:
        """``n`` bytes counted as here are gone (a partial file started over or thrown away)."""
        with self.lock:
            self.have -= n

    def watch_flight(self, fn: Callable[[], dict[str, list[int]]]) -> None:
        """``fn()``: what is in flight now, name -> [bytes done, size], for bytes only seen on disk."""
        with self.lock:
            self.flying.append(fn)

    def in_flight(self) -> dict[str, list[int]]:
        with self.lock:
            out = {n: list(v) for n, v in self.items.items()}
            fns = list(self.flying)
        for fn in fns:
            try:
                out.update(fn())
            except OSError:
                pass
        return out

    def watch(self, fn: Callable[[], int]) -> None:
        with self.lock:
            self.watched.append(fn)

    def done(self) -> int:
        extra = 0
        for fn in list(self.watched):
            try:
                extra += fn()
            except OSError:
                pass
        with self.lock:
            return min(self.have + self.got + extra, self.total) if self.total else self.got + extra

    def rate(self, done: int | None = None) -> float:
        """Bytes per second over the last WINDOW seconds (of ``done``: watched bytes count too)."""
        now, got = time.monotonic(), self.done() if done is None else done
        self.samples.append((now, got))
        while len(self.samples) > 2 and now - self.samples[1][0] > WINDOW:
            self.samples.popleft()
        t, n = self.samples[0]
        return max(got - n, 0) / (now - t) if now > t else 0.0

    def line(self) -> str:
        done = self.done()
        rate = self.rate(done)
        pct = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        left = f", about {_eta((self.total - done) / rate)} left" if rate > 0 and self.total > done else ""
        flight = [f"{n} {100 * d / s:.0f}%" if s else n for n, (d, s) in self.in_flight().items()]
        shown = "; in flight: " + ", ".join(flight[:4]) + (f" +{len(flight) - 4}" if len(flight) > 4 else "") \
            if flight else ""
        return f"{self.label}: {mb(done)} of {mb(self.total)}{pct}, {mb(rate)}/s{left}{shown}"

    def summary(self) -> str:
        secs = time.monotonic() - self.t0
        return f"{mb(self.got)} received in {fmt_secs(secs)} ({mb(self.got / secs if secs else 0)}/s)"

    # ---- drawing (one thread) -----------------------------------------------------
    def _frame(self) -> None:
        main = self._bars["\0"]
        main.total = self.total or None
        main.update(self.done() - main.n)
        flight = self.in_flight()
        main.set_postfix_str(f"{len(flight)} in flight", refresh=False)
        for name in [n for n in self._bars if n != "\0" and n not in flight]:
            self._bars.pop(name).close()
        for name, (d, s) in flight.items():
            bar = self._bars.get(name) or self._bar(name[-40:], s, leave=False)
            self._bars[name] = bar
            bar.update(d - bar.n)
        main.refresh()

    def _bar(self, desc: str, total: int, leave: bool) -> Any:
        from tqdm import tqdm
        return tqdm(total=total or None, desc=desc, unit="B", unit_scale=True, unit_divisor=1000, leave=leave,
                    file=sys.stderr, dynamic_ncols=True, mininterval=REDRAW, smoothing=0.1)

    def _run(self) -> None:
        wait = REDRAW if self.live else self.every
        while not self._stop.wait(wait):
            if self.live:
                self._frame()
            else:
                say(f"  … {self.line()}")

    def __enter__(self) -> Meter:
        if self.step is not None:
            self.step.quiet = True
        if self.live:
            main = self._bar(self.label, self.total, leave=False)
            main.update(self.have)
            self._bars["\0"] = main
            progress._LIVE.insert(0, main)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.live:
            progress._LIVE.clear()
            for bar in reversed(list(self._bars.values())):
                bar.close()
            self._bars.clear()
        if self.step is not None:
            self.step.quiet = False
