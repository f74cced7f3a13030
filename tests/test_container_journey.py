"""The product in a real container engine, the way infer-dev's users run it: each step a real compose
command on the SHIPPED compose files (compose/), on top of a stand-in for infer-dev's own file.

online boot warms the caches from a mirror on the host -> down -> offline boot (network_mode: none)
installs from the caches, checks, serves, chats; nothing downloaded -> restart skips the install ->
supervise as PID 1 restarts a killed server and stops cleanly -> a bundle imported offline and served.
docs/container.md shows the same journey with its real output."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from auto_infer.core.net import free_port
from auto_infer.demo import mirror
from tests.container_engine import Built
from tests.container_stack import Stack, make_stack, share_inodes

pytestmark = pytest.mark.container

TEMPLATE = ("docker-compose.sglang-template.yml",)
OFFLINE = (*TEMPLATE, "docker-compose.offline.yml")
SUPERVISE = (*OFFLINE, "docker-compose.supervise.yml")


@pytest.fixture(params=["docker", "podman"])
def image(request: pytest.FixtureRequest) -> Built:
    return request.getfixturevalue(f"{request.param}_image")      # type: ignore[no-any-return]


def answered(stack: Stack) -> str:
    r = stack.exec("auto-infer", "chat")
    assert r.returncode == 0, r.stdout + r.stderr
    [line] = [ln for ln in r.stdout.splitlines() if ln.startswith(("smollm2: ", "demo: "))]
    answer = line.split(": ", 1)[1]
    assert answer.strip(), r.stdout
    if stack.engine_name == "llama-server":
        assert "paris" in answer.lower(), answer
    return answer


def online_boot(stack: Stack, m: mirror.Mirror) -> None:
    """(1) the warm gate on the host network fills the caches in the workspace from the host's mirror."""
    r = stack.compose(TEMPLATE, "up", "-d", AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT="1")
    assert r.returncode == 0, r.stderr
    status, log = stack.next_boot()
    assert status == 0 and "boot: done: warm" in log, log
    assert (stack.ws / ".cache" / "sglang-infer" / "cache-manifest.json").is_file()
    assert any(p.endswith(".tar.bz2") for p in m.requests), m.requests
    r = stack.exec("auto-infer", "bundle", "export", "/offline-data/transfer/bundle.tar")
    assert r.returncode == 0, r.stdout + r.stderr
    assert stack.compose(TEMPLATE, "down").returncode == 0
    shutil.rmtree(stack.ws / "sglang-infer")      # warm installed it too: keep only the caches


def offline_boot(stack: Stack, m: mirror.Mirror) -> float:
    """(2) network_mode: none, the serve gate: install from the caches, check, serve, ready, chat."""
    before = len(m.requests)
    t0 = time.monotonic()
    r = stack.compose(OFFLINE, "up", "-d", AUTO_INFER_SGLANG_ON_BOOT="1")
    assert r.returncode == 0, r.stderr
    status, log = stack.next_boot()
    up_to_ready = time.monotonic() - t0
    assert status == 0 and "install needed" in log and "boot: done: install → check → serve" in log, log
    answered(stack)
    assert len(m.requests) == before                    # the mirror was up the whole time: 0 requests
    nics = stack.exec("cat", "/proc/net/dev").stdout
    assert [ln.split(":")[0].strip() for ln in nics.splitlines()[2:]] == ["lo"], nics
    linked, copies = share_inodes(stack)
    # every file of every package (conda and wheel) is a hard link into the cache; only what the install
    # or Python wrote there is not: conda-meta/ records, a wheel's RECORD/INSTALLER/..., __pycache__
    written = ("conda-meta/", "__pycache__/", "CACHEDIR.TAG", ".lock", ".dist-info/")
    assert linked >= 6 and all(any(w in p for w in written) for p in copies), (linked, copies)
    return up_to_ready


def restart(stack: Stack) -> float:
    """(3) restart: the lock did not change, so boot skips the install and serves again."""
    t0 = time.monotonic()
    assert stack.compose(OFFLINE, "restart", "stage-2", AUTO_INFER_SGLANG_ON_BOOT="1").returncode == 0
    status, log = stack.next_boot()
    ready = time.monotonic() - t0
    assert status == 0 and "boot:install (up to date" in log and "install needed" not in log, log
    answered(stack)
    assert stack.compose(OFFLINE, "down").returncode == 0
    return ready


def supervise(stack: Stack) -> None:
    """(4) supervise as PID 1: a killed server is restarted; `stop` ends it all, exit 0, records say stopped."""
    assert stack.compose(SUPERVISE, "up", "-d").returncode == 0
    first = stack.wait_status("ready")
    assert stack.exec("bash", "-c", f"kill -KILL {first['pid']}").returncode == 0
    again = stack.wait_status("ready", not_pid=first["pid"])
    answered(stack)
    logs = stack.compose(SUPERVISE, "logs", "--no-color", "stage-2").stdout
    assert "restart" in logs.lower(), logs[-3000:]
    t0 = time.monotonic()
    r = stack.compose(SUPERVISE, "stop")
    assert r.returncode == 0, r.stderr
    state = stack.state()
    assert state["Status"] == "exited" and state["ExitCode"] == 0, state
    assert time.monotonic() - t0 < 90                     # inside stop_grace_period: not killed
    after = stack.compose(OFFLINE, "run", "--rm", "--no-deps", "stage-2", "auto-infer", "status", "--json")
    assert '"state": "stopped"' in after.stdout and again["pid"] is not None, after.stdout + after.stderr
    assert stack.compose(SUPERVISE, "down").returncode == 0


