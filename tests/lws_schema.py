"""Validate a LeaderWorkerSet against the vendored LWS CRD's openAPIV3Schema (tests/data/lws/).

What the raw CRD schema needs so that jsonschema judges like the API server with kubectl's strict
field validation (research: /work/scratch/cluster/validate_lws.py): the keywords are draft-4
compatible (Draft4Validator); apiVersion/kind/metadata.name are pinned (the API server checks them
itself); unknown fields are rejected (``additionalProperties: false`` on every object schema with
properties); ``x-kubernetes-list-type`` map/set lists have unique keys; int32/int64 are range-checked.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, FormatChecker, ValidationError, validators

CRD = Path(__file__).parent / "data" / "lws" / "leaderworkerset.x-k8s.io_leaderworkersets.yaml"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def _strictify(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for value in node.values():
            _strictify(value)
    elif isinstance(node, list):
        for value in node:
            _strictify(value)


def _list_type(validator: Any, list_type: str, instance: Any, schema: dict[str, Any]) -> Any:
    if not validator.is_type(instance, "array"):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: list[Any] = []
    for item in instance:
        key = tuple(item.get(k) for k in keys) if list_type == "map" and isinstance(item, dict) else item
        if key in seen:
            yield ValidationError(f"duplicate entry {key!r} in a list-type={list_type} list")
        seen.append(key)


FORMATS = FormatChecker()
FORMATS.checks("int32")(lambda v: not isinstance(v, int) or -2**31 <= v < 2**31)
FORMATS.checks("int64")(lambda v: not isinstance(v, int) or -2**63 <= v < 2**63)
Validator = validators.extend(Draft4Validator, {"x-kubernetes-list-type": _list_type})


@lru_cache(maxsize=1)
def validator() -> Any:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served", True)]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    schema["properties"]["apiVersion"] = {"type": "string", "enum": [f"{crd['spec']['group']}/{version['name']}"]}
    schema["properties"]["kind"] = {"type": "string", "enum": [crd["spec"]["names"]["kind"]]}
    schema["properties"]["metadata"] = {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "maxLength": 63, "pattern": DNS1123_LABEL},
                       "namespace": {"type": "string", "maxLength": 63, "pattern": DNS1123_LABEL},
                       "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                       "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    _strictify(schema["properties"]["spec"])
    Validator.check_schema(schema)
    return Validator(schema, format_checker=FORMATS)


def errors(doc: dict[str, Any]) -> list[str]:
    """Every schema error of ``doc`` as 'path: message' (empty: valid)."""
    found = sorted(validator().iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in found]
