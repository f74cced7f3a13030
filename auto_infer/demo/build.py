"""What the demo builds before it runs anything: a local conda channel (a venv-style python, the
*demo engine* -- a tiny OpenAI-compatible responder, not a model -- and a wheel), a real pixi.lock
for it, and a model config with two servers on free ports. Built once per demo workspace."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_text, read_json
from auto_infer.core.net import free_port, port_is_free
from auto_infer.demo import channel

ENGINE_PKG = "auto-infer-demo-engine"
ENGINE_CMD = "auto-infer-demo-engine"


@dataclass(frozen=True)
class DemoPaths:
    """The demo's folder: the channel ("the internet"), machine A (online), the transfer folder
    (the USB stick), machine B (air-gapped: its own workspace and cache, sharing nothing with A)."""

    workspace: Path
    channel_root: Path
    template: Path
    config: Path
    log: Path
    ports: Path
    machine_a: Path
    machine_b: Path
    bundle: Path


# What the demo writes at the top of its workspace (and, for a folder, what in it); `.auto-infer`:
# doit's state, which cli.py keeps there too.
DEMO_ENTRIES: dict[str, frozenset[str] | None] = {
    ".auto-infer": None, "demo-channel": None, "demo-ports.json": None, "machine-a": None, "machine-b": None,
    "transfer": None, "logs": frozenset({"demo.log"}), "sglang-configs": frozenset({"demo.toml"})}


def check_workspace(ws: Path) -> None:
    """--workspace is a new or empty folder, or an earlier demo's. The demo fills it and its last line
    says to `rm -rf` it, so a folder with anything else in it (a real workspace) is refused."""
    if not ws.is_dir():
        return
    foreign = []
    for entry in sorted(ws.iterdir()):
        if entry.name not in DEMO_ENTRIES:
            foreign.append(entry.name)
            continue
        inside = DEMO_ENTRIES[entry.name]
        if inside is not None:
            foreign += [f"{entry.name}/{e.name}" for e in sorted(entry.iterdir()) if e.name not in inside] \
                if entry.is_dir() else [entry.name]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UserError(f"the demo workspace {ws} holds what the demo did not write ({shown}); the demo fills it "
                        f"with two machines and its clean-up is `rm -rf {ws}`", where="--workspace",
                        fix="name a new or empty folder, or leave --workspace out (a new temp folder); it is "
                            "not AUTO_INFER_WORKSPACE_DIR")


def demo_paths(ws: Path) -> DemoPaths:
    return DemoPaths(workspace=ws, channel_root=ws / "demo-channel", template=ws / "demo-channel" / "template",
                     config=ws / "sglang-configs" / "demo.toml", log=ws / "logs" / "demo.log",
                     ports=ws / "demo-ports.json", machine_a=ws / "machine-a", machine_b=ws / "machine-b",
                     bundle=ws / "transfer" / "auto-infer-bundle.tar")


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
    old = read_json(paths.ports) or []
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
    atomic_write_text(paths.ports, json.dumps(ports))
    return ports[0], ports[1]


