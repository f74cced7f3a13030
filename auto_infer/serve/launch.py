"""From a config instance to a launch: the argv, the environment, the log, the probe target.

The instance's engine (:mod:`auto_infer.serve.engines`) builds the argv, after the engine's own
parser has accepted the flags where it can be imported: SGLang ``<python> -m sglang.launch_server``,
vLLM ``<python> -m vllm.entrypoints.openai.api_server`` (or infer-dev's ``pixi run``), llama.cpp
``llama-server``, ``command`` instances their command with ``{name}``, ``{api_key}`` and the
``server`` keys filled in. All get auto-infer's environment without proxies, the installed
environment first on PATH, what the engine adds (llama-server: LD_LIBRARY_PATH), the instance's
``control.env`` and ``CUDA_VISIBLE_DEVICES`` from ``gpu_ids``. The config hash covers
what a restart would change (argv and environment with secrets redacted, log, working folder).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from auto_infer.core import redact
from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import check_target
from auto_infer.core.progress import say
from auto_infer.core.settings import Settings
from auto_infer.serve import probe
from auto_infer.serve.engines import known as engines
from auto_infer.serve.engines.base import Checked, Program
from auto_infer.serve.model import Instance, ModelConfig


@dataclass(frozen=True)
class Launch:
    inst: Instance
    argv: list[str]                 # as run (may hold the API key: never written as is)
    env: dict[str, str]             # the whole environment of the server
    added: dict[str, str]           # what the instance's config sets (control.env, CUDA_VISIBLE_DEVICES)
    ours: dict[str, str]            # what auto-infer sets for every server (cache variables, PATH, ...)
    log: Path
    cwd: Path
    target: probe.Target
    secrets: list[str]
    config_hash: str
    missing: str | None = None      # why it cannot start here (no Python, no binary): --dry-run shows it

    @property
    def key(self) -> str:
        """Its record's name: the instance's, NAME@rankN for a worker rank (model.Instance.key)."""
        return self.inst.key

    @property
    def launch_record(self) -> Path:
        return self.log.with_suffix(".launch.json")

    def redacted_argv(self) -> list[str]:
        return redact.redact_argv(self.argv, self.secrets)

    def env_record(self) -> dict[str, object]:
        """For the launch record: the values we and the config set (redacted); of the environment the
        server inherits from the caller, the names only (values there are the operator's business)."""
        set_here = {**self.ours, **self.added}
        return {"set": redact.redact_env(set_here, self.secrets),
                "inherited_names": sorted(k for k in self.env if k not in set_here)}


def our_env(settings: Settings) -> dict[str, str]:
    """What auto-infer sets for every server: the cache variables, the installed environment first
    on PATH, CONDA_PREFIX, unbuffered Python output, and the Hub offline (a server never reaches for
    the network for configs or tokenizers; an instance's control.env may set them to "0")."""
    path = os.pathsep.join([str(settings.env_bin), os.environ.get("PATH", "")]).rstrip(os.pathsep)
    return {**settings.cache_env(), "PATH": path, "CONDA_PREFIX": str(settings.env_prefix), "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def base_env(settings: Settings) -> dict[str, str]:
    """The environment every server starts from: the caller's, offline (no proxies), plus ours."""
    return {**settings.tool_env(online=False), **our_env(settings)}


def _api_key(cfg: ModelConfig, inst: Instance) -> str | None:
    name = inst.control.api_key_env
    if name is None:
        key = inst.server.get("api_key")
        return str(key) if key else None
    value = os.environ.get(name, "")
    if not value:
        raise UserError(f"instance {inst.name}: api_key_env names {name}, which is not set (or empty)",
                        where=f"{cfg.path}: [instance.{inst.name}.control] api_key_env",
                        fix=f"export {name}=<the key> before serving, or remove api_key_env")
    return value


def log_path(settings: Settings, inst: Instance) -> Path:
    """``log_file``, else ``<log_dir>/NAME/server.log``; a worker rank's are its own (NAME@rankN)."""
    if inst.control.log_file is not None:
        f = inst.control.log_file
        return f.with_name(f"{f.stem}{inst.key[len(inst.name):]}{f.suffix}") if inst.worker else f
    return (inst.control.log_dir or settings.server_logs(inst.engine)) / inst.key / "server.log"


def build_launch(settings: Settings, cfg: ModelConfig, inst: Instance, base: dict[str, str],
                 multi: frozenset[str] = frozenset(), ours: dict[str, str] | None = None) -> Launch:
    key = _api_key(cfg, inst)
    prog: Program = engines.get(inst.engine).program(settings, cfg.master, inst, multi, key)
    added = {**prog.env, **inst.control.env}
    gpus = inst.control.gpu_ids
    if gpus is not None:
        added["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    hidden = redact.secret_values(key, inst.server.get("api_key"), inst.server.get("admin_api_key"), env=added)
    target = probe.Target(inst.name, probe.base_url(inst.host, inst.port), inst.served_name, inst.engine, key)
    log = log_path(settings, inst)
    for path, what in ((log, "log"), (log.with_name(log.name + ".1"), "previous log"),
                       (log.with_suffix(".launch.json"), "launch record")):
        try:
            check_target(path, f"instance {inst.name}'s {what}")
        except UserError as exc:
            raise UserError(exc.what, where=f"{cfg.path}: [instance.{inst.name}.control] log_file / log_dir",
                            fix=exc.fix) from None
    digest = json.dumps({"argv": redact.redact_argv(prog.argv, hidden), "env": redact.redact_env(added, hidden),
                         "log": str(log), "cwd": str(cfg.path.parent)}, sort_keys=True)
    missing = f"{prog.missing} ({prog.fix})" if prog.missing else None
    return Launch(
        inst,
        prog.argv,
        {**base, **added},
        added,
        ours if ours is not None else our_env(settings),
        log,
        cfg.path.parent,
        target,
        hidden,
        hashlib.sha256(digest.encode()).hexdigest()[:16],
        missing,
    )


def build_launches(settings: Settings, cfg: ModelConfig, chosen: tuple[Instance, ...],
                   dry_run: bool = False) -> list[Launch]:
    """Every launch, after each engine's own parser has accepted its instances' flags (where it
    can be imported). Without ``dry_run`` an instance that cannot start here is an error."""
    base = base_env(settings)
    multi: dict[str, frozenset[str]] = {}
    for name in dict.fromkeys(i.engine for i in chosen):
        group = [i for i in chosen if i.engine == name]
        prog = engines.get(name).program(settings, cfg.master, group[0], frozenset(), None)
        if prog.missing and not dry_run:
            raise UserError(prog.missing, where=str(cfg.path), fix=prog.fix)
        if prog.note:
            say(f"  {prog.note}")
        checked = engines.get(name).preflight(settings, cfg.master, {i.name: i.server for i in group}, base)
        if checked.skipped and name != "command":
            say(f"  {checked.label}'s own argument check skipped: {checked.skipped}")
        elif not checked.skipped and not checked.rejected:
            say(f"  flags accepted by {checked.label} {checked.version}'s own parser")
        _raise_rejected(cfg, checked)
        multi[name] = checked.multi
    ours = our_env(settings)                        # once: the same for every instance
    return [build_launch(settings, cfg, i, base, multi.get(i.engine, frozenset()), ours) for i in chosen]


def _raise_rejected(cfg: ModelConfig, checked: Checked) -> None:
    for name, (key, message) in checked.rejected.items():
        inst = cfg.get(name)
        where = key if key in inst.server else f"extra_args ({key})"
        raise UserError(f"instance {name}: {checked.label} {checked.version} rejects server key {key}: {message}",
                        where=f"{cfg.path}: [instance.{name}.server] {where}",
                        fix=f"check the name and value against the engine's --help ({checked.label} {checked.version})")
