"""The README's first command: `auto-infer demo`, twice in one workspace (the incremental rerun)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import clean_env, run_cli


def test_demo_runs_the_pipeline_then_reruns_incrementally(tmp_path: Path) -> None:
    ws = tmp_path / "demo"
    env = clean_env({"HOME": str(tmp_path)})
    first = run_cli(["demo", "--workspace", str(ws)], env, timeout=600)
    assert first.returncode == 0, first.stderr
    for step in ("warm (online, local mirror)", "install (offline, from cache)", "check (imports)",
                 "serve (start, ready, chat, report)", "stop"):
        assert f"✓ {step}" in first.stderr
    assert "demo_a: Hello from demo-a" in first.stderr and "demo_b: Hello from demo-b" in first.stderr
    report = json.loads((ws / "reports" / "serve-latest.json").read_text())
    assert sorted(i["name"] for i in report["instances"]) == ["demo_a", "demo_b"]
    assert all(i["chat"]["answer"] for i in report["instances"])
    assert f"clean up: rm -rf {ws}" in first.stderr
    second = run_cli(["demo", "--workspace", str(ws)], env, timeout=600)
    assert second.returncode == 0, second.stderr
    lines = {ln.split("✓ ")[1].split("  ")[0]: ln for ln in second.stderr.splitlines() if "✓ " in ln}
    assert "skipped: up to date" in lines["warm (online, local mirror)"]
    assert "skipped: up to date" in lines["install (offline, from cache)"]
    status = run_cli(["status", "--json"], dict(env, AUTO_INFER_WORKSPACE_DIR=str(ws)))
    assert status.returncode == 0
    rows = json.loads(status.stdout)
    assert sorted(r["name"] for r in rows) == ["demo_a", "demo_b"]
    assert {r["state"] for r in rows} == {"stopped"}        # demo stops what it started


def test_demo_llama_cpp_says_how_to_install_when_missing(tmp_path: Path) -> None:
    """AUTO_INFER_LLAMACPP_VENV names the only place looked at: a folder without the engine."""
    env = clean_env({"HOME": str(tmp_path), "AUTO_INFER_LLAMACPP_VENV": str(tmp_path / "no-venv")})
    r = run_cli(["demo", "--workspace", str(tmp_path / "ws"), "--engine", "llama-cpp"], env)
    assert r.returncode == 1, r.stderr
    assert "llama.cpp engine is not installed" in r.stderr and "setup-llamacpp-venv.sh" in r.stderr
