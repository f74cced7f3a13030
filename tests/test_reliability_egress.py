"""No egress from the offline steps: inside `unshare -n` they succeed; with every proxy variable
pointing at a local listener that counts connections, they make none (and `warm`, the online
step, does reach it: the listener would see a leak)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from auto_infer.core.net import free_port
from auto_infer.demo import mirror
from tests.conftest import needs_netns
from tests.helpers import CLI, offline, run_cli
from tests.reliability_tools import (
    CountingListener,
    health,
    no_traceback,
    proxy_env,
    record,
    workspace_env,
)

RESPONDER = [sys.executable, "-m", "auto_infer.demo.responder", "--host", "{host}", "--port", "{port}",
             "--model", "{served_model_name}"]


def responder_config(path: Path, name: str, port: int) -> Path:
    items = ", ".join(json.dumps(t) for t in RESPONDER)
    path.write_text(f"[instance.control]\nready_timeout = 60\nstop_grace = 5\n\n"
                    f'[instance.{name}.control]\ncommand = [{items}]\n\n'
                    f'[instance.{name}.server]\nhost = "127.0.0.1"\nport = {port}\n'
                    f'served_model_name = "{name}-model"\n')
    return path


@pytest.fixture(scope="module")
def warmed(tmp_path_factory: pytest.TempPathFactory, built_channel) -> dict[str, str]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("egress")
    env = workspace_env(root / "seed", built_channel.template, root / "cache")
    with mirror.Mirror(built_channel.channel.root, built_channel.port):
        r = run_cli(["warm"], env)
        assert r.returncode == 0, r.stderr
    return env


# `check` runs template → install → check; `boot` (INSTALL_ON_BOOT=1) finds them up to date
OFFLINE_STEPS = [["check"], ["boot"], ["serve"], ["status", "--json"], ["chat"], ["logs", "-n", "2"], ["stop"]]


@needs_netns
@pytest.mark.netns
def test_offline_steps_succeed_without_a_network(warmed: dict[str, str], tmp_path: Path) -> None:
    """One network namespace (loopback only) for the whole sequence: the servers `serve` starts
    live in it, so `chat`, `status` and `stop` run in it too."""
    env = workspace_env(tmp_path / "ws", Path(warmed["AUTO_INFER_SGLANG_TEMPLATE_DIR"]),
                        Path(warmed["AUTO_INFER_SGLANG_CACHE_ROOT"]),
                        AUTO_INFER_SGLANG_CONFIG=str(responder_config(tmp_path / "m.toml", "nons", free_port())),
                        AUTO_INFER_SGLANG_INSTALL_ON_BOOT="1")
    cli = " ".join(shlex.quote(c) for c in CLI)
    script = " && ".join(f"{cli} {' '.join(step)} >>{tmp_path}/out.txt 2>>{tmp_path}/err.txt"
                         f" && echo {shlex.quote(' '.join(step))} >>{tmp_path}/done.txt" for step in OFFLINE_STEPS)
    try:
        r = subprocess.run(offline(["sh", "-c", script]), env=env, capture_output=True, text=True, timeout=300)
    finally:
        run_cli(["stop"], env)          # by pid: works from outside the namespace, and is fine twice
    done = (tmp_path / "done.txt").read_text().splitlines() if (tmp_path / "done.txt").exists() else []
    err = (tmp_path / "err.txt").read_text() if (tmp_path / "err.txt").exists() else ""
    ok = r.returncode == 0 and len(done) == len(OFFLINE_STEPS) and no_traceback(err) and health(env) is None
    record("offline-netns", test="test_reliability_egress.py",
           what="inside `unshare -n` (loopback only): " + ", ".join(" ".join(s) for s in OFFLINE_STEPS)
                + " on a fresh workspace from a warmed cache: every step exits 0",
           tried=len(OFFLINE_STEPS), ok=len(done) if ok else len(done) - 1, steps_done=done)
    assert ok, f"stopped after {done}: {err[-1500:]}"
    assert "Hello from nons-model" in (tmp_path / "out.txt").read_text()


def test_offline_steps_make_no_connection_to_the_proxy(warmed: dict[str, str], tmp_path: Path) -> None:
    with CountingListener() as proxy:
        proxies = proxy_env(proxy.proxy_url("user", "pw"))          # NO_PROXY empty: even 127.0.0.1 goes there
        env = workspace_env(tmp_path / "ws", Path(warmed["AUTO_INFER_SGLANG_TEMPLATE_DIR"]),
                            Path(warmed["AUTO_INFER_SGLANG_CACHE_ROOT"]),
                            AUTO_INFER_SGLANG_CONFIG=str(responder_config(tmp_path / "m.toml", "prox", free_port())),
                            AUTO_INFER_SGLANG_INSTALL_ON_BOOT="1", **proxies)
        per_step = []
        failed = []
        try:
            for step in OFFLINE_STEPS:
                before = proxy.count
                r = run_cli(step, env)
                per_step.append(proxy.count - before)
                if r.returncode != 0 or not no_traceback(r.stderr):
                    failed.append(f"{' '.join(step)}: exit {r.returncode}: {r.stderr[-300:]}")
        finally:
            run_cli(["stop"], env)
        offline_connections = proxy.count
        # the control: warm is online and honours the proxy variables, so it does reach the listener
        w = run_cli(["warm"], dict(env, AUTO_INFER_SGLANG_CACHE_ROOT=str(tmp_path / "empty-cache")))
        control = proxy.count - offline_connections
    record("offline-proxy-listener", test="test_reliability_egress.py",
           what="with HTTP(S)_PROXY/ALL_PROXY (both cases) at a local counting listener and NO_PROXY empty: "
                + ", ".join(" ".join(s) for s in OFFLINE_STEPS) + ": every step exits 0 and the listener "
                "sees 0 connections (control: `warm` into an empty cache reaches it and fails cleanly)",
           tried=len(OFFLINE_STEPS), ok=len(OFFLINE_STEPS) - len(failed) - sum(1 for n in per_step if n),
           connections=offline_connections, control_connections=control)
    assert not failed, failed
    assert offline_connections == 0, dict(zip([" ".join(s) for s in OFFLINE_STEPS], per_step, strict=False))
    assert control > 0 and w.returncode == 1 and no_traceback(w.stderr), w.stderr
