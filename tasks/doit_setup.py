"""doit's configuration and the workarounds our notes verified (see docs/design.md).

* state in ``${WORKSPACE}/.auto-infer/doit.sqlite`` (sqlite3 backend, absolute path), created only
  when a task has something to save: `list`, `help`, a usage error write nothing;
* sqlite3 made safe for two processes: commit on remove, 60 s busy timeout (doit holds a
  write lock after a failed task until exit otherwise);
* file_dep compared by sha256 content, not mtime (locks copied with preserved mtimes);
* a compact reporter on stderr, so stdout carries only what a task prints (``status --json``).
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
from pathlib import Path
from typing import Any

from doit.dependency import FileChangedChecker, SqliteDB
from doit.reporter import ConsoleReporter

from auto_infer.core.errors import Carried
from auto_infer.core.settings import Settings


def _patch_sqlite() -> None:
    if getattr(SqliteDB, "_auto_infer_patched", False):
        return
    orig_open, orig_remove, orig_remove_all = SqliteDB._sqlite3, SqliteDB.remove, SqliteDB.remove_all
    orig_dump = SqliteDB.dump

    def _sqlite3(self: Any, name: str) -> Any:
        """A state file that does not exist yet stays in memory until there is something to save."""
        self._auto_infer_file = None
        if name != ":memory:" and not Path(name).exists():
            self._auto_infer_file, name = name, ":memory:"
        conn = orig_open(self, name)
        conn.execute("PRAGMA busy_timeout = 60000")
        return conn

    def remove(self: Any, task_id: str) -> None:
        orig_remove(self, task_id)
        self._conn.commit()

    def remove_all(self: Any) -> None:
        orig_remove_all(self)
        self._conn.commit()

    def dump(self: Any) -> None:
        """Saving state must not turn a finished run into a failure: every task re-checks its own
        health, so a lost record only costs a re-check next time (disk full, read-only volume)."""
        try:
            if self._auto_infer_file and self._dirty:
                Path(self._auto_infer_file).parent.mkdir(parents=True, exist_ok=True)
                self._conn.close()
                self._conn = orig_open(self, self._auto_infer_file)
                self._conn.execute("PRAGMA busy_timeout = 60000")
            orig_dump(self)
        except (sqlite3.Error, OSError) as exc:
            sys.stderr.write(f"⚠ WARNING: could not save doit's state ({exc}); the next run re-checks "
                             "every task instead of skipping it. Free space on the workspace volume.\n")

    SqliteDB._sqlite3 = _sqlite3  # type: ignore[method-assign]
    SqliteDB.remove, SqliteDB.remove_all = remove, remove_all  # type: ignore[method-assign]
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
    """One line per step on stderr, when a command runs more than one step (`install`: template,
    install); a command of one step (`status`, `env`, `bundle`) prints only its own output."""

    desc = "auto-infer: one line per task on stderr"

    def __init__(self, outstream: Any, options: Any):
        super().__init__(sys.stderr, options)
        self.steps = 2
        self.running = ""

    def initialize(self, tasks: dict[str, Any], selected_tasks: list[str]) -> None:
        todo, seen = list(selected_tasks), set()
        while todo:
            name = todo.pop()
            if name in seen or name not in tasks:
                continue
            seen.add(name)
            todo += [*tasks[name].task_dep, *tasks[name].setup_tasks]
        self.steps = sum(1 for n in seen if tasks[n].actions)

    def execute_task(self, task: Any) -> None:
        self.running = task.name
        if task.actions and task.name[0] != "_" and self.steps > 1:
            self.write(f".  {task.title()}\n")

    def skip_uptodate(self, task: Any) -> None:
        if task.name[0] != "_":
            self.write(f"-- {task.title()} (up to date, skipped)\n")

    def _write_failure(self, result: Any, write_exception: bool = True) -> None:
        self.write(f"✗ {result['task'].name} failed:\n{result['exception'].get_msg().rstrip()}\n")

    def complete_run(self) -> None:
        """Also called while an error travels to the handler (doit's `finally`): name the step it
        came from; the handler prints the message."""
        if isinstance(sys.exc_info()[1], Carried) and self.running:
            self.write(f"✗ {self.running} failed:\n")
        if self.runtime_errors:
            self.write("Execution aborted.\n" + "\n".join(self.runtime_errors) + "\n")


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
