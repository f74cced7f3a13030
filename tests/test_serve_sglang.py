"""The flags we build, judged by SGLang's own parser (ServerArgs.add_cli_args), on the CPU.

Needs the validation venv built by `.ci/setup-sglang-venv.sh` (sglang 0.5.23 --no-deps, torch
2.14.1): AUTO_INFER_SGLANG_VENV=/opt/sglang-venv pytest -m sglang
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from auto_infer.core import settings
from auto_infer.serve import config
from auto_infer.serve.engines import base, sglang
from tests.helpers import model_folder, run_cli
from tests.helpers.configs import EXAMPLES, REALWORLD
from tests.helpers.serving import make_installed

VENV = os.environ.get("AUTO_INFER_SGLANG_VENV", "")     # read at import: the autouse fixture clears AUTO_INFER_*
PYTHON = Path(VENV) / "bin" / "python"

pytestmark = [pytest.mark.sglang,
              pytest.mark.skipif(not VENV, reason="set AUTO_INFER_SGLANG_VENV (built by .ci/setup-sglang-venv.sh)")]


def check(servers: dict[str, dict[str, Any]]) -> base.Checked:
    return sglang.check_flags(PYTHON, dict(os.environ), servers)


def test_every_shipped_and_realworld_config_parses_with_sglang(tmp_path: Path) -> None:
    s = settings.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path)})
    files = [*EXAMPLES, *([REALWORLD] if REALWORLD.exists() else [])]
    servers = {f"{path}:{inst.name}": {**inst.server, **({"model_path": "/snapshot"} if inst.model else {})}
               for path in files for inst in config.load(s, path).instances if inst.engine == "sglang"}
    # (serve sets model_path from a checked [instance.NAME.model] before SGLang's parser sees the flags)
    assert len(servers) >= 6
    checked = check(servers)
    assert checked.skipped is None and checked.version == "0.5.23"
    assert checked.rejected == {}, checked.rejected
    assert "--lora-paths" in checked.multi and "--model-path" not in checked.multi


def test_sglang_rejects_unknown_keys_and_bad_values_by_key() -> None:
    checked = check({"typo": {"model_path": "/m", "tp_sise": 2},
                     "value": {"model_path": "/m", "tp_size": "eight"},
                     "choice": {"model_path": "/m", "tool_call_parser": "no-such-parser"},
                     "extra": {"model_path": "/m", "extra_args": ["--no-such-flag"]},
                     "fine": {"model_path": "/m", "lora_paths": ["a=/a", "b=/b"], "enable_lora": True}})
    assert set(checked.rejected) == {"typo", "value", "choice", "extra"}
    assert checked.rejected["typo"] == ("tp_sise", "SGLang does not know --tp-sise 2")
    assert checked.rejected["value"][0] == "tp_size" and "invalid int value: 'eight'" in checked.rejected["value"][1]
    assert checked.rejected["choice"][0] == "tool_call_parser"
    assert checked.rejected["extra"][0] == "no_such_flag"


def test_a_list_for_a_multi_value_flag_reaches_sglang_whole() -> None:
    multi = check({}).multi
    flags = base.server_flags({"model_path": "/m", "lora_paths": ["a=/a", "b=/b"]}, multi)
    assert flags == ["--model-path", "/m", "--lora-paths", "a=/a", "b=/b"]
    code = ("import argparse, sys; from sglang.srt.server_args import ServerArgs; p = argparse.ArgumentParser(); "
            "ServerArgs.add_cli_args(p); print(p.parse_args(sys.argv[1:]).lora_paths)")
    out = subprocess.run([str(PYTHON), "-c", code, *flags], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "['a=/a', 'b=/b']", out.stderr[-2000:]


def test_serve_refuses_a_flag_sglang_does_not_know(tmp_path_factory: pytest.TempPathFactory, built_channel: Any,
                                                    tmp_path: Path) -> None:
    ws = make_installed(tmp_path_factory, built_channel)
    model = tmp_path / "model"
    model_folder(model)
    path = tmp_path / "models.toml"
    path.write_text(f'[master]\npython_path = "{PYTHON}"\n[instance.q.server]\nmodel_path = "{model}"\n'
                    'port = 31234\nmem_fraction_statc = 0.8\n')
    r = run_cli(["serve"], {**ws.env, "AUTO_INFER_SGLANG_CONFIG": str(path)}, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "instance q: SGLang 0.5.23 rejects server key mem_fraction_statc" in r.stderr
    assert f"{path}: [instance.q.server] mem_fraction_statc" in r.stderr and "Traceback" not in r.stderr
    assert not (ws.root / ".auto-infer" / "serve").exists()
    assert json.loads(run_cli(["status", "--json"], ws.env).stdout) == []


def test_false_for_a_negatable_flag_reaches_sglang_as_its_no_form(tmp_path: Path) -> None:
    """`key = false` for a flag SGLang can negate (BooleanOptionalAction, default on or "auto") is its
    --no- form: left out, the server would keep the default the config turned off. Other false flags
    stay out, as infer-dev's runners leave them."""
    path = tmp_path / "models.toml"
    path.write_text(f'[master]\npython_path = "{PYTHON}"\n[instance.q.server]\nmodel_path = "/m"\nport = 31235\n'
                    'dllm_fdfo = false\nenable_tf32_matmul = false\nenable_lora = false\n')
    r = run_cli(["serve", "--dry-run", "--json"],
                {"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(path),
                 "PATH": os.environ["PATH"]})
    assert r.returncode == 0, r.stderr
    flags = json.loads(r.stdout)["instances"][0]["argv"][3:]
    assert flags == ["--model-path", "/m", "--port", "31235", "--no-dllm-fdfo", "--no-enable-tf32-matmul"]
    code = ("import argparse, sys; from sglang.srt.server_args import ServerArgs; p = argparse.ArgumentParser(); "
            "ServerArgs.add_cli_args(p); a = p.parse_args(sys.argv[1:]); print(a.dllm_fdfo, a.enable_tf32_matmul)")
    out = subprocess.run([str(PYTHON), "-c", code, *flags], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False False", out.stderr[-2000:]
