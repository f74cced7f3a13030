"""The gateway's config: the ``[router]`` table, its argv, and its flags judged by its own parser.

The gateway is sglang-router's ``smg`` (SGLang Model Gateway, notes/cluster.md): one process that
routes OpenAI requests to the workers (``--worker-urls``) by a policy. ``[router]`` keys::

    enable = true                 # default true once the table is there
    host = "127.0.0.1"            # port = 30080, prometheus_port = 29000 (always passed: smg panics
    policy = "round_robin"        #   when its default 0.0.0.0:29000 is taken)
    instances = ["a", "b"]        # which instances it fronts (default: every enabled one)
    extra_args = ["--log-level", "debug"]         # more gateway flags, after ours (the last one wins)
    command = ["smg", "launch"]   # default: <environment python> -m sglang_router.launch_router
    ready_timeout = 300, stop_grace = 30, log_file = "...", smoke_prompt = "..."

Before anything starts, the flags go through ``sglang_router.launch_router.parse_router_args`` in
the gateway's own Python (the environment's, or the one next to ``command[0]``), as SGLang's
flags go through SGLang's parser (:mod:`auto_infer.serve.engines.sglang`).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.serve.model import DEFAULT_PROMPT, NUM, ROUTER_NAME, ModelConfig, Router, Where

ROUTER_KEYS: dict[str, Any] = {
    "enable": bool, "host": str, "port": int, "prometheus_port": int, "policy": str, "instances": list,
    "extra_args": (str, list), "command": list, "ready_timeout": NUM, "stop_grace": NUM, "log_file": str,
    "smoke_prompt": str}
MODULE = "sglang_router.launch_router"
# Seen a dead worker within ~10 s (smg's defaults: 60 s x 3 failures); extra_args may override them.
HEALTH_FLAGS = ["--health-check-interval-secs", "5", "--health-failure-threshold", "2"]
FLAG_KEYS = {"--host": "host", "--port": "port", "--policy": "policy", "--prometheus-port": "prometheus_port"}
MARK = "@@auto-infer "
CHECK_SCRIPT = r"""
import contextlib, io, json, sys
MARK = "@@auto-infer "
try:
    from sglang_router.launch_router import parse_router_args
except BaseException as exc:
    print(MARK + json.dumps({"missing": f"{type(exc).__name__}: {exc}"[:300]}), flush=True)
    sys.exit(0)
try:
    from importlib.metadata import version
    ver = version("sglang-router")
except Exception:
    ver = "unknown"
err = io.StringIO()
try:
    with contextlib.redirect_stderr(err):
        parse_router_args(json.loads(sys.argv[1]))
except SystemExit as exc:
    lines = [ln for ln in err.getvalue().strip().splitlines() if ln.strip()]
    print(MARK + json.dumps({"version": ver, "error": lines[-1] if lines else f"exit {exc.code}"}), flush=True)
    sys.exit(0)
print(MARK + json.dumps({"version": ver}), flush=True)
"""


def parse(ctx: Where, table: dict[str, Any]) -> Router:
    """The [router] table's keys and types (cross_check does what needs the instances)."""
    r = ctx.closed(table, ROUTER_KEYS, "[router]")
    for key in ("port", "prometheus_port"):
        if key in r and not 0 < r[key] < 65536:
            raise ctx.error(f"[router] {key} {r[key]!r} is not a TCP port", f"[router] {key}",
                            "use an integer between 1 and 65535")
    for key in ("ready_timeout", "stop_grace"):
        if key in r and not (r[key] > 0 or (key == "stop_grace" and r[key] == 0)):
            raise ctx.error(f"[router] {key} must be a positive number of seconds", f"[router] {key}",
                            f"e.g. {key} = 60")
    for key in ("instances", "command"):
        if key in r and (not r[key] or not all(isinstance(t, str) for t in r[key])):
            raise ctx.error(f"[router] {key} must be a non-empty list of strings", f"[router] {key}",
                            'e.g. instances = ["a", "b"]' if key == "instances" else 'e.g. command = ["smg", "launch"]')
    extra = r.get("extra_args", [])
    if isinstance(extra, list) and not all(isinstance(t, (str, int, float)) for t in extra):
        raise ctx.error("[router] extra_args must be a string or a list of strings", "[router] extra_args",
                        'e.g. extra_args = ["--log-level", "debug"]')
    return Router(
        enable=r.get("enable", True), host=r.get("host", "127.0.0.1"), port=r.get("port", 30080),
        prometheus_port=r.get("prometheus_port", 29000), policy=r.get("policy", "round_robin"),
        instances=tuple(r["instances"]) if "instances" in r else None,
        extra_args=tuple(shlex.split(extra) if isinstance(extra, str) else (str(t) for t in extra)),
        command=tuple(r["command"]) if "command" in r else None,
        ready_timeout=float(r.get("ready_timeout", 300.0)), stop_grace=float(r.get("stop_grace", 30.0)),
        log_file=(ctx.path.parent / r["log_file"]) if "log_file" in r else None,
        smoke_prompt=r.get("smoke_prompt", DEFAULT_PROMPT))


def active(cfg: ModelConfig) -> Router | None:
    return cfg.router if cfg.router is not None and cfg.router.enable else None


def fronted(cfg: ModelConfig) -> tuple[str, ...]:
    router = active(cfg)
    if router is None:
        return ()
    return router.instances if router.instances is not None else tuple(i.name for i in cfg.enabled())


def serving_here(cfg: ModelConfig) -> tuple[str, ...]:
    """The fronted instances that serve HTTP here: not worker ranks of multi-node instances."""
    return tuple(n for n in fronted(cfg) if cfg.get(n).worker is None)


