"""`auto-infer k8s`: Kubernetes manifests from the model config, rendered with jinja2 templates.

One file per object, named so that `kubectl apply -f DIR` creates them in a sensible order:
the claim, the init Job (install, or bundle import + install), per enabled instance its config (a
ConfigMap), a Deployment + Service (one node) or a LeaderWorkerSet + leader Service (``nnodes >
1``), and with an enabled ``[router]`` the gateway (RBAC, Deployment, Service). The output is
deterministic: the same config and options give the same bytes; its size grows linearly with the
instances (each pod carries its own instance only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from auto_infer.core.progress import say
from auto_infer.core.settings import Settings
from auto_infer.k8s import gateway, outdir, plan, podconfig
from auto_infer.k8s.plan import Options, Unit
from auto_infer.serve.model import ModelConfig

TEMPLATES = Path(__file__).parent / "templates"
BLANKS = re.compile(r"\n(?:[ \t]*\n)+")      # what the templates' optional blocks leave
HEADER = "# Rendered by `auto-infer k8s` from {config}; edit the model config and render again.\n"


def _env() -> Any:
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["j"] = lambda value: json.dumps(value, sort_keys=True, ensure_ascii=False)
    return env


def load(settings: Settings) -> tuple[ModelConfig, dict[str, Any]]:
    """The config as `serve` reads it (multi-node keys filled for Kubernetes) and its merged data."""
    return podconfig.load(settings)


def render(cfg: ModelConfig, data: Mapping[str, Any], opts: Options, units: list[Unit] | None = None) -> dict[str, str]:
    """File name → YAML text for every object."""
    env = _env()
    units = units if units is not None else plan.units(cfg, data, opts)
    claim = opts.claim or f"{plan.PART_OF}-workspace"
    common = {"ns": opts.namespace, "opts": opts, "claim": claim, "plan": plan,
              "models_claim": opts.models_claim or claim, "models_sub": "" if opts.models_claim else "llm-models"}
    files: dict[str, str] = {}
    header = HEADER.format(config=cfg.path.name)
    templates = {name: env.get_template(name) for name in ("pvc.yaml.j2", "job.yaml.j2", "configmap.yaml.j2",
                                                            "deployment.yaml.j2", "lws.yaml.j2", "service.yaml.j2",
                                                            "gateway-rbac.yaml.j2", "gateway.yaml.j2")}

    def put(filename: str, template: str, **ctx: Any) -> None:
        body = templates[template].render(**common, **ctx)
        files[filename] = header + (body if template == "configmap.yaml.j2" else BLANKS.sub("\n", body))

    if not opts.claim:
        put("00-pvc-workspace.yaml", "pvc.yaml.j2", name=claim)
    put("20-job-install.yaml", "job.yaml.j2", name=f"{plan.PART_OF}-install",
        env_list=_job_env(opts, cfg.master.engine))
    for unit in units:
        _put_unit(put, unit)
    gw = gateway.plan_gateway(cfg, units, opts)
    if gw is not None:
        _put_gateway(put, gw)
    return dict(sorted(files.items()))


def _job_env(opts: Options, engine: str) -> list[dict[str, str]]:
    """The init Job sees no model config (each pod gets its own instance's), so the modules its
    `check` requires are the engine's, named here (a vLLM template has no sglang)."""
    from auto_infer.serve.engines import known as engines

    env = {k: v for k, v in plan.base_env(opts).items() if k != "AUTO_INFER_SGLANG_CONFIG"}
    env["AUTO_INFER_CHECK_MODULES"] = ",".join(engines.get(engine).CHECK_MODULES) or "none"
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def _put_unit(put: Any, unit: Unit) -> None:
    put(f"30-configmap-{unit.instance}.yaml", "configmap.yaml.j2", name=unit.config_map, labels=dict(unit.labels),
        data={plan.CONFIG_FILE: unit.config_text})
    if unit.nnodes > 1:
        put(f"30-lws-{unit.instance}.yaml", "lws.yaml.j2", unit=unit, leader=unit.pods[0], worker=unit.pods[1])
        # not unit.name: LWS creates a headless Service of that name (the pods' subdomain, LWS_LEADER_ADDRESS)
        name, selector = f"{unit.name}-leader", {**unit.labels, plan.ROLE_LABEL: "leader"}
    else:
        put(f"30-deployment-{unit.instance}.yaml", "deployment.yaml.j2", unit=unit, pod=unit.pods[0])
        name, selector = unit.name, {**unit.labels, plan.ROLE_LABEL: "server"}
    put(f"31-service-{unit.instance}.yaml", "service.yaml.j2", name=name, port=unit.port, selector=selector,
        labels=dict(unit.labels))


def _put_gateway(put: Any, gw: gateway.Gateway) -> None:
    name = f"{plan.PART_OF}-gateway"
    gw_labels = plan.labels("gateway", "gateway")
    put("40-gateway-rbac.yaml", "gateway-rbac.yaml.j2", name=name, labels=gw_labels)
    put("41-gateway-deployment.yaml", "gateway.yaml.j2", name=name, labels=gw_labels, gw=gw)
    put("42-gateway-service.yaml", "service.yaml.j2", name=name, port=gw.port, selector=gw_labels, labels=gw_labels)


def notes(units: list[Unit], opts: Options) -> list[str]:
    """What the operator must create before applying: the Secrets the pods read (names, keys)."""
    keys = plan.secret_keys(units)
    return [f"the pods read Secret {name} (keys {', '.join(k)}): create it first, e.g. kubectl create secret generic "
            f"{name} -n {opts.namespace} " + " ".join(f"--from-literal={key}=..." for key in k)
            for name, k in keys.items()]


def unmounted_models(cfg: ModelConfig) -> list[str]:
    """Warnings: an instance whose model is a path no pod volume holds (a host path such as
    /hard/volume/...) would crash-loop once installed; a Hub id (no leading /) is fetched, not mounted."""
    from auto_infer.serve.engines import known as engines

    mounts = (plan.WORKSPACE, plan.MODELS, plan.TEMPLATE, plan.CONFIG_DIR)
    out = []
    for inst in cfg.enabled():
        key = engines.get(inst.engine).MODEL_KEY
        path = inst.server.get(key) if key else None
        if isinstance(path, str) and path.startswith("/") and not any(
                path == m or path.startswith(m + "/") for m in mounts):
            out.append(f"⚠ instance {inst.name}: its {key} {path} is on no volume the pods mount "
                       f"({', '.join(mounts)}): put the model under {plan.MODELS} (the models claim) and set "
                       f"[instance.{inst.name}.server] {key} there, or the pod fails once installed")
    return out


def relocated_logs(cfg: ModelConfig, data: Mapping[str, Any]) -> list[str]:
    """Notes: a relative log path is relative to the config's folder, in a pod the ConfigMap's
    read-only mount; the pods write it on the workspace instead (plan._overrides)."""
    return [f"instance {inst.name}: control.{key} is relative to the config's folder, in a pod the read-only "
            f"ConfigMap mount {plan.CONFIG_DIR}: the pod writes it at {path} (on the workspace)"
            for inst in cfg.enabled() for key, path in podconfig.relative_logs(data, inst.name, plan.WORKSPACE).items()]


def k8s(settings: Settings, opts: Options, out: str | None, k8s_version: str | None = None) -> None:
    """The `k8s` task: render, check (with a version), then write to ``out`` or print to stdout."""
    plan.check_options(opts)
    cfg, data = load(settings)
    units = plan.units(cfg, data, opts)
    files = render(cfg, data, opts, units)
    if k8s_version:
        from auto_infer.k8s.check import validate
        say(f"k8s: {validate(files, k8s_version)} objects valid for Kubernetes {k8s_version} "
            "(kubernetes-validate, strict)")
    for line in [*unmounted_models(cfg), *relocated_logs(cfg, data), *notes(units, opts)]:
        say(f"k8s: {line}")
    if not out or out == "-":                 # `-` is stdout, as for every output path
        print("\n---\n".join(text.rstrip("\n") for text in files.values()))
        return
    target = Path(out).expanduser().resolve()
    outdir.write(files, target)
    say(f"k8s: {len(files)} manifests in {target} (namespace {opts.namespace}; kubectl apply -f {target})")
