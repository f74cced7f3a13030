"""Server faults, with the test responder standing in for SGLang (the `command` engine): a crash at
start, a hang before ready, a death after ready, SIGTERM ignored, the port taken between validation
and start; and `boot` racing a manual `serve`. Each is reported clearly, `status` tells the truth,
and after `stop` no process of ours is left (the whole process group, children included)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auto_infer.core.net import free_port
from auto_infer.core.settings import load
from auto_infer.demo import mirror
from auto_infer.serve import procs, registry
from tests.helpers import CLI, run_cli
from tests.reliability_tools import (
    RESPONDER_CMD,
    CountingListener,
    count,
    finish,
    no_traceback,
    processes_mentioning,
    record,
    workspace_env,
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, built_channel) -> dict[str, str]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("servers")
    env = workspace_env(root / "ws", built_channel.template)
    with mirror.Mirror(built_channel.channel.root, built_channel.port):
        r = run_cli(["warm"], env)
        assert r.returncode == 0, r.stderr
    return env


@pytest.fixture
def env(installed: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """One test's model config; every instance this test started is stopped at the end."""
    e = dict(installed, AUTO_INFER_SGLANG_CONFIG=str(tmp_path / "models.toml"))
    before = set(registry.all_records(load(e)))
    yield e
    started = [n for n in registry.all_records(load(e)) if n not in before]
    if started:
        run_cli(["stop", *started], e)


def write_config(env: dict[str, str], instances: dict[str, dict[str, Any]]) -> None:
    items = ", ".join(json.dumps(t) for t in RESPONDER_CMD)
    out = ["[instance.control]\nready_timeout = 60\nstop_grace = 5\n", '[instance.server]\nhost = "127.0.0.1"\n']
    for name, spec in instances.items():
        flags = "".join(f", {json.dumps(f)}" for f in spec.get("flags", []))
        out.append(f"[instance.{name}.control]\ncommand = [{items}{flags}]\n{spec.get('control', '')}\n"
                   f"[instance.{name}.server]\nport = {spec['port']}\nserved_model_name = \"{name}-model\"\n")
    Path(env["AUTO_INFER_SGLANG_CONFIG"]).write_text("\n".join(out))


