"""What a user sees while warm downloads: a live view in a real terminal (tmux, the pane captured)
and plain lines in a log, with the same figures: bytes done of the total, rate, time left, the
artifacts in flight; the final line keeps the summary."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from auto_infer.demo import mirror
from tests.conftest import Built, Workspace
from tests.helpers import CLI, run_cli
from tests.test_downloads import WHEEL, big_channel, big_workspace  # noqa: F401 - fixtures

RATE = 40_000_000          # bytes/s the mirror sends at most: the 200 MB wheel takes ~5 s
PLAIN = re.compile(r"… artifacts: [\d.]+ [kMG]B of 200\.\d MB \(\d+%\), [\d.]+ [kMG]B/s(, about [\d.ms]+ left)?"
                   r"(; in flight: \S+ \d+%(, \S+ \d+%)*)?$")


def test_plain_lines_in_a_log(big_channel: Built, big_workspace: Workspace) -> None:  # noqa: F811
    with mirror.Mirror(big_channel.channel.root, big_channel.port, rate=RATE):
        r = run_cli(["warm"], {**big_workspace.env, "AUTO_INFER_PROGRESS_INTERVAL": "1"})
    assert r.returncode == 0, r.stderr
    lines = [ln.strip() for ln in r.stderr.splitlines() if "… artifacts:" in ln]
    assert len(lines) >= 3, r.stderr                               # ~5 s at one line a second
    assert all(PLAIN.search(ln) for ln in lines), lines
    assert any("about" in ln and "in flight: big_blob" in ln for ln in lines), lines
    assert "█" not in r.stderr and "\r" not in r.stderr              # no bar drawing in a log
    final = next(ln for ln in r.stderr.splitlines() if ln.startswith("✓ warm: 3 conda + 2 PyPI"))
    assert "manifest" in final, final


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_a_live_view_in_a_real_terminal(big_channel: Built, big_workspace: Workspace,  # noqa: F811
                                        tmp_path: Path) -> None:
    script = tmp_path / "warm.sh"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in big_workspace.env.items())
    script.write_text(f"{exports}cd /\n{shlex.join(CLI)} warm; echo EXIT=$?; sleep 60\n")
    session = f"warm-view-{tmp_path.name}"[:60]
    screens: list[str] = []
    with mirror.Mirror(big_channel.channel.root, big_channel.port, rate=RATE):
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "30", f"bash {script}"],
                       check=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                        text=True, check=True).stdout
                screens.append(screen)
                if "EXIT=" in screen:
                    break
                time.sleep(0.3)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    live = [s for s in screens if re.search(r"artifacts: +\d+%\|", s)]
    assert live, screens[-1]
    frame = live[len(live) // 2]
    assert re.search(r"\d+(\.\d+)?M/200M \[\d\d:\d\d<\d\d:\d\d, +[\d.]+MB/s, \d in flight\]", frame), frame
    assert re.search(r"big_blob-1\.0-py3-none-any\.whl: +\d+%\|", frame), frame   # the artifact's own bar
    assert "… artifacts:" not in "".join(screens)                          # no plain lines on a terminal
    final = screens[-1]
    assert "EXIT=0" in final and "✓ warm: 3 conda + 2 PyPI" in final, final
    assert not re.search(r"artifacts: +\d+%\|", final), final                # the bars are gone at the end


def test_bundle_export_shows_what_it_downloads_and_writes(
        big_channel: Built, big_workspace: Workspace) -> None:  # noqa: F811
    env = {**big_workspace.env, "AUTO_INFER_PROGRESS_INTERVAL": "0.5"}
    received: list[int] = []
    with mirror.Mirror(big_channel.channel.root, big_channel.port, rate=RATE):
        proc = subprocess.Popen([*CLI, "bundle", "export", "-"], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
        assert proc.stdout is not None and proc.stderr is not None

        def slow_reader() -> None:          # a slow pipe (ssh to the far side): the writes take ~2 s
            assert proc.stdout is not None
            while chunk := proc.stdout.read(1 << 20):
                received.append(len(chunk))
                time.sleep(0.01)

        reader = threading.Thread(target=slow_reader)
        reader.start()
        err = proc.stderr.read().decode()
        proc.wait(timeout=300)
        reader.join()
    assert proc.returncode == 0, err
    downloads = [ln for ln in err.splitlines() if "… bundle artifacts:" in ln]
    writes = [ln for ln in err.splitlines() if "… bundle written:" in ln]
    assert downloads and all(" of 200.0 MB (" in ln and "/s" in ln for ln in downloads), err
    assert writes and all(re.search(r"of 20\d\.\d MB \(\d+%\), [\d.]+ [kM]B/s", ln) for ln in writes), err
    assert sum(received) > 200_000_000
