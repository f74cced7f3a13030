"""supervise tests' helpers: supervise started as a container's command (a child process of the CLI),
a wait for a server's record to say ready, and the end of supervise with its output."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from auto_infer.core.settings import load
from auto_infer.serve import registry
from tests.helpers import CLI, Workspace, offline

WAIT = 90.0


def start(installed: Workspace, tmp_path: Path, text: str, *, net: bool = True,
          **extra: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    cfg = tmp_path / "models.toml"
    cfg.write_text(text)
    env = {**installed.env, "AUTO_INFER_SGLANG_CONFIG": str(cfg), "AUTO_INFER_SUPERVISE_BACKOFF": "0.5",
           "AUTO_INFER_SUPERVISE_MAX_CRASHES": "3", **extra}
    proc = subprocess.Popen(
        [*CLI, "supervise"] if net else offline([*CLI, "supervise"]),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd="/",
    )
    return proc, env


def ready_record(env: dict[str, str], name: str, not_pid: int | None = None) -> registry.ServerRecord:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        rec = registry.read_or_empty(load(env), name)
        if rec.state == "ready" and rec.pid != not_pid and registry.is_running(rec):
            return rec
        time.sleep(0.2)
    raise AssertionError(f"{name} not ready (again) within {WAIT} s: {registry.read(load(env), name)}")


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"supervise did not end:\n{err}") from None


def leave(proc: subprocess.Popen[str], env: dict[str, str]) -> None:
    """A test's end whatever happened: a supervise still running (an assertion failed) is killed, and
    `auto-infer stop` ends the servers it left, so no responder outlives the test."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
        subprocess.run([*CLI, "stop"], env=env, capture_output=True, timeout=WAIT, stdin=subprocess.DEVNULL)