def status(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    r = run_cli(["status", "--json"], env)
    assert r.returncode == 0, r.stderr
    return {row["name"]: row for row in json.loads(r.stdout)}


def leftovers(env: dict[str, str], name: str, port: int) -> list[str]:
    pid = registry.read_or_empty(load(env), name).pid
    out = [f"group {pid} has {procs.group_members(pid)}"] if pid and procs.group_members(pid) else []
    return out + [f"process {p} still has --port {port}" for p in processes_mentioning(f"--port {port}")]


def _fault(env: dict[str, str], kind: str, i: int) -> list[str]:
    """One fault, end to end; the problems found (empty: it ended well)."""
    name, port = f"{kind.replace('-', '')}{i}", free_port()
    specs = {
        "crash-at-start": {"flags": ["--crash-on-start"], "control": "ready_timeout = 600"},
        "hang-before-ready": {
            "flags": ["--never-ready", "--spawn-child"],
            "control": "ready_timeout = 1.5\nstop_grace = 1",
        },
        "dies-after-ready": {"flags": ["--die-after", "1.5", "--spawn-child"]},
        "ignores-sigterm": {"flags": ["--ignore-sigterm", "--spawn-child"], "control": "stop_grace = 0.5"},
    }
    write_config(env, {name: {"port": port, **specs[kind]}})
    r = run_cli(["serve"], env)
    problems = [] if no_traceback(r.stderr, server_log=True) else ["traceback"]
    want = {"crash-at-start": (1, "the process ended while starting (exit code 3)"),
            "hang-before-ready": (1, "not ready after"),
            "dies-after-ready": (None, ""), "ignores-sigterm": (0, f"✓ {name} ready")}[kind]
    if want[0] is not None and (r.returncode != want[0] or want[1] not in r.stderr):
        problems.append(f"serve: exit {r.returncode}, wanted {want}: {r.stderr[-400:]}")
    if kind in ("crash-at-start", "hang-before-ready") and status(env)[name]["state"] != "failed":
        problems.append(f"status says {status(env)[name]['state']}, not failed")
    if kind == "dies-after-ready":
        pid = registry.read_or_empty(load(env), name).pid
        deadline = time.monotonic() + 30
        while pid and procs.is_ours(int(pid), None) and time.monotonic() < deadline:
            time.sleep(0.1)
        row = status(env)[name]
        if row["state"] != "failed" or "gone" not in row["detail"]:
            problems.append(f"after it died, status says {row}")
    s = run_cli(["stop", name], env)
    if s.returncode != 0 or (kind == "ignores-sigterm" and "killed (still running 0.5s after SIGTERM)" not in s.stderr):
        problems.append(f"stop: exit {s.returncode}: {s.stderr[-300:]}")
    return problems + leftovers(env, name, port)


FAULTS = ["crash-at-start", "hang-before-ready", "dies-after-ready", "ignores-sigterm"]


@pytest.mark.parametrize("kind", FAULTS)
def test_server_fault_is_reported_and_leaves_nothing_behind(env: dict[str, str], kind: str) -> None:
    n = count(1)
    found = [_fault(env, kind, i) for i in range(n)]
    bad = [p for p in found if p]
    record(f"server-{kind}", test="test_reliability_servers.py",
           what={"crash-at-start": "a server that crashes at start: `serve` exit 1 at once with the exit code "
                                   "and log tail, `status` says failed, nothing left after `stop`",
                 "hang-before-ready": "a server (with a child) that never gets ready: `serve` exit 1 at its "
                                      "ready_timeout, the group is stopped, `status` says failed",
                 "dies-after-ready": "a server (with a child) that dies after ready: `status` says failed (the "
                                     "process is gone), `stop` ends the child left in its group",
                 "ignores-sigterm": "a server (with a child) that ignores SIGTERM: `stop` kills the group "
                                    "after stop_grace and says so"}[kind],
           tried=n, ok=n - len(bad))
    assert not bad, bad


def test_port_taken_between_validation_and_start(env: dict[str, str]) -> None:
    """Validation finds the port free; while the server sleeps before binding (--slow-start), another
    process takes it. The server fails to bind and exits; serve says so with the log tail."""
    n = count(1)
    bad = []
    for i in range(n):
        name, port = f"late{i}", free_port()
        write_config(env, {name: {"port": port, "flags": ["--slow-start", "1.5"]}})
        proc = subprocess.Popen([*CLI, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True, cwd="/")
        deadline = time.monotonic() + 60
        while registry.read_or_empty(load(env), name).state != "starting" and time.monotonic() < deadline:
            time.sleep(0.01)
        with CountingListener(port) as thief:         # answers 502 to the readiness probe meanwhile
            code, _out, err = finish(proc)
            stolen = thief.count
        problems = [] if code == 1 and no_traceback(err, server_log=True) else [f"serve exit {code}"]
        if "the process ended while starting" not in err or "Address already in use" not in err:
            problems.append(f"not reported clearly: {err[-500:]}")
        if status(env)[name]["state"] != "failed":
            problems.append("status does not say failed")
        run_cli(["stop", name], env)
        problems += leftovers(env, name, port)
        if problems:
            bad.append(problems)
    record("server-port-taken-late", test="test_reliability_servers.py",
           what="the port is taken by another process after validation, before the server binds: `serve` "
                "exit 1 naming the exit and 'Address already in use' from the log, `status` failed, "
                "nothing left", tried=n, ok=n - len(bad), probe_connections_to_the_thief=stolen)
    assert not bad, bad


@pytest.mark.slow
def test_boot_racing_a_manual_serve(env: dict[str, str]) -> None:
    """`boot` (with AUTO_INFER_SGLANG_ON_BOOT=1) and `serve` started together on one workspace."""
    rounds = count(2)
    bad = []
    for i in range(rounds):
        ports = {f"race{i}a": free_port(), f"race{i}b": free_port()}
        write_config(env, {n: {"port": p, "flags": ["--slow-start", "0.5"]} for n, p in ports.items()})
        boot_env = dict(env, AUTO_INFER_SGLANG_ON_BOOT="1")
        procs_ = [subprocess.Popen([*CLI, *args], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True, cwd="/")
                  for args, e in ((["boot"], boot_env), (["serve"], env))]
        results = [finish(p, timeout=180) for p in procs_]
        problems = [f"exit {c}: {e[-300:]}" for c, _, e in results if c != 0 or not no_traceback(e)]
        both = "".join(e for _, _, e in results)
        if both.count("not running → start") != len(ports):
            problems.append("the servers were not started exactly once each")
        if "already running elsewhere: waited" not in both:
            problems.append("the second run did not say it waited")
        for n, p in ports.items():
            live = processes_mentioning(f"--port {p}")
            if len(live) != 1:
                problems.append(f"{n}: {len(live)} server processes on port {p}")
        rows = status(env)
        problems += [f"{n} is {rows[n]['state']}" for n in ports if rows[n]["state"] != "ready"]
        run_cli(["stop", *ports], env)
        for n, p in ports.items():
            problems += leftovers(env, n, p)
        if problems:
            bad.append(problems)
    record("boot-races-serve", test="test_reliability_servers.py",
           what="`boot` (ON_BOOT=1: install, check, serve) and `serve` started together, 2 instances: both exit "
                "0, one waits for the other, each server started once (one process per port), both ready; "
                "nothing left after `stop`", tried=rounds, ok=rounds - len(bad))
    assert not bad, bad
