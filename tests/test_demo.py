"""The README's first command: `auto-infer demo`, twice in one workspace (the incremental rerun).

The demo is two machines: A online (warm, bundle export), B sharing nothing with A (bundle import,
install, check, serve, all offline). What it claims in its summary is checked against B's files."""

from __future__ import annotations

import json
from pathlib import Path

from auto_infer.core.netns import can_unshare
from tests.helpers import clean_env, run_cli

STEPS = ("A: warm (online, local mirror)", "A: bundle export (one file)", "B: bundle import (offline)",
         "B: install (offline, from the bundle)", "B: check (imports, offline)",
         "B: serve (ready, chat, report)", "B: stop")


def _lines(stderr: str) -> dict[str, str]:
    return {ln.split("✓ ")[1].split("  ")[0]: ln for ln in stderr.splitlines() if "  ✓ " in ln}


def test_demo_carries_the_environment_to_a_machine_that_shares_nothing(tmp_path: Path) -> None:
    ws = tmp_path / "demo"
    env = clean_env({"HOME": str(tmp_path)})
    first = run_cli(["demo", "--workspace", str(ws)], env, timeout=900)
    assert first.returncode == 0, first.stderr
    assert set(_lines(first.stderr)) == set(STEPS), first.stderr
    # B is its own machine: its cache holds what the bundle carried, and it installed from it
    b_cache = ws / "machine-b" / ".cache" / "sglang-infer"
    assert json.loads((b_cache / "cache-manifest.json").read_text())["artifacts"]
    record = json.loads((ws / "machine-b" / "sglang-infer" / ".pixi" / "envs" / "default" / "conda-meta"
                         / "auto-infer-install").read_text())
    assert len(record["conda"]) == 3 and len(record["pypi"]) == 1
    assert "B installed 3 conda + 1 PyPI packages" in first.stdout and "bytes downloaded by B: 0" in first.stdout
    assert ("unshare -n" in first.stdout) == can_unshare()
    report = json.loads((ws / "machine-b" / "reports" / "serve-latest.json").read_text())
    assert sorted(i["name"] for i in report["instances"]) == ["demo_a", "demo_b"]
    assert all(i["chat"]["answer"] for i in report["instances"])
    assert "demo_a answered a real chat: Hello from demo-a" in first.stdout
    assert f"clean up: rm -rf {ws}" in first.stdout and "demo finished" not in first.stderr

    second = run_cli(["demo", "--workspace", str(ws)], env, timeout=900)
    assert second.returncode == 0, second.stderr
    lines = _lines(second.stderr)
    assert "skipped: up to date" in lines["A: warm (online, local mirror)"]
    assert "already done" in lines["B: bundle import (offline)"] or "up to date" in lines["B: bundle import (offline)"]
    assert "skipped: up to date" in lines["B: install (offline, from the bundle)"]
    # the summary says what THIS run did: nothing was installed again
    assert "B installed" not in second.stdout and "this run installed nothing" in second.stdout, second.stdout
    assert "skipped (already done): A: warm, B: bundle import, B: install" in second.stdout, second.stdout
    status = run_cli(["status", "--json"], dict(env, AUTO_INFER_WORKSPACE_DIR=str(ws / "machine-b")))
    assert status.returncode == 0
    assert {r["state"] for r in json.loads(status.stdout)} == {"stopped"}      # demo stops what it started


def test_demo_llama_cpp_says_how_to_install_when_missing(tmp_path: Path) -> None:
    """AUTO_INFER_LLAMACPP_VENV names the only place looked at: a folder without the engine."""
    env = clean_env({"HOME": str(tmp_path), "AUTO_INFER_LLAMACPP_VENV": str(tmp_path / "no-venv")})
    r = run_cli(["demo", "--workspace", str(tmp_path / "ws"), "--engine", "llama-cpp"], env)
    assert r.returncode == 1, r.stderr
    assert "llama.cpp engine is not installed" in r.stderr and "setup-llamacpp-venv.sh" in r.stderr


def test_demo_refuses_a_workspace_it_did_not_make(tmp_path: Path) -> None:
    """`demo --workspace /offline-data` (a real workspace) filled it with the demo's machines and ended
    with `clean up: rm -rf /offline-data`. Refused before anything is written there, doit's state included."""
    ws = tmp_path / "offline-data"
    (ws / ".cache" / "sglang-infer").mkdir(parents=True)
    (ws / "logs").mkdir()
    (ws / "logs" / "boot.log").write_text("boot\n")
    before = sorted(str(p.relative_to(ws)) for p in ws.rglob("*"))
    r = run_cli(["demo", "--workspace", str(ws)], clean_env({"HOME": str(tmp_path)}))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "rm -rf" not in r.stdout
    assert ".cache" in r.stderr and "logs/boot.log" in r.stderr and "new or empty folder" in r.stderr
    assert sorted(str(p.relative_to(ws)) for p in ws.rglob("*")) == before
