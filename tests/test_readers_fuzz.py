"""Fuzz the typed readers (issue 21.8): the cache manifest, the bundle index, pixi-pack metadata.

Each reader is fed a valid document with one value somewhere replaced by JSON of another type or
depth, whole documents of random JSON, and nesting deep enough to break a recursive parser. It
must return its typed value or raise one UserError (exit 1) that names the file: never any other
exception (exit 3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auto_infer.core.errors import UserError
from auto_infer.core.settings import load
from auto_infer.install import bundle_format as fmt
from auto_infer.install import jsonread, pixipack
from auto_infer.install import manifest as manifests

SHA = "a" * 64
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=20)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MANIFEST: dict[str, Any] = {
    "schema": 1, "lock_sha256": SHA, "environment": "default", "platform": "linux-64",
    "installer": {"name": "rattler", "version": "x"},
    "artifacts": [{"kind": "conda", "name": "a", "filename": "a-1-0.conda", "url": "https://x/linux-64/a-1-0.conda",
                   "sha256": SHA, "size": 3, "served_from": None},
                  {"kind": "pypi", "name": "w", "filename": "w-1-py3-none-any.whl", "url": "https://x/w.whl",
                   "sha256": None, "size": None}],
    "models": [{"key": "hub:o/m@main", "source": "hub", "repo": "o/m", "commit": "c" * 40,
                "snapshot": "models--o--m/snapshots/" + "c" * 40, "files": [{"path": "f", "sha256": SHA, "size": 1}]}],
}
INDEX: dict[str, Any] = {
    "format": fmt.FORMAT, "version": 1, "lock_sha256": SHA, "environment": "default", "platform": "linux-64",
    "since": None,
    "members": [{"path": "template/pixi.lock", "kind": "template", "sha256": SHA, "size": 1},
                {"path": "conda/linux-64/a-1-0.conda", "kind": "conda", "sha256": SHA, "size": 2}],
}
META: dict[str, Any] = {"version": "1", "platform": "linux-64"}
REPODATA: dict[str, Any] = {"packages": {"a-1-0.tar.bz2": {"sha256": SHA, "md5": "b" * 32, "size": 3}},
                            "packages.conda": {}}


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``doc`` a value can be replaced."""
    out = [at]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*at, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*at, i))
    return out


def _replaced(doc: Any, at: tuple[Any, ...], value: Any) -> Any:
    if not at:
        return value
    copy = json.loads(json.dumps(doc))
    node = copy
    for key in at[:-1]:
        node = node[key]
    node[at[-1]] = value
    return copy


def _mutant(base: dict[str, Any]) -> st.SearchStrategy[Any]:
    paths = _paths(base)
    return st.tuples(st.sampled_from(paths), JSON).map(lambda pv: _replaced(base, pv[0], pv[1]))


def _read_manifest(doc: Any) -> None:
    manifests.parse(doc, "the cache manifest m.json", "m.json")


def _read_index(doc: Any) -> None:
    fmt.parse_index(json.dumps(doc).encode(), "b.tar")


def _read_meta(doc: Any) -> None:
    pixipack.metadata(doc, load({"AUTO_INFER_PLATFORM": "linux-64", "AUTO_INFER_WORKSPACE_DIR": "/nonexistent"}),
                      Path("p.tar"))


def _read_repodata(doc: Any) -> None:
    pixipack.records(doc, "p.tar (channel/linux-64/repodata.json)")


READERS = {"manifest": (_read_manifest, MANIFEST, "m.json"), "index": (_read_index, INDEX, "b.tar"),
           "pixi-pack.json": (_read_meta, META, "p.tar"), "repodata": (_read_repodata, REPODATA, "p.tar")}


def _only_user_errors(reader: str, doc: Any) -> None:
    read, _base, where = READERS[reader]
    try:
        read(doc)
    except UserError as exc:
        assert exc.where and where in exc.where and exc.fix, str(exc)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_the_valid_document_reads(reader: str) -> None:
    read, base, _where = READERS[reader]
    read(base)


@pytest.mark.parametrize("reader", sorted(READERS))
@FUZZ
@given(data=st.data())
def test_one_value_of_another_type_or_depth_is_a_user_error(reader: str, data: st.DataObject) -> None:
    _only_user_errors(reader, data.draw(_mutant(READERS[reader][1])))


@pytest.mark.parametrize("reader", sorted(READERS))
@FUZZ
@given(doc=JSON)
def test_any_json_document_is_a_user_error_or_reads(reader: str, doc: Any) -> None:
    _only_user_errors(reader, doc)


@pytest.mark.parametrize("depth", [1_000, 200_000])
def test_deep_nesting_is_a_user_error(depth: int) -> None:
    raw = "[" * depth + "]" * depth
    with pytest.raises(UserError, match="nested too deeply|not valid"):
        fmt.parse_index(raw.encode(), "b.tar")
    with pytest.raises(UserError):
        manifests.parse(jsonread.load(raw, "the cache manifest", "m.json", "fix"), "the cache manifest", "m.json")


def test_a_member_named_as_a_file_and_as_a_folder_is_refused() -> None:
    doc = json.loads(json.dumps(INDEX))
    doc["version"] = 2
    doc["members"] += [{"path": "models/o--m/c/x", "kind": "model", "sha256": SHA, "size": 1},
                       {"path": "models/o--m/c/x/y", "kind": "model", "sha256": SHA, "size": 1}]
    with pytest.raises(UserError, match="'models/o--m/c/x' is named as a file and as the folder"):
        fmt.parse_index(json.dumps(doc).encode(), "b.tar")


def test_a_wrong_type_names_the_field() -> None:
    doc = json.loads(json.dumps(MANIFEST))
    doc["artifacts"][1]["sha256"] = ["x"]
    with pytest.raises(UserError, match=r"at artifacts\[1\]\.sha256: a list, not a string or null"):
        manifests.parse(doc, "the cache manifest m.json", "m.json")
