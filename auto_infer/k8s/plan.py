"""What the Kubernetes manifests say, worked out from the model config: names, GPUs, env, probes.

Every pod runs the same image; each instance's pods read their own config file (a ConfigMap per
instance, podconfig.py), and ``AUTO_INFER_SGLANG_OVERRIDES`` (read by every engine) adds what
differs in a pod: the server listens on 0.0.0.0 and takes "all" GPUs (the device plugin gives the
pod exactly its own). A multi-node instance (``nnodes > 1``) also gets ``dist_init_addr`` from
``$(LWS_LEADER_ADDRESS)`` and ``node_rank`` from ``$(LWS_WORKER_INDEX)``: LeaderWorkerSet puts its
variables first in each container's env, so Kubernetes expands them inside ours. The ranks share the
claim's workspace; `serve` keeps each worker rank's record and log apart (NAME@rankN), and
`supervise` holds the run lock only while it installs and spawns, never while a server loads, so
no rank ever waits for another's readiness.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from auto_infer.core import redact
from auto_infer.core import settings as settings_mod
from auto_infer.core.errors import UserError
from auto_infer.k8s import podconfig, serving
from auto_infer.serve import gateway as serve_gateway
from auto_infer.serve.model import Instance, ModelConfig

PART_OF = "auto-infer"
GATEWAY_LABEL = "auto-infer.io/gateway-worker"   # the label the gateway's service discovery selects
ROLE_LABEL = "auto-infer.io/role"                # server | leader | worker: what Services select on
WORKSPACE = "/offline-data"
TEMPLATE = "/sglang-template"
MODELS = "/llm-models"
CONFIG_DIR = "/etc/auto-infer"
CONFIG_FILE = "sglang.toml"
RANK = "__AUTO_INFER_RANK__"         # a JSON string placeholder that becomes a bare $(LWS_WORKER_INDEX)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
BOOT_GATES = {"AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT": "0", "AUTO_INFER_SGLANG_REHEARSE_ON_BOOT": "0",
              "AUTO_INFER_SGLANG_INSTALL_ON_BOOT": "1", "AUTO_INFER_SGLANG_ON_BOOT": "1"}
SUPERVISE = ["auto-infer", "supervise"]


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


@dataclass(frozen=True)
class Pod:
    """One kind of pod of an instance: a Deployment's, or an LWS leader's or worker's."""

    role: str                      # server | leader | worker
    env: list[dict[str, Any]]
    probes: Mapping[str, Any] | None
    labels: Mapping[str, str]
    command: list[str] = field(default_factory=lambda: list(SUPERVISE))


@dataclass(frozen=True)
class Unit:
    """One instance as Kubernetes objects."""

    instance: str
    name: str
    engine: str
    port: int
    gpus: int
    nnodes: int
    grace: int
    labels: Mapping[str, str]
    config_text: str
    fronted: bool
    pods: list[Pod] = field(default_factory=list)

    @property
    def config_map(self) -> str:
        return f"{self.name}-config"


LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")                  # RFC 1123 label (a namespace)
SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")             # RFC 1123 subdomain (a claim, a class)
QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")


def check_options(opts: Options) -> None:
    """The options as Kubernetes will read them: a clear error naming the option, before rendering."""
    names = {
        "--namespace": (opts.namespace, LABEL, 63),
        "--claim": (opts.claim, SUBDOMAIN, 253),
        "--models-claim": (opts.models_claim, SUBDOMAIN, 253),
        "--storage-class": (opts.storage_class, SUBDOMAIN, 253),
    }
    for option, (value, rule, most) in names.items():
        if value is not None and not (rule.fullmatch(value) and len(value) <= most):
            chars = "'-' and '.'" if rule is SUBDOMAIN else "'-'"
            raise UserError(f"{option} {value!r} is not a Kubernetes name", where=option,
                            fix=f"lower-case letters, digits, {chars}, starting and ending with a letter or digit, "
                                f"at most {most} characters")
    for option, value in (("--storage", opts.storage), ("--shm-size", opts.shm_size)):
        if not QUANTITY.fullmatch(value):
            raise UserError(f"{option} {value!r} is not a Kubernetes quantity", where=option, fix="e.g. 500Gi or 32Gi")
    if not opts.image or any(ch.isspace() for ch in opts.image):
        raise UserError(f"--image {opts.image!r} is not an image reference", where="--image",
                        fix="e.g. registry.example/auto-infer:0.1")
    if opts.bundle is not None and (opts.bundle.startswith("/") or ".." in opts.bundle.split("/")):
        raise UserError(f"--bundle {opts.bundle!r} is not a path inside the claim", where="--bundle",
                        fix="give the bundle's path relative to the claim's root, e.g. bundles/auto-infer-bundle.tar")


