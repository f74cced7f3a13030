"""The `auto-infer` console command: the same doit graph as dodo.py, from any folder.

``main`` is the top: it parses the command line one way (tasks/cmdline.parse), runs it, and
hands whatever error reaches it to the one handler (auto_infer.core.errors.handle)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from auto_infer.core import errors
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
            "also: auto-infer list | info TASK | help TASK | TASK --help   (doit's commands)\n"
            "environment: AUTO_INFER_* variables; `auto-infer env` prints them resolved.\n"
            "docs: README.md, docs/design.md\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM (docker stop): unwinds like Ctrl-C, so doit saves its state, and we exit 130."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _in_finalizer(frame):
        # an exception raised inside a __del__ (a Popen collected at that moment) is printed as
        # "Exception ignored" with a traceback and dropped: the stop would be lost. Ask again shortly,
        # once the finalizer is done, and unwind then.
        timer = threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)   # once: a second SIGTERM must not cut the unwinding short
    raise Terminated()


def _in_finalizer(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _check_state(db: Path) -> None:
    """doit's state must be writable: say so clearly (disk full, read-only) instead of doit's exit 3."""
    import sqlite3

    from auto_infer.core.fsutil import check_folder

    for folder, what in (
        (db.parent.parent, "the workspace (AUTO_INFER_WORKSPACE_DIR)"),
        (db.parent, "the state folder"),
    ):
        check_folder(folder, what)
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
    """Parse, then run: alone (``serve --dry-run``), without doit (a task with no state and no
    dependencies: ``status``, ``logs``...), without doit state (in memory), or under the run lock."""
    from auto_infer.core import settings as settings_mod
    from auto_infer.tasks import cmdline

    if len(argv) > 1 and argv[0] not in cmdline.COMMANDS and {"-h", "--help"} & set(argv[1:]):
        argv = ["help", argv[0].split(":")[0]]                  # `serve --help` = `help serve`
    graph = _pipeline()
    selected, argv = cmdline.parse(argv, graph)
    for sel in selected:
        cli = sel.command_line
        if cli.alone and cli.run_alone and sel.values.get(cli.alone):
            return cli.run_alone({**sel.values, "task": sel.word})
    argv = cmdline.expand(argv, selected)
    if len(selected) == 1 and (act := cmdline.plain_action(selected[0])) is not None:
        return cmdline.run_plain(selected[0], act)
    from auto_infer.tasks import doit_main

    if selected and all(getattr(s.creator, "no_doit_state", False) for s in selected):
        return doit_main.run(graph, ["run", "--db-file", ":memory:", *argv])
    s = settings_mod.load()
    if selected:
        _check_state(s.doit_db)
    locking = [sel.word.split(":")[0] for sel in selected if getattr(sel.creator, "run_lock", False)]
    if not locking:
        return doit_main.run(graph, argv)
    from auto_infer.core.runlock import exclusive

    with exclusive(s.runlock_path, " ".join(locking), s.runlock_timeout):
        return doit_main.run(graph, argv)


def _demo_workspace(args: list[str]) -> list[str]:
    """demo keeps everything, doit's own state included, in its workspace (a new temp dir by default)."""
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
    from auto_infer.core.fsutil import check_folder
    check_folder(Path(ws), "the demo workspace (--workspace)")
    from auto_infer.demo.build import check_workspace
    check_workspace(Path(ws))            # before doit writes its state there
    os.environ["AUTO_INFER_WORKSPACE_DIR"] = str(Path(ws).resolve())
    return args


def _state_dir() -> Path | None:
    from auto_infer.core.settings import load
    return load().state_dir


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(tasks_help(_pipeline()), end="")
        return 0
    if args[0] == "--version":
        from auto_infer import __version__
        print(f"auto-infer {__version__}")
        return 0
    from auto_infer.tasks import cmdline  # noqa: F401 - before the handler: an import is no place for SIGTERM

    signal.signal(signal.SIGTERM, _on_sigterm)
    t0 = time.monotonic()
    try:
        if args[0] == "demo" and "--help" not in args and "-h" not in args:
            args = _demo_workspace(args)
        return run(args)
    except BaseException as exc:  # noqa: BLE001 - the one handler decides, SystemExit included
        return errors.handle(exc, t0, _state_dir)


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
