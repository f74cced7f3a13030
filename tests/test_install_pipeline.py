"""template → warm (online, real HTTP mirror) → install (offline, unshare -n) → check, for real."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import Workspace, needs_netns
from tests.helpers import run_cli


def warm(ws: Workspace) -> None:
    r = run_cli(["warm"], ws.env)
    assert r.returncode == 0, r.stderr


def snapshot(prefix: Path) -> dict[str, int]:
    if not prefix.exists():
        return {}
    out = {}
    for root, _dirs, files in os.walk(prefix):
        for f in files:
            p = Path(root) / f
            out[str(p.relative_to(prefix))] = p.lstat().st_mtime_ns
    return out


def test_warm_fills_cache_writes_manifest_and_installs(workspace: Workspace, online: object) -> None:
    warm(workspace)
    m = json.loads(workspace.manifest.read_text())
    lock = workspace.project / "pixi.lock"
    import hashlib
    assert m["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert m["pixi_toml_sha256"] == hashlib.sha256((workspace.project / "pixi.toml").read_bytes()).hexdigest()
    assert (m["environment"], m["platform"], m["installer"]["name"]) == ("default", "linux-64", "rattler")
    assert "py-rattler" in m["installer"]["version"] and m["warmed_at"]
    kinds = sorted((a["kind"], a["name"]) for a in m["artifacts"])
    assert kinds == [("conda", "demo-data"), ("conda", "hello"), ("conda", "python"), ("pypi", "demo-extras")]
    for a in m["artifacts"]:
        assert a["url"].startswith("http://127.0.0.1:") and len(a["sha256"]) == 64 and a["size"] > 0
    pkgs = workspace.cache_root / "pixi" / "pkgs"
    assert (pkgs / "hello-1.0-0" / "info" / "index.json").is_file()
    wheel = workspace.cache_root / "pypi" / "wheels" / "demo_extras-0.3-py3-none-any.whl"
    # the sha256 measured while downloading is recorded for the file as it lies: no second read later
    st, sha = wheel.stat(), hashlib.sha256(wheel.read_bytes()).hexdigest()
    verified = json.loads((wheel.parent / ".verified.json").read_text())
    assert verified[wheel.name] == [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, sha]
    # the environment warm installed is real: files hard-linked from the shared package cache
    big = workspace.prefix / "share" / "hello" / "big.bin"
    assert big.stat().st_ino == (pkgs / "hello-1.0-0" / "share" / "hello" / "big.bin").stat().st_ino


@needs_netns
@pytest.mark.netns
def test_offline_install_and_check_from_cache_only(workspace: Workspace, online: object,
                                                   tmp_path: Path) -> None:
    warm(workspace)
    online.stop()  # type: ignore[attr-defined]   # the mirror is gone, and unshare -n has no network
    env = dict(workspace.env, AUTO_INFER_SGLANG_PROJECT_DIR=str(tmp_path / "fresh-project"))
    r = run_cli(["install"], env, net=False)
    assert r.returncode == 0, r.stderr
    prefix = tmp_path / "fresh-project" / ".pixi" / "envs" / "default"
    assert (prefix / "bin" / "hello").read_text().startswith("#!/bin/sh")
    assert (prefix / "share" / "demo" / "a.txt").read_text() == "a\n"
    assert (prefix / "share" / "hello" / "big.bin").stat().st_nlink >= 2        # hard link, not copy
    assert list((prefix / "lib").glob("python*/site-packages/demo_extras/__init__.py"))
    record = json.loads((prefix / "conda-meta" / "auto-infer-install").read_text())
    assert record["installer"] == "rattler" and "hello-1.0-0" in record["conda"]
    r = run_cli(["check"], env, net=False)
    assert r.returncode == 0, r.stderr
    assert "demo_extras 0.3" in r.stdout
    check = json.loads((workspace.root / ".auto-infer" / "check.json").read_text())
    assert check["modules"]["demo_extras"] == "0.3" and check["python"]
    # rerun: doit's up-to-date check skips it
    again = run_cli(["install"], env, net=False)
    assert again.returncode == 0 and "-- install (up to date" in again.stderr


def test_changed_lock_content_needs_warm_then_reinstalls(workspace: Workspace, online: object) -> None:
    warm(workspace)
    lock = workspace.template / "pixi.lock"
    text = lock.read_text()
    stat = lock.stat()
    # drop demo-data from the environment (same channel): a real, valid, different lock
    kept = [ln for ln in text.splitlines() if "/demo-data-2.0-0" not in ln or not ln.startswith("      - conda:")]
    lock.write_text("\n".join(kept) + "\n")
    os.utime(lock, ns=(stat.st_atime_ns, stat.st_mtime_ns))      # mtime preserved: content must count
    r = run_cli(["install"], workspace.env)
    assert r.returncode == 1
    assert "warmed for another pixi.lock" in r.stderr and "auto-infer warm" in r.stderr
    assert (workspace.prefix / "share" / "demo" / "a.txt").exists()        # untouched by the refusal
    warm(workspace)
    assert not (workspace.prefix / "share" / "demo" / "a.txt").exists()    # removed with its package
    r = run_cli(["install"], workspace.env)
    assert r.returncode == 0 and "-- install (up to date" not in r.stderr


def test_damaged_environment_is_rebuilt_and_the_log_says_why(workspace: Workspace, online: object) -> None:
    warm(workspace)
    assert run_cli(["install"], workspace.env).returncode == 0
    (workspace.prefix / "conda-meta" / "hello-1.0-0.json").unlink()
    (workspace.prefix / "bin" / "hello").unlink()
    online.stop()  # type: ignore[attr-defined]
    r = run_cli(["install"], workspace.env)
    assert r.returncode == 0, r.stderr
    assert "conda-meta record missing or unreadable: hello-1.0-0.json" in r.stderr
    assert (workspace.prefix / "bin" / "hello").is_file()
    assert run_cli(["install"], workspace.env).stderr.count("up to date") >= 1


def test_the_health_memo_never_hides_damage(workspace: Workspace, online: object) -> None:
    """The no-op check keeps each conda-meta record's file list keyed by the record's stat: a file
    removed later is still found, and a record rewritten in place (same name) is parsed again."""
    warm(workspace)
    assert run_cli(["install"], workspace.env).returncode == 0
    assert "up to date" in run_cli(["install"], workspace.env).stderr          # the check ran: memo written
    meta = workspace.prefix / "conda-meta"
    assert (meta / "auto-infer-health").is_file()
    online.stop()  # type: ignore[attr-defined]
    (workspace.prefix / "bin" / "hello").unlink()
    r = run_cli(["install"], workspace.env)
    assert r.returncode == 0 and "file missing from package hello: bin/hello" in r.stderr, r.stderr
    record = meta / "hello-1.0-0.json"
    data = json.loads(record.read_text())
    data["files"].append("share/hello/added-later.txt")
    with open(record, "r+") as fh:                       # in place: same inode, a new ctime
        fh.write(json.dumps(data))
        fh.truncate()
    r = run_cli(["install"], workspace.env)
    assert r.returncode == 0 and "file missing from package hello: share/hello/added-later.txt" in r.stderr, r.stderr


def test_refuses_without_manifest_and_touches_nothing(workspace: Workspace) -> None:
    r = run_cli(["install"], workspace.env)
    assert r.returncode == 1
    assert "no cache manifest" in r.stderr and "auto-infer warm" in r.stderr
    assert "Traceback" not in r.stderr
    assert not workspace.prefix.exists()


def test_refuses_when_an_artifact_left_the_cache(workspace: Workspace, online: object) -> None:
    warm(workspace)
    online.stop()  # type: ignore[attr-defined]
    before = snapshot(workspace.prefix)
    shutil.rmtree(workspace.cache_root / "pixi" / "pkgs" / "hello-1.0-0")
    (workspace.prefix / "conda-meta" / "auto-infer-install").unlink()      # force an install attempt
    before = snapshot(workspace.prefix)
    r = run_cli(["install"], workspace.env)
    assert r.returncode == 1
    assert "1 of 4 artifacts are missing from the cache" in r.stderr
    assert "hello 1.0 (conda): not in the conda package cache" in r.stderr
    assert snapshot(workspace.prefix) == before


def test_refuses_when_a_cached_wheel_no_longer_matches_its_sha256(workspace: Workspace, online: object) -> None:
    warm(workspace)
    (workspace.prefix / "conda-meta" / "auto-infer-install").unlink()
    wheel = workspace.cache_root / "pypi" / "wheels" / "demo_extras-0.3-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes() + b"tampered")
    r = run_cli(["install"], workspace.env)
    assert r.returncode == 1 and "wheel content changed" in r.stderr


@pytest.mark.parametrize("case", ["unset", "missing", "no-lock", "no-toml"])
def test_template_problems_fail_fast_naming_the_variable(workspace: Workspace, case: str) -> None:
    env = dict(workspace.env)
    if case == "unset":
        env.pop("AUTO_INFER_SGLANG_TEMPLATE_DIR")
    elif case == "missing":
        env["AUTO_INFER_SGLANG_TEMPLATE_DIR"] = str(workspace.template / "nope")
    elif case == "no-lock":
        (workspace.template / "pixi.lock").unlink()
    else:
        (workspace.template / "pixi.toml").unlink()
    r = run_cli(["install"], env)
    assert r.returncode == 1, r.stderr
    assert "AUTO_INFER_SGLANG_TEMPLATE_DIR" in r.stderr
    assert "Traceback" not in r.stderr
    assert not workspace.prefix.exists()


def test_auto_infer_env_prints_the_contract_for_eval(workspace: Workspace) -> None:
    r = run_cli(["env"], workspace.env)
    assert r.returncode == 0
    lines = dict(ln[len("export "):].split("=", 1) for ln in r.stdout.splitlines())
    root = workspace.cache_root
    assert lines["PIXI_CACHE_DIR"] == str(root / "pixi")
    assert lines["RATTLER_CACHE_DIR"] == str(root / "conda" / "rattler")
    assert lines["UV_CACHE_DIR"] == str(root / "pypi" / "uv")
    assert lines["XDG_CACHE_HOME"] == str(root / "xdg")


def test_check_names_a_missing_module_and_the_environment(workspace: Workspace, online: object) -> None:
    warm(workspace)
    env = dict(workspace.env, AUTO_INFER_CHECK_MODULES="demo_extras,no_such_module_xyz")
    r = run_cli(["check"], env)
    assert r.returncode == 1
    assert "no_such_module_xyz: ModuleNotFoundError" in r.stderr and str(workspace.prefix) in r.stderr
    assert "Traceback" not in r.stderr


def test_check_requires_what_the_configs_engine_needs_when_the_variable_is_unset(
        workspace: Workspace, online: object) -> None:
    """AUTO_INFER_CHECK_MODULES unset: a vLLM config requires torch + vllm (not sglang, which a vLLM
    template lacks), a llama.cpp config requires nothing (llama-server is not a Python module)."""
    warm(workspace)
    env = {k: v for k, v in workspace.env.items() if k != "AUTO_INFER_CHECK_MODULES"}
    configs = Path(__file__).parents[1] / "model-configs"
    vllm = run_cli(["check"], dict(env, AUTO_INFER_VLLM_CONFIG=str(configs / "vllm-qwen2-vl-7b.toml")))
    assert vllm.returncode == 1 and "Traceback" not in vllm.stderr
    assert "vllm: ModuleNotFoundError" in vllm.stderr and "sglang: " not in vllm.stderr
    assert "AUTO_INFER_CHECK_MODULES=torch,vllm" in vllm.stderr
    llama = run_cli(["check"], dict(env, AUTO_INFER_LLAMA_CPP_CONFIG=str(configs / "llamacpp-glm-4.7-q2k.toml")))
    assert llama.returncode == 0, llama.stderr
    assert json.loads((workspace.root / ".auto-infer" / "check.json").read_text())["required"] == []
    sglang = run_cli(["check"], env)             # no config at all: the plan's torch,sglang
    assert sglang.returncode == 1 and "sglang: ModuleNotFoundError" in sglang.stderr


def test_check_requires_nothing_for_a_config_whose_instances_all_run_a_command(
        workspace: Workspace, online: object, tmp_path: Path) -> None:
    """The variable's doc: unset, `command =` instances need no module. A config whose every instance
    runs a `command` (the demo's) was recognised as SGLang's and `check` demanded torch,sglang; one
    SGLang instance beside them still requires them."""
    warm(workspace)
    env = {k: v for k, v in workspace.env.items() if k != "AUTO_INFER_CHECK_MODULES"}
    config = tmp_path / "command.toml"
    config.write_text('[instance.control]\ncommand = ["my-server", "--port", "{port}"]\n'
                      '[instance.a.server]\nport = 31001\n[instance.b.server]\nport = 31002\n')
    r = run_cli(["check"], dict(env, AUTO_INFER_SGLANG_CONFIG=str(config)))
    assert r.returncode == 0, r.stderr
    assert json.loads((workspace.root / ".auto-infer" / "check.json").read_text())["required"] == []
    config.write_text(config.read_text() + '[instance.c.control]\ncommand = []\n'
                      '[instance.c.server]\nport = 31003\nmodel_path = "/m"\n')
    mixed = run_cli(["check"], dict(env, AUTO_INFER_SGLANG_CONFIG=str(config)))
    assert mixed.returncode == 1 and "AUTO_INFER_CHECK_MODULES=torch,sglang" in mixed.stderr, mixed.stderr
