"""Container integration: rendered compose files (checked by a real compose), env.example against
the code, the SGLang template, the shipped model configs' decisions, and boot through the real hook."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import tomlkit

from auto_infer.core import settings
from auto_infer.core.net import free_port
from auto_infer.core.settings import PROXY_VARS, VARIABLES
from tests.conftest import Workspace, needs_netns
from tests.helpers import clean_env, offline, run_cli
from tools import render

REPO = Path(__file__).resolve().parent.parent
HOOK = REPO / "templates" / "hooks" / "auto-infer-boot.sh"
COMPOSE = REPO / "compose"
TEMPLATE = REPO / "templates" / "sglang-infer" / "pixi.toml"
COMPOSE_BIN = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(
    COMPOSE_BIN is None,
    reason="no docker-compose binary: apt-get install -y docker-compose "
    "(Debian's Compose v1; `config` needs no engine)",
)

# infer-dev's service as its docker-compose.yml has it (image, a host port, its own workspace mount)
BASE = """services:
  stage-2:
    image: infer-dev:stage-2
    command: /bin/bash
    ports:
    - '2222:22'
    volumes:
    - .container/workspace:/hard/volume/workspace
"""


# ---- rendered files --------------------------------------------------------------------------

def test_rendered_files_are_current() -> None:
    stale = render.stale(render.outputs())
    assert not stale, f"re-render with `python -m tools.render`: {stale}"


def test_render_check_cli_reports_stale_output(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "tools.render"]          # a dev tool: run from the repo
    assert subprocess.run([*cmd, "--check"], cwd=REPO).returncode == 0
    r = subprocess.run([*cmd, "--check", "--out", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and "stale:" in r.stderr and "env.example" in r.stderr
    r = subprocess.run([*cmd, "--out", str(tmp_path), "--service", "sglang"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "\n  sglang:\n" in (tmp_path / "docker-compose.offline.yml").read_text()


def names_read_by_code() -> set[str]:
    """Every AUTO_INFER_* name in the tool's code and the boot hook.

    A trailing _ is a prefix in prose, not a name; a leading _ (``_AUTO_INFER_X``) marks a private
    variable the tool passes to its own children, which is not part of the contract."""
    found: set[str] = set()
    files = [*(REPO / "auto_infer").rglob("*.py"), *(REPO / "tasks").rglob("*.py"), HOOK]
    for path in files:
        found |= set(re.findall(r"(?<![A-Za-z0-9_])AUTO_INFER_[A-Z0-9_]+", path.read_text()))
    return {n for n in found if not n.endswith("_")}


def env_example() -> dict[str, tuple[str, str]]:
    """name -> (value shown, the comment line above it)."""
    out: dict[str, tuple[str, str]] = {}
    prev = ""
    for line in (COMPOSE / "env.example").read_text().splitlines():
        m = re.match(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            out[m.group(1)] = (m.group(2), prev)
        prev = line
    return out


def test_env_example_lists_every_variable_the_code_reads() -> None:
    listed = env_example()
    missing = sorted(names_read_by_code() - set(listed))
    assert not missing, f"read by the code but not in compose/env.example (add them to settings.VARIABLES): {missing}"
    known = set(VARIABLES) | set(render.EXTRA)
    assert set(listed) <= known, f"env.example lists unknown names: {sorted(set(listed) - known)}"


def test_env_example_gives_each_variable_its_default_and_one_line() -> None:
    listed = env_example()
    for v in render.variables():
        value, comment = listed[v.name]
        assert value == v.default, v.name
        assert comment.startswith("# ") and v.doc in comment, v.name


def compose(tmp_path: Path, *files: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert COMPOSE_BIN is not None
    (tmp_path / "docker-compose.yml").write_text(BASE)
    for name in files:
        shutil.copy(COMPOSE / name, tmp_path / name)
    args = [COMPOSE_BIN, "-f", "docker-compose.yml", *(a for f in files for a in ("-f", f)), "config"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AUTO_INFER_", "HOST_VOLUME_"))
             and k not in PROXY_VARS}
    return subprocess.run(args, cwd=tmp_path, env={**clean, **(env or {})}, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def service(r: subprocess.CompletedProcess[str]) -> dict[str, object]:
    yaml = pytest.importorskip("yaml")
    assert r.returncode == 0, r.stderr
    return dict(yaml.safe_load(r.stdout)["services"]["stage-2"])


@needs_compose
def test_compose_template_override_validates_and_mounts_what_the_contract_says(tmp_path: Path) -> None:
    tpl = tmp_path / "tpl"
    r = compose(tmp_path, "docker-compose.sglang-template.yml", env={"HOST_VOLUME_SGLANG_TEMPLATE_DIR": str(tpl)})
    svc = service(r)
    mounts = {v.split(":")[1]: v for v in svc["volumes"]}   # type: ignore[attr-defined]
    assert mounts["/sglang-template"] == f"{tpl}:/sglang-template:ro"
    assert mounts["/offline-data"].startswith(f"{tmp_path}/.container/workspace:")
    assert "/offline-data/.cache/sglang-infer" not in mounts      # caches inside the workspace mount: links
    assert mounts["/llm-models"].endswith(":ro") and "/hard/volume/workspace" in mounts   # base mount kept
    env = svc["environment"]
    assert isinstance(env, dict)
    assert env["AUTO_INFER_SGLANG_TEMPLATE_DIR"] == "/sglang-template"
    assert env["AUTO_INFER_SGLANG_CACHE_ROOT"] == "/offline-data/.cache/sglang-infer"
    assert env["AUTO_INFER_SGLANG_PROJECT_DIR"] == ""           # empty: the tool derives it from the workspace
    assert env["AUTO_INFER_CHECK_MODULES"] == ""                  # empty: `check` follows the config's engine
    assert set(VARIABLES) <= set(env)
    assert all(env[p] == "" for p in PROXY_VARS)                 # the host's value; empty (= none) when unset
    # what the tool makes of exactly that environment: the mounted paths, defaults for the rest
    s = settings.load({k: str(v) for k, v in env.items() if v is not None})
    assert (s.workspace, s.template_dir, s.cache_root) == (Path("/offline-data"), Path("/sglang-template"),
                                                          Path("/offline-data/.cache/sglang-infer"))
    assert s.project_dir == Path("/offline-data/sglang-infer") and s.check_modules is None
    assert s.config_path == Path("/offline-data/sglang-configs/sglang.toml") and not any(s.gates.values())


@needs_compose
def test_compose_follows_env_file_and_requires_the_template(tmp_path: Path) -> None:
    shutil.copy(COMPOSE / "env.example", tmp_path / ".env")
    with (tmp_path / ".env").open("a") as fh:
        fh.write("AUTO_INFER_WORKSPACE_DIR=/ws\nAUTO_INFER_SGLANG_CACHE_ROOT=/caches\nAUTO_INFER_SGLANG_INSTALL_ON_BOOT=1\n")
    svc = service(compose(tmp_path, "docker-compose.sglang-template.yml", "docker-compose.cache-mount.yml"))
    targets = {v.split(":")[1] for v in svc["volumes"]}                 # type: ignore[attr-defined]
    assert {"/ws", "/caches", "/sglang-template"} <= targets
    assert svc["environment"]["AUTO_INFER_SGLANG_INSTALL_ON_BOOT"] == "1"   # type: ignore[index]
    (tmp_path / ".env").write_text("")
    r = compose(tmp_path, "docker-compose.sglang-template.yml")
    assert r.returncode != 0 and "HOST_VOLUME_SGLANG_TEMPLATE_DIR" in r.stderr


@needs_compose
def test_compose_cache_mount_is_opt_in_and_needs_its_folder(tmp_path: Path) -> None:
    env = {"HOST_VOLUME_SGLANG_TEMPLATE_DIR": str(tmp_path / "tpl")}
    r = compose(tmp_path, "docker-compose.sglang-template.yml", "docker-compose.cache-mount.yml", env=env)
    assert r.returncode != 0 and "set HOST_VOLUME_SGLANG_CACHE_ROOT" in r.stderr
    env["HOST_VOLUME_SGLANG_CACHE_ROOT"] = str(tmp_path / "caches")
    svc = service(compose(tmp_path, "docker-compose.sglang-template.yml", "docker-compose.cache-mount.yml", env=env))
    assert f"{tmp_path}/caches:/offline-data/.cache/sglang-infer:rw" in svc["volumes"]  # type: ignore[operator]


@needs_compose
def test_compose_gpu_request_is_its_own_file(tmp_path: Path) -> None:
    env = {"HOST_VOLUME_SGLANG_TEMPLATE_DIR": str(tmp_path / "tpl")}
    plain = service(compose(tmp_path, "docker-compose.sglang-template.yml", env=env))
    assert "deploy" not in plain
    svc = service(compose(tmp_path, "docker-compose.sglang-template.yml", "docker-compose.gpu.yml", env=env))
    device = svc["deploy"]["resources"]["reservations"]["devices"][0]           # type: ignore[index]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == "all"


@needs_compose
def test_compose_offline_override_has_no_network_and_no_proxies(tmp_path: Path) -> None:
    env = {"HOST_VOLUME_SGLANG_TEMPLATE_DIR": str(tmp_path / "tpl"), "HTTP_PROXY": "http://proxy:3128"}
    svc = service(compose(tmp_path, "docker-compose.sglang-template.yml", "docker-compose.offline.yml", env=env))
    assert svc["network_mode"] == "none"
    assert all(svc["environment"][p] == "" for p in PROXY_VARS)   # type: ignore[index]
    assert "ports" not in (COMPOSE / "docker-compose.offline.yml").read_text().split("services:")[1]


@needs_compose
def test_compose_supervise_override_runs_supervise_in_the_foreground(tmp_path: Path) -> None:
    env = {"HOST_VOLUME_SGLANG_TEMPLATE_DIR": str(tmp_path / "tpl")}
    svc = service(compose(tmp_path, "docker-compose.sglang-template.yml", "docker-compose.supervise.yml", env=env))
    assert svc["command"] == ["auto-infer", "supervise"] and svc["stop_signal"] == "SIGTERM"
    assert svc["stop_grace_period"] == "1m30s" or svc["stop_grace_period"] == "90s"
    assert svc["restart"] == "on-failure:3"
    assert {"AUTO_INFER_SUPERVISE_MAX_CRASHES", "AUTO_INFER_SGLANG_CONFIG"} <= set(svc["environment"])  # type: ignore[arg-type]


# ---- the SGLang template -----------------------------------------------------------------------

def template() -> dict[str, object]:
    return dict(tomlkit.parse(TEMPLATE.read_text()).unwrap())


def test_template_is_one_cu128_environment_of_exact_wheel_pins() -> None:
    t = template()
    assert t["workspace"]["platforms"] == ["linux-64"]                  # type: ignore[index]
    assert t["environments"] == {"default": {"features": ["cu128"]}}
    feature = t["feature"]["cu128"]                                    # type: ignore[index]
    opts = feature["pypi-options"]
    assert opts["index-url"] == "https://download.pytorch.org/whl/cu128" and opts["no-build"] is True
    deps = feature["pypi-dependencies"]
    assert all(v.startswith("==") and "*" not in v for v in deps.values()), deps
    assert {deps[k] for k in ("torch", "torchvision", "torchaudio")} == {"==2.9.1+cu128", "==0.24.1+cu128"}
    assert (deps["sglang"], deps["sgl-kernel"], deps["flashinfer-python"]) == ("==0.5.9", "==0.3.21", "==0.6.3")
    assert deps["sglang-router"] == "==0.3.2"                          # the gateway ([router])
    cudnn = opts["dependency-overrides"]["nvidia-cudnn-cu12"]
    assert tuple(int(x) for x in cudnn.lstrip("=").split(".")[:2]) >= (9, 15)   # the cuDNN decision
    assert "auto-infer lock" in TEMPLATE.read_text()


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_template_resolves_on_pypi(tmp_path: Path) -> None:
    """The pins go together, wheels only, with the cuDNN override, on the CUDA 12.8 lane.

    Resolved by uv (the resolver pixi uses) against PyPI, where torch 2.9.1's Linux wheel is the
    cu128 build (same nvidia-* 12.8 requirements as 2.9.1+cu128 on the PyTorch index)."""
    if not pypi_reachable():
        pytest.skip("pypi.org is not reachable from here")
    from uv import find_uv_bin

    feature = template()["feature"]["cu128"]                             # type: ignore[index]
    reqs = [f"{n}{v.split('+')[0]}" for n, v in feature["pypi-dependencies"].items()]
    over = [f"{n}{v}" for n, v in feature["pypi-options"]["dependency-overrides"].items()]
    (tmp_path / "req.in").write_text("\n".join(reqs) + "\n")
    (tmp_path / "over.txt").write_text("\n".join(over) + "\n")
    r = subprocess.run([find_uv_bin(), "pip", "compile", "req.in", "--override", "over.txt", "--only-binary", ":all:",
                        "--python-version", "3.12", "--python-platform", "x86_64-manylinux_2_28",
                        "--index-url", "https://pypi.org/simple", "--no-header", "--no-annotate",
                        "--cache-dir", str(tmp_path / "uv-cache")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    pins = dict(line.split("==", 1) for line in r.stdout.split() if "==" in line)
    assert pins["sglang"] == "0.5.9" and pins["torch"] == "2.9.1" and pins["sgl-kernel"] == "0.3.21"
    assert pins["nvidia-cudnn-cu12"] == "9.16.0.29"
    assert pins["nvidia-cuda-runtime-cu12"].startswith("12.8.")
    assert pins["cuda-python"].startswith("12.")


@pytest.mark.skipif(shutil.which("pixi") is not None, reason="pixi is on PATH: the real lock test covers it")
def test_lock_without_pixi_says_where_to_make_the_lock(tmp_path: Path) -> None:
    template_dir = tmp_path / "sglang-infer"
    shutil.copytree(TEMPLATE.parent, template_dir)
    env = {**clean_env(), "AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"),
           "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template_dir)}
    r = run_cli(["lock"], env)
    assert r.returncode == 1 and "needs pixi on PATH and the network" in r.stderr
    assert "ship pixi.lock with the template" in r.stderr and not (template_dir / "pixi.lock").exists()


@pytest.mark.pixi
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pixi") is None, reason="needs a real pixi on PATH (and the network)")
def test_lock_makes_the_templates_lock_with_real_pixi(tmp_path: Path) -> None:
    template_dir = tmp_path / "sglang-infer"
    shutil.copytree(TEMPLATE.parent, template_dir)
    env = {**clean_env(), "AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"),
           "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template_dir)}
    r = run_cli(["lock"], env, timeout=1800)
    assert r.returncode == 0, r.stderr
    lock = (template_dir / "pixi.lock").read_text()
    for wheel in ("torch-2.9.1%2Bcu128", "sglang-0.5.9-", "sgl_kernel-0.3.21-", "nvidia_cudnn_cu12-9.16.0.29-"):
        assert wheel in lock, wheel
    assert ".tar.gz" not in lock        # wheels only


# ---- model configs: the decisions this issue made ------------------------------------------------

def model_config(name: str) -> dict[str, object]:
    return dict(tomlkit.parse((REPO / "model-configs" / name).read_text()).unwrap())


def test_glm_config_has_its_parsers_and_eight_gpus() -> None:
    inst = model_config("sglang-glm-4.7-tp8.toml")["instance"]["glm_4_7_tp8"]   # type: ignore[index]
    assert (inst["server"]["tool_call_parser"], inst["server"]["reasoning_parser"]) == ("glm47", "glm45")
    assert inst["server"]["tp_size"] == 8 and len(inst["control"]["gpu_ids"].split(",")) == 8


def test_qwen2_vl_config_does_not_disable_the_cudnn_check() -> None:
    data = model_config("sglang-qwen2-vl-7b-tp2.toml")
    inst = data["instance"]["qwen2_vl_7b"]                               # type: ignore[index]
    assert inst["server"]["tp_size"] == 2 and inst["control"]["gpu_ids"] == "0,1"
    envs = [data["instance"]["control"].get("env", {}), inst["control"].get("env", {})]   # type: ignore[index]
    assert not any("SGLANG_DISABLE_CUDNN_CHECK" in e for e in envs)   # multimodal: the cuDNN override instead


# ---- boot, through the real hook -------------------------------------------------------------

def hook_env(ws: Workspace, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The workspace's env with `auto-infer` on PATH (a shim running this checkout's CLI)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "auto-infer"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m auto_infer "$@"\n')
    shim.chmod(0o755)
    return {**ws.env, "PATH": f"{bin_dir}:{os.environ['PATH']}", **extra}


def run_hook(env: dict[str, str], *, net: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = ["bash", str(HOOK)]
    return subprocess.run(cmd if net else offline(cmd), env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, cwd="/")


def boot_log(ws: Workspace) -> str:
    return (ws.root / "logs" / "boot.log").read_text()


def test_boot_without_gate_does_nothing_and_says_so(workspace: Workspace) -> None:
    r = run_cli(["boot"], workspace.env)
    assert r.returncode == 0, r.stderr
    said = [line for line in r.stderr.splitlines() if line.startswith("boot:")]
    assert len(said) == 1 and "no gate set" in said[0] and "nothing to do" in said[0]
    assert not workspace.project.exists() and not workspace.cache_root.exists()


def test_hook_without_gate_logs_to_the_workspace(workspace: Workspace, tmp_path: Path) -> None:
    r = run_hook(hook_env(workspace, tmp_path))
    assert r.returncode == 0, r.stderr
    log = boot_log(workspace)
    assert "start: warm=0 rehearse=0 install=0 serve=0" in log and "no gate set" in log
    assert log.rstrip().splitlines()[-1].endswith(f"exit 0: done; log: {workspace.root}/logs/boot.log")


def test_hook_warm_gate_online(workspace: Workspace, online: object, tmp_path: Path) -> None:
    r = run_hook(hook_env(workspace, tmp_path, AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT="1"))
    assert r.returncode == 0, r.stderr + r.stdout
    assert ".  boot:warm" in r.stdout and "boot: done: warm" in r.stdout and "install" not in r.stdout
    assert workspace.manifest.is_file()
    assert "boot: done: warm" in boot_log(workspace)


def test_hook_boot_log_masks_a_proxy_password_without_a_scheme(workspace: Workspace, tmp_path: Path) -> None:
    """``HTTPS_PROXY=user:pw@proxy:3128`` (no scheme): warm fails through it, and neither the output
    nor logs/boot.log (nor any file of the workspace) holds the password."""
    proxy = f"alice:Boot-pw-4242@127.0.0.1:{free_port()}"
    env = hook_env(workspace, tmp_path, AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT="1", AUTO_INFER_NET_RETRIES="0",
                   HTTP_PROXY=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, https_proxy=proxy)
    r = run_hook(env)
    assert r.returncode == 1, r.stderr + r.stdout
    assert f"proxy: {proxy.replace('Boot-pw-4242', '***')}" in boot_log(workspace), boot_log(workspace)
    assert "Boot-pw-4242" not in r.stdout + r.stderr
    assert not [p for p in workspace.root.rglob("*") if p.is_file() and b"Boot-pw-4242" in p.read_bytes()]


def test_hook_warm_and_install_gates_run_in_order(workspace: Workspace, online: object, tmp_path: Path) -> None:
    env = hook_env(workspace, tmp_path, AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT="1", AUTO_INFER_SGLANG_INSTALL_ON_BOOT="1")
    r = run_hook(env)
    assert r.returncode == 0, r.stderr + r.stdout
    ran = [line[3:] for line in r.stdout.splitlines() if line.startswith(".  ")]
    assert ran == ["template", "boot:warm", "boot:install", "boot:check", "boot"]   # warm first, always
    assert "boot: done: warm → install → check" in boot_log(workspace)


@needs_netns
@pytest.mark.netns
def test_hook_install_gate_offline_from_the_warmed_cache(workspace: Workspace, online: object,
                                                         tmp_path: Path) -> None:
    assert run_cli(["warm"], workspace.env).returncode == 0
    online.stop()  # type: ignore[attr-defined]
    fresh = tmp_path / "fresh-project"
    env = hook_env(workspace, tmp_path, AUTO_INFER_SGLANG_INSTALL_ON_BOOT="1",
                   AUTO_INFER_SGLANG_PROJECT_DIR=str(fresh))
    r = run_hook(env, net=False)
    assert r.returncode == 0, r.stderr + r.stdout
    ran = [line[3:] for line in r.stdout.splitlines() if line.startswith(".  ")]
    assert ran == ["template", "boot:install", "boot:check", "boot"]
    assert "boot: done: install → check" in r.stdout and "demo_extras 0.3" in r.stdout
    assert (fresh / ".pixi" / "envs" / "default" / "bin" / "hello").is_file()
    log = boot_log(workspace)
    assert "start: warm=0 rehearse=0 install=1 serve=0" in log and "install needed" in log and "exit 0: done" in log
    again = run_hook(env, net=False)        # a second boot: the environment is healthy, nothing to install
    assert again.returncode == 0 and "-- boot:install (up to date" in again.stdout


def test_hook_failing_step_gives_nonzero_status_and_a_clear_line(workspace: Workspace, tmp_path: Path) -> None:
    r = run_hook(hook_env(workspace, tmp_path, AUTO_INFER_SGLANG_INSTALL_ON_BOOT="1"))   # nothing was warmed
    assert r.returncode == 1
    assert "✗ boot:install failed" in r.stdout and "the cache was never warmed" in r.stdout
    last = r.stderr.rstrip().splitlines()[-1]
    assert "exit 1: a step failed" in last and boot_log(workspace).rstrip().endswith(last.split("] ", 1)[1])


def test_hook_with_a_refused_gate_says_which_setting(workspace: Workspace, tmp_path: Path) -> None:
    """A gate that is neither yes nor no stops boot before any step: no ✗ line, so the last line
    points at the refusal (the auto-infer: line naming the variable)."""
    r = run_hook(hook_env(workspace, tmp_path, AUTO_INFER_SGLANG_ON_BOOT="maybe"))
    assert r.returncode == 1
    text = r.stdout + r.stderr
    assert "AUTO_INFER_SGLANG_ON_BOOT='maybe' is neither yes nor no" in text, text
    assert not [line for line in text.splitlines() if line.startswith("✗")], text
    assert "exit 1: a step failed or a setting was refused (the ✗ or auto-infer: line above says why)" in \
        r.stderr.rstrip().splitlines()[-1]


def test_hook_stops_a_boot_that_runs_past_its_limit(workspace: Workspace, tmp_path: Path) -> None:
    from filelock import FileLock

    state = workspace.root / ".auto-infer"
    state.mkdir(parents=True)
    with FileLock(str(state / "run.lock")):     # another run holds the lock for longer than the limit
        env = hook_env(workspace, tmp_path, AUTO_INFER_SGLANG_INSTALL_ON_BOOT="1",
                       AUTO_INFER_BOOT_TIMEOUT="2", AUTO_INFER_LOCK_TIMEOUT="600")
        r = run_hook(env)
    assert r.returncode == 124, r.stderr
    assert "exit 124: timed out after 2s" in r.stderr and "waiting for" in r.stdout


def test_hook_rejects_a_bad_timeout_and_reports_a_missing_tool(workspace: Workspace, tmp_path: Path) -> None:
    r = run_hook(hook_env(workspace, tmp_path, AUTO_INFER_BOOT_TIMEOUT="soon"))
    assert r.returncode == 1 and "AUTO_INFER_BOOT_TIMEOUT=soon" in r.stderr
    r = run_hook({**workspace.env, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 127 and "auto-infer is not installed or not on PATH" in r.stderr


def test_hook_in_background_returns_at_once_and_logs_the_outcome(workspace: Workspace, tmp_path: Path) -> None:
    r = run_hook(hook_env(workspace, tmp_path, AUTO_INFER_BOOT_BACKGROUND="1"))
    assert r.returncode == 0 and "runs in the background" in r.stderr
    log = workspace.root / "logs" / "boot.log"
    for _ in range(600):                     # a bounded wait for the detached run to write its last line
        if log.is_file() and "exit 0: done" in log.read_text():
            break
        subprocess.run(["sleep", "0.1"])
    assert "no gate set" in log.read_text() and "exit 0: done" in log.read_text()


def test_entry_snippet_lets_the_container_start_when_boot_fails(workspace: Workspace, tmp_path: Path) -> None:
    snippet = (REPO / "templates" / "docker" / "infer-dev-entry.snippet.sh").read_text()
    snippet = snippet.replace("/opt/auto-infer/hooks/auto-infer-boot.sh", str(HOOK))
    entry = tmp_path / "entry.sh"
    entry.write_text("set -euo pipefail\n" + snippet + 'exec "$@"\n')
    env = hook_env(workspace, tmp_path, AUTO_INFER_SGLANG_INSTALL_ON_BOOT="1")
    r = subprocess.run(["bash", str(entry), "echo", "container command runs"], env=env, capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("container command runs")
    assert "[infer-dev-entry] auto-infer boot failed (exit 1)" in r.stderr


def responder_config(path: Path, port: int) -> Path:
    """A model config whose one instance is the test responder (auto_infer/demo/responder.py) on ``port``."""
    command = ", ".join(f'"{t}"' for t in [sys.executable, "-m", "auto_infer.demo.responder", "--host", "{host}",
                                            "--port", "{port}", "--model", "{served_model_name}"])
    path.write_text(f"""[master]
