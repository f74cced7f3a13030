"""What each engine's pod needs from Kubernetes: its probes, its GPUs per pod, whether it can span nodes.

infer-dev runs three engines; each serves the OpenAI API on its ``port`` but says "ready" its own way
(the same rules ``serve`` follows, serve/engines/*.py):

* SGLang: ``/v1/models`` answers as soon as it listens, ``/health_generate`` once a generation
  works; a multi-node instance (``nnodes > 1``) is a LeaderWorkerSet, rank 0 serves HTTP;
* vLLM: listens only once the model is loaded; ``/health`` then answers 200;
* llama.cpp (``llama-server``): ``/health`` answers 503 while the model loads, then 200.

None of these routes needs the API key. vLLM across nodes runs on a Ray cluster, as vLLM's own
LWS example does it (examples/online_serving/multi-node-serving.sh): the leader pod starts the Ray
head, waits until the group's pods have joined, then serves with ``distributed_executor_backend =
"ray"`` (tensor × pipeline parallel over the whole cluster); each worker pod runs a Ray worker
joined to the leader. Ray comes from the environment on the claim (vLLM's own dependency). A
llama.cpp config with ``nnodes`` is refused: llama-server has no multi-node mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.serve.model import Instance

PROBE_PERIOD = 10
RAY_PORT = 6379
WAIT_ENV = ('until [ -x "$env/bin/ray" ]; do echo "$0: waiting for the environment ($env; the install Job '
            'makes it)"; sleep 10; done; ')
RAY_LEADER = ('env="$1"; size="$2"; ' + WAIT_ENV + f'"$env/bin/ray" start --head --port={RAY_PORT} || exit 1; '
              'until [ "$("$env/bin/python" -c "import ray; ray.init(address=\'auto\', logging_level=\'ERROR\'); '
              'print(sum(1 for n in ray.nodes() if n[\'Alive\']))" 2>/dev/null || echo 0)" -ge "$size" ]; do '
              'echo "$0: waiting for $size Ray nodes (the worker pods)"; sleep 5; done; exec auto-infer supervise')
RAY_WORKER = 'env="$1"; ' + WAIT_ENV + f'exec "$env/bin/ray" start --address="$2:{RAY_PORT}" --block'


def ray_commands(env_prefix: str) -> dict[str, list[str]]:
    """vLLM over nodes: role → the pod's command (LWS's variables expanded by Kubernetes)."""
    return {"leader": ["/bin/sh", "-c", RAY_LEADER, "vllm-leader", env_prefix, "$(LWS_GROUP_SIZE)"],
            "worker": ["/bin/sh", "-c", RAY_WORKER, "vllm-worker", env_prefix, "$(LWS_LEADER_ADDRESS)"]}
INSTALL_WINDOW = 1800      # s: what a pod may spend installing (a check when the install Job ran) ...
LOCK_WAIT = 1800           # s: ... and waiting for the run lock while another pod installs (its env)


@dataclass(frozen=True)
class Routes:
    startup: str          # answers once the server listens (SGLang) or is loaded (the others)
    ready: str            # answers 200 only when a request would be served
    live: str


ROUTES = {"sglang": Routes("/v1/models", "/health_generate", "/v1/models"),
          "vllm": Routes("/health", "/health", "/health"),
          "llamacpp": Routes("/health", "/health", "/health")}


def _int(server: Any, *keys: str) -> int:
    for key in keys:
        if key in server:
            try:
                return max(int(server[key]), 1)
            except (TypeError, ValueError):
                return 1
    return 1


def nnodes(inst: Instance) -> int:
    return _int(inst.server, "nnodes")


def refuse_unsupported(inst: Instance, where: str) -> None:
    """A clear error for what cannot run on Kubernetes the way it is written, naming the engine."""
    if inst.engine == "command":
        raise UserError(
            f"instance {inst.name} runs its own command ({inst.control.command[0] if inst.control.command else ''}), "
            "which the image may not have; only SGLang, vLLM and llama.cpp instances are deployed",
            where=f"{where}: [instance.{inst.name}.control] command",
            fix="remove control.command, or set control.enabled = false for Kubernetes",
        )
    if inst.engine not in ROUTES:
        raise UserError(f"instance {inst.name}: the {inst.engine} engine has no Kubernetes rendering",
                        where=f"{where}: [instance.{inst.name}]", fix="use SGLang, vLLM or llama.cpp")
    if nnodes(inst) > 1 and inst.engine == "llamacpp":
        raise UserError(f"instance {inst.name}: llama.cpp with nnodes = {nnodes(inst)} cannot be deployed: "
                        "llama-server has no multi-node mode", where=f"{where}: [instance.{inst.name}.server] nnodes",
                        fix="serve it on one node (remove nnodes), or use SGLang or vLLM for multi-node "
                            "(a LeaderWorkerSet)")


def gpus_per_pod(inst: Instance) -> int:
    """GPUs one pod asks for: what the parallel sizes need per node; one node: gpu_ids when listed.

    A multi-node instance's ``gpu_ids`` are each host's own (CUDA_VISIBLE_DEVICES on a bare host),
    so a pod gets ``tp × dp × pp / nnodes`` whatever gpu_ids lists."""
    s = inst.server
    if inst.engine == "llamacpp":
        return len(inst.control.gpu_ids) if inst.control.gpu_ids is not None else 1
    tp = _int(s, "tp_size", "tensor_parallel_size")
    pp = _int(s, "pp_size", "pipeline_parallel_size")
    dp = 1 if s.get("enable_dp_attention") else _int(s, "dp_size", "data_parallel_size")
    need = -(-tp * dp * pp // nnodes(inst))
    if nnodes(inst) == 1 and inst.control.gpu_ids is not None:
        return len(inst.control.gpu_ids)
    return need


def startup_seconds(inst: Instance) -> int:
    """The startup probe's window: the steps a pod really runs before it serves."""
    return INSTALL_WINDOW + LOCK_WAIT + int(inst.control.ready_timeout)


def probes(inst: Instance) -> dict[str, Any]:
    """Startup waits out install + lock wait + load; readiness asks the engine's ready route."""
    routes = ROUTES[inst.engine]
    startup = routes.startup if not (inst.engine == "sglang" and inst.control.api_key_env) else routes.ready

    def get(path: str, period: int, timeout: int, failures: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
                "timeoutSeconds": timeout, "failureThreshold": failures}
    live = routes.live if not (inst.engine == "sglang" and inst.control.api_key_env) else routes.ready
    return {"startupProbe": get(startup, PROBE_PERIOD, 5, -(-startup_seconds(inst) // PROBE_PERIOD)),
            "readinessProbe": get(routes.ready, 15, 30, 2),
            "livenessProbe": get(live, 30, 10, 5)}
