"""`auto-infer k8s`: the ten defects an outside check against SGLang's and LWS's own examples found
(issue 23), one test each, through the CLI as a user runs it (its stdout is the manifests). Each
failed on the code before the fix (run against it with PYTHONPATH pointing at the old tree).
"""

from __future__ import annotations

import os
from pathlib import Path

from auto_infer.core import settings as settings_mod
from auto_infer.k8s import plan
from auto_infer.serve import config
from auto_infer.serve.model import Router
from tests import k8s_checks as checks
from tests.helpers import realworld
from tests.test_k8s_semantics import NNODES_2, REPO, SHIPPED, TWO_NODE, cli, kind

INSTALL_AND_LOCK_MIN = 600      # s: the least a pod may spend installing and waiting for the lock

def test_2_the_gateway_runs_what_the_documented_image_and_environment_have(tmp_path: Path) -> None:
    rc, all_docs, err = cli(tmp_path, TWO_NODE)
    assert rc == 0, err
    assert checks.executables_exist(all_docs) == []
    argv = kind(all_docs, "Deployment", "auto-infer-gateway")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "smg" not in argv and "-m sglang_router.launch_router" in argv[2]


def test_3_the_leader_service_selects_the_leader_pod(tmp_path: Path) -> None:
    rc, all_docs, err = cli(tmp_path, TWO_NODE)
    assert rc == 0, err
    assert checks.services_select_pods(all_docs) == []
    svc = kind(all_docs, "Service", "auto-infer-glm-4-7-2node-leader")
    leader = [t for _, role, _, t in checks.pods(all_docs) if role == "leader"]
    worker = [t for _, role, _, t in checks.pods(all_docs) if role == "worker"]
    assert all(checks._selects(svc["spec"]["selector"], t["metadata"]["labels"]) for t in leader)
    assert not any(checks._selects(svc["spec"]["selector"], t["metadata"]["labels"]) for t in worker)


def test_4_router_enable_false_and_its_keys_are_honoured(tmp_path: Path) -> None:
    rc, all_docs, err = cli(tmp_path, SHIPPED / "example.toml")        # [router] enable = false
    assert rc == 0, err
    assert not [d for d in all_docs if "gateway" in d["metadata"]["name"]]
    text = (SHIPPED / "sglang-qwen2-vl-7b-tp2.toml").read_text() + """
[instance.other.server]
model_path = "/llm-models/other"
[router]
port = 31000
prometheus_port = 29100
instances = ["qwen2_vl_7b"]
extra_args = ["--log-level", "debug"]
"""
    rc, all_docs, err = cli(tmp_path, text)
    assert rc == 0, err
    c = kind(all_docs, "Deployment", "auto-infer-gateway")["spec"]["template"]["spec"]["containers"][0]
    argv = c["command"]
    assert argv[argv.index("--prometheus-port") + 1] == "29100" and argv[-2:] == ["--log-level", "debug"]
    assert {p["containerPort"] for p in c["ports"]} == {31000, 29100}
    fronted = [t["metadata"]["labels"]["app.kubernetes.io/instance"] for _, _, _, t in checks.pods(all_docs)
               if t["metadata"]["labels"].get(plan.GATEWAY_LABEL) == "true"]
    assert fronted == ["auto-infer-qwen2-vl-7b"]                       # not "other"


