"""`demo`: the whole pipeline, for real, on an embedded default, on any Linux box.

It builds a small local conda channel (a venv-style python, a *demo engine* package -- a tiny
OpenAI-compatible responder, not a model -- and a wheel), a real pixi.lock for it and a model
config with two servers, then runs the same tasks a user runs, as separate processes:
mirror up → warm → mirror down → install (offline) → check → serve (ready, chat, report) → stop.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_text, read_json
from auto_infer.core.net import free_port, port_is_free
from auto_infer.core.netns import can_unshare, offline_command
from auto_infer.core.progress import Step, fmt_secs, say
from auto_infer.core.runner import run_child
from auto_infer.demo import channel, mirror

ENGINE_PKG = "auto-infer-demo-engine"
ENGINE_CMD = "auto-infer-demo-engine"


@dataclass(frozen=True)
class DemoPaths:
    workspace: Path

    @property
    def channel_root(self) -> Path:
        return self.workspace / "demo-channel"

    @property
    def template(self) -> Path:
        return self.channel_root / "template"

    @property
    def config(self) -> Path:
        return self.workspace / "sglang-configs" / "demo.toml"

    @property
    def log(self) -> Path:
        return self.workspace / "logs" / "demo.log"


def _engine_spec() -> channel.CondaSpec:
    source = (Path(__file__).parent / "responder.py").read_bytes()
    site = channel.site_packages_rel()
    init = (b'"""auto-infer DEMO ENGINE: a tiny OpenAI-compatible responder. It is NOT a model; it answers '
            b'with canned text so the pipeline can be shown without a GPU."""\n__version__ = "0.1.0"\n')
    launcher = b'#!/bin/sh\nexec "$(dirname "$0")/python" -m auto_infer_demo_engine "$@"\n'
    return channel.CondaSpec(ENGINE_PKG, "0.1.0", {
        f"{site}/auto_infer_demo_engine/__init__.py": init,
        f"{site}/auto_infer_demo_engine/__main__.py": source,
        f"bin/{ENGINE_CMD}": launcher,
    })


def build_template(paths: DemoPaths) -> int:
    """Build channel + lock once per workspace; return the mirror port baked into the lock."""
    port_file = paths.channel_root / "port"
    if (paths.template / "pixi.lock").is_file() and port_file.is_file():
        return int(port_file.read_text())
    port = free_port()
    conda = [channel.python_spec(), _engine_spec(),
             channel.CondaSpec("demo-assets", "1.0", {"share/auto-infer-demo/README.txt":
                                                     b"Demo assets for auto-infer.\n"}, subdir="noarch")]
    wheels = [channel.WheelSpec("auto-infer-demo-client", "0.1.0", {
        "auto_infer_demo_client/__init__.py": b'"""Demo wheel, installed by uv from the cache."""\n'
                                              b"__version__ = '0.1.0'\n"})]
    channel.build(paths.channel_root, f"http://127.0.0.1:{port}", conda, wheels, name="auto-infer-demo")
    atomic_write_text(port_file, f"{port}\n")
    return port


def write_config(paths: DemoPaths, command: list[str]) -> tuple[int, int]:
    """Two servers with different (pretend) GPU ids, on free ports (kept across runs if free)."""
    old = read_json(paths.workspace / ".auto-infer" / "demo-ports.json") or []
    ports = [p if p and port_is_free("127.0.0.1", p) else free_port() for p in (old + [0, 0])[:2]]
    while ports[0] == ports[1]:
        ports[1] = free_port()
    cmd = ", ".join(json.dumps(c) for c in command)
    text = f"""# auto-infer demo: two demo-engine servers (not models), in infer-dev's runner format.
[master]
enable = true

[instance.control]
ready_timeout = 120
stop_grace = 5
smoke_prompt = "Say hello from the auto-infer demo."
command = [{cmd}]

[instance.server]
host = "127.0.0.1"

[instance.demo_a.control]
gpu_ids = "0"
[instance.demo_a.server]
port = {ports[0]}
served_model_name = "demo-a"

[instance.demo_b.control]
gpu_ids = "1"
[instance.demo_b.server]
port = {ports[1]}
served_model_name = "demo-b"
"""
    atomic_write_text(paths.config, text)
    atomic_write_text(paths.workspace / ".auto-infer" / "demo-ports.json", json.dumps(ports))
    return ports[0], ports[1]


def _env(paths: DemoPaths) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTO_INFER_")}
    env.update({
        "AUTO_INFER_WORKSPACE_DIR": str(paths.workspace),
        "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(paths.template),
        "AUTO_INFER_SGLANG_CONFIG": str(paths.config),
        "AUTO_INFER_INSTALLER": "rattler",
        "AUTO_INFER_CHECK_MODULES": "auto_infer_demo_engine,auto_infer_demo_client",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "AUTO_INFER_LOCK_TIMEOUT": "120",   # a demo never waits an hour for another run
    })
    return env


