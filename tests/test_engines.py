"""Engines (issue 16.1): SGLang, vLLM and llama.cpp configs, read unchanged from infer-dev.

* golden: for every infer-dev config (tests/data/infer-dev, dev-dockers d11afb7) the flags, the
  executable and the GPUs equal what infer-dev's own runner builds (its output is the data file);
* recognition of the engine from infer-dev's keys, clashes between extra_args and keys (issue 10.5);
* ``serve --dry-run [--json]`` through the real CLI: the argv per instance, nothing started;
* the test responder playing vLLM's and llama-server's readiness sequences, served by the real
  ``serve``: the probe follows each engine's routes (no /health_generate for them).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from auto_infer.core.errors import UserError
from auto_infer.core.net import free_port
from auto_infer.core.settings import Settings, load
from auto_infer.serve import config, launch
from auto_infer.serve.engines import base, llamacpp, sglang, vllm
from tests.helpers import clean_env, model_folder, run_cli
from tests.helpers.serving import Serve

DATA = Path(__file__).parent / "data" / "infer-dev"
GOLDEN = sorted([*DATA.glob("*.expected.json"), *DATA.glob("ours/*.expected.json")])
ENGINE_OF = {"check-and-run-vllm.sh": "vllm", "check-and-run-llama-cpp.sh": "llamacpp",
             "check-and-run-sglang.sh": "sglang"}


def settings_for(tmp_path: Path, cfg: Path, **env: str) -> Settings:
    return load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(cfg), **env})


def infer_dev_gpus(gpu_ids: Any) -> str | None:
    """CUDA_VISIBLE_DEVICES as infer-dev's runners set it (None: left alone)."""
    if gpu_ids is None or str(gpu_ids).strip().lower() == "all":
        return None
    return "" if str(gpu_ids).strip().lower() == "none" else str(gpu_ids)


@pytest.mark.parametrize("golden", GOLDEN, ids=[p.name.split(".expected")[0] for p in GOLDEN])
def test_argv_equals_what_infer_devs_runner_builds(golden: Path, tmp_path: Path) -> None:
    expected = json.loads(golden.read_text())
    cfg_path = golden.with_name(golden.name.replace(".expected.json", ".toml"))
    s = settings_for(tmp_path, cfg_path, **expected.get("overrides", {}))
    cfg = config.load(s)
    if cfg.master.enable:
        assert cfg.master.engine == ENGINE_OF[expected["runner"]]
    live = cfg.enabled() if cfg.master.enable else ()
    assert [i.name for i in live] == [e["name"] for e in expected["instances"]]
    for inst, want in zip(live, expected["instances"], strict=True):
        got = launch.build_launch(s, cfg, inst, {})
        prefix = len(got.argv) - len(want["cmd"])
        assert got.argv[prefix:] == want["cmd"], inst.name
        assert got.added.get("CUDA_VISIBLE_DEVICES") == infer_dev_gpus(want["gpu_ids"])
        if inst.engine == "llamacpp":
            assert got.argv[:prefix] == [want["executable"]]
        elif inst.engine == "vllm":
            assert got.argv[:prefix] == [str(s.env_prefix / "bin" / "python"), "-m", want["api_server_module"]]
        else:
            assert got.argv[:prefix] == [str(s.env_prefix / "bin" / "python"), "-m", "sglang.launch_server"]
    assert len(GOLDEN) >= 9


