"""The rendered pods' containers, run for real (issue 23): each pod template's container spec — the
image built the documented way (tests/container_engine.py), its command (as the ENTRYPOINT, as
Kubernetes does), its env (LWS variables filled as LWS fills them, $(VAR) expanded as Kubernetes
does), its volume mounts (the claim as one shared host folder with its subPaths, the ConfigMap as a
folder, /dev/shm as a tmpfs) — on a private Docker with no network.

The small engine: the environment is the test channel's (a Python package standing on the image's
own python3, a wheel), warmed once in a container from the channel on 127.0.0.1 as `auto-infer
warm` would on a connected machine; the server is the test responder on SGLang's path
(``server_module``) run by the image's own Python, joining its ranks as SGLang does (--wait-ranks).
The environment also holds the real sglang-router (0.3.2 and its wheels, downloaded once into
the container cache folder), so the gateway pod runs exactly what it runs on a cluster. What differs
from the rendered spec is said where the test sets it.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auto_infer.core import settings
from auto_infer.core.net import free_port
from auto_infer.demo import channel, mirror
from auto_infer.k8s import plan, render
from tests import k8s_checks as checks
from tests.container_engine import CI_DIR, Built, _locked
from tests.container_engine import _run as run_cmd
from tests.helpers import small_channel_specs

pytestmark = pytest.mark.container

PORT, WAIT = 30000, 180.0
ROUTER = "sglang-router==0.3.2"
TOOL_PYTHON = "/opt/auto-infer/venv/bin/python"      # install-auto-infer.sh's venv in the image
SMALL_ENGINE = {"AUTO_INFER_CHECK_MODULES": "demo_extras"}    # the test channel has no torch/sglang
CONFIG = f"""[master]
python_path = "{TOOL_PYTHON}"
server_module = "auto_infer.demo.responder"

[instance.control]
ready_timeout = 120
stop_grace = 5

[instance.server]
port = {PORT}

[instance.pair.server]
model_path = "/llm-models/tiny"
served_model_name = "tiny"
nnodes = 2
extra_args = ["--wait-ranks"]

[router]
policy = "round_robin"
"""


@dataclass
class Claim:
    image: Built
    root: Path                      # the claim: workspace/, sglang-template/, llm-models/
    files: dict[str, str]           # the rendered manifests
    maps: Path                      # one folder per ConfigMap

    def docs(self) -> list[dict[str, Any]]:
        return checks.docs(self.files)


def _image_python(image: Built) -> channel.HostPython:
    r = image.engine.cli("run", "--rm", "--network", "none", "--entrypoint", "python3", image.tag, "-c",
                         channel.HOST_QUERY, timeout=300)
    assert r.returncode == 0, r.stderr
    exe, version, dirs = json.loads(r.stdout.strip().splitlines()[-1])
    return channel.HostPython(exe, version, tuple(dirs))


def router_wheels() -> list[Path]:
    """sglang-router and its dependencies as CPython 3.11 manylinux wheels, once per machine."""
    folder = CI_DIR / f"router-wheels-{ROUTER.split('==')[1]}"
    if not (folder / ".done").is_file():
        with _locked(CI_DIR / "router-wheels.lock"):
            if not (folder / ".done").is_file():
                shutil.rmtree(folder, ignore_errors=True)
                platforms = [a for m in (17, 28, 34) for a in ("--platform", f"manylinux_2_{m}_x86_64")]
                r = run_cmd([sys.executable, "-m", "pip", "download", "-q", "--dest", str(folder), "--only-binary",
                             ":all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi",
                             "abi3", "--abi", "none", "--platform", "manylinux2014_x86_64", *platforms, ROUTER])
                if r.returncode != 0:
                    pytest.skip(f"cannot download {ROUTER} and its wheels: {r.stderr.strip()[-300:]}")
                (folder / ".done").write_text("")
    return sorted(folder.glob("*.whl"))


@pytest.fixture(scope="module")
def claim(docker_image: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Claim]:
    """The claim after a connected machine warmed it: caches and template, no environment yet."""
    base = tmp_path_factory.mktemp("k8s-pods")
    conda, wheels = small_channel_specs()
    port = free_port()
    built = channel.build(base / "channel", f"http://127.0.0.1:{port}",
                          [channel.python_spec(_image_python(docker_image)), *conda[1:]], wheels,
                          real_wheels=router_wheels())
    root = base / "claim"
    shutil.copytree(built.project, root / "sglang-template")
    (root / "workspace").mkdir(parents=True)
    (root / "llm-models" / "tiny").mkdir(parents=True)
    (root / "llm-models" / "tiny" / "config.json").write_text("{}\n")
    (root / "llm-models" / "tiny" / "model.safetensors").write_bytes(b"\0" * 8)   # a model folder: weights too
    cfg = base / "pair.toml"
    cfg.write_text(CONFIG)
    s = settings.load({"AUTO_INFER_WORKSPACE_DIR": str(base / "render-ws"), "AUTO_INFER_SGLANG_CONFIG": str(cfg)})
    files = render.render(*render.load(s), plan.Options(image=docker_image.tag))
    maps = base / "configmaps"
    for d in checks.docs(files):
        if d["kind"] == "ConfigMap":
            (maps / d["metadata"]["name"]).mkdir(parents=True)
            for key, text in d["data"].items():
                (maps / d["metadata"]["name"] / key).write_text(text)
    c = Claim(docker_image, root, files, maps)
    with mirror.Mirror(built.root, port):      # the connected machine: warm fills the caches
        job = _pod(c, "Job", "job")
        r = _run(c, job, "warm", ["--network", "host", "--rm"], command=["auto-infer", "warm"])
        assert r.returncode == 0, r.stdout + r.stderr
    yield c
    docker_image.engine.remove_containers()


def _pod(c: Claim, kind: str, role: str) -> dict[str, Any]:
    return next(t for d, r, _, t in checks.pods(c.docs()) if d["kind"] == kind and r == role)


def _env(container: dict[str, Any], lws: dict[str, str], extra: dict[str, str]) -> list[str]:
    """-e NAME=VALUE as Kubernetes sets them: LWS's first, $(VAR) expanded from earlier ones."""
    env = dict(lws)
    for e in container.get("env", []):
        env[e["name"]] = checks.VAR.sub(lambda m: env.get(m.group(1), m.group(0)), e["value"])
    env.update(extra)
    return [a for k, v in env.items() for a in ("-e", f"{k}={v}")]


