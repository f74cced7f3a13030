"""The gateway's Deployment: the ``[router]`` table as `serve` reads it, run the way `serve` runs it.

`serve` runs ``<environment python> -m sglang_router.launch_router`` (sglang-router is in the
shipped template's environment); the gateway pod does the same with the environment the install
Job made on the claim, so it needs nothing the documented image lacks. It waits for that
environment first (the Job may still be installing), then discovers the serving pods through
Kubernetes (``--service-discovery``): the pods of the instances it fronts (``[router] instances``,
default all) carry the label it selects. ``[router] command`` replaces the program, as on a host.
"""

from __future__ import annotations

from dataclasses import dataclass

from auto_infer.core import settings as settings_mod
from auto_infer.core.errors import UserError
from auto_infer.k8s import plan
from auto_infer.serve import gateway as serve_gateway
from auto_infer.serve.model import ModelConfig, Router

WAIT_SCRIPT = ('py="$1"; shift; until [ -x "$py" ]; do echo "gateway: waiting for the environment ($py; '
               'the install Job makes it)"; sleep 10; done; exec "$py" -m sglang_router.launch_router "$@"')


@dataclass(frozen=True)
class Gateway:
    router: Router
    command: list[str]
    port: int
    metrics_port: int
    needs_claim: bool


def env_python(opts: plan.Options) -> str:
    """The environment's Python as a pod sees it (the same Settings a pod loads from its env)."""
    return str(settings_mod.load(plan.base_env(opts)).env_python)


def flags(router: Router, worker_port: int, namespace: str) -> list[str]:
    return ["--host", "0.0.0.0", "--port", str(router.port), "--policy", router.policy,
            "--service-discovery", "--selector", f"{plan.GATEWAY_LABEL}=true",
            "--service-discovery-port", str(worker_port), "--service-discovery-namespace", namespace,
            "--prometheus-host", "0.0.0.0", "--prometheus-port", str(router.prometheus_port),
            *serve_gateway.HEALTH_FLAGS, *router.extra_args]


def plan_gateway(cfg: ModelConfig, units: list[plan.Unit], opts: plan.Options) -> Gateway | None:
    router = serve_gateway.active(cfg)          # [router] enable = false: no gateway, as in serve
    if router is None:
        return None
    ports = sorted({u.port for u in units if u.fronted})
    if len(ports) > 1:
        raise UserError(f"the gateway discovers workers on one port, but the instances it fronts use {ports}",
                        where=f"{cfg.path}: [instance.*.server] port",
                        fix="give every fronted instance the same port (pods do not share one), or list fewer "
                            "in [router] instances")
    args = flags(router, ports[0], opts.namespace)
    if router.command:
        command = [*router.command, *args]
    else:
        command = ["/bin/sh", "-c", WAIT_SCRIPT, "gateway", env_python(opts), *args]
    return Gateway(router, command, router.port, router.prometheus_port, needs_claim=not router.command)
