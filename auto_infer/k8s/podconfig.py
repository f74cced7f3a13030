"""The model config as each pod reads it: one instance's config file, secrets kept out of it.

`k8s` reads the config as `serve` does (overrides applied), then gives every instance its own config
file (a ConfigMap per instance): ``[master]``, the ``[instance]`` defaults and that instance, no
``[router]`` (the gateway has its own Deployment). So a pod's file and env grow with its own
instance only, never with the others (a config of 10,000 instances renders in linear size).

Secrets: a ConfigMap is readable by anyone who may read the namespace. A ``control.env`` entry
whose name looks like a credential (``GITHUB_PAT``, ``HF_TOKEN``) or whose value carries one (a URL
with a password, a token's shape) leaves the file; the pod takes it from the Secret
``auto-infer-env`` (key = the variable's name) instead. A credential anywhere else in the config
(a ``server`` value, which becomes a flag) is refused: there is no way to reference a Secret there.

Multi-node: on Kubernetes LWS gives the leader's address and each pod's rank, so ``nnodes`` is
enough; ``node_rank`` and ``dist_init_addr`` are filled for the check when the config lacks them.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Iterator, Mapping
from typing import Any

from auto_infer.core import redact
from auto_infer.core.errors import UserError
from auto_infer.core.settings import Settings
from auto_infer.core.tomlfile import deep_merge
from auto_infer.serve import config
from auto_infer.serve.engines.base import flag
from auto_infer.serve.model import ModelConfig, Where

ENV_SECRET = "auto-infer-env"        # the Secret a pod's secret control.env entries come from
DEFAULT_DIST_PORT = 20000
FILL_HOST = "lws-leader"             # only for the check: every pod's overrides replace it
SECTIONS = ("control", "server")     # [instance.control] / [instance.server]: the defaults


def is_secret(name: str, value: object) -> bool:
    text = str(value)
    return (
        redact.is_secret_name(name)
        or redact.has_credentials(text)
        or bool(redact.PROXY_NAME.match(name) and "@" in text)
    )


def _named(table: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, body in table.items():
        if name not in SECTIONS and isinstance(body, Mapping):
            yield name, body


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def multinode_fill(data: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides that give every instance with nnodes > 1 a node_rank and dist_init_addr it lacks."""
    table = _table(data, "instance")
    defaults = _table(table, "server")
    fill: dict[str, Any] = {}
    for name, body in _named(table):
        server = {**defaults, **_table(body, "server")}
        try:
            many = int(server.get("nnodes", 1)) > 1
        except (TypeError, ValueError):
            continue                    # config.load says what is wrong with it
        missing = {"node_rank": 0, "dist_init_addr": f"{FILL_HOST}:{DEFAULT_DIST_PORT}"}
        missing = {k: v for k, v in missing.items() if k not in server}
        if many and missing:
            fill[name] = {"server": missing}
    return {"instance": fill} if fill else {}


def load(settings: Settings) -> tuple[ModelConfig, dict[str, Any]]:
    """The config as `serve` reads it, each instance checked as its pod will check it (alone: pods
    may share a port, each has its own IP), multi-node keys filled; and the merged data."""
    data, engine, applied = config.merged(settings, settings.config_path)
    checked = deep_merge(data, multinode_fill(data))
    cfg = config.build(checked, engine, Where(settings.config_path, ", ".join(applied)), across=False)
    refuse_secrets(cfg, data)
    return cfg, data


def refuse_secrets(cfg: ModelConfig, data: Mapping[str, Any]) -> None:
    """Credentials outside control.env would reach a ConfigMap or a flag: refuse, naming the key."""
    where = str(cfg.path)
    for path, value in _leaves(data, ()):
        if len(path) >= 3 and path[0] == "instance" and path[-2] == "env" and path[-3] == "control":
            continue                                    # control.env: moved to the Secret
        key = path[-1] if path else ""
        if (key in ("api_key", "admin_api_key") or redact.is_secret_flag(flag(str(key)))
                or redact.has_credentials(str(value)) or _secret_in_args(key, value)):
            table = ".".join(path[:-1])
            raise UserError(f"{table} {key} holds a secret that would be stored in a ConfigMap",
                            where=f"{where}: [{table}] {key}",
                            fix="remove it; an API key goes in control.api_key_env (the Secret auto-infer-api-keys), "
                                "other credentials in control.env (the Secret auto-infer-env; docs/kubernetes.md)")


def _secret_in_args(key: str, value: Any) -> bool:
    """extra_args (a server's, the gateway's) as a list or one string: a secret flag's value."""
    if key != "extra_args":
        return False
    tokens = shlex.split(value) if isinstance(value, str) else [str(t) for t in value]
    return redact.redact_argv(tokens) != tokens


def _leaves(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, (*path, str(k)))
    elif isinstance(value, list):
        if path and path[-1] == "extra_args":
            yield path, value                       # as a whole: a flag and its value are two items
        for item in value:
            yield from _leaves(item, path)
    elif isinstance(value, str) and path:
        yield path, value


def relative_logs(data: Mapping[str, Any], instance: str, workspace: str) -> dict[str, str]:
    """The instance's control.log_dir / log_file given relative (to the config's folder), as a pod
    writes them: under ``workspace``, since the pod's config folder is the ConfigMap's read-only mount."""
    table = _table(data, "instance")
    control = {**_table(table, "control"), **_table(_table(table, instance), "control")}
    return {k: posixpath.normpath(posixpath.join(workspace, v)) for k, v in sorted(control.items())
            if k in ("log_dir", "log_file") and isinstance(v, str) and not v.startswith("/")}


def secret_env(data: Mapping[str, Any], instance: str) -> list[str]:
    """The names of the instance's control.env entries (its own or the defaults') that are secrets."""
    table = _table(data, "instance")
    env = {**_table(_table(table, "control"), "env"), **_table(_table(_table(table, instance), "control"), "env")}
    return sorted(k for k, v in env.items() if is_secret(k, v))


def instance_toml(data: Mapping[str, Any], instance: str, common: dict[int, str] | None = None) -> str:
    """One instance's config file: [master], the [instance] defaults and the instance, no secrets.
    ``common`` caches the part every instance shares (it is the same for all of one config)."""
    import tomlkit

    table = _table(data, "instance")
    key = id(data)
    if common is None or key not in common:
        shared = {k: _clean(table[k]) for k in SECTIONS if isinstance(table.get(k), Mapping)}
        text = tomlkit.dumps({"master": dict(_table(data, "master")), "instance": shared})
        if common is None:
            common = {}
        common[key] = text
    return common[key].rstrip("\n") + "\n\n" + tomlkit.dumps({"instance": {instance: _clean(table[instance])}})


def _clean(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without the secret control.env entries."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in body.items()}
    control = out.get("control")
    if isinstance(control, dict) and isinstance(control.get("env"), Mapping):
        control["env"] = {k: v for k, v in control["env"].items() if not is_secret(k, v)}
        if not control["env"]:
            del control["env"]
    return out