def test_vllm_runs_through_pixi_like_infer_dev_when_its_project_is_here(tmp_path: Path) -> None:
    """pixi on PATH and a pixi project at pixi_project_dir: infer-dev's exact command line."""
    bindir, project = tmp_path / "bin", tmp_path / "vllm-pixi-offline"
    bindir.mkdir()
    project.mkdir()
    (project / "pixi.toml").write_text("[workspace]\n")
    pixi = bindir / "pixi"
    pixi.write_text("#!/bin/sh\nexit 0\n")
    pixi.chmod(0o755)
    golden = json.loads((DATA / "vllm-qwen2-vl-7b.expected.json").read_text())["instances"][0]
    override = json.dumps({"master": {"pixi_project_dir": str(project)}})
    s = settings_for(tmp_path, DATA / "vllm-qwen2-vl-7b.toml", AUTO_INFER_VLLM_OVERRIDES=override)
    cfg = config.load(s)
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{bindir}:{old}"
    try:
        argv = launch.build_launch(s, cfg, cfg.instances[0], {}).argv
    finally:
        os.environ["PATH"] = old
    assert argv == [str(pixi), "run", "--manifest-path", str(project), "--environment", golden["pixi_environment"],
                    "--frozen", "python", "-m", golden["api_server_module"], *golden["cmd"]]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def engine_of(tmp_path: Path, text: str, **env: str) -> str:
    return config.load(settings_for(tmp_path, write(tmp_path, text), **env)).master.engine


def test_engine_is_explicit_or_recognised_from_infer_devs_keys(tmp_path: Path) -> None:
    inst = '[instance.a.server]\nmodel = "/m/w"\n'
    assert engine_of(tmp_path, f'[master]\nengine = "llama.cpp"\n{inst}') == "llamacpp"
    assert engine_of(tmp_path, f'[master]\nengine = "vLLM"\n{inst}') == "vllm"
    assert engine_of(tmp_path, f'[master]\napi_server_module = "x"\n{inst}') == "vllm"
    assert engine_of(tmp_path, f'[master]\nllama_cpp_path = "/x"\n{inst}') == "llamacpp"
    assert engine_of(tmp_path, '[instance.a.server]\nmodel = "/m/w.GGUF"\n') == "llamacpp"
    assert engine_of(tmp_path, f'{inst}[instance.server]\nflash_attn = "on"\n') == "llamacpp"
    assert engine_of(tmp_path, inst, AUTO_INFER_VLLM_OVERRIDES='{"master": {"enable": true}}') == "vllm"
    assert engine_of(tmp_path, '[instance.a.server]\nmodel_path = "/m"\ndtype = "auto"\n') == "sglang"
    with pytest.raises(UserError) as err:
        engine_of(tmp_path, '[master]\npixi_project_dir = "/p"\n[instance.a.server]\nmodel = "/m/w.gguf"\n')
    assert "more than one engine's" in str(err.value) and "[master] engine" in str(err.value)
    with pytest.raises(UserError) as err:
        engine_of(tmp_path, f'[master]\nengine = "vllm"\nllama_cpp_path = "/x"\n{inst}')
    assert "[master] llama_cpp_path is llama.cpp's, but this config's engine is vLLM" in str(err.value)
    with pytest.raises(UserError) as err:
        engine_of(tmp_path, f'[master]\nengine = "tgi"\n{inst}')
    assert "unknown engine 'tgi'" in str(err.value)


def test_engine_specific_overrides_are_merged_after_the_generic_ones(tmp_path: Path) -> None:
    path = DATA / "vllm-qwen2-vl-7b.toml"
    s = settings_for(tmp_path, path, AUTO_INFER_SGLANG_OVERRIDES='{"instance": {"server": {"port": 9001}}}',
                     AUTO_INFER_VLLM_OVERRIDES='{"instance": {"qwen2_vl_7b": {"server": {"port": 9002}}}}')
    assert config.load(s).instances[0].port == 9002
    s = settings_for(tmp_path, path, AUTO_INFER_VLLM_OVERRIDES="{not json")
    with pytest.raises(UserError) as err:
        config.load(s)
    assert "AUTO_INFER_VLLM_OVERRIDES is not valid JSON" in str(err.value)


