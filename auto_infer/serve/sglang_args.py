"""SGLang's arguments: ``server`` keys become flags, and SGLang's own parser judges them.

Flags follow infer-dev's runner: ``model_path`` → ``--model-path VALUE``; ``true`` → a bare flag,
``false`` → nothing; a table → its JSON; a list → the flag repeated per item; ``extra_args`` →
raw tokens appended. One exception, learnt from SGLang's parser: a flag that takes several
values (``nargs="+"``, e.g. ``--lora-paths``) keeps only its last occurrence, so for those a list
becomes one flag followed by every item. Which flags those are is asked from SGLang itself.

The check runs a small script in the instance's Python (``master.python_path``, else the
installed environment's): it builds the parser with ``ServerArgs.add_cli_args`` and parses each
instance's flags, so unknown flags and bad values are caught before anything starts.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError

CHECK_TIMEOUT = 300.0
MARK = "@@auto-infer "

# Runs in the instance's Python: phase 1 prints SGLang's version and its multi-value flags; phase 2
# reads {instance: [flags]} on stdin and prints, per instance, the unknown flags or the parse error.
SCRIPT = r"""
import argparse, json, sys
MARK = "@@auto-infer "
try:
    import sglang
    from sglang.srt.server_args import ServerArgs
except BaseException as exc:
    print(MARK + json.dumps({"skip": f"{type(exc).__name__}: {exc}"[:300]}), flush=True)
    sys.exit(0)

class Rejected(Exception):
    pass

class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Rejected(message)

def parser():
    p = Parser(prog="sglang.launch_server", add_help=False)
    ServerArgs.add_cli_args(p)
    return p

multi = sorted(s for a in parser()._actions if a.nargs in ("+", "*") for s in a.option_strings)
print(MARK + json.dumps({"version": getattr(sglang, "__version__", "unknown"), "multi": multi}), flush=True)
results = {}
for name, argv in json.loads(sys.stdin.readline()).items():
    try:
        _, unknown = parser().parse_known_args(argv)
        results[name] = {"unknown": unknown} if unknown else {}
    except Rejected as exc:
        results[name] = {"error": str(exc)}
print(MARK + json.dumps(results), flush=True)
"""


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def key_of(token: str) -> str:
    return token.split("=", 1)[0].lstrip("-").replace("-", "_")


def server_flags(server: Mapping[str, Any], multi: frozenset[str] = frozenset()) -> list[str]:
    """The command-line flags for ``server`` keys (``multi``: flags that take several values)."""
    out: list[str] = []
    for key, value in server.items():
        if key == "extra_args":
            continue
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and flag(key) in multi:
            out += [flag(key), *(_text(v) for v in items)] if items else []
            continue
        for item in items:
            if item is True:
                out.append(flag(key))
            elif item is not False:
                out += [flag(key), _text(item)]
    extra = server.get("extra_args", [])
    return out + (shlex.split(extra) if isinstance(extra, str) else [str(t) for t in extra])


@dataclass(frozen=True)
class Checked:
    """What SGLang said: its version, its multi-value flags, and each instance's rejection."""

    python: str
    version: str | None = None
    multi: frozenset[str] = frozenset()
    rejected: dict[str, tuple[str, str]] = field(default_factory=dict)   # name -> (key, message)
    skipped: str | None = None


def check(python: Path, env: Mapping[str, str], build: Callable[[frozenset[str]], dict[str, list[str]]],
          timeout: float = CHECK_TIMEOUT) -> Checked:
    """Ask SGLang (in ``python``) which flags take lists, build the argv with that, parse it."""
    if not python.exists():
        return Checked(str(python), skipped=f"{python} does not exist")
    try:
        proc = subprocess.Popen([str(python), "-c", SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(env), text=True)
    except OSError as exc:
        return Checked(str(python), skipped=f"{python} cannot run: {exc}")
    assert proc.stdin is not None
    try:
        info = _read_marked(proc, timeout)
        if "skip" in info:
            proc.wait(timeout=10)
            return Checked(str(python), skipped=f"{python} cannot import sglang.srt.server_args ({info['skip']})")
        multi = frozenset(info.get("multi", []))
        proc.stdin.write(json.dumps(build(multi)) + "\n")
        proc.stdin.flush()
        results = _read_marked(proc, timeout)
    finally:
        proc.kill()
        proc.wait()
    rejected = {name: _rejection(res) for name, res in results.items() if res}
    return Checked(str(python), info.get("version"), multi, rejected)


def _read_marked(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(MARK):
                return dict(json.loads(line[len(MARK):]))
    finally:
        timer.cancel()
    err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()[-5:]
    raise UserError(f"SGLang's argument check died (exit {proc.wait()}): {' | '.join(err) or 'no output'}",
                    where=str(proc.args[0]) if isinstance(proc.args, list) else None,
                    fix="run the same Python by hand: python -c 'import sglang.srt.server_args'")


def _rejection(result: Mapping[str, Any]) -> tuple[str, str]:
    unknown = [str(t) for t in result.get("unknown", [])]
    if unknown:
        first = next((t for t in unknown if t.startswith("-")), unknown[0])
        return key_of(first), f"SGLang does not know {' '.join(unknown)}"
    message = str(result.get("error", "rejected"))
    m = re.search(r"(--[\w-]+)", message)
    return (key_of(m.group(1)) if m else "?"), message
