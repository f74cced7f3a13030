"""Run an installer command: output to a log file, last line as progress, tail on failure."""

from __future__ import annotations

import subprocess
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from auto_infer.core.errors import SubprocessFailed, UserError
from auto_infer.core.progress import Step


def run_logged(cmd: list[str], *, env: Mapping[str, str], log: Path, step: Step | None = None,
               cwd: Path | None = None, fix: str | None = None, timeout: float | None = None,
               timeout_name: str = "") -> str:
    """Run ``cmd``; raise SubprocessFailed (command, code, last lines) if it fails.

    ``timeout``: seconds it may run; then it is killed and a UserError names ``timeout_name``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=40)
    try:
        proc = subprocess.Popen(cmd, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    except FileNotFoundError:
        raise UserError(f"{cmd[0]} is not installed or not on PATH", fix=fix) from None
    assert proc.stdout is not None

    def pump() -> None:
        with open(log, "a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n")
            for line in proc.stdout:  # type: ignore[union-attr]
                fh.write(line)
                line = line.rstrip()
                if line:
                    tail.append(line)
                    if step is not None:
                        step.note(line[-120:])

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        reader.join(5)
        last = "\n".join(f"    {ln}" for ln in list(tail)[-5:])
        raise UserError(f"{cmd[0]} did not finish within {timeout:.0f} s and was stopped; last output:\n{last}",
                        where=timeout_name or None, fix=fix or f"see the full log: {log}") from None
    reader.join()
    if code != 0:
        raise SubprocessFailed(cmd, code, "\n".join(tail), fix=fix or f"see the full log: {log}")
    return "\n".join(tail)
