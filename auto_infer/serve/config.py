"""The model config (infer-dev's runner TOML): TOML → overrides → defaults → checks → frozen records.

``[master]`` says whether and with what to run; ``[instance.control]`` / ``[instance.server]`` are
defaults for every instance; every other key of ``[instance]`` is one server, named by its key.
``server`` keys are the engine's own flags (SGLang, vLLM or llama.cpp: :mod:`auto_infer.serve.engines`
recognises which, and asks the engine's own parser where it can be imported); ``control`` and
``master`` keys are ours and closed. The format is described for editors by
``auto_infer/data/model-config.schema.json`` and, with comments, by ``model-configs/example.toml``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.settings import Settings
from auto_infer.core.tomlfile import apply_overrides, read_toml
from auto_infer.serve import gateway, validate
from auto_infer.serve.engines import known as engines
from auto_infer.serve.engines.base import flag
from auto_infer.serve.model import (
    CONTROL_KEYS,
    DEFAULT_PROMPT,
    DEFAULT_READY_TIMEOUT,
    DEFAULT_STOP_GRACE,
    MASTER_KEYS,
    NAME_RE,
    SCALAR,
    Control,
    Instance,
    Master,
    ModelConfig,
    Where,
    is_kind,
)
from auto_infer.weights import spec

FLAG_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.]*")


def merged(settings: Settings, path: Path) -> tuple[dict[str, Any], str, list[str]]:
    """The file with the overrides merged: AUTO_INFER_SGLANG_OVERRIDES (every engine), then the
    engine's own infer-dev spelling (AUTO_INFER_VLLM_OVERRIDES / AUTO_INFER_LLAMA_CPP_OVERRIDES)."""
    if path == settings.config_path and not path.exists():
        named = (f"{settings.config_var} names it" if settings.config_var
                 else "the default path: none of AUTO_INFER_SGLANG_CONFIG, AUTO_INFER_VLLM_CONFIG, "
                      "AUTO_INFER_LLAMA_CPP_CONFIG is set")
        raise UserError(f"the model config does not exist ({named})", where=str(path),
                        fix=f"set {settings.config_var or 'AUTO_INFER_SGLANG_CONFIG'} to your model config "
                            "(model-configs/ has one per engine)")
    raw = read_toml(path)
    engine = engines.recognise(raw, settings.engine_overrides, str(path))
    applied, data = [], raw
    own = engines.get(engine).OVERRIDES_VAR
    for var, text in (
        ("AUTO_INFER_SGLANG_OVERRIDES", settings.overrides),
        (own, settings.engine_overrides.get(own, "")),
    ):
        if text.strip():
            data = apply_overrides(data, text, var)
            applied.append(var)
    if applied:      # the overrides may name the engine ([master] engine) themselves
        engine = engines.recognise(data, settings.engine_overrides, f"{path} (after {', '.join(applied)})")
    master = data.get("master")
    if isinstance(master, dict):
        data["master"] = {**master, "engine": engine}
    elif master is None:
        data["master"] = {"engine": engine}
    return data, engine, applied


def check_modules(settings: Settings) -> tuple[str, ...]:
    """What `check` requires: AUTO_INFER_CHECK_MODULES if set; else what the model config's enabled
    instances run (a vLLM template has no sglang; an instance with `command =` needs none); else (no
    config, or one that does not load: `serve` says what is wrong with it) SGLang's, torch,sglang."""
    if settings.check_modules is not None:
        return settings.check_modules
    fallback = engines.get("sglang").CHECK_MODULES
    if not settings.config_path.is_file():
        return fallback
    try:
        data, engine, applied = merged(settings, settings.config_path)
    except UserError:
        return fallback
    try:
        return required_modules(build(data, engine, Where(settings.config_path, ", ".join(applied))))
    except UserError:
        return tuple(engines.get(engine).CHECK_MODULES)


def required_modules(cfg: ModelConfig) -> tuple[str, ...]:
    """The modules the engines of the enabled instances need (the config's engine's when none is enabled)."""
    kinds = [inst.engine for inst in cfg.enabled()] or [cfg.master.engine]
    return tuple(dict.fromkeys(m for kind in kinds for m in engines.get(kind).CHECK_MODULES))


