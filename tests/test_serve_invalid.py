"""Every invalid model config, through the real `auto-infer serve`: exit 1, one message naming the
file, the instance and the key, no traceback, and nothing launched (no record, no listener)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from auto_infer.core.net import free_port
from auto_infer.core.settings import load
from auto_infer.serve import registry
from tests.helpers import Workspace, model_folder, run_cli
from tests.helpers.configs import BAD, Bad, render
from tests.helpers.serving import listening


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_invalid_config_fails_before_anything_starts(case: Bad, installed: Workspace, tmp_path: Path,
                                                     busy_port: int) -> None:
    model, port = tmp_path / "model", free_port()
    model_folder(model)
    path = tmp_path / "models.toml"
    path.write_text(render(case, model, port, busy_port))
    env = {**installed.env, "AUTO_INFER_SGLANG_CONFIG": str(path), "AUTO_INFER_SGLANG_OVERRIDES": case.overrides}
    r = run_cli(["serve"], env, timeout=120)
    assert r.returncode == 1, f"{r.returncode}\n{r.stderr}"
    assert all(s in r.stderr for s in case.says), r.stderr
    if case.id not in ("overrides-bad-json", "overrides-not-object"):
        assert str(path) in r.stderr
    assert "Traceback" not in r.stderr and "fix:" in r.stderr
    assert registry.all_records(load(env)) == {} and not listening(port)
    assert not (installed.root / "logs" / "sglang").exists()
    assert ("line 3" in r.stderr) == (case.id == "toml-syntax")


def test_unknown_instance_names_for_logs_and_serve(installed: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[instance.only.control]\ncommand = ["x"]\n')
    env = {**installed.env, "AUTO_INFER_SGLANG_CONFIG": str(path)}
    r = run_cli(["logs", "ghost"], env)
    assert r.returncode == 1 and "no instance named 'ghost' was ever started here" in r.stderr
    r = run_cli(["serve:ghost"], env)
    assert r.returncode != 0 and "ghost" in r.stderr


@pytest.mark.parametrize("engine_keys", ['model_path = "{model}"',
                                         'model = "{model}"\ndtype = "auto"\n[master]\nengine = "vllm"'])
def test_a_model_folder_without_weights_is_refused_before_anything_starts(
        engine_keys: str, installed: Workspace, tmp_path: Path) -> None:
    """infer-dev's configs name a folder (model_path / vLLM's model): checked like a [model] path."""
    empty, port = tmp_path / "empty-model", free_port()
    empty.mkdir()
    (empty / "README.md").write_text("weights not copied yet\n")
    path = tmp_path / "models.toml"
    path.write_text(f"[instance.a.server]\nport = {port}\n" + engine_keys.format(model=empty) + "\n")
    env = {**installed.env, "AUTO_INFER_SGLANG_CONFIG": str(path)}
    r = run_cli(["serve"], env, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "is not a model folder: no weight files" in r.stderr and str(empty) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "fix:" in r.stderr
    assert registry.all_records(load(env)) == {} and not listening(port)
