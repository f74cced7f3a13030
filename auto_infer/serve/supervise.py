"""supervise: the foreground mode for PID 1 (a compose service's or a pod's command).

``auto-infer supervise`` installs if needed (offline: the ``install`` task it depends on), starts
everything as ``serve`` does (instances, then the gateway), and stays in the foreground:

* a server (or the gateway) whose process ends without ``auto-infer stop`` is restarted after a
  backoff (``AUTO_INFER_SUPERVISE_BACKOFF`` s, doubled per crash, at most 60 s); the
  ``AUTO_INFER_SUPERVISE_MAX_CRASHES``-th crash of one server within
  ``AUTO_INFER_SUPERVISE_WINDOW`` s stops everything and ends supervise with exit 1 and the tail
  of its log;
* SIGTERM / SIGINT stop every process group gracefully (each its own stop_grace, all at once),
  then supervise exits 0;
* it reaps its children, and as a child subreaper also the orphans its servers leave;
* each server's log is copied to stdout as ``NAME | line`` (the log files are still written);
* the run lock (taken by the command line around the install and the first start) is released
  as soon as every process is spawned, before any is waited for: the pods of a multi-node
  instance share one workspace on a Kubernetes claim and each runs its own supervise, and SGLang's
  rank 0 is not ready before every rank has joined, so no rank may wait for another's readiness;
* with nothing to run (``[master] enable = false``, or no enabled instance) it says so and exits
  1: as PID 1 an exit 0 would look like a finished job and be restarted in a silent loop;
* a server stopped with ``auto-infer stop NAME`` stays stopped; when all are, supervise exits 0;
* a worker rank of a multi-node instance (record NAME@rankN, no HTTP: orchestrator) is watched and
  restarted the same way; a host that runs only worker ranks runs no gateway.
"""

from __future__ import annotations

import collections
import ctypes
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

from auto_infer.core import runlock
from auto_infer.core.errors import UserError
from auto_infer.core.progress import say
from auto_infer.core.settings import Restarts, Settings
from auto_infer.serve import actions, config, gateway, orchestrator, procs, registry
from auto_infer.serve.logstream import LogStream
from auto_infer.serve.model import ROUTER_NAME

POLL = 0.5


class Stop(BaseException):
    """A signal asked supervise to stop everything (a BaseException, as KeyboardInterrupt: no
    ``except Exception`` on the way may swallow it)."""


class GiveUp(Exception):
    """One server crashed too often."""


def supervise(settings: Settings, pol: Restarts | None = None, out: IO[str] | None = None) -> int:
    """Start everything, keep it running, stop it all on SIGTERM/SIGINT. Returns the exit code."""
    pol = pol or settings.restarts
    _become_subreaper()
    stopping: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stopping:                            # the first one stops; later ones wait for that stop
            stopping.append(signal.Signals(signum).name)
            raise Stop(stopping[0])

    mine = supervised(settings)     # its own records only: other pods may keep theirs on the same claim
    if not mine:
        raise UserError("supervise has nothing to run: " + nothing(settings), where=str(settings.config_path),
                        fix="enable the master and an instance in the model config, or do not start supervise "
                            "(as PID 1 it exits 1 rather than 0, so nothing restarts it in a silent loop)")
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    stream = LogStream(settings, out or sys.stdout, keys=mine)
    stream.start()
    failure: str | None = None
    try:
        try:
            orchestrator.serve(settings, strict=False, spawned=_let_go)
            _watch(settings, pol, mine)
        except Stop as sig:
            say(f"supervise: {sig} received: stopping every server gracefully")
        except GiveUp as exc:
            failure = str(exc)
            say(f"supervise: {failure.splitlines()[0]}: stopping everything")
    finally:
        stopping.append("stopping")
        try:
            started = [n for n in mine if registry.read(settings, n) is not None]
            if started:
                actions.stop(settings, started, exact=True)
        finally:
            _reap()
            stream.stop()
            for s, handler in old.items():
                signal.signal(s, handler)
    if failure:
        raise UserError(failure, where="AUTO_INFER_SUPERVISE_MAX_CRASHES / AUTO_INFER_SUPERVISE_WINDOW",
                        fix="read the log (`auto-infer logs NAME`), fix the server or its config, start again")
    say("supervise: everything stopped")
    return 0


def _let_go() -> None:
    if runlock.release_held():
        say("supervise: servers spawned; the run lock is released before they load (other auto-infer runs "
            "on this workspace, e.g. the other ranks' pods on a shared claim, may start theirs)")


def nothing(settings: Settings) -> str:
    cfg = config.load(settings)
    if not cfg.master.enable:
        return f"[master] enable = false in {cfg.path}"
    return f"no instance of {cfg.path} is enabled"


def supervised(settings: Settings) -> list[str]:
    """The records this supervise owns: the enabled instances' (a worker rank's NAME@rankN) and the
    gateway's where it runs here."""
    cfg = config.load(settings)
    if not cfg.master.enable:
        return []
    return [i.key for i in cfg.enabled()] + ([ROUTER_NAME] if gateway.runs_here(cfg) else [])


