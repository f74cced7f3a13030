"""The bundle carries the Hub weights the manifest records, verified like every member.

The build side is test_weights.py's workspace (packages from the test channel's mirror, weights
from auto_infer/demo/fakehub.py through the real huggingface_hub client); the air-gapped side is
an empty workspace with no HF endpoint, and import, install and serve run there in `unshare -n`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from auto_infer.core import settings
from auto_infer.install import bundle_format as fmt
from auto_infer.install import bundle_models
from auto_infer.serve import actions, registry
from tests.conftest import needs_netns
from tests.helpers import run_cli
from tests.test_bundle import fresh, trusted
from tests.test_weights import REPO, HubWorkspace, hubws, inside_env

__all__ = ["hubws"]


def _index(bundle: Path) -> dict[str, Any]:
    with tarfile.open(bundle) as tf:
        return dict(json.loads(tf.extractfile("auto-infer-bundle.json").read()))  # type: ignore[union-attr]


def _hub_entry(manifest: dict[str, Any]) -> dict[str, Any]:
    [entry] = [m for m in manifest["models"] if m["source"] == "hub"]
    return dict(entry)


@pytest.fixture(scope="module")
def weights_bundle(hubws: HubWorkspace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle-weights") / "with-weights.tar"
    r = run_cli(["bundle", "export", str(out)], hubws.env)
    assert r.returncode == 0, r.stderr
    assert (
        "3 model files" in r.stderr
        and f"local-folder models not carried (your shared disk): {hubws.folder}" in r.stderr
    )
    return out


def airgap(hubws: HubWorkspace, tmp: Path) -> dict[str, str]:
    """An empty workspace with the same model config, no HF variables (fresh() drops them)."""
    env = fresh(tmp, "airgap")
    env["AUTO_INFER_SGLANG_CONFIG"] = hubws.env["AUTO_INFER_SGLANG_CONFIG"]
    return {k: v for k, v in env.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}


def test_the_weights_are_members_listed_like_every_other(hubws: HubWorkspace, weights_bundle: Path,
                                                         tmp_path: Path) -> None:
    entry = _hub_entry(hubws.manifest)
    index = {m["path"]: m for m in _index(weights_bundle)["members"]}
    models = {p: m for p, m in index.items() if m["kind"] == "model"}
    prefix = f"models/org--tiny/{entry['commit']}/"
    assert sorted(models) == [prefix + f for f in ("config.json", "model.safetensors", "tokenizer.json")]
    for f in entry["files"]:
        assert (models[prefix + f["path"]]["sha256"], models[prefix + f["path"]]["size"]) == (f["sha256"], f["size"])
    with tarfile.open(weights_bundle) as tf:
        assert tf.getnames()[-3:] == sorted(models)                                 # last, sorted
        carried = json.loads(tf.extractfile("cache-manifest.json").read())  # type: ignore[union-attr]
        data = tf.extractfile(prefix + "model.safetensors").read()  # type: ignore[union-attr]
    assert hashlib.sha256(data).hexdigest() == models[prefix + "model.safetensors"]["sha256"]
    assert _hub_entry(carried)["commit"] == entry["commit"] and _hub_entry(carried)["fetched_at"] is None
    again = tmp_path / "again.tar"                                      # the same bytes from two exports
    assert run_cli(["bundle", "export", str(again)], hubws.env).returncode == 0
    assert again.read_bytes() == weights_bundle.read_bytes()
    dry = run_cli(["bundle", "export", str(tmp_path / "x.tar"), "--dry-run"], hubws.env)
    assert dry.returncode == 0 and f"{prefix}model.safetensors\t" in dry.stdout and "3 model files" in dry.stdout
    base = tmp_path / "base-manifest.json"                  # a delta over a cache that has this commit
    shutil.copy(hubws.root / ".cache" / "sglang-infer" / "cache-manifest.json", base)
    dry = run_cli(["bundle", "export", str(tmp_path / "x.tar"), "--dry-run", "--since", str(base)], hubws.env)
    assert dry.returncode == 0 and "models/" not in dry.stdout and "0 model files" in dry.stdout, dry.stdout


@needs_netns
@pytest.mark.netns
def test_imported_weights_install_and_serve_offline(hubws: HubWorkspace, weights_bundle: Path,
                                                    tmp_path: Path) -> None:
    env = airgap(hubws, tmp_path)
    r = run_cli(["bundle", "import", str(weights_bundle)], env, net=False)
    assert r.returncode == 0, r.stderr
    assert "3 model files placed" in r.stderr
    cache = Path(env["AUTO_INFER_SGLANG_CACHE_ROOT"])
    manifest = json.loads((cache / "cache-manifest.json").read_text())
    entry = _hub_entry(manifest)
    snapshot = cache / "huggingface" / "hub" / entry["snapshot"]
    assert snapshot == cache / "huggingface" / "hub" / f"models--org--tiny/snapshots/{entry['commit']}"
    assert (snapshot.parent.parent / "refs" / "main").read_text() == entry["commit"]
    for f in entry["files"]:
        assert hashlib.sha256((snapshot / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    r = run_cli(["install", "--verify"], env, net=False)
    assert r.returncode == 0, r.stderr
    assert "weights: 2 model(s) complete (size and sha256 of every file)" in r.stderr
    r = run_cli(["serve"], env, net=False)
    try:
        assert r.returncode == 0, r.stderr
        assert f"weights {REPO}@" in r.stderr
        recs = registry.all_records(settings.load(env))
        argv = inside_env(recs["tiny"].pid or 0, hubws.port)["argv"]
        assert argv[argv.index("--model-path") + 1] == str(snapshot)
    finally:
        actions.stop(settings.load(env), None)


@needs_netns
@pytest.mark.netns
def test_a_flipped_byte_in_a_weight_member_is_refused(hubws: HubWorkspace, weights_bundle: Path,
                                                      tmp_path: Path) -> None:
    entry = _hub_entry(hubws.manifest)
    name = f"models/org--tiny/{entry['commit']}/model.safetensors"
    bad = tmp_path / "bad.tar"
    shutil.copy(weights_bundle, bad)
    with tarfile.open(weights_bundle) as tf:
        at = tf.getmember(name).offset_data + 100
    data = bytearray(bad.read_bytes())
    data[at] ^= 0xFF
    bad.write_bytes(bytes(data))
    with tarfile.open(bad) as tf:
        actual = hashlib.sha256(tf.extractfile(name).read()).hexdigest()  # type: ignore[union-attr]
    listed = {m["path"]: m["sha256"] for m in _index(weights_bundle)["members"]}[name]
    env = airgap(hubws, tmp_path)
    r = run_cli(["bundle", "import", str(bad)], env, net=False)
    assert r.returncode == 1, r.stderr
    assert f"member {name} is damaged: sha256 {actual}, the index says {listed}" in r.stderr
    assert "nothing of it was trusted" in r.stderr and "Traceback" not in r.stderr
    cache = Path(env["AUTO_INFER_SGLANG_CACHE_ROOT"])
    assert trusted(env) == [] and not (cache / "huggingface").exists()
    r = run_cli(["install"], env, net=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize(("field", "value"), [("snapshot", "../../outside"), ("commit", "../x"),
                                              ("repo", "org/../x"), ("file", "../../../pixi.lock")])
def test_a_manifest_entry_that_would_land_outside_the_hub_cache_is_refused(field: str, value: str) -> None:
    f = {"path": "config.json", "size": 3, "sha256": "a" * 64}
    entry = {"key": "hub:org/tiny@main", "source": "hub", "repo": "org/tiny", "commit": "c" * 40,
             "snapshot": f"models--org--tiny/snapshots/{'c' * 40}", "files": [f]}
    index = fmt.Index(2, "d" * 64, None, None, None,
                      (fmt.Listed(f"models/org--tiny/{'c' * 40}/config.json", "model", "a" * 64, 3),))
    bundle_models.check(index, {"models": [entry]}, ValueError)          # the well-formed entry passes
    if field == "file":
        entry["files"] = [{**f, "path": value}]
    else:
        entry[field] = value
    with pytest.raises(ValueError, match="not a Hub snapshot"):
        bundle_models.check(index, {"models": [entry]}, ValueError)
