"""The command line, parsed one way: every command line is checked against the tasks' declared
options (``wiring.CommandLine``, with doit's own parser) before anything runs or is written, so a
mistyped one is a usage error (exit 2, "did you mean") that leaves no state.

doit-free on purpose: doit's option parser (doit/cmdparse.py, standard library only) is loaded
without doit's package ``__init__``, which imports all of doit (~40 ms); a task that keeps no doit
state and has no dependencies (``status``, ``logs``, ``env``...) is then run without doit at all
(:func:`run_plain`). Everything else goes to doit (tasks/doit_main.py)."""

from __future__ import annotations

import difflib
import getopt
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from auto_infer.core.errors import Carried, UsageError
from auto_infer.tasks.wiring import NO_DOIT_STATE, CommandLine

# doit's own commands (doit.doit_cmd.DoitMain.DOIT_CMDS; a test keeps the two equal)
COMMANDS = {"clean", "dumpdb", "forget", "help", "ignore", "info", "list", "reset-dep", "run", "strace",
            "tabcompletion"}


def _doit_cmdparse() -> ModuleType:
    """doit's option parser module, loaded from doit's folder without running doit's ``__init__``."""
    name = "auto_infer._doit_cmdparse"
    if name not in sys.modules:
        spec = importlib.util.find_spec("doit")
        origin = spec.origin if spec else None
        loader_spec = importlib.util.spec_from_file_location(name, Path(origin).with_name("cmdparse.py")) \
            if origin else None
        if loader_spec is None or loader_spec.loader is None:       # not a plain folder: the normal import
            import doit.cmdparse
            return doit.cmdparse
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


@dataclass(frozen=True)
class Selected:
    """A task the command line names, its creator and its parsed values."""

    word: str
    creator: Any
    values: dict[str, Any]
    made: Any = None               # what the creator returned (a task dict, or doit Tasks)

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


_BAD_VALUE = re.compile(r"^Error parsing parameter '(?P<name>[^']+)' <class '(?P<type>\w+)'>")
KINDS = {"int": "a whole number", "float": "a number"}


def option_message(doit_message: str, task: str, params: list[dict[str, Any]] | None = None) -> UsageError:
    """doit's "Error parsing Task: option --x not recognized (parsing options: [...]). Got: [...]" as
    one line that says what is wrong and where to look; its "Error parsing parameter 'lines' <class
    'int'>" as "--lines/-n must be a whole number"."""
    bad = _BAD_VALUE.match(doit_message)
    param = next((p for p in params or [] if bad and p["name"] == bad["name"]), None)
    if bad and param:
        flags = "/".join([f"--{param['long']}"] * bool(param.get("long"))
                         + [f"-{param['short']}"] * bool(param.get("short")))
        return UsageError(f"{flags} must be {KINDS.get(bad['type'], 'a ' + bad['type'])} (`{task}`)", where=flags,
                          fix=f"`auto-infer help {task}` lists its options")
    text = re.sub(r"^Error parsing \w+: ", "", doit_message.splitlines()[0])
    text = re.sub(r" \(parsing options: .*$", "", text)
    return UsageError(f"{text} (`{task}`)", fix=f"`auto-infer help {task}` lists its options")


