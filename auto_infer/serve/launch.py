"""From a config instance to a launch: the argv, the environment, the log, the probe target.

SGLang instances run ``<python> -m sglang.launch_server <flags>`` (python: ``master.python_path``,
else the installed environment's), after SGLang's own parser has accepted the flags; ``command``
instances run their command with ``{name}``, ``{api_key}`` and the ``server`` keys filled in. Both
get auto-infer's environment without proxies, the installed environment first on PATH, the
instance's ``control.env`` and ``CUDA_VISIBLE_DEVICES`` from ``gpu_ids``. The config hash covers
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
from auto_infer.core.progress import say
from auto_infer.core.settings import Settings
from auto_infer.serve import model, probe, sglang_args
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


def instance_python(settings: Settings, cfg: ModelConfig) -> Path:
    return Path(cfg.master.python_path) if cfg.master.python_path else settings.env_prefix / "bin" / "python"


def our_env(settings: Settings) -> dict[str, str]:
    """What auto-infer sets for every server: the cache variables, the installed environment first
    on PATH, CONDA_PREFIX, unbuffered Python output, and the Hub offline (a server never reaches for
    the network for configs or tokenizers; an instance's control.env may set them to "0")."""
    path = os.pathsep.join([str(settings.env_prefix / "bin"), os.environ.get("PATH", "")]).rstrip(os.pathsep)
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


def _command(inst: Instance, api_key: str | None) -> list[str]:
    values = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in inst.server.items()}
    values.update(name=inst.name, api_key=api_key or "")
    return [token.format_map(values) for token in inst.control.command or ()]


def log_path(settings: Settings, inst: Instance) -> Path:
    if inst.control.log_file is not None:
        return inst.control.log_file
    return (inst.control.log_dir or settings.logs_dir) / inst.name / "server.log"


def build_launch(settings: Settings, cfg: ModelConfig, inst: Instance, python: Path, base: dict[str, str],
                 multi: frozenset[str] = frozenset()) -> Launch:
    key = _api_key(cfg, inst)
    if inst.engine == "sglang":
        argv = [str(python), "-m", cfg.master.server_module, *sglang_args.server_flags(inst.server, multi)]
        if key and "api_key" not in inst.server:
            argv += ["--api-key", key]
    else:
        argv = _command(inst, key)
    added = dict(inst.control.env)
    gpus = inst.control.gpu_ids
    if gpus is not None:
        added["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    hidden = redact.secret_values(key, inst.server.get("api_key"), inst.server.get("admin_api_key"), env=added)
    model = inst.served_name if inst.engine == "sglang" else inst.server.get("served_model_name")
    target = probe.Target(inst.name, probe.base_url(inst.host, inst.port), model and str(model), inst.engine, key)
    log = log_path(settings, inst)
    digest = json.dumps({"argv": redact.redact_argv(argv, hidden), "env": redact.redact_env(added, hidden),
                         "log": str(log), "cwd": str(cfg.path.parent)}, sort_keys=True)
    return Launch(inst, argv, {**base, **added}, added, our_env(settings), log, cfg.path.parent, target, hidden,
                  hashlib.sha256(digest.encode()).hexdigest()[:16])


def build_launches(settings: Settings, cfg: ModelConfig, chosen: tuple[Instance, ...]) -> list[Launch]:
    """Every launch, after SGLang's own parser has accepted each SGLang instance's flags."""
    python, base = instance_python(settings, cfg), base_env(settings)
    sgl = [i for i in chosen if i.engine == "sglang"]
    multi: frozenset[str] = frozenset()
    if sgl and not python.exists():
        raise UserError(f"no Python to run SGLang with: {python}",
                        where=f"{cfg.path}: [master] python_path" if cfg.master.python_path else str(settings.env_prefix),
                        fix="run `auto-infer install` first" if not cfg.master.python_path else "fix master.python_path")
    if sgl and cfg.master.server_module == model.DEFAULT_MODULE:
        checked = sglang_args.check(python, base, lambda m: {
            i.name: sglang_args.server_flags(i.server, m) for i in sgl})
        if checked.skipped:
            say(f"  SGLang's own argument check skipped: {checked.skipped}")
        else:
            say(f"  flags accepted by SGLang {checked.version}'s own parser ({python})")
        _raise_rejected(cfg, checked)
        multi = checked.multi
    return [build_launch(settings, cfg, i, python, base, multi) for i in chosen]


def _raise_rejected(cfg: ModelConfig, checked: sglang_args.Checked) -> None:
    for name, (key, message) in checked.rejected.items():
        inst = cfg.get(name)
        where = key if key in inst.server else f"extra_args ({key})"
        raise UserError(f"instance {name}: SGLang {checked.version} rejects server key {key}: {message}",
                        where=f"{cfg.path}: [instance.{name}.server] {where}",
                        fix=f"check the name and value against `{checked.python} -m sglang.launch_server --help`")
