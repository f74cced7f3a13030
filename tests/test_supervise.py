"""supervise, as a real foreground process: restarts (count, backoff), giving up on a crash loop,
SIGTERM stopping every group within its grace, logs on stdout with a prefix. Test responders on
127.0.0.1; the CLI runs as a child process exactly as a container's command would."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from auto_infer.core.net import free_port
from auto_infer.core.settings import Restarts, load
from auto_infer.serve import procs, registry
from tests.conftest import needs_netns
from tests.helpers import CLI, Workspace
from tests.helpers.serving import SMG, make_installed, responder_config, router_table
from tests.helpers.supervising import WAIT, finish, leave, ready_record, start


def test_supervise_restarts_a_crashed_server_and_sigterm_stops_every_group(
    installed: Workspace, tmp_path: Path
) -> None:
    pa, pb = free_port(), free_port()
    proc, env = start(installed, tmp_path, responder_config(
        {"sa": {"port": pa, "flags": ["--spawn-child"]}, "sb": {"port": pb}}))
    try:
        first_a, first_b = ready_record(env, "sa"), ready_record(env, "sb")
        os.killpg(first_b.pid or 0, signal.SIGKILL)                   # a crash: supervise restarts it
        again = ready_record(env, "sb", not_pid=first_b.pid)
        assert requests.get(f"http://127.0.0.1:{pb}/health", timeout=5).status_code == 200
        assert ready_record(env, "sa").pid == first_a.pid        # the other one was left alone
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        out, err = finish(proc)
        print(
            f"\nSIGTERM → supervise exited {proc.returncode} after {time.monotonic() - t0:.2f} s (all groups stopped)"
        )
    finally:
        leave(proc, env)
    assert proc.returncode == 0, err
    assert "sb ended (killed by signal 9): restart 1 of at most 2 within 600 s, in 0.5 s" in err, err
    assert "SIGTERM received: stopping every server gracefully" in err and "everything stopped" in err
    for rec in (first_a, first_b, again):                       # no orphans: every group is gone
        assert not procs.group_members(rec.pid or 0), rec
    assert registry.read_or_empty(load(env), "sa").state == "stopped"
    assert "sa | [responder" in out and "sb | [responder" in out           # logs on stdout, prefixed
    assert Path(first_a.log).read_text().count("The server is fired up") == 1   # the files are still written


def test_supervise_gives_up_on_a_server_that_crashes_every_time(installed: Workspace, tmp_path: Path) -> None:
    pa, pb = free_port(), free_port()
    proc, env = start(installed, tmp_path, responder_config(
        {"ok1": {"port": pa}, "bad1": {"port": pb, "flags": ["--crash-on-start"]}}))
    out, err = finish(proc)
    assert proc.returncode == 1, err
    assert "bad1 crashed 3 times within 600 s" in err and "giving up" in err, err
    assert "crash on start, as asked" in err                      # the tail of its log says why
    assert err.count("bad1 ended (") == 2                         # restarted twice, then the third crash ends it
    rec = registry.read_or_empty(load(env), "ok1")
    assert rec.state == "stopped" and not procs.group_members(rec.pid or 0)


def test_supervise_exits_when_everything_was_stopped_by_hand(installed: Workspace, tmp_path: Path) -> None:
    pa = free_port()
    proc, env = start(installed, tmp_path, responder_config({"solo1": {"port": pa}}))
    try:
        ready_record(env, "solo1")
        r = subprocess.run([*CLI, "stop", "solo1"], env=env, capture_output=True, text=True, timeout=WAIT)
        assert r.returncode == 0, r.stderr
        out, err = finish(proc)
    finally:
        leave(proc, env)
    assert proc.returncode == 0 and "nothing left to supervise" in err, err


def test_restart_policy_from_the_environment() -> None:
    assert load({}).restarts == Restarts(5, 600.0, 2.0)
    p = load({"AUTO_INFER_SUPERVISE_MAX_CRASHES": "2", "AUTO_INFER_SUPERVISE_BACKOFF": "1"}).restarts
    assert (p.max_crashes, p.delay(1), p.delay(3), p.delay(20)) == (2, 1.0, 4.0, 60.0)
    from auto_infer.core.errors import UserError

    with pytest.raises(
        UserError, match=r"AUTO_INFER_SUPERVISE_WINDOW='soon' is not a number of seconds \(more than 0, "
    ):
        load({"AUTO_INFER_SUPERVISE_WINDOW": "soon"})


def test_supervise_restarts_the_gateway(installed: Workspace, tmp_path: Path) -> None:
    if not SMG.exists():
        pytest.skip("sglang-router is not installed (pip install -e '.[dev]')")
    pa, gport, mport = free_port(), free_port(), free_port()
    proc, env = start(installed, tmp_path, responder_config({"gw1": {"port": pa}}) + router_table(gport, mport))
    try:
        first = ready_record(env, "router")
        os.killpg(first.pid or 0, signal.SIGKILL)
        again = ready_record(env, "router", not_pid=first.pid)
        r = requests.post(f"http://127.0.0.1:{gport}/v1/chat/completions", timeout=30,
                          json={"model": "gw1-model", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].startswith("Hello from gw1-model")
        proc.send_signal(signal.SIGINT)
        out, err = finish(proc)
    finally:
        leave(proc, env)
    assert proc.returncode == 0 and "router ended (killed by signal 9): restart 1" in err, err
    assert "SIGINT received" in err and "router | " in out
    assert not procs.group_members(first.pid or 0) and not procs.group_members(again.pid or 0)


@needs_netns
@pytest.mark.netns
def test_supervise_installs_what_is_missing_offline_then_serves(tmp_path_factory: pytest.TempPathFactory,
                                                                 built_channel: Any, tmp_path: Path) -> None:
    fresh = make_installed(tmp_path_factory, built_channel)      # warmed (caches + manifest) ...
    import shutil
    shutil.rmtree(fresh.prefix)                                  # ... but the environment is gone
    proc, env = start(fresh, tmp_path, responder_config({"off1": {"port": free_port()}}), net=False)
    try:
        ready_record(env, "off1")
        assert (fresh.prefix / "conda-meta").is_dir()            # installed again, with no network at all
        proc.send_signal(signal.SIGTERM)
        out, err = finish(proc)
    finally:
        leave(proc, env)
    assert proc.returncode == 0 and ".  install" in err and "everything stopped" in err, err


def _killed_server(tmp_path: Path) -> int:
    """A server started as serve starts one, its handle dropped (as serve returns), then killed."""
    h = procs.spawn(["sleep", "60"], env=dict(os.environ), log=tmp_path / "s.log", cwd=tmp_path, secrets=[])
    pid = h.pid
    del h
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while procs.is_ours(pid, None) and time.monotonic() < deadline:
        time.sleep(0.01)
    return pid


def test_how_a_server_ended_survives_its_dropped_handle(tmp_path: Path) -> None:
    """The race behind a CI failure: serve's handle of a server is collected just after the server
    died, and a collected Popen reaps its child; supervise's waitpid then found nothing and said
    `ended` instead of `killed by signal 9`. The spawned Popen is kept, so the status is still there."""
    import gc

    from auto_infer.serve import supervise

    pid = _killed_server(tmp_path)
    gc.collect()                                   # what the end of serve's frame does to its handles
    assert supervise._how(supervise._reap()[pid]) == "killed by signal 9"

    pid = _killed_server(tmp_path)
    assert procs.Handle(pid, None, procs._SPAWNED[pid]).ended() == "killed by signal 9"   # a poll reaped it
    assert pid not in supervise._reap()
    assert procs.how_it_ended(pid) == "killed by signal 9"