def test_5_the_installer_is_resolved_in_the_pod_not_on_the_renderer(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pixi").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "pixi").chmod(0o755)
    rc, all_docs, err = cli(tmp_path, SHIPPED / "sglang-qwen2-vl-7b-tp2.toml",
                            PATH=f"{bin_dir}:{os.environ['PATH']}")
    assert rc == 0, err
    for _, _, _, tpl in checks.pods(all_docs):
        for c in tpl["spec"]["containers"]:
            assert not [e for e in c.get("env", []) if e["name"] == "AUTO_INFER_INSTALLER"], c["name"]


def test_6_storage_class_is_set_and_the_docs_say_the_access_modes(tmp_path: Path) -> None:
    rc, all_docs, err = cli(tmp_path, TWO_NODE, "--storage-class", "cephfs")
    assert rc == 0, err
    pvc = kind(all_docs, "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == "cephfs" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    text = (REPO / "docs" / "kubernetes.md").read_text()
    assert "--storage-class" in text and "ReadWriteOnce" in text and "ReadWriteMany" in text


def test_7_the_startup_window_covers_install_lock_wait_and_load(tmp_path: Path) -> None:
    rc, all_docs, err = cli(tmp_path, TWO_NODE)
    assert rc == 0, err
    leader = next(t for _, role, _, t in checks.pods(all_docs) if role == "leader")["spec"]["containers"][0]
    probe = leader["startupProbe"]
    env = {e["name"]: e.get("value") for e in leader["env"]}
    window = probe["periodSeconds"] * probe["failureThreshold"]
    lock = float(env.get("AUTO_INFER_LOCK_TIMEOUT") or 3600)
    assert window >= 3600 + lock + INSTALL_AND_LOCK_MIN    # ready_timeout 3600, the lock wait, an install


def test_8_a_worker_asks_for_its_node_s_gpus_and_the_gateway_port_is_serve_s(tmp_path: Path) -> None:
    text = TWO_NODE.read_text().replace('gpu_ids = "0,1,2,3,4,5,6,7"', f'gpu_ids = "{",".join(map(str, range(16)))}"')
    text = text.replace("port = 8000\n", "")                         # [router] port left to the default
    rc, all_docs, err = cli(tmp_path, text)
    assert rc == 0, err
    limits = {role: t["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
              for _, role, _, t in checks.pods(all_docs) if role in ("leader", "worker")}
    assert limits == {"leader": 8, "worker": 8}                        # tp 16 over 2 nodes
    svc = kind(all_docs, "Service", "auto-infer-gateway")
    assert svc["spec"]["ports"][0]["port"] == Router().port          # the port `serve` gives the gateway


def test_9_a_vllm_config_renders_with_vllm_s_routes(tmp_path: Path) -> None:
    rc, all_docs, err = cli(tmp_path, SHIPPED / "vllm-qwen2-vl-7b.toml")
    assert rc == 0, err
    c = kind(all_docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert c["name"] == "vllm" and c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["ports"][0]["containerPort"] == 8000 and c["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_10_two_nodes_need_only_nnodes(tmp_path: Path) -> None:
    rc, all_docs, err = cli(tmp_path, SHIPPED / "sglang-qwen2-vl-7b-tp2.toml", AUTO_INFER_SGLANG_OVERRIDES=NNODES_2)
    assert rc == 0, err
    lws = kind(all_docs, "LeaderWorkerSet")
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert checks.servers_listen_where_probed(all_docs, tmp_path) == []      # ranks 0, 1; the leader's address


RELATIVE_LOGS = """[instance.control]
log_dir = "logs"
[instance.a.server]
model_path = "/llm-models/a"
[instance.b.control]
log_file = "b/server.log"
[instance.b.server]
model_path = "/llm-models/b"
"""


def _pod_logs(all_docs: list[dict], tmp: Path) -> dict[str, Path]:
    """Each server pod's log path as `serve` resolves it there: the config file in its own folder
    (the ConfigMap mount), the pod's env (overrides included) as Kubernetes gives it."""
    maps = {d["metadata"]["name"]: d["data"][plan.CONFIG_FILE] for d in all_docs if d["kind"] == "ConfigMap"}
    out = {}
    for doc, _, _, tpl in checks.pods(all_docs):
        if doc["kind"] != "Deployment":
            continue
        (volume,) = [v for v in tpl["spec"]["volumes"] if "configMap" in v]
        folder = tmp / "maps" / volume["configMap"]["name"]
        folder.mkdir(parents=True)
        (folder / plan.CONFIG_FILE).write_text(maps[volume["configMap"]["name"]])
        env = checks._env(tpl["spec"]["containers"][0], {})
        s = settings_mod.load({**env, "AUTO_INFER_SGLANG_CONFIG": str(folder / plan.CONFIG_FILE)})
        (inst,) = config.load(s).enabled()
        log = inst.control.log_file or inst.control.log_dir
        assert log is not None
        out[inst.name] = log if inst.control.log_file else log / inst.name / "server.log"
    return out


def test_a_relative_log_path_is_on_the_workspace_not_beside_the_read_only_config(tmp_path: Path) -> None:
    """control.log_dir / log_file are relative to the config's folder; in a pod that folder is the
    ConfigMap's read-only mount, where `serve` cannot make the log: the pod would crash-loop."""
    rc, all_docs, err = cli(tmp_path, RELATIVE_LOGS)
    assert rc == 0, err
    logs = _pod_logs(all_docs, tmp_path)
    assert logs == {"a": Path(plan.WORKSPACE, "logs", "a", "server.log"), "b": Path(plan.WORKSPACE, "b", "server.log")}
    assert "instance a: control.log_dir is relative to the config's folder" in err and plan.CONFIG_DIR in err
    # infer-dev's real config logs to an absolute /tmp: left as it is
    (tmp_path / "real").mkdir()
    rc, all_docs, err = cli(tmp_path / "real", realworld("sglang-glm-4.7-tp8.toml"))
    assert rc == 0, err
    assert _pod_logs(all_docs, tmp_path / "real") == {"glm_4_7_tp8": Path("/tmp/glm_4_7_tp8/server.log")}
