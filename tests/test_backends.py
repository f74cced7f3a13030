"""The pixi backend's command line and environment; the pixi-free backend's offline contract."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from auto_infer.core.settings import PROXY_VARS, load
from auto_infer.install.backends import pixi
from tests.conftest import Workspace
from tests.helpers import clean_env, run_cli

PROXIES = {"HTTP_PROXY": "http://alice:s3cr3t-pw@proxy.local:3128", "https_proxy": "http://proxy.local:3128",
           "NO_PROXY": "localhost,127.0.0.1", "ALL_PROXY": "socks5://bob:hunter2-pw@proxy.local:1080"}


def settings(tmp_path):  # type: ignore[no-untyped-def]
    return load(clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), **PROXIES}))


def test_pixi_command_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = settings(tmp_path)
    cmd = pixi.command(s, offline=False, pixi_version=(0, 77, 0))
    assert cmd == ["pixi", "install", "--frozen", "--manifest-path", str(s.project_dir / "pixi.toml"),
                   "-e", "default"]
    assert pixi.command(s, offline=True, pixi_version=(0, 77, 0))[-1] == "--offline"
    assert "--offline" not in pixi.command(s, offline=True, pixi_version=(0, 70, 1))   # older pixi: no flag
    assert pixi.parse_version("pixi 0.74.2\n") == (0, 74, 2)


def test_tool_env_sets_cache_vars_and_strips_proxies_offline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = settings(tmp_path)
    base = dict(PROXIES, PATH="/usr/bin")
    online = s.tool_env(online=True, base=base)
    offline = s.tool_env(online=False, base=base)
    root = tmp_path / "ws" / ".cache" / "sglang-infer"
    for env in (online, offline):
        assert env["PIXI_CACHE_DIR"] == str(root / "pixi")
        assert env["RATTLER_CACHE_DIR"] == str(root / "conda" / "rattler")
        assert env["UV_CACHE_DIR"] == str(root / "pypi" / "uv")
        assert env["XDG_CACHE_HOME"] == str(root / "xdg")
    assert {k for k in online if k in PROXY_VARS} == set(PROXIES)          # passed through, not invented
    assert not any(k in offline for k in PROXY_VARS)


def test_manifest_never_holds_a_proxy_password(workspace: Workspace, online: object) -> None:
    env = {**workspace.env, **PROXIES, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    r = run_cli(["warm"], env)
    assert r.returncode == 0, r.stderr
    text = workspace.manifest.read_text()
    assert "s3cr3t-pw" not in text and "hunter2-pw" not in text
    used = json.loads(text)["proxies_used"]
    assert used["HTTP_PROXY"] == "http://alice:***@proxy.local:3128"
    for path in workspace.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"s3cr3t-pw" not in data and b"hunter2-pw" not in data, path


@pytest.mark.pixi
@pytest.mark.skipif(shutil.which("pixi") is None, reason="needs a real pixi on PATH")
def test_pixi_backend_end_to_end(workspace: Workspace, online: object) -> None:  # pragma: no cover - no pixi here
    env = dict(workspace.env, AUTO_INFER_INSTALLER="pixi")
    r = run_cli(["warm"], env)
    assert r.returncode == 0, r.stderr
    r = run_cli(["install"], env)
    assert r.returncode == 0, r.stderr
    out = subprocess.run(["pixi", "info", "--manifest-path", str(workspace.project / "pixi.toml")],
                         env=load(env).tool_env(online=False), capture_output=True, text=True)
    assert str(workspace.cache_root / "pixi") in out.stdout


@pytest.mark.parametrize(("toml", "user", "want"), [
    ('[system-requirements]\ncuda = "12"\n', None, "12"),
    ('[environments]\ndefault = { features = ["gpu"] }\n[feature.gpu.system-requirements]\ncuda = "12.4"\n',
     None, "12.4"),
    ('[environments]\ndefault = ["gpu"]\n[system-requirements]\ncuda = "11.8"\n'
     '[feature.gpu.system-requirements]\ncuda = "12.1"\n', None, "12.1"),
    ('[system-requirements]\ncuda = "12"\n', "11.8", "11.8"),              # the user's own value wins
    ('[system-requirements]\nlinux = "4.18"\n', None, None),               # no CUDA asked: none told
    ('[environments]\nother = { features = ["gpu"] }\n[feature.gpu.system-requirements]\ncuda = "12"\n',
     None, None),                                                          # another environment's feature
], ids=["workspace", "feature", "highest", "user-set", "no-cuda", "other-env"])
def test_pixi_is_told_the_required_cuda_on_a_machine_without_a_driver(tmp_path, monkeypatch, toml, user,  # type: ignore[no-untyped-def]
                                                                     want) -> None:
    """`pixi install` refuses a lock whose pixi.toml requires CUDA on a machine without a driver
    (pixi's "Virtual package '__cuda' does not match"): warming on a CPU host for a GPU one failed."""
    if pixi.cuda_driver():
        pytest.skip("this machine has a CUDA driver: nothing is overridden")
    monkeypatch.delenv("CONDA_OVERRIDE_CUDA", raising=False)
    if user is not None:
        monkeypatch.setenv("CONDA_OVERRIDE_CUDA", user)         # pixi's environment starts from ours
    s = load(clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws")}))
    s.pixi_toml.parent.mkdir(parents=True)
    s.pixi_toml.write_text('[workspace]\nname = "t"\nchannels = ["conda-forge"]\nplatforms = ["linux-64"]\n' + toml)
    env = pixi.environment(s, offline=True)
    assert env.get("CONDA_OVERRIDE_CUDA") == want, env.get("CONDA_OVERRIDE_CUDA")


def test_the_realworld_template_asks_for_cuda_12() -> None:
    from tests.helpers import realworld

    manifest = realworld("sglang-infer") / "pixi.toml"
    if not manifest.exists():
        pytest.skip("shared/realworld not present")
    assert pixi.cuda_required(manifest, "default") == "12"
