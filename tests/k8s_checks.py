"""Semantic checks on a rendered set of Kubernetes manifests: what schema validation cannot see.

Each check returns a list of findings (empty: fine), so a test can show every one at once and a
test can also prove a check fails on a broken set. What LeaderWorkerSet adds to its pods (its
labels, its LWS_* variables) is filled in as LWS does; the image's contents are read from the image
recipe the docs tell users to build (templates/docker/).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from auto_infer.core import settings as settings_mod
from auto_infer.k8s import plan
from auto_infer.serve import config
from auto_infer.serve.engines.base import server_flags
from auto_infer.serve.model import Instance

REPO = Path(__file__).resolve().parents[1]
LWS_NAME, LWS_INDEX = "leaderworkerset.sigs.k8s.io/name", "leaderworkerset.sigs.k8s.io/worker-index"
LWS_VARS = ("LWS_LEADER_ADDRESS", "LWS_GROUP_SIZE", "LWS_WORKER_INDEX")
VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def docs(files: dict[str, str]) -> list[dict[str, Any]]:
    return [d for text in files.values() for d in yaml.safe_load_all(text) if d]


def image_programs() -> set[str]:
    """What the documented image runs by name: the links install-auto-infer.sh makes in /usr/local/bin,
    and the POSIX shell every base image has."""
    script = (REPO / "templates" / "docker" / "install-auto-infer.sh").read_text()
    links = re.findall(r'ln -sf "[^"]+" "\$bin_dir/([\w.-]+)"', script)
    assert "auto-infer" in links, "the image recipe no longer links auto-infer onto PATH"
    return {*links, "/bin/sh"}


def template_has(package: str) -> bool:
    return bool(
        re.search(
            rf"^{re.escape(package)}\s*=", (REPO / "templates" / "sglang-infer" / "pixi.toml").read_text(), re.MULTILINE
        )
    )


def pods(all_docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, int, dict[str, Any]]]:
    """(workload, role, LWS worker index, pod template with LWS's own labels added) per pod kind;
    an LWS worker template once per index 1..size-1."""
    for doc in all_docs:
        if doc["kind"] == "LeaderWorkerSet":
            t = doc["spec"]["leaderWorkerTemplate"]
            for index in range(t["size"]):
                tpl = t["leaderTemplate"] if index == 0 else t["workerTemplate"]
                lws = {LWS_NAME: doc["metadata"]["name"], LWS_INDEX: str(index)}
                yield doc, "leader" if index == 0 else "worker", index, \
                    {**tpl, "metadata": {**tpl["metadata"], "labels": {**tpl["metadata"]["labels"], **lws}}}
        elif doc["kind"] in ("Deployment", "Job"):
            yield doc, "job" if doc["kind"] == "Job" else "server", 0, doc["spec"]["template"]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def services_select_pods(all_docs: list[dict[str, Any]]) -> list[str]:
    templates = [t["metadata"]["labels"] for _, _, _, t in pods(all_docs)]
    return [f"Service {d['metadata']['name']} selects no pod ({d['spec']['selector']})" for d in all_docs
            if d["kind"] == "Service" and not any(_selects(d["spec"]["selector"], lab) for lab in templates)]


def _env(container: dict[str, Any], lws: dict[str, str]) -> dict[str, str]:
    """The container's env as Kubernetes resolves it ($(VAR) from earlier entries); secrets as '<secret>'."""
    out = dict(lws)
    for e in container.get("env", []):
        out[e["name"]] = VAR.sub(lambda m: out.get(m.group(1), m.group(0)), e["value"]) if "value" in e else "<secret>"
    return out


def variables_defined(all_docs: list[dict[str, Any]]) -> list[str]:
    found = []
    for doc, role, _, tpl in pods(all_docs):
        for c in tpl["spec"].get("initContainers", []) + tpl["spec"]["containers"]:
            known = set(LWS_VARS) if doc["kind"] == "LeaderWorkerSet" else set()
            for e in c.get("env", []):
                for var in VAR.findall(e.get("value", "")):
                    if var not in known:
                        found.append(
                            f"{doc['metadata']['name']}:{role}: {e['name']} expands $({var}), undefined before it"
                        )
                known.add(e["name"])
            for token in c.get("command", []) + c.get("args", []):
                found += [f"{doc['metadata']['name']}:{role}: command expands $({v}), undefined"
                          for v in VAR.findall(token) if v not in known]
    return found


def executables_exist(all_docs: list[dict[str, Any]]) -> list[str]:
    programs, found = image_programs(), []
    for doc, role, _, tpl in pods(all_docs):
        for c in tpl["spec"].get("initContainers", []) + tpl["spec"]["containers"]:
            argv = c["command"]
            if argv[0] not in programs:
                found.append(f"{doc['metadata']['name']}:{role}: runs {argv[0]}, which the documented image lacks")
            elif argv[:2] == ["/bin/sh", "-c"] and "/bin/ray" in argv[2] and argv[4] != _env_prefix(c):
                found.append(f"{doc['metadata']['name']}:{role}: runs Ray from {argv[4]}, not the environment")
            elif argv[:2] == ["/bin/sh", "-c"] and "sglang_router.launch_router" in argv[2]:
                env = settings_mod.load({e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
                                        | dict(plan.base_env(plan.Options())))
                if argv[4] != str(env.env_prefix / "bin" / "python") or not template_has("sglang-router"):
                    found.append(f"{doc['metadata']['name']}: the gateway's Python {argv[4]} is not the environment's "
                                 "or the template has no sglang-router")
    return found


def _env_prefix(container: dict[str, Any]) -> str:
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return str(settings_mod.load({**env, **plan.base_env(plan.Options())}).env_prefix)


def pod_instance(all_docs: list[dict[str, Any]], tpl: dict[str, Any], lws: dict[str, str], tmp: Path) -> Instance:
    """The instance `serve` reads in that pod: its ConfigMap's file, its env (LWS variables filled)."""
    maps = {d["metadata"]["name"]: d["data"][plan.CONFIG_FILE] for d in all_docs if d["kind"] == "ConfigMap"}
    (volume,) = [v for v in tpl["spec"]["volumes"] if "configMap" in v]
    path = tmp / f"{volume['configMap']['name']}.toml"
    path.write_text(maps[volume["configMap"]["name"]])
    env = _env(tpl["spec"]["containers"][0], lws)
    s = settings_mod.load({**env, "AUTO_INFER_SGLANG_CONFIG": str(path), "AUTO_INFER_WORKSPACE_DIR": str(tmp)})
    (inst,) = config.load(s).enabled()
    return inst


def servers_listen_where_probed(all_docs: list[dict[str, Any]], tmp: Path) -> list[str]:
    found = []
    for doc, role, index, tpl in pods(all_docs):
        if role == "job":
            continue
        c = tpl["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            port = c.get(kind, {}).get("httpGet", {}).get("port")
            if kind in c and ports.get(port, port) not in ports.values():
                found.append(f"{doc['metadata']['name']}:{role}: {kind} port {port} is not a container port")
        if c["name"] == "gateway":
            argv = c["command"]
            if int(argv[argv.index("--port") + 1]) != ports.get("http"):
                found.append(f"{doc['metadata']['name']}: the gateway listens on {argv[argv.index('--port') + 1]}, "
                             f"not its http port {ports.get('http')}")
            continue
        size = doc["spec"]["leaderWorkerTemplate"]["size"] if doc["kind"] == "LeaderWorkerSet" else 1
        lws = {"LWS_LEADER_ADDRESS": "leader.svc", "LWS_GROUP_SIZE": str(size), "LWS_WORKER_INDEX": str(index)}
        inst = pod_instance(all_docs, tpl, lws if doc["kind"] == "LeaderWorkerSet" else {}, tmp)
        name = f"{doc['metadata']['name']}:{role}{index if role == 'worker' else ''}"
        argv = server_flags(inst.server)                  # the flags `serve` gives the engine in that pod
        listens = (argv[argv.index("--host") + 1] if "--host" in argv else "127.0.0.1",
                   int(argv[argv.index("--port") + 1]) if "--port" in argv else inst.port)
        if role != "worker" and listens != ("0.0.0.0", ports.get("http")):
            found.append(
                f"{name}: the server listens on {listens[0]}:{listens[1]}, probes ask port {ports.get('http')}"
            )
        if doc["kind"] == "LeaderWorkerSet" and inst.engine == "vllm":     # a Ray cluster (vLLM's LWS way)
            found += _ray_group(name, role, tpl, inst)
        elif doc["kind"] == "LeaderWorkerSet":
            rank, nnodes = int(inst.server.get("node_rank", 0)), int(inst.server.get("nnodes", 1))
            if rank != index or nnodes != size:
                found.append(f"{name}: node_rank {rank} / nnodes {nnodes}, but LWS index {index} / size {size}")
            if inst.server.get("dist_init_addr", "").rpartition(":")[0] != "leader.svc":
                found.append(f"{name}: dist_init_addr {inst.server.get('dist_init_addr')} is not the LWS leader")
    return found


def _ray_group(name: str, role: str, tpl: dict[str, Any], inst: Instance) -> list[str]:
    """vLLM over nodes: the leader serves with Ray over the whole group; a worker joins the leader."""
    argv, found = tpl["spec"]["containers"][0]["command"], []
    if role == "leader" and (inst.server.get("distributed_executor_backend") != "ray" or "nnodes" in inst.server
                             or argv[-1] != "$(LWS_GROUP_SIZE)" or "exec auto-infer supervise" not in argv[2]):
        found.append(f"{name}: the vLLM leader does not start the Ray head, wait for the group, then serve with Ray")
    if role == "worker" and (argv[-1] != "$(LWS_LEADER_ADDRESS)" or "ray\" start --address=" not in argv[2]):
        found.append(f"{name}: the vLLM worker does not join the leader's Ray cluster")
    return found


def gateway_selects_leaders_only(all_docs: list[dict[str, Any]]) -> list[str]:
    gw = [d for d in all_docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "auto-infer-gateway"]
    if not gw:
        return []
    argv = gw[0]["spec"]["template"]["spec"]["containers"][0]["command"]
    key, _, value = argv[argv.index("--selector") + 1].partition("=")
    picked = [(role, t) for _, role, _, t in pods(all_docs) if t["metadata"]["labels"].get(key) == value]
    found = [f"the gateway's selector {key}={value} picks a {role} pod" for role, _ in picked
             if role not in ("server", "leader")]
    return found + (["the gateway's selector picks no pod"] if not picked else [])


def all_findings(files: dict[str, str], tmp: Path) -> list[str]:
    d = docs(files)
    return (services_select_pods(d) + variables_defined(d) + executables_exist(d)
            + servers_listen_where_probed(d, tmp) + gateway_selects_leaders_only(d))