def k8s_name(instance: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", instance.lower()).strip("-")
    return f"{PART_OF}-{slug}"[:50].rstrip("-")     # LWS adds "-<group>-<index>" to pod names


def labels(instance: str, component: str, engine: str = "sglang") -> dict[str, str]:
    return {"app.kubernetes.io/component": component, "app.kubernetes.io/instance": k8s_name(instance),
            "app.kubernetes.io/name": engine if component == "server" else component,
            "app.kubernetes.io/part-of": PART_OF}


def base_env(opts: Options) -> dict[str, str]:
    """The env-var contract every auto-infer pod gets: paths, offline. The installer is not set: the
    pod resolves ``auto`` itself (pixi when its image has pixi, else the pixi-free backend)."""
    return {"AUTO_INFER_WORKSPACE_DIR": WORKSPACE, "AUTO_INFER_SGLANG_TEMPLATE_DIR": TEMPLATE,
            "AUTO_INFER_SGLANG_CONFIG": f"{CONFIG_DIR}/{CONFIG_FILE}", "AUTO_INFER_SGLANG_PIXI_ENV": opts.pixi_env,
            "AUTO_INFER_LOCK_TIMEOUT": str(serving.LOCK_WAIT), **OFFLINE_ENV}


def env_prefix(opts: Options) -> str:
    """The environment `install` makes on the claim, as a pod sees it (the Settings a pod loads)."""
    return str(settings_mod.load(base_env(opts)).env_prefix)


def _env(values: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in sorted(values.items())]


def _overrides(inst: Instance, role: str, secrets: list[str], logs: Mapping[str, str]) -> str:
    """This pod's overrides: its own instance only (constant size, whatever the config holds); a
    relative log path is put on the workspace (``logs``: podconfig.relative_logs)."""
    mine: dict[str, Any] = {"control": {"gpu_ids": "all", **logs}, "server": {"host": "0.0.0.0"}}
    proxies = {k: f"$({k})" for k in secrets if redact.PROXY_NAME.match(k)}
    if proxies:                 # serve keeps no proxy it inherits (offline): hand them over explicitly
        mine["control"]["env"] = proxies
    if role in ("leader", "worker") and inst.engine == "vllm":     # over a Ray cluster (serving.py)
        mine["server"].update(distributed_executor_backend="ray", nnodes=None)
    elif role in ("leader", "worker"):
        addr = str(inst.server.get("dist_init_addr", ""))
        port = addr.rpartition(":")[2] if addr.rpartition(":")[2].isdigit() else podconfig.DEFAULT_DIST_PORT
        mine["server"].update(dist_init_addr=f"$(LWS_LEADER_ADDRESS):{port}", node_rank=RANK)
    table: dict[str, Any] = {inst.name: mine}
    if role in ("leader", "worker") and inst.engine == "vllm":
        table["server"] = {"nnodes": None}       # the file's defaults serve this instance only
    text = json.dumps({"instance": table}, sort_keys=True, separators=(",", ":"))
    return text.replace(f'"{RANK}"', "$(LWS_WORKER_INDEX)")


def _pod(inst: Instance, opts: Options, role: str, secrets: list[str], fronted: bool,
         logs: Mapping[str, str]) -> Pod:
    # secretKeyRefs first: Kubernetes expands $(NAME) only from variables defined earlier in the list
    env: list[dict[str, Any]] = [{"name": k, "secret": podconfig.ENV_SECRET, "key": k} for k in secrets]
    overrides = _overrides(inst, role, secrets, logs)
    env += _env({**base_env(opts), **BOOT_GATES, "AUTO_INFER_SGLANG_OVERRIDES": overrides})
    if inst.control.api_key_env:
        env.append({"name": inst.control.api_key_env, "secret": f"{PART_OF}-api-keys", "key": inst.control.api_key_env})
    pod_labels = {**labels(inst.name, "server", inst.engine), ROLE_LABEL: role}
    if role != "worker" and fronted:
        pod_labels[GATEWAY_LABEL] = "true"
    command = serving.ray_commands(env_prefix(opts))[role] if inst.engine == "vllm" and role != "server" else SUPERVISE
    return Pod(role, env, serving.probes(inst) if role != "worker" else None, pod_labels, list(command))


def units(cfg: ModelConfig, data: Mapping[str, Any], opts: Options) -> list[Unit]:
    """One unit per enabled instance, in config order; clear errors for what cannot deploy."""
    if not cfg.master.enable:
        raise UserError("[master] enable = false: no server would run, so there is nothing to deploy",
                        where=f"{cfg.path}: [master] enable", fix="set enable = true under [master] to deploy")
    fronted = set(serve_gateway.fronted(cfg))
    common: dict[int, str] = {}                  # the config text every instance's file shares
    out: list[Unit] = []
    seen: dict[str, str] = {}
    for inst in cfg.enabled():
        name = k8s_name(inst.name)
        if name in seen:
            raise UserError(f"instances {seen[name]!r} and {inst.name!r} get the same Kubernetes name {name!r}",
                            where=f"{cfg.path}: [instance.{inst.name}]", fix="rename one of them")
        serving.refuse_unsupported(inst, str(cfg.path))
        seen[name] = inst.name
        nnodes = serving.nnodes(inst)
        secrets = podconfig.secret_env(data, inst.name)
        logs = podconfig.relative_logs(data, inst.name, WORKSPACE)
        roles = ["leader", "worker"] if nnodes > 1 else ["server"]
        out.append(Unit(inst.name, name, inst.engine, inst.port, serving.gpus_per_pod(inst), nnodes,
                        int(inst.control.stop_grace) + 30, labels(inst.name, "server", inst.engine),
                        podconfig.instance_toml(data, inst.name, common), inst.name in fronted,
                        [_pod(inst, opts, r, secrets, inst.name in fronted, logs) for r in roles]))
    if not out:
        raise UserError("the model config has no enabled instance to deploy", where=str(cfg.path),
                        fix="enable an instance ([instance.NAME.control] enabled = true)")
    return out


def secret_keys(unit_list: list[Unit]) -> dict[str, list[str]]:
    """Secret name → the keys the pods read from it (for the operator: create these)."""
    out: dict[str, set[str]] = {}
    for unit in unit_list:
        for env in unit.pods[0].env:
            if "secret" in env:
                out.setdefault(env["secret"], set()).add(env["key"])
    return {k: sorted(v) for k, v in sorted(out.items())}
