"""Ask an engine's own argument parser, in the instance's Python, whether our flags are right.

A small script runs in that Python: phase 1 imports the engine, builds its parser and prints the
engine's version, its multi-value flags and the ``--no-`` forms of its negatable flags; phase 2
reads {instance: [flags]} on stdin and prints, per instance, the unknown flags or the parse error.
Where the engine cannot be imported the check is skipped (and says why). Its stderr goes to a file,
never a pipe: noisy imports (warnings, banners) cannot fill a pipe and block it, and the file's
last lines explain a crash.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import textwrap
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from auto_infer.core.errors import UserError
from auto_infer.serve.engines.base import Checked, key_of

CHECK_TIMEOUT = 300.0
MARK = "@@auto-infer "

TEMPLATE = r"""
import argparse, json, sys
MARK = "@@auto-infer "
try:
{imports}
except BaseException as exc:
    print(MARK + json.dumps({{"skip": f"{{type(exc).__name__}}: {{exc}}"[:300]}}), flush=True)
    sys.exit(0)

class Rejected(Exception):
    pass

def parser():
{build}

actions = parser()._actions
multi = sorted(s for a in actions if a.nargs in ("+", "*") for s in a.option_strings)
multi += sorted(s for a in actions if isinstance(a, argparse.BooleanOptionalAction)
                for s in a.option_strings if s.startswith("--no-"))
print(MARK + json.dumps({{"version": str({version}), "multi": multi}}), flush=True)
results = {{}}
for name, argv in json.loads(sys.stdin.readline()).items():
    try:
        _, unknown = parser().parse_known_args(argv)
        results[name] = {{"unknown": unknown}} if unknown else {{}}
    except Rejected as exc:
        results[name] = {{"error": str(exc)}}
print(MARK + json.dumps(results), flush=True)
"""


def script(imports: str, build: str, version: str) -> str:
    """The check script for one engine: ``imports`` may fail (→ skip); ``build`` is the body of
    ``parser()`` and must return a parser whose ``error`` raises ``Rejected``."""
    return TEMPLATE.format(imports=textwrap.indent(imports.strip(), "    "),
                           build=textwrap.indent(build.strip(), "    "), version=version)


def check(label: str, code: str, python: Path, env: Mapping[str, str],
          build: Callable[[frozenset[str]], dict[str, list[str]]], timeout: float = CHECK_TIMEOUT) -> Checked:
    """Run ``code`` in ``python``: learn the multi-value flags, build each argv with them, parse."""
    if not python.exists():
        return Checked(label, skipped=f"{python} does not exist")
    with tempfile.TemporaryFile("w+") as err:
        try:
            proc = subprocess.Popen([str(python), "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=err, env=dict(env), text=True)
        except OSError as exc:
            return Checked(label, skipped=f"{python} cannot run: {exc}")
        assert proc.stdin is not None
        try:
            info = _read_marked(label, proc, err, timeout)
            if "skip" in info:
                proc.wait(timeout=10)
                return Checked(label, skipped=f"{python} cannot import {label}'s parser ({info['skip']})")
            multi = frozenset(info.get("multi", []))
            proc.stdin.write(json.dumps(build(multi)) + "\n")
            proc.stdin.flush()
            results = _read_marked(label, proc, err, timeout)
        finally:
            proc.kill()
            proc.wait()
    rejected = {name: _rejection(label, res) for name, res in results.items() if res}
    return Checked(label, info.get("version"), multi, rejected)


def _read_marked(label: str, proc: subprocess.Popen[str], err: IO[str], timeout: float) -> dict[str, Any]:
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(MARK):
                return dict(json.loads(line[len(MARK):]))
    finally:
        timer.cancel()
    code = proc.wait()
    err.seek(0)
    last = err.read().strip().splitlines()[-5:]
    raise UserError(f"{label}'s argument check died (exit {code}): {' | '.join(last) or 'no output'}",
                    where=str(proc.args[0]) if isinstance(proc.args, list) else None,
                    fix=f"run the same Python by hand and import {label}, to see why")


def _rejection(label: str, result: Mapping[str, Any]) -> tuple[str, str]:
    unknown = [str(t) for t in result.get("unknown", [])]
    if unknown:
        first = next((t for t in unknown if t.startswith("-")), unknown[0])
        return key_of(first), f"{label} does not know {' '.join(unknown)}"
    message = str(result.get("error", "rejected"))
    m = re.search(r"(--[\w-]+)", message)
    return (key_of(m.group(1)) if m else "?"), message