@pytest.mark.parametrize(("server", "says"), [
    ('port = 30000\nextra_args = ["--port", "31000"]', "port = 30000 and extra_args '--port' both set --port"),
    ('extra_args = ["--port=31000"]', "the probe reads port from the key"),
    ('tp_size = 2\nextra_args = "--tp-size 4"', "tp_size = 2 and extra_args '--tp-size' both set --tp-size"),
    ('extra_args = ["--served-model-name", "x"]', "extra_args '--served-model-name' both set"),
])
def test_a_flag_in_both_a_key_and_extra_args_is_an_error_naming_both(tmp_path: Path, server: str, says: str) -> None:
    with pytest.raises(UserError) as err:
        engine_of(tmp_path, f'[instance.a.server]\nmodel_path = "/m"\n{server}\n')
    message = str(err.value)
    assert says in message and "[instance.a.server] extra_args" in message and "remove" in message


def test_clashes_apply_to_every_engine(tmp_path: Path) -> None:
    for text in ('[master]\nengine = "vllm"\n[instance.a.server]\nmodel = "/m"\nextra_args = ["--model", "/n"]\n',
                 '[instance.a.server]\nmodel = "/m.gguf"\nextra_args = ["--alias", "x"]\n'):
        with pytest.raises(UserError) as err:
            engine_of(tmp_path, text)
        assert "extra_args" in str(err.value)
    fine = '[instance.a.server]\nmodel = "/m.gguf"\nextra_args = ["--no-webui", "-c", "4096"]\n'
    assert engine_of(tmp_path, fine) == "llamacpp"


def test_extra_args_come_first_as_in_infer_dev() -> None:
    assert base.server_flags({"port": 1, "extra_args": ["--a", "b"], "flag": True, "off": False}) == [
        "--a", "b", "--port", "1", "--flag"]


def test_llama_server_gets_its_folder_on_ld_library_path(tmp_path: Path) -> None:
    binary = tmp_path / "llama" / "bin" / "llama-server"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    s = settings_for(tmp_path, write(tmp_path, f'[master]\nllama_cpp_path = "{binary}"\n'
                                               '[instance.a.server]\nmodel = "/m.gguf"\n'))
    cfg = config.load(s)
    got = launch.build_launch(s, cfg, cfg.instances[0], {})
    assert got.argv == [str(binary), "--model", "/m.gguf"]
    assert got.added["LD_LIBRARY_PATH"].split(":")[0] == str(binary.parent)
    assert cfg.instances[0].port == llamacpp.DEFAULT_PORT == 8080


# ---- serve --dry-run through the real CLI ---------------------------------------------------------

