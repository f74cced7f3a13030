"""The installed command works from a wheel, not only from an editable checkout (issue 11):
build the wheel, install it into a fresh venv, run --help and env from another folder, and the demo
from the checkout itself: its children (`python -m auto_infer`) must not import the checkout's
auto_infer/ folder, which has no tasks/ (issue 19)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.helpers import clean_env

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"          # a copy: building in the checkout would leave build/ and *.egg-info there
    shutil.copytree(REPO, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".gpu-run", "bench"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"),
                            str(src)], capture_output=True, text=True, timeout=600, cwd=root)
    assert build.returncode == 0, build.stderr
    wheels = list((root / "dist").glob("auto_infer-*.whl"))
    assert len(wheels) == 1
    venv.create(root / "venv", with_pip=True)
    py = root / "venv" / "bin" / "python"
    inst = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheels[0])], capture_output=True, text=True,
                          timeout=900)
    assert inst.returncode == 0, inst.stderr[-3000:]
    return root / "venv" / "bin"


def test_the_wheel_holds_the_graph_and_the_demo(wheel_bin: Path) -> None:
    files = subprocess.run([str(wheel_bin / "python"), "-c",
                            "import auto_infer.tasks.dodo, auto_infer.demo.responder as r; print(r.__file__)"],
                           capture_output=True, text=True, cwd="/")
    assert files.returncode == 0, files.stderr
    assert "site-packages/auto_infer/demo/responder.py" in files.stdout


def test_help_env_and_demo_from_the_installed_wheel(wheel_bin: Path, tmp_path: Path) -> None:
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "HOME": str(tmp_path / "home"),
                     "PATH": f"{wheel_bin}:/usr/local/bin:/usr/bin:/bin"})
    cmd = str(wheel_bin / "auto-infer")
    r = subprocess.run([cmd, "--help"], env=env, capture_output=True, text=True, cwd="/", timeout=120)
    assert r.returncode == 0 and "install" in r.stdout and "serve" in r.stdout, r.stderr
    r = subprocess.run([cmd, "env"], env=env, capture_output=True, text=True, cwd="/", timeout=120)
    assert r.returncode == 0 and f"AUTO_INFER_WORKSPACE_DIR={tmp_path / 'ws'}" in r.stdout, r.stderr
    demo_ws = tmp_path / "demo"
    r = subprocess.run([cmd, "demo", "--workspace", str(demo_ws)], env=env, capture_output=True, text=True,
                       cwd=REPO, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "demo finished" in r.stdout and list((demo_ws / "machine-b" / "reports").glob("serve-*.json"))


def test_k8s_templates_ship_in_the_wheel(wheel_bin: Path, tmp_path: Path) -> None:
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "HOME": str(tmp_path / "home"),
                     "AUTO_INFER_SGLANG_CONFIG": str(REPO / "model-configs" / "sglang-qwen2-vl-7b-tp2.toml"),
                     "PATH": f"{wheel_bin}:/usr/local/bin:/usr/bin:/bin"})
    r = subprocess.run([str(wheel_bin / "auto-infer"), "k8s"], env=env, capture_output=True, text=True, cwd="/",
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "kind: Deployment" in r.stdout and "kind: LeaderWorkerSet" not in r.stdout
