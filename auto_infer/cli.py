"""The `auto-infer` console command: the same doit graph as dodo.py, from any folder."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from auto_infer.core.errors import UserError


def _pipeline() -> ModuleType:
    """The graph: tasks/dodo.py, installed as auto_infer.tasks.dodo; the repo's dodo.py links to it."""
    from auto_infer.tasks import dodo
    return dodo


def tasks_help(pipeline: ModuleType) -> str:
    rows = []
    for name, obj in vars(pipeline).items():
        if name.startswith("task_") and callable(obj):
            doc = (obj.__doc__ or "").strip().splitlines()
            rows.append((name[5:], doc[0] if doc else ""))
    width = max(len(n) for n, _ in rows)
    lines = [f"  {n.ljust(width)}  {d}" for n, d in rows]
    return ("usage: auto-infer TASK [options]     (the same graph as `doit TASK` in the repo)\n\n"
            "tasks:\n" + "\n".join(lines) + "\n\n"
            "also: auto-infer list | info TASK | help TASK   (doit's commands)\n"
            "environment: AUTO_INFER_* variables; `auto-infer env` prints them resolved.\n"
            "docs: README.md, docs/design.md\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM (docker stop): unwinds like Ctrl-C, so doit saves its state, and we exit 130."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)   # once: a second SIGTERM must not cut the unwinding short
    raise Terminated()


def _requested(argv: list[str], graph: ModuleType) -> list[Any]:
    """The task creators this command line names (doit's own commands name none)."""
    if argv and not argv[0].startswith("-") and argv[0] in _commands():
        return []
    creators = [getattr(graph, f"task_{a.split(':')[0]}", None) for a in argv if not a.startswith("-")]
    return [c for c in creators if callable(c)]


def _commands() -> set[str]:
    from auto_infer.tasks.doit_main import COMMANDS
    return COMMANDS


def _read_only(argv: list[str], graph: ModuleType) -> bool:
    """Only read-only tasks (env, status, logs, stop, chat), or doit's list/help before any state
    exists: doit's state stays in memory, so nothing is written on a bare host."""
    first = next((a for a in argv if not a.startswith("-")), "")
    if first in ("list", "help", "info", "tabcompletion"):
        return True
    creators = _requested(argv, graph)
    return bool(creators) and all(getattr(c, "read_only", False) for c in creators)


def _check_state(db: Path) -> None:
    """doit's state must be writable: say so clearly (disk full, read-only) instead of doit's exit 3."""
    import sqlite3

    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(db, timeout=60)
        try:
            conn.execute("create table if not exists doit (task_id text not null primary key, task_data json)")
            conn.commit()
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as exc:
        raise UserError(f"cannot write auto-infer's state {db}: {exc}", where="AUTO_INFER_WORKSPACE_DIR",
                        fix="free space on that volume, or make it writable, then rerun") from None


def run(argv: list[str]) -> int:
    from auto_infer.core import settings as settings_mod
    from auto_infer.core.runlock import exclusive
    from auto_infer.tasks import doit_main

    s = settings_mod.load()
    graph = _pipeline()
    if _read_only(argv, graph):
        first = next(a for a in argv if not a.startswith("-"))
        at = argv.index(first) + (1 if first in _commands() else 0)
        if first not in ("info",) or not s.doit_db.exists():
            argv = [*argv[:at], "--db-file", ":memory:", *argv[at:]]
        return doit_main.run(graph, argv)
    _check_state(s.doit_db)
    locking = [c.__name__[5:] for c in _requested(argv, graph) if getattr(c, "run_lock", False)]
    if not locking:
        return doit_main.run(graph, argv)
    with exclusive(s.run_lock_path, " ".join(locking), s.lock_timeout):
        return doit_main.run(graph, argv)


def _dry_run(args: list[str]) -> int | None:
    """``serve[:NAME] [NAME...] --dry-run [--json]``: shown without doit, so that nothing (not even
    the install that serve depends on) runs; None when this is not a dry run."""
    if not args or args[0].split(":")[0] != "serve" or "--dry-run" not in args:
        return None
    from auto_infer.core import settings as settings_mod
    from auto_infer.serve import dryrun
    from auto_infer.tasks.glue import UsageExit

    names = [args[0].split(":", 1)[1]] if ":" in args[0] else []
    names += [a for a in args[1:] if not a.startswith("-")]
    unknown = [a for a in args[1:] if a.startswith("-") and a not in ("--dry-run", "--json")]
    if unknown:
        raise UsageExit(f"serve --dry-run does not take {unknown[0]}\n  use: auto-infer serve[:NAME] --dry-run [--json]")
    return dryrun.dry_run(settings_mod.load(), names or None, "--json" in args)


def _demo_workspace(args: list[str]) -> list[str]:
    """demo keeps everything, doit's own state included, in its workspace (a new temp dir by default)."""
    import os
    import tempfile

    ws = ""
    for i, a in enumerate(args):
        if a == "--workspace" and i + 1 < len(args):
            ws = args[i + 1]
        elif a.startswith("--workspace="):
            ws = a.split("=", 1)[1]
    if not ws:
        ws = tempfile.mkdtemp(prefix="auto-infer-demo-")
        args = [*args, "--workspace", ws]
    os.environ["AUTO_INFER_WORKSPACE_DIR"] = str(Path(ws).resolve())
    return args


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(tasks_help(_pipeline()), end="")
        return 0
    if args[0] == "--version":
        from auto_infer import __version__
        print(f"auto-infer {__version__}")
        return 0
    from auto_infer.tasks import glue  # before the handler: an import is no place for SIGTERM
    from auto_infer.tasks.glue import UsageExit

    signal.signal(signal.SIGTERM, _on_sigterm)
    if args[0] == "demo":
        args = _demo_workspace(args)
    if args[0] == "warm" and "--rehearse" in args:       # `warm --rehearse` = `warm rehearse`
        args = ["warm", "rehearse", *(a for a in args[1:] if a != "--rehearse")]
    t0 = time.monotonic()
    try:
        dry = _dry_run(args)
        return dry if dry is not None else run(args)
    except UsageExit as exc:
        print(f"auto-infer: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"auto-infer: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        glue.quiet_stdout()
        return 0
    except KeyboardInterrupt:
        print(f"auto-infer: interrupted after {time.monotonic() - t0:.1f}s", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug
        print(f"auto-infer: {glue.crash(exc)}", file=sys.stderr)
        return 3


def entry(*_: Any) -> None:
    """Console-script entry: run, flush, exit.

    py-rattler 0.28 can crash in CPython's finalization (SIGSEGV / "PyGILState_Release") when its
    runtime threads are torn down after an install (bench/findings.md); by then all our state is
    written, so once rattler was loaded we leave with os._exit and skip the interpreter teardown."""
    code = main()
    # the outcome is decided: a SIGTERM or Ctrl-C now (a supervisor stopping us as we leave) must
    # not turn it into a death by signal (143): the interpreter's teardown restores SIGTERM's default
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout.flush()
    sys.stderr.flush()
    if "rattler" in sys.modules:
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
