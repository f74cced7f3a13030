"""supervise against what a user does around it: a crashed server's orphaned children, a `serve` in
another shell, a model config broken while it runs. Real processes (test responders on 127.0.0.1),
supervise as a child process exactly as a container's command."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from auto_infer.core.net import free_port
from auto_infer.core.settings import load
from auto_infer.serve import procs, registry
from tests.helpers import CLI, Workspace
from tests.helpers.serving import responder_config
from tests.helpers.supervising import WAIT, finish, leave, ready_record, start


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
        leave(proc, env)
        if procs.is_ours(child, None):
            os.kill(child, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert f"processes [{child}] of its last run (group {first.pid}) were still running: stopped" in err, err


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
        leave(proc, env)
    assert proc.returncode == 0 and "nothing left to supervise" not in err, err
    assert "SIGTERM received" in err and registry.read_or_empty(load(env), "ed1").state == "stopped", err
    assert not procs.group_members(again.pid or 0)


def test_a_config_broken_while_a_server_restarts_leaves_the_others_running(
    installed: Workspace, tmp_path: Path
) -> None:
    """A server crashes while the model config is being edited (a TOML error): supervise cannot start it
    again. It used to stop every healthy server and exit 1; it keeps them, retries with its backoff and
    starts the crashed one once the config is right again."""
    cfg = responder_config({"brk1": {"port": free_port()}, "brk2": {"port": free_port()}})
    proc, env = start(installed, tmp_path, cfg, AUTO_INFER_SUPERVISE_BACKOFF="1", AUTO_INFER_SUPERVISE_MAX_CRASHES="5")
    try:
        first, other = ready_record(env, "brk1"), ready_record(env, "brk2")
        (tmp_path / "models.toml").write_text(cfg.replace("[instance.brk2.server]", "[instance.brk2.server"))
        os.killpg(first.pid or 0, signal.SIGKILL)
        deadline = time.monotonic() + WAIT
        while "cannot start it again" not in (registry.read_or_empty(load(env), "brk1").reason or ""):
            assert proc.poll() is None, finish(proc)[1]
            assert time.monotonic() < deadline, "no retry said why it cannot start"
            time.sleep(0.2)
        assert registry.is_running(registry.read_or_empty(load(env), "brk2"))       # left running
        (tmp_path / "models.toml").write_text(cfg)                                 # the edit is done
        again = ready_record(env, "brk1", not_pid=first.pid)
        assert ready_record(env, "brk2").pid == other.pid
        proc.send_signal(signal.SIGTERM)
        out, err = finish(proc)
    finally:
        leave(proc, env)
    assert proc.returncode == 0, err
    assert "supervise: brk1: cannot start it again: TOML syntax error" in err, err
    assert not procs.group_members(again.pid or 0) and not procs.group_members(other.pid or 0)


def test_a_crashed_server_whose_port_is_taken_meanwhile_comes_back_when_it_is_free(
    installed: Workspace, tmp_path: Path
) -> None:
    """kill -9 of a server with a child, and something else takes its port before the restart: supervise
    ends the orphaned child, cannot start the server (port in use), and retries. Ending the child must
    not mark the record stopped: that reads as `auto-infer stop`, and the server never came back."""
    port = free_port()
    cfg = responder_config({"prt1": {"port": port, "flags": ["--spawn-child"]}, "prt2": {"port": free_port()}})
    proc, env = start(installed, tmp_path, cfg, AUTO_INFER_SUPERVISE_BACKOFF="2", AUTO_INFER_SUPERVISE_MAX_CRASHES="9")
    squatter = socket.socket()
    try:
        first = ready_record(env, "prt1")
        os.kill(first.pid or 0, signal.SIGKILL)
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + WAIT
        while True:                                  # free as soon as the killed server is gone
            try:
                squatter.bind(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        squatter.listen()
        while "port" not in (registry.read_or_empty(load(env), "prt1").reason or ""):
            assert proc.poll() is None, finish(proc)[1]
            assert time.monotonic() < deadline, registry.read_or_empty(load(env), "prt1")
            time.sleep(0.2)
        squatter.close()
        again = ready_record(env, "prt1", not_pid=first.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = finish(proc)
    finally:
        squatter.close()
        leave(proc, env)
    assert proc.returncode == 0, err
    assert f"supervise: prt1: cannot start it again: instance prt1: port {port} is already in use" in err, err
    assert not procs.group_members(first.pid or 0) and not procs.group_members(again.pid or 0)


def test_an_instance_a_later_serve_started_is_watched_too(installed: Workspace, tmp_path: Path) -> None:
    """An instance added to the model config while supervise runs (PID 1) and started with
    `auto-infer serve` from a second shell: supervise restarts it when it crashes, and stops it at the end."""
    one = {"join1": {"port": free_port()}}
    proc, env = start(installed, tmp_path, responder_config(one))
    try:
        ready_record(env, "join1")
        (tmp_path / "models.toml").write_text(responder_config({**one, "join2": {"port": free_port()}}))
        r = subprocess.run([*CLI, "serve"], env=env, capture_output=True, text=True, timeout=WAIT)
        assert r.returncode == 0, r.stderr
        first = ready_record(env, "join2")
        os.kill(first.pid or 0, signal.SIGKILL)        # crashed: seen by supervise now or on its next look
        again = ready_record(env, "join2", not_pid=first.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = finish(proc)
    finally:
        leave(proc, env)
    assert proc.returncode == 0, err
    assert "supervise: join2 was started by another `serve` (the model config gained it): watching it too" in err, err
    assert not registry.is_running(registry.read_or_empty(load(env), "join2")), f"join2 ({again.pid}) still runs"


def test_status_says_restarting_during_supervises_backoff(installed: Workspace, tmp_path: Path) -> None:
    """A `docker exec ... auto-infer status` while supervise waits to restart a crashed server: that
    server is "restarting" (and when), not "failed ... ended without `auto-infer stop`"; once supervise
    is gone, a record it left restarting reads failed again."""
    proc, env = start(installed, tmp_path, responder_config({"back1": {"port": free_port()}}),
                      AUTO_INFER_SUPERVISE_BACKOFF="60")     # a long wait: status is asked inside it
    try:
        first = ready_record(env, "back1")
        os.kill(first.pid or 0, signal.SIGKILL)
        deadline = time.monotonic() + WAIT
        while registry.read_or_empty(load(env), "back1").state != "restarting" and time.monotonic() < deadline:
            time.sleep(0.2)
        r = subprocess.run([*CLI, "status", "--json"], env=env, capture_output=True, text=True, timeout=WAIT)
        assert r.returncode == 0, r.stderr
        [row] = [x for x in json.loads(r.stdout) if x["name"] == "back1"]
        assert row["state"] == "restarting" and "restart 1 of at most 2" in row["detail"], row
        os.kill(proc.pid, signal.SIGKILL)                   # supervise dies inside its backoff
        proc.wait(timeout=WAIT)
        r = subprocess.run([*CLI, "status", "--json"], env=env, capture_output=True, text=True, timeout=WAIT)
        [row] = [x for x in json.loads(r.stdout) if x["name"] == "back1"]
        assert row["state"] == "failed" and "supervise that was restarting it is gone too" in row["detail"], row
    finally:
        leave(proc, env)
        subprocess.run([*CLI, "stop"], env=env, capture_output=True, timeout=WAIT)
