"""infer-dev's own spellings for its vLLM and llama.cpp images (AUTO_INFER_VLLM_* /
AUTO_INFER_LLAMA_CPP_* ON_BOOT and CONFIG), and yes/no variables that are neither: real CLI runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import clean_env, run_cli

CONFIGS = Path(__file__).parents[1] / "model-configs"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), **extra})


@pytest.mark.parametrize("gate", ["AUTO_INFER_SGLANG_ON_BOOT", "AUTO_INFER_VLLM_ON_BOOT",
                                  "AUTO_INFER_LLAMA_CPP_ON_BOOT", "AUTO_INFER_SGLANG_INSTALL_ON_BOOT"])
def test_a_gate_that_is_neither_yes_nor_no_stops_boot_and_names_itself(tmp_path: Path, gate: str) -> None:
    r = run_cli(["boot"], _env(tmp_path, **{gate: "enable"}))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{gate}='enable' is neither yes nor no" in r.stderr and "nothing to do" not in r.stderr


def test_a_gate_turned_off_in_words_is_off(tmp_path: Path) -> None:
    r = run_cli(["boot"], _env(tmp_path, AUTO_INFER_SGLANG_ON_BOOT="off", AUTO_INFER_VLLM_ON_BOOT="no"))
    assert r.returncode == 0 and "nothing to do" in r.stderr


def test_infer_devs_llama_cpp_gate_and_config_start_boots_serve_chain(tmp_path: Path) -> None:
    """infer-dev's launch line (AUTO_INFER_LLAMA_CPP_ON_BOOT=1 + AUTO_INFER_LLAMA_CPP_CONFIG) is a
    serve gate: boot goes for install → check → serve (here it stops at the missing template, saying
    so), where it used to say "no gate set" and exit 0."""
    r = run_cli(["boot"], _env(tmp_path, AUTO_INFER_LLAMA_CPP_ON_BOOT="1",
                               AUTO_INFER_LLAMA_CPP_CONFIG=str(CONFIGS / "llamacpp-glm-4.7-q2k.toml")))
    assert "no gate set" not in r.stderr
    assert r.returncode == 1 and "AUTO_INFER_SGLANG_TEMPLATE_DIR is not set" in r.stderr


def test_infer_devs_config_variables_name_the_model_config(tmp_path: Path) -> None:
    for var, config, engine in (("AUTO_INFER_LLAMA_CPP_CONFIG", "llamacpp-glm-4.7-q2k.toml", "llamacpp"),
                                ("AUTO_INFER_VLLM_CONFIG", "vllm-qwen2-vl-7b.toml", "vllm")):
        r = run_cli(["serve", "--dry-run", "--json"], _env(tmp_path, **{var: str(CONFIGS / config)}))
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["engine"] == engine
    missing = run_cli(["serve", "--dry-run"], _env(tmp_path, AUTO_INFER_LLAMA_CPP_CONFIG=str(tmp_path / "no.toml")))
    assert missing.returncode == 1 and "AUTO_INFER_LLAMA_CPP_CONFIG names it" in missing.stderr


def test_two_different_model_configs_are_refused_naming_both(tmp_path: Path) -> None:
    r = run_cli(["env"], _env(tmp_path, AUTO_INFER_SGLANG_CONFIG=str(CONFIGS / "example.toml"),
                              AUTO_INFER_VLLM_CONFIG=str(CONFIGS / "vllm-qwen2-vl-7b.toml")))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "two model configs are named" in r.stderr and "AUTO_INFER_VLLM_CONFIG" in r.stderr
    same = run_cli(["env"], _env(tmp_path, AUTO_INFER_SGLANG_CONFIG=str(CONFIGS / "example.toml"),
                                 AUTO_INFER_VLLM_CONFIG=str(CONFIGS / "example.toml")))
    assert same.returncode == 0, same.stderr


def test_the_install_jobs_check_requires_what_the_engine_needs(tmp_path: Path) -> None:
    """The init Job runs `check` without the model config: a vLLM config's Job must not require sglang."""
    for config, modules in (("vllm-qwen2-vl-7b.toml", "torch,vllm"), ("sglang-glm-4.7-tp8.toml", "torch,sglang")):
        out = tmp_path / config
        r = run_cli(["k8s", "--out", str(out)], _env(tmp_path, AUTO_INFER_SGLANG_CONFIG=str(CONFIGS / config)))
        assert r.returncode == 0, r.stderr
        job = (out / "20-job-install.yaml").read_text()
        assert f'{{name: "AUTO_INFER_CHECK_MODULES", value: "{modules}"}}' in job


def test_llama_cpp_on_off_options_get_on_or_off_not_a_bare_flag(tmp_path: Path) -> None:
    """`flash_attn = true` (infer-dev's examples) is `--flash-attn on`: llama-server's -fa takes
    on|off|auto, and a bare --flash-attn made it read the next flag as the value and refuse to start."""
    config = tmp_path / "llama.toml"
    config.write_text('[master]\nllama_cpp_path = "/bin/true"\n\n[instance.a.server]\nmodel = "/m.gguf"\n'
                      'port = 18080\nflash_attn = true\nmetrics = true\n\n'
                      '[instance.b.server]\nmodel = "/m.gguf"\nport = 18081\nfa = false\n')
    r = run_cli(["serve", "--dry-run", "--json"], _env(tmp_path, AUTO_INFER_SGLANG_CONFIG=str(config)))
    assert r.returncode == 0, r.stderr
    argv = {i["name"]: i["argv"] for i in json.loads(r.stdout)["instances"]}
    a, b = argv["a"], argv["b"]
    assert a[a.index("--flash-attn") + 1] == "on" and "--metrics" in a        # a real switch stays bare
    assert b[b.index("--flash-attn") + 1] == "off", b           # `fa`: its short spelling