def parse(argv: list[str], graph: ModuleType) -> tuple[list[Selected], list[str]]:
    """The tasks ``argv`` names with their options, parsed as doit parses them, and ``argv`` put in
    the order doit reads (a task's options before its positional arguments: ``bundle export F
    --since M``); no tasks for doit's own commands (list, help, info...) and its run options."""
    if argv[:1] == ["help"] and len(argv) > 1:      # doit prints its generic help for a name it does not know
        if argv[1].split(":")[0] not in task_names(graph) | COMMANDS | {"task"}:
            raise unknown(argv[1], graph)
        return [], ["help", argv[1].split(":")[0], *argv[2:]]       # `help serve:NAME` = `help serve`
    if not argv or argv[0] in COMMANDS or argv[0].startswith("-"):
        return [], argv
    seq, ordered = list(argv), []
    out: list[Selected] = []
    while seq:
        word = seq.pop(0)
        creator = getattr(graph, f"task_{word.split(':')[0]}", None) if word else None
        if not callable(creator) or "=" in word:
            raise _instance_word(out[-1], word, graph) if out else unknown(word, graph)
        cli = getattr(creator, "command_line", None) or CommandLine()
        made = creator()
        made = made if isinstance(made, dict) else list(made)
        if ":" in word:
            _check_subtask(word, made)
        params, pos_arg = declared(made)
        cmdparse = _doit_cmdparse()
        parser = cmdparse.TaskParse([cmdparse.CmdOption(p) for p in params])
        try:
            split = getopt.gnu_getopt if pos_arg else getopt.getopt   # options may follow positional args
            found, rest = split(seq, parser.get_short(), parser.get_long())
            given = [t for o, v in found for t in _tokens(parser, o, v)]
            values = dict(parser.parse(given)[0])
        except (cmdparse.CmdParseError, getopt.GetoptError) as err:
            raise option_message(str(err), word.split(":")[0], params) from None
        if pos_arg:
            values[pos_arg], rest = rest, []
        ordered += [word, *given, *values.get(pos_arg or "", [])] if pos_arg else [word, *given]
        seq = rest
        if cli.check:
            cli.check(values)
        out.append(Selected(word, creator, values, made))
    return out, ordered


def _instance_word(prev: Selected, word: str, graph: ModuleType) -> UsageError:
    """``serve NAME`` (as ``stop NAME``, ``logs NAME`` are written) where ``serve:NAME`` is meant."""
    base = prev.word.split(":")[0]
    if f"{base}:{word}" not in _subtasks(prev.made):
        return unknown(word, graph)
    return UsageError(f"`{base} {word}`: `{base}` takes no instance names; one instance is `{base}:{word}`",
                      where="the command line", fix=f"auto-infer {base}:{word}")


def _subtasks(made: Any) -> list[str]:
    """The names of the sub-tasks a task creator made (serve:NAME, boot:STEP); none for a dict."""
    return [t.name for t in made if getattr(t, "subtask_of", None)] if isinstance(made, list) else []


def _check_subtask(word: str, made: Any) -> None:
    """``serve:NAME`` names one of the sub-tasks its creator made (serve: the model config's enabled
    instances). None made (serve: a config that does not load): the task itself says why."""
    base = word.split(":")[0]
    subs = _subtasks(made)
    if subs and word not in subs:
        raise UsageError(f"unknown task `{word}`: the sub-tasks of `{base}` are {', '.join(subs)}",
                         where="the command line", fix=f"name one of them, or `{base}` for all of them")


def declared(made: Any) -> tuple[list[dict[str, Any]], str | None]:
    """A task's options and positional-argument name, from what its creator returned (a dict, or
    doit Tasks: the first one's)."""
    first = made if isinstance(made, dict) else next(iter(made), None)
    if first is not None and not isinstance(first, dict):
        return list(first.params), first.pos_arg
    return list((first or {}).get("params", [])), (first or {}).get("pos_arg")


def _tokens(parser: Any, option: str, value: str) -> list[str]:
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


PLAIN = {"actions", "params", "pos_arg", "verbosity", "doc"}     # no dependency, target or check


def plain_action(sel: Selected) -> Callable[..., Any] | None:
    """The one action of a task doit would only call: no doit state, and nothing in its dict but
    the action and its options. None: doit runs it."""
    made = sel.made
    if not getattr(sel.creator, NO_DOIT_STATE, False) or not isinstance(made, dict) or set(made) - PLAIN:
        return None
    actions = made.get("actions") or []
    return actions[0] if len(actions) == 1 and callable(actions[0]) else None


def run_plain(sel: Selected, act: Callable[..., Any]) -> int:
    """Call the action as doit would (the options whose names are its parameters); an error is
    named as doit's reporter names it, then travels to the one handler."""
    accepted = inspect.signature(act).parameters
    try:
        act(**{k: v for k, v in sel.values.items() if k in accepted})
    except Carried:
        sys.stderr.write(f"✗ {sel.word} failed:\n")
        sys.stderr.flush()
        raise
    return 0
