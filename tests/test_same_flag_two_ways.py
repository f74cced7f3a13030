"""One flag, two spellings: keys are spelled one way for every engine (``tp-size``, ``--tp-size``,
``"--port"`` → ``tp_size``, ``port``), and a flag given twice -- two keys, a key and an engine's
alias of it, a key and extra_args -- is refused naming both places; never two flags in the argv."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from auto_infer.core import settings
from auto_infer.core.errors import UserError
from auto_infer.serve import config, launch
from auto_infer.serve.model import ModelConfig

CMD = f'command = ["{sys.executable}", "-m", "srv", "--port", "{{port}}", "--tp", "{{tp-size}}"]'
HEADS = {"sglang": '[master]\nengine = "sglang"\npython_path = "/usr/bin/python3"\n',
         "vllm": '[master]\nengine = "vllm"\npython_path = "/usr/bin/python3"\n',
         "llamacpp": '[master]\nengine = "llamacpp"\nllama_cpp_path = "/bin/true"\n'}
MODEL = {"sglang": 'model_path = "/m"', "vllm": 'model = "/m"', "llamacpp": 'model = "/m.gguf"'}


def load(tmp_path: Path, text: str) -> tuple[settings.Settings, ModelConfig]:
    path = tmp_path / "models.toml"
    path.write_text(text)
    s = settings.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(path)})
    return s, config.load(s)


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(UserError) as err:
        load(tmp_path, text)
    return str(err.value)


def argv(tmp_path: Path, text: str) -> list[str]:
    s, cfg = load(tmp_path, text)
    return launch.build_launch(s, cfg, cfg.instances[0], {}).argv


@pytest.mark.parametrize(("engine", "keys", "both"), [
    ("sglang", '"tp-size" = 4\ntp_size = 8', ("'tp-size'", "'tp_size'")),
    ("sglang", '"--tp-size" = 4\ntensor_parallel_size = 8', ("'--tp-size'", "'tensor_parallel_size'")),
    ("sglang", 'model = "/n"', ("'model_path'", "'model'")),
    ("vllm", '"-tp" = 2\ntensor_parallel_size = 4', ("'-tp'", "'tensor_parallel_size'")),
    ("vllm", '"max-model-len" = 1024\n"--max_model_len" = 2048', ("'max-model-len'", "'--max_model_len'")),
    ("llamacpp", 'ngl = 99\nn_gpu_layers = 10', ("'ngl'", "'n_gpu_layers'")),
    ("llamacpp", '"-c" = 4096\n"ctx-size" = 8192', ("'-c'", "'ctx-size'")),
    ("llamacpp", '"--port" = 1\nport = 2', ("'--port'", "'port'")),
])
def test_two_keys_for_one_flag_are_refused_naming_both(engine: str, keys: str, both: tuple[str, str],
                                                        tmp_path: Path) -> None:
    message = refused(tmp_path, f"{HEADS[engine]}[instance.a.server]\n{MODEL[engine]}\n{keys}\n")
    assert "one flag twice" in message and all(k in message for k in both) and "[instance.a.server]" in message


def test_two_keys_for_one_flag_are_refused_for_a_command_too(tmp_path: Path) -> None:
    message = refused(
        tmp_path, f'[instance.a.control]\n{CMD}\n[instance.a.server]\n"--port" = 1\nport = 2\n"tp-size" = 1\n'
    )
    assert "'--port'" in message and "'port'" in message


@pytest.mark.parametrize("engine", ["sglang", "vllm", "llamacpp"])
def test_a_dashed_key_renders_one_flag_and_the_probe_reads_it(engine: str, tmp_path: Path) -> None:
    got = argv(
        tmp_path, f'{HEADS[engine]}[instance.a.server]\n{MODEL[engine]}\n"--port" = 1234\n"--max-tokens-x" = 5\n'
    )
    assert "----port" not in got and got.count("--port") == 1 and got[got.index("--port") + 1] == "1234"
    assert "--max-tokens-x" in got
    _s, cfg = load(tmp_path, f'{HEADS[engine]}[instance.a.server]\n{MODEL[engine]}\n"--port" = 1234\n')
    assert cfg.instances[0].port == 1234


def test_a_command_fills_a_placeholder_spelled_either_way(tmp_path: Path) -> None:
    got = argv(tmp_path, f'[instance.a.control]\n{CMD}\n[instance.a.server]\n"--port" = 1234\n"tp-size" = 2\n')
    assert got[-4:] == ["--port", "1234", "--tp", "2"]


@pytest.mark.parametrize(("engine", "default", "own", "flag", "value"), [
    ("sglang", '"tp-size" = 4', "tp_size = 8", "--tp-size", "8"),
    ("sglang", "tensor_parallel_size = 4", "tp_size = 2", "--tp-size", "2"),
    ("vllm", "tensor_parallel_size = 4", '"-tp" = 2', "--tensor-parallel-size", "2"),
    ("llamacpp", "n_gpu_layers = 10", "ngl = 99", "--n-gpu-layers", "99"),
    ("llamacpp", '"-ngl" = 10', '"--gpu-layers" = 5', "--n-gpu-layers", "5"),
])
def test_an_instance_key_replaces_the_default_whatever_either_spelling(engine: str, default: str, own: str, flag: str,
                                                                        value: str, tmp_path: Path) -> None:
    got = argv(tmp_path, f"{HEADS[engine]}[instance.server]\n{default}\n[instance.a.server]\n{MODEL[engine]}\n{own}\n")
    assert got[got.index(flag) + 1] == value
    shown = [t for t in got if t.startswith("-") and t.lstrip("-").replace("-", "_") in
             ("tp_size", "tensor_parallel_size", "tp", "n_gpu_layers", "ngl")]
    assert shown == [flag], got                              # one flag, not the default's beside it


@pytest.mark.parametrize(("engine", "server", "says"), [
    ("sglang", '"tp-size" = 2\nextra_args = "--tensor-parallel-size 4"', "'--tensor-parallel-size'"),
    ("sglang", '"--port" = 2000\nextra_args = ["--port=3000"]', "'--port=3000'"),
    ("vllm", 'tensor_parallel_size = 2\nextra_args = ["-tp", "4"]', "'-tp'"),
    ("llamacpp", 'n_gpu_layers = 10\nextra_args = ["-ngl", "99"]', "'-ngl'"),
    ("llamacpp", 'extra_args = ["-a", "other-name"]', "'-a'"),        # the served name the probe reads
])
def test_a_key_and_extra_args_for_one_flag_are_refused(engine: str, server: str, says: str, tmp_path: Path) -> None:
    message = refused(tmp_path, f"{HEADS[engine]}[instance.a.server]\n{MODEL[engine]}\n{server}\n")
    assert says in message and "extra_args" in message and "remove" in message


def test_api_key_env_and_an_api_key_in_extra_args_are_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, f'{HEADS["sglang"]}[instance.a.control]\napi_key_env = "K"\n'
                                f'[instance.a.server]\nmodel_path = "/m"\nextra_args = ["--api-key", "x"]\n')
    assert "api_key_env" in message and "'--api-key'" in message


@pytest.mark.parametrize("key", ['"tp_size=4"', '""', '"--"', '"a b"', '"-"'])
def test_a_key_that_is_no_flag_name_is_refused(key: str, tmp_path: Path) -> None:
    message = refused(tmp_path, f'{HEADS["sglang"]}[instance.a.server]\nmodel_path = "/m"\n{key} = 1\n')
    assert "is not a flag name" in message


def test_negative_numbers_in_extra_args_are_values_not_flags(tmp_path: Path) -> None:
    got = argv(tmp_path, f'{HEADS["llamacpp"]}[instance.a.server]\nmodel = "/m.gguf"\nseed = 1\n'
                         'extra_args = ["--temp", "-1", "--n-predict", "-1.5"]\n')
    assert got[1:5] == ["--temp", "-1", "--n-predict", "-1.5"]