def _mounts(c: Claim, spec: dict[str, Any], container: dict[str, Any]) -> list[str]:
    volumes = {v["name"]: v for v in spec["volumes"]}
    out: list[str] = []
    for m in container.get("volumeMounts", []):
        vol = volumes[m["name"]]
        if "emptyDir" in vol:
            out += ["--tmpfs", m["mountPath"]]
            continue
        src = c.root / m.get("subPath", "") if "persistentVolumeClaim" in vol else c.maps / vol["configMap"]["name"]
        out += ["-v", f"{src}:{m['mountPath']}{':ro' if m.get('readOnly') else ''}"]
    return out


def _run(c: Claim, tpl: dict[str, Any], name: str, how: list[str], *, lws: dict[str, str] | None = None,
         env: dict[str, str] | None = None, command: list[str] | None = None, timeout: float = 600) -> Any:
    """`docker run` of the pod template's first container; ``command`` replaces its command (warm only)."""
    spec = tpl["spec"]
    container = spec["containers"][0]
    argv = command or container["command"]
    return c.image.engine.cli("run", "--name", f"k8s-{name}", *how, *_mounts(c, spec, container),
                              *_env(container, lws or {}, {**SMALL_ENGINE, **(env or {})}),
                              "--entrypoint", argv[0], c.image.tag, *argv[1:], *container.get("args", []),
                              timeout=timeout)


def record(c: Claim, key: str) -> dict[str, Any]:
    path = c.root / "workspace" / ".auto-infer" / "serve" / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def test_the_install_job_completes_and_a_second_run_is_a_no_op(claim: Claim) -> None:
    job = _pod(claim, "Job", "job")
    first = _run(claim, job, "install-1", ["--network", "none", "--rm"])
    assert first.returncode == 0, first.stdout + first.stderr
    done = (
        claim.root / "workspace" / "sglang-infer" / ".pixi" / "envs" / "default" / "conda-meta" / "auto-infer-install"
    )
    assert done.is_file()
    before = done.stat().st_mtime_ns
    second = _run(claim, job, "install-2", ["--network", "none", "--rm"])
    assert second.returncode == 0, second.stdout + second.stderr
    assert re.search(r"install.*(up to date|skipped|nothing to do)", second.stderr), second.stderr
    assert done.stat().st_mtime_ns == before                              # nothing was installed again


