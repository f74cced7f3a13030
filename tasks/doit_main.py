"""doit running the graph, once tasks/cmdline.py has parsed the command line. Errors are not turned
into exit codes here: they travel (``Carried``) to the one handler, auto_infer.core.errors.handle."""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable
from types import ModuleType, TracebackType
from typing import Any

from doit import plugin
from doit.cmd_base import ModuleTaskLoader
from doit.cmdparse import CmdParseError
from doit.doit_cmd import DoitMain
from doit.exceptions import InvalidCommand, InvalidDodoFile, InvalidTask
from doit.loader import generate_tasks

from auto_infer.core import errors
from auto_infer.core.errors import Carried, UsageError, UserError
from auto_infer.tasks.cmdline import option_message, task_names, unknown


def _guarded(cls: type, graph: ModuleType) -> type:
    class Guarded(cls):  # type: ignore[misc, valid-type]
        def parse_execute(self, in_args: list[str]) -> int:
            if self.name == "dumpdb":
                raise Carried(_no_dumpdb())
            try:
                code = super().parse_execute(in_args)
                return 0 if code is None else int(code)      # clean, forget, ignore return None
            except InvalidCommand as err:
                word = err.not_found or (in_args[0] if in_args else "")
                raise Carried(unknown(word, graph)) from None
            except CmdParseError as err:
                task = self.name if self.name != "run" else next(     # clean -x: an option of clean
                    (a.split(":")[0] for a in in_args if a.split(":")[0] in task_names(graph)), "TASK")
                raise Carried(option_message(str(err), task)) from None
            except (InvalidTask, InvalidDodoFile) as err:
                raise Carried(UsageError(str(err))) from None
            except KeyError as err:
                if self.name != "info":      # `info NAME` looks NAME up without checking it first
                    raise Carried(err) from None
                raise Carried(unknown(str(err.args[0]) if err.args else "", graph)) from None
            except Exception as exc:   # a bug, wherever doit met it (an up-to-date check, a task creator)
                raise Carried(exc) from exc

    Guarded.__name__ = cls.__name__
    Guarded.name = cls.get_name()  # type: ignore[attr-defined]
    return Guarded


def _no_dumpdb() -> BaseException:
    """doit's dumpdb reads dbm files only; ours is SQLite: say how to read it, at its real path."""
    from auto_infer.core.settings import load
    try:
        db = load().doit_db
    except UserError as exc:
        return exc
    return UsageError("`dumpdb` reads doit's dbm files; auto-infer keeps doit's state in SQLite",
                      where=str(db), fix=f"read it with: sqlite3 {shlex.quote(str(db))} "
                                         "'select task_id, task_data from doit'")


class GraphLoader(ModuleTaskLoader):  # type: ignore[misc]
    """doit's module loader, less one cost: to order the task creators, doit asks ``inspect`` for the
    line each is defined on, which reads and tokenizes the source of every creator (~12 ms a
    command); the same line is the creator's ``co_firstlineno``. The graph uses neither
    ``@task_params`` nor ``@create_after``, which this loader refuses rather than ignores."""

    def load_tasks(self, cmd: Any, pos_args: list[str]) -> list[Any]:
        creators = []
        for name, ref in self.namespace.items():
            if not (name.startswith("task_") and callable(ref)):
                continue
            if hasattr(ref, "_task_creator_params") or getattr(ref, "doit_create_after", None):
                raise InvalidDodoFile(f"{name}: @task_params / @create_after are not supported by the graph loader")
            if name[5:] in self.cmd_names:
                raise InvalidDodoFile(f"Task can't be called '{name[5:]}' because this is a command name.")
            code = getattr(ref, "__code__", None)
            if code is None:
                raise InvalidDodoFile(f"{name}: the graph's task creators are functions, not {type(ref).__name__}")
            creators.append((code.co_firstlineno, name[5:], ref))
        creators.sort(key=lambda c: c[0])           # doit's order: the line each creator is defined on
        return [t for _, name, ref in creators for t in generate_tasks(name, ref(), ref.__doc__)]


def run(graph: ModuleType, argv: list[str]) -> int:
    """Run doit on ``graph`` with ``argv``: 0, or 1 when doit itself reported a failed task (its
    reporter said which); every error of ours is raised (``Carried``) to the one handler."""
    class Main(DoitMain):  # type: ignore[misc]
        BIN_NAME = "auto-infer"
        DOIT_CMDS = tuple(_guarded(c, graph) for c in DoitMain.DOIT_CMDS)

        def process_args(self, cmd_args: list[str]) -> list[str]:
            return list(cmd_args)          # no NAME=VALUE variables (doit's crash on an empty one)

    hook = plugin.entry_points_impl
    plugin.entry_points_impl = _no_plugins
    try:
        code: Any = Main(GraphLoader(graph), config_filenames=()).run(argv)
    finally:
        plugin.entry_points_impl = hook
    return 0 if code == 0 else 1


def _no_plugins() -> Callable[..., list[Any]]:
    """doit asks every installed distribution for ``doit.*`` entry points (commands, reporters,
    backends) on each run: three scans of site-packages, 15 ms with 70 distributions and more in a
    large environment. auto-infer's commands are its own, so a doit plugin some other package
    installed is not loaded into them (``doit`` in the repo, doit's own CLI, still loads them)."""
    return lambda **_: []


def plain_doit() -> None:
    """`doit TASK` in the repo: what reaches the top (``Carried``) goes through the same handler."""
    started = time.monotonic()

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        from auto_infer.core.settings import load
        code = errors.handle(exc, started, lambda: load().state_dir)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    sys.excepthook = hook