def bundle_import(stack: Stack, tmp: Path) -> None:
    """(5) a fresh workspace: `bundle import` of a mounted file in an offline container, then serve."""
    fresh = tmp / "ws2"
    (fresh / "sglang-configs").mkdir(parents=True)
    (fresh / "sglang-configs" / "sglang.toml").write_text((stack.ws / "sglang-configs" / "sglang.toml").read_text())
    nothing = tmp / "no-template"                   # the air-gapped side has only the bundle
    nothing.mkdir()
    script = ("auto-infer bundle import /transfer/bundle.tar "
              "&& export AUTO_INFER_SGLANG_TEMPLATE_DIR=$(echo /offline-data/imported-templates/*) "
              "&& auto-infer serve && auto-infer chat; s=$?; auto-infer stop; exit $s")
    r = stack.compose(OFFLINE, "run", "--rm", "-v", f"{stack.ws / 'transfer'}:/transfer:ro", "stage-2",
                      "bash", "-c", script, HOST_VOLUME_WORKSPACE_DIR=str(fresh),
                      HOST_VOLUME_SGLANG_TEMPLATE_DIR=str(nothing))
    said = r.stdout + r.stderr
    assert r.returncode == 0, said[-5000:]
    assert "✓ bundle import: bundle.tar" in said and "install needed" in said and "ready in" in said, said


def test_compose_journey(image: Built, tmp_path: Path) -> None:
    port = free_port()
    stack = make_stack(image, tmp_path, port)
    try:
        with mirror.Mirror(tmp_path / "channel", port) as m:
            online_boot(stack, m)
            offline_boot(stack, m)
            restart(stack)
        supervise(stack)
        bundle_import(stack, tmp_path)
    finally:
        stack.compose(SUPERVISE, "down", "-v", timeout=300)
        (tmp_path / "transcript.txt").write_text("\n".join(stack.transcript) + "\n" + stack.boot_log())


# ---- bad input in the container: the boot log's clear last line, exit 1, the command still runs ----

def boot_fails(stack: Stack, files: tuple[str, ...], **env: str) -> str:
    """`compose run` of the container's own command with a boot that fails: what the hook said."""
    r = stack.compose(files, "run", "--rm", "stage-2", "echo", "the container's own command ran", **env)
    said = r.stdout + r.stderr                          # podman-compose run: the container's stderr is in stdout
    assert r.returncode == 0 and r.stdout.strip().endswith("the container's own command ran"), said
    hook = [ln for ln in said.splitlines() if ln.startswith("[auto-infer-boot]")]
    assert "exit 1: a step failed or a setting was refused (the ✗ or auto-infer: line above says why)" in hook[-1], said
    assert "auto-infer boot failed (exit 1)" in said, said
    return said


def test_bad_input_in_the_container(image: Built, tmp_path: Path) -> None:
    port = free_port()
    stack = make_stack(image, tmp_path, port)
    template = stack.env["HOST_VOLUME_SGLANG_TEMPLATE_DIR"]
    empty = tmp_path / "empty-template"
    empty.mkdir()
    said = boot_fails(stack, OFFLINE, AUTO_INFER_SGLANG_INSTALL_ON_BOOT="1", HOST_VOLUME_SGLANG_TEMPLATE_DIR=str(empty))
    assert "✗ template failed" in said and "pixi.toml" in said, said
    said = boot_fails(stack, OFFLINE, AUTO_INFER_SGLANG_INSTALL_ON_BOOT="1")       # nothing warmed yet
    assert "the cache was never warmed" in said, said
    assert stack.boot_log().rstrip().splitlines()[-1].split("] ", 1)[1] in said   # the log's last line, too
    (stack.folder / "readonly.yml").write_text(          # a user's own file mounting the workspace read-only
        "services:\n  stage-2:\n    volumes:\n    - ${HOST_VOLUME_WORKSPACE_DIR}:/offline-data:ro\n")
    said = boot_fails(stack, (*OFFLINE, "readonly.yml"), AUTO_INFER_SGLANG_INSTALL_ON_BOOT="1")
    assert "read-only" in said and "log: /tmp/auto-infer-boot.log" in said, said
    with mirror.Mirror(tmp_path / "channel", port):
        r = stack.compose(TEMPLATE, "run", "--rm", "stage-2", "true", AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT="1")
        assert r.returncode == 0, r.stderr
    said = boot_fails(stack, OFFLINE, AUTO_INFER_SGLANG_ON_BOOT="1", AUTO_INFER_SGLANG_CONFIG="/offline-data/nope.toml")
    assert "/offline-data/nope.toml" in said, said
    assert template                                       # the good template stayed mounted for the others
    (tmp_path / "transcript.txt").write_text("\n".join(stack.transcript))
