"""Serving tests' helpers: an installed workspace (the test channel's environment, warmed and
installed once per module), a model config of test responders, and a Serve handle per test.
The fixtures that use them (`installed`, `serve`) are defined once, in tests/conftest.py."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from auto_infer.core.settings import load
from auto_infer.demo import mirror
from auto_infer.serve import procs, registry
from tests.helpers import Workspace, new_workspace, run_cli

RESPONDER = [sys.executable, "-m", "auto_infer.demo.responder", "--host", "{host}", "--port", "{port}",
             "--model", "{served_model_name}"]


def make_installed(tmp_path_factory: pytest.TempPathFactory, built_channel: Any) -> Workspace:
    """A workspace with the test channel's environment installed (warm installs it)."""
    ws = new_workspace(tmp_path_factory.mktemp("serve-ws"), built_channel.template)
    with mirror.Mirror(built_channel.channel.root, built_channel.port):
        r = run_cli(["warm"], ws.env)
    assert r.returncode == 0, r.stderr
    return ws


@dataclass
class Serve:
    """One test's model config and environment; stops every instance it started at the end."""

    ws: Workspace
    config: Path
    env: dict[str, str]

    def write(self, text: str) -> None:
        self.config.write_text(text)

    def cli(self, *args: str, timeout: float = 120, **extra: str) -> Any:
        return run_cli(list(args), {**self.env, **extra}, timeout=timeout)

    def ok(self, *args: str, **extra: str) -> Any:
        r = self.cli(*args, **extra)
        assert r.returncode == 0, f"auto-infer {' '.join(args)} exited {r.returncode}:\n{r.stderr}\n{r.stdout}"
        return r

    def record(self, name: str) -> dict[str, Any]:
        """The record as it is on disk (every key the writers put there)."""
        path = registry.path(load(self.env), name)
        assert path.is_file(), f"no record for {name}"
        return dict(json.loads(path.read_text()))

    def report(self) -> dict[str, Any]:
        return dict(json.loads((self.ws.root / "reports" / "serve-latest.json").read_text()))

    def debug_env(self, port: int, key: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return dict(requests.get(f"http://127.0.0.1:{port}/debug/env", headers=headers, timeout=5).json())


def responder_config(instances_: dict[str, dict[str, Any]], *, defaults: str = "") -> str:
    """A model config: one responder instance per entry (port, gpu, flags, control/server extras)."""
    items = ", ".join(json.dumps(t) for t in RESPONDER)
    out = [f"[master]\nenable = true\n\n[instance.control]\nready_timeout = 60\nstop_grace = 5\n{defaults}",
           '[instance.server]\nhost = "127.0.0.1"\n']
    for name, spec in instances_.items():
        flags = ", ".join(json.dumps(f) for f in spec.get("flags", []))
        out.append(f"[instance.{name}.control]\ncommand = [{items}{', ' if flags else ''}{flags}]\n"
                   f"{spec.get('control', '')}\n"
                   f"[instance.{name}.server]\nport = {spec['port']}\nserved_model_name = \"{name}-model\"\n"
                   f"{spec.get('server', '')}\n")
    return "\n".join(out)


def group_members(pgid: int) -> list[int]:
    return procs.group_members(pgid)


def listening(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
    except requests.ConnectionError:
        return False
    return True


SMG = Path(sys.executable).parent / "smg"       # sglang-router's gateway: the wheel's console script


def router_table(port: int, metrics: int, **extra: Any) -> str:
    lines = [
        "[router]",
        f"port = {port}",
        f"prometheus_port = {metrics}",
        f'command = [{json.dumps(str(SMG))}, "launch"]',
        "ready_timeout = 60",
        "stop_grace = 10",
        'extra_args = ["--health-check-interval-secs", "1", "--health-failure-threshold", "1"]',
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"
