"""`auto-infer k8s`: the manifests are valid Kubernetes (kubernetes-validate, core kinds at
K8S_VERSION; the LeaderWorkerSet against the vendored LWS CRD), match the goldens, and the SGLang
argv each pod would run (its env applied to the ConfigMap's config) parses with SGLang's parser.

Regenerate the goldens after an intended change: K8S_GOLDEN_UPDATE=1 pytest tests/test_k8s.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate as kv
import pytest
import yaml

from auto_infer.core import settings
from auto_infer.k8s import outdir, plan, render
from auto_infer.serve import config, launch, registry
from auto_infer.serve.engines import base as argv_rules
from auto_infer.serve.engines import preflight
from auto_infer.serve.engines import sglang as sglang_engine
from auto_infer.serve.model import Instance
from tests import lws_schema
from tests.helpers import run_cli

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "k8s"
K8S_VERSION = "1.31.0"          # the stated Kubernetes version the core kinds are validated at
UPDATE = os.environ.get("K8S_GOLDEN_UPDATE") == "1"
VENV = os.environ.get("AUTO_INFER_SGLANG_VENV", "")   # read at import: the autouse fixture clears AUTO_INFER_*
CASES = {
    "qwen2-vl-tp2": (REPO / "model-configs" / "sglang-qwen2-vl-7b-tp2.toml",
                     plan.Options(namespace="llm", image="registry.example/auto-infer:0.1")),
    "glm-4.7-tp8": (REPO / "model-configs" / "sglang-glm-4.7-tp8.toml",
                    plan.Options(namespace="llm", image="registry.example/auto-infer:0.1", claim="llm-workspace",
                                 models_claim="llm-models")),
    "glm-4.7-2node": (DATA / "sglang-glm-4.7-2node.toml",
                      plan.Options(namespace="llm", image="registry.example/auto-infer:0.1",
                                   bundle="bundles/auto-infer-bundle.tar")),
}
LWS_ENV = {"LWS_LEADER_ADDRESS": "auto-infer-glm-4-7-2node-0.auto-infer-glm-4-7-2node.llm", "LWS_GROUP_SIZE": "2"}


def rendered(case: str, tmp_path: Path, **env: str) -> dict[str, str]:
    path, opts = CASES[case]
    s = settings.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path), "AUTO_INFER_SGLANG_CONFIG": str(path), **env})
    cfg, data = render.load(s)
    return render.render(cfg, data, opts)


def docs(files: dict[str, str]) -> list[dict[str, Any]]:
    return [d for text in files.values() for d in yaml.safe_load_all(text)]


def pod_templates(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(role, pod template) of a workload: server, leader/worker, or job."""
    if doc["kind"] == "LeaderWorkerSet":
        t = doc["spec"]["leaderWorkerTemplate"]
        return [("leader", t["leaderTemplate"]), ("worker", t["workerTemplate"])]
    kinds = {"Deployment": "server", "Job": "job"}
    return [(kinds[doc["kind"]], doc["spec"]["template"])] if doc["kind"] in kinds else []


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_match_the_goldens(case: str, tmp_path: Path) -> None:
    files = rendered(case, tmp_path)
    golden = DATA / "golden" / case
    if UPDATE:
        shutil.rmtree(golden, ignore_errors=True)
        outdir.write(files, golden)
        (golden / outdir.LIST).unlink()
    assert sorted(p.name for p in golden.glob("*.yaml")) == sorted(files)
    for name, text in files.items():
        assert (golden / name).read_text() == text, f"{case}/{name} differs (K8S_GOLDEN_UPDATE=1 to accept)"
    assert rendered(case, tmp_path) == files          # deterministic


@pytest.mark.parametrize("case", sorted(CASES))
def test_core_kinds_pass_kubernetes_validate(case: str, tmp_path: Path) -> None:
    checked = 0
    for doc in docs(rendered(case, tmp_path)):
        if doc["kind"] == "LeaderWorkerSet":
            for _, template in pod_templates(doc):    # its pod templates are core PodSpecs
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lws-pod", **template["metadata"]},
                       "spec": template["spec"]}
                assert kv.validate(pod, K8S_VERSION, strict=True) == "1.31"
            continue
        assert kv.validate(doc, K8S_VERSION, strict=True) == "1.31", doc["kind"]
        checked += 1
    assert checked >= 4


def test_kubernetes_validate_rejects_a_broken_deployment(tmp_path: Path) -> None:
    """The check above can fail: a misspelt probe field in our Deployment is caught."""
    doc = next(d for d in docs(rendered("qwen2-vl-tp2", tmp_path)) if d["kind"] == "Deployment")
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["readynessProbe"] = container.pop("readinessProbe")
    with pytest.raises(kv.ValidationError, match="readynessProbe"):
        kv.validate(doc, K8S_VERSION, strict=True)