enable = true

[instance.control]
ready_timeout = 60
stop_grace = 5

[instance.server]
host = "127.0.0.1"

[instance.booted.control]
command = [{command}]

[instance.booted.server]
port = {port}
served_model_name = "booted-model"
""")
    return path


@needs_netns
@pytest.mark.netns
def test_hook_serve_gate_installs_checks_and_serves_offline(workspace: Workspace, online: object,
                                                             tmp_path: Path) -> None:

    assert run_cli(["warm"], workspace.env).returncode == 0
    online.stop()  # type: ignore[attr-defined]
    config = responder_config(tmp_path / "models.toml", free_port())
    env = hook_env(workspace, tmp_path, AUTO_INFER_SGLANG_ON_BOOT="1", AUTO_INFER_SGLANG_CONFIG=str(config))
    try:
        r = run_hook(env, net=False)
        assert r.returncode == 0, r.stderr + r.stdout
        ran = [line[3:] for line in r.stdout.splitlines() if line.startswith(".  ")]
        assert ran[-4:] == ["boot:install", "boot:check", "boot:serve", "boot"]   # in this order, always
        assert "booted ready" in r.stdout and "boot: done: install → check → serve" in r.stdout
        assert "exit 0: done" in boot_log(workspace)
        report = (workspace.root / "reports" / "serve-latest.json").read_text()
        assert "Hello from booted-model" in report
    finally:
        stopped = run_cli(["stop"], env)
        assert stopped.returncode == 0, stopped.stderr


# ---- the tool into an image ----------------------------------------------------------------------

@pytest.mark.slow
def test_install_script_puts_the_tool_and_hook_into_a_prefix(tmp_path: Path) -> None:
    """templates/docker/install-auto-infer.sh for real: a venv from this checkout (pip, from the index)."""
    if not pypi_reachable():
        pytest.skip("pypi.org is not reachable from here (pip needs the index for the tool's dependencies)")
    prefix, bin_dir = tmp_path / "opt", tmp_path / "bin"
    r = subprocess.run(["bash", str(REPO / "templates" / "docker" / "install-auto-infer.sh"), str(REPO), str(prefix)],
                       env={**os.environ, "BIN_DIR": str(bin_dir)}, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    version = subprocess.run([str(bin_dir / "auto-infer"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("auto-infer ")
    assert os.access(prefix / "hooks" / "auto-infer-boot.sh", os.X_OK)
    assert (bin_dir / "auto-infer-boot").resolve() == (prefix / "hooks" / "auto-infer-boot.sh").resolve()
    listing = subprocess.run([str(bin_dir / "auto-infer"), "--help"], capture_output=True, text=True).stdout
    assert "boot" in listing and "install" in listing
