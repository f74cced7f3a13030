"""SGLang: ``<python> -m sglang.launch_server <flags>``, judged first by SGLang's own parser.

Python: ``master.python_path``, else the environment `auto-infer install` made (infer-dev runs its
pixi-unpack'ed ``<project_dir>/env/bin/python``; ``project_dir`` is accepted and ignored). Ready:
``/v1/models`` lists the model and ``/health_generate`` (else ``/health``) answers 200, because
``/v1/models`` answers long before SGLang's warmup is done (notes/serving.md 1.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auto_infer.serve.engines import base
from auto_infer.serve.engines import preflight as parsers
from auto_infer.serve.engines.base import Checked, Program, ReadyRules

if TYPE_CHECKING:
    from auto_infer.core.settings import Settings
    from auto_infer.serve.model import Instance, Master, Where

NAME = "sglang"
TITLE = "SGLang"
DEFAULT_PORT = 30000
DEFAULT_MODULE = "sglang.launch_server"
MODEL_KEY = "model_path"
MEMORY_KEY = "mem_fraction_static"   # the share of each GPU it takes (checked when instances share GPUs)
NAME_KEYS: tuple[str, ...] = ("served_model_name", "model_path")   # SGLang lists the path without a name
MASTER_KEYS: Mapping[str, Any] = {"server_module": str, "project_dir": str}
OVERRIDES_VAR = "AUTO_INFER_SGLANG_OVERRIDES"
CHECK_MODULES: tuple[str, ...] = ("torch", "sglang")   # what `check` requires (unset AUTO_INFER_CHECK_MODULES)
READY = ReadyRules(health=("/health_generate", "/health"), health_first=False)
ALIASES: Mapping[str, str] = {"tensor_parallel_size": "tp_size", "data_parallel_size": "dp_size",
                              "pipeline_parallel_size": "pp_size", "expert_parallel_size": "ep_size",
                              "model": "model_path", "nccl_init_addr": "dist_init_addr"}   # SGLang's ServerArgs

SCRIPT = parsers.script(
    imports="import sglang\nfrom sglang.srt.server_args import ServerArgs",
    build="""
class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Rejected(message)
p = Parser(prog="sglang.launch_server", add_help=False)
ServerArgs.add_cli_args(p)
return p""",
    version='getattr(sglang, "__version__", "unknown")')


def check(ctx: Where, inst: Instance) -> None:
    if not isinstance(inst.server.get("model_path"), str):
        raise ctx.error(f"instance {inst.name} has no model_path",
                        f"[instance.{inst.name}.server] model_path (instance {inst.name})",
                        f'add model_path = "/path/to/model" under [instance.{inst.name}.server]')


def program(settings: Settings, master: Master, inst: Instance, multi: frozenset[str],
            api_key: str | None) -> Program:
    python = base.python_of(settings, master)
    argv = [str(python), "-m", master.server_module or DEFAULT_MODULE, *base.server_flags(inst.server, multi)]
    missing = None if python.exists() else f"no Python to run SGLang with: {python}"
    fix = "fix master.python_path" if master.python_path else "run `auto-infer install` first"
    return Program(base.with_api_key(argv, inst.server, api_key), missing=missing, fix=fix)


def preflight(settings: Settings, master: Master, servers: Mapping[str, Mapping[str, Any]],
              env: Mapping[str, str]) -> Checked:
    if (master.server_module or DEFAULT_MODULE) != DEFAULT_MODULE:
        return Checked("SGLang", skipped=f"server_module is {master.server_module}, not SGLang's")
    return check_flags(base.python_of(settings, master), env, servers)


def check_flags(python: Path, env: Mapping[str, str], servers: Mapping[str, Mapping[str, Any]],
                timeout: float = parsers.CHECK_TIMEOUT) -> Checked:
    """SGLang's parser (in ``python``) on each server's flags, multi-value flags learnt from it."""
    return parsers.check("SGLang", SCRIPT, python, env,
                           lambda m: {n: base.server_flags(s, m) for n, s in servers.items()}, timeout)
