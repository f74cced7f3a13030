"""Task creator for `auto-infer k8s`: Kubernetes manifests from the model config (auto_infer.k8s.render).

It writes only the folder given with --out (or prints to stdout), never the workspace: no run lock.
"""

from __future__ import annotations

from typing import Any

from auto_infer.tasks.wiring import action, no_doit_state, settings


def _k8s(out: str, k8s_version: str, namespace: str, image: str, claim: str, models_claim: str, bundle: str,
         storage: str, storage_class: str, shm_size: str) -> Any:
    from auto_infer.k8s import render
    from auto_infer.k8s.plan import Options

    s = settings()
    opts = Options(namespace=namespace, image=image, claim=claim or None, models_claim=models_claim or None,
                   bundle=bundle or None, storage=storage, storage_class=storage_class or None, shm_size=shm_size,
                   pixi_env=s.pixi_env)
    return action(render.k8s, s, opts, out or None, k8s_version or None)()


def _param(name: str, default: str, help_text: str) -> dict[str, Any]:
    return {"name": name.replace("-", "_"), "long": name, "type": str, "default": default, "help": help_text}


@no_doit_state
def task_k8s() -> dict[str, Any]:
    """Render Kubernetes manifests for the model config (--out DIR; stdout without it)."""
    return {
        "actions": [_k8s],
        "verbosity": 2,
        "params": [
            _param("out", "", "folder for the manifests (default: print them)"),
            _param(
                "k8s-version", "", "check the manifests against this Kubernetes version (needs kubernetes-validate)"
            ),
            _param("namespace", "default", "namespace of every object"),
            _param("image", "auto-infer:latest", "container image with auto-infer (the infer-dev image)"),
            _param("claim", "", "an existing PersistentVolumeClaim for the workspace (default: render one)"),
            _param(
                "models-claim",
                "",
                "an existing claim holding the weights (default: llm-models/ on the workspace claim)",
            ),
            _param("bundle", "", "air-gapped: a bundle file on the claim (path inside it) the init Job imports"),
            _param("storage", "500Gi", "size of the rendered workspace claim"),
            _param("storage-class", "", "storage class of the rendered claim (one that offers ReadWriteMany)"),
            _param("shm-size", "32Gi", "memory-backed /dev/shm per server pod (NCCL)"),
        ],
    }
