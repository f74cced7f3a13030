"""doit configuration and the workarounds our notes verified (see docs/design.md).

* state in ``${WORKSPACE}/.auto-infer/doit.sqlite`` (sqlite3 backend, absolute path);
* sqlite3 made safe for two processes: commit on remove, 60 s busy timeout (doit holds a
  write lock after a failed task until exit otherwise);
* file_dep compared by sha256 content, not mtime (locks copied with preserved mtimes);
* a compact reporter on stderr, so stdout carries only what a task prints (``status --json``);
* actions wrapped so a user error is one clear message and a bug leaves a crash log.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doit.dependency import FileChangedChecker, SqliteDB
from doit.exceptions import TaskError, TaskFailed
from doit.reporter import ConsoleReporter

from auto_infer.core.errors import UserError, write_crash_log
from auto_infer.core.settings import Settings

CRASHED: list[str] = []   # crash log paths of this process; the CLI exits 3 when non-empty
RUN_LOCK = "run_lock"     # attribute of a task creator: its task changes state, so it takes the run lock
READ_ONLY = "read_only"   # attribute of a task creator: its task writes nothing (not even doit's state)


def takes_run_lock(creator: Callable[..., Any]) -> Callable[..., Any]:
    """Declare that a task changes the workspace: the CLI runs it under the run lock."""
    setattr(creator, RUN_LOCK, True)
    return creator


def read_only(creator: Callable[..., Any]) -> Callable[..., Any]:
    """Declare that a task only reads: the CLI keeps doit's state in memory for it (writes nothing)."""
    setattr(creator, READ_ONLY, True)
    return creator


class UsageExit(BaseException):
    """A mistyped command line: raised through doit (which catches Exception) to the CLI, exit 2."""


def crash(exc: BaseException) -> str:
    """The one handler for a bug: write the crash log, remember it (exit 3), return the short line."""
    from auto_infer.core.settings import load
    try:
        state = load().state_dir
    except Exception:   # noqa: BLE001 - a broken environment must not hide the crash
        state = None
    path = write_crash_log(state, exc)
    CRASHED.append(str(path))
    return f"internal error: {type(exc).__name__}: {exc} (traceback and versions in {path})"


def quiet_stdout() -> None:
    """The reader of our stdout went away (`auto-infer env | head -1`): drop the rest quietly."""
    import os
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _patch_sqlite() -> None:
    if getattr(SqliteDB, "_auto_infer_patched", False):
        return
    orig_open, orig_remove, orig_remove_all = SqliteDB._sqlite3, SqliteDB.remove, SqliteDB.remove_all

    def _sqlite3(self: Any, name: str) -> Any:
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        conn = orig_open(self, name)
        conn.execute("PRAGMA busy_timeout = 60000")
        return conn

    def remove(self: Any, task_id: str) -> None:
        orig_remove(self, task_id)
        self._conn.commit()

    def remove_all(self: Any) -> None:
        orig_remove_all(self)
        self._conn.commit()

    orig_dump = SqliteDB.dump

    def dump(self: Any) -> None:
        """Saving state must not turn a finished run into a failure: every task re-checks its own
        health, so a lost record only costs a re-check next time (disk full, read-only volume)."""
        import sqlite3
        try:
            orig_dump(self)
        except sqlite3.Error as exc:
            sys.stderr.write(f"⚠ WARNING: could not save doit's state ({exc}); the next run re-checks "
                             "every task instead of skipping it. Free space on the workspace volume.\n")

    SqliteDB._sqlite3, SqliteDB.remove, SqliteDB.remove_all = _sqlite3, remove, remove_all  # type: ignore[method-assign]
    SqliteDB.dump = dump  # type: ignore[method-assign]
    SqliteDB._auto_infer_patched = True  # type: ignore[attr-defined]


class ContentChecker(FileChangedChecker):
    """A file_dep changed when its sha256 changed (mtime is not trusted)."""

    def _digest(self, path: str) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def check_modified(self, file_path: str, file_stat: Any, state: Any) -> bool:
        return bool(state != self._digest(file_path))

    def get_state(self, dep: str, current_state: Any) -> Any:
        digest = self._digest(dep)
        return None if digest == current_state else digest


class Reporter(ConsoleReporter):
    desc = "auto-infer: one line per task on stderr"

    def __init__(self, outstream: Any, options: Any):
        super().__init__(sys.stderr, options)

    def execute_task(self, task: Any) -> None:
        if task.actions and task.name[0] != "_":
            self.write(f".  {task.title()}\n")

    def skip_uptodate(self, task: Any) -> None:
        if task.name[0] != "_":
            self.write(f"-- {task.title()} (up to date, skipped)\n")

    def _write_failure(self, result: Any, write_exception: bool = True) -> None:
        self.write(f"✗ {result['task'].name} failed:\n{result['exception'].get_msg().rstrip()}\n")

    def complete_run(self) -> None:
        if self.runtime_errors:
            self.write("Execution aborted.\n" + "\n".join(self.runtime_errors) + "\n")


def action(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """Wrap a doit-free function as a doit action with our three outcomes.

    ``functools.wraps`` exposes ``fn``'s signature, so doit passes task params (``--json``,
    positional args) whose names match ``fn``'s parameters."""
    @functools.wraps(fn)
    def run(**task_kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs, **task_kwargs)
        except UserError as exc:
            return TaskFailed(str(exc))
        except BrokenPipeError:
            quiet_stdout()
            return None
        except Exception as exc:  # a bug: short line + crash log
            return TaskError(crash(exc))
        return result if isinstance(result, dict) else None
    return run


def uptodate(check: Callable[..., bool]) -> Callable[..., bool]:
    """Wrap an up-to-date check: a user error there means "run the task" (its action then says
    what is wrong, clearly); a bug goes through the CLI's crash handler like any other."""
    @functools.wraps(check)         # keeps the signature: doit passes `task` to checks that take it
    def run(*args: Any, **kwargs: Any) -> bool:
        try:
            return bool(check(*args, **kwargs))
        except UserError:
            return False
    return run


def config(settings: Settings) -> dict[str, Any]:
    _patch_sqlite()
    return {
        "dep_file": str(settings.doit_db),
        "backend": "sqlite3",
        "check_file_uptodate": ContentChecker,
        "reporter": Reporter,
        "verbosity": 2,
        "default_tasks": ["install"],
        "action_string_formatting": "new",
    }
