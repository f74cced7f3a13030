"""A SIGTERM after `serve` said "all ready": the servers stay (they were started to stay), and the
command ends as documented: 0 when its work was done, 130 when it was interrupted -- never 143."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time

import pytest

from auto_infer.core.net import free_port
from tests.helpers import CLI
from tests.test_serve import Serve, installed, listening, responder_config, serve  # noqa: F401 - fixtures


def _serve_until(s: Serve, needle: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*CLI, "serve"], env=s.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd="/")
    assert proc.stderr is not None
    seen, deadline = "", time.monotonic() + 120
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1)
        if ready:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
    assert needle in seen, seen
    return proc


@pytest.mark.parametrize("needle", ["chat:", "report:", "ready and answering"])
def test_sigterm_after_ready_never_exits_143(serve: Serve, needle: str) -> None:  # noqa: F811
    """SIGTERM every 5 ms from the moment ``needle`` is printed until the process is gone: every
    moment of the way out is hit (doit saving its state, the run lock, the interpreter's teardown)."""
    port = free_port()
    serve.write(responder_config({"stay": {"port": port}}))
    proc = _serve_until(serve, needle)
    while proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            break
        time.sleep(0.005)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), f"exit {proc.returncode}:\n{err}"
    assert "Traceback" not in err
    assert listening(port)                                  # the server was meant to stay, and stayed
    serve.ok("stop")
