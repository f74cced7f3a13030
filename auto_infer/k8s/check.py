"""`k8s --k8s-version V`: check the rendered core objects against that Kubernetes version's schemas.

Uses ``kubernetes-validate`` (offline, it bundles the OpenAPI schemas of 1.25 onwards) when it is
installed; it is a dev/CI dependency, so the option says how to get it when it is missing. The
LeaderWorkerSet is a custom resource: its pod templates are checked as Pods (the CRD's own schema
is checked by the test suite).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from auto_infer.core.errors import UserError


def _pods(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    t = doc["spec"]["leaderWorkerTemplate"]
    return [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lws-pod"}, "spec": t[k]["spec"]}
            for k in ("leaderTemplate", "workerTemplate")]


def validate(files: Mapping[str, str], version: str) -> int:
    """Validate every document in strict mode; return how many; a clear error for the first bad one."""
    try:
        import kubernetes_validate as kv
        import yaml
        from kubernetes_validate.utils import VersionNotSupportedError
    except ImportError:
        raise UserError("--k8s-version needs the kubernetes-validate package", where="--k8s-version",
                        fix="pip install kubernetes-validate (or the dev extra), or leave --k8s-version out") from None
    count = 0
    for name, text in files.items():
        for doc in yaml.safe_load_all(text):
            for one in _pods(doc) if doc["kind"] == "LeaderWorkerSet" else [doc]:
                try:
                    kv.validate(one, version, strict=True)
                except (VersionNotSupportedError, IndexError):
                    raise UserError(f"kubernetes-validate has no schemas for Kubernetes {version}",
                                    where="--k8s-version", fix="use a version from 1.25 on, e.g. 1.31") from None
                except kv.ValidationError as exc:
                    path = ".".join(str(p) for p in exc.path) or "<root>"
                    raise UserError(f"{name}: {doc['kind']} is not valid for Kubernetes {version}: {path}: "
                                    f"{exc.message}", where=name, fix="report this: the renderer made it") from None
                count += 1
    return count
