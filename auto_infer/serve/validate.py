"""Checks across keys and instances of a model config, with the instance's name in every message.

Called by :func:`auto_infer.serve.config.load` (structure) and by serving before a launch
(:func:`check_paths`, the host side). The engine's own parser checks each flag later
(:mod:`auto_infer.serve.engines`); these are the rules it cannot see: ports and GPUs shared
between instances, tp × dp against the GPUs given, multi-node keys that only work together, and
``extra_args`` that set what a key sets (or what the probe reads).
"""

from __future__ import annotations

import string
from pathlib import Path

from auto_infer.core.errors import UserError
from auto_infer.serve.engines import base
from auto_infer.serve.engines import known as engines
from auto_infer.serve.model import Instance, ModelConfig, Where, is_kind

NUM = (int, float)
MULTINODE = ("nnodes", "node_rank", "dist_init_addr")


def cross_check(ctx: Where, cfg: ModelConfig) -> None:
    live = cfg.enabled()
    for inst in live:
        _check_instance(ctx, inst)
    _check_ports(ctx, live)
    _check_log_files(ctx, live)
    for name in dict.fromkeys(i.engine for i in live):       # each engine's own memory-share key
        key = engines.get(name).MEMORY_KEY
        if key:
            _check_gpu_sharing(ctx, tuple(i for i in live if i.engine == name), key)


def _where(inst: Instance, key: str, table: str = "server") -> str:
    return f"[instance.{inst.name}.{table}] {key} (instance {inst.name})"


def model_key(inst: Instance) -> str:
    """The server key that names the weights: the engine's (SGLang's model_path, vLLM's and
    llama.cpp's model); a `command` uses the {model_path} placeholder."""
    return engines.get(inst.engine).MODEL_KEY or "model_path"


def _check_instance(ctx: Where, inst: Instance) -> None:
    s, engine = inst.server, engines.get(inst.engine)
    port = s.get("port", engine.DEFAULT_PORT)
    if not is_kind(port, int) or not 0 < port < 65536:
        raise ctx.error(f"instance {inst.name}: port {port!r} is not a TCP port", _where(inst, "port"),
                        "use an integer between 1 and 65535")
    if not isinstance(s.get("host", ""), str):
        raise ctx.error(f"instance {inst.name}: host must be a string", _where(inst, "host"), 'e.g. host = "0.0.0.0"')
    key = model_key(inst)
    if inst.model is not None and key in s:
        raise ctx.error(f"instance {inst.name} sets both {key} and [instance.{inst.name}.model]",
                        _where(inst, key), f"keep one: the model table (serve passes its checked local "
                        f"path as {key}) or {key} (a folder you manage)")
    if inst.model is None:
        engine.check(ctx, inst)
    if inst.control.command:
        _check_placeholders(ctx, inst)
    else:
        _check_extra_args(ctx, inst, ("host", "port", *engine.NAME_KEYS))
    for share in dict.fromkeys(("mem_fraction_static", engine.MEMORY_KEY or "mem_fraction_static")):
        mem = s.get(share)             # SGLang's mem_fraction_static, vLLM's gpu_memory_utilization
        if mem is not None and not (is_kind(mem, NUM) and 0 < mem <= 1):
            raise ctx.error(f"instance {inst.name}: {share} must be in (0, 1]", _where(inst, share),
                            f"e.g. {share} = 0.85")
    _check_parallel(ctx, inst)
    _check_multinode(ctx, inst)


def _check_extra_args(ctx: Where, inst: Instance, probe_keys: tuple[str, ...]) -> None:
    """A flag in extra_args that a key also sets (or that the probe reads) is an error: the server
    would follow one and the probe the other (issue 10: --port in extra_args, probe on the key's port)."""
    if inst.control.api_key_env and "api_key" not in inst.server:
        token = next((t for t in base.extra_tokens(inst.server) if base.key_of(t) == "api_key"), None)
        if token is not None:
            raise ctx.error(f"instance {inst.name}: control.api_key_env and extra_args {token!r} both set --api-key",
                            _where(inst, "extra_args"), f"remove {token!r} (and its value) from extra_args: "
                            "serve passes the key from api_key_env")
    for key, token in base.clashes(inst.server, probe_keys, engines.get(inst.engine).ALIASES):
        given = f"{key} = {inst.server[key]!r} and " if key in inst.server else ""
        raise ctx.error(f"instance {inst.name}: {given}extra_args {token!r} both set {base.flag(key)}"
                        + ("" if given else f" (the probe reads {key} from the key, not from extra_args)"),
                        _where(inst, "extra_args"),
                        f"set it once, as the key {key} = ..., and remove {token!r} (and its value) from extra_args")


