"""`serve --dry-run` judges the host as `serve` would: a busy port and a config that launches
nothing are flagged (errors under --strict), not passed over."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.helpers import clean_env, run_cli


def _env(tmp_path: Path, config: Path) -> dict[str, str]:
    return clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(config)})


def test_a_port_something_listens_on_is_flagged(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "busy.toml"
        config.write_text(f'[master]\nllama_cpp_path = "/bin/true"\n\n[instance.a.server]\nmodel = "/m.gguf"\n'
                          f'host = "127.0.0.1"\nport = {port}\n')
        plain = run_cli(["serve", "--dry-run"], _env(tmp_path, config))
        strict = run_cli(["serve", "--dry-run", "--strict"], _env(tmp_path, config))
        as_json = run_cli(["serve", "--dry-run", "--json"], _env(tmp_path, config))
    said = f"⚠ instance a: port {port} is already in use (serve would refuse: stop what listens there"
    assert plain.returncode == 0 and said in plain.stdout, plain.stdout      # serve's own words (check_ports)
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    [inst] = json.loads(as_json.stdout)["instances"]
    assert any(f"port {port} is already in use" in p for p in inst["problems"])


def test_a_config_with_no_enabled_instance_is_flagged(tmp_path: Path) -> None:
    config = tmp_path / "empty.toml"
    config.write_text("[master]\nenable = true\n")
    plain = run_cli(["serve", "--dry-run"], _env(tmp_path, config))
    assert plain.returncode == 0 and "no enabled instance" in plain.stderr
    strict = run_cli(["serve", "--dry-run", "--strict"], _env(tmp_path, config))
    assert strict.returncode == 1 and "no enabled instance" in strict.stderr
    assert "[instance.NAME.control] enabled = true" in strict.stderr and "this host lacks" not in strict.stderr