def _watch(settings: Settings, pol: Restarts, names: list[str]) -> None:
    """Restart what ends until a signal (Stop), a crash loop (GiveUp), or everything is stopped.
    ``names`` grows with what a later `serve` started (_joined): the caller stops all it holds."""
    crashes: dict[str, collections.deque[float]] = {n: collections.deque() for n in names}
    say(f"supervise: watching {', '.join(names)} (restart after {pol.backoff:g} s, doubling; "
        f"give up at {pol.max_crashes} crashes within {pol.window:g} s)")
    exited: dict[int, int] = {}             # reaped, not yet restarted: kept across rounds
    config: dict[str, Any] = {}              # _joined's last read of the model config
    while True:
        exited.update(_reap())
        for name in _joined(settings, names, config):
            names.append(name)
            crashes[name] = collections.deque()
            say(f"supervise: {name} was started by another `serve` (the model config gained it): watching it too")
        recs = {n: registry.read_or_empty(settings, n) for n in names}
        watched = {int(r.pid or 0) for r in recs.values()}
        exited = {pid: st for pid, st in exited.items() if pid in watched}   # orphans reaped: not ours to keep
        if all(r.state == "stopped" for r in recs.values()) and _all_stopped(settings, names):
            say("supervise: every server was stopped with `auto-infer stop`: nothing left to supervise")
            return
        for name, rec in recs.items():
            if rec.state == "stopped" or registry.is_running(rec):
                continue
            exited.update(_reap())              # it may have ended after this round's first reap
            status = exited.pop(int(rec.pid or 0), None)
            polled = procs.how_it_ended(int(rec.pid or 0))   # and lets its Popen go
            how = _how(status) if status is not None else polled
            _restart(settings, pol, name, rec, crashes[name], how)
        time.sleep(POLL)


def _joined(settings: Settings, names: list[str], config: dict[str, Any]) -> list[str]:
    """Instances of the model config, not watched yet, that a `serve` in another shell started (the
    config gained them): their record is there and not stopped, whether the server still runs or has
    crashed since. One only added to the config, never started, is left alone. The config is read
    again only when its file changed (``config`` keeps the last read): a poll costs a stat and the
    records of the instances not watched yet."""
    try:
        st = settings.config_path.stat()
    except OSError:
        return []
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    if config.get("stamp") != stamp:
        config["stamp"] = stamp
        try:
            config["instances"] = supervised(settings)
        except UserError:               # a config being edited: the watched ones stay as they are
            config["instances"] = []
    out = []
    for name in (n for n in config["instances"] if n not in names):
        rec = registry.read(settings, name)
        if rec is not None and rec.state != "stopped":
            out.append(name)
    return out


def _all_stopped(settings: Settings, names: list[str]) -> bool:
    """Still all stopped, asked under the run lock: a `serve` in another shell (which holds it) stops a
    server whose config changed before it starts it again; that is no `auto-infer stop` of all."""
    with runlock.if_free(settings.runlock_path) as free:
        return free and all(registry.read_or_empty(settings, n).state == "stopped" for n in names)


def _restart(settings: Settings, pol: Restarts, name: str, rec: registry.ServerRecord, times: collections.deque[float],
             how: str | None) -> None:
    now = time.monotonic()
    times.append(now)
    while times and times[0] < now - pol.window:
        times.popleft()
    how = how or rec.reason or "ended"
    if len(times) >= pol.max_crashes:
        tail = "\n".join(f"    {line}" for line in procs.tail(Path(str(rec.log)), 15))
        raise GiveUp(f"{name} crashed {len(times)} times within {pol.window:g} s (last: {how}); giving up\n"
                     f"  last lines of {rec.log}:\n{tail or '    (empty)'}")
    delay = pol.delay(len(times))
    said = (f"ended ({how}): restart {len(times)} of at most {pol.max_crashes - 1} within {pol.window:g} s, "
            f"in {delay:g} s")
    say(f"supervise: {name} {said}")
    # what `status` shows meanwhile (from another shell): restarting, while this supervise lives
    registry.update(settings, name, unless_state=("stopped",), state="restarting", reason=f"supervise: {said}",
                    restarter=[os.getpid(), procs.start_ticks(os.getpid())])
    time.sleep(delay)
    # serve everything again: what runs is kept, what ended is started, and the gateway is re-planned
    # (restarted when the set of ready workers changed, so a worker that is back is routed to again)
    try:
        orchestrator.serve(settings, strict=False)
    except UserError as exc:
        # the model config half-edited, its port taken meanwhile: the others keep running, and it is tried
        # again (counted as a crash) until that is fixed or the crash limit stops everything
        why = f"cannot start it again: {exc.what.splitlines()[0]}" + (f" ({exc.where})" if exc.where else "")
        say(f"supervise: {name}: {why}")
        registry.update(settings, name, unless_state=("stopped",), state="failed", reason=why)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"


def _reap() -> dict[int, int]:
    """Collect every ended child (our servers, and orphans adopted as subreaper): pid -> wait status."""
    ended: dict[int, int] = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended[pid] = status


def _become_subreaper() -> None:
    """Adopt orphaned descendants (PR_SET_CHILD_SUBREAPER), so they are reaped here even when
    supervise is not PID 1 (under tini, or in a test). Best effort: Linux only."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