def test_dry_run_json_shows_every_instances_argv_and_starts_nothing(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(ws), "AUTO_INFER_SGLANG_CONFIG": str(DATA / "glm-4.7-q2k.toml"),
                     "MY_NOTE": "sentinel-XYZ"})
    r = run_cli(["serve", "--dry-run", "--json"], env, timeout=60)
    assert r.returncode == 0, r.stderr            # a valid plan; what this host lacks is a warning
    plan = json.loads(r.stdout)
    golden = json.loads((DATA / "glm-4.7-q2k.expected.json").read_text())["instances"][0]
    (inst,) = plan["instances"]
    assert plan["engine"] == "llamacpp" and inst["engine"] == "llamacpp"
    assert inst["argv"] == ["llama-server", *golden["cmd"]]
    assert inst["env"] == {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
    assert inst["gpus"] == ["0", "1", "2", "3", "4", "5", "6", "7"] and inst["port"] == 8080
    assert inst["ready"] == ["/health", "/v1/models"] and inst["log"] == "/tmp/glm-4.7-q2k.log"
    assert any("llama-server not found" in p for p in inst["problems"])
    assert any("model does not exist" in p for p in inst["problems"])
    assert not ws.exists()                        # nothing written, no install needed
    assert "sentinel-XYZ" not in r.stdout + r.stderr
    strict = run_cli(["serve", "--dry-run", "--strict"], env, timeout=60)
    assert strict.returncode == 1 and "⚠ llama-server not found" in strict.stdout, strict.stdout


def test_dry_run_text_for_a_vllm_config_and_one_instance(tmp_path: Path) -> None:
    model = tmp_path / "qwen"
    model_folder(model)
    python = Path(sys.executable)
    cfg = write(tmp_path, (DATA / "vllm-qwen2-vl-7b-tp8.toml").read_text()
                .replace('"/llm-models/Qwen2-VL-7B-Instruct"', f'"{model}"')
                .replace("[master]\n", f'[master]\npython_path = "{python}"\n'))
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(cfg)})
    r = run_cli(["serve:qwen2_vl_7b_tp8", "--dry-run"], env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (
        f"argv: {python} -m vllm.entrypoints.openai.api_server --host 0.0.0.0 --port 8000 --model {model}" in r.stdout
    )
    assert "ready: /health then /v1/models at http://127.0.0.1:8000" in r.stdout
    assert "vLLM's own argument check skipped" in r.stderr and "cannot import vLLM's parser" in r.stderr
    bad = run_cli(["serve", "--dry-run", "--bogus"], env, timeout=60)
    assert bad.returncode == 2 and "option --bogus not recognized (`serve`)" in bad.stderr    # a usage error


# ---- vLLM's and llama-server's readiness, through the real serve ----------------------------------

def http_log(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("[http]")]


def test_vllm_config_served_by_a_responder_playing_vllm(serve: Serve, tmp_path: Path) -> None:  # noqa: F811
    port, model = free_port(), tmp_path / "weights"
    model_folder(model)
    serve.write(f"""[master]
enable = true
pixi_project_dir = "{tmp_path / 'no-pixi-project'}"
api_server_module = "auto_infer.demo.responder"
python_path = "{sys.executable}"

[instance.control]
stop_grace = 5
ready_timeout = 60

[instance.server]
host = "127.0.0.1"

[instance.vl.server]
port = {port}
model = "{model}"
served_model_name = "vl-model"
extra_args = ["--mode", "vllm", "--warmup", "1"]
""")
    r = serve.ok("serve")
    assert "engine: vLLM" in r.stderr and "master.python_path is set: vLLM runs with" in r.stderr
    inst = serve.report()["instances"][0]
    assert inst["argv"] == [sys.executable, "-m", "auto_infer.demo.responder", "--mode", "vllm", "--warmup", "1",
                            "--host", "127.0.0.1", "--port", str(port), "--model", str(model),
                            "--served-model-name", "vl-model"]
    assert inst["model_id"] == "vl-model" and inst["chat"]["ok"]
    lines = http_log(Path(inst["log"]))
    assert any('"GET /health HTTP/1.1" 503' in ln for ln in lines)       # it was asked while loading
    assert any('"GET /health HTTP/1.1" 200' in ln for ln in lines)
    assert not any("/health_generate" in ln for ln in lines)              # SGLang's route, not vLLM's
    serve.ok("stop")


def test_vllm_python_path_wins_over_infer_devs_pixi_project(serve: Serve, tmp_path: Path) -> None:  # noqa: F811
    """infer-dev's config names its pixi project; a user who adds [master] python_path means that
    Python, even where pixi and the project are here (pixi would run another environment)."""
    port, model, bindir, project = free_port(), tmp_path / "weights", tmp_path / "bin", tmp_path / "vllm-pixi-offline"
    model_folder(model)
    bindir.mkdir()
    project.mkdir()
    (project / "pixi.toml").write_text("[workspace]\n")
    pixi = bindir / "pixi"
    pixi.write_text("#!/bin/sh\necho 'pixi was run' >&2\nexit 3\n")
    pixi.chmod(0o755)
    serve.write(f"""[master]
pixi_project_dir = "{project}"
pixi_environment = "default"
api_server_module = "auto_infer.demo.responder"
python_path = "{sys.executable}"

[instance.control]
stop_grace = 5
ready_timeout = 60

[instance.vl.server]
host = "127.0.0.1"
port = {port}
model = "{model}"
served_model_name = "vl-model"
extra_args = ["--mode", "vllm"]
""")
    path = f"{bindir}:{serve.env['PATH']}"
    dry = serve.ok("serve", "--dry-run", PATH=path)
    assert f"argv: {sys.executable} -m auto_infer.demo.responder" in dry.stdout, dry.stdout
    r = serve.ok("serve", PATH=path)
    assert "master.python_path is set: vLLM runs with" in r.stderr, r.stderr
    inst = serve.report()["instances"][0]
    assert inst["argv"][:3] == [sys.executable, "-m", "auto_infer.demo.responder"] and inst["chat"]["ok"], inst
    serve.ok("stop")


def test_llama_cpp_config_served_by_a_responder_playing_llama_server(serve: Serve, tmp_path: Path) -> None:  # noqa: F811
    port, gguf, bindir = free_port(), tmp_path / "tiny.gguf", tmp_path / "llama" / "bin"
    gguf.write_bytes(b"GGUF")
    bindir.mkdir(parents=True)
    binary = bindir / "llama-server"
    binary.write_text(f"#!/bin/sh\nexec {sys.executable} -m auto_infer.demo.responder --mode llama-server "
                      f'--warmup 1 "$@"\n')
    binary.chmod(0o755)
    serve.write((DATA / "glm-4.7-q2k.toml").read_text()
                .replace("# llama_cpp_path = \"/soft/app/llama-cpp/bin/llama-server\"", f'llama_cpp_path = "{binary}"')
                .replace("/llm-models/GLM-4.7-GGUF/Q2_K/GLM-4.7-Q2_K-00001-of-00003.gguf", str(gguf))
                .replace("port = 8080", f"port = {port}").replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
                .replace('gpu_ids = "0,1,2,3,4,5,6,7"', 'gpu_ids = "none"')
                .replace('log_file = "/tmp/glm-4.7-q2k.log"', f'log_file = "{tmp_path / "llama.log"}"'))
    r = serve.ok("serve")
    assert "engine: llama.cpp" in r.stderr
    inst = serve.report()["instances"][0]
    assert inst["argv"][0] == str(binary) and inst["model_id"] == "glm4" and inst["chat"]["ok"]
    seen = serve.debug_env(port)
    assert seen["env"]["LD_LIBRARY_PATH"].split(":")[0] == str(bindir)
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == ""
    lines = http_log(tmp_path / "llama.log")
    assert any('"GET /health HTTP/1.1" 503' in ln for ln in lines)        # "Loading model"
    assert any('"GET /health HTTP/1.1" 200' in ln for ln in lines)
    assert not any("/health_generate" in ln for ln in lines)
    loading = requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
    assert loading.status_code == 200 and loading.json() == {"status": "ok"}
    serve.ok("stop")


# ---- SGLang's flag check never blocks on a noisy stderr (issue 10.8b) --------------------------------

FAKE_SGLANG = '''
import sys
sys.stderr.write("warning: noisy import\\n" * 12000)          # ~260 KiB, far above a pipe's 64 KiB
sys.stderr.flush()
__version__ = "0.0-fake"
'''
FAKE_ARGS = '''
import os, sys
class ServerArgs:
    @staticmethod
    def add_cli_args(parser):
        if os.environ.get("FAKE_SGLANG_DIE"):
            sys.stderr.write("the last words of a dying parser\\n")
            sys.stderr.flush()
            os._exit(7)
        parser.add_argument("--model-path")
        parser.add_argument("--tp-size", type=int)
        parser.add_argument("--lora-paths", nargs="+")
'''


def fake_sglang(tmp_path: Path) -> dict[str, str]:
    pkg = tmp_path / "fake" / "sglang"
    (pkg / "srt").mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_SGLANG)
    (pkg / "srt" / "__init__.py").write_text("")
    (pkg / "srt" / "server_args.py").write_text(FAKE_ARGS)
    return {**os.environ, "PYTHONPATH": str(tmp_path / "fake")}


