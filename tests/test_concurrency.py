"""Two installs at once end well; an install killed part-way is repaired by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from auto_infer.core.net import free_port
from auto_infer.demo import channel, mirror
from tests.conftest import Workspace
from tests.helpers import CLI, clean_env, run_cli, small_channel_specs


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[channel.BuiltChannel, int]:
    """Like the small channel, with 6000 files in one package: installs take long enough to kill."""
    root = tmp_path_factory.mktemp("bigchannel")
    port = free_port()
    conda, wheels = small_channel_specs(extra_files=6000)
    return channel.build(root, f"http://127.0.0.1:{port}", conda, wheels), port


def big_workspace(tmp_path: Path, big: tuple[channel.BuiltChannel, int]) -> Workspace:
    built, port = big
    ws = tmp_path / "ws"
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(ws),
                     "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(built.project),
                     "AUTO_INFER_INSTALLER": "rattler", "AUTO_INFER_CHECK_MODULES": "demo_extras"})
    w = Workspace(
        root=ws,
        template=built.project,
        env=dict(
            env,
            AUTO_INFER_SGLANG_PROJECT_DIR=str(ws / "sglang-infer"),
            AUTO_INFER_SGLANG_CACHE_ROOT=str(ws / ".cache" / "sglang-infer"),
        ),
    )
    with mirror.Mirror(built.root, port):
        r = run_cli(["warm"], w.env)
        assert r.returncode == 0, r.stderr
    (w.prefix / "conda-meta" / "auto-infer-install").unlink()     # next install must do the work
    import shutil
    shutil.rmtree(w.prefix)
    return w


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd="/")


def test_two_installs_at_once_both_end_well(tmp_path: Path, big: tuple[channel.BuiltChannel, int]) -> None:
    ws = big_workspace(tmp_path, big)
    procs = [spawn(["install"], ws.env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    both = "".join(err for _, err in outs)
    assert both.count("→ install:") == 1                  # the work was done once
    # the other one either waited for the lock or started after: either way it found the work done
    assert "-- install (up to date" in both or "nothing to do" in both
    check = run_cli(["check"], ws.env)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_install_is_repaired_by_the_next_run(tmp_path: Path, big: tuple[channel.BuiltChannel, int],
                                                    sig: signal.Signals) -> None:
    ws = big_workspace(tmp_path, big)
    marker = ws.project / ".pixi" / "auto-infer" / "installing-default.json"
    proc = spawn(["install"], ws.env)
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, sig)
    proc.communicate(timeout=60)
    if not marker.exists():
        pytest.skip("install finished before it could be killed (machine too fast for this size)")
    assert not (ws.prefix / "conda-meta" / "auto-infer-install").exists()   # never trusted half-done
    r = run_cli(["install"], ws.env)
    assert r.returncode == 0, r.stderr
    assert "an earlier install was interrupted" in r.stderr
    assert len(list((ws.prefix / "share" / "hello").iterdir())) == 6001
    assert run_cli(["check"], ws.env).returncode == 0
