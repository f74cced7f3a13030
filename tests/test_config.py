"""The model config: infer-dev's runner format read as it is, merged, checked, turned into flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auto_infer.core import settings
from auto_infer.core.errors import UserError
from auto_infer.serve import config, model, validate
from auto_infer.serve.engines import base as argv_rules
from tests.helpers.configs import BAD, EXAMPLES, REALWORLD, Bad, render

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "auto_infer" / "data" / "model-config.schema.json"


def load_text(tmp_path: Path, text: str, overrides: str = "") -> model.ModelConfig:
    path = tmp_path / "models.toml"
    path.write_text(text)
    env = {"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(path),
           "AUTO_INFER_SGLANG_OVERRIDES": overrides}
    return config.load(settings.load(env))


# ---------------------------------------------------------------- invalid cases (shared with the CLI tests)
IN_PROCESS = [c for c in BAD if c.id != "port-in-use"]     # a busy port is serve's check: test_serve_invalid.py


@pytest.mark.parametrize("case", IN_PROCESS, ids=[c.id for c in IN_PROCESS])
def test_invalid_config_names_file_instance_and_key(case: Bad, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(UserError) as err:
        cfg = load_text(tmp_path, render(case, model, 31999), case.overrides)
        assert case.host_check, "load() accepted an invalid config"
        validate.check_paths(cfg, cfg.enabled())
    message = str(err.value)
    assert all(s in message for s in case.says), message
    if not case.id.startswith("overrides-") or case.id == "overrides-make-it-bad":
        assert str(tmp_path / "models.toml") in message           # the file, in every message
    assert "Traceback" not in message and err.value.fix


# ---------------------------------------------------------------- valid configs
def test_example_and_shipped_configs_load(tmp_path: Path) -> None:
    assert REPO / "model-configs" / "example.toml" in EXAMPLES
    env = settings.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path)})
    for path in EXAMPLES:
        cfg = config.load(env, path)
        assert cfg.enabled(), path
        for inst in cfg.instances:
            if inst.engine == "sglang" and inst.model is None:     # a model table: serve sets model_path
                flags = argv_rules.server_flags(inst.server)
                assert flags[flags.index("--model-path") + 1] == inst.server["model_path"]
    ex = config.load(env, REPO / "model-configs" / "example.toml")
    assert [i.name for i in ex.enabled()] == ["qwen2_vl_7b", "qwen3_small"]
    qwen = ex.get("qwen2_vl_7b")
    assert qwen.control.gpu_ids == ("0", "1") and qwen.control.env["HF_HUB_OFFLINE"] == "1"
    assert qwen.port == 30000 and ex.get("qwen3_small").port == 30001
    assert ex.get("llamacpp_cpu").engine == "command" and ex.get("llamacpp_cpu").control.gpu_ids == ()


def test_realworld_file_loads_unchanged(tmp_path: Path) -> None:
    if not REALWORLD.exists():
        pytest.skip("shared/realworld not present")
    cfg = config.load(settings.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path)}), REALWORLD)
    assert cfg.master.project_dir == "/hard/volume/workspace/sglang-pixi-offline"
    [glm] = cfg.enabled()
    assert (glm.name, glm.host, glm.port, glm.served_name, glm.control.gpu_ids) == (
        "glm_4_7_tp8", "0.0.0.0", 30000, "glm-4.7", None)
    assert glm.control.log_dir == Path("/tmp")
    assert argv_rules.server_flags(glm.server) == [
        "--host", "0.0.0.0", "--port", "30000", "--trust-remote-code", "--tool-call-parser", "glm47",
        "--reasoning-parser", "glm45", "--mem-fraction-static", "0.9", "--disable-cuda-graph-padding",
        "--model-path", "/llm-models/GLM-4.7", "--served-model-name", "glm-4.7", "--tp-size", "8"]


def test_schema_accepts_every_shipped_config() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    files = [*EXAMPLES, *([REALWORLD] if REALWORLD.exists() else [])]
    for path in files:
        jsonschema.validate(config.read_toml(path), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"instance": {"control": {"readytimeout": 1}}}, schema)


def test_defaults_merge_lists_concatenate_env_merges(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, f"""
[instance.control]
gpu_ids = "none"
env = {{ A = "1", B = 2, C = true }}
[instance.server]
model_path = "{tmp_path}"
extra_args = ["--x"]
lora_paths = ["a=/a"]
port = 31000
[instance.one.control]
env = {{ B = "own" }}
[instance.one.server]
lora_paths = ["b=/b"]
extra_args = ["--y", "1"]
[instance.two.control]
enabled = false
[instance.two.server]
port = 31001
""")
    one, two = cfg.instances
    assert dict(one.control.env) == {"A": "1", "B": "own", "C": "1"} and one.control.gpu_ids == ()
    assert one.server["lora_paths"] == ["a=/a", "b=/b"] and one.server["extra_args"] == ["--x", "--y", "1"]
    assert not two.control.enabled and cfg.enabled() == (one,)
    assert one.control.ready_timeout == model.DEFAULT_READY_TIMEOUT and one.control.log_dir is None


def test_overrides_deep_merge_and_null_removes(tmp_path: Path) -> None:
    text = (f'[instance.server]\nport = 31000\nmem_fraction_static = 0.5\n[instance.a.control]\ngpu_ids = "0"\n'
            f'[instance.a.server]\nmodel_path = "{tmp_path}"\n')
    cfg = load_text(tmp_path, text, json.dumps({
        "instance": {"server": {"mem_fraction_static": None}, "a": {"server": {"port": 31005}},
                     "b": {"server": {"model_path": str(tmp_path), "port": 31006}, "control": {"gpu_ids": "1"}}}}))
    a, b = cfg.instances
    assert (a.port, b.port) == (31005, 31006) and "mem_fraction_static" not in a.server
    off = load_text(tmp_path, text, '{"master": {"enable": false}}')
    assert off.master.enable is False


def test_gpu_sharing_allowed_with_fractions_that_fit(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, f"""
[instance.control]
gpu_ids = "0"
[instance.a.server]
model_path = "{tmp_path}"
port = 31001
mem_fraction_static = 0.45
[instance.b.server]
model_path = "{tmp_path}"
port = 31002
mem_fraction_static = 0.45
[instance.c.control]
gpu_ids = "1,2"
[instance.c.server]
model_path = "{tmp_path}"
port = 31003
tp_size = 2
""")
    assert [i.control.gpu_ids for i in cfg.instances] == [("0",), ("0",), ("1", "2")]


def test_multinode_keys_together_are_fine(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, f"""
[instance.a.control]
gpu_ids = "0,1,2,3"
[instance.a.server]
model_path = "{tmp_path}"
tp_size = 8
nnodes = 2
node_rank = 1
dist_init_addr = "10.0.0.1:50000"
""")
    flags = argv_rules.server_flags(cfg.instances[0].server)
    assert flags[-6:] == ["--nnodes", "2", "--node-rank", "1", "--dist-init-addr", "10.0.0.1:50000"]


def test_server_keys_become_flags() -> None:
    server = {"model_path": "/m", "trust_remote_code": True, "disable_radix_cache": False,
              "lora_paths": ["a=/a", "b=/b"], "json_model_override_args": {"rope": {"factor": 2}},
              "mem_fraction_static": 0.85, "extra_args": "--enable-metrics --log-level 'debug'"}
    assert argv_rules.server_flags(server) == [      # extra_args first, as infer-dev's runners
        "--enable-metrics", "--log-level", "debug",
        "--model-path", "/m", "--trust-remote-code", "--lora-paths", "a=/a", "--lora-paths", "b=/b",
        "--json-model-override-args", '{"rope":{"factor":2}}', "--mem-fraction-static", "0.85"]
    # a flag SGLang's parser takes several values for gets them all after one flag
    multi = argv_rules.server_flags(server, frozenset({"--lora-paths"}))
    assert multi[6:9] == ["--lora-paths", "a=/a", "b=/b"]
    assert argv_rules.server_flags({"extra_args": ["--x", 1]}) == ["--x", "1"]


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    env = settings.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path),
                         "AUTO_INFER_SGLANG_CONFIG": str(tmp_path / "nope.toml")})
    with pytest.raises(UserError) as err:
        config.load(env)
    assert "the model config does not exist" in str(err.value) and "nope.toml" in str(err.value)
    assert "AUTO_INFER_SGLANG_CONFIG" in str(err.value)