def test_leaderworkerset_matches_the_lws_crd(tmp_path: Path) -> None:
    all_docs = docs(rendered("glm-4.7-2node", tmp_path))
    (lws,) = [d for d in all_docs if d["kind"] == "LeaderWorkerSet"]
    assert lws_schema.errors(lws) == []
    services = [d["metadata"]["name"] for d in all_docs if d["kind"] == "Service"]
    assert lws["metadata"]["name"] not in services      # LWS owns the headless Service of its own name
    t = lws["spec"]["leaderWorkerTemplate"]
    assert t["size"] == 2 and t["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader, worker = t["leaderTemplate"]["spec"]["containers"][0], t["workerTemplate"]["spec"]["containers"][0]
    assert "readinessProbe" in leader and "ports" in leader            # only the leader serves and is probed
    assert not {"readinessProbe", "livenessProbe", "startupProbe", "ports"} & set(worker)
    assert leader["resources"]["limits"]["nvidia.com/gpu"] == worker["resources"]["limits"]["nvidia.com/gpu"] == 8
    broken = json.loads(json.dumps(lws))
    broken["spec"]["leaderWorkerTemplate"]["size"] = "two"
    broken["spec"]["leaderWorkerTemplate"]["restartPolicy"] = "Always"
    assert len(lws_schema.errors(broken)) == 2


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of an env value."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def pod_argvs(case: str, tmp_path: Path) -> dict[str, list[str]]:
    """role → the SGLang flags `serve` builds in that pod: its env applied to the ConfigMap's config."""
    return {role: argv_rules.server_flags(inst.server) for role, (_, inst) in pod_instances(case, tmp_path).items()}


def pod_instances(case: str, tmp_path: Path) -> dict[str, tuple[settings.Settings, Instance]]:
    """role → the settings and the instance `serve` reads in that pod (its env, LWS variables expanded)."""
    files = rendered(case, tmp_path)
    all_docs = docs(files)
    maps = {d["metadata"]["name"]: d["data"][plan.CONFIG_FILE] for d in all_docs if d["kind"] == "ConfigMap"}
    out: dict[str, tuple[settings.Settings, Instance]] = {}
    for doc in all_docs:
        for role, template in pod_templates(doc):
            if role == "job" or template["metadata"]["labels"].get("app.kubernetes.io/component") != "server":
                continue
            (volume,) = [v for v in template["spec"]["volumes"] if "configMap" in v]
            cfg_path = tmp_path / f"{volume['configMap']['name']}.toml"
            cfg_path.write_text(maps[volume["configMap"]["name"]])
            lws = {**LWS_ENV, "LWS_WORKER_INDEX": "1" if role == "worker" else "0"} if role != "server" else {}
            env = {
                e["name"]: _expand(e["value"], lws) for e in template["spec"]["containers"][0]["env"] if "value" in e
            }
            assert env["AUTO_INFER_SGLANG_CONFIG"] == f"{plan.CONFIG_DIR}/{plan.CONFIG_FILE}"
            s = settings.load(
                {**env, "AUTO_INFER_SGLANG_CONFIG": str(cfg_path), "AUTO_INFER_WORKSPACE_DIR": str(tmp_path)}
            )
            (inst,) = config.load(s).enabled()
            assert inst.control.gpu_ids is None             # the device plugin's GPUs, all of them
            out[f"{doc['metadata']['name']}:{role}"] = (s, inst)
    return out


def test_pod_argv_of_leader_and_worker(tmp_path: Path) -> None:
    argvs = pod_argvs("glm-4.7-2node", tmp_path)
    leader, worker = argvs["auto-infer-glm-4-7-2node:leader"], argvs["auto-infer-glm-4-7-2node:worker"]
    for argv, rank in ((leader, "0"), (worker, "1")):
        assert argv[argv.index("--node-rank") + 1] == rank
        assert argv[argv.index("--dist-init-addr") + 1] == f"{LWS_ENV['LWS_LEADER_ADDRESS']}:20000"
        assert argv[argv.index("--nnodes") + 1] == "2" and argv[argv.index("--host") + 1] == "0.0.0.0"
        assert argv[argv.index("--tp-size") + 1] == "16"
    single = pod_argvs("qwen2-vl-tp2", tmp_path)["auto-infer-qwen2-vl-7b:server"]
    assert "--node-rank" not in single and single[single.index("--host") + 1] == "0.0.0.0"


def test_ranks_sharing_the_claim_keep_their_records_and_logs_apart(tmp_path: Path) -> None:
    """Leader and worker pods share the workspace on the claim: serve keys the worker rank's record
    and log folder as NAME@rank1, the leader's as a single-node instance's (issue 14)."""
    pods = pod_instances("glm-4.7-2node", tmp_path)
    (s_lead, leader), (s_work, worker) = (
        pods["auto-infer-glm-4-7-2node:leader"],
        pods["auto-infer-glm-4-7-2node:worker"],
    )
    assert leader.worker is None and leader.key == "glm_4_7_2node"
    assert worker.worker is not None and worker.key == "glm_4_7_2node@rank1"
    assert "worker rank 1 of 2 (serves no HTTP" in worker.worker.describe()
    assert launch.log_path(s_lead, leader) == s_lead.server_logs("sglang") / "glm_4_7_2node" / "server.log"
    assert launch.log_path(s_work, worker) == s_work.server_logs("sglang") / "glm_4_7_2node@rank1" / "server.log"
    assert registry.path(s_lead, leader.key) != registry.path(s_work, worker.key)
    assert registry.path(s_lead, leader.key).parent == registry.path(s_work, worker.key).parent    # one claim


@pytest.mark.sglang
@pytest.mark.skipif(not VENV, reason="set AUTO_INFER_SGLANG_VENV (built by .ci/setup-sglang-venv.sh)")
def test_pod_argv_parses_with_sglang(tmp_path: Path) -> None:
    servers: dict[str, list[str]] = {}
    for case in sorted(CASES):
        (tmp_path / case).mkdir()
        servers.update({f"{case}/{k}": v for k, v in pod_argvs(case, tmp_path / case).items()})
    assert len(servers) == 4
    checked = preflight.check(
        "SGLang", sglang_engine.SCRIPT, Path(VENV) / "bin" / "python", dict(os.environ), lambda multi: servers
    )
    assert checked.skipped is None, checked.skipped
    assert checked.rejected == {}, checked.rejected


def test_gateway_discovers_the_serving_pods(tmp_path: Path) -> None:
    files = rendered("glm-4.7-2node", tmp_path)
    all_docs = docs(files)
    gw = next(d for d in all_docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "auto-infer-gateway")
    args = gw["spec"]["template"]["spec"]["containers"][0]["command"]
    selector = args[args.index("--selector") + 1]
    assert args[args.index("--service-discovery-port") + 1] == "30000" and "--service-discovery" in args
    assert (
        args[args.index("--policy") + 1] == "cache_aware"
        and args[args.index("--service-discovery-namespace") + 1] == "llm"
    )
    key, value = selector.split("=")
    (lws,) = [d for d in all_docs if d["kind"] == "LeaderWorkerSet"]
    t = lws["spec"]["leaderWorkerTemplate"]
    assert t["leaderTemplate"]["metadata"]["labels"][key] == value
    assert key not in t["workerTemplate"]["metadata"]["labels"]
    (role,) = [d for d in all_docs if d["kind"] == "Role"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert not any("gateway" in name for name in rendered("qwen2-vl-tp2", tmp_path))   # no [router]: no gateway


def test_air_gapped_init_job_imports_the_bundle_then_installs(tmp_path: Path) -> None:
    job = next(d for d in docs(rendered("glm-4.7-2node", tmp_path)) if d["kind"] == "Job")
    spec = job["spec"]["template"]["spec"]
    assert spec["initContainers"][0]["command"] == ["auto-infer", "bundle", "import",
                                                   "/bundle-claim/bundles/auto-infer-bundle.tar"]
    assert spec["containers"][0]["command"] == ["auto-infer", "check"]
    job = next(d for d in docs(rendered("qwen2-vl-tp2", tmp_path)) if d["kind"] == "Job")
    assert "initContainers" not in job["spec"]["template"]["spec"]


def test_cli_writes_the_folder_only(tmp_path: Path) -> None:
    ws, out = tmp_path / "ws", tmp_path / "out"
    ws.mkdir()
    env = {**os.environ, "AUTO_INFER_WORKSPACE_DIR": str(ws),
           "AUTO_INFER_SGLANG_CONFIG": str(CASES["glm-4.7-2node"][0])}
    out.mkdir()
    (out / "mine.yaml").write_text("kind: ConfigMap\n")            # not ours: kept
    r = run_cli(["k8s", "--out", str(out), "--namespace", "llm", "--k8s-version", "1.31"], env)
    assert r.returncode == 0, r.stderr
    assert "objects valid for Kubernetes 1.31" in r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert "30-lws-glm_4_7_2node.yaml" in names and "mine.yaml" in names and outdir.LIST in names
    assert list(ws.iterdir()) == []                                 # nothing written to the workspace
    printed = run_cli(["k8s"], env)
    assert printed.returncode == 0 and "kind: LeaderWorkerSet" in printed.stdout
    bad = run_cli(["k8s", "--out", str(out)], {**env, "AUTO_INFER_SGLANG_CONFIG": str(tmp_path / "none.toml")})
    assert bad.returncode == 1 and "model config does not exist" in bad.stderr and "Traceback" not in bad.stderr
    old = run_cli(["k8s", "--k8s-version", "1.10"], env)
    assert old.returncode == 1 and "no schemas for Kubernetes 1.10" in old.stderr and "Traceback" not in old.stderr
