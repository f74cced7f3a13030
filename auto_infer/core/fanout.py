"""A cheap per-item check spread over every core with fork().

The cache audit stats every file of every extracted package (20,000 files: ~0.1 s on one core)
before an install may touch anything. Each item costs microseconds, so a worker must start in about
a millisecond: only fork() does (a new interpreter costs tens). The check runs on one core
otherwise, while the installer after it uses them all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def fork_map(fn: Callable[[T], Any], items: Sequence[T], *, per_worker: int = 32) -> list[Any]:
    """``[fn(x) for x in items]``, the items dealt out to up to one forked worker per core (at least
    ``per_worker`` each). ``fn`` must only read, and return JSON values. A worker that fails (killed,
    an error) has its share done again here, so its error is raised here, as without workers."""
    with start(fn, items, per_worker=per_worker) as pending:
        return pending.result()


class Pending:
    """:func:`start`'s workers, running while this process does something else; ``result()`` then
    does this process's share and collects theirs. Leaving the ``with`` block ends any worker
    whose result was not taken (an error, Ctrl-C): none outlives the block."""

    def __init__(self, fn: Callable[[Any], Any], items: Sequence[Any], own: range,
                 children: list[tuple[int, int, range]]):
        self._fn, self._items, self._own, self._children = fn, items, own, children
        self._taken = False

    def result(self) -> list[Any]:
        if self._taken:
            raise RuntimeError("a fan-out's result is taken once")
        self._taken = True
        fn, items = self._fn, self._items
        results: list[Any] = [None] * len(items)
        for i in self._own:
            results[i] = fn(items[i])
        while self._children:
            pid, fd, share = self._children[0]
            got = _collect(pid, fd, len(share))      # reads, then reaps: interrupted, it is ended below
            self._children.pop(0)
            for i, value in zip(share, got if got is not None else (fn(items[i]) for i in share), strict=True):
                results[i] = value
        return results

    def __enter__(self) -> Pending:
        return self

    def __exit__(self, *exc: object) -> None:
        children, self._children = self._children, []
        for pid, fd, _ in children:
            _end(pid, fd)


def start(fn: Callable[[T], Any], items: Sequence[T], *, per_worker: int = 32) -> Pending:
    """Fork the workers of :func:`fork_map` now and return at once (use it as a context manager):
    the work they do overlaps whatever this process does until ``result()``."""
    workers = min(os.cpu_count() or 1, len(items) // per_worker)
    if workers < 2 or not hasattr(os, "fork"):
        return Pending(fn, items, range(len(items)), [])
    shares = [range(w, len(items), workers) for w in range(workers)]
    children: list[tuple[int, int, range]] = []
    try:
        for share in shares[1:]:
            children.append((*_spawn(fn, items, share), share))
    except BaseException:
        for pid, fd, _ in children:
            _end(pid, fd)
        raise
    return Pending(fn, items, shares[0], children)


def _spawn(fn: Callable[[T], Any], items: Sequence[T], share: range) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:        # the worker: its share, as one JSON line, then leave with no cleanup of ours
        code = 1
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, "wb") as out:
                out.write(json.dumps([fn(items[i]) for i in share]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _collect(pid: int, fd: int, n: int) -> list[Any] | None:
    """The worker's results, or None when it did not finish (its share is then done here)."""
    with os.fdopen(fd, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    try:
        got = json.loads(data) if status == 0 else None
    except ValueError:
        return None
    return got if isinstance(got, list) and len(got) == n else None


def _end(pid: int, fd: int) -> None:
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except OSError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass
