"""The one error handler, as pre-commit's has it: code below raises typed errors, `handle` turns
whatever reached the top into a message and an exit status. Nothing else maps exit codes.

* ``UserError``: a mistake the user can fix; one message (what, where, fix), exit 1;
* ``UsageError``: a mistyped command line (unknown task or option, bad arguments), exit 2;
* Ctrl-C / SIGTERM (``KeyboardInterrupt``): exit 130;
* the reader of stdout went away (``BrokenPipeError``): a quiet exit 0;
* anything else is a bug: one line, the traceback and versions in a crash log, exit 3.

doit catches every ``Exception`` an action, an up-to-date check or a task creator raises and
prints it its own way; ``Carried`` takes the error through doit untouched to this handler.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix: says what, where, and how to fix it."""

    exit_code = 1

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


class UsageError(UserError):
    """A mistyped command line: an unknown task or option, arguments a command does not take."""

    exit_code = 2


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


class Carried(BaseException):
    """An error on its way through doit (which catches ``Exception``) to the one handler."""

    def __init__(self, error: BaseException):
        super().__init__(error)
        self.error = error


def handle(exc: BaseException, started: float, state_dir: Callable[[], Path | None]) -> int:
    """The one place an error becomes a message and an exit status (see the module docstring)."""
    while isinstance(exc, Carried):
        exc = exc.error
    if isinstance(exc, UserError):
        print(f"auto-infer: {exc}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, BrokenPipeError):
        quiet_stdout()
        return 0
    if isinstance(exc, KeyboardInterrupt):
        print(f"auto-infer: interrupted after {time.monotonic() - started:.1f}s", file=sys.stderr)
        return 130
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    try:
        where = state_dir()
    except Exception:   # noqa: BLE001 - a broken environment must not hide the crash
        where = None
    path = write_crash_log(where, exc)
    print(hide_secrets(f"auto-infer: internal error: {type(exc).__name__}: {exc} (traceback and versions in {path})"),
          file=sys.stderr)
    return 3


def quiet_stdout() -> None:
    """The reader of our stdout went away (`auto-infer env | head -1`): drop the rest quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def hide_secrets(text: str) -> str:
    """A crash's text without credentials: the proxy variables' passwords by value (with or without a
    scheme, as an exception may quote them), the others by their shape (URL user-info, tokens...)."""
    from auto_infer.core import redact

    proxies = {k: v for k, v in os.environ.items() if redact.PROXY_NAME.match(k)}
    return redact.scrub(text, redact.secret_values(env=proxies))


def write_crash_log(state_dir: Path | None, exc: BaseException) -> Path | None:
    """Write traceback + versions; return the path (None if it could not be written)."""
    import platform  # here, not at the top: only a crash needs them
    import traceback

    from auto_infer import __version__
    from auto_infer.core import redact

    body = [
        f"auto-infer {__version__} crashed at {time.strftime('%Y-%m-%dT%H:%M:%S')}",
        f"python {sys.version.split()[0]} on {platform.platform()}",
        f"argv: {redact.redact_argv(sys.argv)}",
        "",
        "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    ]
    for base in [state_dir, Path("/tmp")]:
        if base is None:
            continue
        try:
            base.mkdir(parents=True, exist_ok=True)
            path = base / f"crash-{int(time.time())}.log"
            path.write_text(hide_secrets("\n".join(body)))
            return path
        except OSError:
            continue
    return None
