"""The model config's types: frozen records that serve reads, and where a config error points.

Lower than config (the reader) and validate (the cross-key checks), which both use these types.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.weights.spec import Source

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")   # an instance name becomes a folder name

DEFAULT_PROMPT = "Say hello in one short sentence."
DEFAULT_READY_TIMEOUT = 1800.0   # big models + cold JIT caches take many minutes (notes/serving.md 1.5)
DEFAULT_STOP_GRACE = 30.0        # SGLang drains on SIGTERM, polling every 5 s (notes/serving.md 1.7)
NUM = (int, float)
MASTER_KEYS: dict[str, Any] = {"enable": bool, "engine": str, "python_path": str}   # + each engine's (config)
CONTROL_KEYS: dict[str, Any] = {
    "enabled": bool, "log_dir": str, "log_file": str, "background": bool, "gpu_ids": (str, int, list),
    "ready_timeout": NUM, "stop_grace": NUM, "smoke_prompt": str, "api_key_env": str, "env": dict,
    "command": list}
SCALAR = (str, int, float, bool)
ROUTER_NAME = "router"           # the gateway's record and log folder (no instance may take the name)
RANK_MARK = "@rank"              # a worker rank's record and log folder: NAME@rankN ('@' is in no instance name)


@dataclass(frozen=True)
class WorkerRank:
    """A rank > 0 of a multi-node SGLang instance (``nnodes > 1``, ``node_rank > 0``): it runs the
    scheduler only and serves no HTTP; the leader (rank 0) does."""

    rank: int
    nnodes: int
    leader: str                     # dist_init_addr: where rank 0 runs

    def describe(self) -> str:
        return (f"worker rank {self.rank} of {self.nnodes} (serves no HTTP; the leader, rank 0 at "
                f"{self.leader}, serves)")


@dataclass(frozen=True)
class Router:
    """The ``[router]`` table: the gateway (sglang-router's ``smg``) in front of the workers."""

    enable: bool = True
    host: str = "127.0.0.1"
    port: int = 30080
    prometheus_port: int = 29000        # always passed: smg panics when its default 0.0.0.0:29000 is taken
    policy: str = "round_robin"
    instances: tuple[str, ...] | None = None     # None: every enabled instance
    extra_args: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None       # None: <env python> -m sglang_router.launch_router
    ready_timeout: float = 300.0
    stop_grace: float = DEFAULT_STOP_GRACE
    log_file: Path | None = None
    smoke_prompt: str = DEFAULT_PROMPT


@dataclass(frozen=True)
class Master:
    enable: bool = True
    engine: str = "sglang"                  # as recognised (engines.recognise), canonical spelling
    python_path: str | None = None
    server_module: str | None = None        # SGLang's (default sglang.launch_server)
    project_dir: str | None = None          # infer-dev's SGLang bundle folder: accepted, ignored
    pixi_project_dir: str | None = None     # vLLM: infer-dev's pixi project (pixi run, when pixi is here)
    pixi_environment: str | None = None
    api_server_module: str | None = None    # vLLM's (default vllm.entrypoints.openai.api_server)
    llama_cpp_path: str | None = None       # llama.cpp: the llama-server binary


@dataclass(frozen=True)
class Control:
    enabled: bool = True
    log_dir: Path | None = None
    log_file: Path | None = None
    background: bool = True
    gpu_ids: tuple[str, ...] | None = None          # None: inherit; (): no GPU; ("0", "1"): those
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    stop_grace: float = DEFAULT_STOP_GRACE
    smoke_prompt: str = DEFAULT_PROMPT
    api_key_env: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Instance:
    name: str
    control: Control
    server: Mapping[str, Any]
    kind: str = "sglang"                    # the config's engine (engines/known.py)
    default_port: int = 30000               # the engine's, when the server sets no port
    name_keys: tuple[str, ...] = ("served_model_name", "model_path")   # what names the model, in order
    model: Source | None = None                     # [instance.NAME.model]: where the weights come from
    weights: Mapping[str, Any] | None = None        # set by serve once they are checked (weights.audit)

    @property
    def engine(self) -> str:
        return "command" if self.control.command else self.kind

    @property
    def host(self) -> str:
        return str(self.server.get("host", "127.0.0.1"))

    @property
    def port(self) -> int:
        return int(self.server.get("port", self.default_port))

    @property
    def worker(self) -> WorkerRank | None:
        """Set for a worker rank (SGLang, nnodes > 1, node_rank > 0): started and supervised as any
        server, but never asked over HTTP."""
        if self.engine != "sglang":
            return None
        try:
            nnodes, rank = int(self.server.get("nnodes", 1)), int(self.server.get("node_rank", 0))
        except (TypeError, ValueError):
            return None                 # validate says what is wrong with them
        if nnodes < 2 or rank < 1:
            return None
        return WorkerRank(rank, nnodes, str(self.server.get("dist_init_addr", "?")))

    @property
    def key(self) -> str:
        """The name of its record and log folder: the instance name, and for a worker rank
        NAME@rankN, so that the ranks of one instance sharing a workspace (a Kubernetes claim) never
        share a record or a log."""
        worker = self.worker
        return f"{self.name}{RANK_MARK}{worker.rank}" if worker else self.name

    @property
    def served_name(self) -> str | None:
        """The model id /v1/models should list (None: whatever it lists); a list names the first, and
        so does llama-server's ``alias`` ("set model name aliases, comma-separated": the first is the
        id it lists, the others its "aliases")."""
        for key in self.name_keys:
            value = self.server.get(key)
            value = value[0] if isinstance(value, list) and value else value
            if key == "alias" and isinstance(value, str):
                value = value.split(",")[0].strip()
            if value:
                return str(value)
        return None


@dataclass(frozen=True)
class ModelConfig:
    path: Path
    master: Master
    instances: tuple[Instance, ...]        # every instance, enabled or not, in file order
    router: Router | None = None           # the [router] table, when there is one

    def enabled(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if i.control.enabled)

    def get(self, name: str) -> Instance:
        for inst in self.instances:
            if inst.name == name:
                return inst
        known = ", ".join(i.name for i in self.instances) or "none"
        raise UserError(f"no instance named {name!r} in the model config", where=str(self.path),
                        fix=f"use one of: {known}")


def is_kind(value: Any, kind: Any) -> bool:
    """isinstance, except that true/false is not a number."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


class Where:
    """Where errors point: the file, and whether overrides were applied."""

    def __init__(self, path: Path, overridden: str = ""):
        self.path = path
        self.suffix = f" (after {overridden})" if overridden else ""     # the override variables applied

    def error(self, what: str, where: str, fix: str) -> UserError:
        return UserError(what, where=f"{self.path}: {where}{self.suffix}", fix=fix)

    def table(self, data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            raise self.error(f"{where} must be a table, not {type(value).__name__}", where,
                             f"write it as a TOML table: {where}")
        return dict(value)

    def closed(self, table: Mapping[str, Any], spec: Mapping[str, Any], where: str) -> dict[str, Any]:
        for key, value in table.items():
            if key not in spec:
                raise self.error(f"unknown key {key!r} in {where}", f"{where} {key}",
                                 f"known keys: {', '.join(sorted(spec))}")
            if not is_kind(value, spec[key]):
                raise self.error(f"{where} {key} has the wrong type ({type(value).__name__})",
                                 f"{where} {key}", f"use {_type_name(spec[key])}")
        return dict(table)


def _type_name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {bool: "true/false", str: "a string", int: "an integer", float: "a number",
             list: "a list", dict: "a table"}
    return " or ".join(dict.fromkeys(names[k] for k in kinds))
