"""llama.cpp's own llama-server (built from its pinned source by .ci/setup-llama-server.sh, named by
AUTO_INFER_LLAMA_SERVER) serving SmolLM2-135M on the CPU from infer-dev shaped llama.cpp configs,
through the real CLI: what a user of those configs meets. The GGUF comes from the llama.cpp engine
venv (AUTO_INFER_LLAMACPP_VENV), as in tests/test_real_engine.py. Nothing here asserts a timing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from auto_infer.core.net import free_port
from auto_infer.demo import engines
from tests.conftest import Workspace
from tests.helpers import run_cli

VENV = os.environ.get(engines.VENV_VAR, "")           # read at import: the autouse fixture clears AUTO_INFER_*
LLAMA_SERVER = os.environ.get("AUTO_INFER_LLAMA_SERVER", "")
pytestmark = [pytest.mark.llamacpp,
              pytest.mark.skipif(not (VENV and LLAMA_SERVER),
                                 reason="needs AUTO_INFER_LLAMA_SERVER (.ci/setup-llama-server.sh) and the "
                                        f"SmolLM2 GGUF ({engines.VENV_VAR})")]
QUESTION = "What is the capital of France?"


def smollm2(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(engines.VENV_VAR, VENV)
    from auto_infer.core.settings import load
    found = engines.find_llamacpp(load())
    assert found is not None, f"{engines.VENV_VAR}={VENV} has no SmolLM2 GGUF; {engines.INSTALL_HINT}"
    return found[1]


def llama_config(path: Path, model: str | Path, port: int, server: str = "") -> Path:
    """infer-dev's llama.cpp config shape (model-configs/llamacpp-glm-4.7-q2k.toml), on the CPU."""
    path.write_text(f"""[master]
enable = true
llama_cpp_path = "{LLAMA_SERVER}"

[instance.control]
background = true
ready_timeout = 60
stop_grace = 10
smoke_prompt = "{QUESTION}"

[instance.server]
host = "127.0.0.1"
ctx_size = 2048
n_predict = 32
temp = 0.0
chat_template = "chatml"

[instance.smol]
    [instance.smol.control]
    gpu_ids = "none"

[instance.smol.server]
    model = "{model}"
    port = {port}
{server}
""")
    return path


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(args, env, timeout=300)


def serve_and_stop(workspace: Workspace, config: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    """warm, serve (then always stop); serve's result and its report's one instance."""
    env = dict(workspace.env, AUTO_INFER_SGLANG_CONFIG=str(config))
    warmed = cli(["warm"], env)
    assert warmed.returncode == 0, warmed.stderr
    try:
        served = cli(["serve"], env)
    finally:
        stopped = cli(["stop"], env)
    assert stopped.returncode == 0, stopped.stderr
    report = workspace.root / "reports" / "serve-latest.json"
    [inst] = json.loads(report.read_text())["instances"] if report.exists() else [{}]
    return served, inst


def test_comma_separated_aliases_are_ready_under_the_first(workspace: Workspace, online: object, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """llama-server's --help: "-a, --alias STRING  set model name aliases, comma-separated"; its
    /v1/models then lists the first as the id (the others as "aliases")."""
    config = llama_config(tmp_path / "aliases.toml", smollm2(monkeypatch), free_port(), 'alias = "smol,smollm2-135m"')
    served, inst = serve_and_stop(workspace, config)
    assert served.returncode == 0, served.stderr
    assert inst["ok"] and inst["model_id"] == "smol", inst
    assert "paris" in inst["chat"]["answer"].lower(), inst["chat"]


def test_a_folder_or_a_file_that_is_not_gguf_is_refused_before_llama_server_starts(
        workspace: Workspace, online: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """llama-server's --model loads one GGUF file: given the folder that holds it, or a file of
    another format, it dies while loading. serve says so (and which file to name) before starting it."""
    gguf, fake = smollm2(monkeypatch), tmp_path / "weights" / "model.gguf"
    fake.parent.mkdir()
    fake.write_text('{"not": "a gguf"}\n')
    cases = {gguf.parent: ("is a folder", f'model = "{gguf}"'), fake: ("is not a GGUF file", "point model at a .gguf")}
    for model, (said, fix) in cases.items():
        config = llama_config(tmp_path / "bad-model.toml", model, free_port(), 'alias = "smol"')
        env = dict(workspace.env, AUTO_INFER_SGLANG_CONFIG=str(config))
        dry = cli(["serve", "--dry-run", "--strict"], env)
        assert dry.returncode == 1 and said in dry.stdout, dry.stdout
        served, _ = serve_and_stop(workspace, config)
        assert served.returncode == 1 and said in served.stderr and fix in served.stderr, served.stderr
        assert not (workspace.root / "logs" / "llamacpp" / "smol" / "server.log").exists(), "llama-server started"


def test_flags_are_checked_against_llama_servers_help_and_false_turns_an_option_off(
        workspace: Workspace, online: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """llama-server's --help is the authority on its flags. A misspelt key, or extra_args written
    --flag=value (llama-server takes the value as the next word), is refused before it starts; and
    `jinja = false` (its --help: "--jinja, --no-jinja ... (default: enabled)") must turn Jinja off,
    not leave the flag out and keep the default."""
    gguf = smollm2(monkeypatch)
    for bad, said in (("ctx_sise = 4096", "--ctx-sise"), ('extra_args = ["--threads=1"]', "--threads 1")):
        config = llama_config(tmp_path / "bad-flag.toml", gguf, free_port(), f'alias = "smol"\n{bad}')
        env = dict(workspace.env, AUTO_INFER_SGLANG_CONFIG=str(config))
        dry = cli(["serve", "--dry-run"], env)
        assert dry.returncode == 1 and "llama-server's --help does not list" in dry.stderr and said in dry.stderr, (
            dry.stderr)
        served, _ = serve_and_stop(workspace, config)
        assert served.returncode == 1 and said in served.stderr, served.stderr
        assert not (workspace.root / "logs" / "llamacpp" / "smol" / "server.log").exists(), "llama-server started"
    # cpu_strict / poll_batch: its --help says <0|1>; a bare --cpu-strict would make it exit ("stoul")
    config = llama_config(tmp_path / "no-jinja.toml", gguf, free_port(),
                          'alias = "smol"\njinja = false\nwebui = false\ncpu_strict = true\npoll_batch = false')
    served, inst = serve_and_stop(workspace, config)
    assert served.returncode == 0 and "flags accepted by llama.cpp" in served.stderr, served.stderr
    assert "--no-jinja" in inst["argv"] and "--no-webui" in inst["argv"], inst["argv"]
    argv = " ".join(inst["argv"])
    assert "--cpu-strict 1" in argv and "--poll-batch 0" in argv, argv
    assert "paris" in inst["chat"]["answer"].lower(), inst["chat"]
