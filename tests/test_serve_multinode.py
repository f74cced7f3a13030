"""Multi-node SGLang instances (issue 14): a worker rank (nnodes > 1, node_rank > 0) serves no HTTP.

One config, one instance with nnodes = 2, served twice from one workspace (as an LWS leader and its
worker share the claim): rank 0 as usual, rank 1 through AUTO_INFER_SGLANG_OVERRIDES. The servers
are the test responder on the SGLang path (server_module), which, like SGLang, never listens on a
rank > 0. Real processes, real HTTP on 127.0.0.1; the CLI as a user runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from auto_infer.core.net import free_port
from auto_infer.core.settings import load
from auto_infer.serve import procs, registry
from tests.helpers import CLI, model_folder
from tests.helpers.serving import Serve

RANK1 = json.dumps({"instance": {"big": {"server": {"node_rank": 1}}}})
WAIT = 90.0


def two_node_config(tmp_path: Path, port: int, extra: str = "") -> str:
    model_dir = tmp_path / "big-model"
    model_folder(model_dir)
    return f"""[master]
python_path = "{sys.executable}"
server_module = "auto_infer.demo.responder"

[instance.control]
ready_timeout = 60
stop_grace = 5

[instance.big.server]
model_path = "{model_dir}"
served_model_name = "big-model"
host = "127.0.0.1"
port = {port}
nnodes = 2
node_rank = 0
dist_init_addr = "127.0.0.1:{free_port()}"
{extra}"""


def sockets_of(pid: int) -> list[str]:
    fds = Path(f"/proc/{pid}/fd")
    return [link for link in (os.readlink(f) for f in fds.iterdir()) if link.startswith("socket:")]


def test_leader_and_worker_rank_share_a_workspace_without_colliding(serve: Serve, tmp_path: Path) -> None:  # noqa: F811
    port = free_port()
    serve.write(two_node_config(tmp_path, port))
    planned = serve.ok("serve", "--dry-run", AUTO_INFER_SGLANG_OVERRIDES=RANK1).stdout
    assert "ready: worker rank 1 of 2 (serves no HTTP" in planned and "(big@rank1)" in planned
    assert "/big@rank1/server.log" in planned
    lead = serve.ok("serve")
    assert "big ready" in lead.stderr and "worker rank" not in lead.stderr
    work = serve.ok("serve", AUTO_INFER_SGLANG_OVERRIDES=RANK1)
    assert "✓ big@rank1 running" in work.stderr and "worker rank 1 of 2 (serves no HTTP" in work.stderr, work.stderr
    assert "big@rank1 chat" not in work.stderr                                    # no chat with a worker rank
    leader, worker = serve.record("big"), serve.record("big@rank1")
    assert leader["state"] == "ready" and worker["state"] == "running"
    assert running(serve.env, "big") and running(serve.env, "big@rank1") and leader["pid"] != worker["pid"]
    assert (leader["port"], worker["port"], worker["base_url"]) == (port, None, None)
    assert worker["worker"]["rank"] == 1 and worker["instance"] == "big" and leader["worker"] is None
    assert Path(leader["log"]).parent.name == "big" and Path(worker["log"]).parent.name == "big@rank1"
    assert "worker rank 1 of 2: no HTTP server" in Path(worker["log"]).read_text()
    assert sockets_of(worker["pid"]) == []                                        # it never listens ...
    assert serve.debug_env(port)["pid"] == leader["pid"]                          # ... the leader does
    inst = serve.report()["instances"][0]
    assert (inst["record"], inst["ok"], inst["chat"]) == ("big@rank1", True, None)
    assert inst["worker"].startswith("worker rank 1 of 2")
    rows = {row["name"]: row for row in json.loads(serve.ok("status", "--json").stdout)}
    assert rows["big"]["state"] == "ready" and rows["big@rank1"]["state"] == "running"
    assert "serves no HTTP" in rows["big@rank1"]["detail"] and rows["big@rank1"]["pid"] == worker["pid"]
    assert "big@rank1  running" in serve.ok("status").stdout
    again = serve.ok("serve", AUTO_INFER_SGLANG_OVERRIDES=RANK1)                  # kept: no HTTP asked
    assert "big@rank1: running with the same config: left alone → keep" in again.stderr
    assert serve.record("big@rank1")["pid"] == worker["pid"]
    chat = serve.ok("chat")
    assert "big: Hello from big-model" in chat.stdout and "big@rank1" not in chat.stdout
    stopped = serve.ok("stop", "big@rank1")
    assert "big@rank1: stopped" in stopped.stderr and procs.group_members(worker["pid"]) == []
    assert serve.record("big@rank1")["state"] == "stopped" and running(serve.env, "big")
    serve.ok("stop", "big")
    assert serve.record("big")["state"] == "stopped"


def test_a_worker_rank_that_ends_at_once_fails_with_its_log(serve: Serve, tmp_path: Path) -> None:  # noqa: F811
    serve.write(two_node_config(tmp_path, free_port(), 'extra_args = ["--crash-on-start"]'))
    r = serve.cli("serve", AUTO_INFER_SGLANG_OVERRIDES=RANK1)
    assert r.returncode == 1 and "✗ big@rank1: the process ended while starting (exit code 3)" in r.stderr
    assert "crash on start, as asked" in r.stderr
    assert serve.record("big@rank1")["state"] == "failed"


def running(env: dict[str, str], key: str) -> bool:
    return registry.is_running(registry.read_or_empty(load(env), key))


def wait_record(env: dict[str, str], key: str, state: str, not_pid: int | None = None) -> registry.ServerRecord:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        rec = registry.read_or_empty(load(env), key)
        if rec.state == state and rec.pid != not_pid and registry.is_running(rec):
            return rec
        time.sleep(0.2)
    raise AssertionError(f"{key} not {state} (again) within {WAIT} s: {registry.read(load(env), key)}")


def supervise(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "supervise"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, cwd="/")


def sigterm(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    return out, err


def test_leader_and_worker_supervise_side_by_side_and_a_crashed_worker_restarts(serve: Serve, tmp_path: Path) -> None:  # noqa: F811
    """As an LWS leader pod and its worker pod on one claim: two supervise runs on one workspace."""
    serve.write(two_node_config(tmp_path, free_port()))
    env = {**serve.env, "AUTO_INFER_SUPERVISE_BACKOFF": "0.5", "AUTO_INFER_SUPERVISE_MAX_CRASHES": "3",
           "AUTO_INFER_LOCK_TIMEOUT": str(WAIT)}
    procs_ = [supervise(env)]
    try:
        leader = wait_record(env, "big", "ready")
        procs_.append(supervise({**env, "AUTO_INFER_SGLANG_OVERRIDES": RANK1}))    # the run lock was let go
        first = wait_record(env, "big@rank1", "running")
        os.killpg(first.pid or 0, signal.SIGKILL)                    # a crash: its supervise restarts it
        again = wait_record(env, "big@rank1", "running", not_pid=first.pid)
        out_w, err_w = sigterm(procs_[1])                          # the worker's stop leaves the leader alone
        assert serve.record("big")["pid"] == leader.pid and running(serve.env, "big")
        out_l, err_l = sigterm(procs_[0])
    finally:
        for proc in procs_:
            if proc.poll() is None:
                proc.kill()
    assert "supervise: servers spawned; the run lock is released" in err_l
    assert "supervise: watching big@rank1 " in err_w and "supervise: big@rank1 ended (killed by signal 9)" in err_w
    assert "worker rank 1 of 2: no HTTP server" in out_w                               # its log on stdout ...
    assert not any(ln.startswith("big | ") for ln in out_w.splitlines())               # ... and only its own
    assert not any(ln.startswith("big@rank1 | ") for ln in out_l.splitlines())
    assert procs.group_members(again.pid or 0) == [] and procs.group_members(leader.pid or 0) == []
    assert serve.record("big@rank1")["state"] == serve.record("big")["state"] == "stopped"


def test_a_leader_that_waits_for_its_ranks_never_stalls_its_worker(serve: Serve, tmp_path: Path) -> None:  # noqa: F811
    """Issue 23.1: as SGLang's rank 0, the leader is not ready before the worker rank has joined it
    (--wait-ranks). Leader and worker supervise on one workspace (two LWS pods on one claim): the
    leader lets go of the run lock once its server is spawned, so the worker starts and joins."""
    serve.write(two_node_config(tmp_path, free_port(), 'extra_args = ["--wait-ranks"]'))
    long = {"control": {"ready_timeout": 3600}}                  # a stall cannot end by a timeout here
    env = {**serve.env, "AUTO_INFER_LOCK_TIMEOUT": str(WAIT),
           "AUTO_INFER_SGLANG_OVERRIDES": json.dumps({"instance": {"big": long}})}
    procs_ = [supervise(env)]
    try:
        deadline = time.monotonic() + WAIT                      # the leader's server waits for its rank
        while "waiting for 1 rank(s) to join" not in _log(env, "big") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "waiting for 1 rank(s) to join" in _log(env, "big")
        first = registry.read_or_empty(load(env), "big")
        rank1 = {"instance": {"big": {**long, "server": {"node_rank": 1}}}}
        procs_.append(supervise({**env, "AUTO_INFER_SGLANG_OVERRIDES": json.dumps(rank1)}))
        worker = wait_record(env, "big@rank1", "running")
        leader = wait_record(env, "big", "ready")               # ready only once the worker joined
        assert leader.pid == first.pid                    # the first start: nothing timed out
        assert "a rank joined" in _log(env, "big") and "joined the leader" in Path(worker.log).read_text()
        out_w, err_w = sigterm(procs_[1])
        out_l, err_l = sigterm(procs_[0])
    finally:
        _end(procs_)
    assert "the run lock is released before they load" in err_l
    assert procs.group_members(leader.pid or 0) == [] and procs.group_members(worker.pid or 0) == []


def _end(procs_: list[subprocess.Popen[str]]) -> None:
    """A failed test's supervise runs: SIGTERM first (each stops its servers), SIGKILL only after."""
    for proc in procs_:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs_:
        try:
            proc.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _log(env: dict[str, str], key: str) -> str:
    path = Path(registry.read_or_empty(load(env), key).log or "/nonexistent")
    return path.read_text() if path.is_file() else ""


def test_supervise_with_nothing_to_run_says_so_and_exits_1(serve: Serve, tmp_path: Path) -> None:  # noqa: F811
    """Issue 21.6: as PID 1, exit 0 would be restarted in a silent loop."""
    serve.write(two_node_config(tmp_path, free_port()).replace("[master]\n", "[master]\nenable = false\n"))
    proc = supervise(serve.env)
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 1 and "supervise has nothing to run: [master] enable = false" in err, err
    assert "Traceback" not in err
    serve.write(two_node_config(tmp_path, free_port(), "[instance.big.control]\nenabled = false"))
    proc = supervise(serve.env)
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 1 and "supervise has nothing to run: no instance of" in err, err
