"""``serve --dry-run`` (and ``--json``): validate the model config and show, per instance, exactly
what serve would run — the argv, the environment it adds, GPUs, port, log, the readiness rules —
starting nothing, writing nothing, and without needing an installed environment. The engine's own
parser judges the flags where it can be imported (else it says why not); what the host lacks (a
model path, the Python or binary to run) is listed as a warning: a valid plan exits 0, and with
``--strict`` what the host lacks makes the exit status 1.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from auto_infer.core import redact
from auto_infer.core.errors import UserError
from auto_infer.core.progress import say
from auto_infer.core.settings import Settings
from auto_infer.serve import config, gateway_run, gpus, registry, validate
from auto_infer.serve.engines import known as engines
from auto_infer.serve.launch import Launch, build_launches
from auto_infer.serve.model import ModelConfig


def describe(settings: Settings, names: list[str] | None = None) -> dict[str, Any]:
    from auto_infer.serve.orchestrator import ignored, select

    cfg = config.load(settings)
    chosen = select(cfg, names) if cfg.master.enable else ()
    launches = build_launches(settings, cfg, chosen, dry_run=True)
    shown: dict[tuple[int, tuple[str, ...]], dict[str, str]] = {}
    recs = registry.all_records(settings)          # once: serve's port rule asks them of every instance
    host_gpus = gpus.present()                     # once: nvidia-smi, where there is one
    plan = {"config": str(cfg.path), "engine": cfg.master.engine, "enable": cfg.master.enable,
            "instances": [_instance(cfg, launch, _ours(launch, shown), recs, host_gpus) for launch in launches],
            "ignored": ignored(settings, cfg, chosen),
            "gateway": gateway_run.describe(settings, cfg) if cfg.master.enable and names is None else None}
    if cfg.master.enable and not launches:
        plan["nothing"] = (f"no enabled instance in {cfg.path}: serve would launch nothing (enable one: "
                           "[instance.NAME.control] enabled = true)")
    return plan


def _ours(launch: Launch, shown: dict[tuple[int, tuple[str, ...]], dict[str, str]]) -> dict[str, str]:
    """What auto-infer sets for every server, redacted once per distinct secrets (not per instance)."""
    key = (id(launch.ours), tuple(launch.secrets))
    if key not in shown:
        shown[key] = redact.redact_env(launch.ours, launch.secrets)
    return shown[key]


def _instance(cfg: ModelConfig, launch: Launch, ours: dict[str, str],
              recs: dict[str, registry.ServerRecord], host_gpus: gpus.Gpus | None) -> dict[str, Any]:
    inst, rules = launch.inst, engines.get(launch.inst.engine).READY
    problems = [launch.missing] if launch.missing else []
    try:
        validate.check_paths(cfg, (inst,))
    except UserError as exc:
        problems.append(exc.what)
    from auto_infer.serve.orchestrator import port_refusal

    if (busy := port_refusal(cfg, inst, recs)) is not None:
        problems.append(f"{busy.what} (serve would refuse: {busy.fix})")
    if (lacking := gpus.refusal(cfg, inst, host_gpus)) is not None:
        problems.append(f"{lacking.what} ({lacking.fix})")
    health = list(rules.health)
    order = [*health, "/v1/models"] if rules.health_first else ["/v1/models", *health]
    worker = inst.worker
    return {"name": inst.name, "record": inst.key, "engine": inst.engine, "argv": launch.redacted_argv(),
            "worker": worker.describe() if worker else None,
            "env": redact.redact_env(launch.added, launch.secrets),
            "env_auto_infer": ours,
            "gpus": list(inst.control.gpu_ids) if inst.control.gpu_ids is not None else "all",
            "host": inst.host, "port": inst.port, "url": launch.target.base_url, "model": inst.served_name,
            "ready": order, "log": str(launch.log), "cwd": str(launch.cwd), "problems": problems}


def dry_run(settings: Settings, names: list[str] | None = None, as_json: bool = False,
            strict: bool = False) -> int:
    """Print the plan: 0 when it is valid, whatever this host still lacks (listed as warnings);
    with ``strict``, 1 when this host lacks something an instance needs, or nothing would be launched."""
    plan = describe(settings, names)
    if as_json:
        print(json.dumps(plan, indent=2))
    else:
        _print(plan)
    lacking = any(i["problems"] for i in [*plan["instances"], *([plan["gateway"]] if plan["gateway"] else [])])
    if lacking and not as_json:
        say("⚠ this host lacks what is marked ⚠ above" + (" (--strict: an error)" if strict else
            "; serve here would refuse to start (--strict makes this an error)"))
    return 1 if strict and (lacking or "nothing" in plan) else 0


def _print(plan: dict[str, Any]) -> None:
    say(f"dry run of {plan['config']} (engine {plan['engine']}): nothing is started")
    if not plan["enable"]:
        say("master.enable = false: no server would be launched")
    if "nothing" in plan:
        say(f"⚠ {plan['nothing']}")
    for note in plan["ignored"]:
        say(f"  {note}")
    for i in plan["instances"]:
        gpus = ",".join(map(str, i["gpus"])) if isinstance(i["gpus"], list) else i["gpus"]
        print(f"\n[{i['name']}] {i['engine']}  port {i['port']}  gpus {gpus}  model {i['model']}")
        print(f"  argv: {shlex.join(i['argv'])}")
        for key, value in i["env"].items():
            print(f"  env:  {key}={value}")
        print(f"  env (auto-infer, every server): {', '.join(sorted(i['env_auto_infer']))}")
        if i["worker"]:
            print(f"  ready: {i['worker']}: up when its process still runs after a few seconds ({i['record']})")
        else:
            print(f"  ready: {' then '.join(i['ready'])} at {i['url']}")
        print(f"  log:  {i['log']}")
        for problem in i["problems"]:
            print(f"  ⚠ {problem}")
    if gw := plan["gateway"]:
        print(f"\n[{gw['name']}] gateway  {gw['url']}  metrics port {gw['prometheus_port']}  fronts "
              f"{', '.join(gw['fronts'])}")
        print(f"  argv: {shlex.join(gw['argv'])}")
        print(f"  log:  {gw['log']}")
        for problem in gw["problems"]:
            print(f"  ⚠ {problem}")