def load(settings: Settings, path: Path | None = None) -> ModelConfig:
    """Read, merge and check the model config; nothing on the host (paths, ports) is looked at."""
    path = path or settings.config_path
    data, engine, applied = merged(settings, path)
    return build(data, engine, Where(path, ", ".join(applied)))


def build(data: dict[str, Any], engine: str, ctx: Where, *, across: bool = True) -> ModelConfig:
    """The records of merged data, checked. ``across=False`` leaves out the checks between instances
    (ports, GPUs, log files shared on one host): for instances that each run on a host of their own
    (a Kubernetes pod), whose caller checks each one alone."""
    unknown = sorted(set(data) - {"master", "instance", "router"})
    if unknown:
        raise ctx.error(f"unknown top-level table {unknown[0]!r}", unknown[0],
                        "the format has [master], [instance.*] and [router] only")
    master = Master(**ctx.closed(ctx.table(data, "master", "[master]"), {**MASTER_KEYS, **engines.master_keys()},
                                 "[master]"))
    _foreign_master_keys(ctx, master, data["master"])
    router = gateway.parse(ctx, ctx.table(data, "router", "[router]")) if "router" in data else None
    cfg = ModelConfig(ctx.path, master, _instances(ctx, ctx.table(data, "instance", "[instance]"), engine), router)
    if across:
        validate.cross_check(ctx, cfg)
    else:
        for inst in cfg.enabled():
            validate.cross_check(ctx, ModelConfig(ctx.path, master, (inst,)))
    gateway.cross_check(ctx, cfg)
    return cfg


def _foreign_master_keys(ctx: Where, master: Master, table: dict[str, Any]) -> None:
    """A [master] key of another engine than the config's (e.g. llama_cpp_path with engine = "vllm")."""
    for name, eng in engines.ENGINES.items():
        for key in eng.MASTER_KEYS:
            if key in table and name != master.engine:
                raise ctx.error(f"[master] {key} is {eng.TITLE}'s, but this config's engine is "
                                f"{engines.get(master.engine).TITLE}", f"[master] {key}",
                                f"remove {key}, or set [master] engine = \"{name}\"")


def _instances(ctx: Where, table: dict[str, Any], engine: str) -> tuple[Instance, ...]:
    base_control = ctx.closed(ctx.table(table, "control", "[instance.control]"), CONTROL_KEYS,
                              "[instance.control]")
    _control(ctx, base_control, "[instance.control]")          # defaults are checked on their own too
    aliases = engines.get(engine).ALIASES
    base_server = _server(ctx, ctx.table(table, "server", "[instance.server]"), "[instance.server]", aliases)
    out = []
    for name, body in table.items():
        if name in ("control", "server"):
            continue
        where, ctl, srv = f"[instance.{name}]", f"[instance.{name}.control]", f"[instance.{name}.server]"
        if not NAME_RE.fullmatch(name):
            raise ctx.error(
                f"instance name {name!r} is not allowed: it names folders and files",
                f"[instance] {name!r}",
                "use letters, digits, '_', '-' and '.', starting with a letter or digit, "
                "at most 64 characters (e.g. qwen2_vl_7b)",
            )
        if not isinstance(body, Mapping):
            raise ctx.error(f"{where} must be a table with control/server sub-tables", where,
                            f"write {srv} (and optionally {ctl})")
        extra = sorted(set(body) - {"control", "server", "model"})
        if extra:
            raise ctx.error(f"unknown key {extra[0]!r} in {where}", f"{where} {extra[0]}",
                            f"an instance has {ctl}, {srv} and [instance.{name}.model] only")
        control = ctx.closed(ctx.table(body, "control", ctl), CONTROL_KEYS, ctl)
        merged_control = {**base_control, **control,
                          "env": {**base_control.get("env", {}), **control.get("env", {})}}
        control_ = _control(ctx, merged_control, ctl)
        eng = engines.get("command" if control_.command else engine)
        server = _server(ctx, ctx.table(body, "server", srv), srv, eng.ALIASES)
        mdl = f"[instance.{name}.model]"
        source = spec.parse(ctx.table(body, "model", mdl), mdl, ctx.path.parent, ctx.error) if "model" in body else None
        out.append(Instance(name, control_, MappingProxyType(_merge_server(base_server, server)), engine,
                            eng.DEFAULT_PORT, eng.NAME_KEYS, model=source))
    return tuple(out)


