"""supervise against what a user does around it: a crashed server's orphaned children, a `serve` in
another shell, a model config broken while it runs. Real processes (test responders on 127.0.0.1),
supervise as a child process exactly as a container's command."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from auto_infer.core.net import free_port
from auto_infer.core.settings import load
from auto_infer.serve import procs, registry
from tests.helpers import CLI, Workspace
from tests.helpers.serving import responder_config
from tests.test_supervise import WAIT, finish, ready_record, start


def test_a_restart_first_ends_what_the_crashed_server_left_running(installed: Workspace, tmp_path: Path) -> None:
    """kill -9 of a server's main process leaves its children (SGLang's scheduler, with the GPU memory)
    running in its group: the restart must end them, not start a second copy next to them."""
    cfg = responder_config({"orph1": {"port": free_port(), "flags": ["--spawn-child"]}})
    proc, env = start(installed, tmp_path, cfg)
    try:
        first = ready_record(env, "orph1")
        [child] = [p for p in procs.group_members(first.pid or 0) if p != first.pid]
        os.kill(first.pid or 0, signal.SIGKILL)                 # the leader only: its child is orphaned
        ready_record(env, "orph1", not_pid=first.pid)
        assert not procs.is_ours(child, None), f"the old server's child {child} still runs after the restart"
        proc.send_signal(signal.SIGTERM)
        out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        if procs.is_ours(child, None):
            os.kill(child, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert f"processes [{child}] of its last run (group {first.pid}) are still running: stopped" in err, err


def test_a_serve_in_another_shell_that_restarts_every_server_does_not_end_supervise(
    installed: Workspace, tmp_path: Path
) -> None:
    """The config edited while supervise runs, then `auto-infer serve` in another shell: serve stops
    the server (its config changed) and starts it again. For the length of that stop every record says
    stopped; supervise took that for `auto-infer stop` of all, exited 0 (a container's end) and, on
    its way out, stopped the server serve was starting."""
    cfg = responder_config({"ed1": {"port": free_port(), "flags": ["--ignore-sigterm"],
                                    "control": "stop_grace = 2"}})   # a server that takes a while to stop
    proc, env = start(installed, tmp_path, cfg)
    try:
        first = ready_record(env, "ed1")
        (tmp_path / "models.toml").write_text(cfg.replace('"ed1-model"', '"ed1-edited"'))
        r = subprocess.run([*CLI, "serve"], env=env, capture_output=True, text=True, timeout=WAIT)
        assert r.returncode == 0, r.stderr
        again = ready_record(env, "ed1", not_pid=first.pid)
        assert again.model == "ed1-edited" and proc.poll() is None, "supervise ended during the other shell's serve"
        proc.send_signal(signal.SIGTERM)
        out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "nothing left to supervise" not in err, err
    assert "SIGTERM received" in err and registry.read_or_empty(load(env), "ed1").state == "stopped", err
    assert not procs.group_members(again.pid or 0)

