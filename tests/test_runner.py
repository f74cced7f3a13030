"""SIGTERM ends the installer too (issue 10, point 6): children run in their own process group,
which is ended (TERM, grace, KILL) before the exception unwinds past the run lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

from auto_infer.core.settings import load
from auto_infer.install import environment
from tests.conftest import Workspace
from tests.helpers import CLI

# A slow child: starts a grandchild that ignores SIGTERM (so only KILL ends it), writes both pids.
SLOW = r"""
import os, signal, subprocess, sys, time
if sys.argv[1:2] == ["--version"]:
    print("pixi 0.60.0"); sys.exit(0)
pidfile = os.environ["SLOW_PIDFILE"]
grand = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
with open(pidfile + ".tmp", "w") as fh:
    fh.write(f"{os.getpid()}\n{grand.pid}\n")
os.replace(pidfile + ".tmp", pidfile)
print("installing ...", flush=True)
time.sleep(600)
"""

DRIVER = r"""
import os, signal, sys
from pathlib import Path
from auto_infer.cli import _on_sigterm
from auto_infer.core.runner import run_logged
signal.signal(signal.SIGTERM, _on_sigterm)
try:
    run_logged([sys.executable, sys.argv[1]], env=os.environ, log=Path(sys.argv[2]))
except KeyboardInterrupt:
    sys.exit(130)
"""


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _group_members(pgid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry))
    return found


def _wait_for_pids(pidfile: Path, proc: subprocess.Popen[str]) -> list[int]:
    deadline = time.monotonic() + 120      # a guard against a hang, not a timing assertion
    while not pidfile.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the slow child never started"
        time.sleep(0.05)
    return [int(x) for x in pidfile.read_text().split()]


def _survivors(pids: list[int]) -> list[int]:
    left = [p for p in pids if _alive(p)] + _group_members(pids[0])
    for pid in set(left):                  # leave nothing behind, whatever the outcome
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return sorted(set(left))


def _slow_script(tmp_path: Path) -> Path:
    script = tmp_path / "bin" / "pixi"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!{sys.executable}\n{SLOW}")
    script.chmod(0o755)
    return script


def test_sigterm_ends_the_child_group_before_run_logged_unwinds(tmp_path: Path) -> None:
    slow = _slow_script(tmp_path)
    pidfile = tmp_path / "pids"
    env = dict(os.environ, SLOW_PIDFILE=str(pidfile))
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(slow), str(tmp_path / "install.log")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    pids = _wait_for_pids(pidfile, proc)
    proc.send_signal(signal.SIGTERM)       # the parent only, as `docker stop` signals the CLI
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert _survivors(pids) == [], "a process of the installer outlived the interrupted run"
    assert "installing ..." in (tmp_path / "install.log").read_text()


def test_sigterm_during_install_leaves_no_installer_and_marks_interrupted(workspace: Workspace,
                                                                       tmp_path: Path) -> None:
    """`auto-infer warm` with the pixi backend: SIGTERM while `pixi install` runs -> exit 130, no
    pixi process left, the run lock free, and the marker says the install was interrupted."""
    slow = _slow_script(tmp_path)
    pidfile = tmp_path / "pids"
    env = dict(workspace.env, AUTO_INFER_INSTALLER="pixi", SLOW_PIDFILE=str(pidfile),
               PATH=f"{slow.parent}:{os.environ['PATH']}")
    proc = subprocess.Popen([*CLI, "warm"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL, start_new_session=True, cwd="/")
    pids = _wait_for_pids(pidfile, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert _survivors(pids) == []
    settings = load(env)
    FileLock(str(settings.runlock_path)).acquire(timeout=0)       # released, and nobody holds it
    marker = json.loads(settings.installing_marker.read_text())
    assert marker["outcome"] == "interrupted"
    reason = environment.health_check(settings)
    assert reason is not None and reason.kind is environment.Kind.INTERRUPTED and reason.repair
    assert "Traceback" not in err


def test_a_tools_output_and_command_reach_the_log_and_the_error_without_credentials(tmp_path: Path) -> None:
    """A failing tool that prints an index URL with credentials and a token (uv and pip do, in errors)."""
    from auto_infer.core.errors import SubprocessFailed
    from auto_infer.core.runner import run_logged
    log = tmp_path / "install.log"
    script = ("import sys; print('fetching https://ci:Idx-pw-4242@pypi.internal/simple/x/'); "
              "print('GH_TOKEN=ghp_" + "A" * 30 + "'); sys.exit(2)")
    with pytest.raises(SubprocessFailed) as err:
        run_logged([sys.executable, "-c", script, "--token", "Cmd-secret-77"], env=dict(os.environ), log=log)
    written = log.read_text() + str(err.value)
    assert "https://ci:***@pypi.internal" in written and "GH_TOKEN=***" in written
    for secret in ("Idx-pw-4242", "ghp_" + "A" * 30, "Cmd-secret-77"):
        assert secret not in written, secret


def test_a_tool_that_quotes_a_proxy_without_a_scheme_has_its_password_masked(tmp_path: Path) -> None:
    """``HTTPS_PROXY=user:pw@proxy:3128`` (no scheme) in a tool's environment, and the tool's error quotes it."""
    from auto_infer.core.errors import SubprocessFailed
    from auto_infer.core.runner import run_logged
    log = tmp_path / "install.log"
    script = "import os, sys; print('invalid proxy URL: ' + os.environ['HTTPS_PROXY']); sys.exit(2)"
    env = dict(os.environ, HTTPS_PROXY="alice:Proxy-pw-4242@proxy.internal:3128")
    with pytest.raises(SubprocessFailed) as err:
        run_logged([sys.executable, "-c", script], env=env, log=log)
    written = log.read_text() + str(err.value)
    assert "invalid proxy URL: alice:***@proxy.internal:3128" in written, written
    assert "Proxy-pw-4242" not in written