def test_sglang_check_survives_a_flood_on_stderr(tmp_path: Path) -> None:
    env = fake_sglang(tmp_path)
    checked = sglang.check_flags(Path(sys.executable), env, {
        "typo": {"model_path": "/m", "tp_sise": 2}, "fine": {"model_path": "/m", "lora_paths": ["a", "b"]}},
        timeout=120)
    assert checked.skipped is None and checked.version == "0.0-fake"
    assert checked.rejected == {"typo": ("tp_sise", "SGLang does not know --tp-sise 2")}
    assert "--lora-paths" in checked.multi
    with pytest.raises(UserError) as err:
        sglang.check_flags(Path(sys.executable), {**env, "FAKE_SGLANG_DIE": "1"}, {"a": {"model_path": "/m"}},
                           timeout=120)
    assert "exit 7" in str(err.value) and "the last words of a dying parser" in str(err.value)


def test_shipped_vllm_and_llama_examples_load(tmp_path: Path) -> None:
    root = Path(__file__).parent.parent / "model-configs"
    engines = {p.name: config.load(settings_for(tmp_path, p)).master.engine for p in root.glob("*.toml")}
    assert engines["vllm-qwen2-vl-7b.toml"] == "vllm" and engines["llamacpp-glm-4.7-q2k.toml"] == "llamacpp"