def test_a_two_node_leader_and_worker_both_start_and_the_leader_becomes_ready(claim: Claim) -> None:
    leader, worker = _pod(claim, "LeaderWorkerSet", "leader"), _pod(claim, "LeaderWorkerSet", "worker")
    lws = {"LWS_LEADER_ADDRESS": "127.0.0.1", "LWS_GROUP_SIZE": "2"}   # the worker shares the leader's netns
    eng = claim.image.engine
    try:
        r = _run(claim, leader, "leader", ["-d", "--network", "none"], lws={**lws, "LWS_WORKER_INDEX": "0"})
        assert r.returncode == 0, r.stderr
        r = _run(claim, worker, "worker", ["-d", "--network", "container:k8s-leader"],
                 lws={**lws, "LWS_WORKER_INDEX": "1"})
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and (record(claim, "pair").get("state"), record(
                claim, "pair@rank1").get("state")) != ("ready", "running"):
            time.sleep(1)
        logs = eng.cli("logs", "k8s-leader", timeout=60)
        wlogs = eng.cli("logs", "k8s-worker", timeout=60)
        assert record(claim, "pair").get("state") == "ready", logs.stdout + logs.stderr + wlogs.stdout + wlogs.stderr
        assert record(claim, "pair@rank1").get("state") == "running", wlogs.stdout + wlogs.stderr
        assert "a rank joined" in logs.stdout and "joined the leader at 127.0.0.1:20000" in wlogs.stdout
        probe = leader["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]
        assert ask(claim, f"http://127.0.0.1:{PORT}{probe}") == "200"
        _gateway(claim)
        for name in ("k8s-gateway", "k8s-worker", "k8s-leader"):        # a pod's deletion: SIGTERM
            stopped = eng.cli("stop", "-t", "30", name, timeout=120)
            assert stopped.returncode == 0, stopped.stderr
            state = eng.cli("inspect", "-f", "{{.State.ExitCode}}", name, timeout=60).stdout.strip()
            assert state == "0", (name, state)
    finally:
        eng.cli("rm", "-f", "k8s-gateway", "k8s-worker", "k8s-leader", timeout=120)


def ask(c: Claim, url: str, body: dict[str, Any] | None = None) -> str:
    """An HTTP request from inside the group's network namespace: the status, or the reply's content."""
    code = ("import json, sys, urllib.request as u\n"
            "data = sys.argv[2].encode() if sys.argv[2] else None\n"
            "r = u.urlopen(u.Request(sys.argv[1], data, {'Content-Type': 'application/json'}), timeout=20)\n"
            "print(json.loads(r.read())['choices'][0]['message']['content'] if data else r.status)")
    r = c.image.engine.cli("exec", "k8s-leader", "python3", "-c", code, url, json.dumps(body) if body else "",
                           timeout=60)
    return r.stdout.strip() or r.stderr.strip()[-300:]


def _gateway(c: Claim) -> None:
    """The gateway pod's container, in the group's network namespace. Its Kubernetes service
    discovery needs an API server: the one change is --worker-urls with the leader's address, what
    discovery would find (the pods carrying the label its --selector names)."""
    gw = next(t for d, _, _, t in checks.pods(c.docs()) if d["metadata"]["name"] == "auto-infer-gateway")
    argv = list(gw["spec"]["containers"][0]["command"])
    at = argv.index("--service-discovery")
    argv[at:at + 7] = ["--worker-urls", f"http://127.0.0.1:{PORT}"]
    assert not any(a.startswith("--service-discovery") or a == "--selector" for a in argv), argv
    r = _run(c, gw, "gateway", ["-d", "--network", "container:k8s-leader"], command=argv)
    assert r.returncode == 0, r.stderr
    port = gw["spec"]["containers"][0]["ports"][0]["containerPort"]
    deadline, status = time.monotonic() + WAIT, ""
    while time.monotonic() < deadline and status != "200":
        status = ask(c, f"http://127.0.0.1:{port}/readiness")
        time.sleep(1)
    logs = c.image.engine.cli("logs", "k8s-gateway", timeout=60)
    assert status == "200", logs.stdout[-3000:] + logs.stderr[-3000:]
    said = ask(c, f"http://127.0.0.1:{port}/v1/chat/completions",
               {"model": "tiny", "messages": [{"role": "user", "content": "through the gateway"}]})
    assert said == "Hello from tiny. You said: through the gateway", logs.stdout[-3000:] + logs.stderr[-3000:]
