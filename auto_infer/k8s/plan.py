"""What the Kubernetes manifests say, worked out from the model config: names, GPUs, env, probes.

Every pod runs the same image and the same model config (a ConfigMap holding the config file as
written); what differs per pod goes into ``AUTO_INFER_SGLANG_OVERRIDES``: the other instances are
disabled, the server listens on 0.0.0.0, the GPUs are "all" (the device plugin gives the pod exactly
its own), ``[router]`` is removed (the gateway runs in its own Deployment). A multi-node instance (``nnodes > 1``) also gets ``dist_init_addr`` from
``$(LWS_LEADER_ADDRESS)`` and ``node_rank`` from ``$(LWS_WORKER_INDEX)``: LeaderWorkerSet puts its
variables first in each container's env, so Kubernetes expands them inside ours. The ranks share the
claim's workspace; `serve` keeps each worker rank's record and log apart on its own (NAME@rankN).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.serve.model import Instance, ModelConfig

PART_OF = "auto-infer"
GATEWAY_LABEL = "auto-infer.io/gateway-worker"   # the label the gateway's service discovery selects
WORKSPACE = "/offline-data"
TEMPLATE = "/sglang-template"
MODELS = "/llm-models"
CONFIG_DIR = "/etc/auto-infer"
CONFIG_FILE = "sglang.toml"
RANK = "__AUTO_INFER_RANK__"         # a JSON string placeholder that becomes a bare $(LWS_WORKER_INDEX)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
BOOT_GATES = {"AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT": "0", "AUTO_INFER_SGLANG_REHEARSE_ON_BOOT": "0",
              "AUTO_INFER_SGLANG_INSTALL_ON_BOOT": "1", "AUTO_INFER_SGLANG_ON_BOOT": "1"}
PROBE_PERIOD = 10
DEFAULT_DIST_PORT = 20000


@dataclass(frozen=True)
class Options:
    """The `k8s` task's parameters (what the model config does not say)."""

    namespace: str = "default"
    image: str = "auto-infer:latest"
    claim: str | None = None           # an existing PersistentVolumeClaim; None: render one
    models_claim: str | None = None    # weights on their own claim; None: the workspace claim's llm-models/
    bundle: str | None = None          # bundle file on the claim (path inside it): the init Job imports it
    storage: str = "500Gi"
    storage_class: str | None = None
    shm_size: str = "32Gi"
    pixi_env: str = "default"
    installer: str = "auto"


@dataclass(frozen=True)
class Router:
    """The `[router]` table as far as the manifests need it."""

    port: int = 8000
    policy: str = "round_robin"
    command: tuple[str, ...] = ("smg", "launch")
    metrics_port: int = 29000


@dataclass(frozen=True)
class Pod:
    """One kind of pod of an instance: a Deployment's, or an LWS leader's or worker's."""

    role: str                      # server | leader | worker
    env: list[dict[str, Any]]
    probes: Mapping[str, Any] | None
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Unit:
    """One instance as Kubernetes objects."""

    instance: str
    name: str
    port: int
    gpus: int
    nnodes: int
    grace: int
    labels: Mapping[str, str]
    pods: list[Pod] = field(default_factory=list)