# ---- vLLM's own parser is asked where it can be imported ----------------------------------------

FAKE_VLLM_ARGS = '''
import argparse
def make_arg_parser(parser):
    parser.add_argument("--model")
    parser.add_argument("--port", type=int)
    parser.add_argument("--served-model-name", nargs="+")
    parser.add_argument("--enforce-eager", action="store_true")
    return parser
'''


def test_vllm_preflight_asks_vllms_parser(tmp_path: Path) -> None:
    pkg = tmp_path / "fake" / "vllm"
    (pkg / "entrypoints" / "openai").mkdir(parents=True)
    (pkg / "__init__.py").write_text('__version__ = "0.0-fake"\n')
    (pkg / "entrypoints" / "__init__.py").write_text("")
    (pkg / "entrypoints" / "openai" / "__init__.py").write_text("")
    (pkg / "entrypoints" / "openai" / "cli_args.py").write_text(FAKE_VLLM_ARGS)
    (pkg / "utils.py").write_text("import argparse\nclass FlexibleArgumentParser(argparse.ArgumentParser):\n    pass\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "fake")}
    s = settings_for(tmp_path, write(tmp_path, f'[master]\nengine = "vllm"\npython_path = "{sys.executable}"\n'
                                               '[instance.control]\ngpu_ids = "none"\n'
                                               '[instance.a.server]\nmodel = "/m"\nmax_modle_len = 8\n'
                                               '[instance.b.server]\nmodel = "/m"\nport = 8001\n'
                                               'served_model_name = ["b1", "b2"]\nenforce_eager = true\n'))
    cfg = config.load(s)
    checked = vllm.preflight(s, cfg.master, {i.name: i.server for i in cfg.instances}, env)
    assert checked.version == "0.0-fake" and "--served-model-name" in checked.multi
    assert checked.rejected == {"a": ("max_modle_len", "vLLM does not know --max-modle-len 8")}
    argv = launch.build_launch(s, cfg, cfg.get("b"), {}, checked.multi).argv
    assert argv[3:] == ["--model", "/m", "--port", "8001", "--served-model-name", "b1", "b2", "--enforce-eager"]
    assert cfg.get("b").served_name == "b1"


def test_vllm_instances_sharing_gpus_need_gpu_memory_utilization(tmp_path: Path) -> None:
    two = ('[master]\nengine = "vllm"\n[instance.control]\ngpu_ids = "0"\n'
           '[instance.a.server]\nmodel = "/m"\nport = 8001\ngpu_memory_utilization = 0.6\n'
           '[instance.b.server]\nmodel = "/m"\nport = 8002\n')
    with pytest.raises(UserError) as err:
        engine_of(tmp_path, two)
    assert "instances a and b share GPUs, and b sets no gpu_memory_utilization" in str(err.value)
    with pytest.raises(UserError) as err:
        engine_of(tmp_path, two + "gpu_memory_utilization = 0.5\n")
    assert "their gpu_memory_utilization sum to 1.10 > 1.0" in str(err.value)
    assert engine_of(tmp_path, two + "gpu_memory_utilization = 0.4\n") == "vllm"