def _check_placeholders(ctx: Where, inst: Instance) -> None:
    known = {"name", "api_key", *inst.server, *(["model_path"] if inst.model else [])}
    for token in inst.control.command or ():
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(token) if f is not None]
        except ValueError as exc:
            raise ctx.error(f"instance {inst.name}: command item {token!r} is malformed ({exc})",
                            _where(inst, "command", "control"), "write a literal brace as {{ or }}") from None
        for f in fields:
            if f not in known and base.key_of(f) not in known:
                raise ctx.error(
                    f"instance {inst.name}: command uses {{{f}}}, which is not a server key",
                    _where(inst, "command", "control"),
                    f"placeholders: {{name}}, {{api_key}} and server keys ({', '.join(sorted(inst.server))})",
                )


def _int_key(ctx: Where, inst: Instance, *keys: str, default: int = 1) -> int:
    for key in keys:
        if key in inst.server:
            value = inst.server[key]
            if not is_kind(value, int) or value < (0 if key == "node_rank" else 1):
                raise ctx.error(f"instance {inst.name}: {key} must be a positive integer", _where(inst, key),
                                f"e.g. {key} = 2")
            return int(value)
    return default


def _check_parallel(ctx: Where, inst: Instance) -> None:
    tp = _int_key(ctx, inst, "tp_size", "tensor_parallel_size")
    dp = _int_key(ctx, inst, "dp_size", "data_parallel_size")
    pp = _int_key(ctx, inst, "pp_size", "pipeline_parallel_size")
    nnodes = _int_key(ctx, inst, "nnodes")
    gpus = inst.control.gpu_ids
    if inst.server.get("enable_dp_attention"):
        dp = 1   # with DP attention the data-parallel ranks live inside the tensor-parallel group
    need = -(-tp * dp * pp // nnodes)
    if gpus and need > len(gpus):                      # () is "none": a CPU instance
        raise ctx.error(f"instance {inst.name} needs {need} GPUs (tp_size {tp} × dp_size {dp}"
                        f"{f' × pp_size {pp}' if pp > 1 else ''}{f' / nnodes {nnodes}' if nnodes > 1 else ''}) "
                        f"but gpu_ids gives {len(gpus)}", _where(inst, "gpu_ids", "control"),
                        "give more GPUs in gpu_ids, or lower tp_size / dp_size")


def _check_multinode(ctx: Where, inst: Instance) -> None:
    s = inst.server
    given = [k for k in MULTINODE if k in s]
    nnodes = _int_key(ctx, inst, "nnodes")
    if not given or (given == ["nnodes"] and nnodes == 1):
        return
    missing = [k for k in MULTINODE if k not in s]
    if missing or nnodes < 2:
        raise ctx.error(f"instance {inst.name}: nnodes, node_rank and dist_init_addr go together "
                        f"(given: {', '.join(given)})", _where(inst, missing[0] if missing else "nnodes"),
                        'set all three, e.g. nnodes = 2, node_rank = 0, dist_init_addr = "10.0.0.1:50000"')
    rank = _int_key(ctx, inst, "node_rank", default=0)
    if rank >= nnodes:
        raise ctx.error(f"instance {inst.name}: node_rank {rank} must be below nnodes {nnodes}",
                        _where(inst, "node_rank"), f"use 0 … {nnodes - 1}")
    host, _, port = str(s["dist_init_addr"]).rpartition(":")
    if not host or not port.isdigit():
        raise ctx.error(f"instance {inst.name}: dist_init_addr {s['dist_init_addr']!r} is not host:port",
                        _where(inst, "dist_init_addr"), 'e.g. dist_init_addr = "10.0.0.1:50000"')


def _check_ports(ctx: Where, live: tuple[Instance, ...]) -> None:
    seen: dict[int, Instance] = {}
    for inst in live:
        other = seen.setdefault(inst.port, inst)
        if other is not inst:
            shared = " (the shared default in [instance.server] or SGLang's 30000 counts)"
            raise ctx.error(f"instances {other.name} and {inst.name} both use port {inst.port}{shared}",
                            _where(inst, "port"), f"give [instance.{inst.name}.server] a port of its own")


def _check_log_files(ctx: Where, live: tuple[Instance, ...]) -> None:
    seen: dict[Path, Instance] = {}
    for inst in live:
        if inst.control.log_file is not None:
            other = seen.setdefault(inst.control.log_file, inst)
            if other is not inst:
                raise ctx.error(f"instances {other.name} and {inst.name} both log to {inst.control.log_file}",
                                _where(inst, "log_file", "control"),
                                f"give [instance.{inst.name}.control] a log_file of its own (or use log_dir)")


def _check_gpu_sharing(ctx: Where, live: tuple[Instance, ...], key: str) -> None:
    """Instances on one GPU must each set ``key`` and sum to at most 1.0 there. Linear in the
    instances: grouped by GPU (an instance with every GPU, gpu_ids unset, is in every group)."""
    rank = {id(i): n for n, i in enumerate(live)}
    every = [i for i in live if i.control.gpu_ids is None]
    per_gpu: dict[str, list[Instance]] = {}
    for inst in live:
        for gpu in inst.control.gpu_ids or ():
            per_gpu.setdefault(gpu, []).append(inst)
    every_total = sum(_share_of(i, key) for i in every)
    every_lacking = [i for i in every if i.server.get(key) is None][:1]
    for on in per_gpu.values() or [[]]:
        if len(every) + len(on) < 2:
            continue
        lacking = sorted([*every_lacking, *[i for i in on if i.server.get(key) is None][:1]], key=lambda i: rank[id(i)])
        if lacking:
            raise ctx.error(f"instances {_names(every, on, rank)} share GPUs, and {lacking[0].name} sets no {key}",
                            _where(lacking[0], "gpu_ids", "control"),
                            f"give each instance its own gpu_ids, or set {key} on every "
                            "instance that shares (their sum at most 1.0)")
        total = every_total + sum(_share_of(i, key) for i in on)
        if total > 1.0 + 1e-9:
            last = max([*every, *on], key=lambda i: rank[id(i)])
            raise ctx.error(f"instances {_names(every, on, rank)} share GPUs and their {key} sum to "
                            f"{total:.2f} > 1.0", _where(last, key),
                            f"lower {key} so the sharing instances sum to at most 1.0")


def _share_of(inst: Instance, key: str) -> float:
    value = inst.server.get(key)
    return float(value) if value is not None else 0.0


def _names(every: list[Instance], on: list[Instance], rank: dict[int, int], shown: int = 6) -> str:
    """The sharing instances, in the config's order: "a and b", "a, b, c, d, e, f and 94 more"."""
    group = sorted([*every, *on], key=lambda i: rank[id(i)])
    names = [i.name for i in group[:shown]]
    if len(group) > shown:
        return f"{', '.join(names)} and {len(group) - shown} more"
    return ", ".join(names[:-1]) + " and " + names[-1]


def check_paths(cfg: ModelConfig, instances: tuple[Instance, ...]) -> None:
    """The host side of validation: model paths exist (offline, a hub id cannot be fetched)."""
    for inst in instances:
        key = engines.get(inst.engine).MODEL_KEY or "model_path"
        path = inst.server.get(key)
        if isinstance(path, str) and not Path(path).exists():
            raise UserError(f"instance {inst.name}: {key} does not exist: {path}",
                            where=f"{cfg.path}: {_where(inst, key)}",
                            fix=f"point {key} at a local model folder (or file) that exists here")
        gguf = _gguf_problem(inst.engine, path)
        if gguf:
            raise UserError(f"instance {inst.name}: {key} {path} {gguf[0]}", where=f"{cfg.path}: {_where(inst, key)}",
                            fix=gguf[1])
        lacks = _model_folder_problem(inst.engine, path)
        if lacks:           # checked like a [model] path: config + weight files (or the GGUF file)
            raise UserError(f"instance {inst.name}: {key} {path} is not a model folder: {lacks}",
                            where=f"{cfg.path}: {_where(inst, key)}",
                            fix=f"point {key} at the folder that holds the weights (config.json and "
                                "*.safetensors, or the .gguf file)")


def _gguf_problem(engine: str, path: object) -> tuple[str, str] | None:
    """(what is wrong, the fix) when llama.cpp's model is not one GGUF file: llama-server's --model
    loads a file (the first shard of a split model), and fails on a folder or another format."""
    if engine != "llamacpp" or not isinstance(path, str):
        return None
    from auto_infer.weights.audit import gguf_firsts
    if Path(path).is_dir():
        firsts = gguf_firsts(Path(path))
        held = ", ".join(g.name for g in firsts[:4]) or "no .gguf file"
        fix = (f'point model at the file: model = "{firsts[0]}"' if len(firsts) == 1
               else "point model at one .gguf file (the first shard of a split model)")
        return f"is a folder, and llama-server loads one GGUF file (the folder holds: {held})", fix
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        return f"cannot be read: {exc.strerror}", "make the file readable by the user who serves"
    if magic != b"GGUF":
        return (f"is not a GGUF file (it starts with {magic!r}, not b'GGUF')",
                "point model at a .gguf file (the first shard of a split model)")
    return None


def _model_folder_problem(engine: str, path: object) -> str | None:
    """What a folder named as an engine's model lacks (a `command` is judged by its own program)."""
    if engine == "command" or not isinstance(path, str) or not Path(path).is_dir():
        return None
    from auto_infer.weights.audit import layout_problem
    return layout_problem(Path(path))
