"""docs/tutorial-air-gap.md's commands are the ones that work: its marked blocks, run in order.

A block marked ``<!-- bundle-tutorial: build|airgap [bump] expect="text" -->`` runs as the build host
(the mirror serves the channel) or as the air-gapped host (in ``unshare -n``, its own empty
workspace and cache), both in one folder standing for the USB stick. ``bump`` changes the build
host's lock (one package more) before the block, as a lock bump would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Workspace, needs_netns
from tests.helpers import clean_env, offline
from tests.test_bundle import _without_demo_data

REPO = Path(__file__).resolve().parent.parent
TUTORIAL = REPO / "docs" / "tutorial-air-gap.md"
MARK = re.compile(r'<!-- bundle-tutorial: (build|airgap)( bump)?(?: expect="([^"]*)")? -->\n```bash\n(.*?)\n```', re.S)


def test_the_tutorial_marks_both_hosts_and_the_delta() -> None:
    found = MARK.findall(TUTORIAL.read_text())
    hosts = [m[0] for m in found]
    assert hosts.count("build") >= 3 and hosts.count("airgap") >= 3
    assert any(m[1] for m in found) and any("--since" in m[3] for m in found)


@needs_netns
@pytest.mark.netns
def test_tutorial_air_gap_steps_run_against_the_test_channel(workspace: Workspace, online: object,
                                                             tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "auto-infer").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m auto_infer "$@"\n')
    (bin_dir / "auto-infer").chmod(0o755)
    path = f"{bin_dir}:{os.environ['PATH']}"
    lock = workspace.template / "pixi.lock"
    full = lock.read_bytes()
    _without_demo_data(lock)
    build = {**workspace.env, "PATH": path}
    gap = tmp_path / "airgap"
    airgap = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(gap), "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(gap / "template"),
                        "AUTO_INFER_SGLANG_CACHE_ROOT": str(gap / "cache"), "AUTO_INFER_INSTALLER": "rattler",
                        "AUTO_INFER_CHECK_MODULES": "demo_extras", "HOME": str(tmp_path / "home"), "PATH": path})
    usb = tmp_path / "usb"
    usb.mkdir()
    for n, (host, bump, expect, script) in enumerate(MARK.findall(TUTORIAL.read_text())):
        if bump:
            lock.write_bytes(full)
        step = usb / f".step-{n}.sh"
        step.write_text(script + "\n")
        cmd = ["bash", "-euo", "pipefail", str(step)]
        r = subprocess.run(offline(cmd) if host == "airgap" else cmd, env=build if host == "build" else airgap,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300, cwd=str(usb))
        out = r.stdout + r.stderr
        assert r.returncode == 0 and expect in out, f"block {n} ({host}):\n{script}\n--- output:\n{out}"
    prefix = gap / "sglang-infer" / ".pixi" / "envs" / "default"
    assert (prefix / "share" / "demo" / "a.txt").is_file()           # the delta's package is installed
