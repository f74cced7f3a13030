"""The tutorial's commands are the ones that work: its marked shell blocks, run for real in order.

docs/tutorial-offline-sglang.md marks a block it runs inside the container with a comment just
before the fence: ``<!-- tutorial-test: online|offline expect="text" -->``. Here the "container" is
this machine with the test channel: the workspace fixture's env stands for what compose passes in,
`auto-infer` and `auto-infer-boot` are put on PATH, `online` blocks run while the local mirror
serves the channel, `offline` blocks run in `unshare -n` after it stopped. Blocks without a mark
run on the host (docker compose) or need a GPU (serve, the chat request); they are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Workspace, needs_netns
from tests.helpers import offline

REPO = Path(__file__).resolve().parent.parent
TUTORIAL = REPO / "docs" / "tutorial-offline-sglang.md"
MARK = re.compile(r'<!-- tutorial-test: (online|offline)(?: expect="([^"]*)")? -->\n```bash\n(.*?)\n```', re.S)


@dataclass(frozen=True)
class Block:
    mode: str
    expect: str
    script: str
    line: int


def blocks(text: str) -> list[Block]:
    return [Block(m.group(1), m.group(2) or "", m.group(3), text.count("\n", 0, m.start()) + 1)
            for m in MARK.finditer(text)]


def test_the_tutorial_marks_its_runnable_steps() -> None:
    found = blocks(TUTORIAL.read_text())
    modes = [b.mode for b in found]
    assert modes.count("online") >= 2 and modes.count("offline") >= 4
    assert modes == sorted(modes, key=lambda m: m == "offline"), "online steps come before offline ones"
    assert any("auto-infer warm" in b.script for b in found) and any("auto-infer install" in b.script for b in found)


def container_path(ws: Workspace, tmp_path: Path) -> dict[str, str]:
    """What the image gives the container: auto-infer and auto-infer-boot on PATH."""
    bin_dir = tmp_path / "container-bin"
    bin_dir.mkdir()
    (bin_dir / "auto-infer").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m auto_infer "$@"\n')
    (bin_dir / "auto-infer-boot").symlink_to(REPO / "templates" / "hooks" / "auto-infer-boot.sh")
    (bin_dir / "auto-infer").chmod(0o755)
    return {**ws.env, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def run_block(block: Block, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / f"step-{block.line}.sh"
    script.write_text(block.script + "\n")
    cmd = ["bash", "-euo", "pipefail", str(script)]
    return subprocess.run(offline(cmd) if block.mode == "offline" else cmd, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300, cwd=str(tmp_path))


@needs_netns
@pytest.mark.netns
def test_tutorial_steps_run_against_the_test_channel(workspace: Workspace, online: object, tmp_path: Path) -> None:
    env = container_path(workspace, tmp_path)
    for block in blocks(TUTORIAL.read_text()):
        if block.mode == "offline":
            online.stop()  # type: ignore[attr-defined]   # "restart with no network": the mirror is gone too
        r = run_block(block, env, tmp_path)
        out = r.stdout + r.stderr
        where = f"tutorial line {block.line} ({block.mode}):\n{block.script}\n--- output:\n{out}"
        assert r.returncode == 0, where
        assert block.expect in out, f"expected {block.expect!r} in the output of {where}"
    assert (workspace.prefix / "bin" / "hello").is_file()
    assert "exit 0: done" in (workspace.root / "logs" / "boot.log").read_text()
