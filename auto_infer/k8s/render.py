"""`auto-infer k8s`: Kubernetes manifests from the model config, rendered with jinja2 templates.

One file per object, named so that `kubectl apply -f DIR` creates them in a sensible order:
the claim, the model config (a ConfigMap), the init Job (install, or bundle import + install), a
Deployment + Service per single-node instance, a LeaderWorkerSet + Service per multi-node one, and
with a ``[router]`` table the gateway (RBAC, Deployment, Service). The output is deterministic: the
same config and options give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_text
from auto_infer.core.progress import say
from auto_infer.core.redact import SECRET_FLAGS, SECRET_NAME
from auto_infer.core.settings import Settings
from auto_infer.k8s import plan
from auto_infer.k8s.plan import Options, Router, Unit
from auto_infer.serve import config
from auto_infer.serve.engines.base import flag
from auto_infer.serve.model import ModelConfig

TEMPLATES = Path(__file__).parent / "templates"
HEADER = "# Rendered by `auto-infer k8s` from {config}; edit the model config and render again.\n"


def _env() -> Any:
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["j"] = lambda value: json.dumps(value, sort_keys=True, ensure_ascii=False)
    return env


def load(settings: Settings) -> tuple[ModelConfig, Router | None, str, dict[str, Any]]:
    """The config (as `serve` reads it), its `[router]`, its text, and the user's overrides.

    ``[router]`` is read from the raw TOML and dropped before `serve`'s reader (``null`` in the
    overrides removes a key), so this works whether or not that reader knows the table."""
    path = settings.config_path
    raw = config.read_toml(path)
    text = path.read_text()
    try:
        user = json.loads(settings.overrides) if settings.overrides.strip() else {}
    except json.JSONDecodeError:
        user = None                       # config.load says what is wrong with it
    if not isinstance(user, dict):
        config.load(settings)
        user = {}
    cfg = config.load(replace(settings, overrides=json.dumps({**user, "router": None})))
    router = plan.read_router(config.apply_overrides(raw, settings.overrides), str(path))
    _refuse_secrets(cfg)
    return cfg, router, text, user


def _refuse_secrets(cfg: ModelConfig) -> None:
    """The config becomes a ConfigMap, readable by anyone who may read the namespace: no secrets."""
    for inst in cfg.instances:
        for key in inst.control.env:
            if SECRET_NAME.search(key):
                raise UserError(f"instance {inst.name}: control env {key} looks like a secret and would be stored "
                                "in a ConfigMap", where=f"{cfg.path}: [instance.{inst.name}.control.env] {key}",
                                fix="keep secrets in a Kubernetes Secret: name the variable in control.api_key_env "
                                    f"and create the Secret {plan.PART_OF}-api-keys (docs/kubernetes.md)")
        for key in inst.server:
            if flag(key) in SECRET_FLAGS:
                raise UserError(f"instance {inst.name}: server {key} is a secret and would be stored in a ConfigMap",
                                where=f"{cfg.path}: [instance.{inst.name}.server] {key}",
                                fix="remove it; set control.api_key_env and keep the key in a Kubernetes Secret")


def render(cfg: ModelConfig, router: Router | None, config_text: str, opts: Options,
           user_overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """File name → YAML text for every object."""
    env = _env()
    units = plan.units(cfg, opts, user_overrides or {})
    claim = opts.claim or f"{plan.PART_OF}-workspace"
    common = {"ns": opts.namespace, "opts": opts, "claim": claim, "plan": plan,
              "models_claim": opts.models_claim or claim, "models_sub": "" if opts.models_claim else "llm-models"}
    files: dict[str, str] = {}

    def put(filename: str, template: str, **ctx: Any) -> None:
        body = env.get_template(template).render(**common, **ctx)
        files[filename] = HEADER.format(config=cfg.path.name) + body

    if not opts.claim:
        put("00-pvc-workspace.yaml", "pvc.yaml.j2", name=claim)
    put("10-configmap-model-config.yaml", "configmap.yaml.j2", name=f"{plan.PART_OF}-model-config",
        data={plan.CONFIG_FILE: config_text})
    put("20-job-install.yaml", "job.yaml.j2", name=f"{plan.PART_OF}-install", env_list=_job_env(opts))
    for unit in units:
        _put_unit(put, unit)
    if router:
        _put_gateway(put, router, units, opts)
    return dict(sorted(files.items()))


def _job_env(opts: Options) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(plan.base_env(opts).items())]


def _put_unit(put: Any, unit: Unit) -> None:
    if unit.nnodes > 1:
        put(f"30-lws-{unit.instance}.yaml", "lws.yaml.j2", unit=unit, leader=unit.pods[0], worker=unit.pods[1],
            selector={"leaderworkerset.sigs.k8s.io/name": unit.name, "role": "leader"})
    else:
        put(f"30-deployment-{unit.instance}.yaml", "deployment.yaml.j2", unit=unit, pod=unit.pods[0])
        put(f"31-service-{unit.instance}.yaml", "service.yaml.j2", name=unit.name, port=unit.port,
            selector=dict(unit.labels), labels=dict(unit.labels))
        return
    # not unit.name: LWS creates a headless Service of that name (the pods' subdomain, LWS_LEADER_ADDRESS)
    put(f"31-service-{unit.instance}.yaml", "service.yaml.j2", name=f"{unit.name}-leader", port=unit.port,
        selector={"leaderworkerset.sigs.k8s.io/name": unit.name, "role": "leader"}, labels=dict(unit.labels))


def _put_gateway(put: Any, router: Router, units: list[Unit], opts: Options) -> None:
    ports = sorted({u.port for u in units})
    if len(ports) > 1:
        raise UserError(f"the gateway discovers workers on one port, but the instances use {ports}",
                        where="[instance.*.server] port", fix="give every instance the same port (pods do not share one)")
    name = f"{plan.PART_OF}-gateway"
    gw_labels = plan.labels("gateway", "gateway")
    put("40-gateway-rbac.yaml", "gateway-rbac.yaml.j2", name=name, labels=gw_labels)
    put("41-gateway-deployment.yaml", "gateway.yaml.j2", name=name, labels=gw_labels, router=router,
        args=plan.gateway_args(router, ports[0], opts.namespace))
    put("42-gateway-service.yaml", "service.yaml.j2", name=name, port=router.port, selector=gw_labels,
        labels=gw_labels)


def write(files: Mapping[str, str], out: Path) -> None:
    """Write every file atomically; stale files we rendered before are removed, nothing else."""
    if out.exists() and not out.is_dir():
        raise UserError("the output path is a file", where=str(out), fix="give --out a folder")
    out.mkdir(parents=True, exist_ok=True)
    for old in sorted(out.glob("*.yaml")):
        if old.name not in files and old.read_text().startswith(HEADER.split("{")[0]):
            old.unlink()
    for name, text in files.items():
        atomic_write_text(out / name, text)


def k8s(settings: Settings, opts: Options, out: str | None, k8s_version: str | None = None) -> None:
    """The `k8s` task: render, check (with a version), then write to ``out`` or print to stdout."""
    cfg, router, text, user = load(settings)
    files = render(cfg, router, text, opts, user)
    if k8s_version:
        from auto_infer.k8s.check import validate
        say(f"k8s: {validate(files, k8s_version)} objects valid for Kubernetes {k8s_version} "
            "(kubernetes-validate, strict)")
    if not out:
        print("\n---\n".join(text.rstrip("\n") for text in files.values()))
        return
    target = Path(out).expanduser().resolve()
    write(files, target)
    say(f"k8s: {len(files)} manifests in {target} (namespace {opts.namespace}; kubectl apply -f {target})")
