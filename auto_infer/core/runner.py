"""Run a child command (an installer, a demo step): output to a log file, lines to a callback.

Every child runs in its own session (process group). If the wait is unwound -- Ctrl-C, or
SIGTERM, which the CLI turns into KeyboardInterrupt -- the whole group is ended (TERM, a grace
period, KILL) and reaped *before* the exception goes on: the run lock is released only after
no process of ours still writes into the environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from auto_infer.core import redact
from auto_infer.core.errors import SubprocessFailed, UserError
from auto_infer.core.progress import Step

GRACE = 10.0      # seconds between TERM and KILL


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def end_group(proc: subprocess.Popen[str], grace: float = GRACE) -> None:
    """TERM the child's process group, wait up to ``grace``, KILL what is left, reap the child.

    A second Ctrl-C/SIGTERM during the grace period goes straight to KILL."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    _signal_group(proc.pid, signal.SIGKILL)      # also the group's other members, if any outlived the leader
    while True:
        try:
            proc.wait()
            return
        except KeyboardInterrupt:
            continue


class TimedOut(Exception):
    """The child ran past its time limit; its group was ended."""


def run_child(cmd: list[str], *, env: Mapping[str, str], log: Path, on_line: Callable[[str], None],
              cwd: Path | None = None, fix: str | None = None, grace: float = GRACE,
              timeout: float | None = None) -> int:
    """Run ``cmd`` in its own process group; append its output to ``log`` (each line also to
    ``on_line``); return its exit code. Any exception while waiting ends the group first; after
    ``timeout`` seconds the group is ended and TimedOut raised."""
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.Popen(cmd, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    except FileNotFoundError:
        raise UserError(f"{cmd[0]} is not installed or not on PATH", fix=fix) from None
    assert proc.stdout is not None

    # a proxy's password, with or without a scheme, as the tool may quote it (not every secret-named
    # variable's value: PWD is one, and its value is in every other line)
    hidden = redact.secret_values(env={k: v for k, v in env.items() if redact.PROXY_NAME.match(k)})

    def pump() -> None:
        with open(log, "a", buffering=1) as fh:      # line-buffered: a kill loses no line
            fh.write(f"$ {' '.join(redact.redact_argv(cmd, hidden))}\n")
            for raw in proc.stdout:  # type: ignore[union-attr]
                line = redact.scrub(raw, hidden)      # a tool's error may quote an index URL with credentials
                fh.write(line)
                on_line(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout)
        reader.join()
    except subprocess.TimeoutExpired:
        end_group(proc, grace)
        reader.join(timeout=5)
        raise TimedOut() from None
    except BaseException:
        end_group(proc, grace)
        reader.join(timeout=5)     # the group is gone, so the pipe is closed: the log gets its last lines
        raise
    return code


def run_logged(cmd: list[str], *, env: Mapping[str, str], log: Path, step: Step | None = None,
               cwd: Path | None = None, fix: str | None = None, timeout: float | None = None,
               timeout_name: str = "") -> str:
    """Run ``cmd`` (last line as progress); raise SubprocessFailed (command, code, last lines) if it
    fails. ``timeout``: seconds it may run; then its group is ended and a UserError names
    ``timeout_name`` (the setting that bounds it)."""
    tail: deque[str] = deque(maxlen=40)

    def on_line(line: str) -> None:
        line = line.rstrip()
        if line:
            tail.append(line)
            if step is not None:
                step.note(line[-120:])

    try:
        code = run_child(cmd, env=env, log=log, on_line=on_line, cwd=cwd, fix=fix, timeout=timeout)
    except TimedOut:
        last = "\n".join(f"    {ln}" for ln in list(tail)[-5:])
        raise UserError(f"{cmd[0]} did not finish within {timeout:.0f} s and was stopped; last output:\n{last}",
                        where=timeout_name or None, fix=fix or f"see the full log: {log}") from None
    if code != 0:
        raise SubprocessFailed(redact.redact_argv(cmd), code, "\n".join(tail), fix=fix or f"see the full log: {log}")
    return "\n".join(tail)


def self_command(*args: str) -> list[str]:
    """``auto-infer ARGS`` as a child of this Python that never imports from the current folder (a
    checkout's ``auto_infer/`` there would shadow the installed package): ``-P`` where Python has it."""
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", "auto_infer", *args]
    return [sys.executable, "-c", "import sys; del sys.path[0]; from auto_infer.cli import entry; entry()", *args]
