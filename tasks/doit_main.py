"""doit's command line, with auto-infer's exit codes: every doit command is guarded so that a
mistyped command line is a usage error (exit 2, "did you mean"), a closed pipe is a quiet exit, and
any exception doit would print as a traceback goes through the one crash handler (exit 3)."""

from __future__ import annotations

import difflib
import re
import sys
from types import ModuleType
from typing import Any

from doit.cmd_base import ModuleTaskLoader
from doit.cmdparse import CmdParseError
from doit.doit_cmd import DoitMain
from doit.exceptions import InvalidCommand, InvalidDodoFile, InvalidTask

from auto_infer.core.errors import UserError
from auto_infer.tasks import glue

COMMANDS = {c.get_name() for c in DoitMain.DOIT_CMDS}


def task_names(graph: ModuleType) -> set[str]:
    return {name[5:] for name, obj in vars(graph).items() if name.startswith("task_") and callable(obj)}


def suggestion(word: str, graph: ModuleType) -> str:
    close = difflib.get_close_matches(word.split(":")[0], sorted(task_names(graph) | COMMANDS), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def option_message(doit_message: str, argv: list[str], graph: ModuleType) -> str:
    """doit's "Error parsing Task: option --x not recognized (parsing options: [...]). Got: [...]" as
    one line that says what is wrong and where to look."""
    text = re.sub(r"^Error parsing \w+: ", "", doit_message.splitlines()[0])
    text = re.sub(r" \(parsing options: .*$", "", text)
    known = task_names(graph)
    task = next((a.split(":")[0] for a in argv if a.split(":")[0] in known), "TASK")
    return f"{text} (`{task}`)\n  `auto-infer help {task}` lists its options"


def _guarded(cls: type, graph: ModuleType) -> type:
    class Guarded(cls):  # type: ignore[misc, valid-type]
        def parse_execute(self, in_args: list[str]) -> int:
            try:
                return int(super().parse_execute(in_args))
            except InvalidCommand as err:
                word = err.not_found or (in_args[0] if in_args else "")
                hint = suggestion(word, graph) if err.not_found else ""
                raise glue.UsageExit(f"unknown task or command `{word}`{hint}\n"
                                     "  `auto-infer --help` lists the tasks") from None
            except CmdParseError as err:
                raise glue.UsageExit(option_message(str(err), in_args, graph)) from None
            except (InvalidTask, InvalidDodoFile) as err:
                raise glue.UsageExit(str(err)) from None
            except KeyError as err:
                if self.name != "info":      # `info NAME` looks NAME up without checking it first
                    raise
                word = str(err.args[0]) if err.args else ""
                raise glue.UsageExit(f"unknown task `{word}`{suggestion(word, graph)}") from None
            except UserError:
                raise
            except BrokenPipeError:
                glue.quiet_stdout()
                return 0
            except Exception as exc:   # a bug, wherever doit met it (an up-to-date check, a task creator)
                sys.stderr.write(f"auto-infer: {glue.crash(exc)}\n")
                return 3

    Guarded.__name__ = cls.__name__
    Guarded.name = cls.get_name()  # type: ignore[attr-defined]
    return Guarded


def run(graph: ModuleType, argv: list[str]) -> int:
    """Run doit on ``graph`` with ``argv``; doit's own codes, except what the guards turn around."""
    class Main(DoitMain):  # type: ignore[misc]
        BIN_NAME = "auto-infer"
        DOIT_CMDS = tuple(_guarded(c, graph) for c in DoitMain.DOIT_CMDS)

    code: Any = Main(ModuleTaskLoader(graph), config_filenames=()).run(argv)
    return 3 if glue.CRASHED else int(code)