def _server(ctx: Where, table: dict[str, Any], where: str, aliases: Mapping[str, str]) -> dict[str, Any]:
    """The table with each key spelled one way: ``--tp-size``, ``tp-size`` → ``tp_size``, and an
    engine's alias → the flag it stands for (SGLang's ``tensor_parallel_size`` → ``tp_size``,
    llama.cpp's ``-ngl`` → ``n_gpu_layers``); two keys for one flag are refused, naming both."""
    out: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for key, value in table.items():
        items = value if isinstance(value, list) else [value]
        if key == "extra_args" and not isinstance(value, (str, list)):
            raise ctx.error("extra_args must be a string or a list of strings", f"{where} extra_args",
                            'e.g. extra_args = ["--enable-metrics"]')
        if not all(isinstance(v, (*SCALAR, dict)) for v in items):
            raise ctx.error(f"{where} {key} has a value that cannot become a flag", f"{where} {key}",
                            "use a string, number, true/false, a table, or a list of those")
        spelled = key.strip().lstrip("-").replace("-", "_")
        if not FLAG_KEY.fullmatch(spelled):
            raise ctx.error(f"{where} {key!r} is not a flag name", f"{where} {key!r}",
                            "write the flag's name without its value, e.g. tp_size = 2 for --tp-size 2")
        same = aliases.get(spelled, spelled)
        if same in seen:
            raise ctx.error(f"{where} gives one flag twice: {seen[same]!r} and {key!r} both set {flag(spelled)}",
                            f"{where} {key!r}", f"keep one of {seen[same]!r} and {key!r}")
        seen[same] = key
        out[same if key != "extra_args" else key] = value
    return out


def _merge_server(base: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults, then the instance's keys (both spelled one way by _server; lists add up)."""
    out = dict(base)
    for key, value in own.items():
        if isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = [*out[key], *value]
        else:
            out[key] = value
    return out


def _control(ctx: Where, c: dict[str, Any], where: str) -> Control:
    base = ctx.path.parent
    env = c.get("env", {})
    for key, value in env.items():
        if not is_kind(value, SCALAR):
            raise ctx.error(f"control env {key} must be a string or a number", f"{where} env.{key}",
                            f'e.g. {key} = "1"')
    for key in ("ready_timeout", "stop_grace"):
        if key in c and not (c[key] > 0 or (key == "stop_grace" and c[key] == 0)):
            raise ctx.error(f"{key} must be a positive number of seconds", f"{where} {key}",
                            f"e.g. {key} = 600")
    command = c.get("command")
    if command is not None and (not command or not all(isinstance(t, str) for t in command)):
        raise ctx.error("command must be a non-empty list of strings", f"{where} command",
                        'e.g. command = ["python", "-m", "my_server", "--port", "{port}"]')
    return Control(
        enabled=c.get("enabled", True), background=c.get("background", True),
        log_dir=(base / c["log_dir"]) if "log_dir" in c else None,
        log_file=(base / c["log_file"]) if "log_file" in c else None,
        gpu_ids=_gpus(ctx, c.get("gpu_ids"), where),
        ready_timeout=float(c.get("ready_timeout", DEFAULT_READY_TIMEOUT)),
        stop_grace=float(c.get("stop_grace", DEFAULT_STOP_GRACE)),
        smoke_prompt=c.get("smoke_prompt", DEFAULT_PROMPT), api_key_env=c.get("api_key_env"),
        env=MappingProxyType({k: _env_str(v) for k, v in env.items()}),
        command=tuple(command) if command else None)


def _env_str(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _gpus(ctx: Where, value: Any, where: str) -> tuple[str, ...] | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "all")):
        return None
    if isinstance(value, str) and value.strip().lower() == "none":
        return ()
    items = value if isinstance(value, list) else str(value).split(",")
    ids = tuple(str(i).strip() for i in items)
    if not ids or not all(i.isdigit() or (i and i.startswith("GPU-")) for i in ids) or len(set(ids)) != len(ids):
        raise ctx.error(f"gpu_ids {value!r} is not a GPU list", f"{where} gpu_ids",
                        'use "all", "none", or distinct GPU indexes such as "0,1"')
    return ids