def k8s_name(instance: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", instance.lower()).strip("-")
    return f"{PART_OF}-{slug}"[:50].rstrip("-")     # LWS adds "-<group>-<index>" to pod names


def labels(instance: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/component": component, "app.kubernetes.io/instance": k8s_name(instance),
            "app.kubernetes.io/name": "sglang" if component == "server" else component,
            "app.kubernetes.io/part-of": PART_OF}


def _int(server: Mapping[str, Any], *keys: str) -> int:
    return next((int(server[k]) for k in keys if k in server), 1)


def gpu_count(inst: Instance) -> int:
    """GPUs per pod: gpu_ids when listed, else what the parallel sizes need per node."""
    if inst.control.gpu_ids is not None:
        return len(inst.control.gpu_ids)
    s = inst.server
    tp, pp = _int(s, "tp_size", "tensor_parallel_size"), _int(s, "pp_size", "pipeline_parallel_size")
    dp = 1 if s.get("enable_dp_attention") else _int(s, "dp_size", "data_parallel_size")
    return -(-tp * dp * pp // _int(s, "nnodes"))


def _probes(inst: Instance) -> dict[str, Any]:
    """Startup waits out the model load (ready_timeout); readiness generates; liveness lists models.

    With an API key every probe uses /health_generate, which SGLang answers without the key."""
    models = "/health_generate" if inst.control.api_key_env else "/v1/models"

    def get(path: str, period: int, timeout: int, failures: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
                "timeoutSeconds": timeout, "failureThreshold": failures}
    return {"startupProbe": get(models, PROBE_PERIOD, 5, max(1, -(-int(inst.control.ready_timeout) // PROBE_PERIOD))),
            "readinessProbe": get("/health_generate", 15, 30, 2),
            "livenessProbe": get(models, 30, 10, 5)}


def _env(values: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in sorted(values.items())]


def base_env(opts: Options) -> dict[str, str]:
    """The env-var contract every auto-infer pod gets: paths, installer, offline, boot gates."""
    return {"AUTO_INFER_WORKSPACE_DIR": WORKSPACE, "AUTO_INFER_SGLANG_TEMPLATE_DIR": TEMPLATE,
            "AUTO_INFER_SGLANG_CONFIG": f"{CONFIG_DIR}/{CONFIG_FILE}", "AUTO_INFER_SGLANG_PIXI_ENV": opts.pixi_env,
            "AUTO_INFER_INSTALLER": opts.installer, **OFFLINE_ENV}


def _overrides(cfg: ModelConfig, inst: Instance, user: Mapping[str, Any], role: str) -> str:
    from auto_infer.core.tomlfile import deep_merge
    mine: dict[str, Any] = {"control": {"gpu_ids": "all"}, "server": {"host": "0.0.0.0"}}
    if role in ("leader", "worker"):
        port = str(inst.server["dist_init_addr"]).rpartition(":")[2] if "dist_init_addr" in inst.server \
            else DEFAULT_DIST_PORT
        mine["server"].update(dist_init_addr=f"$(LWS_LEADER_ADDRESS):{port}", node_rank=RANK)
    table = {i.name: {"control": {"enabled": False}} for i in cfg.instances if i.name != inst.name}
    merged = deep_merge(dict(user), {"instance": {**table, inst.name: mine}})
    merged["router"] = None         # the gateway is its own Deployment: no server pod starts one
    return json.dumps(merged, sort_keys=True, separators=(",", ":")).replace(f'"{RANK}"', "$(LWS_WORKER_INDEX)")


def _pod(cfg: ModelConfig, inst: Instance, opts: Options, user: Mapping[str, Any], role: str) -> Pod:
    env = _env({**base_env(opts), **BOOT_GATES, "AUTO_INFER_SGLANG_OVERRIDES": _overrides(cfg, inst, user, role)})
    if inst.control.api_key_env:
        env.append({"name": inst.control.api_key_env, "secret": f"{PART_OF}-api-keys"})
    pod_labels = labels(inst.name, "server")
    if role != "worker":
        pod_labels[GATEWAY_LABEL] = "true"
    return Pod(role, env, _probes(inst) if role != "worker" else None, pod_labels)


def units(cfg: ModelConfig, opts: Options, user_overrides: Mapping[str, Any]) -> list[Unit]:
    """One unit per enabled SGLang instance, in config order; clear errors for what cannot deploy."""
    out: list[Unit] = []
    seen: dict[str, str] = {}
    for inst in cfg.enabled():
        name = k8s_name(inst.name)
        if name in seen:
            raise UserError(f"instances {seen[name]!r} and {inst.name!r} get the same Kubernetes name {name!r}",
                            where=f"{cfg.path}: [instance.{inst.name}]", fix="rename one of them")
        if inst.engine != "sglang":
            raise UserError(f"instance {inst.name} runs its own command; only SGLang instances are deployed",
                            where=f"{cfg.path}: [instance.{inst.name}.control] command",
                            fix="remove control.command, or set control.enabled = false for Kubernetes")
        seen[name] = inst.name
        nnodes = _int(inst.server, "nnodes")
        roles = ["leader", "worker"] if nnodes > 1 else ["server"]
        out.append(Unit(inst.name, name, inst.port, gpu_count(inst), nnodes, int(inst.control.stop_grace) + 30,
                        labels(inst.name, "server"), [_pod(cfg, inst, opts, user_overrides, r) for r in roles]))
    if not out:
        raise UserError("the model config has no enabled instance to deploy", where=str(cfg.path),
                        fix="enable an instance ([instance.NAME.control] enabled = true)")
    return out


def read_router(raw: Mapping[str, Any], where: str) -> Router | None:
    """The optional `[router]` table, read defensively (its full format belongs to `serve`)."""
    table = raw.get("router")
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise UserError("[router] must be a table", where=f"{where}: [router]", fix="write it as [router]")
    port, policy, command = table.get("port", 8000), table.get("policy", "round_robin"), table.get("command")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UserError(f"[router] port {port!r} is not a port", where=f"{where}: [router] port", fix="e.g. port = 8000")
    if not isinstance(policy, str):
        raise UserError("[router] policy must be a string", where=f"{where}: [router] policy",
                        fix='e.g. policy = "round_robin"')
    if command is not None and (not isinstance(command, list) or not all(isinstance(t, str) for t in command)):
        raise UserError("[router] command must be a list of strings", where=f"{where}: [router] command",
                        fix='e.g. command = ["smg", "launch"]')
    return Router(port=port, policy=policy, command=tuple(command) if command else Router.command)


def gateway_args(router: Router, worker_port: int, namespace: str) -> list[str]:
    return [*router.command, "--host", "0.0.0.0", "--port", str(router.port), "--policy", router.policy,
            "--service-discovery", "--selector", f"{GATEWAY_LABEL}=true",
            "--service-discovery-port", str(worker_port), "--service-discovery-namespace", namespace,
            "--prometheus-host", "0.0.0.0", "--prometheus-port", str(router.metrics_port),
            "--health-check-interval-secs", "5", "--health-failure-threshold", "2"]
