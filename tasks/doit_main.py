"""doit's command line, parsed one way: every command line is checked against the tasks' declared
options (``wiring.CommandLine``, with doit's own parser) before anything runs or is written, so a
mistyped one is a usage error (exit 2, "did you mean") that leaves no state. Errors are not turned
into exit codes here: they travel (``Carried``) to the one handler, auto_infer.core.errors.handle."""

from __future__ import annotations

import difflib
import getopt
import os
import re
import sys
import time
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

from doit.cmd_base import ModuleTaskLoader
from doit.cmdparse import CmdOption, CmdParseError, TaskParse
from doit.doit_cmd import DoitMain
from doit.exceptions import InvalidCommand, InvalidDodoFile, InvalidTask
from doit.task import Task

from auto_infer.core import errors
from auto_infer.core.errors import Carried, UsageError
from auto_infer.tasks.wiring import CommandLine

COMMANDS = {c.get_name() for c in DoitMain.DOIT_CMDS}


@dataclass(frozen=True)
class Selected:
    """A task the command line names, its creator and its parsed values."""

    word: str
    creator: Any
    values: dict[str, Any]

    @property
    def command_line(self) -> CommandLine:
        return getattr(self.creator, "command_line", None) or CommandLine()


def task_names(graph: ModuleType) -> set[str]:
    return {name[5:] for name, obj in vars(graph).items() if name.startswith("task_") and callable(obj)}


def suggestion(word: str, graph: ModuleType) -> str:
    close = difflib.get_close_matches(word.split(":")[0], sorted(task_names(graph) | COMMANDS), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def unknown(word: str, graph: ModuleType) -> UsageError:
    if not word.strip():
        return UsageError("an empty task name", where="the command line",
                          fix="`auto-infer --help` lists the tasks")
    return UsageError(f"unknown task or command `{word}`{suggestion(word, graph)}",
                      fix="`auto-infer --help` lists the tasks")


def option_message(doit_message: str, task: str) -> UsageError:
    """doit's "Error parsing Task: option --x not recognized (parsing options: [...]). Got: [...]" as
    one line that says what is wrong and where to look."""
    text = re.sub(r"^Error parsing \w+: ", "", doit_message.splitlines()[0])
    text = re.sub(r" \(parsing options: .*$", "", text)
    return UsageError(f"{text} (`{task}`)", fix=f"`auto-infer help {task}` lists its options")


def parse(argv: list[str], graph: ModuleType) -> tuple[list[Selected], list[str]]:
    """The tasks ``argv`` names with their options, parsed as doit parses them, and ``argv`` put in
    the order doit reads (a task's options before its positional arguments: ``bundle export F
    --since M``); no tasks for doit's own commands (list, help, info...) and its run options."""
    if not argv or argv[0] in COMMANDS or argv[0].startswith("-"):
        return [], argv
    seq, out, ordered = list(argv), [], []
    while seq:
        word = seq.pop(0)
        creator = getattr(graph, f"task_{word.split(':')[0]}", None) if word else None
        if not callable(creator) or "=" in word:
            raise unknown(word, graph)
        cli = getattr(creator, "command_line", None) or CommandLine()
        params, pos_arg = declared(creator)
        parser = TaskParse([CmdOption(p) for p in params])
        try:
            split = getopt.gnu_getopt if pos_arg else getopt.getopt   # options may follow positional args
            found, rest = split(seq, parser.get_short(), parser.get_long())
            given = [t for o, v in found for t in _tokens(parser, o, v)]
            values = dict(parser.parse(given)[0])
        except (CmdParseError, getopt.GetoptError) as err:
            raise option_message(str(err), word.split(":")[0]) from None
        if pos_arg:
            values[pos_arg], rest = rest, []
        ordered += [word, *given, *values.get(pos_arg or "", [])] if pos_arg else [word, *given]
        seq = rest
        if cli.check:
            cli.check(values)
        out.append(Selected(word, creator, values))
    return out, ordered


def declared(creator: Any) -> tuple[list[dict[str, Any]], str | None]:
    """A task's options and positional-argument name, as its creator gives them to doit."""
    made = creator()
    first = made if isinstance(made, dict) else next(iter(made), None)
    if isinstance(first, Task):
        return list(first.params), first.pos_arg
    return list((first or {}).get("params", [])), (first or {}).get("pos_arg")


def _tokens(parser: TaskParse, option: str, value: str) -> list[str]:
    """One option as doit's loader can read it again (`--out=` when empty: it cannot take '')."""
    if option.startswith("--"):
        return [f"{option}={value}"] if f"{option[2:]}=" in parser.get_long() else [option]
    return [option, value] if f"{option[1:]}:" in parser.get_short() else [option]


def expand(argv: list[str], selected: list[Selected]) -> list[str]:
    """Options that add a task after theirs (``warm --rehearse`` = ``warm rehearse``)."""
    for sel in selected:
        for option, task in sel.command_line.then.items():
            if sel.values.get(option.replace("-", "_")):
                argv = [a for a in argv if a != f"--{option}"] + [task]
    return argv


def _guarded(cls: type, graph: ModuleType) -> type:
    class Guarded(cls):  # type: ignore[misc, valid-type]
        def parse_execute(self, in_args: list[str]) -> int:
            try:
                return int(super().parse_execute(in_args))
            except InvalidCommand as err:
                word = err.not_found or (in_args[0] if in_args else "")
                raise Carried(unknown(word, graph)) from None
            except CmdParseError as err:
                task = next((a.split(":")[0] for a in in_args if a.split(":")[0] in task_names(graph)), "TASK")
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


def run(graph: ModuleType, argv: list[str]) -> int:
    """Run doit on ``graph`` with ``argv``: 0, or 1 when doit itself reported a failed task (its
    reporter said which); every error of ours is raised (``Carried``) to the one handler."""
    class Main(DoitMain):  # type: ignore[misc]
        BIN_NAME = "auto-infer"
        DOIT_CMDS = tuple(_guarded(c, graph) for c in DoitMain.DOIT_CMDS)

        def process_args(self, cmd_args: list[str]) -> list[str]:
            return list(cmd_args)          # no NAME=VALUE variables (doit's crash on an empty one)

    code: Any = Main(ModuleTaskLoader(graph), config_filenames=()).run(argv)
    return 0 if code == 0 else 1


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
