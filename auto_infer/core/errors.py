"""Three outcomes, as pre-commit's error handler has them.

* a user error (bad input, missing cache, ...) prints one clear message and exits 1;
* Ctrl-C / SIGTERM exits 130;
* a bug prints one line, writes the traceback and versions to a crash log and exits 3.
"""

from __future__ import annotations

import platform
import sys
import time
import traceback
from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix: says what, where, and how to fix it."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        super().__init__(what)
        self.what = what
        self.where = where
        self.fix = fix

    def __str__(self) -> str:
        parts = [self.what]
        if self.where:
            parts.append(f"  where: {self.where}")
        if self.fix:
            parts.append(f"  fix:   {self.fix}")
        return "\n".join(parts)


class SubprocessFailed(UserError):
    """A tool we ran failed: its command, return code and the tail of its output."""

    def __init__(self, cmd: list[str], returncode: int, output: str, *, fix: str | None = None):
        tail = "\n".join(("    " + line) for line in output.strip().splitlines()[-15:])
        super().__init__(
            f"command failed with exit code {returncode}: {' '.join(cmd)}\n  last output:\n{tail}",
            fix=fix)
        self.cmd = cmd
        self.returncode = returncode
        self.last_line = (output.strip().splitlines() or [""])[-1].strip()


def write_crash_log(state_dir: Path | None, exc: BaseException) -> Path | None:
    """Write traceback + versions; return the path (None if it could not be written)."""
    from auto_infer import __version__

    body = [
        f"auto-infer {__version__} crashed at {time.strftime('%Y-%m-%dT%H:%M:%S')}",
        f"python {sys.version.split()[0]} on {platform.platform()}",
        f"argv: {sys.argv}",
        "",
        "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    ]
    for base in [state_dir, Path("/tmp")]:
        if base is None:
            continue
        try:
            base.mkdir(parents=True, exist_ok=True)
            path = base / f"crash-{int(time.time())}.log"
            path.write_text("\n".join(body))
            return path
        except OSError:
            continue
    return None
