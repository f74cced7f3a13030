"""The engines a model config can run: one module each, all providing :class:`base.Engine`.

A config's engine is ``[master] engine`` when given, else recognised from infer-dev's own keys:
vLLM's ``pixi_project_dir`` / ``pixi_environment`` / ``api_server_module`` (or
AUTO_INFER_VLLM_OVERRIDES being set); llama.cpp's ``llama_cpp_path``, a ``model`` ending in .gguf
(or AUTO_INFER_LLAMA_CPP_OVERRIDES); SGLang's ``server_module`` / ``project_dir`` / ``model_path``;
two engines' signs at once are an error. Without any: llama-server's ``on|off|auto`` values or its
own ``n_gpu_layers`` / ``ctx_size`` / ``alias`` say llama.cpp; else SGLang. An instance with
``control.command`` runs that command
whatever the engine. Adding an engine: one module here, and its name in ENGINES.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.serve.engines import base, command, llamacpp, sglang, vllm

ENGINES: dict[str, base.Engine] = {m.NAME: m for m in (sglang, vllm, llamacpp, command)}
SPELLINGS = {"sglang": "sglang", "vllm": "vllm", "llamacpp": "llamacpp", "llama.cpp": "llamacpp",
             "llama-cpp": "llamacpp", "llama_cpp": "llamacpp", "llama-server": "llamacpp"}
LLAMA_ONLY_KEYS = ("n_gpu_layers", "ctx_size", "alias")


def get(name: str | None) -> base.Engine:
    return ENGINES.get(name or "sglang", sglang)


def spelled(value: str, where: str) -> str:
    try:
        return SPELLINGS[value.strip().lower()]
    except KeyError:
        raise UserError(f"unknown engine {value!r}", where=where,
                        fix="use engine = \"sglang\", \"vllm\" or \"llama.cpp\"") from None


def master_keys() -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for eng in ENGINES.values():
        keys.update(eng.MASTER_KEYS)
    return keys


def _servers(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    table = data.get("instance")
    if not isinstance(table, Mapping):
        return []
    bodies = [table] + [b for k, b in table.items() if k not in ("control", "server") and isinstance(b, Mapping)]
    return [b["server"] for b in bodies if isinstance(b.get("server"), Mapping)]


def signals(data: Mapping[str, Any], env: Mapping[str, str]) -> tuple[dict[str, list[str]], list[str]]:
    """What says a config is an engine's: per engine the strong signs ([master] keys, a GGUF model,
    SGLang's model_path, AUTO_INFER_<X>_OVERRIDES set), and the weak ones of llama.cpp (its
    on|off|auto values and its own keys: other engines use "auto" too, so these only count alone)."""
    master: Mapping[str, Any] = data["master"] if isinstance(data.get("master"), Mapping) else {}
    strong: dict[str, list[str]] = {}
    weak: list[str] = []
    for eng in (sglang, vllm, llamacpp):
        strong[eng.NAME] = [f"[master] {k}" for k in eng.MASTER_KEYS if k in master]
        strong[eng.NAME] += [eng.OVERRIDES_VAR] if eng is not sglang and env.get(eng.OVERRIDES_VAR, "").strip() else []
    for server in _servers(data):
        for key, value in server.items():
            if key == "model" and isinstance(value, str) and value.lower().endswith(".gguf"):
                strong[llamacpp.NAME].append(f"model = {value!r}")
            elif key == "model_path":
                strong[sglang.NAME].append("model_path")
            elif (isinstance(value, str) and value in ("on", "off", "auto")) or key in LLAMA_ONLY_KEYS:
                weak.append(f"{key} = {value!r}")
    return {k: v for k, v in strong.items() if v}, weak


def recognise(data: Mapping[str, Any], env: Mapping[str, str], where: str) -> str:
    """The engine of a config's raw data (before overrides): explicit, else recognised, else SGLang."""
    master: Mapping[str, Any] = data["master"] if isinstance(data.get("master"), Mapping) else {}
    explicit = master.get("engine")
    if explicit is not None:
        if not isinstance(explicit, str):
            raise UserError("[master] engine must be a string", where=f"{where}: [master] engine",
                            fix='use engine = "sglang", "vllm" or "llama.cpp"')
        return spelled(explicit, f"{where}: [master] engine")
    strong, weak = signals(data, env)
    if len(strong) > 1:
        said = "; ".join(f"{ENGINES[n].TITLE}: {', '.join(dict.fromkeys(s[:3]))}" for n, s in strong.items())
        raise UserError(f"the model config looks like more than one engine's ({said})", where=where,
                        fix='say which with [master] engine = "sglang", "vllm" or "llama.cpp"')
    return next(iter(strong), llamacpp.NAME if weak else sglang.NAME)
