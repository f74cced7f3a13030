"""One file lock around work that must not run twice at once, with a bounded, visible wait."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from auto_infer.core.errors import UserError
from auto_infer.core.progress import fmt_secs, say

_HELD: list[Callable[[], None]] = []       # releases of the locks `exclusive` holds in this process


def release_held() -> int:
    """Release every lock this process holds through :func:`exclusive` before its ``with`` ends (a
    foreground run whose start is done, e.g. ``supervise`` once its servers run, so that the other
    pods on a shared workspace can start theirs). Returns how many were released."""
    count = len(_HELD)
    while _HELD:
        _HELD.pop()()
    return count


@contextmanager
def if_free(lock_path: Path) -> Iterator[bool]:
    """Hold ``lock_path`` for the block when no other run holds it now (True), else do not wait (False)."""
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _owner(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info.get('pid')} running `{info.get('what')}` since {info.get('since')}"
    except (OSError, ValueError):
        return "another auto-infer process"


@contextmanager
def exclusive(lock_path: Path, what: str, timeout: float, poll: float = 0.2) -> Iterator[float]:
    """Hold ``lock_path``; yield how long we waited. Say who holds it while waiting."""
    owner_path = lock_path.with_suffix(lock_path.suffix + ".owner")
    lock = FileLock(str(lock_path))
    t0 = time.monotonic()
    next_note = 0.0
    contended = False
    while True:
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=poll)
            break
        except Timeout:
            contended = True
            waited = time.monotonic() - t0
            if waited >= next_note:
                say(f"  … waiting for {_owner(owner_path)} ({fmt_secs(waited)})")
                next_note = waited + 10.0
            if waited >= timeout:
                raise UserError(
                    f"gave up waiting for the lock after {fmt_secs(waited)}: held by {_owner(owner_path)}",
                    where=str(lock_path),
                    fix="wait for that run to finish, or raise AUTO_INFER_LOCK_TIMEOUT",
                ) from None
        except OSError as exc:  # a read-only mount, no permission (after Timeout: it is an OSError too)
            raise UserError(
                f"cannot take the lock {lock_path}: {exc.strerror or exc}",
                where=str(lock_path.parent),
                fix="make that folder writable (a read-only mount? mount the workspace read-write)",
            ) from None
    waited = time.monotonic() - t0
    released: list[bool] = []

    def release() -> None:
        if released:
            return
        released.append(True)
        try:
            owner_path.unlink()
        except OSError:
            pass
        lock.release()
    _HELD.append(release)
    try:
        try:       # who holds it, for the others' waiting line: best effort (a full disk must not stop us here)
            owner_path.write_text(json.dumps({"pid": os.getpid(), "what": what,
                                              "since": time.strftime("%H:%M:%S")}))
        except OSError:
            pass
        if contended:
            say(f"  already running elsewhere: waited {fmt_secs(waited)} for it, now re-checking")
        yield waited
    finally:
        if release in _HELD:
            _HELD.remove(release)
        release()
