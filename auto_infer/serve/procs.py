"""The one module that starts and stops server processes (llama-swap's process model).

* a server starts detached in its own session and process group (``start_new_session``), stdin
  from /dev/null, stdout and stderr to its log; when it holds a secret (the API key is on its
  command line, and SGLang logs its arguments), a small log filter in the same group runs it and
  writes its output with every secret replaced by ``***``;
* the pid's kernel start time tells a recycled pid from our server (the records live in registry);
* stop = SIGTERM to the group, a grace period, SIGKILL to the group, until no process of the
  group is left; stopping what is not running is fine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auto_infer.core.fsutil import atomic_write_json, open_append

# The log filter, used when the server holds a secret: it runs the server as its child (same
# process group) and copies its output to the log with every secret masked. It ignores SIGTERM so
# the server's last words while draining still reach the log, and exits as the server did.
LOG_FILTER = r"""
import json, os, re, signal, subprocess, sys
secrets = [s.encode() for s in json.loads(os.environ.pop("_AUTO_INFER_SCRUB", "[]")) if s]
pattern = re.compile(b"|".join(re.escape(s) for s in secrets)) if secrets else None
out = open(sys.argv[1], "ab", buffering=0)
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
pending = b""
while True:
    chunk = os.read(child.stdout.fileno(), 65536)
    pending += chunk
    cut = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1 if chunk else len(pending)
    if cut or len(pending) > 1 << 20:
        done, pending = pending[:cut or len(pending)], pending[cut or len(pending):]
        out.write(pattern.sub(b"***", done) if pattern else done)
    if not chunk:
        break
code = child.wait()
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks) of ``pid``, from /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode(errors="replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[19])


def start_ticks(pid: int) -> int | None:
    st = _stat(pid)
    return st[2] if st else None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st and st[1] == pgid and st[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def is_ours(pid: int, ticks: int | None) -> bool:
    """The recorded process is still the one we started (alive, not a zombie, same start time)."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X") and (ticks is None or st[2] == ticks)


def group_is_ours(pid: int, ticks: int | None) -> bool:
    """Our group still has processes: the leader, or its children once the leader is gone.

    A pid stays reserved while a process group of that id exists, so when the leader pid is
    free (or a zombie of ours) and the group has members, they are ours.
    """
    st = _stat(pid)
    if st is not None and ticks is not None and st[2] != ticks:
        return False                  # the pid was recycled: that group is someone else's
    return bool(group_members(pid))


@dataclass
class Handle:
    """A started server: the pid (= process group id) and, in the starting process, its Popen."""

    pid: int
    ticks: int | None
    popen: subprocess.Popen[bytes] | None = None

    def ended(self) -> str | None:
        """None while the server runs; otherwise how it ended."""
        if self.popen is not None:
            return _ended(self.popen.poll())
        return None if is_ours(self.pid, self.ticks) else "ended (exit code unknown: not our child)"

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None


def spawn(argv: list[str], *, env: dict[str, str], log: Path, cwd: Path, secrets: list[str]) -> Handle:
    """Start ``argv`` detached in a new process group, its output to ``log`` (secrets masked)."""
    secrets = [s for s in secrets if s]
    with open_append(log, "the server log") as out:
        if secrets:   # through the log filter: same group, so stop still reaches every process
            argv = [sys.executable, "-c", LOG_FILTER, str(log), *argv]
            env = {**env, "_AUTO_INFER_SCRUB": json.dumps(secrets)}
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    _SPAWNED[proc.pid] = proc
    return Handle(proc.pid, start_ticks(proc.pid), proc)


# Every server this process started, kept for the process's life: a dropped Popen polls its child
# once more as it is collected (and reaps it, if it has just ended), so a supervisor's own
# waitpid() would find nothing and could not say how the server ended (tests/test_supervise.py).
_SPAWNED: dict[int, subprocess.Popen[bytes]] = {}


def how_it_ended(pid: int) -> str | None:
    """How a server this process started ended, when a poll of its Popen already reaped it; the
    Popen is let go (asked once, by the supervisor that restarts the server)."""
    proc = _SPAWNED.pop(pid, None)
    return _ended(proc.returncode) if proc is not None else None


def _ended(code: int | None) -> str | None:
    """A Popen return code in words (None: still running)."""
    if code is None:
        return None
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def start_logged(argv: list[str], *, shown: str, env: dict[str, str], log: Path, cwd: Path, secrets: list[str],
                 launch_record: Path, record: dict[str, Any],
                 note: Callable[..., None]) -> tuple[Handle | None, str]:
    """Start a server the way serve does: rotate its log (``.1``), write its launch record, spawn it,
    and tell ``note`` the state (``note(state="starting", pid=…)`` or ``note(state="failed", …)``).
    Returns the handle (None when it could not start) and why not."""
    if log.is_file() and not log.is_symlink() and log.stat().st_size:
        log.replace(log.with_name(log.name + ".1"))
    atomic_write_json(launch_record, {**record, "log": str(log), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    try:
        handle = spawn(argv, env=env, log=log, cwd=cwd, secrets=secrets)
    except OSError as exc:
        why = f"cannot start {shown}: {exc}"
        note(state="failed", pid=None, reason=why)
        return None, why
    note(state="starting", pid=handle.pid, start_ticks=handle.ticks, spawned_at=time.time())
    return handle, ""


def stop_group(pid: int, ticks: int | None, grace: float, popen: subprocess.Popen[bytes] | None = None,
               poll: float = 0.05) -> str:
    """SIGTERM the group, wait ``grace`` s, SIGKILL the group; return what happened."""
    if not group_is_ours(pid, ticks):
        return "not running"
    _signal_group(pid, signal.SIGTERM)
    if _wait_group_gone(pid, grace, popen, poll):
        return "stopped"
    _signal_group(pid, signal.SIGKILL)
    if _wait_group_gone(pid, 10.0, popen, poll):
        return f"killed (still running {grace:g}s after SIGTERM)"
    return f"processes {group_members(pid)} of group {pid} survive SIGKILL"


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_group_gone(pgid: int, timeout: float, popen: subprocess.Popen[bytes] | None, poll: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if popen is not None:
            popen.poll()                # reap our own child so it does not linger as a zombie
        if not group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a text file (progress bars' carriage returns count as breaks)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return []
    kept: deque[str] = deque(maxlen=lines)
    for line in data.replace("\r", "\n").split("\n"):
        if line.strip():
            kept.append(line.rstrip())
    return list(kept)