def runs_here(cfg: ModelConfig) -> Router | None:
    """The gateway to run on this host: none where every instance it fronts is a worker rank (the
    leader's host runs it)."""
    router = active(cfg)
    return router if router is not None and serving_here(cfg) else None


def cross_check(ctx: Where, cfg: ModelConfig) -> None:
    """Names it fronts exist and are enabled; its ports clash with no worker's, nor each other."""
    router = active(cfg)
    if router is None:
        return
    enabled = {i.name: i for i in cfg.enabled()}
    if ROUTER_NAME in {i.name for i in cfg.instances}:
        raise ctx.error(f"an instance is named {ROUTER_NAME!r}, the name the gateway's record and log take",
                        f"[instance.{ROUTER_NAME}]", "rename that instance (e.g. router_worker)")
    for name in router.instances or ():
        if name not in enabled:
            known = ", ".join(enabled) or "none"
            raise ctx.error(f"[router] instances names {name!r}, which is not an enabled instance",
                            "[router] instances", f"enabled instances: {known}")
    if not fronted(cfg):
        raise ctx.error("[router] fronts no instance: no instance is enabled", "[router]",
                        "enable an instance, or set enable = false under [router]")
    if router.port == router.prometheus_port:
        raise ctx.error(f"[router] port and prometheus_port are both {router.port}", "[router] prometheus_port",
                        "give the gateway's metrics a port of their own")
    for inst in enabled.values():
        for key in ("port", "prometheus_port"):
            if getattr(router, key) == inst.port:
                raise ctx.error(f"the gateway's {key} {inst.port} is also instance {inst.name}'s port",
                                f"[router] {key}", f"choose a port that no worker uses (instance {inst.name} "
                                f"has {inst.port} under [instance.{inst.name}.server])")


def worker_url(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '', '::', '[::]') else host}:{port}"


def flags(router: Router, urls: Sequence[str]) -> list[str]:
    """The gateway's flags (without the program): ours first, extra_args last (the last one wins)."""
    return ["--host", router.host, "--port", str(router.port), "--worker-urls", *urls, "--policy", router.policy,
            "--prometheus-host", router.host, "--prometheus-port", str(router.prometheus_port),
            *HEALTH_FLAGS, *router.extra_args]


def program(router: Router, python: Path) -> list[str]:
    return list(router.command) if router.command else [str(python), "-m", MODULE]


def checker_python(router: Router, python: Path) -> Path | None:
    """The Python that can import the gateway's parser: the environment's, or the one beside command[0]."""
    if not router.command:
        return python
    first = Path(router.command[0])
    if first.name.startswith("python") and first.is_absolute():
        return first
    beside = first.parent / "python" if first.is_absolute() else None
    return beside if beside is not None and beside.exists() else None


def lacks_python(router: Router, python: Path) -> bool:
    """The gateway runs as ``python -m`` of the environment (no [router] command), which has no Python."""
    checker = checker_python(router, python)
    return not router.command and (checker is None or not checker.exists())


def front_urls(cfg: ModelConfig) -> tuple[tuple[str, ...], list[str]]:
    """The instances the gateway fronts here and their URLs as the config gives them."""
    fronts = serving_here(cfg)
    return fronts, [worker_url(cfg.get(n).host, cfg.get(n).port) for n in fronts]


def preflight(cfg: ModelConfig, router: Router, python: Path, env: Mapping[str, str], urls: Sequence[str],
              timeout: float = 120.0) -> str:
    """Run the gateway's own parser on its flags; raise a UserError naming the key it rejects.
    Returns what was checked (for the progress line)."""
    checker = checker_python(router, python)
    if lacks_python(router, python):
        raise UserError(f"no Python to run the gateway with: {python}", where=f"{cfg.path}: [router]",
                        fix="run `auto-infer install` first, or set [router] command")
    if router.command and (checker is None or not checker.exists()):
        return f"gateway flag check skipped: no Python beside {router.command[0]}"
    argv = flags(router, urls)
    try:
        proc = subprocess.run([str(checker), "-c", CHECK_SCRIPT, json.dumps(argv)], capture_output=True, text=True,
                              env=dict(env), timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"the gateway's flag check could not run: {exc}", where=str(checker)) from None
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise UserError(f"the gateway's flag check died (exit {proc.returncode}): "
                        f"{' | '.join(proc.stderr.strip().splitlines()[-5:]) or 'no output'}", where=str(checker),
                        fix=f"run it by hand: {checker} -c 'import {MODULE}'")
    result = json.loads(line[len(MARK):])
    if "missing" in result:
        if router.command:
            return f"gateway flag check skipped: {checker} has no sglang-router ({result['missing']})"
        raise UserError(f"the environment has no gateway: {checker} cannot import {MODULE} ({result['missing']})",
                        where=f"{cfg.path}: [router]",
                        fix="add sglang-router to the template's pypi-dependencies (the shipped template has it) "
                            "and install again, or point [router] command at an `smg launch`")
    if "error" in result:
        m = re.search(r"(--[\w-]+)", result["error"])
        key = FLAG_KEYS.get(m.group(1)) if m else None
        raise UserError(f"sglang-router {result['version']} rejects the gateway's flags: {result['error']}",
                        where=f"{cfg.path}: [router] {key or 'extra_args'}",
                        fix=f"check the name and value against `{checker} -m {MODULE} --help`")
    return f"gateway flags accepted by sglang-router {result['version']}'s own parser ({checker})"