def _offline_wrap(cmd: list[str], env: dict[str, str], use_netns: bool) -> tuple[list[str], dict[str, str]]:
    if use_netns:
        return offline_command(cmd), env
    dead = "http://127.0.0.1:9"   # discard port: any egress attempt fails at once
    env = dict(env, HTTP_PROXY=dead, HTTPS_PROXY=dead, ALL_PROXY=dead, http_proxy=dead, https_proxy=dead,
               all_proxy=dead, NO_PROXY="", no_proxy="")
    return cmd, env


def run_step(label: str, args: list[str], env: dict[str, str], log: Path, *,
             offline: bool = False, use_netns: bool = False) -> str:
    """Run `auto-infer ARGS` as its own process; print one line with its time; return its output."""
    cmd = [sys.executable, "-m", "auto_infer", *args]
    if offline:
        cmd, env = _offline_wrap(cmd, env, use_netns)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"\n# auto-infer {' '.join(args)}\n")
    lines: list[str] = []
    beat = Step(label, every=10).start(announce=False)

    def on_line(line: str) -> None:
        lines.append(line.rstrip())
        if line.strip():
            beat.note(line.strip()[-100:])

    try:      # one runner for installers and demo steps: its own process group, ended on SIGTERM
        code = run_child(cmd, env=env, log=log, on_line=on_line, grace=30)
    finally:
        beat.stop()
    elapsed = fmt_secs(beat.elapsed)
    with open(log, "a") as fh:
        fh.write(f"(exit {code}, {elapsed})\n")
    out = "\n".join(lines)
    if code != 0:
        tail = "\n".join("      " + ln for ln in lines[-12:])
        say(f"  ✗ {label:<36} failed in {elapsed} (exit {code})\n{tail}\n    full log: {log}")
        raise UserError(f"demo step `{label}` failed", where=str(log), fix="read the log lines above")
    note = "done"
    if f"-- {args[0]} (up to date" in out:
        note = "skipped: up to date (incremental rerun)"
    elif "nothing to do" in out:
        note = "nothing to do: the environment already matches the lock"
    say(f"  ✓ {label:<36} {elapsed:>7}  {note}")
    return out


def _latest_report(workspace: Path) -> tuple[Path | None, dict | None]:
    reports = sorted((workspace / "reports").glob("*.json"), key=lambda p: p.stat().st_mtime)
    if not reports:
        return None, None
    return reports[-1], read_json(reports[-1])


def _answers(report: dict | None) -> list[str]:
    out = []
    for inst in (report or {}).get("instances", []):
        answer = (inst.get("chat") or {}).get("answer") or "(no answer)"
        out.append(f"    {inst.get('name')}: {answer.strip()[:200]}")
    return out


def run(workspace: Path | None, keep: bool, engine: str) -> Path:
    ws = workspace or Path(__import__("tempfile").mkdtemp(prefix="auto-infer-demo-"))
    paths = DemoPaths(ws.resolve())
    paths.workspace.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    say(f"auto-infer demo in {paths.workspace}")
    command = [ENGINE_CMD, "--host", "{host}", "--port", "{port}", "--model", "{served_model_name}",
               "--slow-start", "0.5"]
    if engine == "llama-cpp":
        from auto_infer.demo import engines
        found = engines.find_llamacpp()
        if found is None:
            raise UserError("the llama.cpp engine is not installed here", fix=engines.INSTALL_HINT)
        command = engines.llamacpp_command(*found)
    port = build_template(paths)
    write_config(paths, command)
    env = _env(paths)
    use_netns = can_unshare()
    say("  offline steps run in a network namespace with no egress (unshare -n)" if use_netns else
        "  offline steps run with the mirror stopped and proxies pointed at a dead port (no root/unshare here)")
    try:
        with mirror.Mirror(paths.channel_root, port):
            run_step("warm (online, local mirror)", ["warm"], env, paths.log)
    except OSError as exc:
        raise UserError(f"cannot start the demo mirror on 127.0.0.1:{port}: {exc.strerror}",
                        where=str(paths.channel_root), fix="free that port, or use a new --workspace") from None
    run_step("install (offline, from cache)", ["install"], env, paths.log, offline=True, use_netns=use_netns)
    run_step("check (imports)", ["check"], env, paths.log, offline=True, use_netns=use_netns)
    run_step("serve (start, ready, chat, report)", ["serve"], env, paths.log)
    report_path, report = _latest_report(paths.workspace)
    if not keep:
        run_step("stop", ["stop"], env, paths.log)
    say(f"\ndemo finished in {fmt_secs(time.monotonic() - t0)}. Chat answers:")
    for line in _answers(report):
        say(line)
    say(f"report:  {report_path}")
    say(f"log:     {paths.log}")
    say(("servers still running (--keep): `AUTO_INFER_WORKSPACE_DIR=" + str(paths.workspace) +
         " auto-infer status`, then `... auto-infer stop`\n") if keep else "")
    say(f"clean up: rm -rf {paths.workspace}   (nothing outside it was written)")
    return paths.workspace
