"""llama.cpp's ``llama-server <flags>``, as infer-dev's check-and-run-llama-cpp.sh.

The binary: ``master.llama_cpp_path``, else the first of infer-dev's candidates that exists
(/soft/app/llama-cpp/bin/llama-server, /hard/volume/workspace/llama-cpp/build/bin/llama-server),
else ``llama-server`` on PATH; its folder goes first on LD_LIBRARY_PATH (its shared libraries live
next to it). ``model`` is the GGUF file (the first shard of a split one). Ready: ``/health``
answers 503 while the model loads, then 200; then ``/v1/models`` lists the ``alias`` (without one,
whatever it lists). The pre-flight asks the binary's own ``--help`` which options it has.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from auto_infer.serve.engines import base
from auto_infer.serve.engines.base import Checked, Program, ReadyRules

if TYPE_CHECKING:
    from auto_infer.core.settings import Settings
    from auto_infer.serve.model import Instance, Master, Where

NAME = "llamacpp"
TITLE = "llama.cpp"
DEFAULT_PORT = 8080
MODEL_KEY = "model"
MEMORY_KEY = ""   # the share of each GPU it takes (checked when instances share GPUs)
NAME_KEYS: tuple[str, ...] = ("alias",)
MASTER_KEYS: Mapping[str, Any] = {"llama_cpp_path": str}
OVERRIDES_VAR = "AUTO_INFER_LLAMA_CPP_OVERRIDES"
CHECK_MODULES: tuple[str, ...] = ()   # llama-server is a program, not a module: only report
READY = ReadyRules(health=("/health",), health_first=True)
ALIASES: Mapping[str, str] = {   # llama-server's short and second spellings -> its long flag
    "m": "model", "c": "ctx_size", "ngl": "n_gpu_layers", "gpu_layers": "n_gpu_layers", "t": "threads",
    "a": "alias", "np": "parallel", "b": "batch_size", "ub": "ubatch_size", "fa": "flash_attn",
    "ts": "tensor_split", "sm": "split_mode", "mg": "main_gpu", "ctk": "cache_type_k", "ctv": "cache_type_v",
    "n": "n_predict", "s": "seed", "tb": "threads_batch", "cb": "cont_batching", "v": "verbose"}
# llama-server's options that take on|off[|auto] rather than being bare switches (its `--help`: -fa,
# --flash-attn [on|off|auto]; --fit [on|off]; ...): a TOML true/false is their on/off. infer-dev's
# configs write `flash_attn = true`, which as a bare `--flash-attn` makes llama-server read the next
# flag as its value and refuse to start.
ON_OFF = frozenset({"flash_attn", "fit", "log_colors", "reasoning"})
# and those that take <0|1> (its `--help`: --cpu-strict <0|1>, --poll-batch <0|1>, ...): true/false
# are 1/0; a bare `--cpu-strict` makes llama-server read the next flag as the number and exit ("stoul").
ZERO_ONE = frozenset({"cpu_strict", "cpu_strict_batch", "poll_batch", "spec_draft_cpu_strict", "cpu_strict_draft",
                      "spec_draft_poll", "poll_draft", "spec_draft_cpu_strict_batch", "cpu_strict_batch_draft",
                      "spec_draft_poll_batch", "poll_batch_draft"})
HELP_TIMEOUT = 60.0       # seconds for `llama-server --help` (a CUDA build looks at its GPUs first)
CANDIDATES = ("/soft/app/llama-cpp/bin/llama-server", "/hard/volume/workspace/llama-cpp/build/bin/llama-server")


def check(ctx: Where, inst: Instance) -> None:
    if not isinstance(inst.server.get("model"), str):
        raise ctx.error(
            f"instance {inst.name} has no model",
            f"[instance.{inst.name}.server] model (instance {inst.name})",
            f'add model = "/path/to/model.gguf" under [instance.{inst.name}.server]',
        )


def executable(master: Master) -> tuple[str, str | None]:
    """(what to run, its resolved path or None when it is not found)."""
    wanted = master.llama_cpp_path or next((c for c in CANDIDATES if os.path.isfile(c)), "llama-server")
    if os.path.sep in wanted:
        return wanted, wanted if os.access(wanted, os.X_OK) else None
    return wanted, shutil.which(wanted)


def program(settings: Settings, master: Master, inst: Instance, multi: frozenset[str],
            api_key: str | None) -> Program:
    wanted, found = executable(master)
    argv = base.with_api_key([found or wanted, *base.server_flags(on_off(inst.server), multi)], inst.server, api_key)
    if found is None:
        return Program(argv, missing=f"llama-server not found: {wanted}",
                       fix="set [master] llama_cpp_path to the llama-server binary (or put it on PATH)")
    return Program(argv, env={"LD_LIBRARY_PATH": _lib_path(found, os.environ)})


def _lib_path(binary: str, env: Mapping[str, str]) -> str:
    """LD_LIBRARY_PATH for llama-server: its own folder (its shared libraries) first."""
    lib, prev = os.path.dirname(binary), env.get("LD_LIBRARY_PATH", "")
    return f"{lib}:{prev}" if prev else lib


def on_off(server: Mapping[str, Any]) -> dict[str, Any]:
    """``server`` with true/false of an :data:`ON_OFF` option (any spelling: ``fa``) as "on"/"off",
    and of a :data:`ZERO_ONE` option as 1/0."""
    def value(key: str, v: Any) -> Any:
        if isinstance(v, bool) and base.key_of(key, ALIASES) in ON_OFF:
            return "on" if v else "off"
        if isinstance(v, bool) and base.key_of(key, ALIASES) in ZERO_ONE:
            return int(v)
        return v
    return {k: value(k, v) for k, v in server.items()}


def preflight(settings: Settings, master: Master, servers: Mapping[str, Mapping[str, Any]],
              env: Mapping[str, str]) -> Checked:
    """llama-server's own ``--help`` (its options, the authority on its flags): each instance's flags
    must be among them, and ``false`` for an option it can negate (``--jinja, --no-jinja``) becomes
    that ``--no-`` form (left out, the option keeps its default: jinja stays on)."""
    wanted, found = executable(master)
    if found is None:
        return Checked("llama.cpp", skipped=f"llama-server not found: {wanted}")
    run_env = {**env, "LD_LIBRARY_PATH": _lib_path(found, env)}
    try:
        helped = subprocess.run([found, "--help"], env=run_env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=HELP_TIMEOUT, errors="replace")
        said = subprocess.run([found, "--version"], env=run_env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=HELP_TIMEOUT, errors="replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Checked("llama.cpp", skipped=f"{found} --help did not answer ({exc})")
    options = help_options(helped.stdout)
    if helped.returncode != 0 or not {"--model", "--port"} <= options:
        return Checked("llama.cpp", skipped=f"{found} --help (exit {helped.returncode}) does not list "
                                            "llama-server's options")
    version = re.search(r"version: (\S+)", said.stdout + said.stderr)
    negatable = frozenset(o for o in options if o.startswith("--no-"))
    rejected = {}
    for name, server in servers.items():
        unknown = [t for t in flag_tokens(server, negatable) if t not in options]
        if unknown:
            known = [t for t in unknown if "=" in t and t.split("=", 1)[0] in options]
            hint = (f" (llama-server takes a value as the next word: {known[0].replace('=', ' ', 1)})"
                    if known else "")
            rejected[name] = (base.key_of(unknown[0], ALIASES),
                              f"llama-server's --help does not list {' '.join(unknown)}{hint}")
    return Checked("llama.cpp", version.group(1) if version else "(version unknown)", negatable, rejected)


def help_options(text: str) -> frozenset[str]:
    """The option names of llama-server's --help: its lines that start with them, comma-separated
    ("-c,    --ctx-size N", "--ui,  --webui, --no-ui, --no-webui     whether ...")."""
    names = set()
    for line in text.splitlines():
        for word in line.split() if line.startswith("-") else ():
            if not word.startswith("-") or not word.strip("-,"):    # a description, or "----- sampling"
                break
            names.add(word.rstrip(","))
            if not word.endswith(","):
                break
    return frozenset(names)


def flag_tokens(server: Mapping[str, Any], negatable: frozenset[str]) -> list[str]:
    """The flags an instance's argv passes: one per key (its ``--no-`` form for a negatable false,
    none for another false), and the flag-like words of extra_args (not values such as -1)."""
    out = [t for t in base.extra_tokens(server) if t.startswith("-") and t.strip("-") and not base.is_number(t)]
    for key, value in on_off(server).items():
        if key == "extra_args" or (value is False and base.negated(key) not in negatable):
            continue
        out.append(base.negated(key) if value is False else base.flag(key))
    return out
