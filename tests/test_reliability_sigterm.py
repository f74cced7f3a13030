"""A SIGTERM after `serve` said "all ready": the servers stay (they were started to stay), and the
command ends as documented: 0 when its work was done, 130 when it was interrupted -- never 143."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections import Counter

from auto_infer.core.net import free_port
from tests.helpers import CLI
from tests.helpers.serving import Serve, listening, responder_config
from tests.reliability_tools import count, record


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


NEEDLES = ("chat:", "report:", "ready and answering")


def test_sigterm_after_ready_never_exits_143(serve: Serve) -> None:  # noqa: F811
    """SIGTERM every 5 ms from the moment a line is printed (a chat answer, the report, "all ready")
    until the process is gone: every moment of the way out is hit (doit saving its state, the run
    lock, the interpreter's teardown)."""
    codes: Counter[str] = Counter()
    bad = []
    for needle in NEEDLES * count(2):
        port = free_port()
        serve.write(responder_config({"stay": {"port": port}}))
        try:
            proc = _serve_until(serve, needle)
            while proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    break
                time.sleep(0.005)
            _out, err = proc.communicate(timeout=60)
            codes[str(proc.returncode)] += 1
            if proc.returncode not in (0, 130) or "Traceback" in err or not listening(port):
                bad.append(f"after {needle!r}: exit {proc.returncode}, listening {listening(port)}: {err[-300:]}")
        finally:
            serve.cli("stop")                   # whatever happened: no server outlives the round
    tried = len(NEEDLES) * count(2)
    record("sigterm-after-ready", test="test_reliability_sigterm.py",
           what="`serve` (one responder) sent SIGTERM every 5 ms from the moment it printed a chat answer, "
                "the report path or 'all … ready and answering' until it was gone: exit 0 (done) or 130 "
                "(interrupted), never 143 nor a traceback, and the server, started to stay, stays",
           tried=tried, ok=tried - len(bad), exit_codes=dict(codes), failed=bad[:3])
    assert not bad, bad
